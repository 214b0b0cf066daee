/* The map's keyed hash: SipHash-1-3, so clients cannot pick keys that all
 * collide (hash flooding), and the seeding of each map's key. */
#include "kv/kv_internal.h"

#include "common/endian.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND()                                                           \
    do {                                                                     \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);            \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                               \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                               \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);            \
    } while (0)

uint64_t kv__siphash(uint64_t k0, uint64_t k1, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len & ~(size_t)7;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = craft_get64(p + i);
        v3 ^= m;
        SIPROUND();
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = whole; i < len; i++)
        last |= (uint64_t)p[i] << (8 * (i - whole));
    v3 ^= last;
    SIPROUND();
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND();
    SIPROUND();
    SIPROUND();
    return v0 ^ v1 ^ v2 ^ v3;
}

uint32_t kv__hash(const struct kv *kv, const void *key, size_t klen)
{
    uint64_t h = kv__siphash(kv->k0, kv->k1, key, klen);
    return (uint32_t)(h ^ (h >> 32));
}
