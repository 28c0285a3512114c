/* SPDX-License-Identifier: MIT */
/*
 * status - pieces of the status document that every role shares. The roles
 * build their own documents (node.c, coord.c) from these; `wgpunch status`
 * prints them (docs/status-json.md).
 */
#ifndef WGPUNCH_STATUS_H
#define WGPUNCH_STATUS_H

#include <cJSON.h>

#include "wgpunch/counters.h"

/*
 * Adds every counter of table t, read from the struct at base, to obj as a number named after
 * the counter. Returns obj, or NULL if memory ran out (obj is then left as far as it got).
 */
cJSON *status_add_counters(cJSON *obj, const struct counter_table *t, const void *base);

#endif
