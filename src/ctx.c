// SPDX-License-Identifier: MIT
/*
 * ctx - the process around the role: the loop, signals, SIGHUP reload, the
 * control socket and a clean shutdown (every handle closed, loop closed).
 */
#include "wgpunch/ctx.h"

#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/caps.h"
#include "wgpunch/coord.h"
#include "wgpunch/log.h"
#include "wgpunch/node.h"

/*
 * Shutdown closes handles and lets their callbacks drain. A role that leaves
 * something pending (a hung UAPI socket, a DNS lookup) must not keep the
 * process alive past what an init system waits before SIGKILL.
 */
#define CTX_SHUTDOWN_TIMEOUT_MS 5000

static void ctx_shutdown(struct ctx *ctx, int exit_code);

static const char *ctx_role_name(enum config_role role)
{
	return role == CONFIG_ROLE_NODE ? "node" : "coordinator";
}

static cJSON *ctx_on_status(void *arg)
{
	struct ctx *ctx = arg;
	const char *path = control_path(&ctx->control);
	cJSON *doc;

	if (ctx->node)
		doc = node_status(ctx->node);
	else if (ctx->coord)
		doc = coord_status(ctx->coord);
	else
		doc = cJSON_CreateObject();
	/* Tells the documents of `wgpunch status --json` (an array) apart. */
	if (doc && path && !cJSON_HasObjectItem(doc, "control_socket"))
		cJSON_AddStringToObject(doc, "control_socket", path);
	return doc;
}

static void ctx_on_node_fatal(void *arg, int err)
{
	struct ctx *ctx = arg;

	/* The node has logged the cause (node.h); one error line is enough. */
	log_info("the node cannot go on (%s), shutting down", strerror(-err));
	ctx_shutdown(ctx, 1);
}

static int ctx_start_role(struct ctx *ctx, const struct config *conf)
{
	if (conf->role == CONFIG_ROLE_NODE)
		return node_start(&ctx->loop, conf, ctx_on_node_fatal, ctx, &ctx->node);
	return coord_start(&ctx->loop, conf, &ctx->coord);
}

/*
 * Least privilege for the coordinator once its sockets are bound: it opens nothing else that
 * needs a capability, except a port below 1024 bound again by a reload (listen ports, their
 * + 1, relay ports). The node drops its own once it knows its backend (node.c).
 */
static void ctx_coord_drop_caps(const struct config *conf)
{
	static const int bind[] = { CAP_NET_BIND_SERVICE };
	const struct config_coordinator_role *cc = &conf->coord;
	bool low = cc->relay && cc->relay_port_min < 1024;
	size_t i;
	int r;

	for (i = 0; i < cc->n_listen; i++)
		low |= addr_port(&cc->listen[i]) < 1024;
	r = caps_keep_only(bind, low ? 1 : 0);
	if (r < 0)
		log_warn_errno(r, "cannot drop capabilities; running with those it started with");
	else
		log_debug("capabilities dropped; kept: %s", low ? "CAP_NET_BIND_SERVICE" : "none");
}

static void ctx_stop_role(struct ctx *ctx)
{
	if (ctx->node)
		node_stop(ctx->node);
	if (ctx->coord)
		coord_stop(ctx->coord);
	ctx->node = NULL;
	ctx->coord = NULL;
}

static int ctx_start_control(struct ctx *ctx, struct control *ctl, const struct config *conf)
{
	return control_start(ctl, &ctx->loop, config_control_socket(conf), ctx_on_status, ctx);
}

static void ctx_close_leftover(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void ctx_log_pending(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h) && uv_is_active(h) && h != arg)
		log_err("shutdown: a %s handle is still active", uv_handle_type_name(h->type));
}

static void ctx_on_shutdown_timeout(uv_timer_t *t)
{
	struct ctx *ctx = t->data;

	log_err("shutdown did not finish within %u ms, exiting anyway", CTX_SHUTDOWN_TIMEOUT_MS);
	uv_walk(&ctx->loop, ctx_log_pending, t);
	ctx->timed_out = true;
	uv_stop(&ctx->loop);
}

/*
 * Stops the role and the control socket; the loop ends when their handles
 * have closed. The signal handles stay installed but unreferenced, so a
 * second SIGTERM during shutdown is ignored instead of killing the process.
 */
static void ctx_shutdown(struct ctx *ctx, int exit_code)
{
	if (ctx->stopping)
		return;
	ctx->stopping = true;
	ctx->exit_code = exit_code;
	ctx_stop_role(ctx);
	control_stop(&ctx->control);
	uv_unref((uv_handle_t *)&ctx->sigint);
	uv_unref((uv_handle_t *)&ctx->sigterm);
	uv_unref((uv_handle_t *)&ctx->sighup);
	uv_timer_start(&ctx->shutdown_timer, ctx_on_shutdown_timeout, CTX_SHUTDOWN_TIMEOUT_MS, 0);
	uv_unref((uv_handle_t *)&ctx->shutdown_timer);
}

static void ctx_on_stop_signal(uv_signal_t *h, int signum)
{
	struct ctx *ctx = h->data;

	if (ctx->stopping)
		return;
	log_info("%s received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
	ctx_shutdown(ctx, 0);
}

/* Logs each line config_load() wrote, so a bad reload is visible in the log. */
static void ctx_log_config_errors(char *text)
{
	char *save = NULL, *line;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		log_warn("reload: %s", line);
}

static bool ctx_same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The normalised config as text (malloc'd, or NULL), plus what config_print() leaves out. */
static char *ctx_config_text(const struct config *conf)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	if (!mem)
		return NULL;
	config_print(conf, mem);
	/* A changed authorized_keys file keeps its path: show its size too. */
	if (conf->role == CONFIG_ROLE_COORDINATOR && conf->coord.authorized_keys_file)
		fprintf(mem, "; authorized keys: %zu\n", conf->coord.n_authorized_keys);
	if (fclose(mem) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* true when text holds line (len bytes, no newline) as a whole line. */
static bool ctx_has_line(const char *text, const char *line, size_t len)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n == len && memcmp(p, line, len) == 0)
			return true;
		p += n + (nl != NULL);
	}
	return false;
}

/* Logs each line of a that b lacks, with mark ("-" or "+"); returns how many. */
static unsigned int ctx_log_missing_lines(const char *a, const char *b, char mark)
{
	const char *p = a;
	unsigned int count = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n && !ctx_has_line(b, p, n)) {
			log_info("reload: %c %.*s", mark, (int)n, p);
			count++;
		}
		p += n + (nl != NULL);
	}
	return count;
}

/* Says in the log what a reload changed, as a little diff of the normalised configs. */
static void ctx_log_changes(const struct config *prev, const struct config *next)
{
	char *a = ctx_config_text(prev), *b = ctx_config_text(next);
	unsigned int changed;

	if (!a || !b) {
		free(a);
		free(b);
		return;
	}
	changed = ctx_log_missing_lines(a, b, '-');
	changed += ctx_log_missing_lines(b, a, '+');
	if (!changed)
		log_info("reload: nothing changed");
	free(a);
	free(b);
}

/*
 * Runs conf's role in place of the current one. When the role will not
 * start with conf, tries to go back to fallback, so that a config that
 * parses but cannot run (say, a listen address the host lacks) does not
 * take a working agent down. 0: conf runs; 1: fallback runs; -errno: none.
 */
static int ctx_restart_role(struct ctx *ctx, const struct config *conf,
			    const struct config *fallback)
{
	int r;

	log_info("reload: restarting the %s role with the new config", ctx_role_name(conf->role));
	ctx_stop_role(ctx);
	r = ctx_start_role(ctx, conf);
	if (r >= 0)
		return 0;
	log_warn("reload: the new config does not start, going back to the running one");
	r = ctx_start_role(ctx, fallback);
	return r < 0 ? r : 1;
}

/* A new control socket path: open the new one first, so a failure keeps the old one. */
static void ctx_move_control(struct ctx *ctx, const struct config *prev, const struct config *next)
{
	struct control moved;

	if (ctx_same_str(config_control_socket(prev), config_control_socket(next)))
		return;
	if (ctx_start_control(ctx, &moved, next) < 0) {
		log_warn("reload: the control socket stays at %s", config_control_socket(prev));
		return;
	}
	control_stop(&ctx->control);
	ctx->control = moved;
	log_info("reload: control socket moved to %s", config_control_socket(next));
}

/*
 * SIGHUP: a new config that does not load keeps the old one running. A
 * config that loads is applied in place when the role can (keeping a
 * coordinator's registry); otherwise the role restarts with it.
 */
static void ctx_reload(struct ctx *ctx)
{
	struct config *next = NULL, *prev = ctx->conf;
	char *errors = NULL;
	size_t errors_len = 0;
	FILE *mem = open_memstream(&errors, &errors_len);
	int r;

	r = config_load(prev->path, mem ? mem : stderr, &next);
	if (mem)
		fclose(mem);
	if (r < 0) {
		if (errors)
			ctx_log_config_errors(errors);
		log_warn("reload: %s is not valid, keeping the running config", prev->path);
		free(errors);
		return;
	}
	free(errors);

	r = -EAGAIN;
	if (next->role == prev->role && ctx->node)
		r = node_reload(ctx->node, next);
	else if (next->role == prev->role && ctx->coord)
		r = coord_reload(ctx->coord, next);
	/* Any failure to apply in place may have left the role half-updated: restart it. */
	if (r < 0)
		r = ctx_restart_role(ctx, next, prev);
	if (r < 0) {
		log_err("reload: neither the new nor the running config starts, shutting down");
		ctx->conf = next;
		config_free(prev);
		ctx_shutdown(ctx, 1);
		return;
	}
	if (r == 1) {
		/* The running config is back; next was never used past its failed start. */
		config_free(next);
		log_warn("reload: %s not applied, keeping the running config", prev->path);
		return;
	}
	/* Whichever of the two levels says more, so lowering it still shows this reload. */
	if (next->log_level > prev->log_level)
		log_set_level(next->log_level);
	ctx_log_changes(prev, next);
	ctx_move_control(ctx, prev, next);
	ctx->conf = next;
	config_free(prev);
	log_info("reload: %s applied", next->path);
	log_set_level(next->log_level);
}

static void ctx_on_sighup(uv_signal_t *h, int signum)
{
	struct ctx *ctx = h->data;

	if (ctx->stopping)
		return;
	log_info("SIGHUP received, reloading %s", ctx->conf->path);
	ctx_reload(ctx);
}

int ctx_run(struct config *conf)
{
	struct ctx ctx;
	int r;

	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = conf;
	log_set_level(conf->log_level);
	/* A peer closing the control socket mid-write must not kill the agent. */
	signal(SIGPIPE, SIG_IGN);

	r = uv_loop_init(&ctx.loop);
	if (r < 0) {
		log_err_errno(r, "cannot create the event loop");
		config_free(conf);
		return 1;
	}
	uv_signal_init(&ctx.loop, &ctx.sigint);
	uv_signal_init(&ctx.loop, &ctx.sigterm);
	uv_signal_init(&ctx.loop, &ctx.sighup);
	uv_timer_init(&ctx.loop, &ctx.shutdown_timer);
	ctx.sigint.data = ctx.sigterm.data = ctx.sighup.data = &ctx;
	ctx.shutdown_timer.data = &ctx;
	uv_signal_start(&ctx.sigint, ctx_on_stop_signal, SIGINT);
	uv_signal_start(&ctx.sigterm, ctx_on_stop_signal, SIGTERM);
	uv_signal_start(&ctx.sighup, ctx_on_sighup, SIGHUP);

	/*
	 * The control socket first: it is what tells a second agent for the same
	 * interface or coordinator to stop before it touches the interface or
	 * opens a session that would replace the running agent's one.
	 */
	r = ctx_start_control(&ctx, &ctx.control, conf);
	if (r >= 0)
		r = ctx_start_role(&ctx, conf);
	if (r >= 0 && conf->role == CONFIG_ROLE_COORDINATOR)
		ctx_coord_drop_caps(conf);
	if (r < 0)
		ctx_shutdown(&ctx, 1);
	else
		log_info("wgpunch %s running as %s (config %s)", WGPUNCH_VERSION,
			 ctx_role_name(conf->role), conf->path);

	uv_run(&ctx.loop, UV_RUN_DEFAULT);
	if (ctx.timed_out) {
		/* Something is stuck: the loop cannot be closed, and the OS frees the rest. */
		config_free(ctx.conf);
		return 1;
	}

	/* Closes the unreferenced signal handles and the timer, and whatever a role left. */
	uv_walk(&ctx.loop, ctx_close_leftover, NULL);
	uv_run(&ctx.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&ctx.loop);
	if (r < 0) {
		log_err_errno(r, "event loop still had handles at exit");
		ctx.exit_code = 1;
	}
	config_free(ctx.conf);
	if (ctx.exit_code == 0)
		log_info("stopped");
	return ctx.exit_code;
}
