/* Giving freed memory back to the system. glibc's malloc keeps the pages of
 * freed chunks: after a snapshot compacts the log (tens of MiB of entries
 * interleaved with the map's nodes), after a snapshot install frees the old
 * map, and after a burst of writes (request bodies, encode and transport
 * buffers), RSS stays where it was although the memory is free. On a store
 * of 10^6 keys loaded in batches, 16 MiB of 92 are such pages.
 *
 * malloc_trim(0) returns every whole free page of every arena (madvise). It
 * walks the free lists (1-2 ms on that store, far more at 10^7 keys; it
 * runs on a worker thread, below), so it
 * runs only after those events, once after the start (what reading the
 * snapshot and the log back left), and once when the applied index has not
 * moved for NODE__MEM_QUIET_MS after at least NODE__MEM_TRIM_BYTES of
 * entries applied since the last trim: the same idea as jemalloc's decay
 * of dirty pages, without a background thread. At that moment a snapshot
 * is taken instead when the log since the last one is large enough to be
 * worth it (snapshot.c, node__snapshot_quiet): it frees the log too, then
 * trims. A trickle of writes (one
 * a second, say) is not trimmed after each: it frees too little to matter
 * and would pay the walk every time. */
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

void node__memory_tick(struct node *n)
{
    /* A resize of the map's index goes on between writes (kv_hash.c), so
     * that after mass deletes its old table does not wait for them. */
    (void)kv_tidy(n->kv);
    uint64_t now = node__now(n);
    /* Reading the snapshot and the log back leaves free pages behind (a
     * restart of 10^6 keys: about 8 MiB resident, 30 MiB free in the
     * heap), whether or not the replay that follows is worth a trim. */
    if (!n->mem_started && !raft_apply_pending(n->raft)) {
        n->mem_started = true;
        node__memory_release(n, "the start");
        return;
    }
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

/* The trim, and the freeing of the map a snapshot install replaced (10^6
 * keys take 26-29 ms to free, make bench-kv; 10^7 ten times that), run on
 * a worker of their own (not the disk job queue: the log's next write must
 * not wait behind them). After a snapshot or an install above 10^7 keys, malloc_trim
 * walks hundreds of MiB of free chunks, holding an arena's lock (a free on
 * another thread waits for it, and it for the free): not a loop's work. Nothing
 * else refers to the map; the request keeps the loop alive until it is
 * done, so a node stopped meanwhile still finishes it before the loop
 * closes (the request holds nothing of the node). */
struct release {
    uv_work_t w;
    struct kv *kv; /* to free first, or NULL */
};

static void release_work(uv_work_t *w)
{
    struct release *r = w->data;
    kv_free(r->kv);
    malloc_trim(0);
}

static void release_after(uv_work_t *w, int status)
{
    (void)status; /* UV_ECANCELED cannot happen: nothing cancels it */
    craft_free(w->data);
}

static void release(struct node *n, struct kv *kv, const char *after)
{
    n->mem_trimmed = n->applied_bytes;
    CRAFT_DEBUG(&n->log, "memory: trimmed after %s (on a worker)", after);
    struct release *r = craft_calloc(1, sizeof *r);
    if (r != NULL) {
        r->kv = kv;
        r->w.data = r;
        if (uv_queue_work(n->loop, &r->w, release_work, release_after) == 0)
            return;
        craft_free(r);
    }
    kv_free(kv); /* here, then: slower, but done all the same */
    malloc_trim(0);
}

void node__memory_release(struct node *n, const char *after)
{
    kv_release_spare(n->kv);
    release(n, NULL, after);
}

void node__memory_free_map(struct node *n, struct kv *kv)
{
    release(n, kv, "a snapshot install");
}
