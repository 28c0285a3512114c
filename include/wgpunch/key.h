/* SPDX-License-Identifier: MIT */
/*
 * key - X25519 keys as WireGuard prints them (base64, 44 characters).
 */
#ifndef WGPUNCH_KEY_H
#define WGPUNCH_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_LEN 32
#define KEY_B64_LEN 44 /* without the NUL */

/* Writes the 44-character base64 form and a NUL. */
void key_to_base64(char out[KEY_B64_LEN + 1], const uint8_t key[KEY_LEN]);

/* Exactly 44 characters of standard base64 encoding 32 bytes (one '=' pad). 0 or -EINVAL. */
int key_from_base64(uint8_t key[KEY_LEN], const char *s);

/* A new private key: 32 random bytes, clamped as `wg genkey` does. */
void key_generate_private(uint8_t key[KEY_LEN]);

/* X25519 public key of a private key, as `wg pubkey`. 0 or -EINVAL (degenerate key). */
int key_public_from_private(uint8_t pub[KEY_LEN], const uint8_t priv[KEY_LEN]);

bool key_is_zero(const uint8_t key[KEY_LEN]);

/*
 * 64-bit fingerprint of a public key: the coordinator stores peer lists as
 * these. Keyed BLAKE2b, so it cannot be steered without grinding ~2^64 keys.
 */
uint64_t key_fingerprint(const uint8_t pub[KEY_LEN]);

/* Short printable form for logs: the first 8 base64 characters and "...". */
#define KEY_SHORT_LEN 12
const char *key_short(const uint8_t key[KEY_LEN], char out[KEY_SHORT_LEN]);

/*
 * Reads a file holding one base64 key (surrounding white space allowed).
 * When private, a file readable by group or others is refused (-EPERM).
 * On failure writes a message (no file name, no key material) to err.
 * Returns 0 or -errno.
 */
int key_read_file(const char *path, uint8_t key[KEY_LEN], bool private_key, char *err,
		  size_t err_cap);

#endif
