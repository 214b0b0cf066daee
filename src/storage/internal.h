/* Internals of src/storage shared by its files (stor__ names): the struct
 * behind struct stor, the record codec (record.c), syscall helpers (io.c),
 * recovery (recover.c), segment writing (segment.c) and snapshot files
 * (snapshot.c). Not for use outside src/storage/ except by its unit test. */
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
#define STOR__VERSION 1
#define STOR__SEG_HDR 48       /* segment header bytes */
#define STOR__REC_HDR 12       /* record header: crc, len, type, 3 zero */
#define STOR__ENT_HDR 16       /* per entry in an entries record */
#define STOR__ENTS_HDR 16      /* first index, count, reserved */
#define STOR__SNAP_HDR 4096    /* snapshot header; data follows */
#define STOR__REC_SPLIT (1u << 20) /* entries records are cut past this */
#define STOR__REC_MAX (1u << 30)   /* no record payload is longer */

enum stor__rec_type {
    STOR__REC_ENTRIES = 1, /* entries from an index on (truncates first) */
    STOR__REC_HS = 2,      /* hard state: term, vote, commit */
    STOR__REC_RESET = 3,   /* log restarts after (index, term) */
};

/* A record whose header and CRC are valid. payload points into the buffer
 * that was checked. */
struct stor__rec {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;
};

void stor__seg_header_encode(uint8_t out[STOR__SEG_HDR], uint64_t seq,
                             uint64_t salt, uint64_t first);
/* 0, or a static reason why the header is not valid. */
const char *stor__seg_header_decode(const uint8_t *buf, size_t len,
                                    uint64_t *seq, uint64_t *salt,
                                    uint64_t *first);
/* Check the record at buf (avail bytes). NULL and *rec if valid, else a
 * static reason ("short header", "bad checksum", ...). */
const char *stor__rec_check(const uint8_t *buf, size_t avail, uint64_t salt,
                            struct stor__rec *rec);
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
    uint64_t seg_size;
    uint64_t seg_salt;
    uint64_t last; /* last entry index, or the reset index if none after */
    struct raft_hard_state hs;
    bool have_hs;
    uint8_t *wbuf; /* reused encode buffer for one save */
    size_t wcap;

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

/* Read every segment back (s->dir listed into names), fill s->ents, s->hs,
 * s->segs, and the log's base (reset index, 0 if none) into *base; cut a
 * torn tail. The last segment stays closed. */
int stor__recover_log(struct stor *s, char **names, size_t n_names,
                      uint64_t *base);

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
/* Append the batch durably (one pwrite, one fdatasync), rolling to a new
 * segment first if the batch resets the log or the current one is full. */
int stor__seg_write(struct stor *s, const struct stor__batch *b);
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
