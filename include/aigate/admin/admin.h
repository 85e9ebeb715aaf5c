/*
 * The admin listener (admin.listen): /healthz and /metrics (Prometheus text
 * format) for operators and load balancers, and the dashboard with its API
 * (dashboard.h) for the security team.  It runs on the main thread's
 * event loop, never on a worker, and is never reachable through the proxy
 * (upstream.c refuses to connect to it).
 */
#ifndef AIGATE_ADMIN_H
#define AIGATE_ADMIN_H

struct event_base;
struct config;
struct admin;

/* Start serving on cfg->admin (NULL, with nothing started, when admin.listen is unset). */
struct admin *admin_start(struct event_base *base, struct config *cfg, int *failed);
void admin_free(struct admin *a);
/* Called by main on each successful reload with the new configuration. */
void admin_note_reload(struct admin *a, struct config *cfg);

#endif
