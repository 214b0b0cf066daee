/* The Raft consensus core: a pure, deterministic state machine.
 *
 * It owns one node's view of the replicated log, its role and term, the
 * per-follower replication progress and the cluster configuration. It does
 * no I/O, reads no clock, starts no thread and keeps no global state: the
 * caller feeds it messages (raft_step), time (raft_tick) and requests
 * (raft_propose, raft_read_index, ...), and collects what must be done in a
 * batch (raft_ready): state and entries to persist, messages to send,
 * committed entries to apply, outcomes of requests. Randomness (election
 * timeouts) comes from the seed in the config, so the same inputs always give
 * the same outputs; a whole cluster can run inside one test process.
 *
 * Threading: a struct raft is used by one thread at a time (the node's loop
 * thread); nothing in it is shared.
 *
 * Ownership: the core copies everything it is given (proposal bytes, decoded
 * messages) before the call returns. Everything reachable from a ready batch
 * is owned by the core and stays valid and unchanged until raft_advance(),
 * whatever else is called meanwhile (raft_step, raft_propose, raft_tick may be
 * called while a ready is being persisted); raft_ready() may not be called
 * again before raft_advance().
 *
 * The contract of a ready batch, in order:
 *   1. rd.msgs may be sent at once, before anything is persisted. They never
 *      depend on state that is not yet durable (the leader's appends, which
 *      the thesis (10.2.1) allows in parallel with its own disk write; the
 *      leader counts itself toward a commit only after raft_advance()).
 *      A RAFT_MSG_SNAP arrives with snap.data == NULL: the caller fills it
 *      with snap.len bytes from offset snap.offset of its snapshot
 *      snap.meta.index (the latest it reported or restored; keep the one
 *      before it too until the next ready, for chunks already handed out).
 *   2. Persist, in this order: rd.snap_chunk (if set; a chunk with .last
 *      completes the snapshot and the stored log is then dropped: the log
 *      restarts after snap_chunk->meta.index), rd.entries (truncating the
 *      stored log from rd.entries[0].index first), rd.hs (if changed). A new
 *      term or vote must be durable before any message that depends on it
 *      leaves: that is why such messages are in msgs_after, never in msgs.
 *   3. Send rd.msgs_after, only once step 2 is durable (a vote, an append
 *      acknowledgement and a snapshot-chunk acknowledgement promise that
 *      something is on disk).
 *   4. Apply rd.committed in order. These entries are already durable on
 *      this node (the core never hands out an entry to apply before it has
 *      been persisted), so they may be applied before step 2 finishes.
 *      rd.snap_chunk with .last set means: after persisting the chunk,
 *      replace the state machine with the snapshot before applying anything
 *      in rd.committed.
 *   5. Handle rd.props, rd.reads (serve a read once the state machine has
 *      applied up to its index), rd.soft changes.
 *   6. raft_advance(r, &rd).
 */
#ifndef CRAFT_RAFT_H
#define CRAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Most members (voters plus learners) a configuration may hold. */
#define RAFT_MAX_MEMBERS 32
/* No node has this id; "no leader", "no vote". */
#define RAFT_NONE 0

/* Bounds on what a message may carry (docs/architecture.md). A term or an
 * index is a counter that grows by one per election or per entry, so no
 * real cluster comes near 2^62; a message with a larger term, index,
 * commit or hint, or a range (an append's index + entries, a snapshot
 * chunk's offset + length) beyond it, is dropped and counted, never
 * adopted: one forged or corrupted value could otherwise end every future
 * election (terms that can no longer grow) or wrap an index. The bound
 * also keeps every term and index below 2^63, so they fit a signed 64-bit
 * integer (JSON, jansson's json_int_t). A node never campaigns into the
 * last term below the bound (raft_campaign: CRAFT_EINVAL, counted). */
#define RAFT_TERM_MAX (UINT64_C(1) << 62)
#define RAFT_INDEX_MAX (UINT64_C(1) << 62)
_Static_assert(RAFT_TERM_MAX < INT64_MAX && RAFT_INDEX_MAX < INT64_MAX,
               "terms and indexes must fit a signed 64-bit integer");
/* Most a single message may raise our term by. A legitimate jump is the
 * number of elections a node missed while it was away; a bigger one is
 * taken in steps: the term moves up by this much (as if that many
 * elections had passed unseen: no vote, no leader) and the message is
 * dropped and counted; the sender's next message moves it further. A
 * forged term can then cost an election, never the term space. */
#define RAFT_TERM_JUMP_MAX (UINT64_C(1) << 20)

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
};
const char *raft_role_name(enum raft_role role);

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* opaque command for the state machine */
    RAFT_ENTRY_NOOP = 1,   /* the leader's empty entry at the start of a term */
    RAFT_ENTRY_CONF = 2,   /* a membership change, see raft_conf_change */
};

struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    const uint8_t *data; /* len bytes; owned by whoever provided the entry */
};

/* A cluster configuration: who votes and who only receives the log. */
struct raft_conf {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[RAFT_MAX_MEMBERS];
    uint64_t learners[RAFT_MAX_MEMBERS];
};

/* Single-server membership changes, one at a time. */
enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1,   /* add a voter, or promote a learner */
    RAFT_CONF_ADD_LEARNER = 2, /* add a non-voting member */
    RAFT_CONF_REMOVE = 3,      /* remove a voter or a learner */
    /* A founding voter, written only by raft_bootstrap: every founder but
     * the last has one, and the founding configuration takes effect at
     * once with the last founder's ADD_VOTER. A node holding only some of
     * these entries must not believe in a configuration that never was
     * (a prefix {n1} of founders {n1,n2,n3} would let n1 lead alone). */
    RAFT_CONF_FOUNDER = 4,
    /* Make a learner a voter; refused (CRAFT_ENOTFOUND) for anyone else,
     * so that a late promotion cannot bring back a removed node. */
    RAFT_CONF_PROMOTE = 5,
};

/* The payload of a RAFT_ENTRY_CONF entry, encoded by raft_conf_change_encode:
 * an operation, a node id and opaque context bytes (craftd puts the member's
 * name and addresses there; the core passes them through). */
struct raft_conf_change {
    uint8_t op; /* enum raft_conf_op */
    uint64_t node;
    uint32_t ctx_len;
    const uint8_t *ctx;
};

/* State that must be durable before messages depending on it are sent. */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote;   /* RAFT_NONE if none in this term */
    uint64_t commit; /* persisted for a faster restart; not safety-critical */
};

/* Identifies a snapshot: the last entry it covers and the configuration as
 * of that entry. size is the byte length of the caller's snapshot data. */
struct raft_snap_meta {
    uint64_t index;
    uint64_t term;
    uint64_t size;
    struct raft_conf conf;
};

/* A piece of a snapshot received from the leader, to be written at offset of
 * the snapshot identified by meta. last: this chunk completes it. */
struct raft_snap_chunk {
    struct raft_snap_meta meta;
    uint64_t offset;
    uint32_t len;
    const uint8_t *data;
    bool last;
};

enum raft_msg_type {
    RAFT_MSG_APP = 1,           /* append entries (leader -> follower) */
    RAFT_MSG_APP_RESP,          /* its answer */
    RAFT_MSG_VOTE,              /* request vote */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PRE_VOTE,          /* would you vote for me? (term not raised) */
    RAFT_MSG_PRE_VOTE_RESP,
    RAFT_MSG_HEARTBEAT,         /* leader liveness + commit + read round */
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAP,              /* one chunk of a snapshot */
    RAFT_MSG_SNAP_RESP,         /* chunk acknowledged / snapshot refused */
    RAFT_MSG_TIMEOUT_NOW,       /* leadership transfer: campaign now */
    RAFT_MSG_PROP,              /* a follower forwards a proposal */
    RAFT_MSG_PROP_RESP,         /* where the leader put it, or why not */
    RAFT_MSG_READ_INDEX,        /* a follower asks for a read index */
    RAFT_MSG_READ_INDEX_RESP,
    RAFT_MSG_TRANSFER,          /* a follower forwards a transfer request */
    RAFT_MSG__COUNT
};
const char *raft_msg_type_name(int type);

/* A message between two cores. Fields a type does not use are zero.
 *
 * field      used by
 * index      APP: index before entries; APP_RESP: last index matched, or the
 *            rejected index; (PRE_)VOTE: candidate's last index;
 *            PROP_RESP, READ_INDEX_RESP: the index assigned / to read at;
 *            SNAP_RESP: the follower's last index when it refuses
 * log_term   APP: term at index; APP_RESP (reject): term at hint;
 *            (PRE_)VOTE: candidate's last term; PROP_RESP: entry's term
 * commit     APP, HEARTBEAT: leader's commit index
 * hint       APP_RESP (reject): follower's suggested next probe index
 * ctx        HEARTBEAT(_RESP): read round; PROP(_RESP), READ_INDEX(_RESP):
 *            the requester's id for the request; TRANSFER: target node;
 *            APP, SNAP: the leader's stamp of the member's progress, echoed
 *            by the answers (APP_RESP, SNAP_RESP; 0 from a sender that does
 *            not echo it): an answer to another stamp is ignored
 * reject     *_RESP: refused
 * err        PROP_RESP, READ_INDEX_RESP: why refused (craft error code)
 * transfer   VOTE: campaign caused by a leadership transfer (bypasses leases)
 * entries    APP: entries to append; PROP: the one proposed entry
 * snap       SNAP: snapshot meta, chunk offset and data;
 *            SNAP_RESP: snap.meta.index and snap.offset = next offset wanted
 */
struct raft_msg {
    uint8_t type;
    bool reject;
    bool transfer;
    int32_t err;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t index;
    uint64_t log_term;
    uint64_t commit;
    uint64_t hint;
    uint64_t ctx;
    uint32_t n_entries;
    struct raft_entry *entries;
    struct raft_snap_chunk snap;
};

/* The outcome of raft_propose / raft_propose_conf, by the caller's id.
 * err == 0: the entry was appended to the leader's log at (index, term). It
 * is committed iff the entry later applied at index has that term; if an
 * entry of another term is applied at index, the proposal was lost.
 * err != 0: the entry was certainly not appended (e.g. CRAFT_ENOLEADER,
 * CRAFT_ENOTLEADER, CRAFT_ETRANSFER, CRAFT_EBUSY, CRAFT_EINVAL).
 * A proposal whose forwarding message is lost gets no outcome at all: the
 * caller times it out (the outcome is then unknown). */
struct raft_prop_result {
    uint64_t id;
    uint64_t index;
    uint64_t term;
    int err;
};

/* The outcome of raft_read_index, by the caller's id. err == 0: once the
 * state machine has applied index, a read served from it is linearizable.
 * err != 0: retry (CRAFT_ENOLEADER, CRAFT_EDROPPED, ...). */
struct raft_read_result {
    uint64_t id;
    uint64_t index;
    int err;
};

/* Volatile state the caller may want to observe (status, redirection). */
struct raft_soft_state {
    enum raft_role role;
    uint64_t leader; /* RAFT_NONE if unknown */
    uint64_t term;
};

struct raft_ready {
    bool hs_changed;
    struct raft_hard_state hs;

    struct raft_entry *entries; /* to persist, contiguous, ascending */
    size_t n_entries;

    struct raft_snap_chunk *snap_chunk; /* to persist, or NULL */

    struct raft_msg *msgs; /* send now */
    size_t n_msgs;
    struct raft_msg *msgs_after; /* send once persisted */
    size_t n_msgs_after;

    struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;

    struct raft_prop_result *props;
    size_t n_props;
    struct raft_read_result *reads;
    size_t n_reads;

    bool soft_changed;
    struct raft_soft_state soft;

    /* The log behind the last snapshot has reached snapshot_threshold: take
     * a snapshot of the state machine at its applied index and report it
     * with raft_snapshot_taken(). Repeated until that is done. */
    bool want_snapshot;
};

/* Messages refused by the core, and campaigns it would not start: the
 * caller may log these (rate-limited) or export them. Counted since
 * raft_new. */
struct raft_stats {
    /* A term, index, commit or hint beyond RAFT_TERM_MAX/RAFT_INDEX_MAX, a
     * range that overflows them, or a previous-entry term above the
     * message's own term: raft_step returned CRAFT_EINVAL. */
    uint64_t absurd;
    /* A term raised by RAFT_TERM_JUMP_MAX instead of the message's term. */
    uint64_t jumps_capped;
    /* An APP, HEARTBEAT, SNAP or TIMEOUT_NOW of our term from another node
     * than the leader we know for that term (at most one node leads a
     * term: it is forged, or a bug): refused, CRAFT_EINVAL. */
    uint64_t not_term_leader;
    /* Elections not started because the next term would reach
     * RAFT_TERM_MAX. */
    uint64_t campaigns_refused;
};

struct raft_config {
    uint64_t id;                 /* this node; never RAFT_NONE */
    uint64_t seed;               /* for randomized election timeouts */
    unsigned election_ticks;     /* e: timeout drawn from [e, e + j); default 10 */
    unsigned election_jitter_ticks; /* j: default e; 2 <= j <= e */
    unsigned heartbeat_ticks;    /* default 1; must be < election_ticks */
    unsigned max_inflight;       /* appends in flight per follower; default 64 */
    size_t max_inflight_bytes;   /* bytes in flight per follower; default 8 MiB */
    size_t max_msg_bytes;        /* entry bytes per append; default 1 MiB */
    size_t max_uncommitted_bytes;/* refuse proposals past this; default 64 MiB */
    uint64_t snapshot_threshold; /* entries since last snapshot; 0 = never */
    uint64_t snapshot_trailing;  /* entries kept behind a snapshot; default 1024 */
    size_t snapshot_trailing_bytes; /* ... and at most this many bytes of
                                    them; default 4 MiB */
    uint32_t snap_chunk_bytes;   /* bytes per snapshot chunk; default 256 KiB */
    /* Committed entries one ready batch hands out to apply, in bytes, each
     * entry counting its length plus RAFT_APPLY_ENTRY_COST; always at least
     * one entry. Bounds the caller's work per batch, so that a restart's
     * replay or a follower's catch-up is applied over many batches rather
     * than in one (raft_apply_pending says more is due). Default 64 KiB. */
    size_t max_apply_bytes;
    /* Ticks the leader lease is shortened by, for clocks that run at
     * different rates (docs/read-lease.md); default max(1, election_ticks
     * / 10); must leave a lease: < election_ticks - 1. */
    unsigned lease_margin_ticks;
    /* A leader steps down (check-quorum) once it has heard from no quorum
     * in this many election timeouts in a row, each one counted from the
     * end of the last: after between r and r + 1 election timeouts of
     * silence. Default 1, as etcd. More keeps a leader through lossy
     * spells shorter than that (its followers still wait out their own
     * timeouts, and the lease is judged apart, readindex.c). */
    unsigned check_quorum_rounds;
    bool disable_pre_vote;       /* tests only */
    bool disable_check_quorum;   /* tests only */
};

/* What the caller had persisted, to restart from. entries: the stored log,
 * contiguous; entries[0].index <= snap.index + 1 (entries at or below
 * snap.index are kept only as the log's base). All of it is copied. */
struct raft_persisted {
    struct raft_hard_state hs;
    struct raft_snap_meta snap; /* snap.index == 0: no snapshot */
    const struct raft_entry *entries;
    size_t n_entries;
};

struct raft;

/* Create a core. persisted may be NULL (a brand-new node with an empty log
 * and no configuration: it waits to be contacted by a leader, or for
 * raft_bootstrap()). Persisted state without a term (hs.term == 0) and
 * without a snapshot counts as none: entries without a hard state are the
 * remains of a torn first write. Returns 0 and sets *out, or an error: CRAFT_EINVAL for a
 * bad config, CRAFT_ECORRUPT for persisted state that contradicts itself
 * (e.g. a commit index beyond the last entry: an acknowledged write lost;
 * a term beyond RAFT_TERM_MAX). */
int raft_new(const struct raft_config *cfg, const struct raft_persisted *p,
             struct raft **out);
void raft_free(struct raft *r);

/* Start a brand-new cluster: append one RAFT_ENTRY_CONF entry per voter (the
 * same on every founding node, ctxs[i] for voters[i], may be NULL: all but
 * the last RAFT_CONF_FOUNDER, the last RAFT_CONF_ADD_VOTER), commit them in
 * term 1. Only on an empty log, else CRAFT_EINVAL. The entries and
 * hard state come out in the next ready, to be persisted as usual. */
int raft_bootstrap(struct raft *r, const uint64_t *voters, size_t n,
                   const struct raft_conf_change *ctxs);

/* Inputs. Deliver every tick that is due before stepping a message: a
 * follower refuses votes for election_ticks of its ticks after it stepped
 * the leader's message, and ticks that elapsed before the step but are
 * delivered after it would cut that promise short, and with it the
 * leader's lease (docs/read-lease.md). */
/* Returns 0, or CRAFT_EINVAL for a message the core refuses (not for us,
 * malformed, absurd values, a leader's message for our term from another
 * than its leader: struct raft_stats); a refused message changes nothing
 * else than the counters, except that a term jump beyond
 * RAFT_TERM_JUMP_MAX still moves the term by that much. */
int raft_step(struct raft *r, const struct raft_msg *m);
void raft_tick(struct raft *r);
/* Propose bytes for the state machine. id is the caller's, reported back in
 * rd.props. Callable on any node (a follower forwards to the leader). */
int raft_propose(struct raft *r, uint64_t id, const void *data, size_t len);
/* Propose a membership change (see struct raft_conf_change). */
int raft_propose_conf(struct raft *r, uint64_t id,
                      const struct raft_conf_change *cc);
/* Ask for a linearizable read index, reported in rd.reads under id. */
int raft_read_index(struct raft *r, uint64_t id);
/* Hand leadership to target (callable on any node). */
int raft_transfer_leader(struct raft *r, uint64_t target);
/* Start an election now (tests, and the operator's "campaign"). */
int raft_campaign(struct raft *r);
/* The caller has taken a snapshot of its state machine at index (<= the
 * applied index it has reached), size bytes long. The core records it as
 * the snapshot to send lagging followers and compacts its log behind it,
 * keeping snapshot_trailing entries (at most snapshot_trailing_bytes of
 * them: a follower further behind gets the snapshot). *compact_to, if not NULL, is set to the
 * first index the caller still has to keep in its own log storage. */
int raft_snapshot_taken(struct raft *r, uint64_t index, uint64_t size,
                        uint64_t *compact_to);

/* What one entry costs a batch's max_apply_bytes beside its data: the
 * caller's work per entry (index, watchers, answers) whatever its size. */
#define RAFT_APPLY_ENTRY_COST 64

/* Outputs. */
bool raft_has_ready(const struct raft *r);
/* Committed, durable entries wait to be handed out to apply: the last
 * batch stopped at max_apply_bytes. The next raft_ready hands out more. */
bool raft_apply_pending(const struct raft *r);
/* The next raft_ready hands out at most bytes of committed entries (as
 * max_apply_bytes counts them; one entry always) instead of
 * max_apply_bytes: for a caller whose batches come further apart (each
 * waits for a disk write) and that gives each one more to apply, so that
 * applying keeps pace with what commits. */
void raft_set_apply_budget(struct raft *r, size_t bytes);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* While a batch is out (between raft_ready and raft_advance, its disk write
 * under way), move up to cap heartbeats and heartbeat answers from the
 * outbox into out, to be sent now; returns how many. They promise nothing
 * durable, so a slow disk write need not hold them back: a leader keeps its
 * followers' election timers reset, and a follower keeps answering rounds.
 * None while a term or vote is on its way to disk (the batch out or the
 * state since changes one): those wait for the batch like any message.
 * Anything else, and at any other time, 0. */
size_t raft_take_heartbeats(struct raft *r, struct raft_msg *out, size_t cap);

/* Observers. */
struct raft_soft_state raft_soft(const struct raft *r);
struct raft_hard_state raft_hard(const struct raft *r);
uint64_t raft_id(const struct raft *r);
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r);
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r); /* handed out to apply */
const struct raft_conf *raft_conf(const struct raft *r);
const struct raft_snap_meta *raft_snapshot(const struct raft *r);
/* The configuration in force at index (snapshot index <= index <= commit),
 * for the meta of a snapshot taken there. */
const struct raft_conf *raft_conf_at(const struct raft *r, uint64_t index);
/* The index of the entry that made raft_conf() (committed or not), or the
 * snapshot's index when that configuration came with the snapshot. */
uint64_t raft_conf_index(const struct raft *r);
/* The leader's lease: true while this node is leader and has heard from a
 * quorum within the last election timeout less a tick and less
 * cfg.lease_margin_ticks, measured from the tick at which it sent the
 * heartbeat round that quorum answered. Reads served under a valid lease
 * need no round trip (level=weak). Never true during a transfer, nor for
 * the rest of a term in which this leader sent a TIMEOUT_NOW (it may
 * arrive late, after the transfer was aborted). The safety argument, and
 * the bound on clock drift it assumes, are in docs/read-lease.md.
 *
 * now is the caller's clock in ticks, read at the moment of the check: the
 * ticks already given to raft_tick (raft_now) plus those that have elapsed
 * since and not yet been delivered (a paused or busy process owes some).
 * The lease is judged at max(now, raft_now(r)), so a stale clock can make
 * it shorter, never longer. */
bool raft_lease_valid(const struct raft *r, uint64_t now);
/* A read under the lease: if it is valid at now (as above), *index is the
 * commit index and a read served once the state machine has applied it is
 * linearizable; otherwise CRAFT_ENOTLEADER (not leader) or CRAFT_ETIMEOUT
 * (no lease). */
int raft_read_lease(const struct raft *r, uint64_t now, uint64_t *index);
/* What the core refused so far (struct raft_stats). */
struct raft_stats raft_stats(const struct raft *r);
/* Ticks delivered by raft_tick since raft_new. */
uint64_t raft_now(const struct raft *r);
/* For status pages: a follower's replication progress as seen by the leader.
 * Returns false if r is not leader or node is not a member. */
bool raft_progress(const struct raft *r, uint64_t node, uint64_t *match,
                   uint64_t *next);
/* For promotions: true iff r is leader, node is another member, the leader
 * has had a successful append response from it since it took it on (as a
 * new member, or at its election), and its match is within max_lag of the
 * commit index. A member that never answered is never caught up, however
 * young the log. */
bool raft_caught_up(const struct raft *r, uint64_t node, uint64_t max_lag);
/* Term of the entry at index, or 0 if it is not in the log (compacted or
 * beyond the end). */
uint64_t raft_term_at(const struct raft *r, uint64_t index);

/* Configuration helpers. */
bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id);
/* Apply a change to a configuration; CRAFT_EINVAL if it makes no sense
 * (remove a non-member, add an existing voter, remove the last voter...). */
int raft_conf_apply(struct raft_conf *c, const struct raft_conf_change *cc);

/* Membership-change payload codec. encode writes at most
 * raft_conf_change_size(cc) bytes into buf; decode points cc->ctx into buf. */
size_t raft_conf_change_size(const struct raft_conf_change *cc);
void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *buf);
int raft_conf_change_decode(const uint8_t *buf, size_t len,
                            struct raft_conf_change *cc);

/* Message wire codec (codec.c). Format version 1, little-endian; see
 * docs/wire-format.md. encode: the exact size comes from raft_msg_size(); the
 * caller supplies a buffer that large. decode: rejects any malformed input
 * with CRAFT_ECORRUPT/CRAFT_ETRUNCATED/CRAFT_EVERSION and never reads out of
 * bounds; on success m->entries is an array allocated with craft_malloc
 * (free it with raft_msg_decoded_free) whose data pointers, like
 * m->snap.data, point into buf: buf must outlive m. */
#define RAFT_WIRE_VERSION 1
size_t raft_msg_size(const struct raft_msg *m);
void raft_msg_encode(const struct raft_msg *m, uint8_t *buf);
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m);
void raft_msg_decoded_free(struct raft_msg *m);

#endif
