/* Watch: the history of key changes and the hub that tells subscribers.
 *
 * History (watch_history_*): a ring of copied change events (index, type,
 * key, value, create_index, mod_index, version, lease), bounded by a count
 * of events and by bytes. It is fed in log order, one entry (all events of
 * one log index) after another; eviction drops whole entries, oldest first.
 * floor is the highest index whose events are no longer (all) held: events
 * with an index > floor are all there, so a reader that has seen everything
 * up to N can go on iff N >= floor. Readers hold a cursor (a position, O(1)
 * memory) and pull events after it in order; a cursor the ring has overtaken
 * (events it had not read were dropped, or the history was reset) is told
 * so and cannot go on.
 *
 * Hub (watch_hub_*): subscriptions by exact key or by prefix (the empty
 * prefix matches every key). The feeder reports each changed key
 * (watch_hub_changed) while the entry's events go into the history, then
 * ends the entry (watch_hub_flush): every subscription that matched one of
 * its keys is called once for that entry, after all its events are in the
 * history. Exact keys and distinct prefixes sit in a keyed hash; a key is
 * matched against each distinct prefix length present, so a change costs
 * O(distinct prefix lengths x key length), not O(subscriptions).
 *
 * Pure: no I/O, no clock, no threads; one thread owns a history or a hub.
 * All memory goes through common/alloc.h. Errors are negative codes from
 * common/error.h. Keys and values are binary (NUL allowed). */
#ifndef CRAFT_WATCH_H
#define CRAFT_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- events ------------------------------------------------------------- */

enum watch_event_type { WATCH_PUT = 1, WATCH_DELETE = 2 }; /* = KV_EV_PUT/DELETE */

/* One change. Handed in (append): pointers are the caller's, copied. Handed
 * out (next): pointers into the history, valid until the next append,
 * reset or free of that history. DELETE: val NULL, vlen 0, create_index
 * and version 0, mod_index = the delete's index, lease as it was. */
struct watch_event {
    uint64_t index;        /* log index of the entry that made the change */
    uint8_t type;          /* enum watch_event_type */
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
    uint64_t create_index;
    uint64_t mod_index;
    uint64_t version;
    uint64_t lease;        /* 0: none */
};

/* What one held event counts against the byte bound: its key and value
 * (packed in the history's byte ring) plus this fixed overhead (its
 * 16-byte ring slot and the record's header, type, lengths and
 * revisions, 7 to 61 bytes and about 10 for most). */
#define WATCH_EVENT_OVERHEAD 32u
#define WATCH_EVENT_COST(klen, vlen) \
    ((uint64_t)(klen) + (uint64_t)(vlen) + WATCH_EVENT_OVERHEAD)

/* ---- history ------------------------------------------------------------ */

struct watch_history;

/* A new empty history holding at most max_events events and max_bytes
 * bytes (WATCH_EVENT_COST each), with the given floor (the index up to
 * which nothing will ever be held: the applied index it starts from). The
 * ring grows on demand up to max_events. NULL if out of memory. max_events
 * 0 keeps nothing (every entry is dropped at once: floor follows it). */
struct watch_history *watch_history_new(size_t max_events, uint64_t max_bytes,
                                        uint64_t floor);
void watch_history_free(struct watch_history *h); /* NULL is fine */

/* Append one event (copied). Events come in log order: ev->index must be
 * >= the last appended index (equal: one more event of the same entry);
 * CRAFT_EINVAL otherwise (nothing changed). Older entries are evicted
 * (floor rises to the newest evicted index) until the new event fits; an
 * entry that does not fit even alone is dropped whole (floor = its index;
 * later events of that index are dropped too). CRAFT_ENOMEM: the history
 * dropped everything it held up to this entry (floor = ev->index, as
 * after a reset); it stays usable. 0 otherwise, also when the event was
 * dropped for the bounds. */
int watch_history_append(struct watch_history *h, const struct watch_event *ev);

/* Forget every event and set floor (e.g. the index of a snapshot just
 * installed: the changes up to it are not known one by one). The floor
 * becomes at least the last index appended (those events are gone too):
 * it never goes down. Every cursor is overtaken. */
void watch_history_reset(struct watch_history *h, uint64_t floor);

uint64_t watch_history_floor(const struct watch_history *h);
/* The index of the newest entry appended (held or dropped), or the floor
 * if none was appended since new/reset. */
uint64_t watch_history_last(const struct watch_history *h);
size_t watch_history_count(const struct watch_history *h);   /* events held */
uint64_t watch_history_bytes(const struct watch_history *h); /* their cost */
/* What the history has allocated: its slots and its byte ring (which holds
 * the events' keys and values; it grows by doubling and halves once a
 * quarter of it is in use). */
size_t watch_history_mem(const struct watch_history *h);

/* A reader's position. Plain data: copy it, keep it anywhere; it owns
 * nothing. index: the index of the last event read (or the seek's after);
 * the other fields are private. */
struct watch_cursor {
    uint64_t index;
    uint64_t after; /* events with an index <= after are skipped */
    uint64_t seq;   /* sequence number of the next event to read */
};

/* Place c to read the events with an index > after. CRAFT_ENOTFOUND if
 * after < floor (some of those events are gone: "compacted"); 0 otherwise.
 * after may be beyond the last index (the cursor waits for it). */
int watch_history_seek(const struct watch_history *h, uint64_t after,
                       struct watch_cursor *c);

/* The next event after c, in order: 1 and *ev filled (c moves past it),
 * 0 if there is none yet (c unchanged), or CRAFT_ENOTFOUND if the ring has
 * overtaken c (events it had not read are gone: the reader is too slow, or
 * the history was reset); c is unchanged and useless then. */
int watch_history_next(const struct watch_history *h, struct watch_cursor *c,
                       struct watch_event *ev);

/* Why the ring overtook c: 1 if the last reset did (c had not read past
 * it; eviction may have overtaken it before), with *floor = the floor that
 * reset left (e.g. the index of the snapshot installed: a reader goes on
 * from the state at that index or later); 0 if eviction did since, or c
 * is not overtaken. */
int watch_history_reset_past(const struct watch_history *h, const struct watch_cursor *c,
                             uint64_t *floor);

/* Whether an event with an index > after touches key (exact: prefix false)
 * or a key under the prefix key (prefix true). 1 and *index = the first
 * such event's index; 0 if none is held; CRAFT_ENOTFOUND if after < floor
 * (the history cannot tell: the caller must assume a change). */
int watch_history_changed(const struct watch_history *h, uint64_t after,
                          const void *key, size_t klen, bool prefix,
                          uint64_t *index);

/* ---- hub ---------------------------------------------------------------- */

struct watch_hub;
struct watch_sub;

/* Called once per entry that changed a key sub matches, after the entry's
 * events are in the history (index: the entry's). The callback may
 * unsubscribe any subscription (itself included) and subscribe new ones
 * (which are not called for this entry); it must not call watch_hub_flush
 * or watch_hub_free. */
typedef void (*watch_fn)(void *ud, struct watch_sub *sub, uint64_t index);

/* A new hub; seed keys its hash (0 is fine: the caller should pass a
 * random one, so that clients cannot choose colliding keys). NULL if out
 * of memory. */
struct watch_hub *watch_hub_new(uint64_t seed);
/* Frees every subscription still there (their callbacks are not called). */
void watch_hub_free(struct watch_hub *hub); /* NULL is fine */

/* Subscribe to key (prefix false) or to every key starting with key
 * (prefix true; klen 0: every key). key is copied. The handle is the
 * hub's: it stays valid until watch_hub_unsubscribe or watch_hub_free.
 * NULL if out of memory (nothing changed). */
struct watch_sub *watch_hub_subscribe(struct watch_hub *hub, const void *key,
                                      size_t klen, bool prefix, watch_fn fn,
                                      void *ud);
/* Remove and free sub (NULL is fine). Safe inside any callback. */
void watch_hub_unsubscribe(struct watch_hub *hub, struct watch_sub *sub);

/* key was changed by the entry being fed: mark every matching subscription
 * (each at most once per entry). Allocates nothing. */
void watch_hub_changed(struct watch_hub *hub, const void *key, size_t klen);
/* The entry index is complete: call every marked subscription once, in
 * the order they were marked. Returns how many were called. */
size_t watch_hub_flush(struct watch_hub *hub, uint64_t index);
/* Call every subscription once (after a history reset: everyone must look
 * again). Marks are dropped. Returns how many were called. */
size_t watch_hub_notify_all(struct watch_hub *hub, uint64_t index);

size_t watch_hub_count(const struct watch_hub *hub); /* subscriptions */
/* Distinct exact keys and distinct prefixes subscribed to. */
size_t watch_hub_groups(const struct watch_hub *hub);

/* The subscription's own data: the ud it was made with, and its key. */
void *watch_sub_ud(const struct watch_sub *sub);
const uint8_t *watch_sub_key(const struct watch_sub *sub, size_t *klen,
                             bool *prefix);

/* ---- the history and the map (watch_kv.c) ---------------------------------- */

struct kv_event;

/* Feed one change told by src/kv's observer (kv_set_observer) to the
 * history and the hub: what the daemon (src/node/watch.c) and the
 * simulator (tests/sim/watch.c) both do at every event. The hub is told
 * even when the history refuses the event (its error is returned): a
 * watcher woken then finds its cursor overtaken. */
int watch_feed_kv_event(struct watch_history *h, struct watch_hub *hub,
                        uint64_t index, const struct kv_event *ev);

#endif
