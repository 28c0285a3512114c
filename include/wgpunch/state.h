/* SPDX-License-Identifier: MIT */
/*
 * state - the coordinator's state file (`state_file`): written when the coordinator stops,
 * read and removed when it starts, so that a planned restart keeps every session and
 * registration (the format and what it keeps: coord_state.h). Blocking file I/O, done only
 * at start and stop, outside the loop's work.
 *
 * The file holds session keys: it is written mode 0600 through a temporary file and rename(),
 * and read only if it is a regular file owned by this user and closed to group and others.
 * It is read once: removed right after, so that a send counter is never restored twice. A
 * file older than COORD_STATE_MAX_AGE_S is removed unread: by then every node has made a new
 * session.
 */
#ifndef WGPUNCH_STATE_H
#define WGPUNCH_STATE_H

#include <stdint.h>

#include "wgpunch/registry.h"
#include "wgpunch/ts_table.h"

#define COORD_STATE_MAX_AGE_S 600

struct state_result {
	uint32_t nodes;    /* records read into the registry */
	uint32_t sessions; /* of them, with their session */
	uint32_t skipped;  /* records refused (a duplicate key, registry full) */
};

/* Writes every entry of reg. 0, or -errno (logged). now_ms: reg's clock. */
int state_save(const char *path, const struct registry *reg, const struct ts_table *ts,
	       const uint8_t priv[KEY_LEN], const uint8_t pub[KEY_LEN], uint64_t now_ms);

/*
 * Reads path into an empty reg and ts, then removes it. 0 with res filled (no file: 0 and
 * nothing read), or -errno (logged: a broken or foreign file, removed if it was ours to read;
 * what was read before the fault stays).
 */
int state_load(const char *path, struct registry *reg, struct ts_table *ts,
	       const uint8_t priv[KEY_LEN], const uint8_t pub[KEY_LEN], uint64_t now_ms,
	       struct state_result *res);

#endif
