/*
 * Copyright (c) 2013 Damien Miller <djm@mindrot.org>
 *
 * Adapted by Will Cosgrove <will@panic.com> for libssh2
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

/* $OpenBSD: cipher-chachapoly.c,v 1.8 2016/08/03 05:41:57 djm Exp $ */

#include "libssh2_priv.h"
#include "cipher-chachapoly.h"

static int chachapoly_timingsafe_bcmp(const void *b1, const void *b2, size_t n)
{
    const unsigned char *p1 = b1, *p2 = b2;
    int ret = 0;

    for(; n > 0; n--)
        ret |= *p1++ ^ *p2++;
    return ret != 0;
}

#if LIBSSH2_CHACHAPOLY_EVP
/* ChaCha20 over len bytes with OpenSSH's 64-bit counter and 64-bit nonce (the
   sequence number): OpenSSL's 16-byte IV is the counter (little-endian) then
   the nonce, so counter || seqbuf lays out the same state. */
static int chacha_evp(EVP_CIPHER_CTX *evp, const unsigned char *seqbuf,
                      unsigned char counter, const unsigned char *src,
                      unsigned char *dest, size_t len)
{
    unsigned char iv[16];

    memset(iv, 0, 8);
    iv[0] = counter;
    memcpy(iv + 8, seqbuf, 8);
    if(!EVP_CipherInit_ex(evp, NULL, NULL, NULL, iv, 1))
        return -1;
    if(len > UINT_MAX || EVP_Cipher(evp, dest, src, (unsigned int)len) < 0)
        return -1;
    return 0;
}

static EVP_CIPHER_CTX *chacha_evp_new(const unsigned char *key)
{
    EVP_CIPHER_CTX *evp = EVP_CIPHER_CTX_new();

    if(evp && !EVP_CipherInit_ex(evp, EVP_chacha20(), NULL, key, NULL, 1)) {
        EVP_CIPHER_CTX_free(evp);
        evp = NULL;
    }
    return evp;
}

#if LIBSSH2_POLY1305_EVP
/* A POLY1305 MAC context to be keyed per packet, or NULL when no provider
   offers it. */
static EVP_MAC_CTX *poly1305_evp_new(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

    EVP_MAC_free(mac);  /* the context holds its own reference */
    return ctx;
}
#endif

/* The Poly1305 tag of len bytes at m under the one-time key. libcrypto's
   Poly1305_Final() clears its state, so the context keeps no key. */
static int poly1305_tag(struct chachapoly_ctx *ctx,
                        unsigned char out[POLY1305_TAGLEN],
                        const unsigned char *m, size_t len,
                        const unsigned char key[POLY1305_KEYLEN])
{
#if LIBSSH2_POLY1305_EVP
    if(ctx->poly_mac && len >= LIBSSH2_POLY1305_EVP_MIN) {
        size_t outlen = 0;

        if(!EVP_MAC_init(ctx->poly_mac, key, POLY1305_KEYLEN, NULL) ||
           !EVP_MAC_update(ctx->poly_mac, m, len) ||
           !EVP_MAC_final(ctx->poly_mac, out, &outlen, POLY1305_TAGLEN) ||
           outlen != POLY1305_TAGLEN)
            return -1;
        return 0;
    }
#else
    (void)ctx;
#endif
    poly1305_auth(out, m, len, key);
    return 0;
}

int chachapoly_init(struct chachapoly_ctx *ctx, const unsigned char *key,
                    size_t keylen)
{
    if(keylen != (32 + 32)) /* 2 x 256-bit keys */
        return LIBSSH2_ERROR_INVAL;
    ctx->main_evp = chacha_evp_new(key);
    ctx->header_evp = chacha_evp_new(key + 32);
#if LIBSSH2_POLY1305_EVP
    ctx->poly_mac = poly1305_evp_new();
#endif
    if(!ctx->main_evp || !ctx->header_evp) {
        chachapoly_free(ctx);
        return LIBSSH2_ERROR_ALLOC;
    }
    return 0;
}

void chachapoly_free(struct chachapoly_ctx *ctx)
{
    EVP_CIPHER_CTX_free(ctx->main_evp);
    EVP_CIPHER_CTX_free(ctx->header_evp);
    ctx->main_evp = NULL;
    ctx->header_evp = NULL;
#if LIBSSH2_POLY1305_EVP
    EVP_MAC_CTX_free(ctx->poly_mac);
    ctx->poly_mac = NULL;
#endif
}

int chachapoly_crypt(struct chachapoly_ctx *ctx, libssh2_uint64_t seqnr,
                     unsigned char *dest, const unsigned char *src, size_t len,
                     size_t aadlen, int do_encrypt)
{
    unsigned char seqbuf[8];
    unsigned char expected_tag[POLY1305_TAGLEN], poly_key[POLY1305_KEYLEN];
    int r = LIBSSH2_ERROR_DECRYPT;  /* fail */
    unsigned char *ptr = &seqbuf[0];

    /* ChaCha20 with counter 0 makes the Poly1305 key. */
    memset(poly_key, 0, sizeof(poly_key));
    ssh2_store_u64(&ptr, seqnr);
    if(chacha_evp(ctx->main_evp, seqbuf, 0, poly_key, poly_key,
                  sizeof(poly_key)))
        goto out;

    /* If decrypting, check tag before anything else */
    if(!do_encrypt) {
        const unsigned char *tag = src + aadlen + len;

        if(poly1305_tag(ctx, expected_tag, src, aadlen + len, poly_key) ||
           chachapoly_timingsafe_bcmp(expected_tag, tag, POLY1305_TAGLEN))
            goto out;
    }

    /* The length with the header key, the payload from block counter 1. */
    if(aadlen && chacha_evp(ctx->header_evp, seqbuf, 0, src, dest, aadlen))
        goto out;
    if(chacha_evp(ctx->main_evp, seqbuf, 1, src + aadlen, dest + aadlen, len))
        goto out;

    /* If encrypting, calculate and append tag */
    if(do_encrypt &&
       poly1305_tag(ctx, dest + aadlen + len, dest, aadlen + len, poly_key))
        goto out;

    r = LIBSSH2_ERROR_NONE;
out:
    ssh2_explicit_zero(expected_tag, sizeof(expected_tag));
    ssh2_explicit_zero(seqbuf, sizeof(seqbuf));
    ssh2_explicit_zero(poly_key, sizeof(poly_key));
    return r;
}

int chachapoly_get_length(struct chachapoly_ctx *ctx, unsigned int *plenp,
                          libssh2_uint64_t seqnr, const unsigned char *cp,
                          size_t len)
{
    unsigned char buf[4], seqbuf[8];
    unsigned char *ptr = &seqbuf[0];

    if(len < 4)
        return -1;  /* fail */
    ssh2_store_u64(&ptr, seqnr);
    if(chacha_evp(ctx->header_evp, seqbuf, 0, cp, buf, 4))
        return -1;
    *plenp = ssh2_ntohu32(buf);
    return 0;  /* success */
}

#else /* !LIBSSH2_CHACHAPOLY_EVP: the portable chacha.c */

void chachapoly_free(struct chachapoly_ctx *ctx)
{
    (void)ctx;
}

int chachapoly_init(struct chachapoly_ctx *ctx, const unsigned char *key,
                    size_t keylen)
{
    if(keylen != (32 + 32)) /* 2 x 256-bit keys */
        return LIBSSH2_ERROR_INVAL;
    chacha_keysetup(&ctx->main_ctx, key, 256);
    chacha_keysetup(&ctx->header_ctx, key + 32, 256);
    return 0;
}

/*
 * chachapoly_crypt() operates as following:
 * En/decrypt with header key 'aadlen' bytes from 'src', storing result
 * to 'dest'. The ciphertext here is treated as additional authenticated
 * data for MAC calculation.
 * En/decrypt 'len' bytes at offset 'aadlen' from 'src' to 'dest'. Use
 * POLY1305_TAGLEN bytes at offset 'len'+'aadlen' as the authentication
 * tag. This tag is written on encryption and verified on decryption.
 */
int chachapoly_crypt(struct chachapoly_ctx *ctx, libssh2_uint64_t seqnr,
                     unsigned char *dest, const unsigned char *src, size_t len,
                     size_t aadlen, int do_encrypt)
{
    static const unsigned char one[8] = {
        1, 0, 0, 0, 0, 0, 0, 0  /* NB little-endian */
    };
    unsigned char seqbuf[8];
    unsigned char expected_tag[POLY1305_TAGLEN], poly_key[POLY1305_KEYLEN];
    int r = LIBSSH2_ERROR_DECRYPT;  /* fail */
    unsigned char *ptr = NULL;

    /*
     * Run ChaCha20 once to generate the Poly1305 key. The IV is the
     * packet sequence number.
     */
    memset(poly_key, 0, sizeof(poly_key));
    ptr = &seqbuf[0];
    ssh2_store_u64(&ptr, seqnr);
    chacha_ivsetup(&ctx->main_ctx, seqbuf, NULL);
    chacha_encrypt_bytes(&ctx->main_ctx, poly_key, poly_key, sizeof(poly_key));

    /* If decrypting, check tag before anything else */
    if(!do_encrypt) {
        const unsigned char *tag = src + aadlen + len;

        poly1305_auth(expected_tag, src, aadlen + len, poly_key);
        if(chachapoly_timingsafe_bcmp(expected_tag, tag, POLY1305_TAGLEN))
            goto out;
    }

    /* Crypt additional data */
    if(aadlen) {
        chacha_ivsetup(&ctx->header_ctx, seqbuf, NULL);
        chacha_encrypt_bytes(&ctx->header_ctx, src, dest, aadlen);
    }

    /* Set Chacha's block counter to 1 */
    chacha_ivsetup(&ctx->main_ctx, seqbuf, one);
    chacha_encrypt_bytes(&ctx->main_ctx, src + aadlen, dest + aadlen, len);

    /* If encrypting, calculate and append tag */
    if(do_encrypt)
        poly1305_auth(dest + aadlen + len, dest, aadlen + len, poly_key);

    r = LIBSSH2_ERROR_NONE;
out:
    ssh2_explicit_zero(expected_tag, sizeof(expected_tag));
    ssh2_explicit_zero(seqbuf, sizeof(seqbuf));
    ssh2_explicit_zero(poly_key, sizeof(poly_key));
    return r;
}

/* Decrypt and extract the encrypted packet length */
int chachapoly_get_length(struct chachapoly_ctx *ctx, unsigned int *plenp,
                          libssh2_uint64_t seqnr, const unsigned char *cp,
                          size_t len)
{
    unsigned char buf[4], seqbuf[8];
    unsigned char *ptr = NULL;

    if(len < 4)
        return -1;  /* fail */
    ptr = &seqbuf[0];
    ssh2_store_u64(&ptr, seqnr);
    chacha_ivsetup(&ctx->header_ctx, seqbuf, NULL);
    chacha_encrypt_bytes(&ctx->header_ctx, cp, buf, 4);
    *plenp = ssh2_ntohu32(buf);
    return 0;  /* success */
}

#endif /* LIBSSH2_CHACHAPOLY_EVP */
