// SPDX-License-Identifier: MIT
/*
 * main - the command line: choose what to do, run it, map the result to the
 * exit status of the contract (0 ok, 1 bad config or start-up failure, 2 usage).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
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
	      "       wgpunch pubkey                  read a private key on stdin, print its public key\n"
	      "       wgpunch status [-c FILE | -s SOCKET] [--json]\n"
	      "                                       show a running agent's state\n"
	      "       wgpunch --version | --help\n",
	      out);
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
		fprintf(stderr, "wgpunch: pubkey: stdin is not a base64 private key (44 characters)\n");
		return EXIT_FAIL;
	}
	sodium_memzero(line, sizeof(line));
	sodium_memzero(priv, sizeof(priv));
	key_to_base64(b64, pub);
	printf("%s\n", b64);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* Prints one agent's answer; returns 0 or -errno. */
static int status_one(const char *path, bool json, cJSON *collect)
{
	int err = 0;
	char *reply = control_query(path, &err);
	cJSON *doc;

	if (!reply) {
		fprintf(stderr, "wgpunch: status: %s: %s\n", path, strerror(-err));
		return err;
	}
	doc = cJSON_Parse(reply);
	free(reply);
	if (!doc) {
		fprintf(stderr, "wgpunch: status: %s: the agent's answer is not JSON\n", path);
		return -EBADMSG;
	}
	if (collect) {
		cJSON_AddItemToArray(collect, doc);
		return 0;
	}
	if (json) {
		char *text = cJSON_Print(doc);

		if (text)
			printf("%s\n", text);
		free(text);
	} else {
		control_print_table(doc, stdout);
	}
	cJSON_Delete(doc);
	return 0;
}

/*
 * Without -c or -s, every socket under /run/wgpunch answers; --json then
 * prints an array of their documents so the output has one shape however
 * many agents run.
 */
static int status_all(bool json)
{
	glob_t g;
	cJSON *all = json ? cJSON_CreateArray() : NULL;
	int failed = 0;
	size_t i;

	if (glob(CONFIG_RUN_DIR "/*.sock", 0, NULL, &g) != 0) {
		cJSON_Delete(all);
		fprintf(stderr, "wgpunch: status: no agent sockets under %s\n", CONFIG_RUN_DIR);
		return EXIT_FAIL;
	}
	for (i = 0; i < g.gl_pathc; i++) {
		if (!json && i > 0)
			putchar('\n');
		if (!json)
			printf("agent: %s\n", g.gl_pathv[i]);
		if (status_one(g.gl_pathv[i], json, all) < 0)
			failed++;
	}
	globfree(&g);
	if (json) {
		char *text = cJSON_Print(all);

		if (text)
			printf("%s\n", text);
		free(text);
		cJSON_Delete(all);
	}
	return failed ? EXIT_FAIL : EXIT_OK;
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
	bool json = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:jh", opts, NULL)) != -1) {
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
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || (config_path && socket_path)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (config_path) {
		struct config *conf = NULL;

		if (config_load(config_path, stderr, &conf) < 0)
			return EXIT_FAIL;
		r = status_one(config_control_socket(conf), json, NULL);
		config_free(conf);
		return r < 0 ? EXIT_FAIL : EXIT_OK;
	}
	if (socket_path)
		return status_one(socket_path, json, NULL) < 0 ? EXIT_FAIL : EXIT_OK;
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
	bool check = false;
	struct config *conf = NULL;
	int c;

	if (sodium_init() < 0) {
		fprintf(stderr, "wgpunch: libsodium failed to initialise\n");
		return EXIT_FAIL;
	}
	if (argc >= 2 && strcmp(argv[1], "genkey") == 0) {
		if (argc != 2) {
			usage(stderr);
			return EXIT_USAGE;
		}
		return cmd_genkey();
	}
	if (argc >= 2 && strcmp(argv[1], "pubkey") == 0) {
		if (argc != 2) {
			usage(stderr);
			return EXIT_USAGE;
		}
		return cmd_pubkey();
	}
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return cmd_status(argc - 1, argv + 1);

	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'V':
			printf("wgpunch %s\n", WGPUNCH_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || !config_path) {
		if (optind != argc)
			fprintf(stderr, "wgpunch: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	if (config_load(config_path, stderr, &conf) < 0)
		return EXIT_FAIL;
	if (check) {
		config_print(conf, stdout);
		config_free(conf);
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
	}
	return ctx_run(conf);
}
