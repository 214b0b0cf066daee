/* Internals of the Raft core shared by its files (raft__ prefix).
 *
 * File map:
 *   raft.c        creation, restore, bootstrap, observers, tick, role changes
 *   step.c        raft_step: the term check, then one step function per role
 *   election.c    campaigns, (pre-)votes, leadership transfer
 *   replication.c the leader's appends/heartbeats/snapshots, the follower's
 *                 handling of them, the commit rule
 *   propose.c     proposals and membership changes, local or forwarded
 *   readindex.c   read-index rounds and the leader lease
 *   log.c         the in-memory log (stable + unstable part)
 *   progress.c    per-follower progress and the in-flight window
 *   conf.c        configurations and their history
 *   ready.c       the outbox, the ready batch, advance, the arena
 *   codec.c       the wire format of messages and membership changes
 */
#ifndef CRAFT_RAFT_INT_H
#define CRAFT_RAFT_INT_H

#include <assert.h>

#include "raft/raft.h"

/* ---- arena: bump allocation for everything a ready batch points at ---- */

struct raft__block;
struct raft__arena {
    struct raft__block *head; /* newest block first */
};
void *raft__arena_alloc(struct raft__arena *a, size_t size);
void raft__arena_reset(struct raft__arena *a); /* keeps one block for reuse */
void raft__arena_free(struct raft__arena *a);

int raft__grow(void *arr, size_t *cap, size_t n, size_t size);

/* ---- log ---- */

/* The uncompacted log. ents[0] has index offset + 1; the entry at offset
 * (compacted, or the snapshot's last entry) is known only by its term.
 * Invariants: applied <= committed <= last; stabled <= last;
 * offset <= applied (we never compact what was not applied). */
struct raft__log {
    struct raft_entry *ents; /* data of each is craft_malloc'd, owned */
    size_t n;
    size_t cap;
    uint64_t offset;      /* index just before ents[0] */
    uint64_t offset_term; /* its term */
    uint64_t stabled;     /* last index known durable */
    uint64_t committed;   /* highest index known committed */
    uint64_t applied;     /* highest index handed out to apply */
};

static inline uint64_t raft__log_last(const struct raft__log *l)
{
    return l->offset + l->n;
}
uint64_t raft__log_term(const struct raft__log *l, uint64_t i); /* 0: unknown */
static inline const struct raft_entry *raft__log_at(const struct raft__log *l,
                                                    uint64_t i)
{
    assert(i > l->offset && i <= raft__log_last(l));
    return &l->ents[i - l->offset - 1];
}
bool raft__log_up_to_date(const struct raft__log *l, uint64_t idx,
                          uint64_t term);

/* ---- progress of one member, as tracked by the leader ---- */

enum raft__pr_state {
    RAFT__PROBE = 0,  /* one append at a time until we find where logs match */
    RAFT__REPLICATE,  /* pipeline appends, up to the in-flight window */
    RAFT__SNAPSHOT,   /* sending a snapshot, chunk by chunk */
};

struct raft__inflight {
    uint64_t last;  /* last index of an append in flight */
    size_t bytes;   /* its entry bytes */
};

struct raft__progress {
    uint64_t id;
    bool learner;
    bool recent_active;  /* heard from since the last check-quorum */
    bool answered;       /* a successful append response came from it
                            since this leader took it on (a newcomer, or
                            all members at election): match is real */
    uint64_t stamp;      /* nonzero, new at each reset (election, (re)add):
                            appends and snapshot chunks carry it in ctx,
                            the answers echo it, and an answer with another
                            stamp (sent before a remove and re-add of this
                            id) does not count */
    uint8_t state;       /* enum raft__pr_state */
    bool probe_sent;     /* PROBE: an append is outstanding, wait */
    bool resync;         /* REPLICATE: it lags; send even an empty append
                            to find out whether appends were lost */
    int8_t vote;         /* campaign: 0 unknown, 1 granted, -1 rejected */
    uint64_t match;      /* highest index known replicated there */
    uint64_t next;       /* next index to send */
    uint64_t commit_sent;/* commit index last told to it */
    uint64_t acked_round;/* highest heartbeat round it answered */
    /* In-flight appends, a ring of at most cfg.max_inflight items. */
    struct raft__inflight *infl;
    unsigned infl_start;
    unsigned infl_count;
    size_t infl_bytes;
    /* SNAPSHOT state. */
    uint64_t snap_index;  /* snapshot being sent */
    uint64_t snap_offset; /* bytes the follower has acknowledged */
    unsigned snap_wait;   /* ticks since last chunk sent or acked */
};

/* ---- pending reads (leader side) ---- */

struct raft__read {
    uint64_t id;    /* requester's id */
    uint64_t from;  /* requesting node (self for local) */
    uint64_t index; /* commit index when the request arrived */
    uint64_t round; /* heartbeat round that must be confirmed; 0 = waits
                       for the leader's first commit in its term */
};

/* ---- a configuration as of an index ---- */

struct raft__conf_at {
    uint64_t index;
    struct raft_conf conf;
};

struct raft {
    struct raft_config cfg;
    uint64_t id;
    uint64_t rng; /* xorshift state for election timeouts */

    /* Persistent state (mirrored to the caller through ready.hs). */
    uint64_t term;
    uint64_t vote;

    enum raft_role role;
    uint64_t lead;
    /* The leader of `term` once known (volatile; RAFT_NONE after a restart
     * or a new term): no other node's APP, HEARTBEAT, SNAP or TIMEOUT_NOW
     * of this term is taken. Unlike lead it survives a pre-vote or a lost
     * campaign in the same term. */
    uint64_t term_lead;
    struct raft_stats stats;
    struct raft__log log;

    /* Membership: conf is in force: the snapshot's, changed by every
     * membership entry in the log, committed or not (thesis §4.1). confs
     * holds those changes, for conf_at(index) and for truncation. */
    struct raft_conf conf;
    struct raft__conf_at *confs;
    size_t n_confs;
    struct raft_conf founders; /* founders seen, not yet in force */
    uint64_t pending_conf_index; /* last conf entry the leader appended */

    struct raft__progress prs[RAFT_MAX_MEMBERS];
    unsigned n_prs;
    struct raft__inflight *infl_pool; /* windows for every possible member */
    struct raft__inflight *infl_free[RAFT_MAX_MEMBERS];
    unsigned n_infl_free;

    /* Time, in ticks. */
    uint64_t now;
    unsigned election_elapsed;
    unsigned heartbeat_elapsed;
    unsigned randomized_timeout;
    unsigned snap_resend_ticks;

    /* Leader: transfer, flow control. */
    uint64_t transferee;
    bool timeout_now_sent; /* in this term: no lease until it ends */
    bool leaving; /* our own removal committed: hand over, then go */
    uint64_t uncommitted_bytes;

    uint64_t stamps;          /* progress stamps handed out */

    /* Leader: read rounds and lease. */
    uint64_t round;           /* last heartbeat round sent */
    uint64_t round_confirmed; /* last round a quorum answered */
    unsigned quorum_misses;   /* check-quorum rounds missed in a row */
    bool round_wanted;        /* reads wait for a round not yet sent */
    uint64_t lease_floor;     /* rounds of an earlier leadership don't count */
    uint64_t lease_start;     /* tick at which round_confirmed was sent */
    uint64_t round_ticks[64]; /* send tick of round r at [r % 64] */
    struct raft__read *reads;
    size_t n_reads;
    size_t cap_reads;

    /* Snapshots. */
    struct raft_snap_meta snap; /* latest snapshot (index 0: none) */
    struct raft_snap_meta recv; /* snapshot being received (follower) */
    uint64_t recv_next;         /* next offset expected of it */
    struct raft_snap_chunk *pending_chunk; /* for the next ready */

    /* Outbox: what the next ready will carry (allocated in `arena`). */
    struct raft__arena arena;
    struct raft_msg *out;
    uint8_t *out_after; /* per message: must wait for persistence */
    size_t n_out;
    size_t cap_out;
    struct raft_prop_result *props;
    size_t n_props;
    size_t cap_props;
    struct raft_read_result *read_results;
    size_t n_read_results;
    size_t cap_read_results;

    /* Last hard/soft state handed out in a ready. */
    struct raft_hard_state prev_hs;
    struct raft_soft_state prev_ss;

    /* The ready batch being persisted (between raft_ready and advance). */
    bool ready_out;
    struct raft__arena ready_arena;
    uint64_t ready_last;   /* last entry index it asked to persist */
    struct raft_hard_state ready_hs; /* the hard state it made durable */
    bool ready_votes;    /* the batch out changes the term or vote */
    uint64_t stable_cap;   /* truncations meanwhile cap what it made stable */
    size_t apply_budget;   /* for the next ready; 0: cfg.max_apply_bytes */
    bool ready_snap_last;  /* it carried the last chunk of a snapshot */
    void **limbo;          /* entry data freed while it was out */
    size_t n_limbo;
    size_t cap_limbo;
};

#define raft__quorum(n) ((n) / 2 + 1)

/* raft.c */
void raft__become_follower(struct raft *r, uint64_t term, uint64_t lead);
void raft__become_pre_candidate(struct raft *r);
void raft__become_candidate(struct raft *r);
void raft__become_leader(struct raft *r);
void raft__reset_timeout(struct raft *r);
void raft__tie_seen(struct raft *r);
bool raft__promotable(const struct raft *r);
struct raft__progress *raft__pr(struct raft *r, uint64_t id);

/* step.c */
void raft__step_leader(struct raft *r, const struct raft_msg *m);
void raft__step_candidate(struct raft *r, const struct raft_msg *m);
void raft__step_follower(struct raft *r, const struct raft_msg *m);

/* election.c */
/* Starts a (pre-)election. 0, or CRAFT_EINVAL (nothing done) if r may not
 * lead or the term space is used up (counted in campaigns_refused). */
int raft__campaign(struct raft *r, bool pre, bool transfer);
void raft__handle_vote(struct raft *r, const struct raft_msg *m);
void raft__handle_vote_resp(struct raft *r, const struct raft_msg *m);
void raft__self_vote_durable(struct raft *r);
int raft__transfer(struct raft *r, uint64_t target);
void raft__abort_transfer(struct raft *r);
void raft__maybe_timeout_now(struct raft *r, struct raft__progress *pr);
void raft__send_timeout_now(struct raft *r, uint64_t target);

/* replication.c */
void raft__bcast_heartbeat(struct raft *r);
void raft__send_appends(struct raft *r); /* at ready time */
bool raft__appends_pending(const struct raft *r);
void raft__handle_append(struct raft *r, const struct raft_msg *m);
void raft__handle_heartbeat(struct raft *r, const struct raft_msg *m);
void raft__handle_snap(struct raft *r, const struct raft_msg *m);
void raft__handle_append_resp(struct raft *r, const struct raft_msg *m);
void raft__handle_snap_resp(struct raft *r, const struct raft_msg *m);
void raft__handle_heartbeat_resp(struct raft *r, const struct raft_msg *m);
bool raft__maybe_commit(struct raft *r);
void raft__commit_to(struct raft *r, uint64_t index);
void raft__tick_snapshots(struct raft *r);
void raft__hand_over(struct raft *r);

/* propose.c */
uint64_t raft__append_local(struct raft *r, uint8_t type, const void *data,
                            size_t len);
void raft__handle_prop(struct raft *r, const struct raft_msg *m);
void raft__handle_prop_resp(struct raft *r, const struct raft_msg *m);
void raft__prop_result(struct raft *r, uint64_t id, uint64_t index,
                       uint64_t term, int err);

/* readindex.c */
/* A read from node from (ourselves, or a follower whose request carries
 * the term it had when it sent it). */
void raft__read_request(struct raft *r, uint64_t id, uint64_t from, uint64_t term);
void raft__reads_on_commit(struct raft *r);
void raft__reads_on_round(struct raft *r);
void raft__reads_fail(struct raft *r, int err);
void raft__read_result(struct raft *r, uint64_t id, uint64_t index, int err);
void raft__handle_read_index_resp(struct raft *r, const struct raft_msg *m);

/* log.c */
int raft__log_init(struct raft__log *l, const struct raft_persisted *p);
void raft__log_free(struct raft *r);
int raft__log_append(struct raft *r, const struct raft_entry *e, size_t n);
void raft__log_truncate(struct raft *r, uint64_t from);
void raft__log_compact(struct raft *r, uint64_t to);
void raft__log_restore(struct raft *r, uint64_t index, uint64_t term);
uint64_t raft__log_find_conflict(const struct raft__log *l,
                                 const struct raft_entry *e, size_t n);
uint64_t raft__log_hint(const struct raft__log *l, uint64_t idx,
                        uint64_t term);
void raft__free_data(struct raft *r, void *data);

/* progress.c */
void raft__pr_reset(struct raft *r, struct raft__progress *pr,
                    uint64_t next);
void raft__pr_become_probe(struct raft__progress *pr);
void raft__pr_become_replicate(struct raft__progress *pr);
void raft__pr_become_snapshot(struct raft__progress *pr, uint64_t index);
bool raft__pr_maybe_update(struct raft__progress *pr, uint64_t n);
/* m (APP_RESP, SNAP_RESP) answers a message sent under pr's stamp. */
bool raft__pr_current(const struct raft__progress *pr, const struct raft_msg *m);
bool raft__pr_maybe_decr(struct raft__progress *pr, uint64_t rejected,
                         uint64_t hint);
bool raft__pr_paused(const struct raft *r, const struct raft__progress *pr);
void raft__infl_add(struct raft *r, struct raft__progress *pr, uint64_t last,
                    size_t bytes);
void raft__infl_free_to(const struct raft *r, struct raft__progress *pr,
                        uint64_t index);
void raft__infl_free_first(const struct raft *r, struct raft__progress *pr);
bool raft__infl_full(const struct raft *r, const struct raft__progress *pr);
int raft__prs_init(struct raft *r);
void raft__prs_sync(struct raft *r); /* rebuild prs from conf */
void raft__prs_free(struct raft *r);

/* conf.c */
const struct raft_conf *raft__conf_at(const struct raft *r, uint64_t index);
void raft__conf_compact(struct raft *r, uint64_t index);
int raft__conf_on_append(struct raft *r, const struct raft_entry *e);
void raft__conf_truncate(struct raft *r, uint64_t from);
void raft__conf_restore(struct raft *r);

/* ready.c */
struct raft_msg *raft__send(struct raft *r, uint8_t type, uint64_t to);
void raft__send_after(struct raft *r, struct raft_msg *m);
void raft__drop_acks(struct raft *r, uint64_t from);

#endif
