/*
 * The gate as a table: one row per request (user, groups, network, method,
 * URL, body scan, acknowledgement state, time, configuration switches) with
 * the verdict it must get.  No sockets: the catalog and policy are loaded
 * from a string and the gate is called directly.
 */
#include <arpa/inet.h>
#include <check.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/http/http_msg.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/gate.h"
#include "aigate/rules/policy.h"

static const char conf[] =
    "services = (\n"
    "{ id = \"deepseek\"; name = \"DeepSeek\"; category = \"chat\"; vendor_country = \"CN\";\n"
    "  hosts = [ \"deepseek.com\", \"*.deepseek.com\" ]; },\n"
    "{ id = \"deepseek-api\"; name = \"DeepSeek API\"; category = \"api\"; vendor_country = "
    "\"CN\";\n"
    "  hosts = [ \"api.deepseek.com\" ]; },\n"
    "{ id = \"chatgpt\"; name = \"ChatGPT\"; category = \"chat\"; vendor_country = \"US\";\n"
    "  hosts = [ \"chatgpt.com\", \"*.chatgpt.com\" ]; },\n"
    "{ id = \"openai-api\"; name = \"OpenAI API\"; category = \"api\"; vendor_country = \"US\";\n"
    "  hosts = [ \"api.openai.com\" ]; },\n"
    "{ id = \"copilot\"; name = \"Copilot\"; category = \"code\"; vendor_country = \"US\";\n"
    "  hosts = [ \"copilot.example\" ]; },\n"
    "{ id = \"midjourney\"; name = \"Midjourney\"; category = \"image\"; vendor_country = \"US\";\n"
    "  hosts = [ \"midjourney.com\" ]; },\n"
    "{ id = \"perplexity\"; name = \"Perplexity\"; category = \"search\"; vendor_country = "
    "\"US\";\n"
    "  hosts = [ \"perplexity.ai\" ]; },\n"
    "{ id = \"claude\"; name = \"Claude\"; category = \"chat\"; vendor_country = \"US\";\n"
    "  hosts = [ \"claude.example\" ]; },\n"
    "{ id = \"hub\"; name = \"Hub\"; category = \"other\"; vendor_country = \"US\";\n"
    "  hosts = [ \"hub.example\" ]; },\n"
    "{ id = \"hubchat\"; name = \"Hub chat\"; category = \"chat\"; vendor_country = \"US\";\n"
    "  hosts = [ \"hub.example\", \"social.example\" ]; paths = [ \"/chat\", \"/chat/*\" ]; }\n"
    ");\n"
    "policy = (\n"
    "{ name = \"vip\"; action = \"allow\"; users = [ \"boss\" ]; },\n"
    "{ name = \"ban-cn-ai\"; action = \"block\"; vendor_countries = [ \"CN\" ]; },\n"
    "{ name = \"login-tenant\"; action = \"allow\"; hosts = [ \"login.ms.example\" ];\n"
    "  add_headers = ( { name = \"Restrict-Access-To-Tenants\"; value = \"corp.example\"; },\n"
    "                  { name = \"Restrict-Access-Context\"; value = \"0000-1111\"; } ); },\n"
    "{ name = \"claude-org\"; action = \"warn\"; services = [ \"claude\" ];\n"
    "  add_headers = ( { name = \"anthropic-allowed-org-ids\"; value = \"org-1\"; } ); },\n"
    "{ name = \"ai-mode\"; action = \"block\"; hosts = [ \"www.search.example\" ];\n"
    "  paths = \"/search\"; query = \"*udm=50*\"; },\n"
    "{ name = \"lab-net\"; action = \"allow\"; networks = [ \"10.9.0.0/16\" ];\n"
    "  categories = [ \"chat\" ]; },\n"
    "{ name = \"no-uploads\"; action = \"block\"; categories = [ \"chat\" ];\n"
    "  methods = [ \"POST\", \"PUT\" ]; paths = [ \"*/upload*\" ]; },\n"
    "{ name = \"pii\"; action = \"block\"; services = [ \"chatgpt\" ];\n"
    "  dlp = [ \"kr-rrn\", \"credit-card\" ]; },\n"
    "{ name = \"security-free\"; action = \"allow\"; groups = [ \"security\" ]; },\n"
    "{ name = \"night-images\"; action = \"block\"; categories = [ \"image\" ];\n"
    "  hours = \"22:00-06:00\"; },\n"
    "{ name = \"weekend-search\"; action = \"block\"; services = [ \"perplexity\" ];\n"
    "  days = [ \"sat\", \"sun\" ]; },\n"
    "{ name = \"intranet-ai\"; action = \"warn\"; hosts = [ \"*.ai.corp.example\" ];\n"
    "  ack_ttl_s = 600; },\n"
    "{ name = \"caution\"; action = \"warn\"; categories = [ \"chat\", \"code\" ];\n"
    "  ack_ttl_s = 3600; },\n"
    "{ name = \"api-warn\"; action = \"warn\"; categories = [ \"api\" ]; }\n"
    ");\n";

#define DEFAULT_TTL 28800

/* Row switches. */
#define BODY (1u << 0)           /* the request has a body */
#define SCANNED (1u << 1)        /* ... and it was scanned (dlp holds the result) */
#define NO_INTERCEPT (1u << 2)   /* tls.intercept = false */
#define FALLBACK_ALLOW (1u << 3) /* tls.warn_fallback = "allow" */
#define AUTH (1u << 4)           /* auth.mode asks for credentials */
#define UNAUTH (1u << 5)         /* ... and the request has none */
#define DIRECTORY (1u << 6)      /* groups also come from a directory, not read yet */

struct row {
    const char *desc;
    const char *user;   /* NULL: anonymous */
    const char *groups; /* "a,b" */
    const char *client; /* default 127.0.0.1 */
    const char *method;
    const char *url; /* absolute, or host:port for CONNECT */
    unsigned flags, dlp;
    enum gate_ack ack;
    const char *at; /* "wed 12:00" by default */
    /* expected */
    enum gate_action action;
    const char *rule;
    const char *service;
    enum gate_page page;
    unsigned needs;
    enum gate_tls tls;
    enum gate_fallback fallback;
    int ttl; /* 0: DEFAULT_TTL */
    int ai;
    size_t nheaders; /* the deciding rule's add_headers are in the verdict */
};

#define CK GATE_ACK_UNKNOWN
#define ACKED GATE_ACK_YES
#define NOT_ACKED GATE_ACK_NO
#define RRN POLICY_DLP_KR_RRN
#define CARD POLICY_DLP_CREDIT_CARD
#define MAIL POLICY_DLP_EMAIL

static const struct row rows[] = {
    /* vendor country, users, interception */
    {.desc = "CN service blocked",
     .user = "alice",
     .method = "GET",
     .url = "http://chat.deepseek.com/",
     .action = GATE_BLOCK,
     .rule = "ban-cn-ai",
     .service = "deepseek",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "a listed user comes first",
     .user = "boss",
     .method = "GET",
     .url = "http://chat.deepseek.com/",
     .action = GATE_ALLOW,
     .rule = "vip",
     .service = "deepseek",
     .ai = 1},
    {.desc = "exact host beats wildcard",
     .user = "alice",
     .method = "GET",
     .url = "http://api.deepseek.com/v1",
     .action = GATE_BLOCK,
     .rule = "ban-cn-ai",
     .service = "deepseek-api",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "bare domain of a wildcard entry",
     .method = "GET",
     .url = "http://deepseek.com/",
     .action = GATE_BLOCK,
     .rule = "ban-cn-ai",
     .service = "deepseek",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "CONNECT to a catalogued host is intercepted, no rule",
     .user = "alice",
     .method = "CONNECT",
     .url = "chat.deepseek.com:443",
     .action = GATE_ALLOW,
     .service = "deepseek",
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "blind CONNECT: host-level rule decides",
     .user = "alice",
     .method = "CONNECT",
     .url = "chat.deepseek.com:443",
     .flags = NO_INTERCEPT,
     .action = GATE_BLOCK,
     .rule = "ban-cn-ai",
     .service = "deepseek",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .ai = 1},
    {.desc = "CONNECT to an uncatalogued host is tunnelled",
     .user = "alice",
     .method = "CONNECT",
     .url = "www.example.org:443",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_TUNNEL},
    {.desc = "inside interception",
     .user = "alice",
     .method = "GET",
     .url = "https://api.deepseek.com/v1/chat",
     .action = GATE_BLOCK,
     .rule = "ban-cn-ai",
     .service = "deepseek-api",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    /* warn and the acknowledgement state */
    {.desc = "warn, ack state unknown: provisional caution",
     .user = "alice",
     .method = "GET",
     .url = "https://chatgpt.com/",
     .ack = CK,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .needs = GATE_NEED_ACK_STATE,
     .tls = GATE_TLS_INTERCEPT,
     .ttl = 3600,
     .ai = 1},
    {.desc = "warn, acknowledged: allow under the warn rule",
     .user = "alice",
     .method = "GET",
     .url = "https://chatgpt.com/",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .tls = GATE_TLS_INTERCEPT,
     .ttl = 3600,
     .ai = 1},
    {.desc = "warn, not acknowledged: caution page",
     .user = "alice",
     .method = "GET",
     .url = "https://chatgpt.com/",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .tls = GATE_TLS_INTERCEPT,
     .ttl = 3600,
     .ai = 1},
    {.desc = "warn rule without ack_ttl_s: ack.ttl_s",
     .user = "alice",
     .method = "GET",
     .url = "http://api.openai.com/v1/models",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "api-warn",
     .service = "openai-api",
     .page = GATE_PAGE_CAUTION,
     .ai = 1},
    {.desc = "warn on plain HTTP, code category",
     .method = "GET",
     .url = "http://copilot.example/",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "copilot",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "warn_fallback block on a blind CONNECT",
     .user = "alice",
     .method = "CONNECT",
     .url = "chatgpt.com:443",
     .flags = NO_INTERCEPT,
     .ack = NOT_ACKED,
     .action = GATE_BLOCK,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_BLOCK,
     .ttl = 3600,
     .ai = 1},
    {.desc = "warn_fallback allow on a blind CONNECT",
     .user = "alice",
     .method = "CONNECT",
     .url = "chatgpt.com:443",
     .flags = NO_INTERCEPT | FALLBACK_ALLOW,
     .ack = NOT_ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_ALLOW,
     .ttl = 3600,
     .ai = 1},
    {.desc = "blind CONNECT, acknowledged: no fallback",
     .user = "alice",
     .method = "CONNECT",
     .url = "chatgpt.com:443",
     .flags = NO_INTERCEPT,
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .tls = GATE_TLS_TUNNEL,
     .ttl = 3600,
     .ai = 1},
    {.desc = "blind CONNECT, ack unknown: asks",
     .user = "alice",
     .method = "CONNECT",
     .url = "chatgpt.com:443",
     .flags = NO_INTERCEPT,
     .action = GATE_BLOCK,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .needs = GATE_NEED_ACK_STATE,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_BLOCK,
     .ttl = 3600,
     .ai = 1},
    {.desc = "acknowledged warn keeps the default ttl",
     .user = "alice",
     .method = "GET",
     .url = "https://api.openai.com/v1/models",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "api-warn",
     .service = "openai-api",
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    /* methods and paths */
    {.desc = "POST to an upload path",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/files/upload/1",
     .action = GATE_BLOCK,
     .rule = "no-uploads",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "method compared without case",
     .user = "alice",
     .method = "put",
     .url = "https://chatgpt.com/upload",
     .action = GATE_BLOCK,
     .rule = "no-uploads",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "GET to an upload path is not an upload",
     .user = "alice",
     .method = "GET",
     .url = "http://chatgpt.com/files/upload/1",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "the query is not part of the path",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/x?upload=1",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "an empty path is /",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .ttl = 3600,
     .ai = 1},
    /* bodies */
    {.desc = "body not scanned, a dlp rule could decide",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/api",
     .flags = BODY,
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .needs = GATE_NEED_BODY,
     .ttl = 3600,
     .ai = 1},
    {.desc = "scanned body with an RRN",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/api",
     .flags = BODY | SCANNED,
     .dlp = RRN,
     .action = GATE_BLOCK,
     .rule = "pii",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "scanned body with a card, inside interception",
     .user = "alice",
     .method = "POST",
     .url = "https://chatgpt.com/api",
     .flags = BODY | SCANNED,
     .dlp = CARD | MAIL,
     .action = GATE_BLOCK,
     .rule = "pii",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "scanned body with a kind no rule wants",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/api",
     .flags = BODY | SCANNED,
     .dlp = MAIL,
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "body where no dlp rule applies: not needed",
     .user = "alice",
     .method = "POST",
     .url = "http://copilot.example/api",
     .flags = BODY,
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "copilot",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "an earlier rule decides before the body matters",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/upload",
     .flags = BODY,
     .action = GATE_BLOCK,
     .rule = "no-uploads",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "security group exempt, but not from pii",
     .user = "carol",
     .groups = "security",
     .method = "POST",
     .url = "http://chatgpt.com/api",
     .flags = BODY | SCANNED,
     .dlp = RRN,
     .action = GATE_BLOCK,
     .rule = "pii",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "blind CONNECT never needs the body",
     .user = "alice",
     .method = "CONNECT",
     .url = "chatgpt.com:443",
     .flags = BODY | NO_INTERCEPT,
     .ack = NOT_ACKED,
     .action = GATE_BLOCK,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_BLOCK,
     .ttl = 3600,
     .ai = 1},
    /* groups and networks */
    {.desc = "security group exempt",
     .user = "carol",
     .groups = "staff,security",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .action = GATE_ALLOW,
     .rule = "security-free",
     .service = "chatgpt",
     .ai = 1},
    {.desc = "other groups are not",
     .user = "bob",
     .groups = "staff",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "lab network allowed chat",
     .client = "10.9.1.2",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .action = GATE_ALLOW,
     .rule = "lab-net",
     .service = "chatgpt",
     .ai = 1},
    {.desc = "another network is not",
     .client = "10.8.1.2",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .ttl = 3600,
     .ai = 1},
    {.desc = "IPv6 client outside the lab",
     .client = "2001:db8::7",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .ttl = 3600,
     .ai = 1},
    /* hours and days */
    {.desc = "image at night",
     .user = "bob",
     .method = "GET",
     .url = "http://midjourney.com/",
     .at = "wed 23:00",
     .action = GATE_BLOCK,
     .rule = "night-images",
     .service = "midjourney",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "image just before six",
     .user = "bob",
     .method = "GET",
     .url = "http://midjourney.com/",
     .at = "thu 05:59",
     .action = GATE_BLOCK,
     .rule = "night-images",
     .service = "midjourney",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "image at six: no rule",
     .user = "bob",
     .method = "GET",
     .url = "http://midjourney.com/",
     .at = "thu 06:00",
     .action = GATE_ALLOW,
     .service = "midjourney",
     .ai = 1},
    {.desc = "image before ten",
     .user = "bob",
     .method = "GET",
     .url = "http://midjourney.com/",
     .at = "thu 21:59",
     .action = GATE_ALLOW,
     .service = "midjourney",
     .ai = 1},
    {.desc = "search on saturday",
     .method = "GET",
     .url = "http://perplexity.ai/search",
     .at = "sat 10:00",
     .action = GATE_BLOCK,
     .rule = "weekend-search",
     .service = "perplexity",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "search on a blind CONNECT on sunday",
     .method = "CONNECT",
     .url = "perplexity.ai:443",
     .flags = NO_INTERCEPT,
     .at = "sun 10:00",
     .action = GATE_BLOCK,
     .rule = "weekend-search",
     .service = "perplexity",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .ai = 1},
    {.desc = "search on monday",
     .method = "GET",
     .url = "http://perplexity.ai/search",
     .at = "mon 10:00",
     .action = GATE_ALLOW,
     .service = "perplexity",
     .ai = 1},
    /* hosts outside the catalog */
    {.desc = "hosts rule on an uncatalogued site",
     .user = "alice",
     .method = "GET",
     .url = "http://bot.ai.corp.example/",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "intranet-ai",
     .page = GATE_PAGE_CAUTION,
     .ttl = 600,
     .ai = 1},
    {.desc = "hosts rule compares without case",
     .user = "alice",
     .method = "GET",
     .url = "http://BOT.AI.Corp.Example./",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "intranet-ai",
     .ttl = 600,
     .ai = 1},
    {.desc = "a wildcard does not match the bare domain",
     .user = "alice",
     .method = "GET",
     .url = "http://ai.corp.example/",
     .action = GATE_ALLOW},
    {.desc = "no rule matches: allow",
     .user = "alice",
     .method = "GET",
     .url = "http://www.example.org/",
     .action = GATE_ALLOW},
    {.desc = "hosts rule on a blind CONNECT: fallback",
     .user = "alice",
     .method = "CONNECT",
     .url = "bot.ai.corp.example:443",
     .ack = NOT_ACKED,
     .action = GATE_BLOCK,
     .rule = "intranet-ai",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_BLOCK,
     .ttl = 600,
     .ai = 1},
    /* the acknowledgement POST, credentials, directory groups */
    {.desc = "the acknowledgement POST",
     .user = "alice",
     .method = "POST",
     .url = "http://chatgpt.com/__aigate/ack",
     .flags = BODY,
     .action = GATE_ACK,
     .service = "chatgpt",
     .ai = 1},
    {.desc = "the acknowledgement path on any host, even a blocked one",
     .user = "alice",
     .method = "GET",
     .url = "https://chat.deepseek.com/__aigate/ack?x",
     .action = GATE_ACK,
     .service = "deepseek",
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "only that exact path",
     .user = "alice",
     .method = "POST",
     .url = "http://www.example.org/__aigate/ack/x",
     .action = GATE_ALLOW},
    {.desc = "credentials missing",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .flags = AUTH | UNAUTH,
     .action = GATE_AUTH_NEEDED,
     .service = "chatgpt",
     .ai = 1},
    {.desc = "credentials missing on CONNECT",
     .method = "CONNECT",
     .url = "www.example.org:443",
     .flags = AUTH | UNAUTH,
     .action = GATE_AUTH_NEEDED,
     .tls = GATE_TLS_TUNNEL},
    {.desc = "credentials given",
     .user = "boss",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .flags = AUTH,
     .action = GATE_ALLOW,
     .rule = "vip",
     .service = "chatgpt",
     .ai = 1},
    {.desc = "directory groups not read yet",
     .user = "carol",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .flags = DIRECTORY,
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "chatgpt",
     .page = GATE_PAGE_CAUTION,
     .needs = GATE_NEED_GROUPS,
     .ttl = 3600,
     .ai = 1},
    {.desc = "no directory groups for anonymous",
     .method = "GET",
     .url = "http://chatgpt.com/",
     .flags = DIRECTORY,
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "chatgpt",
     .ttl = 3600,
     .ai = 1},
    /* add_headers (SPEC 5b) */
    {.desc = "allow with headers, plain HTTP",
     .method = "GET",
     .url = "http://login.ms.example/common/oauth2",
     .action = GATE_ALLOW,
     .rule = "login-tenant",
     .nheaders = 2},
    {.desc = "allow with headers, intercepted",
     .user = "alice",
     .method = "POST",
     .url = "https://login.ms.example/common/login",
     .action = GATE_ALLOW,
     .rule = "login-tenant",
     .tls = GATE_TLS_INTERCEPT,
     .nheaders = 2},
    {.desc = "CONNECT to an uncatalogued host a headers rule names: intercepted",
     .method = "CONNECT",
     .url = "login.ms.example:443",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
    {.desc = "headers rule on a blind CONNECT: refused",
     .user = "alice",
     .method = "CONNECT",
     .url = "login.ms.example:443",
     .flags = NO_INTERCEPT,
     .action = GATE_BLOCK,
     .rule = "login-tenant",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_HEADERS,
     .ai = 1},
    {.desc = "warn with headers, not acknowledged: caution, no headers",
     .user = "alice",
     .method = "GET",
     .url = "https://claude.example/new",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "claude-org",
     .service = "claude",
     .page = GATE_PAGE_CAUTION,
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "warn with headers, ack unknown: asks, no headers yet",
     .user = "alice",
     .method = "GET",
     .url = "http://claude.example/new",
     .action = GATE_WARN,
     .rule = "claude-org",
     .service = "claude",
     .page = GATE_PAGE_CAUTION,
     .needs = GATE_NEED_ACK_STATE,
     .ai = 1},
    {.desc = "warn with headers, acknowledged: allowed with the headers",
     .user = "alice",
     .method = "POST",
     .url = "https://claude.example/api/append_message",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "claude-org",
     .service = "claude",
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1,
     .nheaders = 1},
    {.desc = "warn with headers on a blind CONNECT, acknowledged: refused",
     .user = "alice",
     .method = "CONNECT",
     .url = "claude.example:443",
     .flags = NO_INTERCEPT,
     .ack = ACKED,
     .action = GATE_BLOCK,
     .rule = "claude-org",
     .service = "claude",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_HEADERS,
     .ai = 1},
    {.desc = "warn with headers on a blind CONNECT, fallback allow: refused all the same",
     .user = "alice",
     .method = "CONNECT",
     .url = "claude.example:443",
     .flags = NO_INTERCEPT | FALLBACK_ALLOW,
     .action = GATE_BLOCK,
     .rule = "claude-org",
     .service = "claude",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_TUNNEL,
     .fallback = GATE_FALLBACK_HEADERS,
     .ai = 1},
    /* the query condition, and interception of the hosts such rules name */
    {.desc = "query matches inside interception",
     .user = "alice",
     .method = "GET",
     .url = "https://www.search.example/search?q=x&udm=50&hl=ko",
     .action = GATE_BLOCK,
     .rule = "ai-mode",
     .page = GATE_PAGE_BLOCK,
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "query matches on plain HTTP",
     .method = "GET",
     .url = "http://www.search.example/search?udm=50",
     .action = GATE_BLOCK,
     .rule = "ai-mode",
     .page = GATE_PAGE_BLOCK,
     .ai = 1},
    {.desc = "another query passes",
     .method = "GET",
     .url = "https://www.search.example/search?q=udm&udm=5",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
    {.desc = "no query passes",
     .method = "GET",
     .url = "https://www.search.example/search",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
    {.desc = "CONNECT to a host a query rule names: intercepted",
     .method = "CONNECT",
     .url = "www.search.example:443",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
    {.desc = "CONNECT to another uncatalogued host: blind",
     .method = "CONNECT",
     .url = "images.search.example:443",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_TUNNEL},
    {.desc = "query rule on a blind CONNECT does not match",
     .method = "CONNECT",
     .url = "www.search.example:443",
     .flags = NO_INTERCEPT,
     .action = GATE_ALLOW,
     .tls = GATE_TLS_TUNNEL},
    /* path-scoped catalog entries (SPEC 4) */
    {.desc = "path-scoped entry owns its paths",
     .user = "alice",
     .method = "GET",
     .url = "https://hub.example/chat/conversation/1",
     .ack = NOT_ACKED,
     .action = GATE_WARN,
     .rule = "caution",
     .service = "hubchat",
     .page = GATE_PAGE_CAUTION,
     .tls = GATE_TLS_INTERCEPT,
     .ttl = 3600,
     .ai = 1},
    {.desc = "path-scoped entry on plain HTTP",
     .user = "alice",
     .method = "GET",
     .url = "http://hub.example/chat",
     .ack = ACKED,
     .action = GATE_ALLOW,
     .rule = "caution",
     .service = "hubchat",
     .ttl = 3600,
     .ai = 1},
    {.desc = "other paths belong to the host-level entry",
     .user = "alice",
     .method = "GET",
     .url = "https://hub.example/chatdb/model",
     .action = GATE_ALLOW,
     .service = "hub",
     .tls = GATE_TLS_INTERCEPT,
     .ai = 1},
    {.desc = "CONNECT: the host-level entry decides",
     .user = "alice",
     .method = "CONNECT",
     .url = "hub.example:443",
     .flags = NO_INTERCEPT,
     .action = GATE_ALLOW,
     .service = "hub",
     .tls = GATE_TLS_TUNNEL,
     .ai = 1},
    {.desc = "a host only a path-scoped entry names is intercepted",
     .method = "CONNECT",
     .url = "social.example:443",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
    {.desc = "... and outside its paths no service",
     .method = "GET",
     .url = "https://social.example/home",
     .action = GATE_ALLOW,
     .tls = GATE_TLS_INTERCEPT},
};

static config_t cfg;
static struct catalog *cat;
static struct policy *pol;

static void
setup(void)
{
    char err[256];

    config_init(&cfg);
    ck_assert(config_read_string(&cfg, conf) == CONFIG_TRUE);
    cat = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(cat != NULL, "%s", err);
    pol = policy_load(config_lookup(&cfg, "policy"), cat, NULL, err, sizeof(err));
    ck_assert_msg(pol != NULL, "%s", err);
}

static void
teardown(void)
{
    policy_free(pol);
    catalog_free(cat);
    config_destroy(&cfg);
}

/* Everything a row's request is made of, kept alive while the gate looks at it. */
struct built {
    struct gate_cfg g;
    struct gate_req q;
    struct http_url url;
    struct sockaddr_storage client;
    struct tm local;
    char groupbuf[128];
    const char *groups[8];
};

static void
parse_at(const char *at, struct tm *tm)
{
    static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    int h, m;

    memset(tm, 0, sizeof(*tm));
    ck_assert_int_eq(sscanf(at + 4, "%d:%d", &h, &m), 2);
    tm->tm_hour = h;
    tm->tm_min = m;
    tm->tm_wday = -1;
    for (int d = 0; d < 7; d++)
        if (strncmp(at, days[d], 3) == 0)
            tm->tm_wday = d;
    ck_assert_int_ge(tm->tm_wday, 0);
}

static void
build(const struct row *w, struct built *b)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&b->client;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&b->client;
    const char *client = w->client ? w->client : "127.0.0.1";
    struct http_span t = {0, (uint32_t)strlen(w->url)};
    size_t n = 0;

    memset(b, 0, sizeof(*b));
    b->g.catalog = cat;
    b->g.policy = pol;
    b->g.auth_required = (w->flags & AUTH) != 0;
    b->g.intercept = !(w->flags & NO_INTERCEPT);
    b->g.warn_fallback_block = !(w->flags & FALLBACK_ALLOW);
    b->g.ack_ttl_s = DEFAULT_TTL;
    b->g.directory_groups = (w->flags & DIRECTORY) != 0;
    if (inet_pton(AF_INET, client, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        ck_assert_int_eq(inet_pton(AF_INET6, client, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    if (w->groups) {
        snprintf(b->groupbuf, sizeof(b->groupbuf), "%s", w->groups);
        for (char *save = NULL, *s = strtok_r(b->groupbuf, ",", &save); s && n < 8;
             s = strtok_r(NULL, ",", &save))
            b->groups[n++] = s;
    }
    parse_at(w->at ? w->at : "wed 12:00", &b->local);
    b->q.connect = strcmp(w->method, "CONNECT") == 0;
    if (b->q.connect)
        ck_assert_int_eq(http_url_parse_authority(w->url, t, &b->url), 0);
    else
        ck_assert_int_eq(http_url_parse_absolute(w->url, t, &b->url), 0);
    b->q.client = (const struct sockaddr *)&b->client;
    b->q.user = w->user;
    b->q.authenticated = !(w->flags & UNAUTH);
    b->q.groups = b->groups;
    b->q.ngroups = n;
    b->q.groups_from = GATE_GROUPS_CONFIG;
    b->q.method = w->method;
    b->q.url = &b->url;
    b->q.buf = w->url;
    b->q.has_body = (w->flags & BODY) != 0;
    b->q.body_scanned = (w->flags & SCANNED) != 0;
    b->q.dlp_found = w->dlp;
    b->q.ack = w->ack;
    b->q.local = &b->local;
}

static void
check_verdict(const struct row *w, const struct gate_verdict *v)
{
    const char *d = w->desc;

    ck_assert_msg(v->action == w->action, "%s: action %s, want %s", d, gate_action_name(v->action),
                  gate_action_name(w->action));
    ck_assert_msg(w->rule ? v->rule && strcmp(v->rule->name, w->rule) == 0 : v->rule == NULL,
                  "%s: rule %s, want %s", d, v->rule ? v->rule->name : "(none)",
                  w->rule ? w->rule : "(none)");
    ck_assert_msg(w->service ? v->service && strcmp(v->service->id, w->service) == 0
                             : v->service == NULL,
                  "%s: service %s, want %s", d, v->service ? v->service->id : "(none)",
                  w->service ? w->service : "(none)");
    ck_assert_msg(v->page == w->page, "%s: page %s, want %s", d, gate_page_name(v->page),
                  gate_page_name(w->page));
    ck_assert_msg(v->needs == w->needs, "%s: needs %#x, want %#x", d, v->needs, w->needs);
    ck_assert_msg(v->tls == w->tls, "%s: tls %s, want %s", d, gate_tls_name(v->tls),
                  gate_tls_name(w->tls));
    ck_assert_msg(v->fallback == w->fallback, "%s: fallback %d, want %d", d, v->fallback,
                  w->fallback);
    ck_assert_msg(v->ack_ttl_s == (w->ttl ? w->ttl : DEFAULT_TTL), "%s: ttl %d, want %d", d,
                  v->ack_ttl_s, w->ttl ? w->ttl : DEFAULT_TTL);
    ck_assert_msg(v->ai == w->ai, "%s: ai %d, want %d", d, v->ai, w->ai);
    ck_assert_msg(v->nheaders == w->nheaders, "%s: %zu headers, want %zu", d, v->nheaders,
                  w->nheaders);
    ck_assert_msg(w->nheaders ? v->headers == v->rule->headers : v->headers == NULL, "%s: headers",
                  d);
}

START_TEST(table)
{
    const struct row *w = &rows[_i];
    struct built b;
    struct gate_verdict v;

    build(w, &b);
    gate_decide(&b.g, &b.q, &v);
    check_verdict(w, &v);
}
END_TEST

static int
same(const struct gate_verdict *a, const struct gate_verdict *b)
{
    return a->action == b->action && a->needs == b->needs && a->rule == b->rule &&
           a->service == b->service && a->page == b->page && a->tls == b->tls &&
           a->fallback == b->fallback && a->request_visible == b->request_visible &&
           a->ai == b->ai && a->ack_ttl_s == b->ack_ttl_s && a->headers == b->headers &&
           a->nheaders == b->nheaders;
}

/*
 * Every provisional verdict, resumed with the missing input supplied, equals
 * the verdict for the complete request decided in one go.
 */
START_TEST(resume_equals_decide)
{
    static const enum gate_ack acks[] = {GATE_ACK_YES, GATE_ACK_NO};
    static const unsigned found[] = {0, RRN, MAIL, CARD};
    const struct row *w = &rows[_i];
    struct built b;
    struct gate_verdict v, once, resumed;

    build(w, &b);
    gate_decide(&b.g, &b.q, &v);
    if (!v.needs)
        return;
    for (size_t a = 0; a < 2; a++)
        for (size_t f = 0; f < 4; f++) {
            struct gate_req q = b.q;

            q.ack = acks[a];
            q.body_scanned = 1;
            q.dlp_found = found[f];
            q.groups_from |= GATE_GROUPS_DIRECTORY;
            gate_decide(&b.g, &q, &once);
            ck_assert_msg(once.needs == 0, "%s: complete request still needs %#x", w->desc,
                          once.needs);
            resumed = v;
            for (int k = 0; k < 3 && resumed.needs; k++)
                gate_resume(&b.g, &q, &resumed);
            ck_assert_msg(same(&once, &resumed),
                          "%s: resumed verdict differs (ack %d, dlp %#x): %s/%s vs %s/%s", w->desc,
                          acks[a], found[f], gate_action_name(resumed.action),
                          resumed.rule ? resumed.rule->name : "-", gate_action_name(once.action),
                          once.rule ? once.rule->name : "-");
        }
}
END_TEST

/* The provisional verdict is the one for "the missing input is empty". */
START_TEST(provisional_means_empty)
{
    const struct row *w = &rows[_i];
    struct built b;
    struct gate_verdict v, empty;
    struct gate_req q;

    build(w, &b);
    gate_decide(&b.g, &b.q, &v);
    if (!v.needs)
        return;
    q = b.q;
    q.ack = GATE_ACK_NO;
    q.body_scanned = 1;
    q.dlp_found = 0;
    q.groups_from |= GATE_GROUPS_DIRECTORY;
    gate_decide(&b.g, &q, &empty);
    ck_assert_msg(v.action == empty.action && v.rule == empty.rule && v.page == empty.page,
                  "%s: provisional %s, empty %s", w->desc, gate_action_name(v.action),
                  gate_action_name(empty.action));
}
END_TEST

START_TEST(ack_state_resume_keeps_the_rule)
{
    struct built b;
    struct gate_verdict v;

    build(&rows[8], &b); /* warn, ack state unknown */
    gate_decide(&b.g, &b.q, &v);
    ck_assert_uint_eq(v.needs, GATE_NEED_ACK_STATE);
    gate_resume(&b.g, &b.q, &v); /* still unknown: still asks */
    ck_assert_uint_eq(v.needs, GATE_NEED_ACK_STATE);
    b.q.ack = GATE_ACK_YES;
    gate_resume(&b.g, &b.q, &v);
    ck_assert_uint_eq(v.needs, 0);
    ck_assert_int_eq(v.action, GATE_ALLOW);
    ck_assert_str_eq(v.rule->name, "caution");
    gate_resume(&b.g, &b.q, &v); /* final: unchanged */
    ck_assert_int_eq(v.action, GATE_ALLOW);
}
END_TEST

START_TEST(no_target_is_an_error)
{
    struct built b;
    struct gate_verdict v;

    build(&rows[0], &b);
    b.q.url = NULL;
    gate_decide(&b.g, &b.q, &v);
    ck_assert_int_eq(v.action, GATE_ERROR);
    build(&rows[0], &b);
    b.url.host[0] = '\0';
    gate_decide(&b.g, &b.q, &v);
    ck_assert_int_eq(v.action, GATE_ERROR);
    ck_assert_ptr_null(v.rule);
}
END_TEST

START_TEST(empty_policy_allows)
{
    struct built b;
    struct gate_verdict v;

    build(&rows[0], &b);
    b.g.policy = NULL;
    gate_decide(&b.g, &b.q, &v);
    ck_assert_int_eq(v.action, GATE_ALLOW);
    ck_assert_ptr_null(v.rule);
    ck_assert_str_eq(v.service->id, "deepseek");
}
END_TEST

START_TEST(intercepts)
{
    struct built b;
    const struct service *s;

    build(&rows[0], &b);
    ck_assert_int_eq(gate_intercepts(&b.g, "chat.deepseek.com", &s), 1);
    ck_assert_str_eq(s->id, "deepseek");
    ck_assert_int_eq(gate_intercepts(&b.g, "www.example.org", &s), 0);
    ck_assert_ptr_null(s);
    /* hosts named by path-scoped entries and by rules needing the request */
    ck_assert_int_eq(gate_intercepts(&b.g, "social.example", &s), 1);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(gate_intercepts(&b.g, "hub.example", &s), 1);
    ck_assert_str_eq(s->id, "hub");
    ck_assert_int_eq(gate_intercepts(&b.g, "login.ms.example", &s), 1);
    ck_assert_int_eq(gate_intercepts(&b.g, "www.search.example", &s), 1);
    ck_assert_int_eq(gate_intercepts(&b.g, "search.example", &s), 0);
    b.g.intercept = 0;
    ck_assert_int_eq(gate_intercepts(&b.g, "chatgpt.com", &s), 0);
    ck_assert_str_eq(s->id, "chatgpt");
    ck_assert_int_eq(gate_intercepts(&b.g, "login.ms.example", &s), 0);
    ck_assert_int_eq(gate_intercepts(&b.g, "social.example", &s), 0);
}
END_TEST

START_TEST(names)
{
    ck_assert_str_eq(gate_action_name(GATE_ALLOW), "allow");
    ck_assert_str_eq(gate_action_name(GATE_BLOCK), "block");
    ck_assert_str_eq(gate_action_name(GATE_WARN), "warn");
    ck_assert_str_eq(gate_action_name(GATE_ACK), "ack");
    ck_assert_str_eq(gate_action_name(GATE_AUTH_NEEDED), "auth-needed");
    ck_assert_str_eq(gate_action_name(GATE_ERROR), "error");
    ck_assert_str_eq(gate_page_name(GATE_PAGE_CAUTION), "caution");
    ck_assert_str_eq(gate_tls_name(GATE_TLS_TUNNEL), "tunnel");
}
END_TEST

Suite *gate_suite(void);

Suite *
gate_suite(void)
{
    Suite *s = suite_create("gate");
    TCase *t = tcase_create("table");
    int n = (int)(sizeof(rows) / sizeof(rows[0]));

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_loop_test(t, table, 0, n);
    tcase_add_loop_test(t, resume_equals_decide, 0, n);
    tcase_add_loop_test(t, provisional_means_empty, 0, n);
    tcase_add_test(t, ack_state_resume_keeps_the_rule);
    tcase_add_test(t, no_target_is_an_error);
    tcase_add_test(t, empty_policy_allows);
    tcase_add_test(t, intercepts);
    tcase_add_test(t, names);
    suite_add_tcase(s, t);
    return s;
}
