/*
 * `aigate --explain USER METHOD URL`: a readable account of how the loaded
 * catalog and policy treat one request -- the service it belongs to, the rule
 * that decides and why, and the earlier rules that nearly matched.  Pure: it
 * only writes to the stream it is given.
 */
#ifndef AIGATE_EXPLAIN_H
#define AIGATE_EXPLAIN_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

struct catalog;
struct policy;

/*
 * Print the report for user (NULL: anonymous) in groups, each shown with
 * where it came from when sources (parallel to groups) is not NULL, with the
 * directory's state when directory is not NULL, connecting from client, sending method to url at
 * local time now.  url is "scheme://host[:port]/path?query" (http or https) or, for CONNECT, a bare
 * "host:port".  An https URL to a catalogued host is evaluated as an
 * intercepted request when intercept (tls.intercept) is set; otherwise, and
 * for any other host, only host-level conditions apply, as in the proxy.  Returns 0, or -1 if the
 * URL cannot be parsed (a message is written to out).
 */
int explain_print(FILE *out, const struct catalog *cat, const struct policy *pol, const char *user,
                  const char *const *groups, const char *const *sources, size_t ngroups,
                  const char *directory, const struct sockaddr *client, const char *method,
                  const char *url, const struct tm *now, int intercept);

#endif
