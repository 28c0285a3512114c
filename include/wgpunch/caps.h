/* SPDX-License-Identifier: MIT */
/*
 * caps - least privilege after start: keep only the capabilities a role still needs.
 *
 * Uses the raw capget/capset system calls (<linux/capability.h>), no libcap. After
 * caps_keep_only() the process holds at most the listed capabilities in its effective and
 * permitted sets, nothing inheritable or ambient, a bounding set reduced to the same list (so
 * not even an exec of a set-uid or file-capability binary gets more back) and no_new_privs.
 * Dropping cannot be undone: call it once everything that needs more is open.
 */
#ifndef WGPUNCH_CAPS_H
#define WGPUNCH_CAPS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reduces the capability sets to those of keep[0..n) that the process holds now (a
 * capability it does not hold is silently not kept). Returns 0, or -errno when capset or
 * no_new_privs failed; a bounding set that cannot be reduced (no CAP_SETPCAP) is not an
 * error, because without CAP_SETPCAP nothing can be added back from it either.
 */
int caps_keep_only(const int *keep, size_t n);

/* The effective set now, one bit per capability number. */
int caps_effective(uint64_t *eff);

#endif
