/* The replicated state machine: craftd's key-value map and member directory.
 *
 * It owns a hash map of binary-safe keys to binary-safe values (any bytes,
 * NUL included; lengths are explicit) and a small directory of cluster
 * members (node id string -> raft id, raft address, http address). The map
 * changes through commands (the bytes of Raft log entries, see kv_apply): a
 * command is an atomic batch of SET/DELETE operations. The whole state can be
 * written as a checksummed snapshot and restored into a NEW struct kv.
 * Formats are specified in docs/kv.md and at the top of kv_cmd.c and
 * kv_snap_write.c.
 *
 * Threading: a struct kv belongs to one thread (the node's loop thread); no
 * call locks anything. kv_snapshot_write_fd may also run in a fork()ed child
 * of that thread: it allocates nothing and uses only write(2).
 *
 * Ownership: every function copies the bytes it is given. Pointers handed
 * out (kv_get values, iterator keys/values, members) point into the struct
 * kv and stay valid until the next change to it (any put/del/apply/member
 * call) or kv_free. Command builders (struct kv_cmd) and snapshot buffers
 * from kv_snapshot_write_mem are owned by the caller (kv_cmd_free /
 * craft_free). Errors: negative codes from common/error.h (or -errno from
 * write(2)/read(2)), 0 = success. */
#ifndef CRAFT_KV_H
#define CRAFT_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct kv;

/* ---- the map ------------------------------------------------------------ */

/* A new empty state machine. hash_seed keys the hash function (so clients
 * cannot choose colliding keys); 0 picks a random seed. A fixed seed gives a
 * fixed iteration order (for deterministic tests). NULL if out of memory. */
struct kv *kv_new(uint64_t hash_seed);
void kv_free(struct kv *kv); /* NULL is fine */

size_t kv_count(const struct kv *kv);    /* number of keys */
uint64_t kv_bytes(const struct kv *kv);  /* sum of key and value lengths */

/* Look key up. 0 and *val, *vlen set (the value is not NUL-terminated), or
 * CRAFT_ENOTFOUND. val may be NULL to test presence only. */
int kv_get(const struct kv *kv, const void *key, size_t klen,
           const uint8_t **val, size_t *vlen);
/* Direct changes, outside the replicated log: for tests and tools. The node
 * changes the map only through kv_apply. put: 0, CRAFT_ENOMEM (map
 * unchanged) or CRAFT_ETOOBIG (key or value longer than UINT32_MAX).
 * del: 0, or CRAFT_ENOTFOUND if the key was absent. */
int kv_put(struct kv *kv, const void *key, size_t klen, const void *val,
           size_t vlen);
int kv_del(struct kv *kv, const void *key, size_t klen);

/* Iteration in table order. The map must not change while iterating. */
struct kv_iter {
    size_t pos; /* private */
};
void kv_iter_init(struct kv_iter *it);
bool kv_iter_next(const struct kv *kv, struct kv_iter *it, const uint8_t **key,
                  size_t *klen, const uint8_t **val, size_t *vlen);
/* Calls fn for every pair; stops at the first non-zero return and returns
 * it, else 0. fn must not change the map. */
typedef int (*kv_visit_fn)(void *ud, const uint8_t *key, size_t klen,
                           const uint8_t *val, size_t vlen);
int kv_foreach(const struct kv *kv, kv_visit_fn fn, void *ud);

/* ---- commands (the payload of RAFT_ENTRY_NORMAL entries) ------------------ */

#define KV_CMD_VERSION 1

enum kv_op_type {
    KV_OP_SET = 1,
    KV_OP_DEL = 2,
};

/* One operation; val/vlen unused for KV_OP_DEL. */
struct kv_op {
    uint8_t type; /* enum kv_op_type */
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
};

/* One-shot encoding into a caller-owned buffer: kv_cmd_size gives the exact
 * size (0 if an op is invalid: bad type, or a length over UINT32_MAX),
 * kv_cmd_encode writes exactly that many bytes and returns the count. */
size_t kv_cmd_size(const struct kv_op *ops, size_t n);
size_t kv_cmd_encode(const struct kv_op *ops, size_t n, uint8_t *buf);

/* A growable command builder. data/len is always a complete, valid command
 * holding the n_ops operations added so far (an empty batch after init or
 * reset). The caller owns it: kv_cmd_free releases the buffer. */
struct kv_cmd {
    uint8_t *data; /* read-only for the caller */
    size_t len;    /* read-only */
    size_t cap;    /* private */
    uint32_t n_ops; /* read-only */
};
int kv_cmd_init(struct kv_cmd *c); /* 0 or CRAFT_ENOMEM */
int kv_cmd_set(struct kv_cmd *c, const void *key, size_t klen, const void *val,
               size_t vlen); /* 0, CRAFT_ENOMEM, CRAFT_ETOOBIG, CRAFT_EINVAL
                                (c not initialized); c unchanged on error */
int kv_cmd_del(struct kv_cmd *c, const void *key, size_t klen);
void kv_cmd_reset(struct kv_cmd *c); /* empty batch, buffer kept */
void kv_cmd_free(struct kv_cmd *c);

/* Decoding. kv_cmd_iter_init checks the WHOLE command first (version, op
 * types, lengths, nothing left over): 0 or CRAFT_ECORRUPT. Then
 * kv_cmd_iter_next yields each op (pointers into data) and false at the
 * end. data must outlive the iterator. */
struct kv_cmd_iter {
    const uint8_t *p;   /* private */
    const uint8_t *end; /* private */
    uint32_t left;      /* operations not yet returned */
};
int kv_cmd_iter_init(struct kv_cmd_iter *it, const uint8_t *data, size_t len);
bool kv_cmd_iter_next(struct kv_cmd_iter *it, struct kv_op *op);

/* Apply one command atomically: all of it or nothing. 0; CRAFT_ECORRUPT if
 * it is malformed (nothing changed); CRAFT_ENOMEM (nothing changed: all
 * memory is reserved before the first change). Deleting an absent key is
 * not an error. Ops apply in order: the last SET of a key in a batch wins. */
int kv_apply(struct kv *kv, const uint8_t *data, size_t len);

/* ---- member directory (changed by the node when it applies a membership
 *      change; part of the snapshot) ------------------------------------- */

struct kv_member {
    char *id;        /* node id string, unique in the directory */
    uint64_t raft_id; /* the raft core's numeric id for it */
    char *raft_addr;
    char *http_addr;
};

/* Add the member, or replace the one with the same id. Strings are copied
 * (NULL is taken as ""). 0, CRAFT_EINVAL (id NULL) or CRAFT_ENOMEM
 * (directory unchanged). */
int kv_member_set(struct kv *kv, const char *id, uint64_t raft_id,
                  const char *raft_addr, const char *http_addr);
int kv_member_del(struct kv *kv, const char *id); /* 0 or CRAFT_ENOTFOUND */
/* Lookups: NULL if absent. Directory order is insertion order. */
const struct kv_member *kv_member_get(const struct kv *kv, const char *id);
const struct kv_member *kv_member_by_raft_id(const struct kv *kv,
                                             uint64_t raft_id);
size_t kv_member_count(const struct kv *kv);
const struct kv_member *kv_member_at(const struct kv *kv, size_t i);

/* ---- snapshots ------------------------------------------------------------ */

/* A sink: write all len bytes, return 0 or a negative error. */
typedef int (*kv_write_fn)(void *ud, const void *buf, size_t len);
/* A source: fill exactly len bytes and return 0; CRAFT_ETRUNCATED if the
 * stream ends first; any other negative error is passed through. */
typedef int (*kv_read_fn)(void *ud, void *buf, size_t len);

/* Exact byte size of the snapshot kv_snapshot_write would produce now. */
uint64_t kv_snapshot_size(const struct kv *kv);
/* Write the whole state (map, members, applied_index) as one snapshot.
 * Returns 0 or the sink's error. Allocates nothing (a 32 KiB stack buffer). */
int kv_snapshot_write(const struct kv *kv, uint64_t applied_index,
                      kv_write_fn write_fn, void *ud);
/* Same, to a file descriptor with write(2) only (retries short writes and
 * EINTR): 0, CRAFT_ENOSPACE, or -errno. Safe in a fork()ed child. The
 * caller fsyncs and closes fd. */
int kv_snapshot_write_fd(const struct kv *kv, int fd, uint64_t applied_index);
/* Same, to a new buffer of kv_snapshot_size() bytes: *buf is the caller's
 * (craft_free). 0 or CRAFT_ENOMEM. */
int kv_snapshot_write_mem(const struct kv *kv, uint64_t applied_index,
                          uint8_t **buf, size_t *len);

/* Read one snapshot into a NEW struct kv (hash_seed as in kv_new). On
 * success *out is the caller's and *applied_index is the index the
 * snapshot covers. On any failure nothing is returned and nothing else is
 * touched: CRAFT_ECORRUPT (bad magic, version, checksum or structure, or
 * the stream ended early), CRAFT_ENOMEM, or the source's own error. Reads
 * exactly the snapshot's bytes from the source, nothing after them. */
int kv_restore(kv_read_fn read_fn, void *ud, uint64_t hash_seed,
               struct kv **out, uint64_t *applied_index);
/* From a file descriptor with read(2) (EINTR retried). Reads in 64 KiB
 * blocks, so it may consume bytes past the snapshot's end. */
int kv_restore_fd(int fd, uint64_t hash_seed, struct kv **out,
                  uint64_t *applied_index);
/* From memory: buf must hold exactly one snapshot (trailing bytes:
 * CRAFT_ECORRUPT). */
int kv_restore_mem(const void *buf, size_t len, uint64_t hash_seed,
                   struct kv **out, uint64_t *applied_index);

#endif
