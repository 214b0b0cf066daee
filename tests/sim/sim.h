/* The deterministic cluster simulator: many cores of src/raft in one process.
 *
 * One seed is one run, held in one struct sim: a cluster of nodes (the real
 * core plus a modelled disk and a tiny kv state machine each), a network
 * that carries every message as encoded bytes, clients, fault injection and
 * the invariant checkers. Every random choice comes from sim->rng, seeded by
 * the seed alone, so a seed replays exactly; nothing depends on time,
 * addresses or hash order. Time is a global step; each node has its own
 * clock, ticking at its own rate, that keeps running while the node is
 * paused (a frozen process).
 *
 * Ownership: a struct sim owns every buffer reachable from it and frees all
 * of it in sim_destroy(). Everything here is single-threaded; the parallel
 * runner (main.c) forks worker processes, each running seeds one at a time.
 *
 * Files: rng.c (PRNG), trace.c (event ring), net.c (network), disk.c (the
 * durable-state model), kv.c (state machine), node.c (ready processing,
 * crash, restart), client.c (clients, history), txn.c (the keys kept in
 * src/kv's state machine: CAS, multi-key transactions, listing, and the
 * model they are checked against), watch.c (src/watch's history and hub
 * at each node, watchers that resume across nodes), faults.c (crashes,
 * partitions, membership, transfers, pauses), identity.c (Raft ids and
 * incarnations, wiped and damaged disks, the re-add of a new incarnation,
 * the wipe scenario), scenario.c (scenario-shaped seeds: figure8, lease,
 * membership, pause, drift, transfer), check.c (invariants), lin.c
 * (history -> lincheck), run.c (one seed), selftest.c, main.c (CLI,
 * workers).
 *
 * Node ids: a node is a slot 1..n_nodes (n<slot> in traces, s->nodes[slot],
 * bitmasks and net.blocked by slot); its Raft id is craft_member_id("n<slot>",
 * incarnation of its data directory), a new one after each wipe (n3.2 is the
 * second incarnation of slot 3). Raft ids appear only at the boundary with
 * the cores: configurations, messages, votes, leaders (sim_slot_of maps back).
 */
#ifndef CRAFT_SIM_H
#define CRAFT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define SIM_MAX_NODES 9   /* slots 1..SIM_MAX_NODES */
/* Election timeouts after a change forwarded from a follower during which
 * no disk is wiped (identity.c); the window restarts when a node that froze
 * within it wakes. */
#define SIM_CONF_FWD_WINDOW 10
#define SIM_MAX_IDS 48    /* Raft ids (incarnations) one run may create */
#define SIM_MAX_CLIENTS 6 /* the last slot is the final-phase client */
#define SIM_MAX_KEYS 5
#define SIM_VAL_MAX 24
/* Keys of src/kv's state machine (txn.c): op->key ids from SIM_TKEY. */
#define SIM_TKEY 8
#define SIM_CAS_KEYS 2   /* t/c0, t/c1: CAS registers, checked by lincheck */
#define SIM_MKEYS 3      /* t/m/a..t/m/c: multi-key txns, listed */
#define SIM_MODEL_KEYS (SIM_CAS_KEYS + SIM_MKEYS)
#define SIM_ELECTION_TICKS 10
#define SIM_CLOCK_STEP 1000 /* clock units per step; a tick is ~spt of them */

/* ---- PRNG (rng.c): xoshiro256** seeded through splitmix64 ---- */

struct sim_rng {
    uint64_t s[4];
};
void sim_rng_seed(struct sim_rng *g, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *g);
uint64_t sim_rng_below(struct sim_rng *g, uint64_t n); /* [0, n); 0 if n<2 */
uint64_t sim_rng_range(struct sim_rng *g, uint64_t lo, uint64_t hi); /* incl. */
bool sim_rng_ppm(struct sim_rng *g, uint32_t ppm); /* chance ppm / 10^6 */
uint64_t sim_mix(uint64_t a, uint64_t b); /* deterministic hash of two */
uint64_t sim_fnv(uint64_t h, const void *p, size_t len);
#define SIM_FNV_INIT 0xcbf29ce484222325ull

/* ---- parameters of one seed, drawn in run.c ---- */

struct sim_params {
    unsigned n_nodes;    /* ids 1..n_nodes */
    unsigned n_founders; /* ids 1..n_founders bootstrap; the rest start empty */
    unsigned steps;      /* main phase */
    unsigned spt;        /* steps per tick */
    unsigned n_keys;
    unsigned n_clients;
    const char *profile; /* "calm", "moderate", "hostile", or a scenario */
    unsigned scenario;   /* enum sim_scenario */
    /* raft config */
    unsigned heartbeat_ticks;
    unsigned max_inflight;
    size_t max_msg_bytes;
    size_t max_uncommitted;
    uint64_t snap_threshold;
    uint64_t snap_trailing;
    uint64_t snap_trailing_bytes; /* 0: the core's default (4 MiB) */
    uint32_t snap_chunk;
    size_t max_apply_bytes; /* per ready batch; 0: the core's default */
    unsigned election_jitter; /* the timeout's random part, in ticks */
    unsigned check_quorum_rounds; /* timeouts a leader hears no quorum in */
    unsigned snap_pad; /* filler bytes in each kv snapshot */
    /* network, in steps */
    uint32_t drop_ppm;
    uint32_t dup_ppm;
    unsigned lat_min, lat_max;
    /* faults, chance per step in ppm */
    uint32_t crash_ppm;
    uint32_t part_ppm;
    uint32_t conf_ppm;
    uint32_t transfer_ppm;
    uint32_t client_ppm; /* an idle client issues an op */
    unsigned max_down;   /* nodes down at once */
    unsigned part_max_steps;
    unsigned persist_delay_max;
    unsigned snapshot_delay_max;
    bool lease_reads;
    bool boot_ctx; /* bootstrap with member names as context */
    /* scenarios (scenario.c), chance per step in ppm */
    uint32_t churn_ppm;   /* crash or cut off the leader */
    uint32_t burst_ppm;   /* two membership changes back to back */
    uint32_t stale_ppm;   /* share of reads sent to any self-styled leader */
    unsigned lease_pct;   /* share of reads served under the lease */
    unsigned txn_pct;     /* share of client ops on src/kv keys (txn.c) */
    unsigned op_timeout;  /* client timeout: 0: 2-4 election timeouts */
    /* time faults */
    uint32_t drift_ppm;   /* each node's tick period is off by up to this */
    uint32_t pause_ppm;   /* chance per step to pause (freeze) a node */
    unsigned pause_max_steps;
    uint32_t late_ppm;    /* share of messages held back for long */
    unsigned late_min, late_max; /* their delay, in steps */
    bool io_first;        /* a woken node steps messages before its owed
                             ticks (breaks the core's contract: --io-first) */
    /* identity faults (identity.c), chance per step in ppm */
    uint32_t wipe_ppm;    /* crash a node and restart it on an empty disk */
    unsigned damage_pct;  /* share of those whose damage storage detects */
    unsigned post_elect_pct; /* a new leader gets a change within a tick */
    /* forged messages (forge.c), chance per step in ppm; drawn from
     * sim.forge_rng */
    uint32_t forge_ppm;
};

/* Scenario-shaped seeds: fault patterns aimed at one class of bug. */
enum sim_scenario {
    SIM_SC_NONE = 0,
    SIM_SC_FIGURE8,    /* leader churn, one entry per append (§5.4.2) */
    SIM_SC_LEASE,      /* isolated leaders, reads sent to stale leaders */
    SIM_SC_MEMBERSHIP, /* back-to-back changes, splits of old/new quorums */
    SIM_SC_PAUSE,      /* paused leaseholders, reads queued to them */
    SIM_SC_DRIFT,      /* slow leader clock, fast followers, early elections */
    SIM_SC_TRANSFER,   /* transfers and elections around a partial cut,
                          aborted transfers with a late TIMEOUT_NOW */
    SIM_SC_WIPE,       /* wipe the holders of recent commits, crash the leader */
    SIM_SC_EARLY_CONF, /* a new leader's change before its no-op commits,
                          against the old leader's uncommitted one */
    SIM_SC__COUNT
};

/* Options from the command line that override drawn parameters (0: draw). */
struct sim_opts {
    unsigned nodes;
    unsigned steps;
    unsigned trace_lines; /* printed on failure */
    bool verbose;         /* print every event as it happens */
    bool no_lease;
    bool io_first;        /* see sim_params.io_first */
    unsigned scenario;    /* force one (enum sim_scenario + 1); 0: draw */
    bool sabotage_final;  /* selftest: keep everything partitioned */
    bool leases;          /* the lease workload on every seed (lease.c) */
};

/* ---- trace (trace.c): a ring of structured events, printed on failure ---- */

enum sim_ev_kind {
    EV_SEND = 1, EV_DROP, EV_DUP, EV_DELIVER, EV_LOST, EV_STEP_ERR,
    EV_ROLE, EV_HS, EV_PERSIST, EV_APPLY, EV_SNAP_TAKEN, EV_SNAP_INSTALL,
    EV_CRASH, EV_RESTART, EV_STOP, EV_PART, EV_HEAL, EV_INVOKE, EV_DONE,
    EV_PROP, EV_READ, EV_CONF, EV_CONF_APPLIED, EV_TRANSFER, EV_FINAL,
    EV_NOTE, EV_PAUSE, EV_WAKE, EV_CAMPAIGN, EV_LATE, EV_IDENT, EV_FORGE,
};

struct sim_event {
    uint64_t step;
    uint64_t a, b, c, d;
    uint16_t kind;
    uint8_t node, peer;
    uint8_t x;
    char str[SIM_VAL_MAX - 1];
};

struct sim_trace {
    struct sim_event *ring;
    size_t cap;
    uint64_t n; /* events ever recorded */
};

/* ---- network (net.c) ---- */

struct sim_packet {
    uint64_t at;  /* step to deliver */
    uint64_t seq; /* ties: send order */
    uint8_t from, to, type;
    bool late; /* held back for long (a frame queued across a redial) */
    uint32_t len;
    uint8_t *buf; /* encoded message, owned */
};

/* Messages that reached a paused node, in arrival order: stepped when it
 * wakes (a frozen process's socket buffers fill up). */
struct sim_inbox {
    struct sim_packet *p;
    size_t n, cap;
};

struct sim_net {
    struct sim_packet *heap; /* min-heap on (at, seq) */
    size_t n, cap;
    uint64_t seq;
    struct sim_inbox inbox[SIM_MAX_NODES + 1];
    bool hold_timeout_now; /* the next TIMEOUT_NOW sent is held back long */
    struct {
        uint64_t step;     /* a held-back TIMEOUT_NOW was stepped then */
        uint64_t from, to, term;
    } late_tn; /* from, to: Raft ids */
    bool blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* [from][to] */
    bool partitioned;
    uint64_t heal_at;
    uint32_t drop_ppm, dup_ppm;
    unsigned lat_min, lat_max;
};

/* ---- the durable state of a node (disk.c) ---- */

struct sim_ent {
    uint64_t index, term;
    uint8_t type;
    uint32_t len;
    uint8_t *data; /* owned copy */
};

/* The stored log: entries [first, first + n); empty log: n == 0 and first is
 * the index the next entry must have (a gap is a violation). */
struct sim_log {
    struct sim_ent *e;
    size_t n, cap;
    uint64_t first;
};

struct sim_snap {
    struct raft_snap_meta meta; /* meta.index == 0: none */
    uint8_t *data;              /* meta.size bytes, owned */
};

struct sim_disk {
    struct raft_hard_state hs;
    struct sim_snap cur;  /* the node's snapshot */
    struct sim_snap prev; /* the one before, for chunks already handed out */
    struct sim_log log;
};

void sim_log_free(struct sim_log *l);
uint64_t sim_log_last(const struct sim_log *l);
const struct sim_ent *sim_log_at(const struct sim_log *l, uint64_t index);
uint64_t sim_log_term(const struct sim_log *l, uint64_t index); /* 0: none */
/* Truncate from e[0].index then append; CRAFT_EINVAL on a gap. Entries at
 * or below `covered` (the snapshot) that fall before the log are skipped. */
int sim_log_append(struct sim_log *l, const struct raft_entry *e, size_t n,
                   uint64_t covered);
void sim_log_compact(struct sim_log *l, uint64_t keep_from);
void sim_log_reset(struct sim_log *l, uint64_t first);
/* Lose every entry after last (a disk that lost its last synced writes). */
void sim_log_truncate_after(struct sim_log *l, uint64_t last);
void sim_snap_free(struct sim_snap *s);
void sim_disk_free(struct sim_disk *d);
/* A snapshot with meta.index == index among cur and prev, or NULL. */
const struct sim_snap *sim_disk_find_snap(const struct sim_disk *d,
                                          uint64_t index);

/* ---- the state machine (kv.c) ---- */

struct kv;
struct sim_kv {
    uint64_t applied, applied_term;
    struct raft_conf conf; /* membership as of applied */
    bool present[SIM_MAX_KEYS];
    char val[SIM_MAX_KEYS][SIM_VAL_MAX];
    struct kv *map; /* keys under "t/" (src/kv), owned; NULL while empty */
};

enum sim_cmd_op { SIM_CMD_PUT = 'P', SIM_CMD_DEL = 'D', SIM_CMD_KV = 'K',
                  SIM_CMD_LEASE = 'L' };
/* A SIM_CMD_LEASE command (lease.c): the tag, the step its client sent it
 * at (u64), then a src/kv command for kv->map. */
#define SIM_LEASE_TAG 9
/* Encode a command into buf (at least SIM_VAL_MAX + 4 bytes); its length. */
size_t sim_kv_encode(uint8_t *buf, int op, unsigned key, const char *value);
/* Apply the command of entry index; CRAFT_ECORRUPT if it does not parse.
 * A command starting with SIM_CMD_KV is src/kv's, for kv->map. */
int sim_kv_apply(struct sim_kv *kv, unsigned n_keys, uint64_t index,
                 const uint8_t *p, size_t len);
/* kv->map, made empty if there is none yet; NULL if out of memory. */
struct kv *sim_kv_map(struct sim_kv *kv);
/* Free what kv owns and zero it (a crash loses the state machine). */
void sim_kv_reset(struct sim_kv *kv);
/* Serialize at kv->applied; *out is craft_malloc'd, the caller frees it. */
int sim_kv_serialize(const struct sim_kv *kv, unsigned pad, uint8_t **out,
                     size_t *len);
/* Replace kv with a serialized snapshot; checks its index and term. */
int sim_kv_restore(struct sim_kv *kv, const uint8_t *p, size_t len,
                   const struct raft_snap_meta *meta);
bool sim_kv_equal(const struct sim_kv *a, const struct sim_kv *b);
bool sim_conf_equal(const struct raft_conf *a, const struct raft_conf *b);

/* ---- a node (node.c) ---- */

enum sim_node_state { SIM_UP = 0, SIM_DOWN, SIM_STOPPED };

/* A snapshot being received, chunk by chunk (volatile: lost on a crash). */
struct sim_rx {
    struct raft_snap_meta meta;
    uint8_t *buf;
    uint64_t next; /* bytes written contiguously from 0 */
    bool active, complete;
};

/* What the next restart of a node finds on its disk (identity.c). */
enum sim_disk_fault {
    SIM_DISK_OK = 0,
    SIM_DISK_WIPED,   /* nothing: it starts as a new incarnation */
    SIM_DISK_DAMAGED, /* damage recovery detects: it refuses to start */
};

struct sim_node {
    uint64_t id; /* the slot */
    enum sim_node_state state;
    unsigned incarnation;
    struct raft *r;
    struct sim_disk disk;
    struct sim_kv kv;
    struct sim_rx rx;
    /* the ready batch being persisted */
    bool busy;
    struct raft_ready rd;
    uint64_t rd_due;
    size_t rd_apply_budget; /* what the batch out could apply, in bytes */
    bool rd_apply_later;
    uint64_t rd_prev_term; /* term before rd.entries[0] when handed out */
    /* snapshot asked for by want_snapshot: the state machine is written
     * out when it is asked for (as the daemon's forked writer sees it)
     * and reported to the core at snap_due, while applying goes on */
    bool snap_pending;
    uint64_t snap_due;
    bool snap_begin;    /* write it out once the batch is applied */
    uint8_t *snap_data; /* owned; NULL: nothing written yet */
    size_t snap_len;
    uint64_t snap_index, snap_term;
    struct raft_conf snap_conf;
    uint64_t restart_at; /* DOWN: when to restart */
    uint64_t stop_at;    /* removed: when to stop for good (0: never) */
    /* last observed, for the checkers */
    struct raft_hard_state last_hs;
    uint64_t last_commit;
    enum raft_role role;
    uint64_t term;
    uint64_t leader;
    uint64_t lead_tick; /* its core's tick when it last became leader */
    /* its clock: clk units accumulate SIM_CLOCK_STEP per step, a tick
     * every tick_len of them; it runs whether the node is up, down or
     * paused */
    uint64_t clk;
    uint32_t tick_len;
    uint64_t clock_ticks; /* ticks of the clock so far */
    uint64_t boot_ticks;  /* clock_ticks when its core was created */
    uint64_t paused_until; /* step it wakes at; 0: not paused */
    uint64_t paused_at;    /* step its last pause began */
    uint64_t conf_fwd_step; /* last conf change forwarded from it */
    /* identity (identity.c) */
    uint64_t rid;       /* Raft id: craft_member_id(name, inc) */
    uint64_t inc;       /* incarnation of its data directory */
    unsigned gen;       /* 1: its first data directory; +1 per wipe */
    uint8_t disk_fault; /* enum sim_disk_fault */
    uint8_t rejoin;     /* re-add pending: 0 none, 1 as learner, 2 as voter */
    uint64_t rejoin_at; /* step of the next re-add attempt */
};

struct sim;
void sim_node_boot(struct sim *s, struct sim_node *n, bool founder);
void sim_node_process(struct sim *s, struct sim_node *n);
void sim_node_crash(struct sim *s, struct sim_node *n, bool for_good);
void sim_node_restart(struct sim *s, struct sim_node *n);
void sim_node_observe(struct sim *s, struct sim_node *n);
void sim_node_free(struct sim_node *n);
/* The node's clock as its caller would read it: ticks since its core was
 * created, delivered or owed (a paused node owes some). */
static inline uint64_t sim_node_clock(const struct sim_node *n)
{
    return n->clock_ticks - n->boot_ticks;
}
/* Up and not paused: it runs. */
static inline bool sim_node_live(const struct sim_node *n)
{
    return n->state == SIM_UP && !n->paused_until;
}
/* Deliver every tick its clock owes its core. */
void sim_node_catch_up(struct sim *s, struct sim_node *n);
/* Freeze n for `steps` steps; sim_node_wake ends it (at that step). */
void sim_node_pause(struct sim *s, struct sim_node *n, uint64_t steps);
void sim_node_wake(struct sim *s, struct sim_node *n);
/* The snapshot bytes for index, to fill an outgoing chunk; NULL if none. */
const uint8_t *sim_node_snap_bytes(const struct sim_node *n, uint64_t index,
                                   uint64_t *size);

/* ---- clients and history (client.c) ---- */

enum sim_op_kind {
    SIM_OP_PUT = 1,
    SIM_OP_DELETE,
    SIM_OP_GET,
    SIM_OP_CAS,  /* txn: mod_index of key == expect, then put (txn.c) */
    SIM_OP_TXN,  /* a random multi-key txn on t/m/ (txn.c) */
    SIM_OP_LIST, /* a read: t/m/ listed and compared with the model */
};
static inline bool sim_op_is_read(int kind)
{
    return kind == SIM_OP_GET || kind == SIM_OP_LIST;
}
enum sim_outcome { SIM_OK = 0, SIM_FAIL, SIM_UNKNOWN };
enum sim_stage {
    SIM_ST_PROPOSED = 1, /* waiting for rd.props */
    SIM_ST_APPENDED,     /* waiting for the node to apply (index, term) */
    SIM_ST_READ_ASKED,   /* waiting for rd.reads */
    SIM_ST_READ_WAIT,    /* waiting for applied >= index */
    SIM_ST_DONE,
    SIM_ST_DROPPED,      /* a read that observed nothing */
    SIM_ST_LEASE_WAIT,   /* a lease read queued at a paused node */
};

struct sim_op {
    uint64_t client;
    uint8_t key;
    uint8_t kind;    /* enum sim_op_kind */
    uint8_t outcome; /* enum sim_outcome */
    uint8_t stage;   /* enum sim_stage */
    bool has_value;
    bool lease;
    char value[SIM_VAL_MAX];
    uint64_t invoke, complete;
    uint64_t node;
    unsigned incarnation;
    uint64_t index, term; /* writes: where it was appended; reads: index */
    uint64_t fp;          /* writes: fingerprint of the command */
    uint64_t deadline;    /* step */
    /* src/kv keys: a get's mod_index read (0: absent); a cas's expected
     * one, and the one it was given (ok) or reported (refused) */
    uint64_t mod, expect;
    bool has_mod;
    bool refused; /* a cas that applied with its compare failing */
};

struct sim_client {
    uint64_t id;
    int64_t op; /* index in hist, or -1 when idle */
    unsigned seq;
    /* a CAS is a read of the key, then a txn from the mod_index read */
    bool cas_reading, cas_next;
    uint8_t cas_key;
    uint64_t cas_expect;
};

struct sim_hist {
    struct sim_op *ops;
    size_t n, cap;
};

void sim_clients_step(struct sim *s);
void sim_client_on_prop(struct sim *s, struct sim_node *n,
                        const struct raft_prop_result *pr);
void sim_client_on_read(struct sim *s, struct sim_node *n,
                        const struct raft_read_result *rr);
void sim_client_on_apply(struct sim *s, struct sim_node *n, uint64_t index,
                         uint64_t term);
void sim_client_on_restore(struct sim *s, struct sim_node *n);
void sim_client_serve_reads(struct sim *s, struct sim_node *n);
void sim_client_on_crash(struct sim *s, struct sim_node *n);
/* Lease reads queued at n while it was paused: serve them (by the lease,
 * judged at n's current clock) or drop them. */
void sim_client_serve_queued(struct sim *s, struct sim_node *n);
/* Start an op; returns its hist index or -1. */
int64_t sim_client_invoke(struct sim *s, struct sim_client *c, int kind,
                          unsigned key, struct sim_node *n, bool lease);
bool sim_clients_idle(const struct sim *s);
void sim_hist_free(struct sim_hist *h);
struct sim_op *sim_hist_add(struct sim *s);

/* ---- faults and membership (faults.c) ---- */

void sim_faults_step(struct sim *s);
/* Cut every link between side_a (bitmask of ids) and the other nodes until
 * heal_at (a step). */
void sim_partition_set(struct sim *s, uint64_t side_a, uint64_t heal_at,
                       const char *kind);
/* The same, on top of the links already cut (healed at the later time). */
void sim_partition_add(struct sim *s, uint64_t side_a, uint64_t heal_at,
                       const char *kind);
/* Crash n (not for good); it restarts restart_after steps later. */
void sim_crash_for(struct sim *s, struct sim_node *n, uint64_t restart_after);
/* Propose a random membership change at `at` (voters_only: one that changes
 * the voters); the core's return code, or 1 if there was nothing to do. */
int sim_conf_change(struct sim *s, struct sim_node *at, bool voters_only);
/* Propose that change at `at`; the core's return code. */
int sim_conf_propose(struct sim *s, struct sim_node *at, int op,
                     uint64_t target);
unsigned sim_n_down(const struct sim *s); /* down or paused */
/* Is id in c, as a voter or a learner? */
bool sim_conf_has(const struct raft_conf *c, uint64_t id);

/* ---- identity (identity.c) ---- */

struct sim_idrec {
    uint64_t rid;
    uint8_t slot, gen;
};
/* Draw the identity faults' parameters; give every node its first Raft id. */
void sim_ident_init(struct sim *s);
/* The slot a Raft id belongs to (any incarnation), 0 if none. */
unsigned sim_slot_of(const struct sim *s, uint64_t rid);
/* The node whose current Raft id is rid, or NULL. */
struct sim_node *sim_node_by_rid(struct sim *s, uint64_t rid);
/* A short number naming an incarnation for traces: slot | gen << 8 (0 for
 * RAFT_NONE, 0xff for an id the run never created); see sim_tag_str. */
uint64_t sim_tag(const struct sim *s, uint64_t rid);
const char *sim_tag_str(uint64_t tag, char *buf, size_t len);
/* The Raft id slot had in its gen-th incarnation, 0 if none. */
uint64_t sim_rid_of(const struct sim *s, unsigned slot, unsigned gen);
/* A voter rid that will never answer again: an old incarnation, a node
 * stopped for good, or one whose disk is gone or damaged. */
bool sim_rid_dead(const struct sim *s, uint64_t rid);
/* An identity fault is under way: a disk fault waiting for its restart, or
 * a dead rid in some live node's configuration. */
bool sim_ident_busy(const struct sim *s);
/* The restart hook: a damaged disk refuses (true: stays down); a wiped one
 * becomes a new incarnation (false: start it, empty). */
bool sim_ident_restart(struct sim *s, struct sim_node *n);
/* The daemon's join (re-add), wipes, post-election changes: every step. */
void sim_ident_step(struct sim *s);
/* Wipe n (damaged: its damage is detected at restart) if the fault budget
 * allows; restart after that many steps. True if done. */
bool sim_wipe(struct sim *s, struct sim_node *n, bool damaged,
              uint64_t restart_after);
/* The wipe scenario (SIM_SC_WIPE). */
void sim_wipe_params(struct sim *s);
void sim_wipe_step(struct sim *s);

/* ---- scenarios (scenario.c) ---- */

/* Override the drawn parameters for a scenario-shaped seed. */
void sim_scenario_params(struct sim *s);
/* The scenario's faults for this step (main phase only). */
void sim_scenario_step(struct sim *s);
void sim_heal(struct sim *s);
void sim_conf_applied(struct sim *s, const struct raft_conf_change *cc,
                      uint64_t index);
struct sim_node *sim_leader(struct sim *s);

/* ---- invariants (check.c) ---- */

/* A read-only view of a log, so the checkers run on fabricated logs too. */
struct sim_logview {
    const void *ctx;
    uint64_t (*term_at)(const void *ctx, uint64_t index); /* 0: unknown */
    uint64_t first, last;
};
void sim_logview_of(struct sim_logview *v, const struct raft *r);

struct sim_applied {
    uint64_t term;
    uint64_t seen_term; /* highest leader term when first applied: it was
                           committed in that term or before */
    uint64_t fp;
    uint8_t type;
    bool set;
};

struct sim_itkey; /* (index, term) -> fingerprint, previous term */

struct sim_check {
    struct sim_applied *applied; /* by index */
    size_t cap_applied;
    uint64_t max_applied;
    uint64_t *leader_of; /* by term */
    size_t cap_terms;
    uint64_t max_leader_term;
    struct sim_itkey *it; /* open-addressing table */
    size_t it_cap, it_n;
    uint64_t elections;
    bool *campaigned; /* by term: some node was a candidate in it */
    size_t cap_campaigned;
    struct sim_cq {   /* check-quorum monitor of the leader in a slot */
        uint64_t term;    /* 0: not leader */
        uint64_t reset;   /* own tick of the last possible timer reset */
        uint64_t voters;  /* fingerprint of the voter set judged */
        uint64_t last;    /* own tick last judged */
        unsigned n;
        struct { uint64_t id, tick; } heard[2 * RAFT_MAX_MEMBERS];
    } cq[SIM_MAX_NODES + 1];
    struct sim_cu {   /* the append acks the leader in a slot has had */
        uint64_t term;    /* 0: not leader */
        unsigned n;
        uint64_t acked[2 * RAFT_MAX_MEMBERS]; /* ids that acked in term */
    } cu[SIM_MAX_NODES + 1];
    const struct raft_msg *in_msg; /* the message being stepped, or NULL */
};

void sim_check_free(struct sim_check *c);
uint64_t sim_entry_fp(uint8_t type, const void *data, size_t len);
/* 1. election safety; node: a sim_tag (one incarnation is one server) */
void sim_check_leader(struct sim *s, uint64_t node, uint64_t term);
/* 2. log matching, on entries being persisted; prev_term: term of the entry
 * before e[0] in the node's log (0: unknown) */
void sim_check_entries(struct sim *s, uint64_t node,
                       const struct raft_entry *e, size_t n,
                       uint64_t prev_term);
/* 2'. log matching over the last `window` indices of two logs */
void sim_check_pair(struct sim *s, uint64_t a, const struct sim_logview *va,
                    uint64_t b, const struct sim_logview *vb,
                    unsigned window);
/* 3. leader completeness, when node becomes leader of term: it holds every
 * entry committed in an earlier term (a leader of an old term, elected
 * late by old votes, need not hold what a later term committed: it cannot
 * commit anything itself) */
void sim_check_leader_complete(struct sim *s, uint64_t node, uint64_t term,
                               const struct sim_logview *v);
/* 4 + 6. state-machine safety, apply order; expect = applied + 1 */
void sim_check_apply(struct sim *s, uint64_t node, uint64_t expect,
                     const struct raft_entry *e);
/* 6. commit index never goes backwards on a live node */
void sim_check_commit(struct sim *s, uint64_t node, uint64_t *last,
                      uint64_t commit);
/* 5. every ok write is applied where it was acknowledged */
void sim_check_durable_writes(struct sim *s);
/* hard state: term never decreases, one vote per term */
void sim_check_hs(struct sim *s, uint64_t node,
                  const struct raft_hard_state *prev,
                  const struct raft_hard_state *hs);
const struct sim_applied *sim_applied_at(const struct sim *s, uint64_t index);
/* check-quorum: a leader (self, of term, with conf) at its own tick now
 * must have heard from a quorum of conf's voters within 2 election
 * timeouts, unless its check timer may have been reset since now - 2E.
 * Call on every observation (leader false clears the monitor). */
void sim_check_quorum(struct sim *s, unsigned slot, bool leader,
                      uint64_t term, uint64_t self,
                      const struct raft_conf *conf, uint64_t now);
/* The leader in slot counted a response from id at its own tick now. */
void sim_check_heard(struct sim *s, unsigned slot, uint64_t id, uint64_t now);
/* The leader in slot was asked for a transfer (its timer may restart). */
void sim_check_quorum_reset(struct sim *s, unsigned slot, uint64_t now);
/* pre-vote: a node's term went from prev to ss->term (role prev_role ->
 * ss->role) over one call into its core; m is the message stepped, or NULL. */
void sim_check_term(struct sim *s, uint64_t node, uint64_t prev_term,
                    enum raft_role prev_role,
                    const struct raft_soft_state *ss,
                    const struct raft_msg *m);
/* Everything checked on each observation of a live node (node.c). */
void sim_check_observe(struct sim *s, struct sim_node *n,
                       const struct raft_soft_state *ss);
/* A message was stepped into node `to` (net.c): responses the leader
 * counts, transfer requests. */
void sim_check_delivered(struct sim *s, struct sim_node *to,
                         const struct raft_msg *m);

/* ---- linearizability (lin.c) ---- */

void sim_check_linear(struct sim *s);

/* ---- statistics, one run ---- */

struct sim_stats {
    uint64_t msgs, delivered, dropped, dups;
    uint64_t crashes, restarts, stops;
    uint64_t snaps_taken, snaps_installed;
    uint64_t confs_applied, transfers;
    uint64_t ops_ok, ops_fail, ops_unknown, reads_ok, reads_dropped;
    uint64_t lease_reads;
    uint64_t final_ticks;
    uint64_t pauses, late_msgs;
    uint64_t wipes, refusals, rejoins;
    uint64_t forged;
    uint64_t cas_ok, cas_refused, lists; /* txn.c */
};

/* ---- src/kv's keys: CAS, transactions, listing (txn.c) ---- */

/* The model: an independent sequential map of the t/ keys, advanced over
 * the applied entries in index order, with what each index left. */
struct sim_mrec {
    char key[8];
    char val[SIM_VAL_MAX];
    uint64_t create, mod, version;
};
struct sim_mstep {
    uint64_t fp_all, fp_list; /* the map, and its t/m/ listing */
    int8_t succeeded;         /* a txn's compares held: 1, 0; else -1 */
};
struct sim_model {
    struct sim_mrec rec[SIM_MODEL_KEYS]; /* sorted by key */
    unsigned n;
    uint64_t index;
    struct sim_mstep *at; /* by index, up to index */
    size_t cap;
};

const char *sim_tkey_name(unsigned id); /* for op->key >= SIM_TKEY */
void sim_model_free(struct sim_model *m);
/* Advance the model over entry e when it is the next index. */
void sim_model_step(struct sim *s, const struct raft_entry *e);
/* n applied SIM_CMD_KV entry e: its result and map must match the model. */
void sim_txn_check_apply(struct sim *s, const struct sim_node *n,
                         const struct raft_entry *e);
/* A client starts a CAS (its read), a multi-key txn or a listing at n. */
void sim_txn_issue(struct sim *s, struct sim_client *c, struct sim_node *n);
/* The CAS a client's read prepared, at n. */
void sim_txn_cas(struct sim *s, struct sim_client *c, struct sim_node *n);
/* The command of a CAS or TXN op into buf (cap bytes); its length, 0 if it
 * does not fit. */
size_t sim_txn_encode(struct sim *s, const struct sim_op *op, uint8_t *buf,
                      size_t cap);
/* A read of a t/ key or a listing, served at n's applied state. */
void sim_txn_read(struct sim *s, const struct sim_node *n, struct sim_op *op);
/* n applied op's entry in op's term: what the txn did (kv_last_result). */
void sim_txn_result(const struct sim_node *n, struct sim_op *op);
/* Fingerprint of the t/ keys of map under prefix (NULL map: empty). */
uint64_t sim_map_fp(const struct kv *map, const char *prefix);

/* ---- leases: the real lease clock per node, lease clients (lease.c) ---- */

struct sim_lease; /* the workload of a seed; NULL on seeds without it */
void sim_lease_init(struct sim *s);
void sim_lease_free(struct sim *s);
void sim_lease_print(const struct sim *s, FILE *f);
/* Each step, after the nodes' ready: leaders' lease ticks, the clients,
 * and in the final phase the expiry bound. */
void sim_lease_step(struct sim *s);
/* Apply a SIM_CMD_LEASE entry at n (instead of sim_kv_apply), checked and
 * fed to n's lease clock. */
int sim_lease_apply(struct sim *s, struct sim_node *n,
                    const struct raft_entry *e);
/* n applied (index, term) / restored a snapshot / restarted. */
void sim_lease_applied(struct sim *s, struct sim_node *n, uint64_t index,
                       uint64_t term);
void sim_lease_restored(struct sim *s, struct sim_node *n);
void sim_lease_rebuild(struct sim *s, struct sim_node *n);
void sim_lease_on_prop(struct sim *s, struct sim_node *n,
                       const struct raft_prop_result *pr);
/* Final phase: no lease request pending and none left at the leader. */
bool sim_lease_settled(struct sim *s);
/* ---- watches (watch.c): src/watch's history and hub at each node, fed
 *      by its src/kv map, and watcher clients that read and resume ---- */

struct sim_watch;
/* Decide (from its own random stream) whether the seed has watchers. */
void sim_watch_init(struct sim *s);
/* n started (boot, restart): its history starts at its applied index. */
void sim_watch_start(struct sim *s, struct sim_node *n);
/* n crashed or stopped: its history and hub are gone. */
void sim_watch_stop(struct sim *s, struct sim_node *n);
/* n is about to apply e (the model has been advanced over it). */
void sim_watch_apply(struct sim *s, struct sim_node *n,
                     const struct raft_entry *e);
/* n applied entry index: the hub calls its marked subscriptions. */
void sim_watch_applied(struct sim *s, struct sim_node *n, uint64_t index);
/* A snapshot replaced n's state machine: its history is reset. */
void sim_watch_replaced(struct sim *s, struct sim_node *n);
void sim_watch_step(struct sim *s);
/* The converged cluster at leader l: every watcher reads to the end. */
void sim_watch_final(struct sim *s, struct sim_node *l);
void sim_watch_free(struct sim *s);

/* ---- one run (run.c) ---- */

struct sim {
    uint64_t seed;
    struct sim_params p;
    struct sim_opts o;
    struct sim_rng rng;
    /* Forged messages draw from this one, so that a seed's other faults
     * are the same with or without them (forge.c). */
    struct sim_rng forge_rng;
    uint64_t now;   /* step */
    uint64_t ticks;
    uint64_t clock; /* logical clock of client invoke/complete events */
    bool final_phase;
    struct sim_node nodes[SIM_MAX_NODES + 1]; /* by id; [0] unused */
    struct sim_net net;
    struct sim_client clients[SIM_MAX_CLIENTS];
    unsigned final_client; /* index of the final-phase client */
    bool final_done;
    struct sim_hist hist;
    struct sim_check chk;
    struct sim_model model;
    struct sim_lease *lease; /* owned; NULL: no lease workload */
    struct sim_watch *watch; /* watch.c; NULL: the seed has no watchers */
    struct sim_trace trace;
    bool retiring[SIM_MAX_NODES + 1]; /* proposed for removal: never re-added */
    bool removed[SIM_MAX_NODES + 1];  /* its removal is the last change applied */
    struct {
        unsigned phase;
        uint64_t leader, term; /* the leader the phase is about */
        uint64_t at;           /* step of the next planned move */
        uint64_t deadline;     /* give up the phase (heal) at this step */
        uint64_t peer;         /* a node the phase is about (candidate) */
        uint64_t aside;        /* another one (early-conf: kept from peer) */
        uint64_t shun;         /* clients send it lease reads only */
        uint32_t client_ppm;   /* if set, overrides p.client_ppm */
    } sc;                      /* scenario state (scenario.c) */
    uint64_t conf_seq;
    uint64_t conf_applied_max; /* highest conf entry seen applied */
    struct sim_idrec ids[SIM_MAX_IDS]; /* every Raft id of the run */
    unsigned n_ids;
    uint64_t post_elect_term; /* last new leader drawn for a change */
    uint64_t conf_fwd_step;   /* last conf change proposed at a follower */
    struct sim_stats st;
    FILE *out; /* where reports go */
    bool failed;
    char inv[32];
    char why[400];
    char *detail; /* longer explanation (lincheck), craft_malloc'd */
};

void sim_init(struct sim *s, uint64_t seed, const struct sim_opts *o,
              FILE *out);
/* Run the seed to the end; 0 if every invariant held, -1 otherwise. */
int sim_run(struct sim *s);
void sim_destroy(struct sim *s);
/* Record the first violation (later ones are ignored). */
void sim_fail(struct sim *s, const char *inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_report(const struct sim *s, FILE *f);
void sim_print_params(const struct sim *s, FILE *f);
static inline uint64_t sim_election_steps(const struct sim *s)
{
    return (uint64_t)SIM_ELECTION_TICKS * s->p.spt;
}

/* trace.c */
void sim_trace_init(struct sim_trace *t, size_t cap);
void sim_trace_free(struct sim_trace *t);
/* Record an event; x is a small kind-specific code (message type, role...). */
void sim_ev(struct sim *s, int kind, unsigned x, uint64_t node, uint64_t peer,
            uint64_t a, uint64_t b, uint64_t c, uint64_t d, const char *str);
void sim_trace_print(const struct sim *s, FILE *f, size_t last);
void sim_event_format(const struct sim_event *e, char *buf, size_t len);

/* net.c */
void sim_net_send(struct sim *s, struct sim_node *from,
                  const struct raft_msg *m);
void sim_net_deliver(struct sim *s);
/* Step the first k messages queued at n while it was paused (all: SIZE_MAX). */
void sim_net_step_inbox(struct sim *s, struct sim_node *n, size_t k);
size_t sim_net_inbox_len(const struct sim *s, const struct sim_node *n);
void sim_net_drop_inbox(struct sim *s, struct sim_node *n);
void sim_net_free(struct sim_net *n);

/* forge.c: now and then, step a forged message into a running node. */
void sim_forge_step(struct sim *s);

/* selftest.c */
int sim_selftest(FILE *out);

#endif
