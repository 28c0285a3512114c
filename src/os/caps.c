// SPDX-License-Identifier: MIT
/*
 * caps - drops capabilities with capget/capset and prctl; see caps.h.
 *
 * Order matters: the bounding set is reduced first, because PR_CAPBSET_DROP needs
 * CAP_SETPCAP in the effective set, which capset then removes.
 */
#include "wgpunch/caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Beyond what the kernel knows PR_CAPBSET_READ fails with EINVAL; this only bounds the loop. */
#define CAPS_MAX 64

static int caps_get(struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };

	memset(d, 0, sizeof(*d) * _LINUX_CAPABILITY_U32S_3);
	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	return 0;
}

static bool caps_has(const struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3], int cap,
		     bool permitted)
{
	uint32_t set;

	if (cap < 0 || cap >= 32 * _LINUX_CAPABILITY_U32S_3)
		return false;
	set = permitted ? d[cap / 32].permitted : d[cap / 32].effective;
	return set >> (cap % 32) & 1;
}

int caps_effective(uint64_t *eff)
{
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	int r = caps_get(d);

	if (r < 0)
		return r;
	*eff = (uint64_t)d[1].effective << 32 | d[0].effective;
	return 0;
}

int caps_keep_only(const int *keep, size_t n)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct cur[_LINUX_CAPABILITY_U32S_3], d[_LINUX_CAPABILITY_U32S_3];
	bool can_setpcap;
	size_t i;
	int cap, r;

	r = caps_get(cur);
	if (r < 0)
		return r;
	memset(d, 0, sizeof(d));
	for (i = 0; i < n; i++) {
		if (!caps_has(cur, keep[i], true))
			continue;
		d[keep[i] / 32].permitted |= 1u << (keep[i] % 32);
		d[keep[i] / 32].effective |= 1u << (keep[i] % 32);
	}

	can_setpcap = caps_has(cur, CAP_SETPCAP, false);
	for (cap = 0; can_setpcap && cap < CAPS_MAX; cap++) {
		bool kept = false;

		if (prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0) < 0)
			break; /* past the last capability this kernel knows */
		for (i = 0; i < n; i++)
			kept |= keep[i] == cap;
		if (!kept && prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) < 0)
			return -errno;
	}
	/* Ambient capabilities would survive an exec; there should be none, make sure. */
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return 0;
}
