/* SPDX-License-Identifier: MIT */
/*
 * key - X25519 keys in WireGuard's base64 form, with libsodium.
 */
#include "wgpunch/key.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The BLAKE2b key of key_fingerprint(): the 26 ASCII bytes below, no NUL.
 * Fixed, public and versioned: it only separates our fingerprints from other
 * BLAKE2b uses of the same public key. Changing it changes every fingerprint
 * on the wire (proto.h peer lists), so node and coordinator must agree on it.
 */
static const char key_fingerprint_key[] = "wgpunch key fingerprint v1";

/* A key file holds 44 characters plus white space; anything much longer is not a key. */
#define KEY_FILE_MAX 256

void key_to_base64(char out[KEY_B64_LEN + 1], const uint8_t key[KEY_LEN])
{
	sodium_bin2base64(out, KEY_B64_LEN + 1, key, KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

/* Value of a standard base64 digit, or -1. */
static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int key_from_base64(uint8_t key[KEY_LEN], const char *s)
{
	uint8_t tmp[KEY_LEN];
	size_t bin_len = 0;
	const char *end = NULL;
	int last;

	if (!s || strlen(s) != KEY_B64_LEN || s[KEY_B64_LEN - 1] != '=')
		return -EINVAL;
	/*
	 * 43 digits carry 258 bits for 256: the last digit's low two bits are
	 * padding and must be zero, or two strings would name one key.
	 */
	last = b64_value(s[KEY_B64_LEN - 2]);
	if (last < 0 || (last & 3) != 0)
		return -EINVAL;
	if (sodium_base642bin(tmp, sizeof(tmp), s, KEY_B64_LEN, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != KEY_LEN || end != s + KEY_B64_LEN) {
		sodium_memzero(tmp, sizeof(tmp));
		return -EINVAL;
	}
	memcpy(key, tmp, KEY_LEN);
	sodium_memzero(tmp, sizeof(tmp));
	return 0;
}

void key_generate_private(uint8_t key[KEY_LEN])
{
	/* Idempotent; makes sure the random source is set up before the first key. */
	if (sodium_init() < 0)
		abort();
	randombytes_buf(key, KEY_LEN);
	/* Curve25519 clamping (RFC 7748 section 5), as `wg genkey` writes its keys. */
	key[0] &= 248;
	key[31] = (key[31] & 127) | 64;
}

int key_public_from_private(uint8_t pub[KEY_LEN], const uint8_t priv[KEY_LEN])
{
	/* libsodium clamps a copy of priv first, as `wg pubkey` does: same result for any input. */
	if (crypto_scalarmult_base(pub, priv) != 0)
		return -EINVAL;
	return 0;
}

bool key_is_zero(const uint8_t key[KEY_LEN])
{
	return sodium_is_zero(key, KEY_LEN) == 1;
}

/*
 * BLAKE2b-128 keyed with key_fingerprint_key; the first 8 bytes of the digest,
 * little-endian. (BLAKE2b in libsodium gives at least 16 bytes.)
 */
uint64_t key_fingerprint(const uint8_t pub[KEY_LEN])
{
	uint8_t h[crypto_generichash_BYTES_MIN];
	uint64_t fp = 0;

	crypto_generichash(h, sizeof(h), pub, KEY_LEN, (const uint8_t *)key_fingerprint_key,
			   sizeof(key_fingerprint_key) - 1);
	for (int i = 7; i >= 0; i--)
		fp = fp << 8 | h[i];
	return fp;
}

const char *key_short(const uint8_t key[KEY_LEN], char out[KEY_SHORT_LEN])
{
	char b64[KEY_B64_LEN + 1];

	key_to_base64(b64, key);
	memcpy(out, b64, 8);
	memcpy(out + 8, "...", 4);
	return out;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int key_read_file(const char *path, uint8_t key[KEY_LEN], bool private_key, char *err,
		  size_t err_cap)
{
	char buf[KEY_FILE_MAX + 1];
	size_t len = 0;
	struct stat st;
	char *s, *e;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		snprintf(err, err_cap, "%s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, err_cap, "%s", strerror(-r));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		snprintf(err, err_cap, "%s", strerror(EISDIR));
		goto out;
	}
	/* Checked before reading: a key others could read is already no secret. */
	if (private_key && (st.st_mode & 077)) {
		r = -EPERM;
		snprintf(err, err_cap, "mode %04o lets group or others access it (chmod 600 it)",
			 (unsigned int)(st.st_mode & 07777));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			snprintf(err, err_cap, "%s", strerror(-r));
			goto out;
		}
		if (n == 0 || len + (size_t)n == sizeof(buf) - 1) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	s = buf;
	while (is_space(*s))
		s++;
	e = buf + len;
	while (e > s && is_space(e[-1]))
		*--e = '\0';
	r = len < sizeof(buf) - 1 ? key_from_base64(key, s) : -EINVAL;
	if (r < 0)
		snprintf(err, err_cap, "does not hold a base64 key (44 characters)");
out:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return r;
}
