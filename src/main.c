// SPDX-License-Identifier: MIT
/*
 * main - the command line: choose what to do, run it, map the result to the
 * exit status of the contract (0 ok, 1 bad config or start-up failure, 2 usage).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <sodium.h>

#include "wgpunch/config.h"
#include "wgpunch/control.h"
#include "wgpunch/ctx.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"

enum exit_status {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
};

static void usage(FILE *out)
{
	fputs("usage: wgpunch -c FILE                 run in the role FILE names\n"
	      "       wgpunch -c FILE --check         validate FILE and print it normalised\n"
	      "       wgpunch genkey                  print a new base64 private key\n"
	      "       wgpunch pubkey                  read a private key on stdin, print its\n"
	      "                                       public key\n"
	      "       wgpunch status [-c FILE | -s SOCKET] [--json]\n"
	      "                                       show a running agent's state (without -c\n"
	      "                                       or -s: every agent in /run/wgpunch)\n"
	      "       wgpunch --version | --help\n",
	      out);
}

/* A usage error: what is wrong, then the synopsis, on stderr; exit status 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		fputs("wgpunch: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	usage(stderr);
	return EXIT_USAGE;
}

/*
 * getopt_long() with opterr = 0 returns '?' or ':' for a bad option; say
 * which one in our own words (glibc would prefix the full argv[0]).
 */
static int bad_option(int c, char **argv, const char *cmd)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		return usage_error("%s%soption '%s' needs an argument", cmd, *cmd ? ": " : "", arg);
	if (optopt && strncmp(arg, "--", 2) != 0)
		return usage_error("%s%sunknown option '-%c'", cmd, *cmd ? ": " : "", optopt);
	return usage_error("%s%sunknown option '%s'", cmd, *cmd ? ": " : "", arg);
}

static int cmd_genkey(void)
{
	uint8_t priv[KEY_LEN];
	char b64[KEY_B64_LEN + 1];

	key_generate_private(priv);
	key_to_base64(b64, priv);
	sodium_memzero(priv, sizeof(priv));
	if (printf("%s\n", b64) < 0 || fflush(stdout) != 0) {
		sodium_memzero(b64, sizeof(b64));
		fprintf(stderr, "wgpunch: cannot write the key: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	sodium_memzero(b64, sizeof(b64));
	return EXIT_OK;
}

/* Reads one key from stdin like `wg pubkey`: surrounding white space is allowed. */
static int cmd_pubkey(void)
{
	char line[256] = { 0 };
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	char b64[KEY_B64_LEN + 1];
	size_t len = fread(line, 1, sizeof(line) - 1, stdin);
	char *start = line, *end;

	while (*start && isspace((unsigned char)*start))
		start++;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (len == sizeof(line) - 1 || key_from_base64(priv, start) < 0 ||
	    key_public_from_private(pub, priv) < 0) {
		sodium_memzero(line, sizeof(line));
		sodium_memzero(priv, sizeof(priv));
		fprintf(stderr,
			"wgpunch: pubkey: stdin is not a base64 private key (44 characters)\n");
		return EXIT_FAIL;
	}
	sodium_memzero(line, sizeof(line));
	sodium_memzero(priv, sizeof(priv));
	key_to_base64(b64, pub);
	printf("%s\n", b64);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* Why a control socket did not answer, in words an operator can act on. */
static const char *status_hint(int err)
{
	switch (err) {
	case -ENOENT:
		return " (is the agent running, and is this its control_socket?)";
	case -ECONNREFUSED:
		return " (nothing listens there: the agent is not running)";
	case -EACCES:
	case -EPERM:
		return " (the socket is for root and its group)";
	case -ETIMEDOUT:
		return " (the agent did not answer in time)";
	default:
		return "";
	}
}

/* Asks the agent at path; returns its document (caller frees) or NULL with -errno in *err. */
static cJSON *status_fetch(const char *path, int *err)
{
	char *reply = control_query(path, err);
	cJSON *doc;

	if (!reply)
		return NULL;
	doc = cJSON_Parse(reply);
	free(reply);
	if (!doc || !cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		*err = -EBADMSG;
		return NULL;
	}
	return doc;
}

static void status_print_error(const char *path, int err)
{
	if (err == -EBADMSG)
		fprintf(stderr,
			"wgpunch: status: the agent at %s did not answer with a JSON object\n",
			path);
	else
		fprintf(stderr, "wgpunch: status: cannot reach an agent at %s: %s%s\n", path,
			strerror(-err), status_hint(err));
}

static int status_print_json(const cJSON *doc)
{
	char *text = cJSON_Print(doc);

	if (!text) {
		fprintf(stderr, "wgpunch: status: out of memory\n");
		return EXIT_FAIL;
	}
	printf("%s\n", text);
	free(text);
	return EXIT_OK;
}

/* One agent, named by its socket: its document, or one line on stderr and exit status 1. */
static int status_one(const char *path, bool json)
{
	int err = 0, r = EXIT_OK;
	cJSON *doc = status_fetch(path, &err);

	if (!doc) {
		status_print_error(path, err);
		return EXIT_FAIL;
	}
	if (json)
		r = status_print_json(doc);
	else
		control_print_table(doc, stdout);
	cJSON_Delete(doc);
	return fflush(stdout) == 0 ? r : EXIT_FAIL;
}

/*
 * Without -c or -s, every socket under /run/wgpunch answers; --json then
 * prints an array of their documents so the output has one shape however
 * many agents run. A socket file nobody listens on is what a killed agent
 * leaves behind: it is mentioned, but it is not an error while another
 * agent answers.
 */
static int status_all(bool json)
{
	glob_t g;
	cJSON *all = json ? cJSON_CreateArray() : NULL;
	int failed = 0, answered = 0, r = EXIT_OK;
	size_t i;

	if (json && !all) {
		fprintf(stderr, "wgpunch: status: out of memory\n");
		return EXIT_FAIL;
	}
	if (glob(CONFIG_RUN_DIR "/*.sock", 0, NULL, &g) != 0) {
		/* --json keeps its shape (an empty array) for scripts; the status says none ran. */
		if (json)
			status_print_json(all);
		cJSON_Delete(all);
		fprintf(stderr, "wgpunch: status: no agent is running (no sockets under %s)\n",
			CONFIG_RUN_DIR);
		return EXIT_FAIL;
	}
	for (i = 0; i < g.gl_pathc; i++) {
		const char *path = g.gl_pathv[i];
		int err = 0;
		cJSON *doc = status_fetch(path, &err);

		if (!doc) {
			if (err == -ECONNREFUSED || err == -ENOENT) {
				fprintf(stderr,
					"wgpunch: status: %s: stale socket, no agent there\n",
					path);
			} else {
				status_print_error(path, err);
				failed++;
			}
			continue;
		}
		if (json) {
			cJSON_AddItemToArray(all, doc);
		} else {
			if (answered)
				putchar('\n');
			printf("agent: %s\n", path);
			control_print_table(doc, stdout);
			cJSON_Delete(doc);
		}
		answered++;
	}
	globfree(&g);
	if (json) {
		r = status_print_json(all);
		cJSON_Delete(all);
	}
	if (!answered && !failed)
		fprintf(stderr,
			"wgpunch: status: no agent is running (no socket under %s answers)\n",
			CONFIG_RUN_DIR);
	if (fflush(stdout) != 0)
		r = EXIT_FAIL;
	return failed || !answered ? EXIT_FAIL : r;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *socket_path = NULL;
	bool json = false, help = false;
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			help = true;
			break;
		default:
			return bad_option(c, argv, "status");
		}
	}
	if (optind != argc)
		return usage_error("status: unexpected argument '%s'", argv[optind]);
	if (help) {
		usage(stdout);
		return EXIT_OK;
	}
	if (config_path && socket_path)
		return usage_error("status: give -c FILE or -s SOCKET, not both");
	if (config_path) {
		struct config *conf = NULL;

		if (config_load(config_path, stderr, &conf) < 0)
			return EXIT_FAIL;
		r = status_one(config_control_socket(conf), json);
		config_free(conf);
		return r;
	}
	if (socket_path)
		return status_one(socket_path, json);
	return status_all(json);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	bool check = false, help = false, version = false;
	struct config *conf = NULL;
	int c;

	if (sodium_init() < 0) {
		fprintf(stderr, "wgpunch: libsodium failed to initialise\n");
		return EXIT_FAIL;
	}
	if (argc >= 2 && strcmp(argv[1], "genkey") == 0) {
		if (argc != 2)
			return usage_error("genkey takes no arguments");
		return cmd_genkey();
	}
	if (argc >= 2 && strcmp(argv[1], "pubkey") == 0) {
		if (argc != 2)
			return usage_error("pubkey takes no arguments (the key comes on stdin)");
		return cmd_pubkey();
	}
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return cmd_status(argc - 1, argv + 1);

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'V':
			version = true;
			break;
		case 'h':
			help = true;
			break;
		default:
			return bad_option(c, argv, "");
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (help) {
		usage(stdout);
		return EXIT_OK;
	}
	if (version) {
		printf("wgpunch %s\n", WGPUNCH_VERSION);
		return EXIT_OK;
	}
	if (check && !config_path)
		return usage_error("--check needs -c FILE");
	if (!config_path)
		return usage_error(argc > 1 ? "-c FILE is missing" : NULL);

	if (config_load(config_path, stderr, &conf) < 0)
		return EXIT_FAIL;
	if (check) {
		config_print(conf, stdout);
		config_free(conf);
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
	}
	return ctx_run(conf);
}
