/* The report on a key that failed the check: its ops in invoke order, with
 * the longest linearizable prefix the search found marked L1, L2, ... */
#include <stdarg.h>
#include <string.h>

#include "lincheck/lincheck_int.h"

/* A growable NUL-terminated string; after an allocation failure it stays
 * failed and every append is a no-op. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
    const struct craft_allocator *a;
};

static void sb_appendf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_appendf(struct sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = lincheck__realloc(b->a, b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Append s quoted, non-printable bytes as \xNN, cut after 40 bytes. */
static void sb_quote(struct sbuf *b, const char *s)
{
    sb_appendf(b, "\"");
    size_t i = 0;
    for (; s[i] && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sb_appendf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            sb_appendf(b, "\\x%02x", c);
        else
            sb_appendf(b, "%c", c);
    }
    sb_appendf(b, s[i] ? "\"..." : "\"");
}

static void sb_value(struct sbuf *b, const struct lincheck__key_report *kr,
                     lincheck__val v)
{
    if (v == 0)
        sb_appendf(b, "absent");
    else
        sb_quote(b, kr->values[v]);
}

/* " (mod n)" when the op carries a mod_index. */
static void sb_mod(struct sbuf *b, const struct lincheck_op *op)
{
    if (op->has_mod)
        sb_appendf(b, " (mod %llu)", (unsigned long long)op->mod);
}

static void sb_state(struct sbuf *b, const struct lincheck__key_report *kr,
                     struct lincheck__state st)
{
    sb_value(b, kr, st.val);
    if (st.mod == LINCHECK__MOD_ANY)
        sb_appendf(b, " (mod not known)");
    else if (st.val != 0)
        sb_appendf(b, " (mod %llu)", (unsigned long long)st.mod);
}

static void sb_time(struct sbuf *b, uint64_t t)
{
    if (t == LINCHECK_INF)
        sb_appendf(b, "inf");
    else
        sb_appendf(b, "%llu", (unsigned long long)t);
}

static void sb_op(struct sbuf *b, const struct lincheck__key_report *kr,
                  size_t i, uint32_t pos)
{
    const struct lincheck__kop *k = &kr->kops[i];
    if (pos)
        sb_appendf(b, "  L%-5u", pos);
    else
        sb_appendf(b, "  %-6s", "");
    sb_appendf(b, "client %-4llu [", (unsigned long long)k->op->client);
    sb_time(b, k->invoke);
    sb_appendf(b, ", ");
    sb_time(b, k->complete);
    sb_appendf(b, "]  ");
    switch (k->kind) {
    case LINCHECK_PUT:
        sb_appendf(b, "put ");
        sb_value(b, kr, k->val);
        sb_mod(b, k->op);
        break;
    case LINCHECK_CAS:
        sb_appendf(b, "cas if mod %llu: put ",
                   (unsigned long long)k->op->expect);
        sb_value(b, kr, k->val);
        sb_mod(b, k->op);
        break;
    case LINCHECK__CAS_FAILED:
        sb_appendf(b, "cas if mod %llu: refused",
                   (unsigned long long)k->op->expect);
        if (k->op->has_mod)
            sb_appendf(b, ", current mod %llu",
                       (unsigned long long)k->op->mod);
        break;
    case LINCHECK_DELETE:
        sb_appendf(b, "delete");
        break;
    default:
        sb_appendf(b, "get -> ");
        sb_value(b, kr, k->val);
        sb_mod(b, k->op);
        break;
    }
    if (k->op->outcome == LINCHECK_OUTCOME_UNKNOWN)
        sb_appendf(b, "  (unknown)");
    if (k->kind == LINCHECK_GET && k->val != 0 && !kr->written[k->val])
        sb_appendf(b, "  <- no put of this key writes this value");
    sb_appendf(b, "\n");
}

static void sb_header(struct sbuf *b, const struct lincheck__key_report *kr)
{
    const struct lincheck__search_out *so = kr->search;
    sb_appendf(b, "key ");
    sb_quote(b, kr->key);
    if (so->verdict == LINCHECK_VIOLATION)
        sb_appendf(b, ": no linearizable order of its %zu ops", kr->n);
    else
        sb_appendf(b, ": undecided, gave up after %llu search steps on %zu ops",
                   (unsigned long long)so->steps, kr->n);
    sb_appendf(b, " (%zu failed ops or unanswered gets dropped)\n",
               kr->n_dropped);
    sb_appendf(b, "longest linearizable prefix found: %zu of %zu ops, marked "
                  "L1.. in that order; the key then holds ",
               so->best_len, kr->n);
    sb_state(b, kr, so->best_state);
    sb_appendf(b, "\nops sorted by invoke time, [invoke, complete]:\n");
}

/* Lists ops [from, to) out of n, with the prefix positions in pos[]. */
static void sb_ops(struct sbuf *b, const struct lincheck__key_report *kr,
                   const uint32_t *pos, size_t from, size_t to)
{
    if (from > 0)
        sb_appendf(b, "  ... %zu earlier ops not shown\n", from);
    for (size_t i = from; i < to; i++)
        sb_op(b, kr, i, pos[i]);
    if (to < kr->n)
        sb_appendf(b, "  ... %zu later ops not shown\n", kr->n - to);
}

char *lincheck__explain(const struct lincheck__key_report *kr,
                        const struct craft_allocator *a)
{
    const struct lincheck__search_out *so = kr->search;
    uint32_t *pos = lincheck__array(a, kr->n, sizeof(*pos));
    struct sbuf b = {.a = a, .cap = 256};
    b.p = lincheck__malloc(a, b.cap);
    if (pos == NULL || b.p == NULL) {
        lincheck__free(a, pos);
        lincheck__free(a, b.p);
        return NULL;
    }
    memset(pos, 0, kr->n * sizeof(*pos));
    for (size_t i = 0; i < so->best_len; i++)
        pos[so->best[i]] = (uint32_t)(i + 1);

    /* Show a window of max_ops ops starting a little before the first op
     * left out of the prefix: that is where the history goes wrong. */
    size_t first_out = 0;
    while (first_out < kr->n && pos[first_out] != 0)
        first_out++;
    size_t from = 0, to = kr->n;
    if (kr->n > kr->max_ops) {
        from = first_out > kr->max_ops / 4 ? first_out - kr->max_ops / 4 : 0;
        if (from > kr->n - kr->max_ops)
            from = kr->n - kr->max_ops;
        to = from + kr->max_ops;
    }
    sb_header(&b, kr);
    sb_ops(&b, kr, pos, from, to);
    lincheck__free(a, pos);
    if (b.failed) {
        lincheck__free(a, b.p);
        return NULL;
    }
    return b.p;
}
