/* SPDX-License-Identifier: MIT */
/*
 * fuzz-config - arbitrary bytes as the config file of `wgpunch --check`.
 * Must not crash; a config that loads prints (config_print) to a file that
 * loads again and prints the same.
 *
 * The file lives in a private folder next to a valid private key
 * (coordinator.key, made at start, never committed) and a public key list
 * (nodes.keys), so seeds can reach the key-reading paths. Inputs naming
 * /dev, /proc or /sys are skipped: an operator's `authorized_keys =
 * /dev/zero` reads forever by design of getline(), which is no decoder bug.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "wgpunch/config.h"

#define PUB_B "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=" /* RFC 7748 6.1, Bob */

static char dir[256], path_ini[300], path_again[300], path_key[300], path_keys[300];
static FILE *devnull;

static void cleanup(void)
{
	unlink(path_ini);
	unlink(path_again);
	unlink(path_key);
	unlink(path_keys);
	rmdir(dir);
}

static void put_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(write(fd, data, len) == (ssize_t)len);
	FUZZ_ASSERT(close(fd) == 0);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	uint8_t priv[KEY_LEN];
	char b64[KEY_B64_LEN + 2];

	FUZZ_ASSERT(sodium_init() >= 0);
	snprintf(dir, sizeof(dir), "%s/wgpunch-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	FUZZ_ASSERT(mkdtemp(dir));
	snprintf(path_ini, sizeof(path_ini), "%s/fuzz.ini", dir);
	snprintf(path_again, sizeof(path_again), "%s/again.ini", dir);
	snprintf(path_key, sizeof(path_key), "%s/coordinator.key", dir);
	snprintf(path_keys, sizeof(path_keys), "%s/nodes.keys", dir);
	atexit(cleanup);
	key_generate_private(priv);
	key_to_base64(b64, priv);
	strcat(b64, "\n");
	put_file(path_key, b64, strlen(b64), 0600);
	put_file(path_keys, PUB_B "\n", sizeof(PUB_B), 0644);
	sodium_memzero(priv, sizeof(priv));
	devnull = fopen("/dev/null", "we");
	FUZZ_ASSERT(devnull);
}

static char *print(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	FUZZ_ASSERT(f);
	config_print(c, f);
	FUZZ_ASSERT(fclose(f) == 0);
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL, *again = NULL;
	char *first, *second;
	int r;

	if (!devnull)
		setup();
	if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
	    memmem(data, size, "/sys", 4))
		return 0;
	put_file(path_ini, data, size, 0644);
	r = config_load(path_ini, devnull, &c);
	FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -ENOMEM);
	FUZZ_ASSERT((r == 0) == (c != NULL));
	if (!c)
		return 0;
	FUZZ_ASSERT(c->role == CONFIG_ROLE_NODE || c->role == CONFIG_ROLE_COORDINATOR);
	FUZZ_ASSERT(config_control_socket(c) != NULL);
	first = print(c);
	put_file(path_again, first, strlen(first), 0644);
	r = config_load(path_again, stderr, &again);
	if (r != 0) {
		fprintf(stderr, "config_print wrote a config that does not load:\n%s", first);
		abort();
	}
	second = print(again);
	if (strcmp(first, second) != 0) {
		fprintf(stderr, "config_print is not stable:\n%s---\n%s", first, second);
		abort();
	}
	free(first);
	free(second);
	config_free(again);
	config_free(c);
	return 0;
}
