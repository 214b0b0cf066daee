/* The transport's wire format and its byte buffers. Pure code, no I/O.
 *
 * Each connection carries, in one direction (dialer -> acceptor), all
 * little-endian:
 *   handshake, 20 bytes, once, first:
 *     0  u32 magic   0x54465243 (the bytes "CRFT")
 *     4  u16 version 1
 *     6  u16 flags   0 (ignored; for later use)
 *     8  u64 sender  the dialer's node id
 *    16  u32 crc32c  of bytes 0..15
 *   then frames, any number:
 *     0  u32 length  payload bytes, at most the acceptor's max frame size
 *     4  u32 crc32c  of the payload
 *     8  payload
 * The acceptor closes the connection (with a log line) on a bad magic,
 * version or CRC, or a length over its limit. crc32c(0, buf, len) is the
 * standard CRC-32C (Castagnoli) of buf. */
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"

void peer__hello_encode(uint8_t out[PEER__HELLO_LEN], uint64_t sender)
{
    craft_put32(out, PEER__MAGIC);
    craft_put16(out + 4, PEER__VERSION);
    craft_put16(out + 6, 0);
    craft_put64(out + 8, sender);
    craft_put32(out + 16, crc32c(0, out, 16));
}

int peer__hello_decode(const uint8_t in[PEER__HELLO_LEN], uint64_t *sender)
{
    if (craft_get32(in) != PEER__MAGIC)
        return CRAFT_ECORRUPT;
    if (craft_get32(in + 16) != crc32c(0, in, 16))
        return CRAFT_ECORRUPT;
    if (craft_get16(in + 4) != PEER__VERSION)
        return CRAFT_EVERSION;
    *sender = craft_get64(in + 8);
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
