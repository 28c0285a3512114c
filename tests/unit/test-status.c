/* SPDX-License-Identifier: MIT */
#include "wgpunch/status.h"

#include <string.h>

#include "../tap.h"

#define DEMO_COUNTERS(X)                                        \
	X(rx_datagrams, "datagrams read")                       \
	X(rx_bad_auth, "datagrams that failed to authenticate") \
	X(tx_datagrams, "datagrams sent")

struct demo_counters {
	uint32_t unrelated; /* a counter struct need not start with a counter */
	DEMO_COUNTERS(COUNTER_FIELD)
};

#define X(name, help) COUNTER_DEF(demo_counters, name, help)
COUNTER_TABLE_DEFINE(demo_counters, DEMO_COUNTERS(X));
#undef X

static void test_status_table_lists_every_counter_in_order(void)
{
	CHECK_EQ_INT(demo_counters_table.n, 3);
	CHECK(strcmp(demo_counters_table.group, "demo_counters") == 0);
	CHECK(strcmp(demo_counters_table.defs[0].name, "rx_datagrams") == 0);
	CHECK(strcmp(demo_counters_table.defs[1].help, "datagrams that failed to authenticate") ==
	      0);
	CHECK(strcmp(demo_counters_table.defs[2].name, "tx_datagrams") == 0);
}

static void test_status_counters_read_their_own_fields(void)
{
	struct demo_counters c = {
		.unrelated = 7, .rx_datagrams = 1, .rx_bad_auth = 1ull << 40, .tx_datagrams = 3
	};
	cJSON *o = cJSON_CreateObject();

	CHECK(status_add_counters(o, &demo_counters_table, &c) == o);
	CHECK_EQ_INT(cJSON_GetArraySize(o), 3);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "rx_datagrams")) == 1.0);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "rx_bad_auth")) == (double)(1ull << 40));
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "tx_datagrams")) == 3.0);
	CHECK(!cJSON_GetObjectItem(o, "unrelated"));
	cJSON_Delete(o);
}

int main(void)
{
	TAP_RUN(test_status_table_lists_every_counter_in_order);
	TAP_RUN(test_status_counters_read_their_own_fields);
	return tap_done();
}
