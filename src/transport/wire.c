/* The transport's wire format and its byte buffers. Pure code, no I/O.
 *
 * Each connection carries, in one direction (dialer -> acceptor), all
 * little-endian:
 *   handshake, 44 bytes, once, first:
 *     0  u32 magic   0x54465243 (the bytes "CRFT")
 *     4  u16 version 2 (1, the handshake before identities, is refused)
 *     6  u16 flags   0 (ignored; for later use)
 *     8  u64 sender  the dialer's node id
 *    16  u64 cluster the dialer's cluster id, 0 if it has none yet
 *    24  u64 target  the node id the dialer means to reach
 *    32  u64 tag     the dialer's tag for that node (craftd: a hash of the
 *                    member's name, so that a new incarnation of a node
 *                    knows it is the one meant)
 *    40  u32 crc32c  of bytes 0..39
 *   then frames, any number:
 *     0  u32 length  payload bytes, at most the acceptor's max frame size
 *     4  u32 crc32c  of the payload
 *     8  payload
 * The acceptor closes the connection (with a log line) on a bad magic,
 * version or CRC, or a length over its limit. It refuses a dialer of
 * another cluster (both cluster ids nonzero and different) or one whose
 * target is not the acceptor's own id: then it writes back, best effort,
 * the only bytes that ever go from acceptor to dialer, 40 of them:
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

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"

void peer__hello_encode(uint8_t out[PEER__HELLO_LEN],
                        const struct peer__hello *h)
{
    craft_put32(out, PEER__MAGIC);
    craft_put16(out + 4, PEER__VERSION);
    craft_put16(out + 6, 0);
    craft_put64(out + 8, h->sender);
    craft_put64(out + 16, h->cluster);
    craft_put64(out + 24, h->target);
    craft_put64(out + 32, h->target_tag);
    craft_put32(out + 40, crc32c(0, out, 40));
}

int peer__hello_decode(const uint8_t *in, size_t avail, struct peer__hello *h,
                       unsigned *version_out)
{
    if (avail >= 4 && craft_get32(in) != PEER__MAGIC)
        return CRAFT_ECORRUPT;
    if (avail >= 6 && craft_get16(in + 4) != PEER__VERSION) {
        if (version_out != NULL)
            *version_out = craft_get16(in + 4);
        return CRAFT_EVERSION;
    }
    if (avail < PEER__HELLO_LEN)
        return CRAFT_ETRUNCATED;
    if (craft_get32(in + 40) != crc32c(0, in, 40))
        return CRAFT_ECORRUPT;
    h->sender = craft_get64(in + 8);
    h->cluster = craft_get64(in + 16);
    h->target = craft_get64(in + 24);
    h->target_tag = craft_get64(in + 32);
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
