/* SPDX-License-Identifier: MIT */
/*
 * config - the INI file (inih) to an immutable struct config.
 *
 * Nothing else reads config files. Every mistake is reported as
 * "FILE:LINE: message" (all of them, not only the first); unknown sections
 * and keys are errors. Loading does no DNS and needs no live interface, but
 * it reads key files (private_key_file, authorized_keys).
 */
#ifndef WGPUNCH_CONFIG_H
#define WGPUNCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "wgpunch/addr.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"

#define CONFIG_DEFAULT_KEEPALIVE_S 25
#define CONFIG_DEFAULT_RELAY_PORT_MIN 52000
#define CONFIG_DEFAULT_RELAY_PORT_MAX 52999
/* Relay quotas (docs/relay.md section 4); 0 in the first three means no limit. */
#define CONFIG_DEFAULT_RELAY_MAX_PER_NODE 16            /* relays a node may be a side of */
#define CONFIG_DEFAULT_RELAY_PAIR_PPS 100000            /* per pair, both directions */
#define CONFIG_DEFAULT_RELAY_PAIR_BYTES_PER_S 104857600 /* 100 MiB, per pair, both directions */
#define CONFIG_DEFAULT_RELAY_IDLE_TIMEOUT_S 180 /* no forwarded datagram: keepalives stopped */
#define CONFIG_DEFAULT_MAX_NODES 1048576u
/* Half a core for handshakes; a re-key every hour: 1M nodes need ~280 handshakes a second, a
 * tenth of a core, so that with the refreshes 1M nodes fit in half a core (docs/operations.md,
 * "Sizing the coordinator"). */
#define CONFIG_DEFAULT_HANDSHAKE_CPU 50
#define CONFIG_DEFAULT_REKEY_INTERVAL_S 3600
#define CONFIG_RUN_DIR "/run/wgpunch"
#define CONFIG_IFNAMSIZ 16

enum config_role {
	CONFIG_ROLE_NONE = 0,
	CONFIG_ROLE_NODE,
	CONFIG_ROLE_COORDINATOR,
};

enum config_backend {
	CONFIG_BACKEND_AUTO = 0,
	CONFIG_BACKEND_KERNEL,
	CONFIG_BACKEND_USERSPACE,
};

/* One `coordinator = HOST:PORT PUBKEY` line. host is a literal or a DNS name. */
struct config_coordinator {
	char *host;
	uint16_t port;
	uint8_t public_key[KEY_LEN];
};

struct config_node {
	char interface[CONFIG_IFNAMSIZ];
	struct config_coordinator *coordinators;
	size_t n_coordinators;
	enum config_backend backend;
	uint16_t keepalive_s; /* 1-65535 */
	bool relay;
	char *control_socket; /* default CONFIG_RUN_DIR "/<interface>.sock" */
};

struct config_coordinator_role {
	struct addr *listen; /* IP literals with port; each port + 1 is also bound */
	size_t n_listen;
	char *private_key_file; /* resolved against the config file's folder */
	uint8_t private_key[KEY_LEN];
	uint8_t public_key[KEY_LEN];
	char *authorized_keys_file;          /* NULL: any key may register */
	uint8_t (*authorized_keys)[KEY_LEN]; /* sorted, for config_key_authorized() */
	size_t n_authorized_keys;
	bool relay;
	uint16_t relay_port_min, relay_port_max;
	uint16_t relay_max_per_node;     /* 0: no limit */
	uint32_t relay_pair_pps;         /* 0: no limit */
	uint32_t relay_pair_bytes_per_s; /* 0: no limit */
	uint32_t relay_idle_timeout_s;
	char *control_socket;
	uint32_t max_nodes;        /* registry bound */
	uint16_t handshake_cpu;    /* percent of one core the handshake budget may use */
	uint16_t rekey_interval_s; /* nodes re-key this often (REGISTER_ACK rekey_s) */
	char *state_file; /* absolute; sessions kept across a restart (coord_state.h); NULL: none */
};

struct config {
	enum config_role role;
	char *path;               /* the file as given on the command line */
	enum log_level log_level; /* key `log_level`, both roles; default info */
	char *metrics_file;       /* key `metrics_file`, both roles, absolute; NULL: none */
	struct config_node node;
	struct config_coordinator_role coord;
};

/*
 * Loads and validates path. On success *out owns a new config. On any
 * mistake every message ("FILE:LINE: message") goes to errors, *out is left
 * NULL and -EINVAL is returned; an unreadable file gives "FILE: strerror"
 * and -errno.
 */
int config_load(const char *path, FILE *errors, struct config **out);
void config_free(struct config *c);

/* The normalised config, every key spelled out with its value; re-parses to itself. */
void config_print(const struct config *c, FILE *out);

/* true when no authorized_keys file is set, or key is listed in it. */
bool config_key_authorized(const struct config *c, const uint8_t key[KEY_LEN]);

/* The control socket path for the role in c. */
const char *config_control_socket(const struct config *c);

#endif
