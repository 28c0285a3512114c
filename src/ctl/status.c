// SPDX-License-Identifier: MIT
/*
 * status - the shared pieces of the status document: counters come from
 * their modules' tables (counters.h), so a counter is declared once and the
 * document, the metrics and the docs cannot disagree on its name.
 */
#include "wgpunch/status.h"

cJSON *status_add_counters(cJSON *obj, const struct counter_table *t, const void *base)
{
	for (size_t i = 0; i < t->n; i++)
		if (!cJSON_AddNumberToObject(obj, t->defs[i].name,
					     (double)counter_value(base, &t->defs[i])))
			return NULL;
	return obj;
}
