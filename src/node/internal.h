/* Internals of the node shared by its files (node__ prefix):
 *   node.c      start, stop, the tick, logging of role changes
 *   clock.c     the Raft clock: ticks from the monotonic clock, catch-up
 *   loopbusy.c  how long each iteration of the loop is busy (metrics, WARN)
 *   pump.c      the ready loop: persist (disk jobs), send, apply, advance
 *   snapshot.c  taking snapshots in a forked child, installing received ones
 *   backup.c    GET /backup (the same forked writer, streamed), -restore
 *   force.c     -force-new-cluster: a node's state becomes a one-member cluster
 *   requests.c  the requests waiting on Raft, the HTTP handler table
 *   keys.c      GET/PUT/POST/DELETE /key: commands built, answers made
 *   txnlist.c   POST /txn, GET /keys, DELETE /keys?prefix=
 *   lease.c     the lease clock (src/lease) of the node: built from the
 *               map, fed by applied lease commands, expiry on the leader
 *   leasereq.c  POST /lease, /lease/<id>/keepalive, GET and DELETE
 *               /lease/<id>, GET /leases
 *   members.c   member ids and addresses, joins, promotion of learners
 *   joiner.c    the client side of a join (GET /status, POST /join)
 *   identity.c  cluster id, incarnation, refused handshakes, conflicts,
 *               the removed state and the search for evidence of it
 *   httpc.c     a one-shot HTTP client (joins, members' /status)
 *   metrics.c   what /metrics reports, health.c /livez and /readyz: their
 *               own header, node/metrics.h
 */
#ifndef CRAFT_NODE_INTERNAL_H
#define CRAFT_NODE_INTERNAL_H

#include <sys/types.h>

#include "common/ratelimit.h"
#include "http/http.h"
#include "kv/kv.h"
#include "watch/watch.h"
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

struct node__req;
struct node;

/* Answers q (replies to q->http) once this node has applied up to q->index;
 * the caller frees q afterwards (node__req_done). For a read, res is NULL:
 * the state to read is n->kv as it is now (n->applied >= q->index). For a
 * write, res is the result of q's own entry, read with kv_last_result right
 * after that entry applied (matched by index and term: it is valid only
 * until the next apply), or NULL when it is no longer known: the entry was
 * applied before the leader's placement of it came back, or it did not
 * apply (malformed). The write is committed either way. */
typedef void (*node__answer_fn)(struct node *n, struct node__req *q,
                                const struct kv_result *res);

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
    bool precond;                  /* WRITE: its command has compares */
    node__answer_fn answer;        /* GET (required), WRITE (NULL: 200
                                      with an empty body) */
    void *arg;                     /* the answer's own data, owned by q */
    void (*arg_free)(void *arg);   /* frees arg in node__req_done; NULL:
                                      craft_free */
    uint64_t target;               /* REMOVE, TRANSFER: the member */
    /* JOIN */
    char *jid, *jaddr, *jhttp;
    uint64_t jrid;     /* the joiner's Raft id; 0: it did not say (hraftd) */
    bool jin;          /* the join's Raft id was seen in the configuration */
    struct node__resolve *resolve; /* its addresses' host names are being
                                      resolved (joinaddr.c); not issued */
    /* A blocking query waiting (blocking.c): its hub subscription, the
     * index it waits past, its node (for the subscription's callback). */
    struct watch_sub *block_sub;
    uint64_t block_index;
    struct node *block_node;
};

struct node__job;
struct node__probe;
struct node__metrics;
struct node__backup;
struct node__watchers;
struct watch_history;
struct watch_hub;
struct json_t;
struct lease_clock;

#define NODE__RL_SLOTS 16
/* What the core's in-memory log spends on an entry besides its bytes: its
 * slot (struct raft_entry) and malloc's header and rounding of the copy of
 * its data (raft/log.c). A write of a 16-byte key and value is an entry of
 * about 40 bytes: counting only those bytes let the log grow to twice the
 * memory the snapshot rule meant to allow (docs/kv.md). */
#define NODE__ENTRY_MEM (sizeof(struct raft_entry) + 16)
/* How long a start waits for the data directory's lock held by another
 * process (a killed craftd's snapshot writer still exiting: storage.h). */
#define NODE__LOCK_WAIT_MS 5000
/* A rate-limited kind of log line (identity.c). */
struct node__ratelimit {
    uint64_t key;
    uint64_t last_ms;    /* when it was last logged */
    unsigned suppressed; /* lines not logged since */
    bool used;
};

/* The Raft clock (clock.c): tick k is due once k ticks have elapsed since
 * origin_ns on the monotonic clock (uv_hrtime). The ticks delivered are
 * raft_now() of the core; due - delivered are owed. */
struct node__clock {
    uint64_t origin_ns; /* when tick 0 began; moved forward past the ticks a
                           catch-up drops (due - delivered <= max_burst) */
    uint64_t tick_ns;   /* one tick */
    uint64_t max_burst; /* most ticks one catch-up delivers */
    bool chores_due;    /* ticks came (maybe caught up by a frame) since
                           the node's per-tick chores last ran */
};

/* The loop's busy time (loopbusy.c), read at each iteration's prepare
 * phase: the wall time since the previous one less the loop's idle time
 * (uv_metrics_idle_time) meanwhile. */
struct node__busy {
    uint64_t at_ns;   /* uv_hrtime() at the previous prepare; 0: none yet */
    uint64_t idle_ns; /* uv_metrics_idle_time() then */
};

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
    struct watch_history *watch_history; /* changes kv applied (watch.c) */
    struct watch_hub *watch_hub;         /* who waits for which keys */
    struct peer_transport *peers;
    struct http_server *http;
    struct node__metrics *metrics; /* metrics.c: what /metrics counts */
    struct node__joiner *joiner;
    char *httpc_auth;        /* "Basic ..." sent with the node's own requests
                                (httpc.c, -join-user), or NULL */
    struct http_tls_client *httpc_tls; /* HTTPS to members, or NULL: HTTP */

    uv_timer_t ticker; /* one-shot, armed for the next tick at each tick */
    struct node__clock clock;
    uv_check_t pumper;
    uv_idle_t applier; /* pump.c: active while committed entries wait to be
                          applied and no batch is out, so the loop polls
                          without blocking */
    uv_prepare_t busy_meter; /* loopbusy.c; started with the ticker */
    bool busy_on;            /* ... if the loop counts its idle time */
    struct node__busy busy;
    struct craft_ratelimit busy_rl; /* its WARN lines */
    bool bootstrapped; /* this start made a new cluster (logged once serving) */
    uint64_t started_ms; /* uv_now() at node_start, for /status's uptime */
    uint64_t replayed_upto; /* the commit index persisted before a restart:
                               entries up to it are replays (members.c) */
    bool stopping;
    bool handing_over;           /* a stopping leader waits for another to lead */
    uint64_t hand_over_deadline; /* ... until then at most (uv_now ms) */
    unsigned closing; /* handles and services still closing */
    void (*stop_cb)(void *);
    void *stop_ud;

    /* The ready batch being persisted. */
    struct raft_ready rd;
    bool rd_out;
    uint64_t saved_term, saved_vote; /* last hard state made durable */
    uint64_t save_start_ns; /* pump.c: when the batch out went to disk, or 0 */
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
    bool installing;        /* a received snapshot's map is being read */
    uint64_t snap_retry_at; /* after a failure, not before (uv_now ms) */
    uint64_t snap_size;     /* bytes of the latest snapshot */
    uint64_t applied_bytes; /* entry bytes applied since it was taken */
    uint64_t applied_mem;   /* the memory those entries take in the core's
                               log: applied_bytes + NODE__ENTRY_MEM each */
    uint64_t snap_bytes_at; /* applied_bytes and applied_mem when the */
    uint64_t snap_mem_at;   /* snapshot being written began: what it covers */
    struct node__backup *backup; /* GET /backup in progress, or NULL */
    struct node__watchers *watchers; /* watchers.c: GET /watch streams */

    /* Memory given back once writes pause (memory.c). */
    uint64_t mem_seen;        /* applied index at the last tick */
    uint64_t mem_trimmed;     /* applied_bytes at the last trim */
    uint64_t mem_quiet_since; /* uv_now ms since which it has not moved */
    bool mem_started;         /* the trim after the start is done */

    /* Leases (lease.c). */
    struct lease_clock *leases; /* deadlines of the map's leases, uv_now ms */
    uint64_t lease_term;        /* the term this node leads in and whose
                                   start gave every lease its full TTL; 0
                                   while it does not lead */

    /* Requests. */
    uint64_t next_req;
    struct node__req **slots; /* by id & (n_slots - 1) */
    size_t n_slots;
    struct node__req *head, *tail; /* pending, oldest first */
    struct node__req **heap;       /* by index, min first */
    size_t n_heap, cap_heap;
    struct raft_soft_state soft;
    uint64_t first_commit_term; /* the last term whose first commit was logged */

    /* Identity (identity.c). */
    struct stor_identity ident; /* as stored (or to be) in the directory */
    uint64_t name_tag;        /* craft_member_id(id, 0): our name in handshakes */
    bool joining;             /* this incarnation asked to be added, not yet 200 */
    bool was_member;          /* an applied configuration listed raft_id */
    bool removed;             /* removed from the cluster (durable) */
    bool removed_entered;     /* ... and stopped taking part */
    bool conflict;            /* another cluster counts our name here */
    char removed_why[256], conflict_why[640];
    uint64_t heard_leader_at; /* uv_now ms of the leader's last message */
    uint64_t next_probe_at;   /* not before (uv_now ms) */
    struct node__probe *probe; /* members' /status being asked, or NULL */
    struct node__ratelimit rl[NODE__RL_SLOTS];
    size_t n_blocked; /* blocking queries waiting (blocking.c) */
};

/* node.c */
uint64_t node__now(const struct node *n);
/* A stopping leader that handed over: stops once another node leads, or
 * after an election timeout; true if it stopped. */
bool node__hand_over_check(struct node *n);

/* clock.c: the pure arithmetic, then the node's use of it. */
void node__clock_init(struct node__clock *c, uint64_t now_ns, unsigned tick_ms,
                      uint64_t max_burst);
/* Ticks fully elapsed at now_ns. */
uint64_t node__clock_due(const struct node__clock *c, uint64_t now_ns);
/* How many ticks to deliver at now_ns when delivered were: every tick due
 * and not delivered, at most max_burst (the rest are dropped for good). */
uint64_t node__clock_catch_up(struct node__clock *c, uint64_t delivered,
                              uint64_t now_ns);
/* Nanoseconds from now_ns until tick delivered + 1 is due (0: it is). */
uint64_t node__clock_until_next(const struct node__clock *c, uint64_t delivered,
                                uint64_t now_ns);
/* Starts the clock at tick 0 (with the core's first tick to come). */
void node__clock_start(struct node *n);
/* The clock for lease checks, read now: the ticks delivered to the core plus
 * those elapsed and not yet delivered. Every raft_lease_valid and
 * raft_read_lease of the node takes this, never raft_now(). */
uint64_t node__ticks_now(const struct node *n);
/* Delivers to the core (raft_tick) every tick owed; returns how many. */
uint64_t node__catch_up(struct node *n);
/* Whether ticks came since the last call (then the per-tick chores run):
 * the tick timer's own catch-up may find nothing owed when a peer frame
 * caught the ticks up first, which under load is nearly always. */
bool node__take_chores(struct node *n);
/* Milliseconds to arm the tick timer with so that the next tick is due when
 * it fires. */
uint64_t node__ms_to_next_tick(const struct node *n);

/* loopbusy.c. step: the busy time of the iteration that ends at now_ns,
 * when the loop's idle total (ns) is idle_ns; the first call only starts
 * the count (returns 0). start: configures the loop to count its idle
 * time and starts the meter (an unreferenced prepare handle, closed with
 * the ticker); 0, or an error (logged; nothing started). */
uint64_t node__busy_step(struct node__busy *b, uint64_t now_ns, uint64_t idle_ns);
int node__busy_start(struct node *n);

/* pump.c */
void node__pump(struct node *n);
void node__commit_tick(struct node *n);
void node__send(struct node *n, struct raft_msg *m);
typedef int (*node__job_fn)(struct node *n, void *arg);
typedef void (*node__job_done)(struct node *n, void *arg, int rc);
int node__job(struct node *n, node__job_fn fn, node__job_done done,
              void *arg);

/* snapshot.c */
/* Forks a child that writes the map as it is now (copy-on-write: a frozen
 * view) into fd as snapshot `index` with kv_snapshot_write_fd (then
 * fdatasync when sync) and exits 0, or 1 on failure; it dies with this
 * process. The child's pid, or -1 (errno set). Reap it with waitpid. */
pid_t node__fork_writer(struct node *n, int fd, uint64_t index, bool sync);
void node__snapshot_maybe(struct node *n);
/* Writes have paused: start a snapshot if the log since the last one holds
 * enough memory to be worth the map's write (snapshot.c). Whether one is
 * now being taken. */
bool node__snapshot_quiet(struct node *n);
void node__snapshot_poll(struct node *n);
/* Replace the map by snapshot `index` from the store, on the loop (at
 * start). */
int node__snapshot_restore(struct node *n, uint64_t index);
/* The same for a snapshot just received: the map is read on a worker
 * thread, swapped in on the loop, then done(n). A failure aborts (the
 * snapshot is the node's state on disk by then: a restart loads it). */
void node__snapshot_install(struct node *n, uint64_t index, void (*done)(struct node *n));
/* Return the free pages of malloc's arenas to the system (memory.c), after
 * an event that freed much: a log compaction, a replaced map. */
void node__memory_release(struct node *n, const char *after);
/* Frees kv (a map just replaced) and trims, on a worker thread. */
void node__memory_free_map(struct node *n, struct kv *kv);
/* At each tick: release once writes have paused for a while. */
void node__memory_tick(struct node *n);
void node__snapshot_cancel(struct node *n);

/* backup.c */
void node__backup(void *ud, struct http_req *req);
/* The client of req went away: true if req was the backup's (its writer
 * is killed, req answered); false if it is not a backup. */
bool node__backup_cancel(struct node *n, struct http_req *req);
/* At each tick: has the backup's writer finished? Then stream it. */
void node__backup_poll(struct node *n);
/* The node stops: kill the writer, answer a backup not yet streaming. */
void node__backup_stop(struct node *n);
/* -restore: the store of a fresh directory becomes snapshot kv (taken),
 * with this node as the only voter; 0 or an error (logged). */
int node__restore_into(struct node *n, struct kv *kv);

/* force.c: -force-new-cluster, once the core (n->raft, from *p) and the
 * snapshot's map are loaded: refuses a node with nothing of the cluster to
 * keep, else stores a new cluster id and the entries that leave this node
 * the only voter with every entry committed, logs what it dropped, and
 * reads the store back into *p and a new n->raft (made with cfg). 0 or an
 * error (logged). */
int node__force_new(struct node *n, const struct raft_config *cfg, struct raft_persisted *p);
/* watchers.c: GET /watch */
void node__watch(void *ud, struct http_req *req, const struct http_watch_opts *o);
size_t node__watchers_count(const struct node *n);
/* The node stops: every watcher ends (after the piece it is sending). */
void node__watchers_stop(struct node *n);
/* The progress timer, to be closed with the node's handles (NULL: none). */
uv_handle_t *node__watchers_timer(struct node *n);
/* After the HTTP server closed (every stream is done). */
void node__watchers_free(struct node *n);

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
/* A request for an HTTP one, or NULL after answering it (503 while
 * stopping or out of memory, 410/409 for a removed or conflicting node). */
struct node__req *node__req_open(struct node *n, int kind,
                                 struct http_req *req);
/* Hands q to the core (again): a read index, a proposal, ... */
void node__req_issue(struct node *n, struct node__req *q);
/* Answers the read q now (q->answer, from the state as it is) and frees q. */
void node__req_serve(struct node *n, struct node__req *q);
/* Starts the read q (a NODE__GET with answer, and arg if it needs one, set)
 * at its read level q->level: none is served now, weak once the leader's
 * lease index is applied (else as linearizable), linearizable once a read
 * index is. */
void node__req_read(struct node *n, struct node__req *q);
/* Proposes the command buf/len (q takes buf: craft_malloc'd) for req: a
 * NODE__WRITE answered by answer (NULL: 200, empty body) once applied;
 * precond: the command has compares. On failure req is answered and buf
 * freed. */
void node__propose(struct node *n, struct http_req *req, uint8_t *buf,
                   size_t len, bool precond, node__answer_fn answer);
/* The same for the transaction t (encoded here: kv command version 2). */
void node__propose_txn(struct node *n, struct http_req *req,
                       const struct kv_txn *t, bool precond,
                       node__answer_fn answer);
/* The HTTP status of an error code: 413 too big, 400 invalid, else 503. */
int node__status_of(int err);
/* status with an error for q's client; a key request (GET, WRITE) also
 * gets X-Craftd-Index: this node's applied index now. q stays (the caller
 * calls node__req_done). */
void node__req_error(struct node *n, struct node__req *q, int status,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* keys.c: the /key handlers */
void node__key_get(void *ud, struct http_req *req, const char *key,
                   size_t klen, const struct http_get_opts *o);
void node__key_set(void *ud, struct http_req *req, const struct http_kv *kvs,
                   size_t nkv, const struct http_precond *pre);
void node__key_del(void *ud, struct http_req *req, const char *key,
                   size_t klen, const struct http_precond *pre);
void node__key_put(void *ud, struct http_req *req, const char *key,
                   size_t klen, const char *val, size_t vlen,
                   const struct http_put_opts *o);
/* 404 {"error":"lease not found","lease":"<id>"} for q (a put or txn whose
 * entry named a lease that did not exist: nothing was written). */
void node__missing_lease(struct node__req *q, uint64_t lease);

/* txnlist.c: the handlers of POST /txn, GET /keys, DELETE /keys */
void node__txn(void *ud, struct http_req *req, const struct kv_txn *t);
void node__list(void *ud, struct http_req *req,
                const struct http_keys_query *k);
void node__del_prefix(void *ud, struct http_req *req, const uint8_t *prefix,
                      size_t plen);

/* lease.c */
/* The clock, empty (before the map is restored): 0 or CRAFT_ENOMEM. */
int node__leases_open(struct node *n);
void node__leases_close(struct node *n);
/* The map was replaced (start, snapshot install): every lease in it starts
 * now, with its full TTL. */
void node__leases_rebuild(struct node *n);
/* The entry whose result is res applied (res NULL: not a known result). */
void node__leases_applied(struct node *n, const struct kv_result *res);
/* Whether this node leads (and takes part); the first call in a term it
 * leads gives every lease its full TTL from now. Called after each pump,
 * so before any request sees the new role, and by node__leases_tick. */
bool node__leases_leading(struct node *n);
/* Per tick: while leading, proposes KV_LEASE_EXPIRE for the leases past
 * their deadline. */
void node__leases_tick(struct node *n);
/* The shortest TTL granted, in seconds: ceil(1.5 x the election timeout). */
uint64_t node__lease_min_ttl_s(const struct node *n);

/* leasereq.c: the lease handlers */
void node__lease_grant(void *ud, struct http_req *req, uint64_t ttl_s);
void node__lease_keepalive(void *ud, struct http_req *req, uint64_t id);
void node__lease_revoke(void *ud, struct http_req *req, uint64_t id);
void node__lease_get(void *ud, struct http_req *req, const struct http_lease_query *q);
void node__lease_list(void *ud, struct http_req *req,
                      const struct http_leases_query *lq);

/* members.c */
int node__member_ctx(const char *id, const char *raft_addr,
                     const char *http_addr, uint8_t **out, size_t *len);
/* The reverse: id, raft address, http address, each NUL-terminated;
 * CRAFT_ECORRUPT for a malformed context. */
int node__member_ctx_decode(const uint8_t *p, size_t len, char out[3][512]);
void node__apply_conf(struct node *n, const struct raft_entry *e);
/* peer_set and peer_set_name for a member: its name is its handshake tag
 * and its name in logs. */
int node__peer_set(struct node *n, uint64_t raft_id, const char *name,
                   const char *addr);
void node__peers_sync(struct node *n);
/* Warn when -raddr/-haddr differ from this node's member entry. */
void node__check_own_addresses(struct node *n, const struct raft_entry *ents,
                               size_t n_ents);
void node__peers_from_log(struct node *n, const struct raft_entry *ents,
                          size_t n_ents);
void node__promote_learners(struct node *n);
/* Check the optional fields of a POST /join: 0 and *rid (the joiner's Raft
 * id, 0 when it gave none), or -1 with req answered (400). */
int node__join_check(struct node *n, struct http_req *req, const char *id,
                     const struct http_join_ext *ext, uint64_t *rid);
void node__join_step(struct node *n, struct node__req *q);
/* A membership entry applied: every join that waits looks at the
 * membership now, not at the next tick (a join whose learner was just
 * promoted is answered before a removal right behind it can apply). */
void node__joins_look(struct node *n);
/* joinaddr.c: check a /join address ("addr" or "http_addr" in what) and
 * split its host out; -1 with a message in err if it is malformed.
 * *needs_dns: the host is a name to resolve. */
int node__join_addr_check(const char *what, const char *addr, char *host,
                          size_t hostlen, bool *needs_dns, char *err,
                          size_t errlen);
bool node__same_addr(const char *a, const char *b);
/* Resolve q's host names: 0 (nothing to resolve), 1 (started:
 * node__join_resolved(n, q) follows, or q is answered 400), or an error. */
int node__join_resolve(struct node *n, struct node__req *q);
void node__join_resolve_detach(struct node__req *q);
void node__join_resolved(struct node *n, struct node__req *q);
void node__join_applied(struct node *n, struct node__req *q, bool ok);
/* The core refused the join's change (err): answered, or looked at again
 * at the next tick. */
void node__join_refused(struct node *n, struct node__req *q, int err);
void node__status(struct node *n, struct http_req *req);

/* identity.c */
/* Read or create the identity (before the core starts: it gives raft_id).
 * fresh: the store holds nothing. *bootstrap: start a new cluster; *join:
 * run the joiner (also for a removed node given -join). */
int node__identity_open(struct node *n, bool fresh, bool *bootstrap,
                        bool *join);
int node__identity_learn_cluster(struct node *n, uint64_t cluster,
                                 void (*done)(struct node *, int rc));
void node__identity_joined(struct node *n);
void node__identity_tick(struct node *n);
void node__identity_stop(struct node *n);
void node__identity_status(struct node *n, struct json_t *root);
void node__on_refused(void *ud, const struct peer_refusal *r);
void node__mark_removed(struct node *n, uint64_t index, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* False for a removed node (but a removed leader leads until it hands
 * over): it neither ticks nor steps its core. */
bool node__takes_part(const struct node *n);
/* Answer 410 (removed) or 409 (conflict) and return true, else false. */
bool node__refuse_request(struct node *n, struct http_req *req);
/* True if a line of this kind may be logged now (*suppressed: how many
 * were not since the last); at most one per kind every 10 s. */
bool node__log_allowed(struct node *n, uint64_t key, unsigned *suppressed);
/* A 64-bit id written as hex in a JSON field: 0 and *out (0 when absent,
 * null or ""), or CRAFT_EINVAL. */
int node__hex_field(const struct json_t *obj, const char *name,
                    uint64_t *out);

/* httpc.c: one HTTP/1.1 request on a fresh connection. cb(ud, status,
 * body) runs once: status 0 when no valid reply came (body says why); the
 * body is valid during the call only. After cb, or node__httpc_cancel
 * (then cb never runs), the handle is gone. addr: "host:port" (empty
 * host: 127.0.0.1). json_body NULL: no body. bind_host: a numeric IPv4
 * source address, or NULL. */
struct node__httpc;
typedef void (*node__httpc_cb)(void *ud, int status, const char *body);
int node__httpc_start(struct node *n, const char *bind_host,
                      const char *addr, const char *method, const char *path,
                      const char *json_body, unsigned timeout_ms,
                      node__httpc_cb cb, void *ud, struct node__httpc **out);
/* The numeric IPv4 host of -raddr, or NULL: the source address of the
 * node's own connections, so that per-address firewall rules (the fault
 * tests) see each node separately. */
const char *node__bind_host(const struct node *n, char buf[64]);
void node__httpc_cancel(struct node__httpc *c);
/* What every such request carries: -join-user credentials, and HTTPS
 * (trusting -join-ca, else -tls-client-ca, else the system's CAs; showing
 * -tls-cert when asked) when the node itself serves HTTPS: members of one
 * cluster share one scheme. 0 or an error (logged). */
int node__httpc_setup(struct node *n);
void node__httpc_teardown(struct node *n);

/* joiner.c */
struct node__joiner;
int node__joiner_start(struct node *n);
void node__joiner_stop(struct node *n);

/* ---- watch.c: the change history and hub ----
 * node__watch_init (node_start, once the state is restored): history with
 * floor = n->applied, hub, observer on n->kv. node__watch_kv_replaced: a
 * snapshot replaced n->kv (n->applied is its index): observer set again,
 * history reset to floor n->applied, every subscription called (all must
 * look again). node__watch_applied: entry index applied: its subscribers
 * are called. node__watch_free: at the end of the node. */
int node__watch_init(struct node *n);
void node__watch_kv_replaced(struct node *n);
void node__watch_applied(struct node *n, uint64_t index);
void node__watch_free(struct node *n);

/* For watchers (SSE) and blocking queries, on the loop thread only.
 * subscribe: fn(ud, sub, index) is called once per applied entry that
 * changed a key matching (key, or any key under prefix key; klen 0 with
 * prefix: all), after its events are in the history, and once after a
 * snapshot install (the history was reset: a cursor then reports being
 * overtaken). NULL if out of memory. The subscription is the node's until
 * node_watch_unsubscribe (safe inside fn); every one left is freed with
 * the node, so a watcher must unsubscribe before its own memory goes.
 * history: read it with watch_history_seek/next/changed (watch/watch.h);
 * pointers handed out stay valid until the next entry applies.
 * count: subscriptions now (watchers plus waiting blocking queries). */
struct watch_sub *node_watch_subscribe(struct node *n, const void *key,
                                       size_t klen, bool prefix, watch_fn fn,
                                       void *ud);
void node_watch_unsubscribe(struct node *n, struct watch_sub *sub);
const struct watch_history *node_watch_history(const struct node *n);
size_t node_watch_count(const struct node *n);

/* blocking.c: q (a read about to be served) with ?index=: false if it is
 * to be answered now (no index=, a change after it is known, wait=0);
 * true if it was parked until a change or its wait runs out, or answered
 * with an error. current: the mod_index of the key read (0 if absent or a
 * listing). node__block_end drops a parked one's subscription (from
 * node__req_done; nothing for others). */
struct http_block;
bool node__block(struct node *n, struct node__req *q, const void *key,
                 size_t klen, bool prefix, const struct http_block *b,
                 uint64_t current);
void node__block_end(struct node *n, struct node__req *q);

#endif
