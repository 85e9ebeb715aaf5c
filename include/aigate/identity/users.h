/*
 * Who a user is to the policy: the groups a user belongs to (config
 * `groups`), and the user a client address stands for (config `addresses`,
 * for auth.mode "address").
 *
 * Built once per config snapshot and immutable afterwards, so workers share
 * it without locks.  Lookups cost one hash probe (groups) or one probe per
 * distinct prefix length in `addresses` (longest prefix first), never a scan
 * of all entries.  Returned strings belong to the struct users.
 */
#ifndef AIGATE_USERS_H
#define AIGATE_USERS_H

#include <libconfig.h>
#include <stddef.h>
#include <sys/socket.h>

struct users;

/* Either setting may be NULL (absent).  Errors read "FILE:LINE: message". */
struct users *users_load(const config_setting_t *groups, const config_setting_t *addresses,
                         char *err, size_t errlen);
void users_free(struct users *u);

/* The groups user belongs to, in config order: sets *out to an array of that
 * many names and returns the count (0 and *out = NULL when none). */
size_t users_groups(const struct users *u, const char *user, const char *const **out);

/* The user named for the longest `addresses` network containing sa, or NULL.
 * IPv4-mapped IPv6 addresses match IPv4 networks. */
const char *users_by_address(const struct users *u, const struct sockaddr *sa);

/* 1 if a group of that name is defined. */
int users_group_exists(const struct users *u, const char *group);

#endif
