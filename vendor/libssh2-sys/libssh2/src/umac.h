#ifndef LIBSSH2_UMAC_H
#define LIBSSH2_UMAC_H
/* Copyright (C) The libssh2 project and its contributors.
 * All rights reserved.
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are met:
 *
 * 1. Redistributions of source code must retain the above copyright notice,
 *    this list of conditions and the following disclaimer.
 *
 * 2. Redistributions in binary form must reproduce the above copyright notice,
 *    this list of conditions and the following disclaimer in the documentation
 *    and/or other materials provided with the distribution.
 *
 * 3. Neither the name of the copyright holder nor the names of its
 *    contributors may be used to endorse or promote products derived from this
 *    software without specific prior written permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
 * AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
 * IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 * ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE
 * LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 * CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 * SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 * INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 * CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 * ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* UMAC (RFC 4418) with 64- and 128-bit tags, as OpenSSH uses it for
   umac-64@openssh.com and umac-128@openssh.com. Needs a backend that
   defines LIBSSH2_UMAC (AES-128 block encryption, crypto.h). */

#include "libssh2_priv.h"

#if LIBSSH2_UMAC

#define SSH2_UMAC_KEY_LEN    16  /* an AES-128 key */
#define SSH2_UMAC_NONCE_LEN  8
#define SSH2_UMAC_MAX_ITERS  4   /* UHASH iterations: 4 bytes of tag each */
#define SSH2_UMAC_L1_WORDS   256 /* NH key words per iteration (1024 bytes) */

struct ssh2_umac_ctx {
    /* Derived from the key once, by ssh2_umac_init(). */
    int taglen;                   /* 8 or 16 */
    int iters;                    /* taglen / 4 */
    /* L1 (NH) key as native words, shared by the iterations: iteration i
       starts 4 words further in (RFC 4418 section 5.1, Toeplitz) */
    uint32_t nh_key[SSH2_UMAC_L1_WORDS + 4 * (SSH2_UMAC_MAX_ITERS - 1)];
    uint64_t poly_key[SSH2_UMAC_MAX_ITERS];  /* L2: k64, masked */
    uint64_t l3_key1[SSH2_UMAC_MAX_ITERS][4]; /* L3: the keys that meet the
                                                 64-bit L2 result, mod p36 */
    uint32_t l3_key2[SSH2_UMAC_MAX_ITERS];
    ssh2_aes128_ecb_ctx pdf_aes;  /* keyed with KDF(K, 0, 16), for the pad */
    int pdf_aes_set;
    unsigned char pad_nonce[SSH2_UMAC_NONCE_LEN]; /* nonce of pad_block */
    unsigned char pad_block[16];  /* AES output of the last PDF call */
    int pad_set;

    /* The message being hashed. */
    uint64_t nh_sum[SSH2_UMAC_MAX_ITERS];   /* NH of the current chunk */
    uint64_t poly_sum[SSH2_UMAC_MAX_ITERS]; /* L2 of the chunks before it */
    libssh2_uint64_t msg_len;     /* bytes so far */
    size_t chunk_hashed;          /* bytes of the current 1024-byte chunk
                                     hashed into nh_sum */
    unsigned char buf[32];        /* a partial 32-byte NH block */
    size_t buf_len;
};

/* Derives every subkey from the 16-byte key, for tags of taglen (8 or 16)
   bytes. Returns 0, or -1 (the context then needs no cleanup). */
int ssh2_umac_init(struct ssh2_umac_ctx *ctx, const unsigned char *key,
                   int taglen);
/* Adds len bytes to the message. */
void ssh2_umac_update(struct ssh2_umac_ctx *ctx, const unsigned char *data,
                      size_t len);
/* Writes the message's tag for the 8-byte nonce, and starts a new message
   (the keys are kept). Returns 0, or -1: an AES failure, or a message over
   16 MiB (2^24 bytes, the most this implementation of L2 takes). */
int ssh2_umac_final(struct ssh2_umac_ctx *ctx, unsigned char *tag,
                    const unsigned char *nonce);
/* Frees the AES context and zeroes every key. */
void ssh2_umac_cleanup(struct ssh2_umac_ctx *ctx);

#endif /* LIBSSH2_UMAC */

#endif /* LIBSSH2_UMAC_H */
