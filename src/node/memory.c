/* Giving freed memory back to the system. glibc's malloc keeps the pages of
 * freed chunks: after a snapshot compacts the log (tens of MiB of entries
 * interleaved with the map's nodes), after a snapshot install frees the old
 * map, and after a burst of writes (request bodies, encode and transport
 * buffers), RSS stays where it was although the memory is free. On a store
 * of 10^6 keys loaded in batches, 16 MiB of 92 are such pages.
 *
 * malloc_trim(0) returns every whole free page of every arena (madvise). It
 * walks the free lists (1-2 ms on that store, logged at debug level), so it
 * runs only after those events, and once when the applied index has not
 * moved for NODE__MEM_QUIET_MS after at least NODE__MEM_TRIM_BYTES of
 * entries applied since the last trim: the same idea as jemalloc's decay
 * of dirty pages, without a background thread. At that moment a snapshot
 * is taken instead when the log since the last one is large enough to be
 * worth it (snapshot.c, node__snapshot_quiet): it frees the log too, then
 * trims. A trickle of writes (one
 * a second, say) is not trimmed after each: it frees too little to matter
 * and would pay the walk every time.
 *
 * The old map a snapshot install replaces is freed, and the pages trimmed,
 * on a worker thread (node__memory_free_map): 10^6 keys take 26-29 ms to
 * free (make bench-kv), 10^7 ten times that, all of it a loop iteration
 * that answers nothing were it done there. */
#include <malloc.h>

#include <uv.h>

#include "common/alloc.h"
#include "node/internal.h"

#define NODE__MEM_QUIET_MS 1000
#define NODE__MEM_TRIM_BYTES (1u << 20)

/* Entry bytes applied since the last trim (applied_bytes restarts at each
 * snapshot, and the trim after it restarts the count too). */
static uint64_t applied_since_trim(const struct node *n)
{
    return n->applied_bytes >= n->mem_trimmed ? n->applied_bytes - n->mem_trimmed
                                              : n->applied_bytes;
}

void node__memory_release(struct node *n, const char *after)
{
    uint64_t t0 = uv_hrtime();
    kv_release_spare(n->kv);
    int released = malloc_trim(0);
    n->mem_trimmed = n->applied_bytes;
    CRAFT_DEBUG(&n->log, "memory: trimmed after %s in %.2f ms (%s)", after,
                (double)(uv_hrtime() - t0) / 1e6,
                released ? "pages returned" : "nothing to return");
}

void node__memory_tick(struct node *n)
{
    uint64_t now = node__now(n);
    if (n->applied != n->mem_seen) {
        n->mem_seen = n->applied;
        n->mem_quiet_since = now;
        return;
    }
    if (now - n->mem_quiet_since < NODE__MEM_QUIET_MS)
        return;
    if (node__snapshot_quiet(n))
        return; /* it trims once it has freed the log */
    if (applied_since_trim(n) >= NODE__MEM_TRIM_BYTES)
        node__memory_release(n, "writes paused");
}

/* The old map goes to a worker of its own (not the disk job queue: the
 * log's next write must not wait behind it). Nothing else refers to it; the
 * request keeps the loop alive until it is done, so a node stopped meanwhile
 * still frees it before the loop closes. */
struct map_free {
    uv_work_t w;
    struct kv *kv;
};

static void map_free_work(uv_work_t *w)
{
    struct map_free *f = w->data;
    kv_free(f->kv);
    malloc_trim(0);
}

static void map_free_after(uv_work_t *w, int status)
{
    (void)status; /* UV_ECANCELED cannot happen: nothing cancels it */
    craft_free(w->data);
}

void node__memory_free_map(struct node *n, struct kv *kv)
{
    n->mem_trimmed = n->applied_bytes;
    struct map_free *f = craft_calloc(1, sizeof *f);
    if (f != NULL) {
        f->kv = kv;
        f->w.data = f;
        if (uv_queue_work(n->loop, &f->w, map_free_work, map_free_after) == 0)
            return;
        craft_free(f);
    }
    kv_free(kv); /* here, then: slower, but freed all the same */
    node__memory_release(n, "a snapshot install");
}
