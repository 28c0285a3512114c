// SPDX-License-Identifier: MIT
/*
 * coord_pair - order and pending attempts of the punch (see coord_pair.h).
 */
#include "wgpunch/coord_pair.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define COORD_PAIR_NONE UINT32_MAX

bool coord_pair_cause_first(uint8_t filter_cause, uint8_t filter_other, enum coord_pair_why *why)
{
	bool cause_p = filter_cause == PROTO_FILTER_POISONABLE;
	bool other_p = filter_other == PROTO_FILTER_POISONABLE;
	enum coord_pair_why w;
	bool cause_first;

	/* Exactly one poisonable side goes first; otherwise the side whose event
	 * caused the punch, which is the one most likely to have a fresh mapping. */
	if (cause_p != other_p) {
		w = COORD_PAIR_WHY_POISONABLE;
		cause_first = cause_p;
	} else {
		w = cause_p ? COORD_PAIR_WHY_BOTH_POISONABLE : COORD_PAIR_WHY_CAUSED;
		cause_first = true;
	}
	if (why)
		*why = w;
	return cause_first;
}

const char *coord_pair_why_text(enum coord_pair_why why)
{
	switch (why) {
	case COORD_PAIR_WHY_POISONABLE:
		return "first is the only poisonable side";
	case COORD_PAIR_WHY_BOTH_POISONABLE:
		return "both poisonable, first caused it";
	case COORD_PAIR_WHY_CAUSED:
		break;
	}
	return "first caused it";
}

uint8_t coord_pair_filter_of(const struct reg_node *n)
{
	return n->filter_state == REG_FILTER_DONE ? n->filter : PROTO_FILTER_UNKNOWN;
}

void coord_pair_punch_about(const struct reg_node *about, uint32_t attempt, uint8_t flags,
			    struct proto_punch *out)
{
	struct addr lan[PROTO_MAX_LAN], six = { 0 };
	bool has6 = registry_get_mapping6(about, &six);
	size_t k;

	memset(out, 0, sizeof(*out));
	out->attempt = attempt;
	memcpy(out->peer_key, about->key, KEY_LEN);
	out->flags = flags;
	registry_addr_unpack(&out->peer_public, &about->mapping[0]);
	/* The IPv6 mapping first: the address the peer really sends from, which its stateful
	 * firewall (or NPTv6) lets answers back to, ahead of what it registered. */
	if (has6)
		out->lan[out->n_lan++] = six;
	k = registry_get_lan(about, lan, PROTO_MAX_LAN);
	for (size_t i = 0; i < k && out->n_lan < PROTO_MAX_LAN; i++)
		if (!has6 || !addr_equal(&lan[i], &six))
			out->lan[out->n_lan++] = lan[i];
}

int coord_pair_table_init(struct coord_pair_table *t, uint32_t cap)
{
	memset(t, 0, sizeof(*t));
	if (cap == 0 || cap > COORD_PAIR_MAX_CAP)
		return -EINVAL;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->cap = cap;
	t->head = t->tail = COORD_PAIR_NONE;
	for (uint32_t i = 0; i < cap; i++)
		t->slots[i].next = i + 1 < cap ? i + 1 : COORD_PAIR_NONE;
	t->free_head = 0;
	return 0;
}

void coord_pair_table_destroy(struct coord_pair_table *t)
{
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

/* Takes a free slot and appends it to the age list. */
static struct coord_pair_pending *coord_pair_alloc(struct coord_pair_table *t, uint64_t now_ms)
{
	uint32_t i = t->free_head;
	struct coord_pair_pending *p;

	if (i == COORD_PAIR_NONE)
		return NULL;
	p = &t->slots[i];
	t->free_head = p->next;
	/* gen never 0, so an attempt id is never 0 ("none"). */
	if (++p->gen == 0)
		p->gen = 1;
	p->attempt = (uint32_t)p->gen << 16 | i;
	p->deadline_ms = now_ms + COORD_PAIR_ACK_TIMEOUT_MS;
	p->prev = t->tail;
	p->next = COORD_PAIR_NONE;
	if (t->tail != COORD_PAIR_NONE)
		t->slots[t->tail].next = i;
	else
		t->head = i;
	t->tail = i;
	t->n++;
	return p;
}

static void coord_pair_release_slot(struct coord_pair_table *t, uint32_t i,
				    struct coord_pair_release *out)
{
	struct coord_pair_pending *p = &t->slots[i];

	out->attempt = p->attempt;
	memcpy(out->first_key, p->first_key, KEY_LEN);
	memcpy(out->second_key, p->second_key, KEY_LEN);

	if (p->prev != COORD_PAIR_NONE)
		t->slots[p->prev].next = p->next;
	else
		t->head = p->next;
	if (p->next != COORD_PAIR_NONE)
		t->slots[p->next].prev = p->prev;
	else
		t->tail = p->prev;
	p->attempt = 0;
	p->prev = COORD_PAIR_NONE;
	p->next = t->free_head;
	t->free_head = i;
	t->n--;
}

void coord_pair_start(struct coord_pair_table *t, const struct reg_node *cause,
		      const struct reg_node *other, uint64_t now_ms, struct coord_pair_plan *out)
{
	enum coord_pair_why why;
	bool cause_first = coord_pair_cause_first(coord_pair_filter_of(cause),
						  coord_pair_filter_of(other), &why);
	struct coord_pair_pending *p;

	memset(out, 0, sizeof(*out));
	out->why = why;
	out->first = cause_first ? cause : other;
	out->second = cause_first ? other : cause;

	p = coord_pair_alloc(t, now_ms);
	if (p) {
		memcpy(p->first_key, out->first->key, KEY_LEN);
		memcpy(p->second_key, out->second->key, KEY_LEN);
		out->attempt = p->attempt;
	} else {
		out->second_now = true;
	}
	coord_pair_punch_about(out->second, out->attempt, p ? PROTO_PUNCH_F_ACK : 0,
			       &out->to_first);
	coord_pair_punch_about(out->first, out->attempt, 0, &out->to_second);
}

bool coord_pair_ack(struct coord_pair_table *t, uint32_t attempt, const uint8_t from_key[KEY_LEN],
		    struct coord_pair_release *out)
{
	uint32_t i = attempt & 0xffff;
	struct coord_pair_pending *p;

	if (attempt == 0 || i >= t->cap)
		return false;
	p = &t->slots[i];
	/* Only the first side may release: the second must not hurry itself. */
	if (p->attempt != attempt || memcmp(p->first_key, from_key, KEY_LEN))
		return false;
	coord_pair_release_slot(t, i, out);
	return true;
}

bool coord_pair_expire(struct coord_pair_table *t, uint64_t now_ms, struct coord_pair_release *out)
{
	if (t->head == COORD_PAIR_NONE || t->slots[t->head].deadline_ms > now_ms)
		return false;
	coord_pair_release_slot(t, t->head, out);
	return true;
}

int64_t coord_pair_next_deadline(const struct coord_pair_table *t)
{
	if (t->head == COORD_PAIR_NONE)
		return -1;
	return (int64_t)t->slots[t->head].deadline_ms;
}
