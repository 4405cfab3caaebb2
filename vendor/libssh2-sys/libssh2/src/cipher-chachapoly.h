/* $OpenBSD: cipher-chachapoly.h,v 1.4 2014/06/24 01:13:21 djm Exp $ */

/*
 * Copyright (c) Damien Miller 2013 <djm@mindrot.org>
 *
 * Permission to use, copy, modify, and distribute this software for any
 * purpose with or without fee is hereby granted, provided that the above
 * copyright notice and this permission notice appear in all copies.
 *
 * THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
 * WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
 * ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 * WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
 * ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
 * OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef CHACHA_POLY_AEAD_H
#define CHACHA_POLY_AEAD_H

#include "chacha.h"
#include "poly1305.h"

#define CHACHA_KEYLEN   32 /* Only 256-bit keys used here */

/* With OpenSSL, ChaCha20 runs through libcrypto's EVP_chacha20(), as OpenSSH's
   cipher-chachapoly-libcrypto.c does: it has SIMD code where chacha.c is
   portable C. Poly1305: see LIBSSH2_POLY1305_EVP below. */
#if defined(LIBSSH2_OPENSSL) && !defined(LIBSSH2_WOLFSSL) && \
    !defined(OPENSSL_NO_CHACHA) && OPENSSL_VERSION_NUMBER >= 0x10100000L
#define LIBSSH2_CHACHAPOLY_EVP 1
#else
#define LIBSSH2_CHACHAPOLY_EVP 0
#endif

/* With OpenSSL 3, the Poly1305 tag of a packet of LIBSSH2_POLY1305_EVP_MIN
   bytes or more is calculated by libcrypto's "POLY1305" EVP_MAC, which has
   SIMD code: about eight times poly1305.c's speed on a 32 KiB packet, where
   poly1305.c took half of a connector's CPU time. Shorter packets stay with
   poly1305.c, which is faster there (no provider dispatch). Both give the
   same tag. */
#if LIBSSH2_CHACHAPOLY_EVP && OPENSSL_VERSION_NUMBER >= 0x30000000L
#define LIBSSH2_POLY1305_EVP 1
#else
#define LIBSSH2_POLY1305_EVP 0
#endif
#define LIBSSH2_POLY1305_EVP_MIN 256

struct chachapoly_ctx {
#if LIBSSH2_CHACHAPOLY_EVP
    EVP_CIPHER_CTX *main_evp, *header_evp;
#if LIBSSH2_POLY1305_EVP
    /* NULL when no provider offers POLY1305 (FIPS): poly1305.c then */
    EVP_MAC_CTX *poly_mac;
#endif
#else
    struct chacha_ctx main_ctx, header_ctx;
#endif
};

int chachapoly_init(struct chachapoly_ctx *ctx, const unsigned char *key,
                    size_t keylen);
int chachapoly_crypt(struct chachapoly_ctx *ctx, libssh2_uint64_t seqnr,
                     unsigned char *dest, const unsigned char *src, size_t len,
                     size_t aadlen, int do_encrypt);
void chachapoly_free(struct chachapoly_ctx *ctx);
int chachapoly_get_length(struct chachapoly_ctx *ctx,
                          unsigned int *plenp, libssh2_uint64_t seqnr,
                          const unsigned char *cp, size_t len);

#endif /* CHACHA_POLY_AEAD_H */
