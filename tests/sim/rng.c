/* The simulator's only source of randomness: xoshiro256** seeded through
 * splitmix64, plus the small hashes used to derive seeds and fingerprints. */
#include "sim/sim.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sim_rng_seed(struct sim_rng *g, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sim_rng_next(struct sim_rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Lemire's multiply-shift; the tiny bias does not matter here. */
uint64_t sim_rng_below(struct sim_rng *g, uint64_t n)
{
    if (n < 2)
        return 0;
    return (uint64_t)(((unsigned __int128)sim_rng_next(g) * n) >> 64);
}

uint64_t sim_rng_range(struct sim_rng *g, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + sim_rng_below(g, hi - lo + 1);
}

bool sim_rng_ppm(struct sim_rng *g, uint32_t ppm)
{
    return ppm && sim_rng_below(g, 1000000) < ppm;
}

uint64_t sim_mix(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b * 0xD6E8FEB86659FD93ull);
    splitmix64(&x);
    return splitmix64(&x);
}

uint64_t sim_fnv(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
