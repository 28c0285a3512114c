/* SPDX-License-Identifier: MIT */
/*
 * wgtool - drives the wg module from the command line for the end-to-end
 * tests (netns with wireguard-go, QEMU with kernel WireGuard).
 *
 *   wgtool [--backend auto|kernel|userspace] IFACE get
 *   wgtool [--backend ...] IFACE set PEERKEY ENDPOINT|- KEEPALIVE|- [PEERKEY ENDPOINT KEEPALIVE...]
 *
 * get prints the device like `wg show IFACE dump` without the preshared key
 * column, so tests can compare the two with cut(1):
 *   PRIVATE-KEY|(none) PUBLIC-KEY LISTEN-PORT FWMARK|off
 *   PUBLIC-KEY ENDPOINT|(none) ALLOWED-IPS|(none) LATEST-HANDSHAKE RX TX KEEPALIVE|off
 * set writes every listed peer in one wg_set_peers() call ("-" leaves a field
 * alone). Exit status: 0, 1 on failure, 3 when some peer did not exist
 * (-ENOENT: the others were written), 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/wg.h"

struct tool {
	int exit_code;
};

static void print_allowed_ips(const struct wg_peer *p)
{
	char ip[INET6_ADDRSTRLEN];

	if (!p->n_allowed_ips) {
		printf("(none)");
		return;
	}
	for (size_t i = 0; i < p->n_allowed_ips; i++) {
		const struct wg_allowed_ip *a = &p->allowed_ips[i];

		inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->ip4 : &a->ip6, ip,
			  sizeof(ip));
		printf("%s%s/%u", i ? "," : "", ip, a->cidr);
	}
}

static void print_device(const struct wg_device *dev)
{
	char b64[KEY_B64_LEN + 1], ep[ADDR_STRLEN];

	if (dev->has_private_key) {
		key_to_base64(b64, dev->private_key);
		printf("%s\t", b64);
		key_to_base64(b64, dev->public_key);
		printf("%s\t", b64);
	} else {
		printf("(none)\t(none)\t");
	}
	printf("%u\t", dev->listen_port);
	if (dev->fwmark)
		printf("0x%x\n", dev->fwmark);
	else
		printf("off\n");
	for (size_t i = 0; i < dev->n_peers; i++) {
		const struct wg_peer *p = &dev->peers[i];

		key_to_base64(b64, p->public_key);
		printf("%s\t%s\t", b64,
		       addr_is_set(&p->endpoint) ? addr_format(&p->endpoint, ep) : "(none)");
		print_allowed_ips(p);
		printf("\t%lld\t%llu\t%llu\t", (long long)p->last_handshake_s,
		       (unsigned long long)p->rx_bytes, (unsigned long long)p->tx_bytes);
		if (p->keepalive_s)
			printf("%u\n", p->keepalive_s);
		else
			printf("off\n");
	}
}

static void on_get(struct wg *wg, int status, struct wg_device *dev, void *arg)
{
	struct tool *t = arg;

	if (status < 0) {
		fprintf(stderr, "wgtool: get: %s\n", strerror(-status));
		t->exit_code = 1;
	} else {
		print_device(dev);
		t->exit_code = 0;
	}
	wg_device_free(dev);
	wg_close(wg);
}

static void on_set(struct wg *wg, int status, void *arg)
{
	struct tool *t = arg;

	if (status == -ENOENT) {
		fprintf(stderr, "wgtool: set: some peers do not exist (not created)\n");
		t->exit_code = 3;
	} else if (status < 0) {
		fprintf(stderr, "wgtool: set: %s\n", strerror(-status));
		t->exit_code = 1;
	} else {
		t->exit_code = 0;
	}
	wg_close(wg);
}

static int parse_updates(char **argv, int argc, struct wg_peer_update *u)
{
	for (int i = 0; i < argc / 3; i++) {
		char **a = argv + 3 * i;
		char *end;

		memset(&u[i], 0, sizeof(u[i]));
		if (key_from_base64(u[i].public_key, a[0]) < 0) {
			fprintf(stderr, "wgtool: bad key '%s'\n", a[0]);
			return -EINVAL;
		}
		if (strcmp(a[1], "-")) {
			if (addr_parse(&u[i].endpoint, a[1], false) < 0) {
				fprintf(stderr, "wgtool: bad endpoint '%s'\n", a[1]);
				return -EINVAL;
			}
			u[i].flags |= WG_UPDATE_ENDPOINT;
		}
		if (strcmp(a[2], "-")) {
			unsigned long ka = strtoul(a[2], &end, 10);

			if (*end || !*a[2] || ka > 65535) {
				fprintf(stderr, "wgtool: bad keepalive '%s'\n", a[2]);
				return -EINVAL;
			}
			u[i].keepalive_s = (uint16_t)ka;
			u[i].flags |= WG_UPDATE_KEEPALIVE;
		}
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: wgtool [--backend auto|kernel|userspace] IFACE get\n"
		"       wgtool [--backend ...] IFACE set PEERKEY ENDPOINT|- KEEPALIVE|- ...\n");
	return 2;
}

int main(int argc, char **argv)
{
	enum config_backend backend = CONFIG_BACKEND_AUTO;
	struct wg_peer_update *updates = NULL;
	struct tool t = { .exit_code = 1 };
	char err[256];
	uv_loop_t loop;
	struct wg *wg;
	int i = 1, r;

	if (argc > 2 && !strcmp(argv[1], "--backend")) {
		if (!strcmp(argv[2], "kernel"))
			backend = CONFIG_BACKEND_KERNEL;
		else if (!strcmp(argv[2], "userspace"))
			backend = CONFIG_BACKEND_USERSPACE;
		else if (strcmp(argv[2], "auto"))
			return usage();
		i = 3;
	}
	if (argc - i < 2)
		return usage();
	bool is_get = !strcmp(argv[i + 1], "get");
	int n_args = argc - i - 2;
	if ((is_get && n_args) ||
	    (!is_get && (strcmp(argv[i + 1], "set") || n_args == 0 || n_args % 3)))
		return usage();
	if (!is_get) {
		updates = calloc((size_t)n_args / 3, sizeof(*updates));
		if (!updates || parse_updates(argv + i + 2, n_args, updates) < 0)
			return 2;
	}

	uv_loop_init(&loop);
	r = wg_open(&loop, argv[i], backend, &wg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "wgtool: %s\n", err);
		free(updates);
		uv_loop_close(&loop);
		return 1;
	}
	fprintf(stderr, "wgtool: %s backend\n", wg_backend_name(wg_backend_of(wg)));
	if (is_get)
		r = wg_get_device(wg, on_get, &t);
	else
		r = wg_set_peers(wg, updates, (size_t)n_args / 3, on_set, &t);
	free(updates); /* wg_set_peers copied it */
	if (r < 0) {
		fprintf(stderr, "wgtool: %s\n", strerror(-r));
		wg_close(wg);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Every handle must be gone: the wg module's shutdown is part of what we test. */
	if (uv_loop_close(&loop) != 0) {
		fprintf(stderr, "wgtool: handles left open on the loop\n");
		return 1;
	}
	return t.exit_code;
}
