/* The node's lifecycle: open the store, restore the state machine, start the
 * core, the transport and the HTTP server; the tick; a clean stop. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/alloc.h"
#include "common/member_id.h"
#include "node/internal.h"
#include "node/metrics.h"

uint64_t node__now(const struct node *n)
{
    return uv_now(n->loop);
}

static void on_frame(void *ud, uint64_t from, const uint8_t *buf, size_t len)
{
    struct node *n = ud;
    struct raft_msg m;
    unsigned more;
    node__metrics_frame_in(n, from, len);
    if (!node__takes_part(n))
        return; /* removed: the cluster goes on without us */
    int rv = raft_msg_decode(buf, len, &m);
    if (rv) {
        if (node__log_allowed(n, 0x1000 ^ from, &more))
            CRAFT_WARN(&n->log, "dropping a malformed message from %016llx: "
                       "%s (%u more since the last line)",
                       (unsigned long long)from, craft_strerror(rv), more);
        return;
    }
    if (m.from != from) {
        /* The handshake named the sender; nobody speaks for another. */
        if (node__log_allowed(n, 0x2000 ^ from, &more))
            CRAFT_WARN(&n->log, "dropping a message claiming to be from "
                       "%016llx on the connection of %016llx (%u more since "
                       "the last line)", (unsigned long long)m.from,
                       (unsigned long long)from, more);
    } else if (!n->stopping) {
        /* Owed ticks first (raft.h, above raft_step): after a stall libuv
         * runs I/O callbacks before timers, and a follower that stepped a
         * leader's round before its missing ticks would promise a lease
         * and then, ticks delivered, vote at once. */
        node__catch_up(n);
        rv = raft_step(n->raft, &m);
        if (rv && node__log_allowed(n, 0x4000 ^ from, &more)) {
            struct raft_stats st = raft_stats(n->raft);
            CRAFT_WARN(&n->log, "refused %s from %016llx (absurd values "
                       "%llu, not the term's leader %llu, term jumps capped "
                       "%llu so far; %u more since the last line)",
                       raft_msg_type_name(m.type), (unsigned long long)from,
                       (unsigned long long)st.absurd,
                       (unsigned long long)st.not_term_leader,
                       (unsigned long long)st.jumps_capped, more);
        }
        if (m.from == raft_soft(n->raft).leader) {
            n->heard_leader_at = node__now(n);
            node__metrics_from_leader(n, &m);
        }
    }
    raft_msg_decoded_free(&m);
}

static void log_soft(struct node *n)
{
    struct raft_soft_state s = raft_soft(n->raft);
    unsigned more;
    if (s.term + 1 >= RAFT_TERM_MAX && node__log_allowed(n, 0x5000, &more))
        CRAFT_ERROR(&n->log, "term %llu is at the bound: this node will not "
                    "campaign again (docs/architecture.md) (%u more)",
                    (unsigned long long)s.term, more);
    if (s.role == n->soft.role && s.leader == n->soft.leader &&
        s.term == n->soft.term)
        return;
    const struct kv_member *m = kv_member_by_raft_id(n->kv, s.leader);
    if (s.leader != n->soft.leader) {
        node__metrics_leader(n, n->soft.leader, s.leader);
        node__requests_leader_changed(n);
    }
    if (s.role != n->soft.role || s.leader != n->soft.leader)
        CRAFT_INFO(&n->log, "%s in term %llu, leader %s", raft_role_name(s.role),
                   (unsigned long long)s.term,
                   s.leader == RAFT_NONE ? "unknown" : m ? m->id : "(new)");
    n->soft = s;
}

/* Once per tick, or once after a stall (with every tick owed: clock.c). */
static void on_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    (void)node__catch_up(n);
    uv_timer_start(&n->ticker, on_tick, node__ms_to_next_tick(n), 0);
    if (!node__take_chores(n))
        return; /* woken early, no tick since the last chores: armed again */
    node__identity_tick(n);
    node__commit_tick(n);
    node__snapshot_poll(n);
    node__memory_tick(n);
    node__backup_poll(n);
    node__promote_learners(n);
    node__leases_tick(n);
    node__requests_tick(n);
    log_soft(n);
    /* What the chores proposed goes out now, not after the next poll. */
    node__pump(n);
    (void)node__hand_over_check(n); /* last: it may stop the node */
}

static void on_check(uv_check_t *c)
{
    struct node *n = c->data;
    node__pump(n);
    (void)node__leases_leading(n); /* a new leader's full TTL, at once */
    log_soft(n);
    if (raft_has_ready(n->raft)) /* requests issued again to a new leader */
        node__pump(n);
    (void)node__hand_over_check(n); /* last: it may stop the node */
}

static char *dup_str(const char *s)
{
    return s ? craft_memdup(s, strlen(s) + 1) : NULL;
}

/* -restore: the fresh store gets the backup as its first snapshot, and is
 * read back (p) as at a restart. */
static int restore(struct node *n, bool fresh, bool bootstrap, struct raft_persisted *p)
{
    struct kv *kv = n->o.restore;
    n->o.restore = NULL;
    int rv = CRAFT_EINVAL;
    if (!fresh || !bootstrap || n->o.inmem)
        CRAFT_ERROR(&n->log, "-restore needs an empty data directory, and neither -join "
                    "nor -inmem");
    else
        rv = node__restore_into(n, kv);
    kv_free(kv);
    if (rv) {
        CRAFT_ERROR(&n->log, "cannot restore the backup into %s: %s", n->dir,
                    craft_strerror(rv));
        return rv;
    }
    stor_close(n->stor);
    n->stor = NULL;
    struct stor_opts so = {.dir = n->dir, .log = &n->log,
                           .sys = n->o.stor_sys};
    return stor_open(&so, &n->stor, p);
}

/* The leader lease's margin for clocks that run at different rates
 * (docs/read-lease.md): a tenth of the election timeout and two ticks at
 * least, so that with 25 ms ticks and 18 of them the rates may differ by
 * 13% as with 50 ms and 20 (one tick would leave 6%). 0 (the core's
 * default, one tick) where two would leave no lease. */
static unsigned lease_margin(unsigned election_ticks)
{
    unsigned m = election_ticks / 10 > 2 ? election_ticks / 10 : 2;
    return m + 1 < election_ticks ? m : 0;
}

static int start_core(struct node *n)
{
    struct stor_opts so = {.dir = n->dir, .inmem = n->o.inmem, .log = &n->log,
                           .sys = n->o.stor_sys, .lock_wait_ms = NODE__LOCK_WAIT_MS};
    struct raft_persisted p;
    int rv = stor_open(&so, &n->stor, &p);
    if (rv)
        return rv;
    /* Entries without a durable term are a torn first write (raft_new
     * ignores them): the node starts afresh. */
    bool fresh = p.hs.term == 0 && p.snap.index == 0;
    /* Before the identity: a fresh directory would get one. */
    if (n->o.force_new && (n->o.inmem || n->o.restore || n->join)) {
        CRAFT_ERROR(&n->log, "-force-new-cluster takes neither -join, -restore nor -inmem");
        return CRAFT_EINVAL;
    }
    if (n->o.force_new && fresh) {
        CRAFT_ERROR(&n->log, "-force-new-cluster: the data directory %s holds no Raft state "
                    "(no term, no snapshot): there is nothing to keep; nothing was changed",
                    n->dir);
        return CRAFT_EINVAL;
    }
    bool bootstrap, join;
    rv = node__identity_open(n, fresh, &bootstrap, &join);
    if (rv)
        return rv;
    bool restored = n->o.restore != NULL;
    if (restored) {
        rv = restore(n, fresh, bootstrap, &p);
        if (rv)
            return rv;
        fresh = bootstrap = false; /* read back as at a restart */
    }
    struct raft_config cfg = {
        .id = n->raft_id,
        .seed = n->raft_id ^ (uint64_t)uv_hrtime(),
        .election_ticks = n->o.election_ticks,
        .election_jitter_ticks = n->o.election_jitter_ticks,
        .heartbeat_ticks = n->o.heartbeat_ticks,
        .lease_margin_ticks = lease_margin(n->o.election_ticks),
        .check_quorum_rounds = n->o.check_quorum_rounds,
        .snapshot_threshold = n->o.snapshot_threshold,
        /* Keep a window of log behind each snapshot so that a briefly
         * lagging follower catches up from the log, not a whole snapshot. */
        .snapshot_trailing = n->o.snapshot_threshold / 2 < 1024
                                 ? n->o.snapshot_threshold / 2 + 1 : 1024,
    };
    rv = raft_new(&cfg, fresh ? NULL : &p, &n->raft);
    if (rv)
        return rv;
    rv = node__leases_open(n); /* before the map: a restore rebuilds it */
    if (rv)
        return rv;
    n->kv = kv_new(0);
    if (n->kv == NULL)
        return CRAFT_ENOMEM;
    const struct raft_snap_meta *sm = raft_snapshot(n->raft);
    if (sm->index > 0)
        rv = node__snapshot_restore(n, sm->index);
    if (rv == 0 && n->o.force_new) /* the same snapshot, a new core and p */
        rv = node__force_new(n, &cfg, &p);
    if (rv)
        return rv;
    n->boot = p; /* released once the peers in it are known (below) */
    n->saved_term = raft_hard(n->raft).term;
    n->saved_vote = raft_hard(n->raft).vote;
    sm = raft_snapshot(n->raft);
    if (sm->index > 0) {
        /* The store hands back every entry it holds, those the snapshot
         * covers too (a segment is deleted only once all of it is): keep
         * in memory only the window a new snapshot keeps behind it. */
        uint64_t keep;
        if (sm->index <= raft_applied_index(n->raft))
            (void)raft_snapshot_taken(n->raft, sm->index, sm->size, &keep);
    }
    rv = node__watch_init(n);
    if (rv)
        return rv;
    if (bootstrap) {
        uint8_t *ctx;
        size_t len;
        rv = node__member_ctx(n->id, n->raft_addr, n->http_addr, &ctx, &len);
        if (rv)
            return rv;
        struct raft_conf_change cc = {.op = RAFT_CONF_ADD_VOTER,
                                      .node = n->raft_id,
                                      .ctx_len = (uint32_t)len, .ctx = ctx};
        rv = raft_bootstrap(n->raft, &n->raft_id, 1, &cc);
        craft_free(ctx);
        if (rv)
            return rv;
        n->bootstrapped = true; /* said once the ports are bound */
    } else if (fresh) {
        n->o.join = n->join; /* ask to be added once we serve */
    } else if (restored) {
        n->bootstrapped = true; /* a new cluster, said once serving */
    } else {
        CRAFT_INFO(&n->log, "restarting from %s: term %llu, log %llu..%llu, "
                   "snapshot at %llu", n->o.inmem ? "memory" : n->dir,
                   (unsigned long long)raft_hard(n->raft).term,
                   (unsigned long long)raft_first_index(n->raft),
                   (unsigned long long)raft_last_index(n->raft),
                   (unsigned long long)raft_snapshot(n->raft)->index);
        n->replayed_upto = raft_hard(n->raft).commit;
        if (n->join && !join)
            CRAFT_INFO(&n->log, "existing state: -join %s ignored", n->join);
        n->o.join = join ? n->join : NULL; /* a removed node rejoins */
    }
    return 0;
}

static int start_services(struct node *n)
{
    char host[PEER_HOST_MAX + 1];
    uint16_t port;
    int rv = peer_parse_addr(n->raft_addr, host, sizeof host, &port);
    if (rv)
        return rv;
    /* Bind outgoing connections to our own address when it is numeric, so
     * that per-address firewall rules see each node separately. */
    bool numeric = host[0] && strspn(host, "0123456789.") == strlen(host);
    struct peer_opts po = {.loop = n->loop,
                           .listen_addr = n->raft_addr,
                           .bind_host = numeric ? host : NULL,
                           .self_id = n->raft_id,
                           .self_tag = n->name_tag,
                           .cluster_id = n->ident.cluster_id,
                           .on_refused = node__on_refused,
                           .token = n->o.cluster_token,
                           .token_len = n->o.cluster_token
                                            ? strlen(n->o.cluster_token) : 0,
                           .max_conns = n->o.peer_max_conns,
                           .max_unauth_conns = n->o.peer_max_unauth_conns,
                           .seed = n->raft_id,
                           .log = &n->log,
                           .on_frame = on_frame,
                           .ud = n,
                           .tls_cert = n->o.peer_tls_cert,
                           .tls_key = n->o.peer_tls_key,
                           .tls_ca = n->o.peer_tls_ca,
                           .self_incarnation = n->ident.incarnation};
    rv = peer_transport_start(&n->peers, &po);
    n->o.cluster_token = NULL; /* the caller's; the transport has a key */
    if (rv)
        return rv;
    if (!peer_transport_authenticated(n->peers) &&
        !peer_transport_loopback(n->peers))
        CRAFT_WARN(&n->log, "the Raft port %s is not on loopback and peer "
                   "connections are not authenticated: anyone who reaches it "
                   "can take over the cluster (claim to be a member, depose "
                   "the leader, rewrite the log). Set -cluster-token (or "
                   "CRAFTD_CLUSTER_TOKEN) on every node, or keep the port on "
                   "a private network", n->raft_addr);
    if (!n->removed) {
        node__peers_sync(n);
        /* Also every member named in the stored log after the snapshot,
         * applied or not: a node restarting with a stale commit index
         * learns the members only by applying entries, which takes
         * answering the leader. */
        node__peers_from_log(n, n->boot.entries, n->boot.n_entries);
        node__check_own_addresses(n, n->boot.entries, n->boot.n_entries);
    }
    stor_release_persisted(n->stor);
    struct http_handlers handlers = node__http_handlers;
    node__ops_handlers(&handlers); /* /livez, /readyz, /metrics, counting */
    struct http_opts ho = {.loop = n->loop,
                           .listen = n->http_addr,
                           .max_body = n->o.max_body,
                           .max_conns = n->o.http_max_conns,
                           .max_conns_per_ip = n->o.http_max_conns_per_ip,
                           .auth = n->o.auth,
                           .tls_cert = n->o.tls_cert,
                           .tls_key = n->o.tls_key,
                           .tls_client_ca = n->o.tls_client_ca,
                           .log = &n->log,
                           .handlers = &handlers,
                           .ud = n};
    rv = http_server_start(&n->http, &ho); /* copies handlers */
    if (rv)
        return rv;
    uv_timer_init(n->loop, &n->ticker);
    n->ticker.data = n;
    node__clock_start(n);
    uv_timer_start(&n->ticker, on_tick, n->o.tick_ms, 0);
    uv_check_init(n->loop, &n->pumper);
    n->pumper.data = n;
    uv_check_start(&n->pumper, on_check);
    uv_idle_init(n->loop, &n->applier);
    n->applier.data = n;
    n->busy_on = node__busy_start(n) == 0; /* measured or not, the node runs */
    if (n->o.join)
        return node__joiner_start(n);
    return 0;
}

static void free_node(struct node *n)
{
    kv_free(n->o.restore);
    raft_free(n->raft);
    node__watch_free(n);
    kv_free(n->kv);
    node__leases_close(n);
    stor_close(n->stor);
    craft_free(n->slots);
    craft_free(n->heap);
    craft_free(n->ebuf);
    craft_free(n->id);
    craft_free(n->http_addr);
    craft_free(n->raft_addr);
    craft_free(n->join);
    craft_free(n->dir);
    node__httpc_teardown(n);
    node__watchers_free(n);
    node__metrics_free(n);
    craft_free(n);
}

int node_start(uv_loop_t *loop, const struct node_opts *o, struct node **out)
{
    *out = NULL;
    struct node *n = craft_calloc(1, sizeof *n);
    if (n == NULL)
        return CRAFT_ENOMEM;
    n->loop = loop;
    n->started_ms = uv_now(loop);
    n->o = *o;
    if (o->log)
        n->log = *o->log;
    n->id = dup_str(o->id);
    n->http_addr = dup_str(o->http_addr);
    n->raft_addr = dup_str(o->raft_addr);
    n->join = o->join && *o->join ? dup_str(o->join) : NULL;
    n->dir = dup_str(o->dir ? o->dir : "");
    n->o.log = &n->log;
    /* Defaults: an election timeout of 450-575 ms (18 ticks and 0-5 more
     * of 25 ms), a heartbeat every tick, and a leader that steps down
     * after two timeouts in a row without a quorum, so that a dead leader
     * is replaced within about half a second (docs/operations.md,
     * "Failover"). etcd and hraftd wait 1-2 s: [e, 2e). The random part is
     * narrower than theirs because a tie is rare here (the nodes' tick
     * timers run at unrelated phases) and cheap (a candidate asked for its
     * vote by another of its term tries again within a few ticks).
     * Heartbeats also go as datagrams, so packet loss does not hold them
     * up behind TCP's retransmissions (src/transport/datagram.c). */
    if (n->o.tick_ms == 0)
        n->o.tick_ms = 25;
    if (n->o.election_ticks == 0)
        n->o.election_ticks = 18;
    if (n->o.election_jitter_ticks == 0)
        n->o.election_jitter_ticks = n->o.election_ticks < 6 ? n->o.election_ticks : 6;
    if (n->o.check_quorum_rounds == 0)
        n->o.check_quorum_rounds = 2;
    if (n->o.heartbeat_ticks == 0)
        n->o.heartbeat_ticks = n->o.election_ticks >= 10
                                   ? n->o.election_ticks / 10 : 1;
    if (n->o.request_timeout_ms == 0)
        n->o.request_timeout_ms = 5000;
    if (n->o.snapshot_threshold == 0)
        n->o.snapshot_threshold = 8192;
    if (n->o.watch_max == 0)
        n->o.watch_max = 10000;
    if (n->o.blocking_max == 0)
        n->o.blocking_max = 10000;
    if (n->o.watch_progress_ms == 0)
        n->o.watch_progress_ms = 5000;
    n->next_req = 1;
    int rv = 0;
    if (o->peer_tls_cert || o->peer_tls_key || o->peer_tls_ca) {
        /* Before the data directory is touched: a bad file stops us here. */
        char why[512];
        rv = peer_tls_check(o->peer_tls_cert, o->peer_tls_key,
                            o->peer_tls_ca, o->id, why, sizeof why);
        if (rv)
            CRAFT_ERROR(&n->log, "%s", why);
    }
    if (rv == 0)
        rv = node__metrics_new(n);
    if (rv == 0)
        rv = node__httpc_setup(n);
    if (rv == 0)
        rv = start_core(n);
    if (rv == 0)
        rv = start_services(n);
    if (rv) {
        /* Nothing async was left running except what close handles. */
        if (n->http || n->peers) {
            n->stopping = true;
            node_stop(n, NULL, NULL);
            return rv;
        }
        free_node(n);
        return rv;
    }
    if (n->bootstrapped)
        CRAFT_INFO(&n->log, "bootstrapped a new cluster %016llx with %s as "
                   "its only member", (unsigned long long)n->ident.cluster_id,
                   n->id);
    CRAFT_INFO(&n->log, "serving HTTP on %s, Raft on %s", n->http_addr,
               n->raft_addr);
    *out = n;
    return 0;
}

/* ---- stopping ---- */

static void closed_one(struct node *n)
{
    if (--n->closing > 0)
        return;
    void (*cb)(void *) = n->stop_cb;
    void *ud = n->stop_ud;
    free_node(n);
    if (cb)
        cb(ud);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_service_closed(void *ud)
{
    closed_one(ud);
}

static void finish_stop(struct node *n)
{
    n->closing = 1; /* held until everything below is asked to close */
    if (n->http) {
        n->closing++;
        http_server_close(n->http, on_service_closed, n);
        n->http = NULL;
    }
    if (n->peers) {
        n->closing++;
        peer_transport_close(n->peers, on_service_closed, n);
        n->peers = NULL;
    }
    uv_handle_t *wt = node__watchers_timer(n);
    if (wt != NULL) {
        n->closing++;
        wt->data = n;
        uv_close(wt, on_handle_closed);
    }
    if (uv_is_active((uv_handle_t *)&n->ticker) ||
        n->ticker.data == n) {
        n->closing += 3;
        uv_close((uv_handle_t *)&n->ticker, on_handle_closed);
        uv_close((uv_handle_t *)&n->pumper, on_handle_closed);
        uv_close((uv_handle_t *)&n->applier, on_handle_closed);
        if (n->busy_on) {
            n->closing++;
            uv_close((uv_handle_t *)&n->busy_meter, on_handle_closed);
        }
    }
    closed_one(n);
}

/* Wait for the disk job in flight (it finishes what was acknowledged to be
 * persisted), then close. */
static void stop_when_idle(uv_timer_t *t);

/* Stops as if no hand-over was wanted: answers what is pending ("shutting
 * down"; a change already handed to the core "may or may not" apply),
 * waits for the disk job in flight, closes. */
static void stop_now(struct node *n)
{
    n->stopping = true;
    n->handing_over = false;
    node__joiner_stop(n);
    node__identity_stop(n);
    node__snapshot_cancel(n);
    node__backup_stop(n);
    node__watchers_stop(n);
    node__requests_fail_all(n, 503, "shutting down");
    if (n->ticker.data == n)
        uv_timer_stop(&n->ticker);
    if (!n->job_running) {
        finish_stop(n);
        return;
    }
    /* Poll for the job to end; the timer handle is closed with the rest. */
    uv_timer_start(&n->ticker, stop_when_idle, 5, 0);
}

/* A leader that stops first hands leadership to the voter with the most of
 * the log, so that the others need not wait out an election timeout. True
 * if a transfer started. */
static bool start_hand_over(struct node *n)
{
    if (raft_soft(n->raft).role != RAFT_LEADER || n->ticker.data != n)
        return false;
    const struct raft_conf *c = raft_conf(n->raft);
    uint64_t best = RAFT_NONE, best_match = 0;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        uint64_t match, next;
        if (c->voters[i] == n->raft_id ||
            !raft_progress(n->raft, c->voters[i], &match, &next))
            continue;
        if (best == RAFT_NONE || match > best_match) {
            best = c->voters[i];
            best_match = match;
        }
    }
    if (best == RAFT_NONE)
        return false; /* the only voter */
    const struct kv_member *m = kv_member_by_raft_id(n->kv, best);
    int rv = raft_transfer_leader(n->raft, best);
    if (rv) {
        CRAFT_WARN(&n->log, "cannot hand leadership to %s before stopping: %s",
                   m ? m->id : "(unknown)", craft_strerror(rv));
        return false;
    }
    n->handing_over = true;
    n->hand_over_deadline = node__now(n) + (uint64_t)n->o.election_ticks * n->o.tick_ms;
    CRAFT_INFO(&n->log, "handing leadership to %s (log at %llu) before stopping",
               m ? m->id : "(unknown)", (unsigned long long)best_match);
    return true;
}

bool node__hand_over_check(struct node *n)
{
    if (!n->handing_over)
        return false;
    uint64_t leader = raft_soft(n->raft).leader;
    if (leader != RAFT_NONE && leader != n->raft_id) {
        const struct kv_member *m = kv_member_by_raft_id(n->kv, leader);
        CRAFT_INFO(&n->log, "%s leads now: stopping", m ? m->id : "(unknown)");
    } else if (node__now(n) >= n->hand_over_deadline) {
        CRAFT_WARN(&n->log, "no other node leads after an election timeout: stopping "
                   "anyway");
    } else {
        return false;
    }
    stop_now(n);
    return true;
}

void node_stop(struct node *n, void (*cb)(void *), void *ud)
{
    if (n->handing_over)
        return; /* already stopping */
    n->stop_cb = cb;
    n->stop_ud = ud;
    if (!n->stopping && start_hand_over(n))
        return; /* node__hand_over_check stops once another node leads */
    stop_now(n);
}

static void stop_when_idle(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->job_running) {
        uv_timer_start(t, stop_when_idle, 5, 0);
        return;
    }
    finish_stop(n);
}
