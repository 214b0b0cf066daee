/* Internals shared by the lincheck files (lincheck__ names); not an API.
 *
 * lincheck.c splits the history by key and turns each key's ops into
 * struct lincheck__kop (values interned to small ints), search.c runs the
 * Wing & Gong / Lowe search on one key, explain.c writes the report text. */
#ifndef CRAFT_LINCHECK_INT_H
#define CRAFT_LINCHECK_INT_H

#include <stdlib.h>

#include "lincheck/lincheck.h"

/* Allocation through the caller's allocator (NULL: libc). */
static inline void *lincheck__malloc(const struct craft_allocator *a, size_t n)
{
    if (n == 0)
        n = 1;
    return a ? a->malloc(n) : malloc(n);
}

/* n * size bytes, or NULL on overflow; not zeroed. */
static inline void *lincheck__array(const struct craft_allocator *a, size_t n,
                                    size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return lincheck__malloc(a, n * size);
}

static inline void *lincheck__realloc(const struct craft_allocator *a, void *p,
                                      size_t n)
{
    if (n == 0)
        n = 1;
    return a ? a->realloc(p, n) : realloc(p, n);
}

static inline void lincheck__free(const struct craft_allocator *a, void *p)
{
    if (p == NULL)
        return;
    if (a)
        a->free(p);
    else
        free(p);
}

/* Register state / interned value: 0 is "absent", 1.. are distinct values. */
typedef int32_t lincheck__val;

/* The mod_index of a register set by a write whose index is not known. */
#define LINCHECK__MOD_ANY UINT64_MAX

/* The register: its value and the mod_index of the write that set it. */
struct lincheck__state {
    lincheck__val val;
    uint64_t mod; /* 0 when absent; LINCHECK__MOD_ANY: not known yet */
};

/* A failed cas, kept as an observation (a kind of its own for the search). */
#define LINCHECK__CAS_FAILED 100

/* One op of a key after filtering, as the search sees it. */
struct lincheck__kop {
    const struct lincheck_op *op; /* the caller's op; valid during the call */
    int kind;                     /* enum lincheck_kind or CAS_FAILED */
    lincheck__val val;            /* put, cas: written; get: read; delete: 0 */
    uint64_t invoke;
    uint64_t complete;            /* LINCHECK_INF when the outcome is unknown */
};

/* The outcome of searching one key. */
struct lincheck__search_out {
    int verdict;          /* LINCHECK_OK, _VIOLATION or _UNKNOWN */
    uint64_t steps;       /* loop iterations spent */
    uint32_t *best;       /* longest linearizable prefix: kop indexes */
    size_t best_len;
    struct lincheck__state best_state; /* register after that prefix */
};

/* Search kops[0..n) (sorted by invoke). Fills *out; out->best is allocated
 * with a (free it with lincheck__free) even when the verdict is OK.
 * Returns 0 or CRAFT_ENOMEM (then out->best is NULL). max_cache_bytes bounds
 * the memo cache: exceeding it ends the search with LINCHECK_UNKNOWN. */
int lincheck__search(const struct lincheck__kop *kops, size_t n,
                     uint64_t max_steps, size_t max_cache_bytes,
                     const struct craft_allocator *a,
                     struct lincheck__search_out *out);

/* What explain needs to describe one key. */
struct lincheck__key_report {
    const char *key;
    const struct lincheck__kop *kops; /* sorted by invoke */
    size_t n;
    size_t n_dropped;                 /* failed ops and gets not ok */
    const char *const *values;        /* values[v] for interned v >= 1 */
    const bool *written;              /* written[v]: some put/cas writes v */
    const struct lincheck__search_out *search;
    size_t max_ops;                   /* ops to list at most */
};

/* A malloc'd (via a) NUL-terminated report, or NULL when out of memory. */
char *lincheck__explain(const struct lincheck__key_report *kr,
                        const struct craft_allocator *a);

#endif
