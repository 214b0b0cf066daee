/* LEB128 varints for compact encodings (the kv's records and commands,
 * the watch history's events). */
#ifndef CRAFT_VARINT_H
#define CRAFT_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* LEB128 of a u64: 7 bits a byte, low first, high bit = more follows. */
static inline size_t craft_uvar_size(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static inline size_t craft_put_uvar(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

/* Bytes read at p (avail of them), or 0 if malformed (over 10 bytes, over
 * max, not canonical: a multi-byte varint ending in a zero byte) or cut. */
static inline size_t craft_get_uvar(const uint8_t *p, size_t avail,
                                     uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 10 && i < avail; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == 9 && b > 1)
            return 0;
        x |= b << (7 * i);
        if (p[i] & 0x80)
            continue;
        if ((i > 0 && p[i] == 0) || x > max)
            return 0;
        *v = x;
        return i + 1;
    }
    return 0;
}

#endif
