/* Micro-benchmark of the map alone (src/kv): RSS for N keys of 16 bytes with
 * 16-byte values, point put/get in insertion and in random order, same-size
 * updates, and listing 1,000 keys under a prefix. `make bench-kv`; N from
 * the first argument (1000000), "random" as the second loads in random
 * order. Numbers go to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv/kv.h"

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2)
        exit(1);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Exactly 16 bytes: "key-000000000042". */
static void key16(char *buf, unsigned i, const char *prefix)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%s-%012u", prefix, i);
    memcpy(buf, tmp, 16);
}

static unsigned *shuffled(unsigned n, unsigned long long x)
{
    unsigned *p = malloc(n * sizeof *p);
    if (p == NULL)
        exit(1);
    for (unsigned i = 0; i < n; i++)
        p[i] = i;
    for (unsigned i = n - 1; i > 0; i--) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned j = (unsigned)(x % (i + 1));
        unsigned t = p[i]; p[i] = p[j]; p[j] = t;
    }
    return p;
}

/* Overwrite every key with a value of the same size, in random order. */
static double updates(struct kv *kv, const unsigned *order, unsigned n)
{
    char k[16], v[16];
    double t0 = now();
    for (unsigned i = 0; i < n; i++) {
        key16(k, order[i], "key");
        key16(v, order[i], "VAL");
        if (kv_put(kv, k, 16, v, 16) != 0)
            exit(1);
    }
    return (now() - t0) / n * 1e9;
}

struct list_ud {
    size_t n;
};
static int count_cb(void *ud, const struct kv_meta *m)
{
    (void)m;
    ((struct list_ud *)ud)->n++;
    return 0;
}

static struct kv *load(const unsigned *order, unsigned n, double *put_ns)
{
    struct kv *kv = kv_new(0);
    char k[16], v[16];
    double t0 = now();
    for (unsigned i = 0; i < n; i++) {
        unsigned j = order ? order[i] : i;
        key16(k, j, "key");
        key16(v, j, "val");
        if (kv_put(kv, k, 16, v, 16) != 0)
            exit(1);
    }
    *put_ns = (now() - t0) / n * 1e9;
    return kv;
}

static double gets(struct kv *kv, const unsigned *order, unsigned n)
{
    char k[16];
    double t0 = now();
    for (unsigned i = 0; i < n; i++) {
        key16(k, order ? order[i] : i, "key");
        const uint8_t *v;
        size_t vl;
        if (kv_get(kv, k, 16, &v, &vl) != 0 || vl != 16)
            exit(1);
    }
    return (now() - t0) / n * 1e9;
}

/* argv[2] "random" loads the keys in random order, else in order; one
 * load per process, so that the RSS growth is that load's alone. */
int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 1000000;
    bool random = argc > 2 && strcmp(argv[2], "random") == 0;
    unsigned *order = shuffled(n, 88172645463325252ULL);
    unsigned *reads = shuffled(n, 0x9e3779b97f4a7c15ULL); /* not the load's */
    double put_ns;

    long rss0 = rss_bytes();
    struct kv *kv = load(random ? order : NULL, n, &put_ns);
    long rss1 = rss_bytes();
    printf("%s load: %u keys, RSS +%.1f MiB (%.1f bytes/key; process %.1f "
           "MiB), put %.0f ns, get %.0f ns (in order), %.0f ns (random "
           "order)\n",
           random ? "random" : "in-order", n, (rss1 - rss0) / 1048576.0,
           (double)(rss1 - rss0) / n, rss1 / 1048576.0, put_ns,
           gets(kv, NULL, n), gets(kv, reads, n));
    printf("update: %.0f ns (random order, same-size values)\n",
           updates(kv, reads, n));
    /* 1,000 keys under a prefix: "key-000000123" holds key-000000123000..999 */
    struct list_ud ud = {0};
    double t0 = now();
    int rounds = 1000;
    for (int r = 0; r < rounds; r++) {
        char p[13];
        memcpy(p, "key-000000", 10);
        unsigned b = (unsigned)(r * 7919) % (n / 1000 ? n / 1000 : 1);
        p[10] = (char)('0' + b / 100 % 10);
        p[11] = (char)('0' + b / 10 % 10);
        p[12] = (char)('0' + b % 10);
        struct kv_range rg;
        kv_range_prefix(&rg, p, sizeof p);
        bool more;
        size_t got;
        if (kv_list(kv, &rg, NULL, 0, 10000, count_cb, &ud, &got, &more) ||
            got != 1000 || more)
            exit(1);
    }
    printf("list: %.1f us per 1,000-key prefix listing (%zu keys seen)\n",
           (now() - t0) / rounds * 1e6, ud.n);
    kv_free(kv);
    free(order);
    free(reads);
    return 0;
}
