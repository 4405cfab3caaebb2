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

/*
 * UMAC, RFC 4418, for 64-bit (2 UHASH iterations) and 128-bit (4) tags.
 *
 *   Tag = UHASH(K, M) xor PDF(K, Nonce)
 *
 * UHASH, per iteration i (each gives 4 bytes of the tag):
 *   L1  NH of each 1024-byte chunk of M (the last one zero-padded to a
 *       multiple of 32 bytes, at least 32), plus the chunk's length in bits:
 *       one 64-bit value per chunk.
 *   L2  if M has more than one chunk, a polynomial hash of those values
 *       modulo p64 = 2^64 - 59; else the one value as it is.
 *   L3  an inner product of that 64-bit value's four 16-bit words with keys
 *       modulo p36 = 2^36 - 5, cut to 32 bits and xored with a key.
 * PDF: AES-128 of the nonce under a derived key; a 64-bit tag takes half of
 * the block, chosen by the nonce's low bit (so two consecutive nonces, as
 * SSH's sequence numbers are, share one AES call).
 * Every subkey comes from KDF: AES-128 under K in counter mode.
 *
 * L2 here takes at most 2^14 L1 values, i.e. messages of up to 2^24 bytes
 * (16 MiB); longer ones would need the 128-bit polynomial of RFC 4418
 * section 4.2.2, which SSH never reaches (a packet is at most 256 KiB even in
 * OpenSSH), so ssh2_umac_final() refuses them instead.
 *
 * Words of the message are little-endian; everything else (keys, results,
 * the tag) is big-endian, as in the RFC. All of it is read and written a byte
 * at a time, so the code does not depend on the host's byte order or on
 * alignment (compilers turn the byte loads into single loads).
 *
 * Written from RFC 4418; checked against its test vectors and against
 * OpenSSH's umac.c (Ted Krovetz's reference code) on random keys, nonces and
 * messages, and against OpenSSH's sshd.
 */

#include "libssh2_priv.h"
#include "umac.h"

#if LIBSSH2_UMAC

#define L1_CHUNK  1024  /* bytes of message per NH value */
#define NH_BLOCK  32    /* NH takes 8 words at a time */

#define P36  ((uint64_t)0x0000000FFFFFFFFBULL) /* 2^36 - 5 */
#define M36  ((uint64_t)0x0000000FFFFFFFFFULL)
#define P64  ((uint64_t)0xFFFFFFFFFFFFFFC5ULL) /* 2^64 - 59 */
/* L2 keys are masked into this domain, so that the products in
   poly64_step() cannot overflow */
#define POLY_KEY_MASK ((uint64_t)0x01FFFFFF01FFFFFFULL)
/* Message words at or above 2^64 - 2^32 are hashed as two words (RFC 4418
   section 4.2.2, POLY's maxwordrange). */
#define POLY_WORD_MAX ((uint64_t)0xFFFFFFFF00000000ULL)

#define MAX_MESSAGE ((libssh2_uint64_t)1 << 24) /* see the top */

static SSH2_INLINE uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
           ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t load_be64(const unsigned char *p)
{
    return ((uint64_t)load_be32(p) << 32) | load_be32(p + 4);
}

/* KDF(K, index, len) of RFC 4418 section 3.2.1: AES-128 under K of the
   blocks index || 1, index || 2, ... (two 64-bit big-endian halves). */
static int kdf(ssh2_aes128_ecb_ctx *aes, unsigned char index,
               unsigned char *out, size_t len)
{
    unsigned char in[16];
    unsigned char block[16];
    uint32_t counter = 0;
    int rc = 0;

    memset(in, 0, sizeof(in));
    in[7] = index;
    while(len) {
        size_t n = len < 16 ? len : 16;

        ssh2_htonu32(in + 12, ++counter);
        if(ssh2_aes128_ecb_encrypt(aes, in, block, 16)) {
            rc = -1;
            break;
        }
        memcpy(out, block, n);
        out += n;
        len -= n;
    }
    ssh2_explicit_zero(block, sizeof(block));
    return rc;
}

/*
 * NH (RFC 4418 section 4.2.1) over nblocks 32-byte blocks, for `iters`
 * iterations at once (a constant at each call, so the compiler unrolls the
 * iterations and keeps the sums in registers). For each block of message
 * words m[0..7], read little-endian, and the key words k[0..7] in line with
 * it, iteration i adds
 *
 *     sum over j = 0..3 of (m[j] + k[4i + j]) * (m[j + 4] + k[4i + j + 4])
 *
 * with the additions modulo 2^32 and the products and the sum modulo 2^64.
 */
static SSH2_INLINE void nh_blocks(uint64_t *sum, const uint32_t *key,
                                  const unsigned char *m, size_t nblocks,
                                  const int iters)
{
    uint64_t h[SSH2_UMAC_MAX_ITERS];
    int i;

    for(i = 0; i < iters; i++)
        h[i] = sum[i];
    while(nblocks--) {
        const uint32_t m0 = load_le32(m), m1 = load_le32(m + 4),
                       m2 = load_le32(m + 8), m3 = load_le32(m + 12),
                       m4 = load_le32(m + 16), m5 = load_le32(m + 20),
                       m6 = load_le32(m + 24), m7 = load_le32(m + 28);

        for(i = 0; i < iters; i++) {
            const uint32_t *k = key + 4 * i;

            h[i] += (uint64_t)(uint32_t)(m0 + k[0]) * (uint32_t)(m4 + k[4]) +
                    (uint64_t)(uint32_t)(m1 + k[1]) * (uint32_t)(m5 + k[5]) +
                    (uint64_t)(uint32_t)(m2 + k[2]) * (uint32_t)(m6 + k[6]) +
                    (uint64_t)(uint32_t)(m3 + k[3]) * (uint32_t)(m7 + k[7]);
        }
        m += NH_BLOCK;
        key += NH_BLOCK / 4;
    }
    for(i = 0; i < iters; i++)
        sum[i] = h[i];
}

/* Whole blocks into the current chunk, which they must fit in. */
static void nh_update(struct ssh2_umac_ctx *ctx, const unsigned char *m,
                      size_t nblocks)
{
    const uint32_t *key = ctx->nh_key + ctx->chunk_hashed / 4;

    if(ctx->iters == 2)
        nh_blocks(ctx->nh_sum, key, m, nblocks, 2);
    else
        nh_blocks(ctx->nh_sum, key, m, nblocks, 4);
    ctx->chunk_hashed += nblocks * NH_BLOCK;
}

/*
 * (k * y + m) modulo p64, for a key masked with POLY_KEY_MASK and any y and m
 * below 2^64; the result is below 2^64 but not always below p64.
 *
 * With k = kh * 2^32 + kl (kh, kl < 2^25) and y = yh * 2^32 + yl:
 *   k * y = kh*yh * 2^64 + (kh*yl + kl*yh) * 2^32 + kl*yl
 * The middle sum x is below 2^58; split x = xh * 2^32 + xl. As 2^64 is 59
 * modulo p64:
 *   k * y = (kh*yh + xh) * 59 + xl * 2^32 + kl*yl   (modulo p64)
 * where (kh*yh + xh) * 59 + kl*yl is below 2^64. Adding xl * 2^32 and then m
 * may each carry out of 64 bits; a carry is worth 2^64, that is 59, and
 * adding it back cannot carry again.
 */
static uint64_t poly64_step(uint64_t k, uint64_t y, uint64_t m)
{
    const uint64_t kh = k >> 32, kl = k & 0xFFFFFFFF;
    const uint64_t yh = y >> 32, yl = y & 0xFFFFFFFF;
    const uint64_t x = kh * yl + kl * yh;
    uint64_t r = (kh * yh + (x >> 32)) * 59 + kl * yl;
    const uint64_t xl = x << 32;

    r += xl;
    if(r < xl)
        r += 59;
    r += m;
    if(r < m)
        r += 59;
    return r;
}

/* One word of POLY(64, 2^64 - 2^32, k, M) (RFC 4418 section 4.2.2). */
static uint64_t poly64(uint64_t k, uint64_t y, uint64_t m)
{
    if(m >= POLY_WORD_MAX) {
        /* marker p64 - 1, then the word less the offset 2^64 - p64 */
        y = poly64_step(k, y, P64 - 1);
        return poly64_step(k, y, m - 59);
    }
    return poly64_step(k, y, m);
}

/* L3-HASH (RFC 4418 section 4.2.3) of the 16-byte string whose first 8
   bytes are zero and whose last 8 are y: only the keys of the last four
   16-bit words count. Each product is below 2^52, the sum below 2^54. */
static uint32_t l3_hash(const uint64_t *k, uint32_t k2, uint64_t y)
{
    uint64_t t = k[0] * (y >> 48) + k[1] * ((y >> 32) & 0xFFFF) +
                 k[2] * ((y >> 16) & 0xFFFF) + k[3] * (y & 0xFFFF);

    t = (t & M36) + 5 * (t >> 36); /* 2^36 is 5 modulo p36 */
    if(t >= P36)
        t -= P36;
    return (uint32_t)t ^ k2;
}

static void umac_reset(struct ssh2_umac_ctx *ctx)
{
    int i;

    for(i = 0; i < SSH2_UMAC_MAX_ITERS; i++) {
        ctx->nh_sum[i] = 0;
        ctx->poly_sum[i] = 1; /* POLY starts from y = 1 */
    }
    ctx->msg_len = 0;
    ctx->chunk_hashed = 0;
    ctx->buf_len = 0;
}

int ssh2_umac_init(struct ssh2_umac_ctx *ctx, const unsigned char *key,
                   int taglen)
{
    ssh2_aes128_ecb_ctx kdf_aes;
    /* the longest subkey: L1's, 1024 bytes and 16 per further iteration */
    unsigned char buf[sizeof(ctx->nh_key)];
    int i, j, rc;

    memset(ctx, 0, sizeof(*ctx));
    if(taglen != 8 && taglen != 16)
        return -1;
    ctx->taglen = taglen;
    ctx->iters = taglen / 4;
    if(ssh2_aes128_ecb_init(&kdf_aes, key))
        return -1;

    /* PDF key: K' = KDF(K, 0, 16) */
    rc = kdf(&kdf_aes, 0, buf, 16);
    if(!rc) {
        rc = ssh2_aes128_ecb_init(&ctx->pdf_aes, buf);
        ctx->pdf_aes_set = !rc;
    }
    /* L1Key = KDF(K, 1, 1024 + (iters - 1) * 16), as big-endian words */
    if(!rc) {
        const size_t words = SSH2_UMAC_L1_WORDS + 4 * (ctx->iters - 1);

        rc = kdf(&kdf_aes, 1, buf, words * 4);
        for(i = 0; !rc && i < (int)words; i++)
            ctx->nh_key[i] = load_be32(buf + 4 * i);
    }
    /* L2Key = KDF(K, 2, iters * 24): k64 is the first 8 bytes of each
       iteration's 24 (the other 16 are k128, which messages up to 16 MiB
       never use) */
    if(!rc) {
        rc = kdf(&kdf_aes, 2, buf, ctx->iters * 24);
        for(i = 0; !rc && i < ctx->iters; i++)
            ctx->poly_key[i] = load_be64(buf + 24 * i) & POLY_KEY_MASK;
    }
    /* L3Key1 = KDF(K, 3, iters * 64): eight 8-byte keys per iteration,
       modulo p36, of which the last four meet nonzero input */
    if(!rc) {
        rc = kdf(&kdf_aes, 3, buf, ctx->iters * 64);
        for(i = 0; !rc && i < ctx->iters; i++)
            for(j = 0; j < 4; j++)
                ctx->l3_key1[i][j] =
                    load_be64(buf + 64 * i + 32 + 8 * j) % P36;
    }
    /* L3Key2 = KDF(K, 4, iters * 4) */
    if(!rc) {
        rc = kdf(&kdf_aes, 4, buf, ctx->iters * 4);
        for(i = 0; !rc && i < ctx->iters; i++)
            ctx->l3_key2[i] = load_be32(buf + 4 * i);
    }

    ssh2_aes128_ecb_cleanup(&kdf_aes);
    ssh2_explicit_zero(buf, sizeof(buf));
    if(rc) {
        ssh2_umac_cleanup(ctx);
        return -1;
    }
    umac_reset(ctx);
    return 0;
}

void ssh2_umac_update(struct ssh2_umac_ctx *ctx, const unsigned char *data,
                      size_t len)
{
    ctx->msg_len += len;
    while(len) {
        size_t n;

        if(ctx->chunk_hashed == L1_CHUNK) {
            /* The chunk is full and more of the message follows: the message
               has several chunks, so each chunk's NH value goes through L2,
               with the chunk's length, 1024 bytes, in bits. */
            int i;

            for(i = 0; i < ctx->iters; i++) {
                ctx->poly_sum[i] = poly64(ctx->poly_key[i], ctx->poly_sum[i],
                                          ctx->nh_sum[i] + L1_CHUNK * 8);
                ctx->nh_sum[i] = 0;
            }
            ctx->chunk_hashed = 0;
        }
        if(!ctx->buf_len && len >= NH_BLOCK) {
            /* whole blocks straight from the caller's buffer */
            n = (L1_CHUNK - ctx->chunk_hashed) / NH_BLOCK;
            if(n > len / NH_BLOCK)
                n = len / NH_BLOCK;
            nh_update(ctx, data, n);
            n *= NH_BLOCK;
        }
        else {
            n = NH_BLOCK - ctx->buf_len;
            if(n > len)
                n = len;
            memcpy(ctx->buf + ctx->buf_len, data, n);
            ctx->buf_len += n;
            if(ctx->buf_len == NH_BLOCK) {
                nh_update(ctx, ctx->buf, 1);
                ctx->buf_len = 0;
            }
        }
        data += n;
        len -= n;
    }
}

/* PDF (RFC 4418 section 3.2.2), xored into the tag. */
static int pdf_xor(struct ssh2_umac_ctx *ctx, unsigned char *tag,
                   const unsigned char *nonce)
{
    unsigned char nonce_in[SSH2_UMAC_NONCE_LEN];
    int index = 0;
    int i;

    memcpy(nonce_in, nonce, SSH2_UMAC_NONCE_LEN);
    if(ctx->taglen == 8) {
        /* half the block, chosen by the nonce's low bit, which is cleared
           for the block cipher's input */
        index = nonce_in[SSH2_UMAC_NONCE_LEN - 1] & 1;
        nonce_in[SSH2_UMAC_NONCE_LEN - 1] &= 0xFE;
    }
    if(!ctx->pad_set ||
       memcmp(nonce_in, ctx->pad_nonce, SSH2_UMAC_NONCE_LEN)) {
        unsigned char in[16];

        memcpy(in, nonce_in, SSH2_UMAC_NONCE_LEN);
        memset(in + SSH2_UMAC_NONCE_LEN, 0, 16 - SSH2_UMAC_NONCE_LEN);
        ctx->pad_set = 0;
        if(ssh2_aes128_ecb_encrypt(&ctx->pdf_aes, in, ctx->pad_block, 16))
            return -1;
        memcpy(ctx->pad_nonce, nonce_in, SSH2_UMAC_NONCE_LEN);
        ctx->pad_set = 1;
    }
    for(i = 0; i < ctx->taglen; i++)
        tag[i] ^= ctx->pad_block[index * ctx->taglen + i];
    return 0;
}

int ssh2_umac_final(struct ssh2_umac_ctx *ctx, unsigned char *tag,
                    const unsigned char *nonce)
{
    /* The last chunk's length in bits, before padding. Only an empty
       message has an empty last chunk: a chunk is begun only for data. */
    const uint64_t bits = (uint64_t)(ctx->chunk_hashed + ctx->buf_len) * 8;
    const int several = ctx->msg_len > L1_CHUNK;
    const int too_long = ctx->msg_len > MAX_MESSAGE;
    int i;

    if(ctx->buf_len || !ctx->chunk_hashed) {
        memset(ctx->buf + ctx->buf_len, 0, NH_BLOCK - ctx->buf_len);
        nh_update(ctx, ctx->buf, 1);
    }
    for(i = 0; i < ctx->iters; i++) {
        uint64_t y = ctx->nh_sum[i] + bits;

        if(several) {
            y = poly64(ctx->poly_key[i], ctx->poly_sum[i], y);
            if(y >= P64)
                y -= P64;
        }
        ssh2_htonu32(tag + 4 * i,
                     l3_hash(ctx->l3_key1[i], ctx->l3_key2[i], y));
    }
    umac_reset(ctx);
    if(too_long || pdf_xor(ctx, tag, nonce))
        return -1;
    return 0;
}

void ssh2_umac_cleanup(struct ssh2_umac_ctx *ctx)
{
    if(ctx->pdf_aes_set)
        ssh2_aes128_ecb_cleanup(&ctx->pdf_aes);
    ssh2_explicit_zero(ctx, sizeof(*ctx));
}

#endif /* LIBSSH2_UMAC */
