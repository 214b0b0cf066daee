/* The transport's wire format, the cluster-token proof and the byte
 * buffers. Pure code, no I/O (randomness and HMAC come from libcrypto).
 *
 * A connection carries frames one way (dialer -> acceptor); the acceptor
 * writes back only during the handshake (a challenge) or to refuse. All
 * integers little-endian.
 *
 * Without a cluster token, the dialer sends the plain hello (v2), 44 bytes,
 * once, first, and then frames at once:
 *     0  u32 magic   0x54465243 (the bytes "CRFT")
 *     4  u16 version 2 (1, the handshake before identities, is refused)
 *     6  u16 flags   bit 0: the dialer asks for a key for datagrams
 *                    (below); other bits 0, and ignored (a node before
 *                    datagrams ignores them all)
 *     8  u64 sender  the dialer's node id
 *    16  u64 cluster the dialer's cluster id, 0 if it has none yet
 *    24  u64 target  the node id the dialer means to reach
 *    32  u64 tag     the dialer's tag for that node (craftd: a hash of the
 *                    member's name, so that a new incarnation of a node
 *                    knows it is the one meant)
 *    40  u32 crc32c  of bytes 0..39
 * Anybody who reaches the port can send this claiming any id: without a
 * token the peer port is open (docs/security.md).
 *
 * With a cluster token (both sides must have the same one), the handshake
 * is version 3, a mutual challenge-response; nothing the dialer sends is
 * decoded as a frame before it has proved the token:
 *   1. dialer -> acceptor, hello v3, 76 bytes: bytes 0..39 as in v2 with
 *      version 3, then
 *        40  u8[32] nonce_d  fresh random (RAND_bytes)
 *        72  u32    crc32c   of bytes 0..71
 *   2. acceptor -> dialer, challenge, 72 bytes:
 *         0  u32    magic    0x48435243 (the bytes "CRCH")
 *         4  u16    version  3
 *         6  u16    zero
 *         8  u8[32] nonce_a  fresh random
 *        40  u8[32] mac_a    HMAC-SHA256(K, "craftd peer v3 acceptor" ||
 *                            hello || nonce_a)
 *   3. the dialer checks mac_a (so it knows the acceptor holds the token:
 *      the hello carries its own fresh nonce_d, so no recorded answer
 *      fits), then dialer -> acceptor, proof, 40 bytes:
 *         0  u32    magic    0x46505243 (the bytes "CRPF")
 *         4  u16    version  3
 *         6  u16    zero
 *         8  u8[32] mac_d    HMAC-SHA256(K, "craftd peer v3 dialer" ||
 *                            hello || nonce_a)
 *      and then frames. The acceptor checks mac_d (covering its own fresh
 *      nonce_a, so a recorded proof does not fit a new connection).
 * "hello" is the 76 bytes of step 1 as sent; labels are their ASCII bytes
 * without a NUL; K = HMAC-SHA256(key = the token's bytes, "craftd cluster
 * token v1"). MACs are compared with CRYPTO_memcmp. The token itself is
 * never sent. A node with a token refuses a v2 hello; a node without one
 * refuses a v3 hello (it cannot answer it).
 *
 * Frames, any number, after the handshake:
 *     0  u32 length  payload bytes, at most the acceptor's max frame size
 *     4  u32 crc32c  of the payload
 *     8  payload
 * The acceptor closes the connection (with a rate-limited log line) on a
 * bad magic, version, CRC or proof, or a length over its limit. Once the
 * dialer is known (after the proof with a token, after the hello without),
 * the acceptor refuses a dialer of another cluster (both cluster ids
 * nonzero and different) or one whose target is not the acceptor's own
 * id: then it writes back, best effort, 40 bytes:
 *     0  u32 magic   0x4f4e5243 (the bytes "CRNO")
 *     4  u16 version 2
 *     6  u16 reason  1: another cluster, 2: another target
 *     8  u64 id      the acceptor's node id
 *    16  u64 cluster the acceptor's cluster id (0: none)
 *    24  u64 tag     the acceptor's own tag
 *    32  u32 crc32c  of bytes 0..31
 *    36  u32 zero
 * and hangs up. crc32c(0, buf, len) is the standard CRC-32C (Castagnoli). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"

size_t peer__hello_len(unsigned version)
{
    return version == PEER__VERSION_AUTH ? PEER__HELLO3_LEN : PEER__HELLO_LEN;
}

size_t peer__hello_encode(uint8_t *out, const struct peer__hello *h)
{
    size_t n = peer__hello_len(h->version);
    craft_put32(out, PEER__MAGIC);
    craft_put16(out + 4, (uint16_t)h->version);
    craft_put16(out + 6, (uint16_t)h->flags);
    craft_put64(out + 8, h->sender);
    craft_put64(out + 16, h->cluster);
    craft_put64(out + 24, h->target);
    craft_put64(out + 32, h->target_tag);
    if (n == PEER__HELLO3_LEN)
        memcpy(out + 40, h->nonce, PEER__NONCE_LEN);
    craft_put32(out + n - 4, crc32c(0, out, n - 4));
    return n;
}

int peer__hello_decode(const uint8_t *in, size_t avail, struct peer__hello *h,
                       unsigned *version_out)
{
    if (avail >= 4 && craft_get32(in) != PEER__MAGIC)
        return CRAFT_ECORRUPT;
    if (avail < 6)
        return CRAFT_ETRUNCATED;
    unsigned v = craft_get16(in + 4);
    if (version_out != NULL)
        *version_out = v;
    if (v != PEER__VERSION && v != PEER__VERSION_AUTH)
        return CRAFT_EVERSION;
    size_t n = peer__hello_len(v);
    if (avail < n)
        return CRAFT_ETRUNCATED;
    if (craft_get32(in + n - 4) != crc32c(0, in, n - 4))
        return CRAFT_ECORRUPT;
    h->version = v;
    h->flags = craft_get16(in + 6);
    h->sender = craft_get64(in + 8);
    h->cluster = craft_get64(in + 16);
    h->target = craft_get64(in + 24);
    h->target_tag = craft_get64(in + 32);
    if (n == PEER__HELLO3_LEN)
        memcpy(h->nonce, in + 40, PEER__NONCE_LEN);
    else
        memset(h->nonce, 0, PEER__NONCE_LEN);
    return 0;
}

/* ---- the cluster-token proof ---- */

static const char KEY_LABEL[] = "craftd cluster token v1";
static const char MAC_LABEL_A[] = "craftd peer v3 acceptor";
static const char MAC_LABEL_D[] = "craftd peer v3 dialer";
static const char JOIN_LABEL[] = "craftd join v1";
static const char DGRAM_LABEL[] = "craftd datagram v1";

/* One piece of an HMAC's message. */
struct hmac_part {
    const void *p;
    size_t len;
};

/* A new HMAC-SHA256 context keyed with key, or NULL. */
static EVP_MAC_CTX *hmac_new(const void *key, size_t klen)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end()};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *h = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (h != NULL && EVP_MAC_init(h, key, klen, params) != 1) {
        EVP_MAC_CTX_free(h);
        h = NULL;
    }
    return h;
}

/* out = HMAC(h's key, parts concatenated), fed piece by piece (no copy of
 * the message). h starts over first: with no key given, OpenSSL's HMAC
 * keeps the one it has, so h can be used again. 0 or CRAFT_EIO. */
static int hmac_run(EVP_MAC_CTX *h, uint8_t out[PEER__MAC_LEN],
                    const struct hmac_part *parts, size_t nparts)
{
    int ok = EVP_MAC_init(h, NULL, 0, NULL) == 1;
    for (size_t i = 0; ok && i < nparts; i++)
        ok = EVP_MAC_update(h, parts[i].p, parts[i].len) == 1;
    size_t n = 0;
    ok = ok && EVP_MAC_final(h, out, &n, PEER__MAC_LEN) == 1 && n == PEER__MAC_LEN;
    return ok ? 0 : CRAFT_EIO;
}

/* A one-off HMAC-SHA256 (handshakes, joins): out = HMAC(key, parts). */
static int hmac_sha256(uint8_t out[PEER__MAC_LEN], const void *key, size_t klen,
                       const struct hmac_part *parts, size_t nparts)
{
    EVP_MAC_CTX *h = hmac_new(key, klen);
    int rv = h != NULL ? hmac_run(h, out, parts, nparts) : CRAFT_EIO;
    EVP_MAC_CTX_free(h);
    return rv;
}

int peer__derive_key(uint8_t key[PEER__KEY_LEN], const void *token,
                     size_t len)
{
    if (len == 0)
        return CRAFT_EINVAL;
    const struct hmac_part label = {KEY_LABEL, sizeof KEY_LABEL - 1};
    return hmac_sha256(key, token, len, &label, 1) == 0 ? 0 : CRAFT_EINVAL;
}

int peer__nonce(uint8_t out[PEER__NONCE_LEN])
{
    return RAND_bytes(out, PEER__NONCE_LEN) == 1 ? 0 : CRAFT_EIO;
}

int peer__mac(uint8_t out[PEER__MAC_LEN], const uint8_t key[PEER__KEY_LEN],
              bool acceptor, const uint8_t *hello,
              const uint8_t nonce_a[PEER__NONCE_LEN])
{
    const struct hmac_part parts[] = {
        acceptor ? (struct hmac_part){MAC_LABEL_A, sizeof MAC_LABEL_A - 1}
                 : (struct hmac_part){MAC_LABEL_D, sizeof MAC_LABEL_D - 1},
        {hello, PEER__HELLO3_LEN},
        {nonce_a, PEER__NONCE_LEN}};
    return hmac_sha256(out, key, PEER__KEY_LEN, parts, 3);
}

int peer__join_mac(uint8_t out[PEER__MAC_LEN], const uint8_t key[PEER__KEY_LEN],
                   const void *body, size_t len)
{
    const struct hmac_part parts[] = {{JOIN_LABEL, sizeof JOIN_LABEL - 1}, {body, len}};
    return hmac_sha256(out, key, PEER__KEY_LEN, parts, 2);
}

bool peer__mac_ok(const uint8_t key[PEER__KEY_LEN], bool acceptor,
                  const uint8_t *hello, const uint8_t nonce_a[PEER__NONCE_LEN],
                  const uint8_t got[PEER__MAC_LEN])
{
    uint8_t want[PEER__MAC_LEN];
    if (peer__mac(want, key, acceptor, hello, nonce_a) != 0)
        return false;
    bool ok = CRYPTO_memcmp(want, got, PEER__MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}

void peer__challenge_encode(uint8_t out[PEER__CHALLENGE_LEN],
                            const uint8_t nonce_a[PEER__NONCE_LEN],
                            const uint8_t mac[PEER__MAC_LEN])
{
    craft_put32(out, PEER__CHALLENGE_MAGIC);
    craft_put16(out + 4, PEER__VERSION_AUTH);
    craft_put16(out + 6, 0);
    memcpy(out + 8, nonce_a, PEER__NONCE_LEN);
    memcpy(out + 40, mac, PEER__MAC_LEN);
}

int peer__challenge_decode(const uint8_t in[PEER__CHALLENGE_LEN],
                           uint8_t nonce_a[PEER__NONCE_LEN],
                           uint8_t mac[PEER__MAC_LEN])
{
    if (craft_get32(in) != PEER__CHALLENGE_MAGIC ||
        craft_get16(in + 4) != PEER__VERSION_AUTH || craft_get16(in + 6) != 0)
        return CRAFT_ECORRUPT;
    memcpy(nonce_a, in + 8, PEER__NONCE_LEN);
    memcpy(mac, in + 40, PEER__MAC_LEN);
    return 0;
}

void peer__proof_encode(uint8_t out[PEER__PROOF_LEN],
                        const uint8_t mac[PEER__MAC_LEN])
{
    craft_put32(out, PEER__PROOF_MAGIC);
    craft_put16(out + 4, PEER__VERSION_AUTH);
    craft_put16(out + 6, 0);
    memcpy(out + 8, mac, PEER__MAC_LEN);
}

int peer__proof_decode(const uint8_t in[PEER__PROOF_LEN],
                       uint8_t mac[PEER__MAC_LEN])
{
    if (craft_get32(in) != PEER__PROOF_MAGIC ||
        craft_get16(in + 4) != PEER__VERSION_AUTH || craft_get16(in + 6) != 0)
        return CRAFT_ECORRUPT;
    memcpy(mac, in + 8, PEER__MAC_LEN);
    return 0;
}

void peer__refusal_encode(uint8_t out[PEER__REFUSAL_LEN],
                          const struct peer__refusal_rec *r)
{
    craft_put32(out, PEER__REFUSAL_MAGIC);
    craft_put16(out + 4, PEER__VERSION);
    craft_put16(out + 6, r->reason);
    craft_put64(out + 8, r->id);
    craft_put64(out + 16, r->cluster);
    craft_put64(out + 24, r->tag);
    craft_put32(out + 32, crc32c(0, out, 32));
    craft_put32(out + 36, 0);
}

int peer__refusal_decode(const uint8_t in[PEER__REFUSAL_LEN],
                         struct peer__refusal_rec *r)
{
    if (craft_get32(in) != PEER__REFUSAL_MAGIC ||
        craft_get16(in + 4) != PEER__VERSION ||
        craft_get32(in + 32) != crc32c(0, in, 32) || craft_get32(in + 36) != 0)
        return CRAFT_ECORRUPT;
    r->reason = craft_get16(in + 6);
    r->id = craft_get64(in + 8);
    r->cluster = craft_get64(in + 16);
    r->tag = craft_get64(in + 24);
    return 0;
}

void peer__frame_header(uint8_t out[PEER__FRAME_HDR], const uint8_t *payload,
                        uint32_t len)
{
    craft_put32(out, len);
    craft_put32(out + 4, crc32c(0, payload, len));
}

int peer__frame_next(const uint8_t *p, size_t avail, size_t max,
                     uint32_t *len)
{
    *len = 0;
    if (avail < PEER__FRAME_HDR)
        return CRAFT_ETRUNCATED;
    uint32_t n = craft_get32(p);
    if (n > max)
        return CRAFT_ETOOBIG;
    *len = n;
    if (avail - PEER__FRAME_HDR < n)
        return CRAFT_ETRUNCATED;
    if (craft_get32(p + 4) != crc32c(0, p + PEER__FRAME_HDR, n))
        return CRAFT_ECORRUPT;
    return 0;
}

int peer__buf_reserve(struct peer__buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return CRAFT_ENOMEM;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    uint8_t *d = craft_realloc(b->data, cap);
    if (d == NULL)
        return CRAFT_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

const char *peer_strerror(int err)
{
    if (err < CRAFT__FIRST)
        return uv_strerror(err); /* UV_EAI_*, UV_EOF, ... */
    return craft_strerror(err);
}

void peer__buf_free(struct peer__buf *b)
{
    craft_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- datagrams ----
 *
 * A datagram carries one frame's payload, to the acceptor's listen address
 * (UDP, the same port number as TCP), from the sender's:
 *     0  u32 magic   0x47445243 (the bytes "CRDG")
 *     4  u16 version 1
 *     6  u16 zero
 *     8  u64 sender  the sender's node id
 *    16  u64 target  the node id it is for
 *    24  u64 seq     1, 2, ... under one key
 *    32  payload
 *  then HMAC-SHA256(key, "craftd datagram v1" || bytes 0 .. end of
 *  payload), 32 bytes; 1232 bytes at most in all.
 * The key is the acceptor's, given to the dialer on the dialer's
 * connection once it is established (after its proof with a token, after
 * the TLS handshake with TLS), when its hello asked for datagrams (flags
 * bit 0), in a key record of 44 bytes:
 *     0  u32 magic   0x4b445243 (the bytes "CRDK")
 *     4  u16 version 1
 *     6  u16 zero
 *     8  u8[32] key  fresh random (RAND_bytes), one per connection
 *    40  u32 crc32c  of bytes 0..39
 * A datagram counts only under the key of the sender's newest connection,
 * with a seq above the last one taken under that key: whoever has not
 * seen that connection's bytes cannot make one (nor, with TLS, anyone on
 * the path), and one sent again is dropped. An acceptor before datagrams
 * ignores the flag and sends no key: its dialers send it none. */

struct peer__dgmac {
    EVP_MAC_CTX *h;
};

struct peer__dgmac *peer__dgmac_new(const uint8_t key[PEER__KEY_LEN])
{
    struct peer__dgmac *m = craft_malloc(sizeof *m);
    if (m == NULL)
        return NULL;
    m->h = hmac_new(key, PEER__KEY_LEN);
    if (m->h == NULL) {
        craft_free(m);
        return NULL;
    }
    return m;
}

void peer__dgmac_free(struct peer__dgmac *m)
{
    if (m == NULL)
        return;
    EVP_MAC_CTX_free(m->h); /* it cleanses the key it holds */
    craft_free(m);
}

static int dgram_mac(uint8_t out[PEER__MAC_LEN], struct peer__dgmac *m,
                     const uint8_t *msg, size_t len)
{
    const struct hmac_part parts[] = {{DGRAM_LABEL, sizeof DGRAM_LABEL - 1},
                                      {msg, len}};
    return hmac_run(m->h, out, parts, 2);
}

size_t peer__dgram_encode(uint8_t *out, const struct peer__dgram *d,
                          const uint8_t *payload, size_t len,
                          struct peer__dgmac *m)
{
    if (len > PEER__DGRAM_MAX - PEER__DGRAM_HDR - PEER__MAC_LEN)
        return 0;
    craft_put32(out, PEER__DGRAM_MAGIC);
    craft_put16(out + 4, PEER__DGRAM_VERSION);
    craft_put16(out + 6, 0);
    craft_put64(out + 8, d->sender);
    craft_put64(out + 16, d->target);
    craft_put64(out + 24, d->seq);
    if (len > 0)
        memcpy(out + PEER__DGRAM_HDR, payload, len);
    size_t n = PEER__DGRAM_HDR + len;
    if (dgram_mac(out + n, m, out, n) != 0)
        return 0;
    return n + PEER__MAC_LEN;
}

int peer__dgram_parse(const uint8_t *in, size_t len, struct peer__dgram *d,
                      const uint8_t **payload, size_t *plen)
{
    if (len < PEER__DGRAM_HDR + PEER__MAC_LEN || len > PEER__DGRAM_MAX ||
        craft_get32(in) != PEER__DGRAM_MAGIC ||
        craft_get16(in + 4) != PEER__DGRAM_VERSION || craft_get16(in + 6) != 0)
        return CRAFT_ECORRUPT;
    d->sender = craft_get64(in + 8);
    d->target = craft_get64(in + 16);
    d->seq = craft_get64(in + 24);
    *payload = in + PEER__DGRAM_HDR;
    *plen = len - PEER__MAC_LEN - PEER__DGRAM_HDR;
    return 0;
}

bool peer__dgram_mac_ok(const uint8_t *in, size_t len, struct peer__dgmac *m)
{
    if (len < PEER__MAC_LEN)
        return false;
    uint8_t want[PEER__MAC_LEN];
    size_t n = len - PEER__MAC_LEN;
    bool ok = dgram_mac(want, m, in, n) == 0 &&
              CRYPTO_memcmp(want, in + n, PEER__MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}

void peer__dgkey_encode(uint8_t out[PEER__DGKEY_LEN],
                        const uint8_t key[PEER__KEY_LEN])
{
    craft_put32(out, PEER__DGKEY_MAGIC);
    craft_put16(out + 4, 1);
    craft_put16(out + 6, 0);
    memcpy(out + 8, key, PEER__KEY_LEN);
    craft_put32(out + 40, crc32c(0, out, 40));
}

int peer__dgkey_decode(const uint8_t in[PEER__DGKEY_LEN],
                       uint8_t key[PEER__KEY_LEN])
{
    if (craft_get32(in) != PEER__DGKEY_MAGIC || craft_get16(in + 4) != 1 ||
        craft_get16(in + 6) != 0 || craft_get32(in + 40) != crc32c(0, in, 40))
        return CRAFT_ECORRUPT;
    memcpy(key, in + 8, PEER__KEY_LEN);
    return 0;
}
