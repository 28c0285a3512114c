/* SPDX-License-Identifier: MIT */
#include "wgpunch/key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"

/* RFC 7748 section 6.1: Alice's key pair. */
static const uint8_t alice_priv[KEY_LEN] = {
	0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1,
	0x72, 0x51, 0xb2, 0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0,
	0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a,
};
static const uint8_t alice_pub[KEY_LEN] = {
	0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d,
	0xdc, 0xb4, 0x3e, 0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38,
	0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
};
#define ALICE_PRIV_B64 "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo="
#define ALICE_PUB_B64 "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="

static void test_key_rfc7748_public_key(void)
{
	uint8_t pub[KEY_LEN];

	CHECK_EQ_INT(key_public_from_private(pub, alice_priv), 0);
	CHECK(memcmp(pub, alice_pub, KEY_LEN) == 0);
}

static void test_key_base64_known_vector(void)
{
	char b64[KEY_B64_LEN + 1];
	uint8_t k[KEY_LEN];

	key_to_base64(b64, alice_priv);
	CHECK(strcmp(b64, ALICE_PRIV_B64) == 0);
	key_to_base64(b64, alice_pub);
	CHECK(strcmp(b64, ALICE_PUB_B64) == 0);
	CHECK_EQ_INT(key_from_base64(k, ALICE_PUB_B64), 0);
	CHECK(memcmp(k, alice_pub, KEY_LEN) == 0);
}

static void test_key_base64_round_trip(void)
{
	char b64[KEY_B64_LEN + 1];
	uint8_t k[KEY_LEN], back[KEY_LEN];

	for (int i = 0; i < 200; i++) {
		for (int j = 0; j < KEY_LEN; j++)
			k[j] = (uint8_t)(rand() & 0xff);
		if (i == 0)
			memset(k, 0, sizeof(k));
		if (i == 1)
			memset(k, 0xff, sizeof(k));
		key_to_base64(b64, k);
		CHECK_EQ_INT(strlen(b64), KEY_B64_LEN);
		CHECK_EQ_INT(key_from_base64(back, b64), 0);
		CHECK(memcmp(k, back, KEY_LEN) == 0);
	}
}

static void test_key_base64_rejects(void)
{
	static const char *const bad[] = {
		"",
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo",   /* no pad */
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo==", /* 45 */
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm==",  /* 31 bytes */
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=",  /* non-zero pad bits */
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmr=",
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbT-o=", /* URL-safe alphabet */
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbT o=",
		" hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=",
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n",
		"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066Sp=qqbTmo=",
	};
	uint8_t k[KEY_LEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = key_from_base64(k, bad[i]);

		if (r != -EINVAL)
			printf("# accepted '%s'\n", bad[i]);
		CHECK_EQ_INT(r, -EINVAL);
	}
	CHECK_EQ_INT(key_from_base64(k, NULL), -EINVAL);
}

/* Every one of the 16 digits whose low two bits are zero may end a key. */
static void test_key_base64_accepts_every_canonical_last_digit(void)
{
	static const char last[] = "AEIMQUYcgkosw048";
	char s[KEY_B64_LEN + 1] = ALICE_PUB_B64;
	char b64[KEY_B64_LEN + 1];
	uint8_t k[KEY_LEN];

	for (size_t i = 0; i < sizeof(last) - 1; i++) {
		s[KEY_B64_LEN - 2] = last[i];
		CHECK_EQ_INT(key_from_base64(k, s), 0);
		key_to_base64(b64, k);
		CHECK(strcmp(b64, s) == 0);
	}
}

static void test_key_generate_is_clamped_and_random(void)
{
	uint8_t a[KEY_LEN], b[KEY_LEN], pub[KEY_LEN];

	for (int i = 0; i < 64; i++) {
		key_generate_private(a);
		CHECK_EQ_INT(a[0] & 7, 0);
		CHECK_EQ_INT(a[31] & 128, 0);
		CHECK_EQ_INT(a[31] & 64, 64);
		CHECK_EQ_INT(key_public_from_private(pub, a), 0);
		CHECK(!key_is_zero(pub));
	}
	key_generate_private(b);
	CHECK(memcmp(a, b, KEY_LEN) != 0);
}

/* `wg pubkey` clamps its input, so an unclamped key names the same public key as its clamp. */
static void test_key_public_ignores_clamp_bits(void)
{
	uint8_t priv[KEY_LEN], pub1[KEY_LEN], pub2[KEY_LEN];

	memcpy(priv, alice_priv, KEY_LEN);
	priv[0] |= 7;
	priv[31] |= 128;
	CHECK_EQ_INT(key_public_from_private(pub1, priv), 0);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	CHECK_EQ_INT(key_public_from_private(pub2, priv), 0);
	CHECK(memcmp(pub1, pub2, KEY_LEN) == 0);
}

static void test_key_is_zero(void)
{
	uint8_t k[KEY_LEN] = { 0 };

	CHECK(key_is_zero(k));
	k[31] = 1;
	CHECK(!key_is_zero(k));
}

/*
 * Known answer, computed independently (Python hashlib):
 * blake2b(alice_pub, digest_size=16, key=b"wgpunch key fingerprint v1")[:8], little-endian.
 */
static void test_key_fingerprint_stable(void)
{
	uint8_t other[KEY_LEN];

	CHECK(key_fingerprint(alice_pub) == UINT64_C(0x528019b9a5c0d2f1));
	CHECK(key_fingerprint(alice_pub) == key_fingerprint(alice_pub));
	memcpy(other, alice_pub, KEY_LEN);
	other[0] ^= 1;
	CHECK(key_fingerprint(other) != key_fingerprint(alice_pub));
}

static void test_key_short(void)
{
	char out[KEY_SHORT_LEN];

	CHECK(strcmp(key_short(alice_pub, out), "hSDwCYkw...") == 0);
}

static char tmpdir[] = "/tmp/wgpunch-test-key-XXXXXX";

static const char *write_file(const char *name, const char *content, mode_t mode)
{
	static char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return path;
	if (write(fd, content, strlen(content)) < 0)
		printf("# write %s failed\n", path);
	close(fd);
	chmod(path, mode);
	return path;
}

static void test_key_read_file(void)
{
	uint8_t k[KEY_LEN];
	char err[128], path[256];
	const char *p;

	p = write_file("good.key", "  " ALICE_PRIV_B64 "\n\n", 0600);
	memset(k, 0, sizeof(k));
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), 0);
	CHECK(memcmp(k, alice_priv, KEY_LEN) == 0);

	/* Private: refused when group or others have any access; public keys may be 0644. */
	p = write_file("open.key", ALICE_PRIV_B64 "\n", 0640);
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "0640") != NULL);
	CHECK(strstr(err, ALICE_PRIV_B64) == NULL);
	p = write_file("open.key", ALICE_PRIV_B64 "\n", 0602);
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), -EPERM);
	p = write_file("pub.key", ALICE_PUB_B64 "\n", 0644);
	CHECK_EQ_INT(key_read_file(p, k, false, err, sizeof(err)), 0);
	CHECK(memcmp(k, alice_pub, KEY_LEN) == 0);

	p = write_file("bad.key", "not a key\n", 0600);
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "base64") != NULL);
	p = write_file("two.key", ALICE_PRIV_B64 " " ALICE_PRIV_B64 "\n", 0600);
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), -EINVAL);
	p = write_file("empty.key", "", 0600);
	CHECK_EQ_INT(key_read_file(p, k, true, err, sizeof(err)), -EINVAL);

	snprintf(path, sizeof(path), "%s/missing.key", tmpdir);
	CHECK_EQ_INT(key_read_file(path, k, true, err, sizeof(err)), -ENOENT);
	CHECK_EQ_INT(key_read_file(tmpdir, k, false, err, sizeof(err)), -EISDIR);
}

int main(void)
{
	static const char *const names[] = { "good.key", "open.key", "pub.key",
					     "bad.key",  "two.key",  "empty.key" };
	char path[256];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	srand(1);
	TAP_RUN(test_key_rfc7748_public_key);
	TAP_RUN(test_key_base64_known_vector);
	TAP_RUN(test_key_base64_round_trip);
	TAP_RUN(test_key_base64_rejects);
	TAP_RUN(test_key_base64_accepts_every_canonical_last_digit);
	TAP_RUN(test_key_generate_is_clamped_and_random);
	TAP_RUN(test_key_public_ignores_clamp_bits);
	TAP_RUN(test_key_is_zero);
	TAP_RUN(test_key_fingerprint_stable);
	TAP_RUN(test_key_short);
	TAP_RUN(test_key_read_file);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
	return tap_done();
}
