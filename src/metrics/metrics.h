/* Prometheus metrics: the values a component keeps (counters as plain
 * uint64_t, struct metrics_hist, struct metrics_codes), the registry of
 * metric families (struct metrics_family: name, type, help) with its naming
 * rules, the encoder of the text exposition format 0.0.4 into a growable
 * buffer, and the parsing of the /proc files behind the process_* families.
 * What craftd exports is listed in docs/operations.md.
 *
 * Pure: no I/O, no clock, no locks, no global mutable state. Updating a
 * value (metrics_hist_observe, metrics_codes_add, ++ on a counter) never
 * allocates and costs a few compares: the one thread that owns the values
 * (the node's loop) calls them on its hot paths. Only the encoder
 * allocates, into the buffer it is given; a failed allocation marks the
 * buffer failed (check b->failed once at the end), so that encoding code
 * needs no error check per line.
 *
 * Ownership: families, bounds and label strings belong to the caller
 * (string literals, usually) and must outlive the values and the encodes
 * that use them. A buffer owns its bytes until metrics_buf_free.
 * Threading: none of its own; a value and a buffer are used by one thread
 * at a time. */
#ifndef CRAFT_METRICS_H
#define CRAFT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the registry ---- */

enum metrics_type {
    METRICS_COUNTER = 1, /* only goes up (from 0 at process start) */
    METRICS_GAUGE,       /* any value */
    METRICS_HISTOGRAM,   /* _bucket{le=...}, _sum, _count */
};

struct metrics_family {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*; a counter's ends in _total */
    enum metrics_type type;
    const char *help; /* one line, not empty */
};

/* 0 if every family of f[0..n) is well formed for Prometheus: a valid name
 * starting with prefix, counters ending in _total and nothing else ending
 * in _total, no name of a non-histogram ending in _bucket, _sum or _count,
 * no name given twice, a help text without a newline. Otherwise -1 and
 * the first problem in err (errlen > 0). */
int metrics_registry_check(const struct metrics_family *f, size_t n, const char *prefix,
                           char *err, size_t errlen);
/* True if s is a valid metric name (label_name: a valid label name, which
 * has no ':' and does not start with "__"). */
bool metrics_name_valid(const char *s, bool label_name);

/* ---- values ---- */

/* A histogram of durations in nanoseconds (exported in seconds). bounds are
 * the upper bounds (inclusive: Prometheus' "le") of its buckets, strictly
 * ascending; an implicit last bucket (+Inf) holds the rest. */
#define METRICS_HIST_MAX 24 /* bounds at most */
struct metrics_hist {
    const uint64_t *bounds; /* n_bounds of them, the caller's */
    size_t n_bounds;
    uint64_t counts[METRICS_HIST_MAX + 1]; /* per bucket, not cumulative */
    uint64_t count;                        /* observations */
    uint64_t sum;                          /* their sum (ns) */
};

/* Zeroes h and gives it bounds (n <= METRICS_HIST_MAX, ascending). */
void metrics_hist_init(struct metrics_hist *h, const uint64_t *bounds, size_t n);

static inline void metrics_hist_observe(struct metrics_hist *h, uint64_t ns)
{
    size_t lo = 0, hi = h->n_bounds; /* the first bound >= ns, or n_bounds */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ns <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += ns;
}

/* Bounds for request and fsync latencies: 10 us to 10 s (18 of them), for
 * whole snapshots: 10 ms to 120 s (12), and for the event loop's busy time
 * per iteration: 0.5 ms to 10 s (14). */
#define METRICS_LATENCY_BOUNDS 18
extern const uint64_t metrics_latency_ns[METRICS_LATENCY_BOUNDS];
#define METRICS_SLOW_BOUNDS 12
extern const uint64_t metrics_slow_ns[METRICS_SLOW_BOUNDS];
#define METRICS_LOOP_BOUNDS 14
extern const uint64_t metrics_loop_ns[METRICS_LOOP_BOUNDS];

/* Counters by HTTP status code: the first METRICS_CODES_MAX distinct codes
 * get a slot each, in the order they come; later new codes are counted in
 * other (exported as code="other"). */
#define METRICS_CODES_MAX 16
struct metrics_codes {
    unsigned used;
    uint16_t code[METRICS_CODES_MAX];
    uint64_t n[METRICS_CODES_MAX];
    uint64_t other;
};

static inline void metrics_codes_add(struct metrics_codes *c, unsigned code)
{
    for (unsigned i = 0; i < c->used; i++) {
        if (c->code[i] == code) {
            c->n[i]++;
            return;
        }
    }
    if (c->used < METRICS_CODES_MAX && code > 0 && code < 1000) {
        c->code[c->used] = (uint16_t)code;
        c->n[c->used++] = 1;
        return;
    }
    c->other++;
}

/* ---- the text format (version 0.0.4) ---- */

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_buf {
    char *data; /* len bytes of text, not NUL-terminated; NULL when empty */
    size_t len, cap;
    bool failed; /* an allocation failed: data is incomplete */
};

struct metrics_label {
    const char *name;  /* a valid label name (not checked here) */
    const char *value; /* any UTF-8; escaped as the format wants */
};

void metrics_buf_init(struct metrics_buf *b);
void metrics_buf_free(struct metrics_buf *b);

/* The "# HELP" and "# TYPE" lines of f; its samples must follow, before
 * any other family's. */
void metrics_put_family(struct metrics_buf *b, const struct metrics_family *f);
/* One sample of f (a counter or a gauge) with n labels (may be 0). */
void metrics_put_u64(struct metrics_buf *b, const struct metrics_family *f,
                     const struct metrics_label *l, size_t n, uint64_t v);
/* One sample whose value is ns nanoseconds, written in seconds, exactly
 * (e.g. 1500000 -> 0.0015). */
void metrics_put_seconds(struct metrics_buf *b, const struct metrics_family *f,
                         const struct metrics_label *l, size_t n, uint64_t ns);
/* The samples of a histogram: cumulative _bucket lines (bounds in seconds,
 * then le="+Inf"), _sum (seconds) and _count, each with the n labels. */
void metrics_put_hist(struct metrics_buf *b, const struct metrics_family *f,
                      const struct metrics_label *l, size_t n, const struct metrics_hist *h);

/* ---- /proc ---- */

/* What /proc/self/stat says (proc(5)), in its units. */
struct metrics_proc_stat {
    uint64_t utime, stime; /* CPU time in user and kernel mode, clock ticks */
    uint64_t starttime;    /* start after boot, clock ticks */
    uint64_t vsize;        /* virtual memory, bytes */
    uint64_t rss;          /* resident set, pages */
};

/* Parse the text of /proc/<pid>/stat (len bytes). The command name in
 * parentheses may hold anything, ')' and spaces included. 0 or -1. */
int metrics_proc_parse_stat(const char *text, size_t len, struct metrics_proc_stat *out);
/* The "btime" line of /proc/stat: boot time, seconds since the epoch.
 * 0 or -1. */
int metrics_proc_parse_btime(const char *text, size_t len, uint64_t *btime);

#endif
