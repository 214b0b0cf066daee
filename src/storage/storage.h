/* craftd's durable storage: the Raft log, hard state and snapshots of one
 * node, in one data directory (format: docs/disk-format.md, record layout and
 * validity rule at the top of src/storage/record.c).
 *
 * What it owns: the data directory (a LOCK file held with flock for the
 * store's lifetime, log segments, the state file, snapshot files, temporary
 * files), every file descriptor on it, and the arrays handed out by
 * stor_open.
 *
 * Durability contract: when stor_save, stor_save_commit, stor_compact or
 * stor_snap_commit returns 0, what it wrote is on stable storage
 * (fdatasync'd file, fsync'd directory). When one returns an error, nothing
 * may be acknowledged; after a failed fsync the store is poisoned and every
 * later write returns CRAFT_EIO (the kernel may have dropped the dirty
 * pages: a retried fsync could falsely succeed). Reopen the store (restart)
 * to recover.
 *
 * Never forgetting: besides the log, the store keeps the hard state in a
 * small state file. A term or vote is written there (one more fdatasync)
 * before the stor_save that carries it returns; the commit index and how
 * far the log is durable are refreshed there at most once every
 * STOR_STATE_REFRESH_MS, piggybacked on a save (or by stor_save_commit
 * when the node is idle). stor_open refuses a log that is behind the state
 * file: a disk that lost or zeroed synced writes is never mistaken for a
 * crash, so a node never forgets a term, a vote or a commit index it had
 * made durable.
 *
 * Threads. "Disk jobs" are stor_save, stor_save_commit, stor_compact and
 * stor_snap_commit: the caller runs them one at a time (any thread, e.g. a
 * uv_queue_work worker). stor_state_due may be called from any thread at
 * any time. stor_snap_begin, stor_snap_writer_fd, stor_snap_write and
 * stor_snap_abort touch only the writer, so they may run on another thread
 * (the loop) while a disk job runs, but not while that writer is being
 * committed. The snapshot readers (stor_snap_newest, stor_snap_read,
 * stor_snap_open_read) may be called from another thread while a disk job
 * runs. stor_open, stor_release_persisted, stor_last_index and stor_close
 * must not overlap a disk job.
 *
 * In-memory mode (opts.inmem): same API and checks, nothing touches the
 * file system (no directory, no lock); snapshots live in memfd buffers, so
 * the writer's descriptor still works across fork(). */
#ifndef CRAFT_STORAGE_H
#define CRAFT_STORAGE_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "common/log.h"
#include "raft/raft.h"

/* Every system call the store makes, so tests can inject failures (EIO,
 * ENOSPC, short writes) and crashes. Each behaves like the libc function of
 * the same name: -1 (or NULL) and errno on failure. */
struct stor_sys {
    int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd); /* files */
    int (*fsync)(int fd);     /* directories */
    int (*ftruncate)(int fd, off_t len);
    int (*fallocate)(int fd, int mode, off_t off, off_t len);
    int (*fstat)(int fd, struct stat *st);
    off_t (*lseek)(int fd, off_t off, int whence);
    int (*dup)(int fd);
    int (*mkdir)(const char *path, mode_t mode);
    int (*renameat)(int olddirfd, const char *oldname, int newdirfd,
                    const char *newname);
    int (*unlinkat)(int dirfd, const char *name, int flags);
    int (*flock)(int fd, int op);
    DIR *(*opendir)(const char *path);
    struct dirent *(*readdir)(DIR *d);
    int (*closedir)(DIR *d);
    int (*memfd_create)(const char *name, unsigned flags);
    ssize_t (*getrandom)(void *buf, size_t n, unsigned flags);
    int (*clock_gettime)(clockid_t clk, struct timespec *ts); /* monotonic */
};

/* The libc table (static, read-only). */
const struct stor_sys *stor_sys_default(void);

#define STOR_DEFAULT_SEGMENT_BYTES (64u << 20)
/* The state file's commit index is refreshed at most this often. */
#define STOR_STATE_REFRESH_MS 1000

struct stor_opts {
    const char *dir;       /* data directory, created (0700) if missing */
    bool inmem;            /* keep everything in memory; dir unused */
    uint64_t segment_bytes;/* roll to a new segment past this; 0 = 64 MiB */
    const struct craft_logger *log; /* NULL: silent */
    const struct stor_sys *sys;     /* NULL: stor_sys_default(); copied */
    /* A directory locked by another process: try again every 10 ms for up
     * to this long before CRAFT_ELOCKED (0: at once). A craftd killed with
     * -9 may leave its snapshot writer exiting for a moment (it dies with
     * its parent, but unmapping a large map takes time), so a restart at
     * once would be refused: the node waits. */
    unsigned lock_wait_ms;
};

struct stor;

/* Open (or create) the store and read back what it holds into *p: the last
 * valid hard state, the newest valid snapshot's meta (snap.index == 0: none)
 * and the log, contiguous, starting at or before snap.index + 1. A torn tail
 * of the last segment (the unsynced end of the last write, never anything
 * the state file says was durable) is cut off, and a last segment torn
 * while it was being created is removed (WARN). Errors: CRAFT_ELOCKED
 * (directory in use), CRAFT_ECORRUPT (damage other than a torn tail, or
 * acknowledged data missing: the ERROR log line names the directory, the
 * file, the offset, what is wrong and what to do), CRAFT_ENOMEM,
 * CRAFT_EIO, negative errno.
 * p's arrays (entries and their data) are owned by the store and stay valid
 * until stor_release_persisted() or stor_close(). o is not kept. */
int stor_open(const struct stor_opts *o, struct stor **out,
              struct raft_persisted *p);

/* Free the arrays stor_open handed out (once raft_new has copied them). */
void stor_release_persisted(struct stor *s);

/* Make one ready batch durable, in this order: the snapshot chunk (a last
 * chunk commits the snapshot and resets the log to start after
 * chunk->meta.index), the entries (ents[0].index <= last stored index + 1;
 * an index already stored truncates the log there first), then the hard
 * state. hs NULL: unchanged; chunk NULL: none. Returns once all of it is
 * fdatasync'd, and, if hs changes the term or the vote, once the state
 * file holds them too (a due commit refresh rides along). Nothing is kept
 * from the arguments.
 * CRAFT_EINVAL: entries not contiguous, a gap after the log, a chunk that
 * does not continue the snapshot being received, or a last chunk whose size
 * differs from meta.size. A disk job. */
int stor_save(struct stor *s, const struct raft_hard_state *hs,
              const struct raft_entry *ents, size_t n,
              const struct raft_snap_chunk *chunk);

/* Record commit (capped at the last stored index) in the state file, if
 * it is ahead of what the file holds: for a node whose commit index moved
 * in batches with nothing to save. One slot write and one fdatasync, or
 * nothing. A disk job. */
int stor_save_commit(struct stor *s, uint64_t commit);

/* True if a refresh of the state file's commit index is due: commit is
 * ahead of it and the last write of the file is STOR_STATE_REFRESH_MS old.
 * Never in memory or once poisoned. Any thread. */
bool stor_state_due(const struct stor *s, uint64_t commit);

/* Delete whole closed segments, oldest first, while every entry they hold
 * is below keep_from; never the segment being written. CRAFT_EINVAL if
 * keep_from > newest snapshot index + 1 (that would lose unsnapshotted
 * entries). A disk job. */
int stor_compact(struct stor *s, uint64_t keep_from);

/* The index after which the next entry goes (last entry, or the snapshot
 * the log was reset to). Same thread as the disk jobs. */
uint64_t stor_last_index(const struct stor *s);

/* ---- local snapshots ----
 * begin: a temporary file for a snapshot described by meta (meta->size is
 * ignored: commit measures it). Data goes either through stor_snap_write or
 * straight into stor_snap_writer_fd() (positioned at the data start; e.g. a
 * forked child write(2)s the state machine into it and exits), not both.
 * commit: checksums the data, writes the header, fdatasync, rename into
 * place, directory fsync; the snapshot becomes readable and, if among the
 * two newest, is kept (older ones are deleted). *meta_out (may be NULL) gets
 * the final meta with its size. commit and abort free w (also on error).
 * One writer at a time (CRAFT_EBUSY). */
struct stor_snap_writer;
int stor_snap_begin(struct stor *s, const struct raft_snap_meta *meta,
                    struct stor_snap_writer **w);
int stor_snap_writer_fd(const struct stor_snap_writer *w);
int stor_snap_write(struct stor_snap_writer *w, const void *buf, size_t len);
int stor_snap_commit(struct stor_snap_writer *w, struct raft_snap_meta *meta_out);
void stor_snap_abort(struct stor_snap_writer *w);

/* ---- reading snapshots (any thread, see above) ----
 * newest: meta of the newest snapshot, CRAFT_ENOTFOUND if there is none.
 * read: exactly len bytes at data offset off of snapshot index (one of the
 * two newest kept), CRAFT_ENOTFOUND if not kept, CRAFT_EINVAL past its end.
 * open_read: a new descriptor (caller closes it) positioned at the start of
 * the data of snapshot index, plus its meta; read(2) it sequentially.
 * It shares its file offset with other descriptors open_read returned for
 * the same snapshot, so stream one at a time (or use pread from
 * *data_off). */
int stor_snap_newest(struct stor *s, struct raft_snap_meta *meta);
int stor_snap_read(struct stor *s, uint64_t index, uint64_t off, void *buf,
                   size_t len);
int stor_snap_open_read(struct stor *s, uint64_t index, int *fd,
                        uint64_t *data_off, struct raft_snap_meta *meta);

/* ---- fsync timings ----
 * Every fdatasync and directory fsync the store makes (none in memory) is
 * timed on the syscall table's monotonic clock and its duration kept here
 * until taken, for the node's fsync histogram: the store does the I/O and
 * only hands numbers over. Past STOR_SYNC_LOG durations not yet taken, only
 * how many and their total are kept. Same thread as the disk jobs (the node
 * takes them at the end of each job, on the job's thread). */
#define STOR_SYNC_LOG 64
struct stor_sync_log {
    uint32_t n;                 /* durations in ns[] */
    uint64_t ns[STOR_SYNC_LOG]; /* one per sync, in nanoseconds, oldest first */
    uint64_t lost;              /* syncs past the array ... */
    uint64_t lost_ns;           /* ... and their total duration */
};
/* Moves the durations logged since the last call into *out (overwritten)
 * and empties the log. */
void stor_sync_take(struct stor *s, struct stor_sync_log *out);

/* Close every descriptor, release the lock, free everything (including an
 * unfinished writer's temporary file). Writes nothing: what was not saved
 * is lost, as in a crash. NULL is fine. */
void stor_close(struct stor *s);

/* ---- the node's identity (identity.c; apart from the log) ----
 * IDENTITY in the data directory holds who this directory is: the cluster
 * id, the incarnation (drawn when a node starts with an empty directory:
 * the node's Raft id derives from its name and this number) and what the
 * node learned about its own membership. Layout and the atomic write are
 * described at the top of identity.c and in docs/identity.md.
 * These functions take the directory's path and a syscall table (NULL: the
 * libc one); they keep nothing. Any thread; the caller holds the store's
 * lock (stor_open) so that no other process writes the file. */
#define STOR_IDENTITY_FILE "IDENTITY"
#define STOR_IDENTITY_SIZE 56
#define STOR_IDENT_REMOVED 1u  /* this incarnation was removed from its cluster */
#define STOR_IDENT_CONFLICT 2u /* another cluster counts a member of this
                                  name at this address (see docs/identity.md) */
#define STOR_IDENT_FOUNDER 4u  /* this incarnation bootstrapped its cluster */

struct stor_identity {
    uint64_t cluster_id;       /* 0: not known (a directory from before
                                  cluster ids, or a joiner not yet told) */
    uint64_t incarnation;      /* 0: a directory from before incarnations */
    uint32_t flags;            /* STOR_IDENT_* */
    uint64_t removed_index;    /* REMOVED: the index that proved it, or 0 */
    uint64_t conflict_cluster; /* CONFLICT: the other cluster's id, or 0 */
};

/* Read IDENTITY of dir. 0; CRAFT_ENOTFOUND (no file); CRAFT_ECORRUPT
 * (wrong size, magic, CRC or flags); CRAFT_EVERSION; CRAFT_EIO, negative
 * errno. *out is zeroed on error. */
int stor_identity_load(const char *dir, const struct stor_sys *sys,
                       struct stor_identity *out);
/* Replace IDENTITY of dir with id, atomically and durably (temporary file,
 * fdatasync, rename, directory fsync). 0 or an error: then the old file,
 * if any, is still in place. */
int stor_identity_save(const char *dir, const struct stor_sys *sys,
                       const struct stor_identity *id);
/* The file's bytes, and back (for tests and tools). decode: 0,
 * CRAFT_ECORRUPT or CRAFT_EVERSION. */
void stor_identity_encode(const struct stor_identity *id,
                          uint8_t out[STOR_IDENTITY_SIZE]);
int stor_identity_decode(const uint8_t *in, size_t len,
                         struct stor_identity *id);
/* A random nonzero 64-bit number from getrandom(2). 0 or an error. */
int stor_random_id(const struct stor_sys *sys, uint64_t *out);

#endif
