/* The leaves' memory: 4 KiB pages aligned on page boundaries, carved from
 * chunks of KV__CHUNK_PAGES pages.
 *
 * A leaf malloc'd on its own straddles two pages (malloc's header comes
 * first), so the parent's write to one leaf while a forked snapshot writer
 * lives copies two pages, and a page shared by two leaves cannot be given
 * back by the writer once it has written one of them. An aligned leaf is
 * exactly one page: one copy per written leaf, and the writer can drop
 * each leaf's page as soon as it has written it (kv_snapshot_write_child).
 *
 * Chunks come from craft_malloc (so tests still make them fail and count
 * them), one page more than they hold, aligned inside. They are kept in an
 * array sorted by address, each with a bitmap of its free pages; `hint` is
 * the lowest chunk that may have one (all chunks before it are full).
 * A chunk whose pages are all free goes back to malloc unless it is the
 * only empty one (so that a pool trimmed and filled again does not
 * malloc and free a chunk each time). Hand-written: no Debian library
 * hands out aligned pages with a per-page free inside an allocator that
 * tests can replace. */
#include "kv/kv_internal.h"

#include <assert.h>
#include <string.h>
#include <sys/mman.h>

#include "common/alloc.h"

#define ALL_FREE (~(uint64_t)0 >> (64 - KV__CHUNK_PAGES))
#define CHUNK_BYTES ((size_t)KV__CHUNK_PAGES * KV__PAGE)

_Static_assert(KV__CHUNK_PAGES >= 1 && KV__CHUNK_PAGES <= 64,
               "a chunk's bitmap is one u64");

static int chunk_new(struct kv *kv)
{
    struct kv__pages *pg = &kv->pages;
    if (pg->n == pg->cap) {
        size_t cap = pg->cap ? pg->cap * 2 : 8;
        struct kv__chunk *c = craft_realloc(pg->chunks, cap * sizeof *c);
        if (c == NULL)
            return CRAFT_ENOMEM;
        pg->chunks = c;
        pg->cap = cap;
    }
    void *raw = craft_malloc(CHUNK_BYTES + KV__PAGE - 1);
    if (raw == NULL)
        return CRAFT_ENOMEM;
    uintptr_t base = ((uintptr_t)raw + KV__PAGE - 1) & ~(uintptr_t)(KV__PAGE - 1);
    size_t i = pg->n;
    while (i > 0 && pg->chunks[i - 1].base > base)
        i--;
    memmove(&pg->chunks[i + 1], &pg->chunks[i], (pg->n - i) * sizeof pg->chunks[0]);
    pg->chunks[i] = (struct kv__chunk){.base = base, .raw = raw, .free = ALL_FREE};
    pg->n++;
    pg->n_empty++;
    pg->hint = i; /* every chunk before it was full: hint was n */
    return 0;
}

void *kv__page_alloc(struct kv *kv)
{
    struct kv__pages *pg = &kv->pages;
    while (pg->hint < pg->n && pg->chunks[pg->hint].free == 0)
        pg->hint++;
    if (pg->hint == pg->n && chunk_new(kv) != 0)
        return NULL;
    struct kv__chunk *c = &pg->chunks[pg->hint];
    if (c->free == ALL_FREE)
        pg->n_empty--;
    unsigned bit = (unsigned)__builtin_ctzll(c->free);
    c->free &= c->free - 1;
    c->dirty &= ~((uint64_t)1 << bit);
    pg->used++;
    return (void *)(c->base + (uintptr_t)bit * KV__PAGE);
}

/* The chunk holding page p: binary search by address. */
static size_t chunk_of(const struct kv__pages *pg, uintptr_t p)
{
    size_t lo = 0, hi = pg->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (pg->chunks[mid].base <= p)
            lo = mid;
        else
            hi = mid;
    }
    assert(lo < pg->n && p >= pg->chunks[lo].base &&
           p < pg->chunks[lo].base + CHUNK_BYTES);
    return lo;
}

void kv__page_free(struct kv *kv, void *page)
{
    if (page == NULL)
        return;
    struct kv__pages *pg = &kv->pages;
    uintptr_t p = (uintptr_t)page;
    assert((p & (KV__PAGE - 1)) == 0);
    size_t i = chunk_of(pg, p);
    struct kv__chunk *c = &pg->chunks[i];
    uint64_t bit = (uint64_t)1 << ((p - c->base) / KV__PAGE);
    assert(!(c->free & bit));
    c->free |= bit;
    c->dirty |= bit;
    pg->used--;
    if (c->free == ALL_FREE && pg->n_empty > 0) { /* one empty chunk is kept */
        craft_free(c->raw);
        memmove(c, c + 1, (pg->n - i - 1) * sizeof *c);
        pg->n--;
        if (i < pg->hint)
            pg->hint--;
        return;
    }
    if (c->free == ALL_FREE)
        pg->n_empty++;
    if (i < pg->hint)
        pg->hint = i;
}

void kv__pages_free(struct kv *kv)
{
    struct kv__pages *pg = &kv->pages;
    for (size_t i = 0; i < pg->n; i++)
        craft_free(pg->chunks[i].raw);
    craft_free(pg->chunks);
    memset(pg, 0, sizeof *pg);
}

/* Drop [*start, *end) from this process's memory (its pages read as zeros
 * afterwards), and start a new run. */
static void drop_run(uintptr_t *start, uintptr_t *end)
{
    if (*end > *start)
        (void)madvise((void *)*start, *end - *start, MADV_DONTNEED);
    *start = *end = 0;
}

void kv__pages_drop(struct kv__drop *d, const void *page)
{
    uintptr_t p = (uintptr_t)page;
    if (p != d->end)
        drop_run(&d->start, &d->end);
    if (d->end == 0)
        d->start = p;
    d->end = p + KV__PAGE;
}

void kv__pages_drop_end(struct kv__drop *d)
{
    drop_run(&d->start, &d->end);
}

/* Gather the pages of c in mask into d. */
static void drop_pages(struct kv__drop *d, const struct kv__chunk *c, uint64_t mask)
{
    for (; mask; mask &= mask - 1)
        kv__pages_drop(d, (const void *)(c->base +
                                         (uintptr_t)__builtin_ctzll(mask) * KV__PAGE));
}

void kv__pages_release(struct kv *kv)
{
    struct kv__pages *pg = &kv->pages;
    struct kv__drop d = {0, 0};
    for (size_t i = 0; i < pg->n; i++) {
        struct kv__chunk *c = &pg->chunks[i];
        drop_pages(&d, c, c->free & c->dirty);
        c->dirty = 0;
    }
    kv__pages_drop_end(&d);
}

/* Drop the inside pages of [p, p + len). */
static void drop_inside(const void *p, size_t len)
{
    uintptr_t a = ((uintptr_t)p + KV__PAGE - 1) & ~(uintptr_t)(KV__PAGE - 1);
    uintptr_t b = ((uintptr_t)p + len) & ~(uintptr_t)(KV__PAGE - 1);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void kv__pages_drop_unread(struct kv *kv)
{
    struct kv__pages *pg = &kv->pages;
    struct kv__drop d = {0, 0};
    for (size_t i = 0; i < pg->n; i++) { /* pages no leaf holds */
        const struct kv__chunk *c = &pg->chunks[i];
        drop_pages(&d, c, c->free & c->dirty);
    }
    for (const struct kv__leaf *l = kv->free_leaves, *next; l; l = next) {
        next = l->next; /* read before its page goes */
        kv__pages_drop(&d, l);
    }
    kv__pages_drop_end(&d);
    drop_inside(kv->hs, kv->hcap * sizeof kv->hs[0]); /* the point index */
    if (kv->hs_old != NULL) /* (a resize's old table) */
        drop_inside(kv->hs_old, kv->hcap_old * sizeof kv->hs_old[0]);
    /* The pointers stay: what they point to is still allocated, so a leak
     * checker in the child (valgrind) sees it reachable, not lost. */
}
