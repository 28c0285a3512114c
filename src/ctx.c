// SPDX-License-Identifier: MIT
/*
 * ctx - the process around the role: the loop, signals, SIGHUP reload, the
 * control socket and a clean shutdown (every handle closed, loop closed).
 */
#include "wgpunch/ctx.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/coord.h"
#include "wgpunch/log.h"
#include "wgpunch/node.h"

static void ctx_shutdown(struct ctx *ctx, int exit_code);

static cJSON *ctx_on_status(void *arg)
{
	struct ctx *ctx = arg;

	if (ctx->node)
		return node_status(ctx->node);
	if (ctx->coord)
		return coord_status(ctx->coord);
	return cJSON_CreateObject();
}

static void ctx_on_node_fatal(void *arg, int err)
{
	struct ctx *ctx = arg;

	log_err("node cannot go on (%s), shutting down", strerror(-err));
	ctx_shutdown(ctx, 1);
}

static int ctx_start_role(struct ctx *ctx, const struct config *conf)
{
	if (conf->role == CONFIG_ROLE_NODE)
		return node_start(&ctx->loop, conf, ctx_on_node_fatal, ctx, &ctx->node);
	return coord_start(&ctx->loop, conf, &ctx->coord);
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

static int ctx_start_control(struct ctx *ctx, const struct config *conf)
{
	return control_start(&ctx->control, &ctx->loop, config_control_socket(conf), ctx_on_status,
			     ctx);
}

static void ctx_close_leftover(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void ctx_shutdown(struct ctx *ctx, int exit_code)
{
	if (ctx->stopping)
		return;
	ctx->stopping = true;
	ctx->exit_code = exit_code;
	ctx_stop_role(ctx);
	control_stop(&ctx->control);
	uv_close((uv_handle_t *)&ctx->sigint, NULL);
	uv_close((uv_handle_t *)&ctx->sigterm, NULL);
	uv_close((uv_handle_t *)&ctx->sighup, NULL);
}

static void ctx_on_stop_signal(uv_signal_t *h, int signum)
{
	struct ctx *ctx = h->data;

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
	log_set_level(next->log_level);

	r = -EAGAIN;
	if (next->role == prev->role && ctx->node)
		r = node_reload(ctx->node, next);
	else if (next->role == prev->role && ctx->coord)
		r = coord_reload(ctx->coord, next);
	if (r == -EAGAIN) {
		log_info("reload: restarting the %s role with the new config",
			 next->role == CONFIG_ROLE_NODE ? "node" : "coordinator");
		ctx_stop_role(ctx);
		r = ctx_start_role(ctx, next);
	}
	if (r < 0) {
		/* The old role is gone; without a role there is nothing to serve. */
		log_err("reload: the new config could not be started, shutting down");
		ctx->conf = next;
		config_free(prev);
		ctx_shutdown(ctx, 1);
		return;
	}
	if (!ctx_same_str(config_control_socket(prev), config_control_socket(next))) {
		control_stop(&ctx->control);
		if (ctx_start_control(ctx, next) < 0)
			log_warn("reload: no control socket at %s", config_control_socket(next));
	}
	ctx->conf = next;
	config_free(prev);
	log_info("reload: %s applied", next->path);
}

static void ctx_on_sighup(uv_signal_t *h, int signum)
{
	struct ctx *ctx = h->data;

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
	ctx.sigint.data = ctx.sigterm.data = ctx.sighup.data = &ctx;
	uv_signal_start(&ctx.sigint, ctx_on_stop_signal, SIGINT);
	uv_signal_start(&ctx.sigterm, ctx_on_stop_signal, SIGTERM);
	uv_signal_start(&ctx.sighup, ctx_on_sighup, SIGHUP);

	r = ctx_start_role(&ctx, conf);
	if (r >= 0)
		r = ctx_start_control(&ctx, conf);
	if (r < 0)
		ctx_shutdown(&ctx, 1);
	else
		log_info("wgpunch %s running as %s (config %s)", WGPUNCH_VERSION,
			 conf->role == CONFIG_ROLE_NODE ? "node" : "coordinator", conf->path);

	uv_run(&ctx.loop, UV_RUN_DEFAULT);

	/* Whatever a role left open (it should be nothing) is closed here. */
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
