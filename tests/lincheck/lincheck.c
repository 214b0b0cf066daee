/* lincheck's entry point: validates a history, splits it by key, interns
 * each key's values, runs the search per key and builds the result. */
#include <string.h>

#include "common/error.h"
#include "lincheck/lincheck_int.h"

#define DEFAULT_MAX_STEPS 10000000ULL
#define DEFAULT_MAX_CACHE_BYTES (256u << 20)
#define DEFAULT_MAX_EXPLAIN_OPS 100

static bool op_valid(const struct lincheck_op *op)
{
    if (op->key == NULL || op->invoke == LINCHECK_INF)
        return false;
    if (op->kind < LINCHECK_PUT || op->kind > LINCHECK_CAS)
        return false;
    if (op->outcome < LINCHECK_OUTCOME_OK ||
        op->outcome > LINCHECK_OUTCOME_UNKNOWN)
        return false;
    if (op->has_value && op->value == NULL)
        return false;
    if ((op->kind == LINCHECK_PUT || op->kind == LINCHECK_CAS) &&
        !op->has_value)
        return false;
    if (op->kind == LINCHECK_DELETE && op->has_mod)
        return false;
    if (op->has_mod && op->mod == LINCHECK__MOD_ANY)
        return false;
    if (op->kind == LINCHECK_CAS && op->outcome == LINCHECK_OUTCOME_FAIL &&
        op->has_mod && op->mod == op->expect)
        return false;
    if (op->outcome == LINCHECK_OUTCOME_OK &&
        (op->complete == LINCHECK_INF || op->complete < op->invoke))
        return false;
    return true;
}

/* Failed writes did not happen; gets without an answer observed nothing. A
 * failed cas that got its answer is kept: it observed a mod_index. */
static bool op_dropped(const struct lincheck_op *op)
{
    if (op->kind == LINCHECK_GET)
        return op->outcome != LINCHECK_OUTCOME_OK;
    if (op->kind == LINCHECK_CAS && op->outcome == LINCHECK_OUTCOME_FAIL)
        return op->complete == LINCHECK_INF || op->complete < op->invoke;
    return op->outcome == LINCHECK_OUTCOME_FAIL;
}

/* Order op indexes by key bytes, then invoke time, then position. */
static int by_key_invoke(const void *pa, const void *pb, void *ctx)
{
    const struct lincheck_op *ops = ctx;
    uint32_t i = *(const uint32_t *)pa, j = *(const uint32_t *)pb;
    int c = strcmp(ops[i].key, ops[j].key);
    if (c)
        return c;
    if (ops[i].invoke != ops[j].invoke)
        return ops[i].invoke < ops[j].invoke ? -1 : 1;
    return i < j ? -1 : i > j;
}

struct vref {
    const char *value;
    uint32_t kop;
};

static int by_value(const void *pa, const void *pb)
{
    const struct vref *x = pa, *y = pb;
    int c = strcmp(x->value, y->value);
    if (c)
        return c;
    return x->kop < y->kop ? -1 : x->kop > y->kop;
}

/* Scratch arrays sized for the whole history, reused for every key. */
struct work {
    uint32_t *idx;              /* op indexes sorted by key, invoke */
    struct lincheck__kop *kops; /* the current key's ops */
    struct vref *vrefs;         /* its values, to intern */
    const char **values;        /* values[v], v >= 1 */
    bool *written;              /* written[v]: some put/cas writes v */
    const struct craft_allocator *a;
};

static void work_free(struct work *w)
{
    lincheck__free(w->a, w->idx);
    lincheck__free(w->a, w->kops);
    lincheck__free(w->a, w->vrefs);
    lincheck__free(w->a, w->values);
    lincheck__free(w->a, w->written);
}

static int work_init(struct work *w, const struct lincheck_op *ops, size_t n,
                     const struct craft_allocator *a)
{
    memset(w, 0, sizeof(*w));
    w->a = a;
    w->idx = lincheck__array(a, n, sizeof(*w->idx));
    w->kops = lincheck__array(a, n, sizeof(*w->kops));
    w->vrefs = lincheck__array(a, n, sizeof(*w->vrefs));
    w->values = lincheck__array(a, n + 1, sizeof(*w->values));
    w->written = lincheck__array(a, n + 1, sizeof(*w->written));
    if (!w->idx || !w->kops || !w->vrefs || !w->values || !w->written) {
        work_free(w);
        return CRAFT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        w->idx[i] = (uint32_t)i;
    qsort_r(w->idx, n, sizeof(*w->idx), by_key_invoke, (void *)ops);
    return 0;
}

/* Fill w->kops from the ops idx[from, to) of one key, interning values.
 * Returns how many ops were kept. */
static size_t load_key(struct work *w, const struct lincheck_op *ops,
                       size_t from, size_t to)
{
    size_t n = 0, nv = 0;
    for (size_t i = from; i < to; i++) {
        const struct lincheck_op *op = &ops[w->idx[i]];
        if (op_dropped(op))
            continue;
        struct lincheck__kop *k = &w->kops[n];
        *k = (struct lincheck__kop){op, op->kind, 0, op->invoke, op->complete};
        if (op->outcome == LINCHECK_OUTCOME_UNKNOWN)
            k->complete = LINCHECK_INF;
        if (op->kind == LINCHECK_CAS && op->outcome == LINCHECK_OUTCOME_FAIL)
            k->kind = LINCHECK__CAS_FAILED;
        if (op->kind != LINCHECK_DELETE && op->has_value)
            w->vrefs[nv++] = (struct vref){op->value, (uint32_t)n};
        n++;
    }
    qsort(w->vrefs, nv, sizeof(*w->vrefs), by_value);
    lincheck__val v = 0;
    for (size_t i = 0; i < nv; i++) {
        if (i == 0 || strcmp(w->vrefs[i].value, w->vrefs[i - 1].value) != 0) {
            v++;
            w->values[v] = w->vrefs[i].value;
            w->written[v] = false;
        }
        struct lincheck__kop *k = &w->kops[w->vrefs[i].kop];
        k->val = v;
        if (k->kind == LINCHECK_PUT || k->kind == LINCHECK_CAS)
            w->written[v] = true;
    }
    return n;
}

static char *str_copy(const char *s, const struct craft_allocator *a)
{
    size_t len = strlen(s) + 1;
    char *p = lincheck__malloc(a, len);
    if (p)
        memcpy(p, s, len);
    return p;
}

/* Record a key that did not pass; the report is kept for the first key with
 * a violation, else for the first undecided key. */
static int note_bad_key(struct lincheck_result *res,
                        const struct lincheck__key_report *kr,
                        const struct craft_allocator *a)
{
    bool violation = kr->search->verdict == LINCHECK_VIOLATION;
    if (violation)
        res->n_bad_keys++;
    else
        res->n_unknown_keys++;
    bool replace = res->bad_key == NULL ||
                   (violation && res->n_bad_keys == 1);
    if (!replace)
        return 0;
    char *key = str_copy(kr->key, a);
    char *text = lincheck__explain(kr, a);
    if (key == NULL || text == NULL) {
        lincheck__free(a, key);
        lincheck__free(a, text);
        return CRAFT_ENOMEM;
    }
    lincheck__free(a, res->bad_key);
    lincheck__free(a, res->explanation);
    res->bad_key = key;
    res->explanation = text;
    return 0;
}

/* Check the key whose ops are idx[from, to). */
static int check_key(struct work *w, const struct lincheck_op *ops,
                     size_t from, size_t to, const struct lincheck_opts *o,
                     struct lincheck_result *res)
{
    size_t n = load_key(w, ops, from, to);
    struct lincheck__search_out so;
    int err = lincheck__search(w->kops, n, o->max_steps, o->max_cache_bytes,
                               o->alloc, &so);
    if (err)
        return err;
    res->n_keys++;
    res->n_checked += n;
    res->steps += so.steps;
    if (so.verdict != LINCHECK_OK) {
        struct lincheck__key_report kr = {
            .key = ops[w->idx[from]].key,
            .kops = w->kops,
            .n = n,
            .n_dropped = (to - from) - n,
            .values = w->values,
            .written = w->written,
            .search = &so,
            .max_ops = o->max_explain_ops,
        };
        err = note_bad_key(res, &kr, o->alloc);
    }
    lincheck__free(o->alloc, so.best);
    return err;
}

static struct lincheck_opts resolve_opts(const struct lincheck_opts *opts)
{
    struct lincheck_opts o = {0};
    if (opts)
        o = *opts;
    if (o.max_steps == 0)
        o.max_steps = DEFAULT_MAX_STEPS;
    if (o.max_cache_bytes == 0)
        o.max_cache_bytes = DEFAULT_MAX_CACHE_BYTES;
    if (o.max_explain_ops == 0)
        o.max_explain_ops = DEFAULT_MAX_EXPLAIN_OPS;
    return o;
}

int lincheck_check(const struct lincheck_op *ops, size_t n,
                   const struct lincheck_opts *opts,
                   struct lincheck_result *res)
{
    struct lincheck_opts o = resolve_opts(opts);
    memset(res, 0, sizeof(*res));
    res->alloc = o.alloc;
    if (n > 0 && ops == NULL)
        return CRAFT_EINVAL;
    if (n >= UINT32_MAX)
        return CRAFT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!op_valid(&ops[i]))
            return CRAFT_EINVAL;
    res->n_ops = n;

    struct work w;
    int err = work_init(&w, ops, n, o.alloc);
    if (err)
        return err;
    for (size_t from = 0; err == 0 && from < n;) {
        size_t to = from + 1;
        while (to < n && strcmp(ops[w.idx[to]].key, ops[w.idx[from]].key) == 0)
            to++;
        err = check_key(&w, ops, from, to, &o, res);
        from = to;
    }
    work_free(&w);
    if (err) {
        lincheck_result_free(res);
        return err;
    }
    res->verdict = res->n_bad_keys      ? LINCHECK_VIOLATION
                   : res->n_unknown_keys ? LINCHECK_UNKNOWN
                                         : LINCHECK_OK;
    return 0;
}

void lincheck_result_free(struct lincheck_result *res)
{
    if (res == NULL)
        return;
    lincheck__free(res->alloc, res->bad_key);
    lincheck__free(res->alloc, res->explanation);
    memset(res, 0, sizeof(*res));
}

const char *lincheck_verdict_name(int verdict)
{
    switch (verdict) {
    case LINCHECK_OK:
        return "ok";
    case LINCHECK_VIOLATION:
        return "violation";
    case LINCHECK_UNKNOWN:
        return "unknown";
    default:
        return "?";
    }
}

void lincheck_result_print(const struct lincheck_result *res, FILE *f)
{
    fprintf(f, "verdict: %s (%zu ops, %zu checked, %zu keys, %zu with a "
               "violation, %zu undecided, %llu search steps)\n",
            lincheck_verdict_name(res->verdict), res->n_ops, res->n_checked,
            res->n_keys, res->n_bad_keys, res->n_unknown_keys,
            (unsigned long long)res->steps);
    if (res->explanation)
        fputs(res->explanation, f);
}
