// SPDX-License-Identifier: MIT
/* state - the state file's I/O (contract in the header; the format is coord_state.h's). */
#include "wgpunch/state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "wgpunch/coord_state.h"
#include "wgpunch/log.h"

#define SS_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define SS_HEADERBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What writing and reading share: the stream key and state, and one record's buffers. */
struct state_io {
	uint8_t key[COORD_STATE_KEY_LEN];
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t *rec, *ct;
};

/* 0 or -ENOMEM (state_io_wipe() either way). */
static int state_io_init(struct state_io *io, const uint8_t priv[KEY_LEN])
{
	coord_state_key(io->key, priv);
	io->rec = malloc(COORD_STATE_NODE_MAX);
	io->ct = malloc(COORD_STATE_NODE_MAX + SS_ABYTES);
	return io->rec && io->ct ? 0 : -ENOMEM;
}

/* Keys and plaintext records are secret: wiped before they are freed. */
static void state_io_wipe(struct state_io *io)
{
	sodium_memzero(io->key, sizeof(io->key));
	sodium_memzero(&io->st, sizeof(io->st));
	if (io->rec)
		sodium_memzero(io->rec, COORD_STATE_NODE_MAX);
	free(io->rec);
	free(io->ct);
}

/* One stream message: its ciphertext length (u32 LE), then the ciphertext. */
static int put_msg(FILE *f, crypto_secretstream_xchacha20poly1305_state *st, const uint8_t *m,
		   size_t len, uint8_t tag, uint8_t *ct)
{
	uint8_t l[4];
	size_t clen = len + SS_ABYTES;

	crypto_secretstream_xchacha20poly1305_push(st, ct, NULL, m, len, NULL, 0, tag);
	for (int i = 0; i < 4; i++)
		l[i] = (uint8_t)(clen >> (8 * i));
	if (fwrite(l, 1, 4, f) != 4 || fwrite(ct, 1, clen, f) != clen)
		return -EIO;
	return 0;
}

int state_save(const char *path, const struct registry *reg, const struct ts_table *ts,
	       const uint8_t priv[KEY_LEN], const uint8_t pub[KEY_LEN], uint64_t now_ms)
{
	struct coord_state_header h = { .version = COORD_STATE_VERSION,
					.written_unix_ms = unix_ms(),
					.n_nodes = reg->n_nodes };
	uint8_t hdr[COORD_STATE_HEADER_LEN], ss_hdr[SS_HEADERBYTES];
	struct state_io io = { 0 };
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	uint32_t written = 0;
	FILE *f = NULL;
	int fd = -1, r = -ENOMEM;

	if (state_io_init(&io, priv) < 0 || !tmp)
		goto out;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		r = -errno;
		log_err_errno(r, "cannot write the state file %s", tmp);
		goto out;
	}
	fd = -1;
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	memcpy(h.pub, pub, KEY_LEN);
	coord_state_header_encode(hdr, &h);
	crypto_secretstream_xchacha20poly1305_init_push(&io.st, ss_hdr, io.key);
	r = -EIO;
	if (fwrite(hdr, 1, sizeof(hdr), f) != sizeof(hdr) ||
	    fwrite(ss_hdr, 1, sizeof(ss_hdr), f) != sizeof(ss_hdr))
		goto fail;
	/* Oldest first, so that reading them back keeps the expiry order. */
	for (const struct reg_node *n = registry_first(reg); n; n = n->lru_next) {
		uint8_t t[TS_TABLE_TS_LEN];
		bool has_ts = ts_table_get(ts, n->fp, t);
		uint64_t age = now_ms > n->last_seen_ms ? now_ms - n->last_seen_ms : 0;
		ssize_t len;

		if (!n->local_idx)
			continue; /* no session: nothing a restart would lose */
		len = coord_state_encode_node(n, has_ts ? t : NULL,
					      age > UINT32_MAX ? UINT32_MAX : (uint32_t)age, io.rec,
					      COORD_STATE_NODE_MAX);
		if (len < 0 || put_msg(f, &io.st, io.rec, (size_t)len, 0, io.ct) < 0)
			goto fail;
		written++;
	}
	if (put_msg(f, &io.st, NULL, 0, crypto_secretstream_xchacha20poly1305_TAG_FINAL, io.ct) < 0)
		goto fail;
	/* The count in the header is a hint for the reader's log; the stream's FINAL is what
	 * says the file is whole. */
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		goto fail;
	r = fclose(f);
	f = NULL;
	if (r != 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	log_info("state file %s: %u sessions kept for the next start", path, written);
	r = 0;
	goto out;
fail:
	if (r == -EIO && errno)
		r = -errno;
	log_err_errno(r, "cannot write the state file %s", tmp);
	if (f)
		fclose(f);
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	state_io_wipe(&io);
	free(tmp);
	return r;
}

/* The next stream message into m (cap bytes); its length, or -EBADMSG. */
static ssize_t get_msg(FILE *f, crypto_secretstream_xchacha20poly1305_state *st, uint8_t *ct,
		       uint8_t *m, size_t cap, uint8_t *tag)
{
	uint8_t l[4];
	unsigned long long mlen;
	size_t clen = 0;

	if (fread(l, 1, 4, f) != 4)
		return -EBADMSG;
	for (int i = 0; i < 4; i++)
		clen |= (size_t)l[i] << (8 * i);
	if (clen < SS_ABYTES || clen - SS_ABYTES > cap || fread(ct, 1, clen, f) != clen)
		return -EBADMSG;
	if (crypto_secretstream_xchacha20poly1305_pull(st, m, &mlen, tag, ct, clen, NULL, 0) != 0)
		return -EBADMSG;
	return (ssize_t)mlen;
}

int state_load(const char *path, struct registry *reg, struct ts_table *ts,
	       const uint8_t priv[KEY_LEN], const uint8_t pub[KEY_LEN], uint64_t now_ms,
	       struct state_result *res)
{
	uint8_t hdr[COORD_STATE_HEADER_LEN], ss_hdr[SS_HEADERBYTES];
	struct state_io io = { 0 };
	struct coord_state_header h;
	const char *why = NULL;
	uint64_t down_ms = 0, now_unix = unix_ms();
	struct stat sb;
	FILE *f = NULL;
	int fd, r = 0;

	memset(res, 0, sizeof(*res));
	if (state_io_init(&io, priv) < 0) {
		r = -ENOMEM;
		goto out;
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			r = log_err_errno(-errno, "cannot read the state file %s", path);
		goto out;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
	    (sb.st_mode & 077)) {
		/* Not ours to trust (nor to remove): someone else could have written it. */
		close(fd);
		r = log_err_errno(-EPERM,
				  "state file %s not read: it must be a regular file of "
				  "this user, mode 0600",
				  path);
		goto out;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		r = -ENOMEM;
		goto out;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	r = -EBADMSG;
	if (fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr) ||
	    coord_state_header_decode(hdr, &h) < 0) {
		why = "not a wgpunch state file of this version";
		goto bad;
	}
	if (sodium_memcmp(h.pub, pub, KEY_LEN) != 0) {
		why = "written by a coordinator with another key";
		goto bad;
	}
	if (now_unix > h.written_unix_ms)
		down_ms = now_unix - h.written_unix_ms;
	if (down_ms > (uint64_t)COORD_STATE_MAX_AGE_S * 1000) {
		why = "too old: every node has made a new session since";
		goto bad;
	}
	if (fread(ss_hdr, 1, sizeof(ss_hdr), f) != sizeof(ss_hdr) ||
	    crypto_secretstream_xchacha20poly1305_init_pull(&io.st, ss_hdr, io.key) != 0) {
		why = "truncated";
		goto bad;
	}
	for (;;) {
		struct coord_state_node s;
		struct reg_node *n;
		uint8_t tag;
		ssize_t len = get_msg(f, &io.st, io.ct, io.rec, COORD_STATE_NODE_MAX, &tag);

		if (len < 0) {
			why = "does not authenticate, or is truncated";
			goto bad;
		}
		if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL)
			break;
		if (coord_state_decode_node(io.rec, (size_t)len, &s) < 0) {
			why = "a record does not decode";
			goto bad;
		}
		s.age_ms = s.age_ms + down_ms > UINT32_MAX ? UINT32_MAX
							   : (uint32_t)(s.age_ms + down_ms);
		if (coord_state_apply(reg, &s, now_ms, &n) < 0) {
			res->skipped++;
			continue;
		}
		res->nodes++;
		res->sessions += n->local_idx != 0;
		if (s.has_ts)
			ts_table_commit(ts, n->fp, s.ts);
	}
	r = 0;
	log_info("state file %s: %u nodes and %u sessions back (%u refused), written %llu ms ago",
		 path, res->nodes, res->sessions, res->skipped, (unsigned long long)down_ms);
	goto done;
bad:
	log_err_errno(r, "state file %s not used: %s", path, why);
done:
	/* Read once, whatever it held: a send counter must never be restored twice. */
	if (unlink(path) < 0)
		log_err_errno(-errno, "cannot remove the state file %s", path);
out:
	if (f)
		fclose(f);
	state_io_wipe(&io);
	return r;
}
