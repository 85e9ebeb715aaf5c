/*
 * The security team's dashboard on the admin listener (SPEC section 11): the
 * page at / with its script and style sheet (compiled in from
 * proxy/admin/dashboard/), GET /api/usage and GET /api/recent, all behind HTTP Basic
 * authentication against admin.htpasswd (403 while it is unset).
 *
 * Runs on the admin listener's loop (the main thread).  Nothing slow runs
 * there: a password is checked (bcrypt: tens of ms) on the dashboard's own
 * verifier thread, then remembered in a small credential cache (auth.h), and
 * queries run on the audit index's thread (auditidx.h), which answers through
 * an event of this loop.  Every response carries
 * Content-Security-Policy: default-src 'self', so the page can load nothing
 * from outside the admin listener (its script and style are separate files
 * for that reason: inline ones would be blocked).
 *
 * The index is started with the first configuration that sets
 * admin.htpasswd (there is no one to show it to before), on the audit.path
 * of that configuration; a reload that changes audit.path starts a new one.
 */
#ifndef AIGATE_DASHBOARD_H
#define AIGATE_DASHBOARD_H

#include <stddef.h>
#include <stdint.h>

struct dash;
struct config;
struct evhttp;
struct event_base;
struct auditidx_query;

/* Serve the dashboard's paths on http (a listener of base).  NULL when out of resources. */
struct dash *dash_new(struct event_base *base, struct evhttp *http, struct config *cfg);
/* The configuration now in force (takes a reference). */
void dash_set_config(struct dash *d, struct config *cfg);
/* Stops the threads; requests still waiting are dropped (evhttp_free() frees them).  NULL: no-op */
void dash_free(struct dash *d);

/*
 * Parse the query string of GET /api/usage (recent = 0) or GET /api/recent
 * (recent = 1) into q: from, to (ISO 8601, auditidx_parse_time(); to defaults
 * to now_ms, from to 24 hours before to), or period = N h|d (the N hours or
 * days before to; not with from), by = service|user|group|rule|action|
 * category|hour|day|minute (default service), the filters service, user, group,
 * action, category, rule (an empty value matches null), format = json|csv,
 * tz = Z|+HH:MM|-HH:MM (minute, hour and day keys; '+' may arrive as a space),
 * limit = 1..100000 (usage) and n = 1..AUDITIDX_RECENT (recent, default 50).
 * Unknown or repeated parameters, values that do not parse, a value longer
 * than AUDITIDX_FILTER_MAX - 1 bytes and from >= to are errors.  Returns 0,
 * or -1 with a message for the client in err.
 */
int dash_parse_query(const char *query, int64_t now_ms, int recent, struct auditidx_query *q,
                     char *err, size_t errlen);

/* "ko" when the Accept-Language value (may be NULL) prefers Korean to English, else "en". */
const char *dash_lang(const char *accept_language);

#endif
