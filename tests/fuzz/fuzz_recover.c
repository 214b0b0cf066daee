/* libFuzzer target for log recovery (src/storage): the input is a whole
 * data directory (segments, state file, snapshots, strays; the format is
 * memfs_load's) opened by stor_open through the in-memory file system.
 * Whatever it accepts must be a consistent log that the store can go on
 * from: contiguous entries, a commit index within them, and a save after
 * it (into a new segment, for half the inputs) that reopens to exactly the
 * same log plus the new entry, twice.
 * Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/error.h"
#include "memfs.h"
#include "storage/storage.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

/* What one open returned, kept past stor_close. */
struct seen {
    struct raft_hard_state hs;
    uint64_t snap_index, last;
    size_t n;
    uint64_t first;
    uint64_t *terms;
    uint32_t *crcs;
};

/* Half the inputs run with tiny segments, so that the save after recovery
 * creates a new segment behind whatever was recovered. */
static uint64_t segment_bytes;

static int open_store(struct stor **s, struct raft_persisted *p)
{
    struct stor_opts o = {.dir = MEMFS_DIR, .sys = memfs_sys(),
                          .segment_bytes = segment_bytes};
    return stor_open(&o, s, p);
}

/* The invariants of an accepted log; a copy of it into *w. */
static void check_and_copy(struct stor *s, const struct raft_persisted *p,
                           struct seen *w)
{
    uint64_t last = stor_last_index(s);
    w->hs = p->hs;
    w->snap_index = p->snap.index;
    w->last = last;
    w->n = p->n_entries;
    w->first = p->n_entries ? p->entries[0].index : 0;
    w->terms = calloc(w->n + 1, sizeof *w->terms);
    w->crcs = calloc(w->n + 1, sizeof *w->crcs);
    CHECK(w->terms && w->crcs);
    for (size_t i = 0; i < p->n_entries; i++) {
        const struct raft_entry *e = &p->entries[i];
        CHECK(e->index == w->first + i);
        CHECK(e->len == 0 || e->data != NULL);
        w->terms[i] = e->term;
        w->crcs[i] = crc32c(0, e->data, e->len) ^ e->type;
    }
    if (p->n_entries) {
        CHECK(w->first >= 1);
        CHECK(w->first <= p->snap.index + 1);
        CHECK(last == p->entries[p->n_entries - 1].index);
    } else {
        CHECK(last >= p->snap.index);
    }
    CHECK(p->hs.commit <= last);
}

static void seen_free(struct seen *w)
{
    free(w->terms);
    free(w->crcs);
}

/* The log of p is w's plus (index, term) at its end. */
static void check_extended(const struct raft_persisted *p,
                           const struct seen *w, uint64_t index,
                           uint64_t term, uint32_t crc)
{
    CHECK(p->n_entries >= 1);
    const struct raft_entry *e = &p->entries[p->n_entries - 1];
    CHECK(e->index == index && e->term == term);
    CHECK((crc32c(0, e->data, e->len) ^ e->type) == crc);
    if (w->n == 0) {
        CHECK(p->n_entries == 1);
        return;
    }
    CHECK(p->n_entries == w->n + 1 && p->entries[0].index == w->first);
    for (size_t i = 0; i < w->n; i++) {
        const struct raft_entry *x = &p->entries[i];
        CHECK(x->term == w->terms[i]);
        CHECK((crc32c(0, x->data, x->len) ^ x->type) == w->crcs[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memfs_load(data, size);
    segment_bytes = size % 2 ? 0 : 200;
    struct stor *s = NULL;
    struct raft_persisted p;
    int err = open_store(&s, &p);
    if (err) {
        CHECK(s == NULL && memfs_open_fds() == 0);
        return 0;
    }
    struct seen w;
    check_and_copy(s, &p, &w);

    /* Go on from it: one entry, the hard state it had (a term at least). */
    uint64_t index = w.last + 1;
    struct raft_hard_state hs = w.hs;
    if (hs.term == 0)
        hs.term = 1;
    static const uint8_t cmd[] = "fuzz entry";
    struct raft_entry e = {hs.term, index, RAFT_ENTRY_NORMAL,
                           sizeof cmd - 1, cmd};
    uint32_t crc = crc32c(0, cmd, sizeof cmd - 1) ^ RAFT_ENTRY_NORMAL;
    err = stor_save(s, &hs, &e, 1, NULL);
    CHECK(err == 0);
    stor_close(s);
    CHECK(memfs_open_fds() == 0);

    for (int round = 0; round < 2; round++) {
        s = NULL;
        err = open_store(&s, &p);
        CHECK(err == 0);
        check_extended(&p, &w, index, hs.term, crc);
        CHECK(p.hs.term == hs.term && p.hs.vote == hs.vote);
        CHECK(p.hs.commit == w.hs.commit);
        CHECK(p.snap.index == w.snap_index);
        stor_close(s);
        CHECK(memfs_open_fds() == 0);
    }
    seen_free(&w);
    return 0;
}
