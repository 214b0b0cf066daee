/* The values behind GET /metrics and their gathering (docs/operations.md
 * lists the families). Counters and histograms that events move live in
 * struct node__metrics and are moved by small hooks (HTTP answers, peer
 * frames, leader changes, proposal outcomes, disk jobs' fsync times,
 * snapshots, the loop's busy iterations); everything else (Raft indexes, keys, bytes sent to peers,
 * the transport's datagram counters, process_*) is read when scraped. The
 * scrape reads /proc: a few small files, on the loop, only when asked. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "metrics/metrics.h"
#include "node/internal.h"
#include "node/metrics.h"

/* Proposal outcomes, as the core reports them (struct raft_prop_result). */
enum {
    PROP_PLACED = 0, /* appended to the leader's log at an index */
    PROP_NO_LEADER, PROP_NOT_LEADER, PROP_TRANSFER, PROP_BUSY, PROP_OVERLOAD,
    PROP_DROPPED, PROP_TOO_BIG, PROP_INVALID, PROP_OTHER,
    PROP_OUTCOMES
};
static const char *const PROP_NAMES[PROP_OUTCOMES] = {
    "placed", "no_leader", "not_leader", "transfer", "busy", "overload",
    "dropped", "too_big", "invalid", "other",
};

static const char *const FINAL_NAMES[NODE__PROP_FINALS] = {"committed", "lost", "unknown"};

#define RX_SLOTS 64 /* peers whose received bytes are counted */

/* The transport's datagram counters (struct peer_transport_stats). */
enum {
    DG_SENT, DG_UNSENT, DG_RECEIVED, DG_STALE, DG_REJECTED, DG_UNANSWERED,
    DG_RESULTS
};
static const char *const DGRAM_NAMES[DG_RESULTS] = {
    "sent", "unsent", "received", "stale", "rejected", "unanswered",
};

struct node__metrics {
    struct metrics_codes http[HTTP_ROUTE_COUNT][HTTP_METHOD_COUNT];
    struct metrics_hist http_time[HTTP_ROUTE_COUNT];
    uint64_t leader_changes;
    uint64_t props[PROP_OUTCOMES];
    uint64_t finals[NODE__PROP_FINALS];
    struct metrics_hist fsync;
    struct metrics_hist snapshot;
    uint64_t snap_t0; /* uv_hrtime() when the writer started; 0: none */
    struct metrics_hist loop_busy;
    uint64_t loop_longest; /* ns, since start */
    struct {
        uint64_t id, bytes;
    } rx[RX_SLOTS];
    size_t n_rx;
    uint64_t leader_commit; /* highest commit index a leader sent us */
    uint64_t start_ns;      /* process start, ns since the epoch; 0: unknown */
};

/* ---- the families ---- */

enum {
    F_HTTP_REQS, F_HTTP_TIME, F_TERM, F_COMMIT, F_APPLIED, F_LAST, F_IS_LEADER,
    F_LEADER_CHANGES, F_PROPS, F_PROP_FINALS, F_FSYNC, F_SNAPSHOT, F_LOOP_BUSY, F_LOOP_LONGEST, F_PEER_SENT, F_PEER_RECV, F_PEER_DGRAMS, F_PEER_TWINS, F_KEYS,
    F_LEASES, F_WATCHERS, F_COUNT
};
static const struct metrics_family FAMILIES[F_COUNT] = {
    [F_HTTP_REQS] = {"craftd_http_requests_total", METRICS_COUNTER,
                     "HTTP requests answered, by route, method and status code."},
    [F_HTTP_TIME] = {"craftd_http_request_duration_seconds", METRICS_HISTOGRAM,
                     "Time from a whole request received to its answer, by route."},
    [F_TERM] = {"craftd_raft_term", METRICS_GAUGE, "The current Raft term."},
    [F_COMMIT] = {"craftd_raft_commit_index", METRICS_GAUGE,
                  "The highest log index known to be committed."},
    [F_APPLIED] = {"craftd_raft_applied_index", METRICS_GAUGE,
                   "The last log index applied to the key-value map."},
    [F_LAST] = {"craftd_raft_last_index", METRICS_GAUGE,
                "The last index in this node's log."},
    [F_IS_LEADER] = {"craftd_raft_is_leader", METRICS_GAUGE,
                     "1 if this node is the leader, else 0."},
    [F_LEADER_CHANGES] = {"craftd_raft_leader_changes_total", METRICS_COUNTER,
                          "Times this node saw a new leader."},
    [F_PROPS] = {"craftd_raft_proposals_total", METRICS_COUNTER,
                 "Proposals of this node (writes and membership changes), by the "
                 "core's outcome: placed in the leader's log, or why not."},
    [F_PROP_FINALS] = {"craftd_raft_proposal_results_total", METRICS_COUNTER,
                       "Proposals of this node placed in the leader's log, by their final "
                       "outcome: committed (applied at the index and term placed), lost "
                       "(another entry took the index: leadership changed before it "
                       "committed) or unknown (timed out, compacted or replaced by a "
                       "snapshot before its result was seen)."},
    [F_FSYNC] = {"craftd_storage_fsync_duration_seconds", METRICS_HISTOGRAM,
                 "Duration of each fdatasync and directory fsync of the store."},
    [F_SNAPSHOT] = {"craftd_snapshot_duration_seconds", METRICS_HISTOGRAM,
                    "Time to take a snapshot, from starting the writer until it is "
                    "durable."},
    [F_LOOP_BUSY] = {"craftd_loop_busy_seconds", METRICS_HISTOGRAM,
                     "Time the event loop spent in the callbacks of one iteration (not "
                     "waiting for I/O): while it runs nothing else is served."},
    [F_LOOP_LONGEST] = {"craftd_loop_longest_busy_seconds", METRICS_GAUGE,
                        "The longest busy iteration of the event loop since the process "
                        "started."},
    [F_PEER_SENT] = {"craftd_peer_sent_bytes_total", METRICS_COUNTER,
                     "Payload bytes written to each peer, by its member id."},
    [F_PEER_RECV] = {"craftd_peer_received_bytes_total", METRICS_COUNTER,
                     "Payload bytes received from each peer, by its member id."},
    [F_PEER_DGRAMS] = {"craftd_peer_datagrams_total", METRICS_COUNTER,
                       "Peer datagrams (the UDP copies of heartbeats and votes), by result: "
                       "sent (handed to the kernel), unsent (the socket refused them), "
                       "received (checked and handed to Raft), stale (a sequence number "
                       "already taken: dropped) or rejected (malformed, not for this "
                       "node, from a sender given no key, or a bad MAC: dropped)."},
    [F_PEER_TWINS] = {"craftd_peer_twin_frames_total", METRICS_COUNTER,
                      "TCP copies of heartbeats and votes dropped because their datagram "
                      "came first (Raft gets one of the two)."},
    [F_KEYS] = {"craftd_keys", METRICS_GAUGE, "Keys in the key-value map."},
    [F_LEASES] = {"craftd_leases", METRICS_GAUGE, "Leases in the key-value map."},
    [F_WATCHERS] = {"craftd_watchers", METRICS_GAUGE, "Open GET /watch streams."},
};

enum { P_CPU, P_RSS, P_VSIZE, P_FDS, P_MAX_FDS, P_START, P_COUNT };
static const struct metrics_family PROCESS[P_COUNT] = {
    [P_CPU] = {"process_cpu_seconds_total", METRICS_COUNTER,
               "Total user and system CPU time spent in seconds."},
    [P_RSS] = {"process_resident_memory_bytes", METRICS_GAUGE,
               "Resident memory size in bytes."},
    [P_VSIZE] = {"process_virtual_memory_bytes", METRICS_GAUGE,
                 "Virtual memory size in bytes."},
    [P_FDS] = {"process_open_fds", METRICS_GAUGE, "Number of open file descriptors."},
    [P_MAX_FDS] = {"process_max_fds", METRICS_GAUGE,
                   "Maximum number of open file descriptors."},
    [P_START] = {"process_start_time_seconds", METRICS_GAUGE,
                 "Start time of the process since unix epoch in seconds."},
};

/* Up to cap - 1 bytes of a small file, NUL-terminated; its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    return (ssize_t)len;
}

/* When the process started (boot time plus its start after boot), in ns
 * since the epoch, or 0. /proc/stat can be long (an interrupt line per
 * CPU): read line by line, once. */
static uint64_t process_start_ns(void)
{
    char buf[4096];
    struct metrics_proc_stat ps;
    long tck = sysconf(_SC_CLK_TCK);
    ssize_t len = read_small("/proc/self/stat", buf, sizeof buf);
    if (len <= 0 || tck <= 0 || metrics_proc_parse_stat(buf, (size_t)len, &ps) != 0)
        return 0;
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return 0;
    uint64_t btime = 0;
    bool found = false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (!found && (n = getline(&line, &cap, f)) > 0)
        found = metrics_proc_parse_btime(line, (size_t)n, &btime) == 0;
    free(line);
    fclose(f);
    return found ? btime * 1000000000ull + ps.starttime * (1000000000ull / (uint64_t)tck) : 0;
}

int node__metrics_new(struct node *n)
{
    char err[160];
    if (metrics_registry_check(FAMILIES, F_COUNT, "craftd_", err, sizeof err) != 0 ||
        metrics_registry_check(PROCESS, P_COUNT, "process_", err, sizeof err) != 0) {
        CRAFT_ERROR(&n->log, "metrics: %s", err); /* a bug in the table above */
        return CRAFT_EINVAL;
    }
    struct node__metrics *m = craft_calloc(1, sizeof *m);
    if (m == NULL)
        return CRAFT_ENOMEM;
    for (int r = 0; r < HTTP_ROUTE_COUNT; r++)
        metrics_hist_init(&m->http_time[r], metrics_latency_ns, METRICS_LATENCY_BOUNDS);
    metrics_hist_init(&m->fsync, metrics_latency_ns, METRICS_LATENCY_BOUNDS);
    metrics_hist_init(&m->snapshot, metrics_slow_ns, METRICS_SLOW_BOUNDS);
    metrics_hist_init(&m->loop_busy, metrics_loop_ns, METRICS_LOOP_BOUNDS);
    m->start_ns = process_start_ns();
    n->metrics = m;
    return 0;
}

void node__metrics_free(struct node *n)
{
    craft_free(n->metrics);
    n->metrics = NULL;
}

/* ---- hooks ---- */

static void on_observe(void *ud, int route, int method, int status, uint64_t ns)
{
    struct node *n = ud;
    if (route < 0 || route >= HTTP_ROUTE_COUNT || method < 0 || method >= HTTP_METHOD_COUNT)
        return;
    metrics_codes_add(&n->metrics->http[route][method], (unsigned)status);
    metrics_hist_observe(&n->metrics->http_time[route], ns);
}

void node__metrics_frame_in(struct node *n, uint64_t from, size_t len)
{
    struct node__metrics *m = n->metrics;
    for (size_t i = 0; i < m->n_rx; i++) {
        if (m->rx[i].id == from) {
            m->rx[i].bytes += len;
            return;
        }
    }
    if (m->n_rx == RX_SLOTS) {
        /* Full (members come and go): forget the ones no longer members. */
        size_t k = 0;
        for (size_t i = 0; i < m->n_rx; i++)
            if (kv_member_by_raft_id(n->kv, m->rx[i].id) != NULL)
                m->rx[k++] = m->rx[i];
        m->n_rx = k;
        if (k == RX_SLOTS)
            return; /* 64 members at once: more than a cluster holds */
    }
    m->rx[m->n_rx].id = from;
    m->rx[m->n_rx++].bytes = len;
}

void node__metrics_from_leader(struct node *n, const struct raft_msg *m)
{
    if ((m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT) &&
        m->commit > n->metrics->leader_commit && m->commit <= RAFT_INDEX_MAX)
        n->metrics->leader_commit = m->commit;
}

uint64_t node__leader_commit(const struct node *n)
{
    uint64_t own = raft_commit_index(n->raft);
    if (raft_soft(n->raft).role == RAFT_LEADER)
        return own;
    return n->metrics->leader_commit > own ? n->metrics->leader_commit : own;
}

void node__metrics_leader(struct node *n, uint64_t from, uint64_t to)
{
    if (to != RAFT_NONE && to != from)
        n->metrics->leader_changes++;
}

static int prop_outcome(int err)
{
    switch (err) {
    case 0: return PROP_PLACED;
    case CRAFT_ENOLEADER: return PROP_NO_LEADER;
    case CRAFT_ENOTLEADER: return PROP_NOT_LEADER;
    case CRAFT_ETRANSFER: return PROP_TRANSFER;
    case CRAFT_EBUSY: return PROP_BUSY;
    case CRAFT_EOVERLOAD: return PROP_OVERLOAD;
    case CRAFT_EDROPPED: return PROP_DROPPED;
    case CRAFT_ETOOBIG: return PROP_TOO_BIG;
    case CRAFT_EINVAL: return PROP_INVALID;
    default: return PROP_OTHER;
    }
}

void node__metrics_prop(struct node *n, const struct raft_prop_result *p)
{
    n->metrics->props[prop_outcome(p->err)]++;
}

void node__metrics_prop_final(struct node *n, enum node__prop_final f)
{
    n->metrics->finals[f]++;
}

void node__metrics_syncs(struct node *n, const struct stor_sync_log *l)
{
    struct metrics_hist *h = &n->metrics->fsync;
    for (uint32_t i = 0; i < l->n; i++)
        metrics_hist_observe(h, l->ns[i]);
    /* Past the log's capacity only the total is known: each counts as the
     * mean of those. */
    for (uint64_t i = 0; i < l->lost; i++)
        metrics_hist_observe(h, l->lost_ns / l->lost);
}

void node__metrics_snapshot_begin(struct node *n)
{
    n->metrics->snap_t0 = uv_hrtime();
}

void node__metrics_snapshot_end(struct node *n, bool ok)
{
    struct node__metrics *m = n->metrics;
    if (ok && m->snap_t0 != 0)
        metrics_hist_observe(&m->snapshot, uv_hrtime() - m->snap_t0);
    m->snap_t0 = 0;
}

void node__metrics_loop_busy(struct node *n, uint64_t ns)
{
    struct node__metrics *m = n->metrics;
    metrics_hist_observe(&m->loop_busy, ns);
    if (ns > m->loop_longest)
        m->loop_longest = ns;
}

uint64_t node__metrics_loop_longest(const struct node *n, uint64_t *iterations,
                                    uint64_t *busy_ns)
{
    *iterations = n->metrics->loop_busy.count;
    *busy_ns = n->metrics->loop_busy.sum;
    return n->metrics->loop_longest;
}

/* ---- the scrape ---- */

static void put_http(struct metrics_buf *b, const struct node__metrics *m)
{
    metrics_put_family(b, &FAMILIES[F_HTTP_REQS]);
    for (int r = 0; r < HTTP_ROUTE_COUNT; r++) {
        for (int k = 0; k < HTTP_METHOD_COUNT; k++) {
            const struct metrics_codes *c = &m->http[r][k];
            struct metrics_label l[3] = {{"route", http_route_name(r)},
                                         {"method", http_method_name(k)},
                                         {"code", "other"}};
            for (unsigned i = 0; i < c->used; i++) {
                char code[8];
                snprintf(code, sizeof code, "%u", (unsigned)c->code[i]);
                l[2].value = code;
                metrics_put_u64(b, &FAMILIES[F_HTTP_REQS], l, 3, c->n[i]);
            }
            if (c->other > 0) {
                l[2].value = "other";
                metrics_put_u64(b, &FAMILIES[F_HTTP_REQS], l, 3, c->other);
            }
        }
    }
    metrics_put_family(b, &FAMILIES[F_HTTP_TIME]);
    for (int r = 0; r < HTTP_ROUTE_COUNT; r++) {
        if (m->http_time[r].count == 0)
            continue; /* routes never asked for: no series */
        struct metrics_label l = {"route", http_route_name(r)};
        metrics_put_hist(b, &FAMILIES[F_HTTP_TIME], &l, 1, &m->http_time[r]);
    }
}

/* A family of one unlabelled sample. */
static void put_single(struct metrics_buf *b, int f, uint64_t v)
{
    metrics_put_family(b, &FAMILIES[f]);
    metrics_put_u64(b, &FAMILIES[f], NULL, 0, v);
}

static void put_raft(struct metrics_buf *b, struct node *n)
{
    const struct node__metrics *m = n->metrics;
    struct raft_soft_state s = raft_soft(n->raft);
    put_single(b, F_TERM, s.term);
    put_single(b, F_COMMIT, raft_commit_index(n->raft));
    put_single(b, F_APPLIED, n->applied);
    put_single(b, F_LAST, raft_last_index(n->raft));
    put_single(b, F_IS_LEADER, s.role == RAFT_LEADER);
    put_single(b, F_LEADER_CHANGES, m->leader_changes);
    metrics_put_family(b, &FAMILIES[F_PROPS]);
    for (int i = 0; i < PROP_OUTCOMES; i++) {
        struct metrics_label l = {"outcome", PROP_NAMES[i]};
        metrics_put_u64(b, &FAMILIES[F_PROPS], &l, 1, m->props[i]);
    }
    metrics_put_family(b, &FAMILIES[F_PROP_FINALS]);
    for (int i = 0; i < NODE__PROP_FINALS; i++) {
        struct metrics_label l = {"result", FINAL_NAMES[i]};
        metrics_put_u64(b, &FAMILIES[F_PROP_FINALS], &l, 1, m->finals[i]);
    }
    metrics_put_family(b, &FAMILIES[F_FSYNC]);
    metrics_put_hist(b, &FAMILIES[F_FSYNC], NULL, 0, &m->fsync);
    metrics_put_family(b, &FAMILIES[F_SNAPSHOT]);
    metrics_put_hist(b, &FAMILIES[F_SNAPSHOT], NULL, 0, &m->snapshot);
    metrics_put_family(b, &FAMILIES[F_LOOP_BUSY]);
    metrics_put_hist(b, &FAMILIES[F_LOOP_BUSY], NULL, 0, &m->loop_busy);
    metrics_put_family(b, &FAMILIES[F_LOOP_LONGEST]);
    metrics_put_seconds(b, &FAMILIES[F_LOOP_LONGEST], NULL, 0, m->loop_longest);
    put_single(b, F_KEYS, kv_count(n->kv));
    put_single(b, F_LEASES, kv_lease_count(n->kv));
    put_single(b, F_WATCHERS, node__watchers_count(n));
}

/* One row per member id: a name may stand for several Raft ids (a member
 * re-added as a new incarnation), whose bytes add up. */
struct peer_row {
    const char *name;
    uint64_t sent, recv;
};

static size_t row_of(struct peer_row *rows, size_t *n, size_t cap, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(rows[i].name, name) == 0)
            return i;
    if (*n == cap)
        return cap;
    rows[*n] = (struct peer_row){.name = name};
    return (*n)++;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct peer_row *)a)->name, ((const struct peer_row *)b)->name);
}

static const char *peer_name(struct node *n, uint64_t id)
{
    const struct kv_member *mb = kv_member_by_raft_id(n->kv, id);
    return mb != NULL ? mb->id : "unknown";
}

static void put_peers(struct metrics_buf *b, struct node *n)
{
    enum { CAP = RX_SLOTS + RAFT_MAX_MEMBERS * 2 };
    struct peer_stats st[CAP];
    struct peer_row rows[CAP + RX_SLOTS];
    size_t nrows = 0, cap = sizeof rows / sizeof rows[0];
    size_t k = n->peers ? peer_list_stats(n->peers, st, CAP) : 0;
    for (size_t i = 0; i < k && i < CAP; i++) {
        size_t r = row_of(rows, &nrows, cap, peer_name(n, st[i].id));
        if (r < cap)
            rows[r].sent += st[i].bytes_sent;
    }
    const struct node__metrics *m = n->metrics;
    for (size_t i = 0; i < m->n_rx; i++) {
        size_t r = row_of(rows, &nrows, cap, peer_name(n, m->rx[i].id));
        if (r < cap)
            rows[r].recv += m->rx[i].bytes;
    }
    qsort(rows, nrows, sizeof rows[0], row_cmp);
    metrics_put_family(b, &FAMILIES[F_PEER_SENT]);
    for (size_t i = 0; i < nrows; i++) {
        struct metrics_label l = {"peer", rows[i].name};
        metrics_put_u64(b, &FAMILIES[F_PEER_SENT], &l, 1, rows[i].sent);
    }
    metrics_put_family(b, &FAMILIES[F_PEER_RECV]);
    for (size_t i = 0; i < nrows; i++) {
        struct metrics_label l = {"peer", rows[i].name};
        metrics_put_u64(b, &FAMILIES[F_PEER_RECV], &l, 1, rows[i].recv);
    }
    struct peer_transport_stats ts = {0};
    if (n->peers)
        peer_transport_get_stats(n->peers, &ts);
    const uint64_t dg[DG_RESULTS] = {
        [DG_SENT] = ts.dgrams_sent, [DG_UNSENT] = ts.dgrams_unsent,
        [DG_RECEIVED] = ts.dgrams_received, [DG_STALE] = ts.dgrams_stale,
        [DG_REJECTED] = ts.dgrams_rejected,
        [DG_UNANSWERED] = ts.dgrams_unanswered,
    };
    metrics_put_family(b, &FAMILIES[F_PEER_DGRAMS]);
    for (int i = 0; i < DG_RESULTS; i++) {
        struct metrics_label l = {"result", DGRAM_NAMES[i]};
        metrics_put_u64(b, &FAMILIES[F_PEER_DGRAMS], &l, 1, dg[i]);
    }
    metrics_put_family(b, &FAMILIES[F_PEER_TWINS]);
    metrics_put_u64(b, &FAMILIES[F_PEER_TWINS], NULL, 0, ts.frames_twins);
}

/* Open descriptors: the entries of /proc/self/fd, less the one listing it. */
static int open_fds(uint64_t *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    uint64_t k = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            k++;
    closedir(d);
    *out = k > 0 ? k - 1 : 0;
    return 0;
}

static void put_process(struct metrics_buf *b, uint64_t start_ns)
{
    char buf[4096];
    struct metrics_proc_stat ps;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    ssize_t len = read_small("/proc/self/stat", buf, sizeof buf);
    if (len > 0 && tck > 0 && page > 0 && metrics_proc_parse_stat(buf, (size_t)len, &ps) == 0) {
        uint64_t ns_per_tick = 1000000000ull / (uint64_t)tck;
        metrics_put_family(b, &PROCESS[P_CPU]);
        metrics_put_seconds(b, &PROCESS[P_CPU], NULL, 0, (ps.utime + ps.stime) * ns_per_tick);
        metrics_put_family(b, &PROCESS[P_RSS]);
        metrics_put_u64(b, &PROCESS[P_RSS], NULL, 0, ps.rss * (uint64_t)page);
        metrics_put_family(b, &PROCESS[P_VSIZE]);
        metrics_put_u64(b, &PROCESS[P_VSIZE], NULL, 0, ps.vsize);
    }
    if (start_ns != 0) {
        metrics_put_family(b, &PROCESS[P_START]);
        metrics_put_seconds(b, &PROCESS[P_START], NULL, 0, start_ns);
    }
    uint64_t fds;
    if (open_fds(&fds) == 0) {
        metrics_put_family(b, &PROCESS[P_FDS]);
        metrics_put_u64(b, &PROCESS[P_FDS], NULL, 0, fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        metrics_put_family(b, &PROCESS[P_MAX_FDS]);
        metrics_put_u64(b, &PROCESS[P_MAX_FDS], NULL, 0, (uint64_t)rl.rlim_cur);
    }
}

static void on_metrics(void *ud, struct http_req *req)
{
    struct node *n = ud;
    struct metrics_buf b;
    metrics_buf_init(&b);
    put_http(&b, n->metrics);
    put_raft(&b, n);
    put_peers(&b, n);
    put_process(&b, n->metrics->start_ns);
    if (b.failed)
        http_reply_error(req, 503, "out of memory");
    else
        http_reply_body(req, 200, METRICS_CONTENT_TYPE, b.data, b.len);
    metrics_buf_free(&b);
}

void node__ops_handlers(struct http_handlers *h)
{
    h->livez = node__on_livez;
    h->readyz = node__on_readyz;
    h->metrics = on_metrics;
    h->observe = on_observe;
}
