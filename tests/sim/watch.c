/* The watch workload: each simulated node keeps src/watch's history and hub,
 * fed by the observer of its src/kv map while it applies, exactly as
 * craftd's node does (src/node/watch.c): made when the node starts, with
 * the applied index of the state it restored as its floor; reset, and every
 * subscription called, when a snapshot replaces the map; gone with a crash.
 *
 * Watcher clients (1-3 on the seeds that have them) each watch a prefix or a
 * key through one node at a time, as GET /watch does (src/node/watchers.c):
 * a hub subscription wakes them, and they pull whole entries from a cursor
 * into that node's history, when they get to it (some are slow). Now and
 * then a watcher drops its stream and reconnects to another live node,
 * resuming from the last id it saw (every event with an index > id). An
 * answer "compacted" (id below the node's floor), or a stream ended by "too
 * slow" (its cursor was overtaken: the reader fell behind the history's
 * bounds, or a snapshot reset it), is what a real client must handle: it
 * lists the prefix afresh at the node's applied index and watches from
 * there. Half the watchers also take the index of a progress event as
 * their next `from`, as a client that keeps its own `from` may.
 *
 * Checked against an oracle of the committed changes, derived from the
 * txn model (txn.c's struct sim_model, which follows the applied entries
 * in index order): before each index the model reaches, the oracle diffs
 * the model's map before and after that entry.
 *   watch-events: the entries a watcher receives, concatenated across
 *     reconnections and restarts, are exactly the oracle's changes under its
 *     prefix after its start (or its last listing), in index order: no gap,
 *     no duplicate, no change no committed entry made, every event of an
 *     entry (each carrying the entry's index) and the same fields.
 *   watch-progress: a watcher that has read all its node holds has had
 *     every change under its prefix up to the node's applied index (what a
 *     progress event tells it), and "too slow" at index N means it had every
 *     change up to N.
 *   watch-hub: at each entry, the hub calls exactly the subscriptions that
 *     match a key the entry changed, once each.
 *   watch-view: at the end, a watcher's listing plus the events after it is
 *     the model's map under its prefix.
 * Watchers draw from their own random stream, so every other choice of a
 * seed is the same with or without them. */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv.h"
#include "watch/watch.h"

#define WATCHERS_MAX 3
#define VIEW_MAX 16       /* keys a watcher's view may hold */
#define KEY_CAP 8         /* as struct sim_mrec's key */
#define ENTRY_MAX 16      /* events of one entry the sim's commands make */
#define SEEDS_PCT 40      /* share of the seeds with watchers */

/* One change of the oracle, or of a watcher's view (type 0). */
struct wev {
    uint64_t index, create, mod, version;
    uint8_t type; /* enum watch_event_type */
    char key[KEY_CAP];
    char val[SIM_VAL_MAX];
};

struct wnode {
    struct sim *s;
    unsigned slot;
    struct watch_history *h; /* NULL while the node is down */
    struct watch_hub *hub;
};

struct watcher {
    unsigned id;
    const char *key;
    bool prefix;
    bool smart;        /* takes a progress event's index as its next from */
    unsigned read_pct; /* chance a step that it takes what is due */
    unsigned node;     /* connected to (a slot); 0: not connected */
    struct watch_sub *sub;
    struct watch_cursor cur;
    bool started;
    bool woken;        /* called by the hub since its last read */
    unsigned calls;    /* hub calls during the flush under way */
    uint64_t last;     /* resume id: every change under key up to it seen */
    size_t opos;       /* the oracle's first change with an index > last */
    struct wev view[VIEW_MAX]; /* listing + events, sorted by key */
    unsigned nview;
    uint64_t entries, events, relists, compacted, slow, reconnects;
};

struct sim_watch {
    struct sim_rng rng;
    size_t max_events;
    uint64_t max_bytes;
    uint32_t reconnect_ppm;
    struct wnode node[SIM_MAX_NODES + 1];
    struct watcher w[WATCHERS_MAX];
    unsigned n;
    /* the oracle: every change, in index order, sorted by key within one */
    struct wev *ev;
    size_t nev, cap;
    uint64_t index;                      /* model index it has followed */
    struct sim_mrec prev[SIM_MODEL_KEYS]; /* the model's map at index */
    unsigned nprev;
};

static const struct {
    const char *key;
    bool prefix;
} specs[] = {
    {"t/", true},     {"t/", true},    {"t/m/", true}, {"t/m/", true},
    {"t/c", true},    {"t/c", true},   {"t/c0", false}, {"t/m/b", false},
    {"t/m/a", true},  {"t/m/", false}, /* a prefix that is a whole key;
                                          a key that is never written */
};

static unsigned wpick(struct sim_watch *W, unsigned n)
{
    return (unsigned)sim_rng_below(&W->rng, n);
}

static bool matches(const struct watcher *w, const char *key)
{
    if (w->prefix)
        return strncmp(key, w->key, strlen(w->key)) == 0;
    return strcmp(key, w->key) == 0;
}

static void note(struct sim *s, const struct watcher *w, unsigned slot,
                 const char *what, uint64_t a, uint64_t b)
{
    char str[SIM_VAL_MAX - 1];
    snprintf(str, sizeof(str), "w%u n%u %s", w->id, slot, what);
    sim_ev(s, EV_NOTE, 0, slot, 0, a, b, 0, 0, str);
}

/* ---- setup ---- */

void sim_watch_init(struct sim *s)
{
    struct sim_rng g;
    sim_rng_seed(&g, sim_mix(s->seed, 0x3a7c4e));
    if (sim_rng_below(&g, 100) >= SEEDS_PCT)
        return;
    struct sim_watch *W = craft_calloc(1, sizeof(*W));
    if (!W) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    W->rng = g;
    /* Small bounds (70 bytes hold no event at all) make readers fall
     * behind, resumes find their id compacted, entries be dropped whole. */
    static const size_t events[] = {1, 4, 16, 100000, 100000, 100000};
    static const uint64_t bytes[] = {70, 400, 400, 2000, 2000, 1u << 20,
                                     1u << 20, 1u << 20};
    W->max_events = events[wpick(W, 6)];
    W->max_bytes = bytes[wpick(W, 8)];
    W->reconnect_ppm =
        (uint32_t)(1000000 / (sim_rng_range(&W->rng, 1, 8) *
                              sim_election_steps(s)));
    W->n = 1 + wpick(W, WATCHERS_MAX);
    static const unsigned read_pct[] = {100, 60, 20, 3};
    for (unsigned i = 0; i < W->n; i++) {
        struct watcher *w = &W->w[i];
        unsigned k = wpick(W, sizeof(specs) / sizeof(specs[0]));
        w->id = i + 1;
        w->key = specs[k].key;
        w->prefix = specs[k].prefix;
        w->smart = wpick(W, 2);
        w->read_pct = read_pct[wpick(W, 4)];
    }
    for (unsigned id = 0; id <= SIM_MAX_NODES; id++)
        W->node[id] = (struct wnode){.s = s, .slot = id};
    s->watch = W;
    if (s->o.verbose)
        fprintf(s->out, "  watch: %u watchers, histories of %zu events and %"
                PRIu64 " bytes\n", W->n, W->max_events, W->max_bytes);
}

/* ---- the oracle ---- */

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct wev *)a)->key, ((const struct wev *)b)->key);
}

static struct wev *oracle_add(struct sim *s, struct sim_watch *W)
{
    if (W->nev == W->cap) {
        size_t cap = W->cap ? W->cap * 2 : 256;
        struct wev *ev = craft_realloc(W->ev, cap * sizeof(*ev));
        if (!ev) {
            sim_fail(s, "sim", "out of memory");
            return NULL;
        }
        W->ev = ev;
        W->cap = cap;
    }
    struct wev *e = &W->ev[W->nev++];
    memset(e, 0, sizeof(*e));
    return e;
}

static const struct sim_mrec *mrec_find(const struct sim_mrec *r, unsigned n,
                                        const char *key)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(r[i].key, key) == 0)
            return &r[i];
    return NULL;
}

/* The model has reached one index more: the changes of that entry are the
 * keys it wrote (mod_index == index) and the keys it no longer holds. */
static void oracle_follow(struct sim *s, struct sim_watch *W)
{
    const struct sim_model *m = &s->model;
    if (m->index == W->index)
        return;
    if (m->index != W->index + 1) {
        sim_fail(s, "sim", "the watch oracle is at %" PRIu64 ", the model at %"
                 PRIu64, W->index, m->index);
        return;
    }
    uint64_t index = m->index;
    size_t first = W->nev;
    for (unsigned i = 0; i < m->n && !s->failed; i++) {
        const struct sim_mrec *r = &m->rec[i];
        const struct sim_mrec *p = mrec_find(W->prev, W->nprev, r->key);
        if (p && r->mod != index)
            continue;
        struct wev *e = oracle_add(s, W);
        if (!e)
            return;
        *e = (struct wev){.index = index, .create = r->create, .mod = r->mod,
                          .version = r->version, .type = WATCH_PUT};
        memcpy(e->key, r->key, KEY_CAP);
        memcpy(e->val, r->val, SIM_VAL_MAX);
    }
    for (unsigned i = 0; i < W->nprev && !s->failed; i++) {
        const struct sim_mrec *p = &W->prev[i];
        if (mrec_find(m->rec, m->n, p->key))
            continue;
        struct wev *e = oracle_add(s, W);
        if (!e)
            return;
        *e = (struct wev){.index = index, .mod = index, .type = WATCH_DELETE};
        memcpy(e->key, p->key, KEY_CAP);
    }
    if (W->nev > first) /* (W->ev may still be NULL: qsort takes no NULL) */
        qsort(W->ev + first, W->nev - first, sizeof(*W->ev), by_key);
    memcpy(W->prev, m->rec, sizeof(W->prev));
    W->nprev = m->n;
    W->index = index;
}

/* The position of the oracle's first change with an index > after. */
static size_t oracle_after(const struct sim_watch *W, uint64_t after)
{
    size_t lo = 0, hi = W->nev;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (W->ev[mid].index <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The oracle's first change under w's key from position i; nev if none. */
static size_t oracle_next(const struct sim_watch *W, const struct watcher *w,
                          size_t i)
{
    while (i < W->nev && !matches(w, W->ev[i].key))
        i++;
    return i;
}

/* ---- a node's history and hub (as src/node/watch.c) ---- */

static void on_kv_event(void *ud, uint64_t index, const struct kv_event *ev)
{
    struct wnode *wn = ud;
    int rv = watch_feed_kv_event(wn->h, wn->hub, index, ev);
    if (rv)
        sim_fail(wn->s, "watch-history", "n%u: the event of entry %" PRIu64
                 " is refused by its history (%s)", wn->slot, index,
                 craft_errname(rv));
}

static void disconnect(struct sim_watch *W, struct watcher *w)
{
    if (w->node && w->sub)
        watch_hub_unsubscribe(W->node[w->node].hub, w->sub);
    w->sub = NULL;
    w->node = 0;
    w->woken = false;
}

static void node_free(struct sim_watch *W, struct wnode *wn)
{
    for (unsigned i = 0; i < W->n; i++)
        if (W->w[i].node == wn->slot)
            disconnect(W, &W->w[i]);
    watch_hub_free(wn->hub);
    watch_history_free(wn->h);
    wn->hub = NULL;
    wn->h = NULL;
}

void sim_watch_start(struct sim *s, struct sim_node *n)
{
    struct sim_watch *W = s->watch;
    if (!W)
        return;
    struct wnode *wn = &W->node[n->id];
    node_free(W, wn);
    /* before the first entry applies: the floor is the applied index of
     * the state restored (the snapshot's; 0 for an empty node) */
    wn->h = watch_history_new(W->max_events, W->max_bytes, n->kv.applied);
    wn->hub = watch_hub_new(sim_mix(s->seed, n->id));
    if (!wn->h || !wn->hub)
        sim_fail(s, "sim", "out of memory");
}

void sim_watch_stop(struct sim *s, struct sim_node *n)
{
    if (s->watch)
        node_free(s->watch, &s->watch->node[n->id]);
}

void sim_watch_apply(struct sim *s, struct sim_node *n,
                     const struct raft_entry *e)
{
    struct sim_watch *W = s->watch;
    if (!W)
        return;
    oracle_follow(s, W);
    struct wnode *wn = &W->node[n->id];
    if (!wn->h || e->type != RAFT_ENTRY_NORMAL || e->len < 2 ||
        ((const uint8_t *)e->data)[0] != SIM_CMD_KV)
        return;
    struct kv *map = sim_kv_map(&n->kv);
    if (map) /* a map restored from a snapshot has no observer */
        kv_set_observer(map, on_kv_event, wn);
}

static bool oracle_changes(const struct sim_watch *W, const struct watcher *w,
                           uint64_t index)
{
    for (size_t i = oracle_after(W, index - 1);
         i < W->nev && W->ev[i].index == index; i++)
        if (matches(w, W->ev[i].key))
            return true;
    return false;
}

void sim_watch_applied(struct sim *s, struct sim_node *n, uint64_t index)
{
    struct sim_watch *W = s->watch;
    if (!W || !W->node[n->id].hub)
        return;
    for (unsigned i = 0; i < W->n; i++)
        W->w[i].calls = 0;
    watch_hub_flush(W->node[n->id].hub, index);
    for (unsigned i = 0; i < W->n && !s->failed; i++) {
        const struct watcher *w = &W->w[i];
        if (w->node != n->id)
            continue;
        unsigned want = oracle_changes(W, w, index);
        if (w->calls != want)
            sim_fail(s, "watch-hub", "n%" PRIu64 " applied entry %" PRIu64
                     ", which %s %s%s: its hub called watcher w%u %u times",
                     n->id, index, want ? "changes" : "changes nothing under",
                     w->key, w->prefix ? "*" : "", w->id, w->calls);
    }
}

void sim_watch_replaced(struct sim *s, struct sim_node *n)
{
    struct sim_watch *W = s->watch;
    if (!W || !W->node[n->id].h)
        return;
    struct wnode *wn = &W->node[n->id];
    watch_history_reset(wn->h, n->kv.applied);
    watch_hub_notify_all(wn->hub, n->kv.applied);
}

/* ---- a watcher's view ---- */

static struct wev *view_find(struct watcher *w, const char *key)
{
    for (unsigned i = 0; i < w->nview; i++)
        if (strcmp(w->view[i].key, key) == 0)
            return &w->view[i];
    return NULL;
}

static void view_apply(struct sim *s, struct watcher *w, const struct wev *e)
{
    struct wev *v = view_find(w, e->key);
    if (e->type == WATCH_DELETE) {
        if (v)
            *v = w->view[--w->nview];
    } else if (v || w->nview < VIEW_MAX) {
        if (!v)
            v = &w->view[w->nview++];
        *v = *e;
    } else {
        sim_fail(s, "sim", "watcher w%u: more than %u keys", w->id, VIEW_MAX);
        return;
    }
    qsort(w->view, w->nview, sizeof(w->view[0]), by_key);
}

struct list_ctx {
    struct sim *s;
    struct watcher *w;
};

/* a key of the listing; klen < KEY_CAP and vlen < SIM_VAL_MAX hold for
 * every key and value the sim writes */
static int list_one(void *ud, const struct kv_meta *m)
{
    struct list_ctx *c = ud;
    struct watcher *w = c->w;
    struct wev e = {.create = m->create_index, .mod = m->mod_index,
                    .version = m->version, .type = WATCH_PUT};
    if (m->klen >= KEY_CAP || m->vlen >= SIM_VAL_MAX) {
        sim_fail(c->s, "sim", "watcher w%u lists a key or value too long",
                 w->id);
        return 1;
    }
    memcpy(e.key, m->key, m->klen);
    memcpy(e.val, m->val, m->vlen);
    if (matches(w, e.key)) /* an exact key's listing is a get */
        view_apply(c->s, w, &e);
    return 0;
}

/* Start afresh at n: list the keys under w's key at n's applied index A,
 * and watch from A (GET /keys, then GET /watch?from=A). */
static void relist(struct sim *s, struct sim_watch *W, struct watcher *w,
                   struct sim_node *n)
{
    struct wnode *wn = &W->node[n->id];
    uint64_t at = n->kv.applied;
    w->nview = 0;
    if (n->kv.map) {
        struct list_ctx c = {s, w};
        struct kv_range r;
        kv_range_prefix(&r, w->key, strlen(w->key));
        size_t got;
        bool more;
        kv_list(n->kv.map, &r, NULL, 0, VIEW_MAX, list_one, &c, &got, &more);
    }
    w->last = at;
    w->opos = oracle_after(W, at);
    w->started = true;
    w->relists++;
    note(s, w, wn->slot, "lists", at, w->nview);
    if (watch_history_seek(wn->h, at, &w->cur) != 0)
        sim_fail(s, "watch-history", "n%u has applied %" PRIu64 " but its"
                 " history refuses it as a from (floor %" PRIu64 ")",
                 wn->slot, at, watch_history_floor(wn->h));
}

static void on_call(void *ud, struct watch_sub *sub, uint64_t index)
{
    (void)sub;
    (void)index;
    struct watcher *w = ud;
    w->calls++;
    w->woken = true;
}

static void watch_connect(struct sim *s, struct sim_watch *W, struct watcher *w,
                    struct sim_node *n)
{
    struct wnode *wn = &W->node[n->id];
    if (!w->started) {
        relist(s, W, w, n); /* no from: the node's applied index */
    } else if (watch_history_seek(wn->h, w->last, &w->cur) != 0) {
        /* 410 compacted: the changes after last are no longer all held */
        w->compacted++;
        note(s, w, wn->slot, "compacted", w->last, watch_history_floor(wn->h));
        relist(s, W, w, n);
    } else {
        note(s, w, wn->slot, "resumes", w->last, n->kv.applied);
    }
    if (s->failed)
        return;
    w->sub = watch_hub_subscribe(wn->hub, w->key, strlen(w->key), w->prefix,
                                 on_call, w);
    if (!w->sub) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    w->node = wn->slot;
    w->woken = true; /* the first piece goes at once */
}

/* ---- what a watcher receives ---- */

static void fmt_ev(const struct wev *e, char *buf, size_t len)
{
    if (e->type == WATCH_DELETE)
        snprintf(buf, len, "delete %s@%" PRIu64, e->key, e->index);
    else
        snprintf(buf, len, "put %s=%s@%" PRIu64 " (c%" PRIu64 " m%" PRIu64
                 " v%" PRIu64 ")", e->key, e->val, e->index, e->create, e->mod,
                 e->version);
}

static bool same_ev(const struct wev *a, const struct wev *b)
{
    return a->index == b->index && a->type == b->type &&
           strcmp(a->key, b->key) == 0 && a->mod == b->mod &&
           (a->type == WATCH_DELETE ||
            (strcmp(a->val, b->val) == 0 && a->create == b->create &&
             a->version == b->version));
}

/* Every change under w's key in (w->last, upto] was received: none is due
 * at or below upto. */
static void check_none_due(struct sim *s, struct sim_watch *W,
                           struct watcher *w, uint64_t upto, const char *why)
{
    size_t j = oracle_next(W, w, w->opos);
    if (j < W->nev && W->ev[j].index <= upto) {
        char b[96];
        fmt_ev(&W->ev[j], b, sizeof(b));
        sim_fail(s, "watch-progress", "watcher w%u (%s%s) at n%u, %s %" PRIu64
                 ", never got the change %s (its last id is %" PRIu64 ")",
                 w->id, w->key, w->prefix ? "*" : "", w->node, why, upto, b,
                 w->last);
    }
}

/* A resume id moves to upto (too slow at upto, or a progress event). */
static void advance(struct sim *s, struct sim_watch *W, struct watcher *w,
                    uint64_t upto, const char *why)
{
    if (upto <= w->last)
        return;
    check_none_due(s, W, w, upto, why);
    w->last = upto;
    w->opos = oracle_after(W, upto);
}

/* The events under w's key of entry index, as received (n of them): the
 * oracle's next changes under w's key must be these, all of that index. */
static void receive(struct sim *s, struct sim_watch *W, struct watcher *w,
                    struct wev *got, unsigned n, uint64_t index)
{
    qsort(got, n, sizeof(*got), by_key);
    size_t j = oracle_next(W, w, w->opos);
    char a[96] = "nothing", b[96] = "nothing";
    fmt_ev(&got[0], a, sizeof(a));
    if (j == W->nev || W->ev[j].index != index) {
        if (j < W->nev)
            fmt_ev(&W->ev[j], b, sizeof(b));
        sim_fail(s, "watch-events", "watcher w%u (%s%s, last id %" PRIu64
                 ") gets %s from n%u, but the next committed change under it"
                 " is %s", w->id, w->key, w->prefix ? "*" : "", w->last, a,
                 w->node, b);
        return;
    }
    for (unsigned i = 0; i <= n; i++, j = oracle_next(W, w, j + 1)) {
        bool more_want = j < W->nev && W->ev[j].index == index;
        if (i == n && !more_want)
            break;
        if (i < n && more_want && same_ev(&got[i], &W->ev[j]))
            continue;
        strcpy(a, "nothing more");
        strcpy(b, "nothing more");
        if (i < n)
            fmt_ev(&got[i], a, sizeof(a));
        if (more_want)
            fmt_ev(&W->ev[j], b, sizeof(b));
        sim_fail(s, "watch-events", "watcher w%u (%s%s) gets entry %" PRIu64
                 " from n%u with %u events under it: %s where the committed"
                 " entry has %s", w->id, w->key, w->prefix ? "*" : "", index,
                 w->node, n, a, b);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        view_apply(s, w, &got[i]);
    w->last = index;
    w->opos = oracle_after(W, index);
    w->entries++;
    w->events += n;
}

static void to_wev(const struct watch_event *e, struct wev *o)
{
    memset(o, 0, sizeof(*o));
    o->index = e->index;
    o->type = e->type;
    o->create = e->create_index;
    o->mod = e->mod_index;
    o->version = e->version;
    memcpy(o->key, e->key, e->klen < KEY_CAP ? e->klen : KEY_CAP - 1);
    if (e->val)
        memcpy(o->val, e->val, e->vlen < SIM_VAL_MAX ? e->vlen
                                                     : SIM_VAL_MAX - 1);
}

/* Take up to `limit` entries from the cursor, whole, as the node's pieces
 * hold them (src/node/watchers.c, fill). 1 once nothing more is held (the
 * watcher is up to date at the node's applied index), 0 if entries are
 * left, -1 if the stream ended with "too slow". */
static int pull(struct sim *s, struct sim_watch *W, struct watcher *w,
                unsigned limit)
{
    const struct watch_history *h = W->node[w->node].h;
    struct wev got[ENTRY_MAX];
    unsigned n = 0, taken = 0;
    uint64_t index = 0;
    int rc;
    for (;;) {
        struct watch_cursor save = w->cur;
        struct watch_event e;
        rc = watch_history_next(h, &w->cur, &e);
        if (rc <= 0 || e.index != index) {
            if (n)
                receive(s, W, w, got, n, index);
            if (s->failed)
                return -1;
            n = 0;
            if (rc == 0)
                return 1;
            if (rc < 0) {
                w->cur = save;
                return -1;
            }
            if (index && ++taken == limit) {
                w->cur = save; /* a piece ends before the next entry */
                return 0;
            }
            index = e.index;
        }
        if (e.klen >= KEY_CAP || (e.val && e.vlen >= SIM_VAL_MAX)) {
            sim_fail(s, "watch-events", "watcher w%u gets a key or value of"
                     " entry %" PRIu64 " longer than any written", w->id,
                     e.index);
            return -1;
        }
        struct wev o;
        to_wev(&e, &o);
        if (!matches(w, o.key))
            continue;
        if (n == ENTRY_MAX) {
            sim_fail(s, "watch-events", "watcher w%u gets more than %u events"
                     " of entry %" PRIu64, w->id, ENTRY_MAX, index);
            return -1;
        }
        got[n++] = o;
    }
}

static void read_due(struct sim *s, struct sim_watch *W, struct watcher *w,
                     unsigned limit)
{
    struct sim_node *n = &s->nodes[w->node];
    int rc = pull(s, W, w, limit);
    if (s->failed)
        return;
    if (rc < 0) {
        /* event: error {"error":"too slow","index":N}: every event up to N
         * was sent; the stream ends */
        w->slow++;
        note(s, w, w->node, "too slow", w->cur.index, w->last);
        advance(s, W, w, w->cur.index, "told too slow at");
        disconnect(W, w);
        return;
    }
    if (rc == 1) {
        /* up to date: a progress event would say {"index":applied} */
        w->woken = false;
        check_none_due(s, W, w, n->kv.applied, "up to date at applied index");
        if (w->smart)
            advance(s, W, w, n->kv.applied, "up to date at applied index");
    }
}

/* ---- the workload ---- */

/* A live node other than `not`: any, or half the time the one furthest
 * behind (the kind a snapshot from the leader catches up). */
static struct sim_node *random_live(struct sim *s, struct sim_watch *W,
                                    unsigned not)
{
    unsigned ids[SIM_MAX_NODES], k = 0, behind = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        if (id == not || !sim_node_live(&s->nodes[id]) || !W->node[id].h)
            continue;
        ids[k++] = id;
        if (!behind || s->nodes[id].kv.applied < s->nodes[behind].kv.applied)
            behind = id;
    }
    if (!k)
        return NULL;
    return &s->nodes[wpick(W, 2) ? behind : ids[wpick(W, k)]];
}

void sim_watch_step(struct sim *s)
{
    struct sim_watch *W = s->watch;
    if (!W)
        return;
    for (unsigned i = 0; i < W->n && !s->failed; i++) {
        struct watcher *w = &W->w[i];
        if (!w->node) {
            struct sim_node *n = wpick(W, 5) ? NULL : random_live(s, W, 0);
            if (n)
                watch_connect(s, W, w, n);
            continue;
        }
        if (sim_rng_ppm(&W->rng, W->reconnect_ppm)) {
            struct sim_node *n = random_live(s, W, w->node);
            if (n) {
                w->reconnects++;
                disconnect(W, w);
                watch_connect(s, W, w, n);
            }
            continue;
        }
        /* woken by the hub, or now and then as a progress event would */
        if (!sim_node_live(&s->nodes[w->node]) ||
            (!w->woken && wpick(W, 20)) || wpick(W, 100) >= w->read_pct)
            continue;
        read_due(s, W, w, 1 + wpick(W, 8));
    }
}

/* The converged cluster: each watcher reads to the end at the leader, and
 * its view must be the model's map under its key. */
void sim_watch_final(struct sim *s, struct sim_node *l)
{
    struct sim_watch *W = s->watch;
    if (!W)
        return;
    oracle_follow(s, W);
    for (unsigned i = 0; i < W->n && !s->failed; i++) {
        struct watcher *w = &W->w[i];
        for (unsigned tries = 0; tries < 3 && !s->failed; tries++) {
            if (w->node != l->id) {
                disconnect(W, w);
                watch_connect(s, W, w, l);
            }
            if (!w->node)
                break;
            read_due(s, W, w, UINT32_MAX); /* all of it: up to date */
            if (w->node)
                break; /* not told too slow */
        }
        if (s->failed)
            return;
        if (w->node != l->id || s->model.index != l->kv.applied)
            continue;
        unsigned k = 0;
        bool same = true;
        for (unsigned j = 0; j < s->model.n; j++) {
            const struct sim_mrec *r = &s->model.rec[j];
            if (!matches(w, r->key))
                continue;
            const struct wev *v = k < w->nview ? &w->view[k] : NULL;
            k++;
            same = same && v && strcmp(v->key, r->key) == 0 &&
                   strcmp(v->val, r->val) == 0 && v->create == r->create &&
                   v->mod == r->mod && v->version == r->version;
        }
        if (!same || k != w->nview)
            sim_fail(s, "watch-view", "watcher w%u (%s%s) holds %u keys from"
                     " its listing and events, the model %u or others, at"
                     " index %" PRIu64, w->id, w->key, w->prefix ? "*" : "",
                     w->nview, k, l->kv.applied);
        if (s->o.verbose)
            fprintf(s->out, "  watcher w%u (%s%s%s, reads %u%%): %" PRIu64
                    " entries, %" PRIu64 " events, %" PRIu64 " listings, %"
                    PRIu64 " compacted, %" PRIu64 " too slow, %" PRIu64
                    " reconnects\n", w->id, w->key, w->prefix ? "*" : "",
                    w->smart ? ", from progress" : "", w->read_pct, w->entries,
                    w->events, w->relists, w->compacted, w->slow,
                    w->reconnects);
    }
}

void sim_watch_free(struct sim *s)
{
    struct sim_watch *W = s->watch;
    if (!W)
        return;
    for (unsigned id = 0; id <= SIM_MAX_NODES; id++)
        node_free(W, &W->node[id]);
    craft_free(W->ev);
    craft_free(W);
    s->watch = NULL;
}
