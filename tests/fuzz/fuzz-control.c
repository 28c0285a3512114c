/* SPDX-License-Identifier: MIT */
/*
 * fuzz-control - arbitrary bytes as what a client writes to the control
 * socket, and as what an agent answers to `wgpunch status`.
 *
 * The request side replays the server's reads byte by byte: the answer is
 * decided at the first whole line (or at EOF), never later, and "status"
 * is recognised only as the whole line. The reply side is what the client
 * does with an answer: parse it, print it as JSON and as the status table.
 */
#include <cJSON.h>
#include <string.h>

#include "fuzz.h"
#include "wgpunch/control.h"

static FILE *devnull;

static void check_request(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t room = CONTROL_MAX_REQUEST - 1, len = size < room ? size : room, i;
	enum control_request req = CONTROL_REQ_MORE;

	/* The server reads into a buffer of `room` bytes, a read at a time. */
	for (i = 0; i <= len && req == CONTROL_REQ_MORE; i++)
		req = control_parse_request(buf, i, false);
	if (req == CONTROL_REQ_MORE) /* only when len < room: the client then closed */
		req = control_parse_request(buf, len, true);
	FUZZ_ASSERT(req == CONTROL_REQ_STATUS || req == CONTROL_REQ_UNKNOWN ||
		    req == CONTROL_REQ_DROP);
	if (req == CONTROL_REQ_STATUS) {
		const char *nl = memchr(buf, '\n', len);
		size_t line = nl ? (size_t)(nl - buf) : len;

		FUZZ_ASSERT(memcmp(buf, "status", 6) == 0);
		FUZZ_ASSERT(line == 6 || (line == 7 && buf[6] == '\r'));
	}
	if (req == CONTROL_REQ_DROP)
		FUZZ_ASSERT(len == 0 || (len == room && !memchr(buf, '\n', len)));
}

static void check_reply(const uint8_t *data, size_t size)
{
	/* control_query() returns the reply NUL-terminated; main.c parses it as a string. */
	char *text = malloc(size + 1);
	cJSON *doc;

	FUZZ_ASSERT(text);
	memcpy(text, data, size);
	text[size] = '\0';
	doc = cJSON_Parse(text);
	free(text);
	if (doc && cJSON_IsObject(doc)) {
		char *json = cJSON_Print(doc);

		free(json); /* NULL only when out of memory */
		control_print_table(doc, devnull);
	}
	cJSON_Delete(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull)
		devnull = fopen("/dev/null", "we");
	FUZZ_ASSERT(devnull);
	check_request(data, size);
	check_reply(data, size);
	return 0;
}
