/* SPDX-License-Identifier: MIT */
#include "wgpunch/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"

static char capture_path[] = "/tmp/wgpunch-test-log-XXXXXX";
static int saved_stderr = -1;

/* Points stderr at an empty capture file. */
static void capture_start(void)
{
	FILE *f;

	fflush(stderr);
	f = fopen(capture_path, "w");
	if (f)
		fclose(f);
	if (!freopen(capture_path, "a", stderr))
		printf("# freopen failed\n");
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_end(void)
{
	char *buf = calloc(1, 8192);
	FILE *f;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	f = fopen(capture_path, "r");
	if (f && buf) {
		size_t n = fread(buf, 1, 8191, f);

		buf[n] = '\0';
	}
	if (f)
		fclose(f);
	return buf;
}

static void test_log_parse_level(void)
{
	enum log_level l = LOG_LEVEL_INFO;

	CHECK_EQ_INT(log_parse_level("error", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_ERR);
	CHECK_EQ_INT(log_parse_level("err", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_ERR);
	CHECK_EQ_INT(log_parse_level("warning", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_WARN);
	CHECK_EQ_INT(log_parse_level("WARN", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_WARN);
	CHECK_EQ_INT(log_parse_level("info", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_INFO);
	CHECK_EQ_INT(log_parse_level("debug", &l), 0);
	CHECK_EQ_INT(l, LOG_LEVEL_DEBUG);
	CHECK_EQ_INT(log_parse_level("verbose", &l), -EINVAL);
	CHECK_EQ_INT(log_parse_level("", &l), -EINVAL);
	CHECK_EQ_INT(l, LOG_LEVEL_DEBUG); /* untouched on failure */
	CHECK(strcmp(log_level_name(LOG_LEVEL_ERR), "error") == 0);
	CHECK(strcmp(log_level_name(LOG_LEVEL_WARN), "warn") == 0);
	CHECK(strcmp(log_level_name(LOG_LEVEL_INFO), "info") == 0);
	CHECK(strcmp(log_level_name(LOG_LEVEL_DEBUG), "debug") == 0);
}

static void test_log_lines_and_filter(void)
{
	char *out;

	log_set_level(LOG_LEVEL_WARN);
	CHECK_EQ_INT(log_get_level(), LOG_LEVEL_WARN);
	CHECK(log_enabled(LOG_LEVEL_ERR));
	CHECK(log_enabled(LOG_LEVEL_WARN));
	CHECK(!log_enabled(LOG_LEVEL_INFO));
	capture_start();
	log_err("peer %s unreachable", "hSDwCYkw...");
	log_warn("retrying in %d ms", 500);
	log_info("not shown");
	log_debug("not shown either");
	out = capture_end();
	CHECK(out &&
	      strcmp(out, "error: peer hSDwCYkw... unreachable\nwarn: retrying in 500 ms\n") == 0);
	free(out);

	log_set_level(LOG_LEVEL_DEBUG);
	capture_start();
	log_info("a");
	log_debug("b %u", 7u);
	out = capture_end();
	CHECK(out && strcmp(out, "info: a\ndebug: b 7\n") == 0);
	free(out);
	log_set_level(LOG_LEVEL_INFO);
}

static void test_log_errno_appends_strerror(void)
{
	char *out;
	int r;

	capture_start();
	r = log_warn_errno(-ENOENT, "open %s", "/run/wireguard/wg0.sock");
	out = capture_end();
	CHECK_EQ_INT(r, -ENOENT);
	CHECK(out &&
	      strcmp(out, "warn: open /run/wireguard/wg0.sock: No such file or directory\n") == 0);
	free(out);

	log_set_level(LOG_LEVEL_ERR);
	capture_start();
	r = log_info_errno(-EIO, "filtered");
	out = capture_end();
	CHECK_EQ_INT(r, -EIO); /* returned even when not logged */
	CHECK(out && !*out);
	free(out);
	log_set_level(LOG_LEVEL_INFO);
}

/* One event, one line: a newline in a (peer-supplied) string cannot start a forged line. */
static void test_log_one_line_per_event(void)
{
	char *out, big[5000];

	capture_start();
	log_info("name %s", "evil\nerror: forged");
	out = capture_end();
	CHECK(out && strcmp(out, "info: name evil?error: forged\n") == 0);
	free(out);

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture_start();
	log_info("%s", big);
	out = capture_end();
	CHECK(out != NULL);
	if (out) {
		size_t len = strlen(out);

		CHECK(len > 100 && len < sizeof(big));
		CHECK(strchr(out, '\n') == out + len - 1);
		CHECK(strncmp(out, "info: xxx", 9) == 0);
		CHECK(len > 4 && strcmp(out + len - 4, "...\n") == 0);
	}
	free(out);
}

int main(void)
{
	int fd = mkstemp(capture_path);

	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	saved_stderr = dup(STDERR_FILENO);
	TAP_RUN(test_log_parse_level);
	TAP_RUN(test_log_lines_and_filter);
	TAP_RUN(test_log_errno_appends_strerror);
	TAP_RUN(test_log_one_line_per_event);
	unlink(capture_path);
	return tap_done();
}
