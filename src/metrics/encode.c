/* The Prometheus text exposition format, version 0.0.4: "# HELP" and
 * "# TYPE" lines, then one "name{label="value",...} value" line per sample;
 * label values escape '\', '"' and newlines, help texts '\' and newlines.
 * Durations are written in seconds from integer nanoseconds, exactly. */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

void metrics_buf_init(struct metrics_buf *b)
{
    memset(b, 0, sizeof *b);
}

void metrics_buf_free(struct metrics_buf *b)
{
    craft_free(b->data);
    memset(b, 0, sizeof *b);
}

/* Room for extra more bytes; false (and b failed) without memory. */
static bool reserve(struct metrics_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->cap - b->len >= extra)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *d = craft_realloc(b->data, cap);
    if (d == NULL) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

static void put(struct metrics_buf *b, const char *s, size_t n)
{
    if (n > 0 && reserve(b, n)) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
    }
}

static void puts_(struct metrics_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* s with '\' and newlines escaped, and '"' too when quote. */
static void put_escaped(struct metrics_buf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            put(b, "\\\\", 2);
        else if (*p == '\n')
            put(b, "\\n", 2);
        else if (*p == '"' && quote)
            put(b, "\\\"", 2);
        else
            put(b, p, 1);
    }
}

static void put_u64(struct metrics_buf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRIu64, v);
    put(b, num, (size_t)n);
}

/* ns as seconds: integer part, then the fraction without trailing zeros. */
static void put_ns_as_seconds(struct metrics_buf *b, uint64_t ns)
{
    char num[32];
    uint64_t frac = ns % 1000000000u;
    int n = snprintf(num, sizeof num, "%" PRIu64, ns / 1000000000u);
    if (frac != 0) {
        n += snprintf(num + n, sizeof num - (size_t)n, ".%09" PRIu64, frac);
        while (num[n - 1] == '0')
            n--;
    }
    put(b, num, (size_t)n);
}

static const char *type_name(enum metrics_type t)
{
    switch (t) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    case METRICS_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void metrics_put_family(struct metrics_buf *b, const struct metrics_family *f)
{
    puts_(b, "# HELP ");
    puts_(b, f->name);
    put(b, " ", 1);
    put_escaped(b, f->help, false);
    puts_(b, "\n# TYPE ");
    puts_(b, f->name);
    put(b, " ", 1);
    puts_(b, type_name(f->type));
    put(b, "\n", 1);
}

/* name suffix {labels, le="..."} and a space; le NULL: none, "" with
 * le_ns: the bound in seconds. */
static void put_head(struct metrics_buf *b, const char *name, const char *suffix,
                     const struct metrics_label *l, size_t n, const char *le, uint64_t le_ns)
{
    puts_(b, name);
    puts_(b, suffix);
    if (n > 0 || le != NULL) {
        put(b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                put(b, ",", 1);
            puts_(b, l[i].name);
            put(b, "=\"", 2);
            put_escaped(b, l[i].value, true);
            put(b, "\"", 1);
        }
        if (le != NULL) {
            puts_(b, n > 0 ? ",le=\"" : "le=\"");
            if (le[0])
                puts_(b, le);
            else
                put_ns_as_seconds(b, le_ns);
            put(b, "\"", 1);
        }
        put(b, "}", 1);
    }
    put(b, " ", 1);
}

void metrics_put_u64(struct metrics_buf *b, const struct metrics_family *f,
                     const struct metrics_label *l, size_t n, uint64_t v)
{
    put_head(b, f->name, "", l, n, NULL, 0);
    put_u64(b, v);
    put(b, "\n", 1);
}

void metrics_put_seconds(struct metrics_buf *b, const struct metrics_family *f,
                         const struct metrics_label *l, size_t n, uint64_t ns)
{
    put_head(b, f->name, "", l, n, NULL, 0);
    put_ns_as_seconds(b, ns);
    put(b, "\n", 1);
}

void metrics_put_hist(struct metrics_buf *b, const struct metrics_family *f,
                      const struct metrics_label *l, size_t n, const struct metrics_hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        put_head(b, f->name, "_bucket", l, n, "", h->bounds[i]);
        put_u64(b, cum);
        put(b, "\n", 1);
    }
    put_head(b, f->name, "_bucket", l, n, "+Inf", 0);
    put_u64(b, h->count);
    put(b, "\n", 1);
    put_head(b, f->name, "_sum", l, n, NULL, 0);
    put_ns_as_seconds(b, h->sum);
    put(b, "\n", 1);
    put_head(b, f->name, "_count", l, n, NULL, 0);
    put_u64(b, h->count);
    put(b, "\n", 1);
}
