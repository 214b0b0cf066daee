/* A tiny deterministic in-process network of Raft cores for unit tests.
 *
 * Owns N cores (ids 1..N), their "disks" (hard state, log, snapshot, kept in
 * memory), their state machines (the list of 8-byte values applied) and one
 * FIFO queue of encoded messages between them. Every ready batch is handled
 * by the contract of raft.h: msgs sent at once, persisted instantly,
 * msgs_after sent, committed entries applied, results recorded, advance.
 * Messages go through the real wire codec. Links can be cut one way or both,
 * nodes crashed and restarted from what they persisted. The harness itself
 * checks, on every batch, that committed entries were durable before being
 * handed out, that no two nodes apply different entries at one index, and
 * counts messages that promise durability but were not in msgs_after.
 * Single-threaded; rnet_free() frees everything. */
#ifndef CRAFT_TESTS_RAFT_NET_H
#define CRAFT_TESTS_RAFT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define RNET_MAX 8
#define RNET_RESULTS 1024

struct rnet_node {
    uint64_t id;
    struct raft_config cfg;
    struct raft *r; /* NULL while crashed */

    /* The disk. */
    struct raft_hard_state hs;
    struct raft_entry *log; /* data of each craft_malloc'd */
    size_t n_log, cap_log;
    struct raft_snap_meta snap; /* snap.index 0: none */
    uint8_t *snap_data;
    struct raft_snap_meta prev_snap;
    uint8_t *prev_snap_data;
    uint8_t *recv_data; /* snapshot being received */
    uint64_t recv_index, recv_size;

    /* The state machine: values of applied normal entries, in order. */
    uint64_t *sm;
    size_t n_sm, cap_sm;
    uint64_t applied;

    /* What the core reported. */
    struct raft_prop_result props[RNET_RESULTS];
    size_t n_props;
    struct raft_read_result reads[RNET_RESULTS];
    size_t n_reads;
    bool want_snapshot;
    unsigned n_snap_chunks; /* chunks persisted */
};

struct rnet_msg;

/* Called for every message a core emits (after: it was in msgs_after);
 * return false to drop it. */
typedef bool (*rnet_watch_fn)(void *arg, const struct raft_msg *m, bool after);

struct rnet {
    size_t n;
    struct rnet_node nodes[RNET_MAX];
    bool cut[RNET_MAX + 1][RNET_MAX + 1]; /* [from][to]: dropped */
    struct rnet_msg *head, *tail;

    unsigned sent[RAFT_MSG__COUNT];      /* emitted by cores, by type */
    unsigned delivered[RAFT_MSG__COUNT]; /* stepped into a core */
    /* Messages that promise something durable, found in msgs (must be 0),
     * and found in msgs_after. */
    unsigned early_votes, early_grants, early_acks;
    unsigned after_votes, after_grants, after_acks;

    rnet_watch_fn watch;
    void *watch_arg;
    bool auto_snapshot; /* take a snapshot whenever want_snapshot */

    uint64_t *applied_terms; /* [index]: term applied there by anyone */
    size_t n_applied_terms;
};

/* n nodes, none bootstrapped; tmpl gives every setting but id and seed. */
struct rnet *rnet_new(size_t n, const struct raft_config *tmpl);
void rnet_free(struct rnet *net);
/* Bootstrap nodes 1..n_voters as the founding voters. */
void rnet_bootstrap(struct rnet *net, size_t n_voters);

struct rnet_node *rnet_node(struct rnet *net, uint64_t id);
struct raft *rnet_raft(struct rnet *net, uint64_t id);

/* Handle every ready of node id (nothing if crashed). */
void rnet_flush(struct rnet *net, uint64_t id);
/* Flush every node, then deliver one queued message. false: idle. */
bool rnet_step(struct rnet *net);
/* rnet_step until idle. */
void rnet_settle(struct rnet *net);
/* k times: tick every live node, settle. */
void rnet_tick(struct rnet *net, unsigned k);
/* Tick until exactly one live leader has committed an entry of its term;
 * returns its id (fails the test after max_ticks). */
uint64_t rnet_elect(struct rnet *net, unsigned max_ticks);
/* The live leader of the highest term, RAFT_NONE if none; fails the test if
 * two live nodes lead the same term. */
uint64_t rnet_leader(struct rnet *net);
unsigned rnet_count_leaders(struct rnet *net);

void rnet_cut(struct rnet *net, uint64_t a, uint64_t b);     /* both ways */
void rnet_cut_one(struct rnet *net, uint64_t from, uint64_t to);
void rnet_isolate(struct rnet *net, uint64_t id);
void rnet_heal(struct rnet *net);

void rnet_crash(struct rnet *net, uint64_t id);
/* Restart from the disk; returns raft_new's result. */
int rnet_restart(struct rnet *net, uint64_t id);

/* Propose the 8-byte value v on node id under request id req. */
int rnet_propose(struct rnet *net, uint64_t id, uint64_t req, uint64_t v);
/* Propose a membership change. */
int rnet_conf(struct rnet *net, uint64_t id, uint64_t req, uint8_t op,
              uint64_t node);
/* Snapshot node id's state machine at its applied index; returns
 * raft_snapshot_taken's result. */
int rnet_snapshot(struct rnet *net, uint64_t id);

/* Lookups of results by request id; NULL if none. */
const struct raft_prop_result *rnet_prop(struct rnet *net, uint64_t id,
                                         uint64_t req);
const struct raft_read_result *rnet_read(struct rnet *net, uint64_t id,
                                         uint64_t req);
/* Is the state machine of a a prefix of b's or b's of a's? */
bool rnet_sm_consistent(struct rnet *net, uint64_t a, uint64_t b);

/* Number of queued messages. */
size_t rnet_queued(const struct rnet *net);

#endif
