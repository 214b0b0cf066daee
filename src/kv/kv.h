/* The replicated state machine: craftd's key-value map and member directory.
 *
 * It owns an ordered map (byte-wise key order) of binary-safe keys to
 * binary-safe values (any bytes, NUL included; lengths are explicit), each
 * key with its revisions (create_index, mod_index, version), and a small
 * directory of cluster members (node id string -> raft id, raft address,
 * http address). The map changes through commands (the bytes of Raft log
 * entries, see kv_apply_at): an atomic batch of SET/DELETE operations
 * (version 1), a transaction (version 2: compares, then one of two
 * branches of put/delete/delete_prefix/get) or a lease command (version 3;
 * the lease table is part of the state). The whole state can be
 * written as a checksummed snapshot and restored into a NEW struct kv.
 * Formats are specified in docs/kv.md and at the top of kv_cmd.c,
 * kv_lease.c and kv_snap_write.c.
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

/* A new empty state machine. hash_seed keys the hash of the point index
 * (so clients cannot choose colliding keys); 0 picks a random seed. Nothing
 * observable depends on it: iteration, listing and snapshots go in key
 * order. NULL if out of memory. */
struct kv *kv_new(uint64_t hash_seed);
void kv_free(struct kv *kv); /* NULL is fine */
/* Free the spare nodes kept for the next batch (up to about 7 MiB after a
 * batch of 1,000 puts or more; kv_tree.c), and give the kernel back the
 * leaves' free pages (kv_pages.c): when writes pause. */
void kv_release_spare(struct kv *kv);
/* Move a resize of the point index under way on by a bounded amount of
 * work (about a millisecond at most; kv_hash.c): writes move it on too,
 * but a table halved by mass deletes keeps its old half until enough of
 * them come. True while a resize is still under way. */
bool kv_tidy(struct kv *kv);

size_t kv_count(const struct kv *kv);    /* number of keys */
uint64_t kv_bytes(const struct kv *kv);  /* sum of key and value lengths */

/* The log index of the last command applied (kv_apply_at), or the applied
 * index of the snapshot the map was restored from; 0 for a new map. */
uint64_t kv_index(const struct kv *kv);

/* Look key up. 0 and *val, *vlen set (the value is not NUL-terminated), or
 * CRAFT_ENOTFOUND. val may be NULL to test presence only. */
int kv_get(const struct kv *kv, const void *key, size_t klen,
           const uint8_t **val, size_t *vlen);

/* A key with its value and revisions. create_index: log index of the write
 * that created the key; mod_index: of its last write; version: 1 at
 * creation, +1 per write (a deleted and re-created key starts at 1 again);
 * lease: the lease id given with the last put, 0 for none. */
struct kv_meta {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
    uint64_t create_index;
    uint64_t mod_index;
    uint64_t version;
    uint64_t lease;
};
/* 0 and *m filled, or CRAFT_ENOTFOUND (*m zeroed). */
int kv_get_meta(const struct kv *kv, const void *key, size_t klen,
                struct kv_meta *m);

/* Direct changes, outside the replicated log: for tests and tools. The node
 * changes the map only through kv_apply_at. A put takes kv_index() as its
 * revision. put: 0, CRAFT_ENOMEM (map unchanged) or CRAFT_ETOOBIG (key or
 * value longer than UINT32_MAX). del: 0, or CRAFT_ENOTFOUND if absent. */
int kv_put(struct kv *kv, const void *key, size_t klen, const void *val,
           size_t vlen);
int kv_del(struct kv *kv, const void *key, size_t klen);

/* Iteration in key order. The map must not change while iterating. */
struct kv_iter {
    const void *leaf; /* private */
    uint32_t pos;     /* private */
    bool started;     /* private */
};
void kv_iter_init(struct kv_iter *it);
bool kv_iter_next(const struct kv *kv, struct kv_iter *it, const uint8_t **key,
                  size_t *klen, const uint8_t **val, size_t *vlen);
/* Calls fn for every pair; stops at the first non-zero return and returns
 * it, else 0. fn must not change the map. */
typedef int (*kv_visit_fn)(void *ud, const uint8_t *key, size_t klen,
                           const uint8_t *val, size_t vlen);
int kv_foreach(const struct kv *kv, kv_visit_fn fn, void *ud);

/* ---- ordered listing ----------------------------------------------------- */

/* A set of keys in byte-wise order: those under a prefix, or the half-open
 * [start, end) (has_end false: no end). Pointers are the caller's. */
struct kv_range {
    const uint8_t *start; /* the prefix when is_prefix */
    size_t slen;
    const uint8_t *end;
    size_t elen;
    bool has_end;
    bool is_prefix;
};
void kv_range_prefix(struct kv_range *r, const void *prefix, size_t len);
void kv_range_span(struct kv_range *r, const void *start, size_t slen,
                   const void *end, size_t elen); /* end NULL: no end */

/* Called per key listed; a non-zero return stops the listing. The meta's
 * pointers are valid until the map changes. fn must not change the map. */
typedef int (*kv_list_fn)(void *ud, const struct kv_meta *m);
/* One page: the keys of r in order, after the key `after` (NULL: from the
 * start of r), at most limit of them (the cap on work per call; 0 lists
 * nothing). *n: keys passed to fn; *more: whether r holds keys past the
 * last one passed (continue with after = that key). Returns 0, or fn's
 * non-zero return (then *more is true). O(log n + limit). */
int kv_list(const struct kv *kv, const struct kv_range *r, const void *after,
            size_t alen, size_t limit, kv_list_fn fn, void *ud, size_t *n,
            bool *more);
/* Count the keys of r after `after`, stopping past limit keys (the cap on
 * work; whole leaves inside r count without visiting their keys): *count,
 * and *more with *last the last key counted when r holds more (pointers
 * valid until the map changes). */
void kv_count_range(const struct kv *kv, const struct kv_range *r,
                    const void *after, size_t alen, size_t limit,
                    size_t *count, bool *more, struct kv_meta *last);

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

/* ---- transactions (command version 2) ------------------------------------ */

#define KV_TXN_VERSION 2
#define KV_TXN_MAX 128 /* compares, and ops per branch */

enum kv_cmp_target {
    KV_CMP_MOD = 1,     /* mod_index (0 if absent) vs num */
    KV_CMP_VERSION = 2, /* version (0 if absent) vs num */
    KV_CMP_CREATE = 3,  /* create_index (0 if absent) vs num */
    KV_CMP_VALUE = 4,   /* value vs val: = and != only; false if absent */
    KV_CMP_EXISTS = 5,  /* presence vs num (0 or 1): = and != only */
};
enum kv_cmp_op { KV_CMP_EQ = 0, KV_CMP_NE = 1, KV_CMP_LT = 2, KV_CMP_GT = 3 };

struct kv_compare {
    uint8_t target; /* enum kv_cmp_target */
    uint8_t op;     /* enum kv_cmp_op */
    const uint8_t *key;
    size_t klen;
    uint64_t num;       /* all but KV_CMP_VALUE */
    const uint8_t *val; /* KV_CMP_VALUE */
    size_t vlen;
};

enum kv_txn_op_type {
    KV_TOP_PUT = 1,
    KV_TOP_DEL = 2,
    KV_TOP_DEL_PREFIX = 3, /* every key starting with key */
    KV_TOP_GET = 4,
};
struct kv_txn_op {
    uint8_t type; /* enum kv_txn_op_type */
    const uint8_t *key;
    size_t klen;
    const uint8_t *val; /* put */
    size_t vlen;
    uint64_t lease; /* put; 0 for none */
};

/* All compares hold: success runs, else failure; in one command. */
struct kv_txn {
    const struct kv_compare *cmp;
    size_t n_cmp;
    const struct kv_txn_op *success;
    size_t n_success;
    const struct kv_txn_op *failure;
    size_t n_failure;
};

/* Exact encoded size, 0 if the txn is invalid (counts over KV_TXN_MAX, a
 * bad type or op, a length over UINT32_MAX); encode writes that many. */
size_t kv_txn_size(const struct kv_txn *t);
size_t kv_txn_encode(const struct kv_txn *t, uint8_t *buf);
/* Decode a version-2 command into the caller's arrays (KV_TXN_MAX each);
 * pointers into data. 0 or CRAFT_ECORRUPT. */
int kv_txn_decode(const uint8_t *data, size_t len, struct kv_txn *t,
                  struct kv_compare *cmp, struct kv_txn_op *success,
                  struct kv_txn_op *failure);

/* ---- applying --------------------------------------------------------------- */

/* What one executed op did. */
struct kv_op_result {
    uint8_t type;       /* enum kv_txn_op_type */
    bool created;       /* put: the key was new */
    bool found;         /* get: the key exists (then meta is set) */
    uint64_t deleted;   /* delete, delete_prefix: keys removed */
    struct kv_meta meta; /* get: copies owned by the map */
};
/* What the last command applied did; owned by the map, valid until the
 * next kv_apply* or kv_free. A version-1 batch: succeeded, no ops. */
struct kv_result {
    uint64_t index;            /* the command's log index */
    bool succeeded;            /* every compare held */
    int failed_cmp;            /* the first compare that failed, or -1 */
    uint64_t failed_mod_index; /* that compare's key's mod_index, 0: absent */
    size_t n_ops;              /* results of the executed branch */
    const struct kv_op_result *ops;
    int err; /* 0, or CRAFT_ENOMEM: the command applied but ops incomplete */
    /* A put named a lease that does not exist: the command changed
     * nothing (succeeded false, failed_cmp -1) and this is its id; else 0. */
    uint64_t missing_lease;
    /* A lease command: its op (enum kv_lease_op, 0 for other commands),
     * the lease's id (GRANT: the new one), whether it existed (REVOKE,
     * EXPIRE and KEEPALIVE of an unknown id change nothing), the keys a
     * revoke or expiry deleted and the lease's TTL (GRANT: the one
     * granted; KEEPALIVE: the lease's). */
    uint8_t lease_op;
    uint64_t lease_id;
    bool lease_found;
    uint64_t lease_deleted;
    uint64_t lease_ttl_ms;
    /* The lease's refresh index after the command (GRANT, KEEPALIVE: the
     * command's index; REVOKE, EXPIRE: the one it had), 0 if not found;
     * and whether an EXPIRE was stale (it named an older refresh: the
     * lease and its keys are kept, nothing changed). */
    uint64_t lease_refreshed;
    bool lease_stale;
};
const struct kv_result *kv_last_result(const struct kv *kv);

/* Apply the command of log entry `index` atomically: all of it or nothing.
 * Writes take index as their revision and kv_index() becomes index. 0;
 * CRAFT_ECORRUPT if it is malformed (nothing changed); CRAFT_ENOMEM
 * (nothing changed: all memory the change needs is reserved first). A
 * failed compare is not an error (see kv_last_result). Deleting an absent
 * key is not an error. Ops apply in order: the last SET of a key wins. */
int kv_apply_at(struct kv *kv, uint64_t index, const uint8_t *data,
                size_t len);
/* The same at index kv_index() + 1 (tests and tools). */
int kv_apply(struct kv *kv, const uint8_t *data, size_t len);

/* ---- leases (command version 3; docs/kv.md) --------------------------------
 * A lease is a record of the state machine: an id, a TTL, and the keys put
 * with it (a put names it; a later put of the key without it, or with
 * another, detaches the key; a delete detaches it). Revoking a lease deletes
 * its keys in the same command. The state machine reads no clock: when a
 * lease runs out is the leader's business (src/lease), which then proposes
 * KV_LEASE_EXPIRE. Leases are in snapshots (version 3). */

#define KV_LEASE_VERSION 3

enum kv_lease_op {
    KV_LEASE_GRANT = 1,  /* a new lease; its id is the command's log index */
    KV_LEASE_REVOKE = 2, /* a client revoked lease id */
    KV_LEASE_EXPIRE = 3, /* the leader's clock ran out for lease id */
    KV_LEASE_KEEPALIVE = 4, /* a client kept lease id alive: its refresh
                               index becomes the command's; the nodes'
                               lease clocks restart it when it applies
                               (src/lease) */
};
/* The encoded size of a lease command (fixed), and its encoding into buf:
 * GRANT takes id 0 and arg = the TTL in ms (>= 1); REVOKE and KEEPALIVE
 * take id (>= 1) and arg 0; EXPIRE takes id and arg = the lease's
 * `refreshed` index its clock counted from (>= 1): it applies only while
 * that is still the lease's last refresh, so a keepalive that commits
 * between the leader's decision and the expiry keeps the lease (the
 * expiry is then stale: it changes nothing). Returns the bytes written,
 * 0 for invalid arguments. */
#define KV_LEASE_CMD_MAX 32
size_t kv_lease_cmd_encode(uint8_t op, uint64_t id, uint64_t arg,
                           uint8_t buf[KV_LEASE_CMD_MAX]);

struct kv_lease {
    uint64_t id;            /* the index of its GRANT */
    uint64_t ttl_ms;
    uint64_t n_keys;        /* keys attached now */
    uint64_t refreshed;     /* the index of its GRANT or last KEEPALIVE: an
                               EXPIRE names it (see kv_lease_cmd_encode) */
};
/* 0 and *l, or CRAFT_ENOTFOUND. */
int kv_lease_get(const struct kv *kv, uint64_t id, struct kv_lease *l);
size_t kv_lease_count(const struct kv *kv);
/* The leases with id > after, in id order, at most limit of them; fn's
 * non-zero return stops it and is returned, else 0. *more: leases remain
 * after the last one passed. fn must not change the map. */
typedef int (*kv_lease_fn)(void *ud, const struct kv_lease *l);
int kv_lease_list(const struct kv *kv, uint64_t after, size_t limit,
                  kv_lease_fn fn, void *ud, bool *more);
/* The keys attached to lease id, in key order, after `after` (NULL: from
 * the first), at most limit; as kv_list. CRAFT_ENOTFOUND: no such lease;
 * CRAFT_ENOMEM (it sorts the lease's keys, O(k log k) for k keys). */
int kv_lease_keys(const struct kv *kv, uint64_t id, const void *after,
                  size_t alen, size_t limit, kv_list_fn fn, void *ud,
                  size_t *n, bool *more);

/* ---- change events (what watches and blocking queries are fed) ---------- */

enum kv_event_type { KV_EV_PUT = 1, KV_EV_DELETE = 2 };
/* One key changed by a command. PUT: meta is the key as the write left it
 * (value and every revision field). DELETE: meta.key/klen, mod_index = the
 * deleting command's index, lease = the lease the key was attached to; the
 * other fields are 0. */
struct kv_event {
    uint8_t type; /* enum kv_event_type */
    struct kv_meta meta;
};
/* Called for every key a command changes, in the order of the changes,
 * while kv_apply_at runs and only once nothing can fail any more (a call
 * means the change is made: a failed or malformed command calls nothing).
 * index is the command's. A put is told right after it is made, a delete
 * right before. Pointers in ev are valid during the call only; fn must not
 * change the map. kv_put, kv_del and kv_restore tell nothing. */
typedef void (*kv_event_fn)(void *ud, uint64_t index, const struct kv_event *ev);
/* Set (fn NULL: clear) the one observer of kv. A restored map has none. */
void kv_set_observer(struct kv *kv, kv_event_fn fn, void *ud);

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
/* Write the whole state (map with revisions, members, applied_index) as one
 * snapshot (version 3; the reader also reads versions 1 and 2).
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
/* kv_snapshot_write_fd for a fork()ed child that exits after it: the
 * child's copy of the map gives its pages back to the kernel as they are
 * written (and at once those it never reads: the point index, free
 * pages), so that the parent's writes meanwhile copy fewer pages. The map
 * is unusable afterwards; only _exit may follow. */
int kv_snapshot_write_child(struct kv *kv, int fd, uint64_t applied_index);

/* Read one snapshot into a NEW struct kv (hash_seed as in kv_new); its
 * kv_index() is the applied index. A version-1 snapshot has no revisions:
 * every key gets create_index = mod_index = the applied index, version 1. On
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
