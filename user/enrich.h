/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What the daemon adds to a kernel event: the user name of a uid, the cgroup path of a
 * cgroup id, the name of an ifindex. Each is a small direct-mapped cache of fixed size
 * whose entries expire, so memory stays bounded however many users, cgroups and interfaces
 * events name, and a renamed interface or a recreated user is seen again within a minute.
 */
#ifndef SLUICE_ENRICH_H
#define SLUICE_ENRICH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct enrich;

/* NULL on allocation failure. The cgroup2 mount is looked up once, here. */
struct enrich *enrich_new(void);
void enrich_free(struct enrich *x);

/* The names, NULL when unknown. Valid until the next call for the same kind. */
const char *enrich_user(struct enrich *x, uint32_t uid);
const char *enrich_cgroup(struct enrich *x, uint64_t cgroup_id);
const char *enrich_iface(struct enrich *x, uint32_t ifindex);

/*
 * User names are looked up on a thread of their own (NSS may hang on a slow directory);
 * the first event of a new uid waits for its name a few tens of milliseconds at most, and
 * goes out without it if the answer is late. For tests: replace the lookup (default: NSS,
 * getpwuid_r); fn returns whether uid has a name and writes it to name.
 */
typedef bool (*enrich_user_lookup_fn)(uint32_t uid, char *name, size_t len);
void enrich_set_user_lookup(enrich_user_lookup_fn fn);

#endif
