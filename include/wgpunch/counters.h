/* SPDX-License-Identifier: MIT */
/*
 * counters - one declaration per counter, walked by status and metrics.
 *
 * A module declares its counters once, as an X-macro list of (name, help):
 *
 *	#define LINK_COUNTERS(X) \
 *		X(rx_datagrams, "datagrams read from the session socket") \
 *		X(rx_bad_auth, "DATA that failed to authenticate")
 *	struct link_counters { LINK_COUNTERS(COUNTER_FIELD) };
 *	COUNTER_TABLE_DECLARE(link_counters);                  (in the header)
 *
 *	#define X(name, help) COUNTER_DEF(link_counters, name, help)
 *	COUNTER_TABLE_DEFINE(link_counters, LINK_COUNTERS(X));  (in the .c)
 *	#undef X
 *
 * and the status document and the metrics file walk `link_counters_table`, so a new counter
 * is one line and shows up everywhere, with its help text. Counters only ever grow (they are
 * Prometheus counters); a value that can go down is a gauge and does not belong here.
 * Pure: no allocation, no I/O.
 */
#ifndef WGPUNCH_COUNTERS_H
#define WGPUNCH_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

struct counter_def {
	const char *name; /* a C identifier: also the JSON key and the metric's suffix */
	const char *help; /* one line, for people: the metric's HELP text */
	size_t offset;    /* of the uint64_t in its struct */
};

struct counter_table {
	const char *group; /* the struct's name, e.g. "link_counters" */
	const struct counter_def *defs;
	size_t n;
};

/* One table and the struct it describes: a role lists its groups once, and the status
 * document and the metrics file both walk that list. */
struct counter_group {
	const struct counter_table *table;
	const void *base;
};

#define COUNTER_FIELD(name, help) uint64_t name;

#define COUNTER_TABLE_DECLARE(type) extern const struct counter_table type##_table

#define COUNTER_DEF(type, name, help) { #name, help, offsetof(struct type, name) },
/* The list goes through __VA_ARGS__: its entries hold commas no parenthesis protects. */
#define COUNTER_TABLE_DEFINE(type, ...)                                                     \
	static const struct counter_def type##_defs[] = { __VA_ARGS__ };                    \
	const struct counter_table type##_table = { #type, type##_defs,                      \
						    sizeof(type##_defs) / sizeof(type##_defs[0]) }

/* The value of d in the struct at base (of the table's type). */
static inline uint64_t counter_value(const void *base, const struct counter_def *d)
{
	return *(const uint64_t *)(const void *)((const char *)base + d->offset);
}

#endif
