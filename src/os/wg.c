// SPDX-License-Identifier: MIT
/*
 * wg - the backend choice, the request queue and the update-only set logic
 * shared by both backends (wg_nl.c for the kernel, wg_uapi.c for userspace).
 */
#include "wgpunch/wg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "wgpunch/log.h"
#include "wgpunch/wg_nl.h"
#include "wgpunch/wg_uapi.h"

struct wg_req {
	struct wg_req *next;
	bool is_set;
	bool writing; /* a set: the device was read, the write is under way */
	bool missing; /* a set: some peer did not exist */
	wg_get_cb get_cb;
	wg_set_cb set_cb;
	void *arg;
	struct wg_peer_update *updates; /* as given */
	size_t n;
	struct wg_peer_update *existing; /* the subset the device has */
	size_t n_existing;
};

struct wg {
	enum wg_backend backend;
	char ifname[CONFIG_IFNAMSIZ];
	struct wg_nl_io *nl;
	struct wg_uapi_io *uapi;
	uv_timer_t kick;     /* starts queued requests from the loop, never from the caller */
	uv_timer_t deadline; /* runs while a request is under way: it fails it when it fires */
	unsigned int timeout_ms;
	struct wg_req *head, *tail;
	bool busy;
	bool closing;
	unsigned int pending_closes;
};

/* ---------------------------------------------------------------- device helpers */

/* Arrays grow by doubling: the capacity is implied by n (the next power of two). */
static void *grow(void *p, size_t n, size_t size)
{
	size_t cap;

	if (n && (n & (n - 1)))
		return p; /* room left */
	cap = n ? 2 * n : 1;
	if (cap > SIZE_MAX / size)
		return NULL;
	return realloc(p, cap * size);
}

struct wg_peer *wg_device_add_peer(struct wg_device *dev)
{
	struct wg_peer *peers = grow(dev->peers, dev->n_peers, sizeof(*peers));

	if (!peers)
		return NULL;
	dev->peers = peers;
	memset(&peers[dev->n_peers], 0, sizeof(peers[0]));
	return &peers[dev->n_peers++];
}

struct wg_allowed_ip *wg_peer_add_allowed_ip(struct wg_peer *p)
{
	struct wg_allowed_ip *ips = grow(p->allowed_ips, p->n_allowed_ips, sizeof(*ips));

	if (!ips)
		return NULL;
	p->allowed_ips = ips;
	memset(&ips[p->n_allowed_ips], 0, sizeof(ips[0]));
	return &ips[p->n_allowed_ips++];
}

void wg_device_free(struct wg_device *dev)
{
	if (!dev)
		return;
	for (size_t i = 0; i < dev->n_peers; i++)
		free(dev->peers[i].allowed_ips);
	free(dev->peers);
	/* The private key must not linger in freed memory (a plain memset
	 * before free() may be optimised away). */
	sodium_memzero(dev, sizeof(*dev));
	free(dev);
}

const struct wg_peer *wg_device_find_peer(const struct wg_device *dev, const uint8_t key[KEY_LEN])
{
	for (size_t i = 0; i < dev->n_peers; i++) {
		if (!memcmp(dev->peers[i].public_key, key, KEY_LEN))
			return &dev->peers[i];
	}
	return NULL;
}

const char *wg_backend_name(enum wg_backend b)
{
	return b == WG_BACKEND_KERNEL ? "kernel" : b == WG_BACKEND_USERSPACE ? "userspace" : "?";
}

enum wg_backend wg_backend_of(const struct wg *wg)
{
	return wg->backend;
}

/* ---------------------------------------------------------------- open */

/* A kernel WireGuard link says DEVTYPE=wireguard in its uevent. */
static bool is_kernel_wireguard(const char *ifname)
{
	char path[96], line[128];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/uevent", ifname);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = !strcmp(line, "DEVTYPE=wireguard\n");
	fclose(f);
	return found;
}

static bool uapi_socket_exists(const char *ifname)
{
	char path[128];
	struct stat st;

	return wg_uapi_socket_path(ifname, path, sizeof(path)) == 0 && stat(path, &st) == 0 &&
	       S_ISSOCK(st.st_mode);
}

static void wg_on_handle_closed(void *arg)
{
	struct wg *wg = arg;

	if (--wg->pending_closes == 0)
		free(wg);
}

static void wg_on_timer_closed(uv_handle_t *h)
{
	wg_on_handle_closed(h->data);
}

static void wg_on_kick(uv_timer_t *t);

/* The backend is chosen; path is the UAPI socket (userspace only). */
static int wg_new(uv_loop_t *loop, const char *ifname, enum wg_backend b, const char *path,
		  struct wg **out, char *err, size_t err_cap)
{
	struct wg *wg = calloc(1, sizeof(*wg));
	int r;

	if (!wg) {
		snprintf(err, err_cap, "%s: out of memory", ifname);
		return -ENOMEM;
	}
	wg->backend = b;
	wg->timeout_ms = WG_REQUEST_TIMEOUT_MS;
	snprintf(wg->ifname, sizeof(wg->ifname), "%s", ifname);
	if (b == WG_BACKEND_KERNEL)
		r = wg_nl_io_open(loop, ifname, &wg->nl);
	else
		r = wg_uapi_io_open(loop, path, &wg->uapi);
	if (r < 0) {
		snprintf(err, err_cap, "%s: cannot open the %s WireGuard backend: %s", ifname,
			 wg_backend_name(b), strerror(-r));
		free(wg);
		return r;
	}
	uv_timer_init(loop, &wg->kick);
	uv_timer_init(loop, &wg->deadline);
	wg->kick.data = wg->deadline.data = wg;
	*out = wg;
	return 0;
}

static bool ifname_valid(const char *ifname, char *err, size_t err_cap)
{
	if (!ifname[0] || strlen(ifname) >= CONFIG_IFNAMSIZ || strchr(ifname, '/')) {
		snprintf(err, err_cap, "'%s' is not a valid interface name", ifname);
		return false;
	}
	return true;
}

int wg_open(uv_loop_t *loop, const char *ifname, enum config_backend backend, struct wg **out,
	    char *err, size_t err_cap)
{
	char path[128] = "";
	enum wg_backend b;
	int r;

	if (!ifname_valid(ifname, err, err_cap))
		return -EINVAL;
	/*
	 * An explicit backend is checked up front too, so a missing interface
	 * is one clear start-up error rather than a failed first request.
	 */
	if (backend == CONFIG_BACKEND_KERNEL) {
		if (!is_kernel_wireguard(ifname)) {
			snprintf(err, err_cap,
				 "%s is not a kernel WireGuard link (backend = kernel)", ifname);
			return -ENODEV;
		}
		b = WG_BACKEND_KERNEL;
	} else if (backend == CONFIG_BACKEND_USERSPACE) {
		if (!uapi_socket_exists(ifname)) {
			snprintf(err, err_cap,
				 "%s: no UAPI socket %s/%s.sock (backend = userspace)", ifname,
				 WG_UAPI_DIR, ifname);
			return -ENODEV;
		}
		b = WG_BACKEND_USERSPACE;
	} else if (is_kernel_wireguard(ifname)) {
		b = WG_BACKEND_KERNEL;
	} else if (uapi_socket_exists(ifname)) {
		b = WG_BACKEND_USERSPACE;
	} else {
		snprintf(err, err_cap,
			 "%s is not a WireGuard interface: not a kernel WireGuard link and no "
			 "UAPI socket %s/%s.sock",
			 ifname, WG_UAPI_DIR, ifname);
		return -ENODEV;
	}
	if (b == WG_BACKEND_USERSPACE) {
		r = wg_uapi_socket_path(ifname, path, sizeof(path));
		if (r < 0) {
			snprintf(err, err_cap, "%s: cannot open the %s WireGuard backend: %s",
				 ifname, wg_backend_name(b), strerror(-r));
			return r;
		}
	}
	return wg_new(loop, ifname, b, path, out, err, err_cap);
}

int wg_open_uapi_path(uv_loop_t *loop, const char *ifname, const char *path, struct wg **out,
		      char *err, size_t err_cap)
{
	if (!ifname_valid(ifname, err, err_cap))
		return -EINVAL;
	return wg_new(loop, ifname, WG_BACKEND_USERSPACE, path, out, err, err_cap);
}

void wg_set_timeout_ms(struct wg *wg, unsigned int timeout_ms)
{
	wg->timeout_ms = timeout_ms ? timeout_ms : WG_REQUEST_TIMEOUT_MS;
}

/* ---------------------------------------------------------------- queue */

static void req_free(struct wg_req *req)
{
	free(req->updates);
	free(req->existing);
	free(req);
}

static void wg_on_io(void *arg, int status, struct wg_device *dev);

static int backend_get(struct wg *wg)
{
	if (wg->nl)
		return wg_nl_io_get(wg->nl, wg_on_io, wg);
	return wg_uapi_io_get(wg->uapi, wg_on_io, wg);
}

static int backend_set(struct wg *wg, const struct wg_peer_update *u, size_t n)
{
	if (wg->nl)
		return wg_nl_io_set(wg->nl, u, n, wg_on_io, wg);
	return wg_uapi_io_set(wg->uapi, u, n, wg_on_io, wg);
}

static void backend_abort(struct wg *wg)
{
	if (wg->nl)
		wg_nl_io_abort(wg->nl);
	else
		wg_uapi_io_abort(wg->uapi);
}

static void run_queue(struct wg *wg);
static void wg_on_deadline(uv_timer_t *t);

/* Pops the head request and reports to its owner; may run the next one. */
static void complete(struct wg *wg, int status, struct wg_device *dev)
{
	struct wg_req *req = wg->head;

	wg->head = req->next;
	if (!wg->head)
		wg->tail = NULL;
	wg->busy = false;
	uv_timer_stop(&wg->deadline);
	if (req->is_set)
		req->set_cb(wg, status, req->arg);
	else
		req->get_cb(wg, status, dev, req->arg);
	req_free(req);
	/* The callback may have closed wg: then it only waits for its close callbacks. */
	if (!wg->closing)
		run_queue(wg);
}

/* Starts the head request. A synchronous failure completes it, which recurses once per
 * queued request at most. */
static void run_queue(struct wg *wg)
{
	int r;

	if (!wg->head || wg->busy || wg->closing)
		return;
	r = backend_get(wg); /* a set reads the device first, too */
	if (r < 0) {
		complete(wg, r, NULL);
		return;
	}
	wg->busy = true;
	/* One deadline for the whole request (a set's read and its writes): a userspace
	 * WireGuard that accepts and never answers must not stall the queue for good. */
	/* The loop's cached time may be old (the loop was busy before this request came):
	 * start the deadline from now, not from the last loop iteration. */
	uv_update_time(wg->deadline.loop);
	uv_timer_start(&wg->deadline, wg_on_deadline, wg->timeout_ms, 0);
}

/* A set, once the device is read: only the peers it has are written. */
static int start_write(struct wg *wg, struct wg_req *req, const struct wg_device *dev)
{
	req->existing = calloc(req->n, sizeof(*req->existing));
	if (!req->existing)
		return -ENOMEM;
	for (size_t i = 0; i < req->n; i++) {
		if (wg_device_find_peer(dev, req->updates[i].public_key))
			req->existing[req->n_existing++] = req->updates[i];
		else
			req->missing = true;
	}
	if (req->n_existing == 0)
		return -ENOENT;
	req->writing = true;
	return backend_set(wg, req->existing, req->n_existing);
}

static void wg_on_io(void *arg, int status, struct wg_device *dev)
{
	struct wg *wg = arg;
	struct wg_req *req = wg->head;
	int r;

	if (!req->is_set) {
		complete(wg, status, dev);
		return;
	}
	if (req->writing) {
		complete(wg, status < 0 ? status : req->missing ? -ENOENT : 0, NULL);
		return;
	}
	r = status < 0 ? status : start_write(wg, req, dev);
	wg_device_free(dev);
	if (r < 0)
		complete(wg, r, NULL);
}

/* The backend's I/O for the request is abandoned (its callback never fires), so the
 * owner hears exactly once, and the next request starts on a clean connection. */
static void wg_on_deadline(uv_timer_t *t)
{
	struct wg *wg = t->data;

	if (!wg->busy)
		return;
	log_debug("%s: %s WireGuard did not answer within %u ms: request abandoned", wg->ifname,
		  wg_backend_name(wg->backend), wg->timeout_ms);
	backend_abort(wg);
	complete(wg, -ETIMEDOUT, NULL);
}

static void wg_on_kick(uv_timer_t *t)
{
	run_queue(t->data);
}

static void enqueue(struct wg *wg, struct wg_req *req)
{
	if (wg->tail)
		wg->tail->next = req;
	else
		wg->head = req;
	wg->tail = req;
	if (!wg->busy)
		uv_timer_start(&wg->kick, wg_on_kick, 0, 0);
}

int wg_get_device(struct wg *wg, wg_get_cb cb, void *arg)
{
	struct wg_req *req;

	if (wg->closing)
		return -ESHUTDOWN;
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->get_cb = cb;
	req->arg = arg;
	enqueue(wg, req);
	return 0;
}

int wg_set_peers(struct wg *wg, const struct wg_peer_update *updates, size_t n, wg_set_cb cb,
		 void *arg)
{
	struct wg_req *req;

	if (wg->closing)
		return -ESHUTDOWN;
	if (n == 0 || n > SIZE_MAX / sizeof(*updates))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int fam = addr_family(&updates[i].endpoint);

		if ((updates[i].flags & WG_UPDATE_ENDPOINT) && fam != AF_INET && fam != AF_INET6)
			return -EINVAL;
	}
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->updates = malloc(n * sizeof(*updates));
	if (!req->updates) {
		free(req);
		return -ENOMEM;
	}
	memcpy(req->updates, updates, n * sizeof(*updates));
	req->n = n;
	req->is_set = true;
	req->set_cb = cb;
	req->arg = arg;
	enqueue(wg, req);
	return 0;
}

void wg_close(struct wg *wg)
{
	struct wg_req *req, *next;

	if (!wg || wg->closing)
		return;
	wg->closing = true;
	/* Queued requests end silently; the one a backend runs is abandoned with it. */
	for (req = wg->head; req; req = next) {
		next = req->next;
		req_free(req);
	}
	wg->head = wg->tail = NULL;
	wg->pending_closes = 3;
	if (wg->nl)
		wg_nl_io_close(wg->nl, wg_on_handle_closed, wg);
	else
		wg_uapi_io_close(wg->uapi, wg_on_handle_closed, wg);
	uv_close((uv_handle_t *)&wg->kick, wg_on_timer_closed);
	uv_close((uv_handle_t *)&wg->deadline, wg_on_timer_closed);
}
