// SPDX-License-Identifier: MIT
/*
 * control - the agent's Unix control socket and the `wgpunch status` client.
 *
 * One request line in, one JSON document out, then the agent closes. A
 * client that says nothing within CONTROL_CLIENT_TIMEOUT_MS is dropped, and
 * at most CONTROL_MAX_CLIENTS are served at once, so a stuck client can
 * never tie up the agent.
 */
#include "wgpunch/control.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wgpunch/log.h"

#define CONTROL_MAX_CLIENTS 16
#define CONTROL_CLIENT_TIMEOUT_MS 2000
#define CONTROL_QUERY_TIMEOUT_S 5

/* Lives until the listening pipe's close callback: libuv holds a pointer into it until then. */
struct control_server {
	uv_pipe_t pipe;
	char *path;
	dev_t dev; /* the socket file we bound, so stopping never unlinks another agent's */
	ino_t ino;
	control_status_fn status;
	void *arg;
	unsigned int clients;
	struct control_client *client_list; /* open connections, closed by control_stop() */
};

struct control_client {
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t write_req;
	struct control_server *srv;
	struct control_client *next, **pprev; /* in srv->client_list */
	char request[CONTROL_MAX_REQUEST];
	size_t request_len;
	char *reply;
	int closing; /* close callbacks still pending */
	bool answered;
};

static void control_client_on_closed(uv_handle_t *h)
{
	struct control_client *cl = h->data;

	if (--cl->closing == 0) {
		free(cl->reply);
		free(cl);
	}
}

static void control_client_close(struct control_client *cl)
{
	if (cl->closing)
		return;
	cl->closing = 2;
	/* Unlinked now, so control_stop() never sees a client that is going away. */
	*cl->pprev = cl->next;
	if (cl->next)
		cl->next->pprev = cl->pprev;
	cl->srv->clients--;
	uv_close((uv_handle_t *)&cl->pipe, control_client_on_closed);
	uv_close((uv_handle_t *)&cl->timer, control_client_on_closed);
}

static void control_client_on_timeout(uv_timer_t *t)
{
	control_client_close(t->data);
}

static void control_client_on_written(uv_write_t *req, int status)
{
	control_client_close(req->data);
}

enum control_request control_parse_request(const char *buf, size_t len, bool eof)
{
	const char *nl = memchr(buf, '\n', len);
	size_t line;

	if (nl)
		line = (size_t)(nl - buf);
	else if (eof && len > 0)
		line = len; /* EOF without a newline still ends a request */
	else if (eof || len >= CONTROL_MAX_REQUEST - 1)
		return CONTROL_REQ_DROP;
	else
		return CONTROL_REQ_MORE;
	if (line > 0 && buf[line - 1] == '\r')
		line--;
	/* Compared with its length: a NUL inside the line makes it another request. */
	if (line == 6 && memcmp(buf, "status", 6) == 0)
		return CONTROL_REQ_STATUS;
	return CONTROL_REQ_UNKNOWN;
}

static void control_client_answer(struct control_client *cl, enum control_request req)
{
	struct control_server *srv = cl->srv;
	cJSON *doc = NULL;
	uv_buf_t buf;
	int r;

	cl->answered = true;
	uv_read_stop((uv_stream_t *)&cl->pipe);
	if (req == CONTROL_REQ_STATUS)
		doc = srv->status(srv->arg);
	if (!doc) {
		doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "error", "unknown request");
	}
	cl->reply = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (!cl->reply) {
		control_client_close(cl);
		return;
	}
	/* The document ends with a newline so line-based readers see its end. */
	size_t len = strlen(cl->reply);
	char *grown = realloc(cl->reply, len + 2);

	if (!grown) {
		control_client_close(cl);
		return;
	}
	cl->reply = grown;
	memcpy(cl->reply + len, "\n", 2);
	buf = uv_buf_init(cl->reply, (unsigned int)len + 1);
	cl->write_req.data = cl;
	r = uv_write(&cl->write_req, (uv_stream_t *)&cl->pipe, &buf, 1, control_client_on_written);
	if (r < 0)
		control_client_close(cl);
}

static void control_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct control_client *cl = h->data;
	size_t room = sizeof(cl->request) - 1 - cl->request_len;

	*buf = uv_buf_init(cl->request + cl->request_len, (unsigned int)room);
}

static void control_client_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct control_client *cl = s->data;
	enum control_request req;

	if (cl->answered)
		return;
	if (nread < 0 && nread != UV_EOF) {
		control_client_close(cl);
		return;
	}
	if (nread > 0)
		cl->request_len += (size_t)nread;
	req = control_parse_request(cl->request, cl->request_len, nread == UV_EOF);
	if (req == CONTROL_REQ_DROP)
		control_client_close(cl);
	else if (req != CONTROL_REQ_MORE)
		control_client_answer(cl, req);
}

static void control_on_connection(uv_stream_t *server, int status)
{
	struct control_server *srv = server->data;
	struct control_client *cl;

	if (status < 0) {
		log_warn_errno(status, "control socket %s: accept failed", srv->path);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return;
	cl->srv = srv;
	uv_pipe_init(server->loop, &cl->pipe, 0);
	uv_timer_init(server->loop, &cl->timer);
	cl->pipe.data = cl->timer.data = cl;
	cl->next = srv->client_list;
	if (cl->next)
		cl->next->pprev = &cl->next;
	cl->pprev = &srv->client_list;
	srv->client_list = cl;
	srv->clients++;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 || srv->clients > CONTROL_MAX_CLIENTS) {
		control_client_close(cl);
		return;
	}
	uv_timer_start(&cl->timer, control_client_on_timeout, CONTROL_CLIENT_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&cl->pipe, control_client_alloc, control_client_on_read);
}

/* mkdir -p for the socket's folder, so the default /run/wgpunch just works. */
static int control_make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	if (strlen(path) >= sizeof(dir))
		return -ENAMETOOLONG;
	strcpy(dir, path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * A socket file left by a crashed agent is removed; one that still answers
 * belongs to a running agent, and starting a second one on it is an error.
 */
static int control_clear_stale(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	/* Non-blocking: a live agent whose backlog is full must not hang our start-up. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ? -errno : 0;
	close(fd);
	if (r == 0 || r == -EAGAIN)
		return -EADDRINUSE;
	if (r != -ECONNREFUSED && r != -ENOENT)
		return r;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static void control_server_free(struct control_server *srv)
{
	free(srv->path);
	free(srv);
}

static void control_server_on_closed(uv_handle_t *h)
{
	control_server_free(h->data);
}

static void control_log_start_error(int err, const char *path)
{
	if (err == -EADDRINUSE)
		log_err("control socket %s is already in use by a running agent", path);
	else if (err == -EEXIST)
		log_err("control socket %s exists and is not a socket", path);
	else
		log_err_errno(err, "cannot listen on control socket %s", path);
}

int control_start(struct control *ctl, uv_loop_t *loop, const char *path, control_status_fn fn,
		  void *arg)
{
	struct control_server *srv;
	struct stat st;
	int r;

	ctl->srv = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv || !(srv->path = strdup(path))) {
		free(srv);
		control_log_start_error(-ENOMEM, path);
		return -ENOMEM;
	}
	srv->status = fn;
	srv->arg = arg;
	r = control_make_parent(path);
	if (r >= 0)
		r = control_clear_stale(path);
	if (r < 0) {
		control_log_start_error(r, path);
		control_server_free(srv);
		return r;
	}
	uv_pipe_init(loop, &srv->pipe, 0);
	srv->pipe.data = srv;
	r = uv_pipe_bind(&srv->pipe, path);
	if (r >= 0) {
		/* Status shows keys and endpoints: root and the socket's group only. */
		chmod(path, 0660);
		if (lstat(path, &st) == 0) {
			srv->dev = st.st_dev;
			srv->ino = st.st_ino;
		}
		r = uv_listen((uv_stream_t *)&srv->pipe, 8, control_on_connection);
		if (r < 0)
			unlink(path);
	}
	if (r < 0) {
		control_log_start_error(r, path);
		uv_close((uv_handle_t *)&srv->pipe, control_server_on_closed);
		return r;
	}
	ctl->srv = srv;
	log_debug("control socket listening at %s", path);
	return 0;
}

void control_stop(struct control *ctl)
{
	struct control_server *srv = ctl->srv;
	struct stat st;

	if (!srv)
		return;
	ctl->srv = NULL;
	while (srv->client_list)
		control_client_close(srv->client_list);
	/* Another agent may have replaced a socket file that someone deleted: leave that one. */
	if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
		unlink(srv->path);
	uv_close((uv_handle_t *)&srv->pipe, control_server_on_closed);
}

const char *control_path(const struct control *ctl)
{
	return ctl->srv ? ctl->srv->path : NULL;
}

char *control_query(const char *path, int *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CONTROL_QUERY_TIMEOUT_S };
	char *reply = NULL;
	size_t len = 0, cap = 0;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) {
		*err = -errno;
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *grown = realloc(reply, cap + 65536);

			if (!grown) {
				*err = -ENOMEM;
				goto fail;
			}
			reply = grown;
			cap += 65536;
		}
		n = recv(fd, reply + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len == 0) {
		free(reply);
		*err = -ECONNRESET;
		return NULL;
	}
	reply[len] = '\0';
	*err = 0;
	return reply;
fail:
	close(fd);
	free(reply);
	return NULL;
}

static const char *control_str(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(v) ? v->valuestring : "-";
}

static double control_num(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* "12s ago", "3m ago", "never": what an operator wants at a glance. */
static void control_format_age(double unix_s, char *buf, size_t cap)
{
	double d;
	long ago;

	if (!(unix_s > 0)) {
		snprintf(buf, cap, "never");
		return;
	}
	/* In double: the agent's number may be any size, and converting one that does not fit
	 * a time_t is undefined (the fuzzer sent 1.76e34). A million years is "long ago". */
	d = (double)time(NULL) - unix_s;
	ago = d <= 0 ? 0 : d < 3.2e13 ? (long)d : (long)3.2e13;
	if (ago < 120)
		snprintf(buf, cap, "%lds ago", ago);
	else if (ago < 7200)
		snprintf(buf, cap, "%ldm ago", ago / 60);
	else
		snprintf(buf, cap, "%ldh ago", ago / 3600);
}

/* Colour only on a terminal, and never with NO_COLOR set (https://no-color.org), like wg. */
static bool control_colour(FILE *out)
{
	const char *nc = getenv("NO_COLOR");

	return isatty(fileno(out)) && !(nc && *nc);
}

static void control_print_node(const cJSON *st, FILE *out)
{
	const cJSON *nat = cJSON_GetObjectItemCaseSensitive(st, "nat");
	const cJSON *item;
	bool colour = control_colour(out);
	const char *on = colour ? "\033[33m" : "", *off = colour ? "\033[0m" : "";

	fprintf(out, "node: interface %s (%s backend), listen port %.0f\n",
		control_str(st, "interface"), control_str(st, "backend"),
		control_num(st, "listen_port"));
	fprintf(out, "  public key: %s\n", control_str(st, "public_key"));
	if (cJSON_IsObject(nat))
		fprintf(out, "  nat: mapping %s, %s mapping, filter %s\n",
			control_str(nat, "mapping"), control_str(nat, "mapping_type"),
			control_str(nat, "filter"));
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(st, "coordinators"))
	{
		fprintf(out, "  coordinator %s:%.0f (%s): %s\n", control_str(item, "host"),
			control_num(item, "port"), control_str(item, "address"),
			control_str(item, "state"));
	}
	fprintf(out, "\n  %-46s %-7s %-47s %s\n", "PEER", "PATH", "ENDPOINT", "HANDSHAKE");
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(st, "peers"))
	{
		const char *reason =
			cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "reason"));
		const char *path = control_str(item, "path");
		const char *pc = !colour ? "" : strcmp(path, "none") ? "\033[32m" : "\033[31m";
		char age[32];

		control_format_age(control_num(item, "latest_handshake"), age, sizeof(age));
		/* The padding is counted without the escape codes, so they go around it. */
		fprintf(out, "  %-46s %s%-7s%s %-47s %s\n", control_str(item, "public_key"), pc,
			path, colour ? "\033[0m" : "", control_str(item, "endpoint"), age);
		if (reason)
			fprintf(out, "    %swhy: %s%s [%s]\n", on, control_str(item, "reason_text"),
				off, reason);
	}
}

static void control_print_coordinator(const cJSON *st, FILE *out)
{
	const cJSON *item;

	fprintf(out, "coordinator: public key %s\n", control_str(st, "public_key"));
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(st, "listen"))
	{
		fprintf(out, "  listen %s (probes also on %s)\n", control_str(item, "address"),
			control_str(item, "probe_address"));
	}
	fprintf(out, "  nodes registered: %.0f, pending punches: %.0f\n", control_num(st, "nodes"),
		control_num(st, "pending_punches"));
	item = cJSON_GetObjectItemCaseSensitive(st, "counters");
	if (cJSON_IsObject(item)) {
		const cJSON *c;

		fprintf(out, "  counters:\n");
		cJSON_ArrayForEach(c, item)
		{
			if (cJSON_IsNumber(c))
				fprintf(out, "    %-28s %.0f\n", c->string, c->valuedouble);
		}
	}
}

void control_print_table(const cJSON *status, FILE *out)
{
	const char *role = control_str(status, "role");

	if (strcmp(role, "node") == 0)
		control_print_node(status, out);
	else if (strcmp(role, "coordinator") == 0)
		control_print_coordinator(status, out);
	else
		fprintf(out, "unknown agent role '%s'\n", role);
}
