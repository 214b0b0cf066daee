/* Micro-benchmark of the map alone (src/kv): RSS for N keys of 16 bytes with
 * 16-byte values, inserts, point gets, listing 1,000 keys under a prefix,
 * and updates (direct kv_put, then one-put commands through kv_apply_at,
 * the node's path). `make bench-kv`; N from the first argument (1000000),
 * "random" as the second loads in random order. Keys are formatted before
 * the clock starts, in the order they are used, so the times are the
 * map's; times are CPU time of the process (CLOCK_PROCESS_CPUTIME_ID), so
 * that waiting for a shared core is not counted. Numbers go to stdout. */
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
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
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

/* n strings of exactly 16 bytes, "key-000000000042", the i-th for number
 * order[i] (i if order is NULL), packed. */
static char *format16(unsigned n, const unsigned *order, const char *prefix)
{
    char *a = malloc((size_t)n * 16), tmp[32];
    if (a == NULL)
        exit(1);
    for (unsigned i = 0; i < n; i++) {
        snprintf(tmp, sizeof tmp, "%s-%012u", prefix, order ? order[i] : i);
        memcpy(a + (size_t)16 * i, tmp, 16);
    }
    return a;
}

#define AT(a, i) ((a) + (size_t)16 * (i))

static double puts_ns(struct kv *kv, const char *keys, const char *vals,
                      unsigned n)
{
    double t0 = now();
    for (unsigned i = 0; i < n; i++)
        if (kv_put(kv, AT(keys, i), 16, AT(vals, i), 16) != 0)
            exit(1);
    return (now() - t0) / n * 1e9;
}

static double gets_ns(struct kv *kv, const char *keys, unsigned n)
{
    double t0 = now();
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vl;
        if (kv_get(kv, AT(keys, i), 16, &v, &vl) != 0 || vl != 16)
            exit(1);
    }
    return (now() - t0) / n * 1e9;
}

/* One-put commands (version 1) at increasing log indexes, each encoded
 * before the clock starts, as the node applies committed entries. */
static double applies_ns(struct kv *kv, const char *keys, const char *vals,
                         unsigned n)
{
    enum { CMD = 1 + 4 + 1 + 1 + 16 + 1 + 16 };
    uint8_t *cmds = malloc((size_t)n * CMD);
    if (cmds == NULL)
        exit(1);
    for (unsigned i = 0; i < n; i++) {
        struct kv_op op = {KV_OP_SET, (const uint8_t *)AT(keys, i), 16,
                           (const uint8_t *)AT(vals, i), 16};
        if (kv_cmd_encode(&op, 1, cmds + (size_t)CMD * i) != CMD)
            exit(1);
    }
    uint64_t index = kv_index(kv);
    double t0 = now();
    for (unsigned i = 0; i < n; i++)
        if (kv_apply_at(kv, ++index, cmds + (size_t)CMD * i, CMD) != 0)
            exit(1);
    double ns = (now() - t0) / n * 1e9;
    free(cmds);
    return ns;
}

static int count_cb(void *ud, const struct kv_meta *m)
{
    (void)m;
    ++*(size_t *)ud;
    return 0;
}

/* 1,000 keys under a prefix: "key-000000123" holds key-000000123000..999;
 * the average over 1,000 prefixes, in microseconds. */
static double list_us(struct kv *kv, unsigned n)
{
    size_t seen = 0;
    int rounds = 1000;
    double t0 = now();
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
        if (kv_list(kv, &rg, NULL, 0, 10000, count_cb, &seen, &got, &more) ||
            got != 1000 || more)
            exit(1);
    }
    return (now() - t0) / rounds * 1e6;
}

static void line(const char *what, double ns)
{
    printf("%-38s %7.0f ns  %9.0f ops/s\n", what, ns, 1e9 / ns);
}

/* argv[2] "random" loads the keys in random order, else in order; one
 * load per process, so that the RSS growth is that load's alone. */
int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 1000000;
    bool random = argc > 2 && strcmp(argv[2], "random") == 0;
    unsigned *order = shuffled(n, 88172645463325252ULL);
    unsigned *reads = shuffled(n, 0x9e3779b97f4a7c15ULL); /* not the load's */
    const unsigned *load_order = random ? order : NULL;
    char *lkeys = format16(n, load_order, "key");
    char *lvals = format16(n, load_order, "val");
    char *okeys = format16(n, NULL, "key");
    char *rkeys = format16(n, reads, "key");
    char *rvals = format16(n, reads, "VAL");
    char *avals = format16(n, reads, "AAA");

    struct kv *kv = kv_new(0);
    long rss0 = rss_bytes();
    double put = puts_ns(kv, lkeys, lvals, n);
    long rss1 = rss_bytes();
    printf("%s load of %u keys (16-byte keys and values): RSS +%.1f MiB "
           "(%.1f bytes/key; process %.1f MiB)\n",
           random ? "random-order" : "in-order", n,
           (rss1 - rss0) / 1048576.0, (double)(rss1 - rss0) / n,
           rss1 / 1048576.0);
    line(random ? "insert (kv_put, new keys, random order)"
                : "insert (kv_put, new keys, in order)", put);
    line("get (in key order)", gets_ns(kv, okeys, n));
    line("get (random order)", gets_ns(kv, rkeys, n));
    printf("list: %.1f us per 1,000-key prefix listing\n", list_us(kv, n));
    line("update (kv_put, same size, random)", puts_ns(kv, rkeys, rvals, n));
    /* these records grow: mod_index becomes a log index near n */
    line("update (1-put command, kv_apply_at)",
         applies_ns(kv, rkeys, avals, n));
    printf("after the updates: RSS +%.1f MiB, list %.1f us\n",
           (rss_bytes() - rss0) / 1048576.0, list_us(kv, n));
    /* a snapshot of it, and the map read back: what a restart spends */
    uint8_t *snap;
    size_t snap_len;
    if (kv_snapshot_write_mem(kv, kv_index(kv), &snap, &snap_len) != 0)
        exit(1);
    struct kv *back;
    uint64_t applied;
    double t0 = now();
    if (kv_restore_mem(snap, snap_len, 0, &back, &applied) != 0 || kv_count(back) != n)
        exit(1);
    line("restore (snapshot read back, per key)", (now() - t0) * 1e9 / n);
    free(snap);
    kv_free(back);
    /* freeing the map: what a node's loop would spend, were the old map
     * of a snapshot install freed there */
    double t = now();
    kv_free(kv);
    printf("free: %.1f ms for the whole map\n", (now() - t) * 1e3);
    free(order);
    free(reads);
    free(lkeys);
    free(lvals);
    free(okeys);
    free(rkeys);
    free(rvals);
    free(avals);
    return 0;
}
