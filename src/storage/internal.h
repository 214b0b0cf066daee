/* Internals of src/storage shared by its files (stor__ names): the struct
 * behind struct stor, the record codec (record.c), syscall helpers (io.c),
 * recovery (recover.c), segment writing (segment.c), the state file
 * (state.c) and snapshot files (snapshot.c). Not for use outside
 * src/storage/ except by its unit test and fuzz targets. */
#ifndef CRAFT_STORAGE_INTERNAL_H
#define CRAFT_STORAGE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

/* ---- on-disk format (record.c has the full description) ---- */

#define STOR__SEG_MAGIC "CRAFTLOG"
#define STOR__SNAP_MAGIC "CRAFTSNP"
#define STOR__STATE_MAGIC "CRAFTSTA"
#define STOR__SEG_VERSION 2    /* segments written now: OPEN record first */
#define STOR__SEG_VERSION_1 1  /* older segments, still read */
#define STOR__SNAP_VERSION 1
#define STOR__STATE_VERSION 1
#define STOR__SEG_HDR 48       /* segment header bytes */
#define STOR__REC_HDR 12       /* record header: crc, len, type, 3 zero */
#define STOR__OPEN_LEN 32      /* OPEN payload: hard state, previous size */
/* A version 2 segment's creation write, header and OPEN record: synced
 * (file and directory) before anything else goes into the segment. */
#define STOR__SEG_CREATE (STOR__SEG_HDR + STOR__REC_HDR + STOR__OPEN_LEN)
/* No write to a segment is longer, unless it is one record alone (an entry
 * that big): a save is written in steps of at most this many bytes, cut at
 * record boundaries, each fdatasync'd before the next. So a torn tail (the
 * unsynced end of the last step) is never longer either. */
#define STOR__WRITE_MAX (4u << 20)
/* The segment being written is allocated ahead of its records by up to
 * this many bytes (fallocate, which reads as zeros): a sync of records
 * written into allocated space need not commit a new file length, which
 * made each fdatasync of an append 30-40 us slower. Below
 * STOR__WRITE_MAX, so a crash still leaves at most one write step's worth
 * of invalid bytes at the end of the log (the torn tail rule); cut off when
 * the segment is closed, so closed segments end at their last record. */
#define STOR__PREALLOC (1u << 20)
#define STOR__ENT_HDR 16       /* per entry in an entries record */
#define STOR__ENTS_HDR 16      /* first index, count, reserved */
#define STOR__SNAP_HDR 4096    /* snapshot header; data follows */
#define STOR__REC_SPLIT (1u << 20) /* entries records are cut past this */
#define STOR__REC_MAX (1u << 30)   /* no record payload is longer */

enum stor__rec_type {
    STOR__REC_ENTRIES = 1, /* entries from an index on (truncates first) */
    STOR__REC_HS = 2,      /* hard state: term, vote, commit */
    STOR__REC_RESET = 3,   /* log restarts after (index, term) */
    STOR__REC_OPEN = 4,    /* first record of a version 2 segment */
};

/* The OPEN record's payload. */
struct stor__open {
    struct raft_hard_state hs; /* of the moment (all zero: none yet) */
    uint64_t prev_size;        /* bytes of segment seq - 1 then; 0: none */
};

/* One slot of the state file (record.c has the layout). */
#define STOR__STATE_NAME "state"
#define STOR__STATE_SLOT 512   /* bytes per slot; two slots */
#define STOR__STATE_BYTES (2 * STOR__STATE_SLOT)
#define STOR__STATE_LEN 68     /* encoded bytes of a slot; zero after */
struct stor__state {
    uint64_t gen;              /* write counter; slot = gen % 2 */
    struct raft_hard_state hs; /* term and vote as sent, a commit index */
    uint64_t seg_seq;          /* this segment was durable ... */
    uint64_t seg_off;          /* ... up to this length, when written */
};

/* A record whose header and CRC are valid. payload points into the buffer
 * that was checked. */
struct stor__rec {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;
};

/* Segment headers are written as version 2. */
void stor__seg_header_encode(uint8_t out[STOR__SEG_HDR], uint64_t seq,
                             uint64_t salt, uint64_t first);
/* NULL and the fields, or a static reason why the header is not valid.
 * *version is 1 or 2. */
const char *stor__seg_header_decode(const uint8_t *buf, size_t len,
                                    uint32_t *version, uint64_t *seq,
                                    uint64_t *salt, uint64_t *first);
/* The OPEN record's payload (STOR__OPEN_LEN bytes). */
void stor__open_encode(uint8_t *out, const struct stor__open *o);
void stor__open_decode(const uint8_t *p, struct stor__open *o);
/* A state file slot: STOR__STATE_SLOT bytes. decode: NULL if the slot is
 * valid for slot index k, else a static reason. */
void stor__state_encode(uint8_t out[STOR__STATE_SLOT],
                        const struct stor__state *st);
const char *stor__state_decode(const uint8_t *buf, unsigned k,
                               struct stor__state *st);
/* Check the record at buf (avail bytes). NULL and *rec if valid, else a
 * static reason ("short header", "bad checksum", ...). *claimed (may be
 * NULL) gets the record's length as its header claims it (12 + len) if
 * the header looks like one (known type, zero padding, len within the
 * limit), else 0: what a torn write of that record could have left. */
const char *stor__rec_check(const uint8_t *buf, size_t avail, uint64_t salt,
                            struct stor__rec *rec, uint64_t *claimed);
/* Append one record (header + payload) to out; out must have room for
 * STOR__REC_HDR + len bytes; payload is written by the caller first at
 * out + STOR__REC_HDR. Seals the record: fills the header and CRC. */
void stor__rec_seal(uint8_t *out, uint8_t type, uint32_t len, uint64_t salt);

/* Snapshot file header. */
void stor__snap_header_encode(uint8_t out[STOR__SNAP_HDR],
                              const struct raft_snap_meta *m, uint32_t crc);
const char *stor__snap_header_decode(const uint8_t *buf,
                                     struct raft_snap_meta *m, uint32_t *crc);

/* ---- the store ---- */

struct stor__seg {
    uint64_t seq;       /* from the name and header; consecutive */
    uint64_t first;     /* first index it was created to hold (name) */
    uint64_t max_index; /* highest entry or reset index written in it */
};

struct stor__snap {
    struct raft_snap_meta meta;
    int fd; /* open for reading; -1: empty slot */
};

struct stor_snap_writer {
    struct stor *s;
    struct raft_snap_meta meta;
    int fd;
    uint64_t off; /* next data offset for stor_snap_write */
    char name[64];
};

/* A snapshot being received in chunks. */
struct stor__recv {
    int fd; /* -1: none */
    struct raft_snap_meta meta;
    uint64_t next; /* bytes received so far (next expected offset) */
};

struct stor {
    struct stor_sys sys;
    const struct craft_logger *log;
    bool inmem;
    char *dir;
    int dirfd;  /* -1 in memory */
    int lockfd; /* -1 in memory */
    uint64_t seg_bytes;
    _Atomic int failed; /* sticky CRAFT_EIO after a failed fsync, else 0;
                         * atomic: stor_snap_begin reads it off-job */

    /* The log. segs[n_segs - 1] is the one being written (seg_fd). */
    struct stor__seg *segs;
    size_t n_segs, cap_segs;
    int seg_fd;
    uint64_t seg_size;  /* bytes of records (the end of the last one) */
    uint64_t seg_alloc; /* the file is at most this long (exactly, after a
                         * preallocation that worked): >= seg_size, zeros
                         * after it; what cut_prealloc cuts */
    bool prealloc_off;  /* the file system cannot preallocate */
    uint64_t seg_salt;
    uint64_t last; /* last entry index, or the reset index if none after */
    struct raft_hard_state hs;
    bool have_hs;
    uint8_t *wbuf; /* reused encode buffer for one save */
    size_t wcap;

    /* The state file (state.c): the hard state outside the log. st is
     * what its newest slot holds; st_fd is open while the store is. The
     * atomics are what stor_state_due reads off-job. */
    struct stor__state st;
    bool st_present;             /* the file was there at open */
    int st_fd;                   /* -1 in memory */
    _Atomic uint64_t st_commit;  /* st.hs.commit */
    _Atomic uint64_t st_next_ms; /* no commit refresh before (monotonic) */
    uint64_t refresh_ms;         /* STOR_STATE_REFRESH_MS */

    /* What stor_open handed out; freed by stor_release_persisted. */
    struct raft_entry *ents;
    size_t n_ents, cap_ents;
    uint8_t **bufs; /* segment contents the entries point into */
    size_t n_bufs;

    /* Snapshots: slots[0] newest. mu guards slots against the readers. */
    pthread_mutex_t mu;
    struct stor__snap slots[2];
    struct stor_snap_writer *writer;
    struct stor__recv recv;

    struct stor_sync_log synclog; /* io.c: durations of syncs, not yet taken */
};

/* ---- syscall helpers (io.c): every error is a negative code ---- */

int stor__err(int errnum); /* ENOSPC -> CRAFT_ENOSPACE, EIO -> CRAFT_EIO, ... */
int stor__pwrite_all(struct stor *s, int fd, const void *buf, size_t len,
                     uint64_t off);
int stor__pread_all(struct stor *s, int fd, void *buf, size_t len,
                    uint64_t off);
/* fdatasync a file (dir = false) or fsync the data directory (dir = true);
 * a failure poisons the store. No-ops in memory. what: for the log line. */
int stor__sync(struct stor *s, int fd, const char *what);
int stor__sync_dir(struct stor *s, const char *what);
/* A new file (truncated if present) in the data directory, or a memfd. */
int stor__create(struct stor *s, const char *name, int *fd);
int stor__unlink(struct stor *s, const char *name);
void stor__close_fd(struct stor *s, int *fd);
int stor__file_size(struct stor *s, int fd, uint64_t *size);
/* The names in the data directory (no "." or ".."); free with
 * stor__free_names. */
int stor__list_dir(struct stor *s, char ***names, size_t *n);
void stor__free_names(char **names, size_t n);
/* Grow s->wbuf to at least n bytes. */
int stor__wbuf_reserve(struct stor *s, size_t n);

/* ---- recovery (recover.c) ---- */

/* What recovery learnt about the log, for the checks that follow it. */
struct stor__recovered {
    uint64_t base;       /* last reset index, 0 if none */
    bool v2;             /* a version 2 segment was read */
    uint64_t newest_seq; /* of the last segment kept; 0: none */
    uint64_t next_seq;   /* for the next segment created */
    char hs_file[64];    /* where the newest hard state was read */
    uint64_t hs_off;
};

/* Read every segment back (s->dir listed into names), fill s->ents, s->hs,
 * s->segs and *rec; cut a torn tail (bounded, and never below what the
 * state file s->st says was durable). The last segment stays closed. */
int stor__recover_log(struct stor *s, char **names, size_t n_names,
                      struct stor__recovered *rec);
/* Log the refusal to start (ERROR: directory, file, offset, what is wrong,
 * what to do) and return CRAFT_ECORRUPT. file may be NULL. */
int stor__refuse(struct stor *s, const char *file, uint64_t off,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define STOR__REPAIR                                                         \
    "move the directory aside and restart the node with -join <a member> " \
    "so that it rejoins as a fresh incarnation and re-learns the log from " \
    "the leader (docs/operations.md)"

/* ---- the state file (state.c) ---- */

/* Read the state file if there is one (s->st, s->st_present); a file with
 * no valid slot, or of the wrong size, is refused. */
int stor__state_load(struct stor *s);
/* After recovery: refuse if the state file is ahead of the log (a term,
 * vote or commit index the log no longer has, a segment or synced bytes
 * missing), or missing although the log was written with one; then take
 * its commit index into s->hs. */
int stor__state_check(struct stor *s, const struct stor__recovered *rec);
/* Make the state file hold s->hs and the log's current end: created (temp
 * file, fdatasync, rename, directory fsync) if absent, else one slot
 * written and fdatasync'd. */
int stor__state_write(struct stor *s);
/* After a save: write the state file if the hard state's term or vote
 * changed, or if the commit index or log end moved and a refresh is due. */
int stor__state_after_save(struct stor *s);
uint64_t stor__now_ms(const struct stor *s);

/* ---- segments (segment.c) ---- */

void stor__seg_name(char *out, size_t size, uint64_t seq, uint64_t first);
bool stor__seg_parse(const char *name, uint64_t *seq, uint64_t *first);
int stor__seg_push(struct stor *s, uint64_t seq, uint64_t first,
                   uint64_t max_index);
/* Open the last segment for appending at its end, or create the first. */
int stor__seg_open_tail(struct stor *s, uint64_t next_seq);
/* One save's worth of log records, written in this order. */
struct stor__batch {
    bool reset; /* a RESET record: the log restarts after (index, term) */
    uint64_t reset_index, reset_term;
    const struct raft_entry *ents;
    size_t n;
    const struct raft_hard_state *hs; /* NULL: none */
};
/* Append the batch durably (pwrite and fdatasync, in steps of at most
 * STOR__WRITE_MAX bytes), rolling to a new segment first if the batch
 * resets the log or the current one is full. */
int stor__seg_write(struct stor *s, const struct stor__batch *b);
/* Close the current segment, cutting its preallocated space off first
 * (best effort: recovery cuts it too). */
void stor__seg_close(struct stor *s);
/* Delete the oldest segments while all they hold is below keep_from,
 * never the current one; directory fsync after each unlink. */
int stor__seg_drop_while_below(struct stor *s, uint64_t keep_from);

/* ---- snapshots (snapshot.c) ---- */

void stor__snap_name(char *out, size_t size, uint64_t index);
bool stor__snap_parse(const char *name, uint64_t *index);
/* Validate snapshot files (names) newest first, keep the two newest valid
 * ones in s->slots. Corrupt ones are skipped with a WARN. *n_bad counts
 * files that were newer than the newest valid one. */
int stor__snap_load(struct stor *s, char **names, size_t n_names,
                    size_t *n_bad);
/* Write one chunk; a last chunk commits the snapshot (*committed = true). */
int stor__snap_recv(struct stor *s, const struct raft_snap_chunk *c,
                    bool *committed);
void stor__snap_close_all(struct stor *s);

#endif
