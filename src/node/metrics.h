/* The node's operational surface (node__ prefix, internal to src/node):
 *   metrics.c  the values behind GET /metrics, the hooks that move them,
 *              and the scrape that gathers the rest and encodes it all
 *   health.c   GET /livez and GET /readyz, and the pure readiness rule
 * The families, their labels and what they mean are in docs/operations.md.
 * Everything here runs on the loop's thread; the hooks never allocate. */
#ifndef CRAFT_NODE_METRICS_H
#define CRAFT_NODE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/storage.h"

struct node;
struct http_handlers;
struct http_req;
struct raft_msg;
struct raft_prop_result;

/* A follower is ready only while its applied index is within this many
 * entries of the leader's commit index (as the leader last told it). */
#define NODE_READY_MAX_LAG 1000

/* metrics.c. new: 0 or CRAFT_ENOMEM (n->metrics set); free: NULL is fine. */
int node__metrics_new(struct node *n);
void node__metrics_free(struct node *n);
/* Sets the handlers of the operations routes (and observe) in h. */
void node__ops_handlers(struct http_handlers *h);
/* A frame of len bytes came from peer `from` (before it is decoded). */
void node__metrics_frame_in(struct node *n, uint64_t from, size_t len);
/* m came from the leader this node follows: its commit index counts as
 * the leader's (readiness). */
void node__metrics_from_leader(struct node *n, const struct raft_msg *m);
/* The known leader changed from `from` to `to` (either may be RAFT_NONE). */
void node__metrics_leader(struct node *n, uint64_t from, uint64_t to);
/* The core's outcome of a proposal of this node. */
void node__metrics_prop(struct node *n, const struct raft_prop_result *p);
/* What became of a proposal of this node that was placed in the leader's
 * log: it applied at the index and term placed, another entry took that
 * index (the leader lost leadership before it committed), or the node
 * cannot tell (timed out while placed, or the entry was compacted or the
 * map replaced by a snapshot before its result was seen). */
enum node__prop_final { NODE__PROP_COMMITTED, NODE__PROP_LOST, NODE__PROP_UNKNOWN,
                        NODE__PROP_FINALS };
void node__metrics_prop_final(struct node *n, enum node__prop_final f);
/* What a disk job's syncs took (taken on the job's thread). */
void node__metrics_syncs(struct node *n, const struct stor_sync_log *l);
/* A snapshot writer was started / its snapshot is durable (ok) or not. */
void node__metrics_snapshot_begin(struct node *n);
void node__metrics_snapshot_end(struct node *n, bool ok);
/* One iteration of the loop was busy for ns (loopbusy.c). */
void node__metrics_loop_busy(struct node *n, uint64_t ns);
/* The longest busy iteration since start (ns); *iterations: how many were
 * measured, *busy_ns: their total. */
uint64_t node__metrics_loop_longest(const struct node *n, uint64_t *iterations,
                                    uint64_t *busy_ns);
/* The leader's commit index as this node knows it. */
uint64_t node__leader_commit(const struct node *n);

/* health.c: the readiness rule, pure. */
struct node__ready_in {
    bool stopping;            /* shutting down or handing leadership over */
    bool removed, conflict;   /* the identity states of identity.c */
    bool member;              /* the applied configuration lists this node */
    bool leads;               /* this node is the leader */
    bool leader_known;        /* the core knows a leader */
    uint64_t since_leader_ms; /* since the leader was last heard from */
    uint64_t election_ms;     /* the election timeout */
    uint64_t applied;         /* applied index */
    uint64_t leader_commit;   /* the leader's commit index, as known here */
    uint64_t max_lag;         /* NODE_READY_MAX_LAG */
};
struct node__ready {
    bool ready;      /* all of the three below, and not stopping */
    bool member;     /* a member (voter or learner), not removed, no conflict */
    bool has_leader; /* leads, or follows a leader heard within an election timeout */
    bool caught_up;  /* leader_commit - applied <= max_lag */
    uint64_t lag;    /* leader_commit - applied (0 if ahead) */
    char why[160];   /* the first condition that failed; "" when ready */
};
void node__ready_eval(const struct node__ready_in *in, struct node__ready *out);
/* The handlers (health.c). */
void node__on_livez(void *ud, struct http_req *req);
void node__on_readyz(void *ud, struct http_req *req);

#endif
