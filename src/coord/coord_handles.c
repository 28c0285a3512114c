// SPDX-License-Identifier: MIT
/*
 * coord_handles - the coordinator's one list of libuv handles.
 */
#include "wgpunch/coord_handles.h"

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

void coord_handles_init(struct coord_handles *l, void (*on_closed)(void *arg), void *arg)
{
	l->head = NULL;
	l->n = 0;
	l->closing = false;
	l->on_closed = on_closed;
	l->arg = arg;
}

static void coord_handles_link(struct coord_handles *l, struct coord_handle *h,
			       const struct coord_handle_ops *ops, void *owner)
{
	h->uv.handle.data = owner;
	h->ops = ops;
	h->owner = owner;
	h->list = l;
	h->prev = NULL;
	h->next = l->head;
	if (l->head)
		l->head->prev = h;
	l->head = h;
	l->n++;
}

void coord_handles_add_udp(struct coord_handles *l, uv_loop_t *loop, struct coord_handle *h,
			   const struct coord_handle_ops *ops, void *owner)
{
	uv_udp_init(loop, &h->uv.udp);
	coord_handles_link(l, h, ops, owner);
}

void coord_handles_add_timer(struct coord_handles *l, uv_loop_t *loop, struct coord_handle *h,
			     const struct coord_handle_ops *ops, void *owner)
{
	uv_timer_init(loop, &h->uv.timer);
	coord_handles_link(l, h, ops, owner);
}

int coord_handles_reload_check(const struct coord_handles *l, const struct config *conf)
{
	for (const struct coord_handle *h = l->head; h; h = h->next) {
		int r = h->ops && h->ops->reload_check ? h->ops->reload_check(h, conf) : 0;

		if (r < 0)
			return r;
	}
	return 0;
}

static void coord_handles_on_closed(uv_handle_t *uh)
{
	struct coord_handle *h = container_of(uh, struct coord_handle, uv.handle);
	struct coord_handles *l = h->list;

	if (h->prev)
		h->prev->next = h->next;
	else
		l->head = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
	/* The last one out tells the owner of the list, which may free everything, h too. */
	if (--l->n == 0 && l->closing && l->on_closed)
		l->on_closed(l->arg);
}

void coord_handles_close_all(struct coord_handles *l)
{
	if (l->closing)
		return;
	l->closing = true;
	if (!l->head) {
		if (l->on_closed)
			l->on_closed(l->arg);
		return;
	}
	for (struct coord_handle *h = l->head; h; h = h->next)
		if (!uv_is_closing(&h->uv.handle))
			uv_close(&h->uv.handle, coord_handles_on_closed);
}
