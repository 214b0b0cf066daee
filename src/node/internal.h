/* Internals of the node shared by its files (node__ prefix):
 *   node.c      start, stop, the tick, logging of role changes
 *   pump.c      the ready loop: persist (disk jobs), send, apply, advance
 *   snapshot.c  taking snapshots in a forked child, installing received ones
 *   requests.c  HTTP handlers and the requests waiting on Raft
 *   members.c   member ids and addresses, joins, promotion of learners
 *   joiner.c    the client side of a join (GET /status, POST /join)
 */
#ifndef CRAFT_NODE_INTERNAL_H
#define CRAFT_NODE_INTERNAL_H

#include <sys/types.h>

#include "http/http.h"
#include "kv/kv.h"
#include "node/node.h"
#include "raft/raft.h"
#include "storage/storage.h"
#include "transport/transport.h"

/* A request waiting for Raft: a proposal's outcome, a read index, the apply
 * of an index, or a join's next step. */
enum node__req_kind {
    NODE__GET = 1, /* GET /key/<k> */
    NODE__WRITE,   /* POST /key, DELETE /key/<k> */
    NODE__JOIN,    /* POST /join */
    NODE__REMOVE,  /* POST /remove */
    NODE__TRANSFER /* POST /transfer */
};

struct node__req {
    uint64_t id;
    int kind;
    struct http_req *http;
    uint64_t deadline;             /* uv_now() ms */
    struct node__req *prev, *next; /* pending list, oldest first */
    bool retry;                    /* re-issue at the next tick */
    bool issued;                   /* proposal/read handed to the core */
    size_t heap_pos;               /* 1-based position in the apply heap */
    uint64_t index;                /* wait until applied >= index */
    uint64_t term;                 /* WRITE/JOIN: the entry's term */
    uint8_t *buf;                  /* WRITE: the command; GET: the key */
    size_t len;
    int level;                     /* GET */
    uint64_t target;               /* REMOVE, TRANSFER: the member */
    /* JOIN */
    char *jid, *jaddr, *jhttp;
};

struct node__job;

struct node {
    uv_loop_t *loop;
    struct craft_logger log;
    char *id, *http_addr, *raft_addr, *join, *dir;
    struct node_opts o;
    uint64_t raft_id;

    struct raft *raft;
    struct stor *stor;
    struct raft_persisted boot; /* what the store held at start (its arrays
                                   are the store's until start_services) */
    struct kv *kv;
    uint64_t applied; /* last index applied to kv */
    struct peer_transport *peers;
    struct http_server *http;
    struct node__joiner *joiner;

    uv_timer_t ticker;
    uv_check_t pumper;
    bool stopping;
    unsigned closing; /* handles and services still closing */
    void (*stop_cb)(void *);
    void *stop_ud;

    /* The ready batch being persisted. */
    struct raft_ready rd;
    bool rd_out;
    uint64_t saved_term, saved_vote; /* last hard state made durable */
    uint64_t commit_seen;   /* commit index of the last batch persisted */
    uint64_t commit_saving; /* the one commit_job records */
    bool commit_job;        /* a commit_job is queued or running */
    /* Disk jobs, one at a time, in order. */
    struct node__job *jobs_head, *jobs_tail;
    bool job_running;
    uv_work_t work;

    /* Reused buffers. */
    uint8_t *ebuf;
    size_t ecap;

    /* Snapshot being taken. */
    pid_t snap_pid;
    struct stor_snap_writer *snap_w;
    uint64_t snap_index;
    bool snap_busy;
    uint64_t snap_retry_at; /* after a failure, not before (uv_now ms) */
    uint64_t snap_size;     /* bytes of the latest snapshot */
    uint64_t applied_bytes; /* entry bytes applied since it was taken */

    /* Requests. */
    uint64_t next_req;
    struct node__req **slots; /* by id & (n_slots - 1) */
    size_t n_slots;
    struct node__req *head, *tail; /* pending, oldest first */
    struct node__req **heap;       /* by index, min first */
    size_t n_heap, cap_heap;
    struct raft_soft_state soft;
};

/* node.c */
uint64_t node__now(const struct node *n);

/* pump.c */
void node__pump(struct node *n);
void node__commit_tick(struct node *n);
void node__send(struct node *n, struct raft_msg *m);
typedef int (*node__job_fn)(struct node *n, void *arg);
typedef void (*node__job_done)(struct node *n, void *arg, int rc);
int node__job(struct node *n, node__job_fn fn, node__job_done done,
              void *arg);

/* snapshot.c */
void node__snapshot_maybe(struct node *n);
void node__snapshot_poll(struct node *n);
int node__snapshot_restore(struct node *n, uint64_t index);
void node__snapshot_cancel(struct node *n);

/* requests.c */
extern const struct http_handlers node__http_handlers;
void node__on_prop(struct node *n, const struct raft_prop_result *p);
void node__on_read(struct node *n, const struct raft_read_result *r);
void node__on_apply(struct node *n, const struct raft_entry *e);
void node__on_snapshot_installed(struct node *n);
void node__requests_tick(struct node *n);
void node__requests_fail_all(struct node *n, int status, const char *why);
void node__requests_leader_changed(struct node *n);
struct node__req *node__req_new(struct node *n, int kind,
                                struct http_req *http);
void node__req_done(struct node *n, struct node__req *q);
void node__req_wait_index(struct node *n, struct node__req *q);

/* members.c */
int node__member_ctx(const char *id, const char *raft_addr,
                     const char *http_addr, uint8_t **out, size_t *len);
void node__apply_conf(struct node *n, const struct raft_entry *e);
void node__peers_sync(struct node *n);
void node__peers_from_log(struct node *n, const struct raft_entry *ents,
                          size_t n_ents);
void node__promote_learners(struct node *n);
void node__join_step(struct node *n, struct node__req *q);
void node__join_applied(struct node *n, struct node__req *q, bool ok);
void node__status(struct node *n, struct http_req *req);

/* joiner.c */
struct node__joiner;
int node__joiner_start(struct node *n);
void node__joiner_stop(struct node *n);

#endif
