/* SPDX-License-Identifier: MIT */
#include "wgpunch/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* JOURNAL_STREAM names this capture file's device:inode, as systemd would name its socket. */
static void journal_env_for(int fd)
{
	struct stat st;
	char v[64];

	if (fstat(fd, &st) < 0) {
		printf("# fstat failed\n");
		return;
	}
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
}

static void test_log_journal_prefix(void)
{
	char *out;

	CHECK_EQ_INT(log_level_priority(LOG_LEVEL_ERR), 3);
	CHECK_EQ_INT(log_level_priority(LOG_LEVEL_WARN), 4);
	CHECK_EQ_INT(log_level_priority(LOG_LEVEL_INFO), 6);
	CHECK_EQ_INT(log_level_priority(LOG_LEVEL_DEBUG), 7);

	log_set_level(LOG_LEVEL_DEBUG);
	capture_start();
	journal_env_for(STDERR_FILENO);
	CHECK(log_detect_stream());
	CHECK(log_to_journal());
	log_err("peer %s unreachable", "hSDwCYkw...");
	log_warn("retrying");
	log_info("up");
	log_debug("probe %d", 3);
	log_warn_errno(-ENOENT, "open %s", "x");
	log_info("evil\n<3>forged");
	out = capture_end();
	CHECK(out && strcmp(out, "<3>peer hSDwCYkw... unreachable\n<4>retrying\n<6>up\n"
				 "<7>probe 3\n<4>open x: No such file or directory\n"
				 "<6>evil?<3>forged\n") == 0);
	free(out);

	/* The variable names another file (stderr was redirected): plain lines. */
	capture_start();
	setenv("JOURNAL_STREAM", "1:1", 1);
	CHECK(!log_detect_stream());
	log_info("plain");
	out = capture_end();
	CHECK(out && strcmp(out, "info: plain\n") == 0);
	free(out);

	/* Malformed values never switch the format. */
	capture_start();
	journal_env_for(STDERR_FILENO);
	{
		char bad[80];

		snprintf(bad, sizeof(bad), "%sx", getenv("JOURNAL_STREAM"));
		setenv("JOURNAL_STREAM", bad, 1);
		CHECK(!log_detect_stream());
		setenv("JOURNAL_STREAM", ":", 1);
		CHECK(!log_detect_stream());
		setenv("JOURNAL_STREAM", "", 1);
		CHECK(!log_detect_stream());
	}
	unsetenv("JOURNAL_STREAM");
	CHECK(!log_detect_stream());
	log_warn("plain again");
	out = capture_end();
	CHECK(out && strcmp(out, "warn: plain again\n") == 0);
	free(out);
	log_set_level(LOG_LEVEL_INFO);
}

static size_t count_lines(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void test_log_rate_limit(void)
{
	struct log_limit rl = { 0 }, other;
	unsigned int sup = 99;
	uint64_t t = 1000000;
	char *out;

	/* The decision: a zeroed limit has the defaults. */
	for (unsigned int i = 0; i < LOG_LIMIT_BURST; i++) {
		CHECK(log_limit_pass(&rl, t + i, &sup));
		CHECK_EQ_INT(sup, 0);
	}
	for (unsigned int i = 0; i < 100; i++)
		CHECK(!log_limit_pass(&rl, t + 10 + i, &sup));
	CHECK_EQ_INT(rl.suppressed, 100);
	/* Still inside the window: suppressed. */
	CHECK(!log_limit_pass(&rl, t + LOG_LIMIT_INTERVAL_MS - 1, &sup));
	/* A new window: passes and carries the count. */
	CHECK(log_limit_pass(&rl, t + LOG_LIMIT_INTERVAL_MS, &sup));
	CHECK_EQ_INT(sup, 101);
	CHECK(log_limit_pass(&rl, t + LOG_LIMIT_INTERVAL_MS + 1, &sup));
	CHECK_EQ_INT(sup, 0);
	/* A clock that goes backwards (a new loop) starts a window rather than stall. */
	CHECK(log_limit_pass(&rl, 5, &sup));

	/* The lines: burst 2 per second, per call-site state. */
	log_limit_init(&rl, 1000, 2);
	log_limit_init(&other, 1000, 2);
	capture_start();
	for (unsigned int i = 0; i < 50; i++)
		log_warn_limited(&rl, 2000 + i, "pair %s: bad datagram %u", "a-b", i);
	log_warn_limited(&other, 2010, "other call site");
	log_warn_limited(&rl, 3000, "pair %s: bad datagram %u", "a-b", 99u);
	log_warn_limited(&rl, 3001, "pair %s: bad datagram %u", "a-b", 100u);
	log_warn_limited(&rl, 3002, "dropped");
	/* A disabled level is neither written nor counted. */
	log_debug_limited(&rl, 4000, "not shown");
	log_info_limited(&rl, 4001, "after");
	out = capture_end();
	CHECK(out && strcmp(out, "warn: pair a-b: bad datagram 0\n"
				 "warn: pair a-b: bad datagram 1\n"
				 "warn: other call site\n"
				 "warn: pair a-b: bad datagram 99 (suppressed 48 similar lines)\n"
				 "warn: pair a-b: bad datagram 100\n"
				 "info: after (suppressed 1 similar line)\n") == 0);
	CHECK_EQ_INT(count_lines(out, "\n"), 6);
	free(out);

	/* Through the journal too, with CLOCK_MONOTONIC as the clock. */
	log_limit_init(&rl, 60000, 1);
	capture_start();
	journal_env_for(STDERR_FILENO);
	log_detect_stream();
	for (unsigned int i = 0; i < 10; i++)
		log_err_limited(&rl, log_now_ms(), "flood %u", i);
	unsetenv("JOURNAL_STREAM");
	log_detect_stream();
	out = capture_end();
	CHECK(out && strcmp(out, "<3>flood 0\n") == 0);
	CHECK_EQ_INT(rl.suppressed, 9);
	free(out);
	CHECK(log_now_ms() > 0);
}

int main(void)
{
	int fd = mkstemp(capture_path);

	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	unsetenv("JOURNAL_STREAM"); /* the runner's own stream must not change the format */
	saved_stderr = dup(STDERR_FILENO);
	TAP_RUN(test_log_parse_level);
	TAP_RUN(test_log_lines_and_filter);
	TAP_RUN(test_log_errno_appends_strerror);
	TAP_RUN(test_log_one_line_per_event);
	TAP_RUN(test_log_journal_prefix);
	TAP_RUN(test_log_rate_limit);
	unlink(capture_path);
	return tap_done();
}
