/* A craftd node: one libuv loop that drives the Raft core, the storage, the
 * peer transport, the HTTP front end and the replicated map.
 *
 * Owns everything it starts: the core, the store (and its data directory
 * lock), the transport, the HTTP server, timers, a forked snapshot writer,
 * a backup being written or sent.
 * Threading: every call on the loop's thread; disk jobs run on libuv's
 * thread pool one at a time, their results come back on the loop.
 * Ownership: node_start copies the strings of opts. */
#ifndef CRAFT_NODE_H
#define CRAFT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/log.h"

struct stor_sys;

struct node_opts {
    const char *id;        /* node id string (hraftd -id) */
    const char *http_addr; /* HTTP bind address, "host:port" */
    const char *raft_addr; /* Raft bind address, announced to peers */
    const char *join;      /* HTTP address of a member to join, or NULL */
    const char *dir;       /* data directory */
    bool inmem;            /* keep the log and snapshots in memory */
    const struct stor_sys *stor_sys; /* the store's system calls; NULL: libc */
    uint64_t snapshot_threshold; /* entries between snapshots; 0: 8192 */
    uint64_t snapshot_log_bytes; /* a log this large since the last snapshot
                                    is snapshotted whatever its entry count;
                                    0: max(4 MiB, a quarter of the last one) */
    unsigned tick_ms;      /* one Raft tick; 0: 25 */
    /* The change history (src/watch) kept for watches and blocking
     * queries: at most this many events and bytes (0 and 0: the defaults,
     * 100000 and 64 MiB; events 0 with bytes set: keep nothing). */
    uint64_t watch_history_events;
    uint64_t watch_history_bytes;
    unsigned election_ticks; /* 0: 18 */
    unsigned election_jitter_ticks; /* 0: min(6, election_ticks) */
    unsigned check_quorum_rounds;   /* 0: 2 */
    unsigned heartbeat_ticks; /* 0: election_ticks / 10 */
    unsigned request_timeout_ms; /* 0: 5000 */
    size_t max_body;       /* HTTP body limit; 0: 1 MiB */
    unsigned http_max_conns;        /* 0: 1024 (see http_opts.max_conns) */
    unsigned http_max_conns_per_ip; /* 0: 256 */
    struct auth_db *auth;  /* HTTP users and roles, or NULL (all open); not
                              owned, must outlive the node */
    const char *join_user; /* "user:password" the node sends with its own
                              requests to members (join, /status), or NULL;
                              read (encoded and copied) by node_start */
    const char *tls_cert, *tls_key, *tls_client_ca; /* client TLS files, or
                              NULL (see http_opts) */
    const char *join_ca;   /* CAs trusted for members' HTTPS; NULL:
                              tls_client_ca, else the system's */
    const char *peer_tls_cert, *peer_tls_key, *peer_tls_ca; /* PEM files for
                              mutual TLS between nodes; NULL: plain TCP */
    const char *cluster_token; /* authenticates peer connections; NULL: none
                                  (not copied: handed to the transport at
                                  start, which keeps only a derived key) */
    unsigned peer_max_conns;        /* 0: 64 (see peer_opts.max_conns) */
    unsigned peer_max_unauth_conns; /* 0: 16 */
    unsigned watch_max;    /* GET /watch streams at most; 0: 10000 */
    unsigned blocking_max; /* blocking queries waiting at most; 0: 10000 */
    unsigned watch_progress_ms; /* idle watchers get a progress event this
                                   often; 0: 5000 */
    /* -restore: the map of a backup file (node_backup_load), taken by
     * node_start (freed, also on error): the empty data directory becomes
     * a new one-member cluster whose first snapshot it is. NULL: none. */
    struct kv *restore;
    /* -force-new-cluster: the node's state (not fresh) becomes a new
     * one-member cluster, keeping its whole log (force.c). Never with
     * join, restore or inmem. */
    bool force_new;
    const struct craft_logger *log;
};

struct node;
struct auth_db;
struct kv;

/* Open the data directory, restore state, start serving. 0 or an error
 * (CRAFT_ELOCKED: another process has the directory; CRAFT_ECORRUPT: the
 * data is damaged; negative errno: bind failed...). On error everything
 * started is stopped again and *out is NULL. */
int node_start(uv_loop_t *loop, const struct node_opts *o, struct node **out);

/* What GET /readyz says: a member that knows a leader and has applied
 * close to its commit index, and is not stopping (docs/operations.md). */
bool node_ready(struct node *n);

/* Stop: refuse new requests (503); a leader first hands leadership to the
 * voter with the most of the log and waits until another node leads (at
 * most an election timeout); then answer pending requests with 503, close
 * peers and the store cleanly, free the node, and call cb(ud).
 * Asynchronous; a second call while handing over does nothing. */
void node_stop(struct node *n, void (*cb)(void *ud), void *ud);

/* -restore (backup.c): reads and checks the whole backup file at path (a
 * kv snapshot as GET /backup sends it) into a new map: 0 and *kv (the
 * caller's), or an error with a one-line message in why naming the file
 * and what is wrong (missing, not a backup, truncated, corrupt). Writes
 * nothing. */
int node_backup_load(const char *path, struct kv **kv, char *why, size_t cap);
/* 0 if dir is missing or empty; else an error with why (it holds state). */
int node_restore_dir_check(const char *dir, char *why, size_t cap);
/* -force-new-cluster (force.c): 0 if dir exists and holds something; else
 * an error with why (missing or empty: nothing to keep). Writes nothing. */
int node_force_dir_check(const char *dir, char *why, size_t cap);

#endif
