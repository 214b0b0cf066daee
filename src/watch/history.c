/* The watch history: a ring of copied change events bounded by count and
 * bytes, evicted a whole entry at a time, read through cursors.
 *
 * Every event held has a sequence number: the one at the ring's head has
 * first_seq, the next first_seq + 1, and so on. A cursor is a sequence
 * number; it is overtaken when the head has moved past it. A reset skips
 * one number, so that even a cursor that had read everything is overtaken:
 * it missed the changes the reset stands for. The number the last reset
 * skipped tells the cursors it overtook (those at or below it) from those
 * that eviction overtook since (above it). */
#include "watch/watch.h"

#include <string.h>

#include "common/alloc.h"

/* One event; its key and value are bytes [off, off + klen + vlen) of the
 * byte ring. */
struct slot {
    uint64_t index;
    uint64_t create_index;
    uint64_t mod_index;
    uint64_t version;
    uint64_t lease;
    size_t off;
    uint32_t klen;
    uint32_t vlen;
    uint8_t type;
};

/* The events' bytes are packed in one byte ring, in the slots' order: an
 * event's bytes are contiguous, at the tail if they fit before the end,
 * else from the start if they fit before the head's (the end's spare bytes
 * are skipped); else the ring doubles, its bytes laid out again from 0.
 * Eviction frees nothing: the head slot's offset is where the held bytes
 * begin. No allocation per event (a malloc and a free for each applied
 * key, a third of a log's replay at start), and no per-event malloc
 * header. */
struct watch_history {
    struct slot *ring;  /* cap slots; count of them from head on are held */
    size_t cap;
    size_t head;
    size_t count;
    uint8_t *bytes;     /* bcap bytes; the next event's go at btail */
    size_t bcap;
    size_t btail;
    size_t data;        /* key and value bytes of the held events */
    size_t max_events;
    uint64_t max_bytes;
    uint64_t bytes_cost; /* WATCH_EVENT_COST of the held events */
    uint64_t first_seq; /* sequence number of ring[head] */
    uint64_t floor;     /* events with an index > floor are all held */
    uint64_t last;      /* newest index appended, or floor */
    uint64_t reset_seq; /* the number the last reset skipped; 0: none yet */
    uint64_t reset_floor; /* the floor that reset left */
};

#define MIN_CAP 16
#define MIN_BYTES 4096
/* The byte ring halves when what it holds is under a quarter of it (after
 * a burst of big values, say), down to this size. */
#define SHRINK_MIN (64 * 1024)

struct watch_history *watch_history_new(size_t max_events, uint64_t max_bytes,
                                        uint64_t floor)
{
    struct watch_history *h = craft_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->max_events = max_events;
    h->max_bytes = max_bytes;
    h->first_seq = 1;
    h->floor = floor;
    h->last = floor;
    return h;
}

static struct slot *at(const struct watch_history *h, size_t i)
{
    return &h->ring[(h->head + i) % h->cap];
}

static void pop_head(struct watch_history *h)
{
    struct slot *s = at(h, 0);
    h->bytes_cost -= WATCH_EVENT_COST(s->klen, s->vlen);
    h->data -= s->klen + (size_t)s->vlen;
    h->head = (h->head + 1) % h->cap;
    h->count--;
    h->first_seq++;
    if (h->count == 0)
        h->btail = 0; /* nothing held: the next event starts at 0 */
}

/* Drop the oldest entry whole; floor rises to its index. */
static void evict_entry(struct watch_history *h)
{
    uint64_t index = at(h, 0)->index;
    while (h->count > 0 && at(h, 0)->index == index)
        pop_head(h);
    if (index > h->floor)
        h->floor = index;
}

void watch_history_reset(struct watch_history *h, uint64_t floor)
{
    while (h->count > 0)
        pop_head(h);
    h->reset_seq = h->first_seq;
    h->first_seq++; /* the gap that overtakes every cursor */
    if (h->last > h->floor)
        h->floor = h->last; /* what was held is gone too */
    if (floor > h->floor)
        h->floor = floor;
    h->last = h->floor;
    h->reset_floor = h->floor;
}

void watch_history_free(struct watch_history *h)
{
    if (!h)
        return;
    while (h->count > 0)
        pop_head(h);
    craft_free(h->ring);
    craft_free(h->bytes);
    craft_free(h);
}

/* Room for one more slot: the ring doubles, up to max_events. */
static int grow(struct watch_history *h)
{
    if (h->count < h->cap)
        return 0;
    size_t cap = h->cap ? h->cap * 2 : MIN_CAP;
    if (cap > h->max_events)
        cap = h->max_events;
    struct slot *ring = craft_malloc(cap * sizeof *ring);
    if (!ring)
        return CRAFT_ENOMEM;
    for (size_t i = 0; i < h->count; i++)
        ring[i] = *at(h, i);
    craft_free(h->ring);
    h->ring = ring;
    h->cap = cap;
    h->head = 0;
    return 0;
}

/* A byte ring of cap bytes (>= the held bytes + 1) with the held events'
 * bytes laid out from 0: 0, or CRAFT_ENOMEM (nothing changed). */
static int relayout(struct watch_history *h, size_t cap)
{
    uint8_t *b = craft_malloc(cap);
    if (!b)
        return CRAFT_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < h->count; i++) {
        struct slot *s = at(h, i);
        size_t n = s->klen + (size_t)s->vlen;
        if (n)
            memcpy(b + off, h->bytes + s->off, n);
        s->off = off;
        off += n;
    }
    craft_free(h->bytes);
    h->bytes = b;
    h->bcap = cap;
    h->btail = off;
    return 0;
}

/* Where len more bytes go: their offset, the ring doubled (and its bytes
 * laid out again from 0) if they do not fit; SIZE_MAX if out of memory. */
static size_t place_bytes(struct watch_history *h, size_t len)
{
    size_t start = h->count ? at(h, 0)->off : h->btail;
    if (h->bytes == NULL) {
        /* none yet */
    } else if (h->btail >= start) {
        /* held bytes are [start, btail): room at the end, or at the start
         * (strictly before start: a tail that met the head would look
         * like an empty ring) */
        if (len <= h->bcap - h->btail)
            return h->btail;
        if (len < start)
            return 0;
    } else if (len < start - h->btail) {
        return h->btail; /* wrapped: room between the tail and the head */
    }
    size_t cap = h->bcap ? h->bcap : MIN_BYTES;
    while (cap < h->data + len + 1 || cap < 2 * h->bcap) {
        if (cap > SIZE_MAX / 2)
            return SIZE_MAX;
        cap *= 2;
    }
    return relayout(h, cap) ? SIZE_MAX : h->btail;
}

static bool over(const struct watch_history *h, uint64_t cost)
{
    return h->count + 1 > h->max_events || h->bytes_cost + cost > h->max_bytes;
}

/* The entry index cannot be held: forget what of it is there, and skip a
 * sequence number, as a reset does: a reader that had read everything (the
 * ring may have been empty) is overtaken too, since it missed this entry. */
static void drop_entry(struct watch_history *h, uint64_t index)
{
    while (h->count > 0)
        evict_entry(h); /* only entry index is left */
    h->first_seq++;
    h->floor = index;
    h->last = index;
}

int watch_history_append(struct watch_history *h, const struct watch_event *ev)
{
    if (ev->index < h->last)
        return CRAFT_EINVAL;
    if (ev->index <= h->floor)
        return 0; /* an entry already given up */
    uint64_t cost = WATCH_EVENT_COST(ev->klen, ev->vlen);
    while (h->count > 0 && over(h, cost) && at(h, 0)->index != ev->index)
        evict_entry(h);
    if (over(h, cost)) {
        drop_entry(h, ev->index);
        return 0;
    }
    size_t len = ev->klen + ev->vlen;
    size_t off = SIZE_MAX;
    if (h->bcap > SHRINK_MIN && (h->data + len) * 4 < h->bcap)
        (void)relayout(h, h->bcap / 2); /* failure: stays larger */
    if (ev->klen <= UINT32_MAX && ev->vlen <= UINT32_MAX && grow(h) == 0)
        off = place_bytes(h, len);
    if (off == SIZE_MAX) {
        watch_history_reset(h, ev->index);
        return CRAFT_ENOMEM;
    }
    if (ev->klen)
        memcpy(h->bytes + off, ev->key, ev->klen);
    if (ev->vlen)
        memcpy(h->bytes + off + ev->klen, ev->val, ev->vlen);
    h->btail = off + len;
    h->data += len;
    struct slot *s = &h->ring[(h->head + h->count) % h->cap];
    *s = (struct slot){.index = ev->index,
                       .create_index = ev->create_index,
                       .mod_index = ev->mod_index,
                       .version = ev->version,
                       .lease = ev->lease,
                       .off = off,
                       .klen = (uint32_t)ev->klen,
                       .vlen = (uint32_t)ev->vlen,
                       .type = ev->type};
    h->count++;
    h->bytes_cost += cost;
    h->last = ev->index;
    return 0;
}

uint64_t watch_history_floor(const struct watch_history *h) { return h->floor; }
uint64_t watch_history_last(const struct watch_history *h) { return h->last; }
size_t watch_history_count(const struct watch_history *h) { return h->count; }
uint64_t watch_history_bytes(const struct watch_history *h) { return h->bytes_cost; }

size_t watch_history_mem(const struct watch_history *h)
{
    return h->cap * sizeof *h->ring + h->bcap;
}

/* The position of the first held event with an index > after (indexes
 * never go down along the ring: binary search). */
static size_t first_after(const struct watch_history *h, uint64_t after)
{
    size_t lo = 0, hi = h->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(h, mid)->index <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int watch_history_seek(const struct watch_history *h, uint64_t after,
                       struct watch_cursor *c)
{
    if (after < h->floor)
        return CRAFT_ENOTFOUND;
    c->index = after;
    c->after = after;
    c->seq = h->first_seq + first_after(h, after);
    return 0;
}

static void fill(const struct watch_history *h, const struct slot *s, struct watch_event *ev)
{
    const uint8_t *b = h->bytes + s->off;
    *ev = (struct watch_event){.index = s->index,
                               .type = s->type,
                               .key = b,
                               .klen = s->klen,
                               .val = s->vlen ? b + s->klen : NULL,
                               .vlen = s->vlen,
                               .create_index = s->create_index,
                               .mod_index = s->mod_index,
                               .version = s->version,
                               .lease = s->lease};
}

int watch_history_next(const struct watch_history *h, struct watch_cursor *c,
                       struct watch_event *ev)
{
    if (c->seq < h->first_seq)
        return CRAFT_ENOTFOUND;
    uint64_t seq = c->seq;
    while (seq < h->first_seq + h->count) {
        const struct slot *s = at(h, (size_t)(seq - h->first_seq));
        seq++;
        if (s->index <= c->after)
            continue; /* sought beyond the last index: not wanted */
        fill(h, s, ev);
        c->seq = seq;
        c->index = s->index;
        return 1;
    }
    return 0;
}

int watch_history_reset_past(const struct watch_history *h, const struct watch_cursor *c,
                             uint64_t *floor)
{
    if (c->seq >= h->first_seq || h->reset_seq == 0 || c->seq > h->reset_seq)
        return 0; /* not overtaken, or by eviction since the last reset */
    *floor = h->reset_floor;
    return 1;
}

static bool matches(const struct watch_history *h, const struct slot *s, const void *key,
                    size_t klen, bool prefix)
{
    const uint8_t *k = h->bytes + s->off;
    if (prefix)
        return s->klen >= klen && (klen == 0 || memcmp(k, key, klen) == 0);
    return s->klen == klen && (klen == 0 || memcmp(k, key, klen) == 0);
}

int watch_history_changed(const struct watch_history *h, uint64_t after,
                          const void *key, size_t klen, bool prefix,
                          uint64_t *index)
{
    if (after < h->floor)
        return CRAFT_ENOTFOUND;
    for (size_t i = first_after(h, after); i < h->count; i++) {
        const struct slot *s = at(h, i);
        if (matches(h, s, key, klen, prefix)) {
            *index = s->index;
            return 1;
        }
    }
    return 0;
}
