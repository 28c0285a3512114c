// SPDX-License-Identifier: MIT
/*
 * metrics: the exact Prometheus text of a small counter table and gauges, and the atomic
 * write of the file.
 */
#include "wgpunch/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"

#define DEMO_COUNTERS(X)                                 \
	X(rx_datagrams, "datagrams read")                \
	X(rx_bad, "DATA that failed \\ with a\nnewline") \
	X(big, "near the top of uint64")
struct demo_counters {
	DEMO_COUNTERS(COUNTER_FIELD)
};
#define X(name, help) COUNTER_DEF(demo_counters, name, help)
COUNTER_TABLE_DEFINE(demo_counters, DEMO_COUNTERS(X));
#undef X

static void test_counters_exact(void)
{
	const struct demo_counters c = { .rx_datagrams = 7, .rx_bad = 0, .big = UINT64_MAX - 1 };
	struct metrics_buf b;

	metrics_buf_init(&b);
	metrics_add_counters(&b, &demo_counters_table, &c);
	CHECK(!b.oom);
	CHECK(b.p &&
	      strcmp(b.p,
		     "# HELP wgpunch_demo_rx_datagrams_total datagrams read\n"
		     "# TYPE wgpunch_demo_rx_datagrams_total counter\n"
		     "wgpunch_demo_rx_datagrams_total 7\n"
		     "# HELP wgpunch_demo_rx_bad_total DATA that failed \\\\ with a\\nnewline\n"
		     "# TYPE wgpunch_demo_rx_bad_total counter\n"
		     "wgpunch_demo_rx_bad_total 0\n"
		     "# HELP wgpunch_demo_big_total near the top of uint64\n"
		     "# TYPE wgpunch_demo_big_total counter\n"
		     "wgpunch_demo_big_total 18446744073709551614\n") == 0);
	CHECK_EQ_INT(b.len, strlen(b.p));
	metrics_buf_free(&b);
}

static void test_gauges_exact(void)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	metrics_gauge_begin(&b, "node_peers", "peers, by path");
	metrics_gauge_sample(&b, "node_peers", "path", "direct", 2);
	metrics_gauge_sample(&b, "node_peers", "path", "we\"ird\\\n", 0);
	metrics_gauge(&b, "coordinator_nodes", "nodes", 1048576);
	metrics_gauge(&b, "half", "a fraction", 0.5);
	CHECK(!b.oom);
	CHECK(b.p && strcmp(b.p, "# HELP wgpunch_node_peers peers, by path\n"
				 "# TYPE wgpunch_node_peers gauge\n"
				 "wgpunch_node_peers{path=\"direct\"} 2\n"
				 "wgpunch_node_peers{path=\"we\\\"ird\\\\\\n\"} 0\n"
				 "# HELP wgpunch_coordinator_nodes nodes\n"
				 "# TYPE wgpunch_coordinator_nodes gauge\n"
				 "wgpunch_coordinator_nodes 1048576\n"
				 "# HELP wgpunch_half a fraction\n"
				 "# TYPE wgpunch_half gauge\n"
				 "wgpunch_half 0.5\n") == 0);
	metrics_buf_free(&b);
}

/* Files in dir other than "." and "..". */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_write_atomic(void)
{
	char dir[] = "/tmp/wgpunch-test-metrics-XXXXXX", path[128], bad[160], got[64] = { 0 };
	struct stat st;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/wgpunch.prom", dir);
	CHECK_EQ_INT(metrics_write_atomic(path, "a 1\n", 4), 0);
	CHECK_EQ_INT(metrics_write_atomic(path, "b 22\n", 5), 0);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (f) {
		CHECK_EQ_INT(fread(got, 1, sizeof(got) - 1, f), 5);
		fclose(f);
	}
	CHECK(strcmp(got, "b 22\n") == 0);
	/* Readable by a collector running as another user. */
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0644);
	/* No temporary file left behind. */
	CHECK_EQ_INT(count_files(dir), 1);
	/* A folder that does not exist: an error, nothing written. */
	snprintf(bad, sizeof(bad), "%s/absent/wgpunch.prom", dir);
	CHECK_EQ_INT(metrics_write_atomic(bad, "a 1\n", 4), -ENOENT);
	/* The target is a folder: rename fails, and the temporary file goes. */
	snprintf(bad, sizeof(bad), "%s/sub", dir);
	CHECK(mkdir(bad, 0755) == 0);
	CHECK(metrics_write_atomic(bad, "a 1\n", 4) < 0);
	CHECK_EQ_INT(count_files(dir), 2);
	rmdir(bad);
	unlink(path);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	TAP_RUN(test_counters_exact);
	TAP_RUN(test_gauges_exact);
	TAP_RUN(test_write_atomic);
	return tap_done();
}
