/*
 * The configuration snapshot.
 *
 * A struct config is built completely off to the side by config_load() (which
 * also loads the catalog, policy, users and pages it names), then published.
 * It is immutable once published and reference-counted: every connection
 * holds a reference for its life, so a reload (SIGHUP) never changes the rules
 * under a running request, and a failed reload leaves the old snapshot in
 * force.  Workers receive a new snapshot by message (worker.c), so taking a
 * reference on the request path is one atomic increment and no lock.
 */
#ifndef AIGATE_CONFIG_H
#define AIGATE_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "aigate/core/netaddr.h"

struct catalog;
struct policy;
struct users;
struct pages;
struct auth_db;
struct tls_ca;
struct dlp;
struct ssl_ctx_st;
struct negotiate;
struct dirgroups_cfg;

enum auth_mode { AUTH_NONE = 0, AUTH_BASIC, AUTH_ADDRESS, AUTH_NEGOTIATE };

struct listen_addr {
    char *text; /* as written, for logs */
    struct sockaddr_storage ss;
    socklen_t len;
};

struct limits {
    int max_connections;
    size_t max_header_bytes;
    size_t max_body_inspect_bytes;
    int header_timeout_ms;
    int idle_timeout_ms;
    int connect_timeout_ms;
    int shutdown_grace_ms;
};

struct config {
    atomic_int refs;
    char *path; /* the main file */
    char *dir;  /* its folder: relative paths resolve against it */

    struct listen_addr *listen;
    size_t nlisten;
    int workers; /* resolved: >= 1 */
    struct cidr_list client_networks;
    struct cidr_list proxy_protocol; /* peers whose PROXY protocol header is required and trusted */
    uint16_t *connect_ports;
    size_t nconnect_ports;
    struct limits limits;

    struct {
        enum auth_mode mode;
        char *realm;
        char *htpasswd;  /* resolved path; basic: always, negotiate: when set (Basic offered too) */
        char *keytab;    /* negotiate: resolved path */
        char *principal; /* negotiate: NULL = any service principal in the keytab */
        int strip_realm; /* negotiate: "alice@REALM" -> "alice" (the service's realm only) */
    } auth;

    struct {
        int intercept;
        char *ca_cert, *ca_key, *upstream_ca_file;
        int warn_fallback_block; /* 1 = "block", 0 = "allow" */
    } tls;

    struct {
        int ttl_s;
        char *state_file, *secret_file;
        char *store; /* NULL: the file store; else the redis:// URL (checked) */
    } ack;

    struct {
        char *path, *chain_key_file;
        int scope_ai, log_query;
        uint64_t rotate_bytes;
        int keep;
        int checkpoint_s;      /* 0: no periodic checkpoints */
        char *checkpoint_file; /* resolved; NULL: syslog only */
        char *node;            /* NULL: no "node" field */
    } audit;

    char *pages_dir;

    struct {
        char *hosts_file;
        char **nameservers;
        size_t nnameservers;
    } dns;

    struct listen_addr admin; /* admin.text == NULL: disabled */
    char *admin_htpasswd;     /* resolved; NULL: the dashboard and /api/ answer 403 */
    struct auth_db *admin_db; /* admin_htpasswd loaded */

    struct dirgroups_cfg *ldap; /* the `ldap` section (groups from the directory), or NULL */

    struct catalog *catalog;
    struct policy *policy;
    struct users *users;
    struct pages *pages;
    struct auth_db *authdb;      /* auth.htpasswd loaded, or NULL */
    struct negotiate *negotiate; /* mode negotiate: the Kerberos acceptor */
    struct dlp *dlp;             /* personal-data detectors incl. dlp_patterns */
    struct tls_ca *tls_ca;       /* tls.intercept: the interception CA */
    struct ssl_ctx_st *tls_cctx; /* tls.intercept: context for TLS to origins */
};

/*
 * Load and fully validate the config at path.  On error returns NULL and
 * writes "FILE:LINE: message" (or "FILE: message") into err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

int config_connect_port_ok(const struct config *c, unsigned port);

#endif
