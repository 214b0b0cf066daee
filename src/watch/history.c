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

#include <assert.h>
#include <string.h>

#include "common/alloc.h"
#include "common/varint.h"

/* One event: its index (searched for) and where its record starts in the
 * byte ring. The record is
 *     u8 type | uvar klen | uvar vlen | uvar create_index |
 *     uvar index ^ mod_index | uvar version | uvar lease | key | value
 * about 10 bytes before the key for a key written since the last million
 * entries (mod_index is the event's index, so its field is 0). */
struct slot {
    uint64_t index;
    size_t off;
};

#define HDR_MAX (1 + 6 * 10)

/* The events' records are packed in one byte ring, in the slots' order: a
 * record is contiguous, at the tail if it fits before the end, else from
 * the start if it fits before the head's (the end's spare bytes are
 * skipped); else the ring doubles, its records laid out again from 0.
 * Eviction frees nothing: the head slot's offset is where the held bytes
 * begin. No allocation per event (a malloc and a free for each applied
 * key, a third of a log's replay at start), no per-event malloc header,
 * and 16 bytes of slot (a slot holding every field took 64). */
struct watch_history {
    struct slot *ring;  /* cap slots; count of them from head on are held */
    size_t cap;
    size_t head;
    size_t count;
    uint8_t *bytes;     /* bcap bytes; the next event's go at btail */
    size_t bcap;
    size_t btail;
    size_t data;        /* record bytes of the held events */
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

static size_t put_header(uint8_t *p, const struct watch_event *ev)
{
    size_t n = 0;
    p[n++] = ev->type;
    n += craft_put_uvar(p + n, ev->klen);
    n += craft_put_uvar(p + n, ev->vlen);
    n += craft_put_uvar(p + n, ev->create_index);
    n += craft_put_uvar(p + n, ev->index ^ ev->mod_index);
    n += craft_put_uvar(p + n, ev->version);
    n += craft_put_uvar(p + n, ev->lease);
    return n;
}

static size_t uvar(const uint8_t *p, uint64_t *v)
{
    size_t n = craft_get_uvar(p, 10, UINT64_MAX, v);
    assert(n > 0); /* written by put_header */
    return n;
}

/* The event a slot stands for, pointing into the ring; returns its
 * record's length. */
static size_t decode(const struct watch_history *h, const struct slot *s,
                     struct watch_event *ev)
{
    const uint8_t *p = h->bytes + s->off;
    uint64_t klen, vlen, mod;
    size_t n = 1;
    ev->index = s->index;
    ev->type = p[0];
    n += uvar(p + n, &klen);
    n += uvar(p + n, &vlen);
    n += uvar(p + n, &ev->create_index);
    n += uvar(p + n, &mod);
    n += uvar(p + n, &ev->version);
    n += uvar(p + n, &ev->lease);
    ev->mod_index = s->index ^ mod;
    ev->key = p + n;
    ev->klen = (size_t)klen;
    ev->val = vlen ? p + n + klen : NULL;
    ev->vlen = (size_t)vlen;
    return n + (size_t)(klen + vlen);
}

static void pop_head(struct watch_history *h)
{
    struct watch_event ev;
    size_t len = decode(h, at(h, 0), &ev);
    h->bytes_cost -= WATCH_EVENT_COST(ev.klen, ev.vlen);
    h->data -= len;
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
        struct watch_event ev;
        size_t n = decode(h, s, &ev);
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
    uint8_t hdr[HDR_MAX];
    size_t hlen = put_header(hdr, ev);
    size_t len = hlen + ev->klen + ev->vlen;
    size_t off = SIZE_MAX;
    if (h->bcap > SHRINK_MIN && (h->data + len) * 4 < h->bcap)
        (void)relayout(h, h->bcap / 2); /* failure: stays larger */
    if (ev->klen < SIZE_MAX / 4 && ev->vlen < SIZE_MAX / 4 && grow(h) == 0)
        off = place_bytes(h, len);
    if (off == SIZE_MAX) {
        watch_history_reset(h, ev->index);
        return CRAFT_ENOMEM;
    }
    memcpy(h->bytes + off, hdr, hlen);
    if (ev->klen)
        memcpy(h->bytes + off + hlen, ev->key, ev->klen);
    if (ev->vlen)
        memcpy(h->bytes + off + hlen + ev->klen, ev->val, ev->vlen);
    h->btail = off + len;
    h->data += len;
    struct slot *s = &h->ring[(h->head + h->count) % h->cap];
    *s = (struct slot){.index = ev->index, .off = off};
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
        (void)decode(h, s, ev);
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
    struct watch_event ev;
    (void)decode(h, s, &ev);
    if (prefix)
        return ev.klen >= klen && (klen == 0 || memcmp(ev.key, key, klen) == 0);
    return ev.klen == klen && (klen == 0 || memcmp(ev.key, key, klen) == 0);
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
