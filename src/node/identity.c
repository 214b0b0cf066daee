/* Who this node is, and what it knows about its own membership: the
 * identity kept in the data directory (cluster id, incarnation; the Raft id
 * derives from the name and the incarnation), the refusals of the peer
 * handshake (a peer of another cluster, or one addressing an earlier
 * incarnation of this node), the conflict of a wiped node that bootstrapped
 * a new cluster under a name another cluster still counts, and the removed
 * state: learned from the applied configuration, or, for a node that missed
 * its removal, from the /status of a member that is at least as current.
 * docs/identity.md says why each rule is what it is. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/member_id.h"
#include "node/internal.h"

/* One log line per kind and peer per this long. */
#define RATE_LIMIT_MS 10000
/* Without word from a leader for this many election timeouts, a member
 * asks the others whether it is still one of them. */
#define PROBE_AFTER_TIMEOUTS 2
#define PROBE_EVERY_MS 1000
#define PROBE_TIMEOUT_MS 1000

static uint64_t election_ms(const struct node *n)
{
    return (uint64_t)n->o.election_ticks * n->o.tick_ms;
}

static const char *hex(char buf[17], uint64_t v)
{
    snprintf(buf, 17, "%016llx", (unsigned long long)v);
    return buf;
}

int node__hex_field(const json_t *obj, const char *name, uint64_t *out)
{
    *out = 0;
    json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    if (s == NULL)
        return CRAFT_EINVAL;
    if (*s == 0)
        return 0;
    size_t len = strlen(s);
    if (len > 16 || strspn(s, "0123456789abcdefABCDEF") != len)
        return CRAFT_EINVAL;
    *out = strtoull(s, NULL, 16);
    return 0;
}

/* ---- rate-limited log lines ---- */

bool node__log_allowed(struct node *n, uint64_t key, unsigned *suppressed)
{
    uint64_t now = node__now(n);
    struct node__ratelimit *slot = NULL, *oldest = &n->rl[0];
    for (size_t i = 0; i < NODE__RL_SLOTS; i++) {
        if (n->rl[i].key == key && n->rl[i].used) {
            slot = &n->rl[i];
            break;
        }
        if (!n->rl[i].used || n->rl[i].last_ms < oldest->last_ms)
            oldest = &n->rl[i];
    }
    if (slot == NULL) {
        slot = oldest;
        *slot = (struct node__ratelimit){.key = key, .used = true,
                                         .last_ms = now};
        *suppressed = 0;
        return true;
    }
    if (now - slot->last_ms < RATE_LIMIT_MS) {
        slot->suppressed++;
        return false;
    }
    *suppressed = slot->suppressed;
    slot->suppressed = 0;
    slot->last_ms = now;
    return true;
}

/* ---- the identity file ---- */

struct save_job {
    struct stor_identity id;
    void (*done)(struct node *, int);
};

static int save_work(struct node *n, void *arg)
{
    struct save_job *s = arg;
    return stor_identity_save(n->dir, NULL, &s->id);
}

static void save_after(struct node *n, void *arg, int rc)
{
    struct save_job *s = arg;
    void (*done)(struct node *, int) = s->done;
    craft_free(s);
    if (rc)
        CRAFT_ERROR(&n->log, "cannot store this node's identity in %s: %s",
                    n->dir, craft_strerror(rc));
    if (done)
        done(n, rc);
}

/* Store n->ident as it is now, off the loop; then done(n, rc). Saves run
 * in the order asked, so the newest wins. */
static int save_identity(struct node *n, void (*done)(struct node *, int))
{
    if (n->o.inmem) {
        if (done)
            done(n, 0);
        return 0;
    }
    struct save_job *s = craft_calloc(1, sizeof *s);
    if (s == NULL)
        return CRAFT_ENOMEM;
    s->id = n->ident;
    s->done = done;
    int rv = node__job(n, save_work, save_after, s);
    if (rv)
        craft_free(s);
    return rv;
}

int node__identity_learn_cluster(struct node *n, uint64_t cluster,
                                 void (*done)(struct node *, int))
{
    n->ident.cluster_id = cluster;
    peer_set_cluster(n->peers, cluster);
    return save_identity(n, done);
}

void node__identity_joined(struct node *n)
{
    n->joining = false;
}

static int draw(struct node *n, uint64_t *out, const char *what)
{
    int rv = stor_random_id(NULL, out);
    if (rv)
        CRAFT_ERROR(&n->log, "cannot draw a %s: %s", what, craft_strerror(rv));
    return rv;
}

int node__identity_open(struct node *n, bool fresh, bool *bootstrap,
                        bool *join)
{
    struct stor_identity id = {0};
    *bootstrap = false;
    *join = false;
    int rv = 0;
    bool save = false;
    if (!fresh && !n->o.inmem) {
        rv = stor_identity_load(n->dir, NULL, &id);
        if (rv == CRAFT_ENOTFOUND) {
            /* A directory from before identities: the Raft id stays the
             * hash of the name, the cluster id unknown. The file is written
             * so that what the node learns later can be kept. */
            CRAFT_INFO(&n->log, "%s has no %s (written by an older craftd): "
                       "incarnation 0, cluster id unknown", n->dir,
                       STOR_IDENTITY_FILE);
            memset(&id, 0, sizeof id);
            save = true;
        } else if (rv) {
            CRAFT_ERROR(&n->log, "cannot read %s/%s: %s. Without it this node "
                        "does not know its Raft id. Move the directory aside "
                        "and restart the node with -join <HTTP address of a "
                        "member>: it rejoins as a new incarnation and gets "
                        "the data from the cluster (docs/operations.md)",
                        n->dir, STOR_IDENTITY_FILE, craft_strerror(rv));
            return rv;
        }
    }
    if (fresh) {
        /* An empty directory (or -inmem): a new incarnation, whatever was
         * there before. It has acknowledged nothing yet. */
        memset(&id, 0, sizeof id);
        rv = draw(n, &id.incarnation, "node incarnation");
        if (rv == 0 && n->join == NULL) {
            rv = draw(n, &id.cluster_id, "cluster id");
            id.flags |= STOR_IDENT_FOUNDER;
            *bootstrap = true;
        }
        if (rv)
            return rv;
        *join = n->join != NULL;
        save = true;
    } else if (id.flags & STOR_IDENT_REMOVED) {
        if (n->join != NULL) {
            uint64_t old = craft_member_id(n->id, id.incarnation);
            rv = draw(n, &id.incarnation, "node incarnation");
            if (rv)
                return rv;
            id.flags &= ~(STOR_IDENT_REMOVED | STOR_IDENT_FOUNDER);
            id.removed_index = 0;
            CRAFT_INFO(&n->log, "this node (Raft id %016llx) was removed from "
                       "its cluster; -join %s given: it rejoins as a new "
                       "incarnation, Raft id %016llx, keeping its data",
                       (unsigned long long)old, n->join,
                       (unsigned long long)craft_member_id(n->id,
                                                           id.incarnation));
            *join = true;
            save = true;
        } else {
            n->removed = true;
            n->removed_entered = false;
            snprintf(n->removed_why, sizeof n->removed_why,
                     "removed at index %llu (known from its data directory)",
                     (unsigned long long)id.removed_index);
        }
    }
    if (id.flags & STOR_IDENT_CONFLICT) {
        char c1[17], c2[17];
        n->conflict = true;
        snprintf(n->conflict_why, sizeof n->conflict_why,
                 "cluster %s counts a member named %s at this node's address, "
                 "but this node started from an empty data directory "
                 "without -join and is cluster %s of its own",
                 hex(c1, id.conflict_cluster), n->id, hex(c2, id.cluster_id));
    }
    if (save && !n->o.inmem) {
        /* Durable before the node sends or acknowledges anything. */
        rv = stor_identity_save(n->dir, NULL, &id);
        if (rv) {
            CRAFT_ERROR(&n->log, "cannot store this node's identity in %s: %s",
                        n->dir, craft_strerror(rv));
            return rv;
        }
    }
    n->ident = id;
    n->raft_id = craft_member_id(n->id, id.incarnation);
    n->name_tag = craft_member_id(n->id, 0);
    n->joining = *join;
    n->heard_leader_at = node__now(n);
    char c[17], inc[17], r[17];
    CRAFT_INFO(&n->log, "identity: %s, Raft id %s, incarnation %s, cluster %s",
               n->id, hex(r, n->raft_id), hex(inc, id.incarnation),
               id.cluster_id ? hex(c, id.cluster_id) : "unknown");
    if (n->removed)
        CRAFT_WARN(&n->log, "this node was removed from its cluster (%s): it "
                   "takes no part and answers client requests with 410. To "
                   "bring it back, restart it with -join <HTTP address of a "
                   "member>", n->removed_why);
    if (n->conflict)
        CRAFT_ERROR(&n->log, "conflict: %s. It refuses client requests (409). "
                    "Stop it, move its data directory %s aside, and restart "
                    "it with -join <HTTP address of a member of the other "
                    "cluster> (docs/operations.md)", n->conflict_why, n->dir);
    return 0;
}

/* ---- the removed state ---- */

void node__mark_removed(struct node *n, uint64_t index, const char *fmt, ...)
{
    if (n->removed)
        return;
    n->removed = true;
    n->removed_entered = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->removed_why, sizeof n->removed_why, fmt, ap);
    va_end(ap);
    n->ident.flags |= STOR_IDENT_REMOVED;
    n->ident.removed_index = index;
    if (save_identity(n, NULL) != 0)
        CRAFT_ERROR(&n->log, "out of memory storing the removed state");
    CRAFT_WARN(&n->log, "this node (%s, Raft id %016llx) was removed from the "
               "cluster: %s. It takes no part any more and answers client "
               "requests with 410. To bring it back, restart it with -join "
               "<HTTP address of a member>", n->id,
               (unsigned long long)n->raft_id, n->removed_why);
}

bool node__takes_part(const struct node *n)
{
    /* A leader that removed itself leads until it has handed over. */
    return !n->removed || raft_soft(n->raft).role == RAFT_LEADER;
}

/* Stop taking part: no peers, pending requests answered. */
static void enter_removed(struct node *n)
{
    n->removed_entered = true;
    struct peer_stats st[RAFT_MAX_MEMBERS + 8];
    size_t k = n->peers ? peer_list_stats(n->peers, st, sizeof st / sizeof st[0])
                        : 0;
    for (size_t i = 0; i < k && i < sizeof st / sizeof st[0]; i++)
        peer_remove(n->peers, st[i].id);
    /* 503, not 410: a write already handed to the core may still apply
     * (the answer says so); new requests get 410. */
    node__requests_fail_all(n, 503, "this node was removed from the cluster");
}

bool node__refuse_request(struct node *n, struct http_req *req)
{
    if (n->removed) {
        http_reply_error(req, 410, "this node (%s) was removed from the "
                         "cluster (%s) and serves no requests; to bring it "
                         "back, restart it with -join <HTTP address of a "
                         "member>", n->id, n->removed_why);
        return true;
    }
    if (n->conflict) {
        http_reply_error(req, 409, "conflict: %s; this node refuses requests "
                         "so as not to pass for that member. Stop it, move "
                         "its data directory aside and restart it with -join "
                         "<HTTP address of a member of that cluster>",
                         n->conflict_why);
        return true;
    }
    return false;
}

/* ---- refused handshakes ---- */

static bool in_conf(const struct node *n, uint64_t id)
{
    const struct raft_conf *c = raft_conf(n->raft);
    return raft_conf_is_voter(c, id) || raft_conf_is_learner(c, id);
}

static void set_conflict(struct node *n, const struct peer_refusal *r)
{
    if (n->conflict)
        return;
    char c1[17], c2[17];
    n->conflict = true;
    snprintf(n->conflict_why, sizeof n->conflict_why,
             "cluster %s counts a member named %s (Raft id %016llx) at this "
             "node's address (its member %016llx at %s dialed it), but this "
             "node is a new incarnation that started from an empty data "
             "directory without -join and is cluster %s of its own",
             r->peer_cluster ? hex(c1, r->peer_cluster) : "(with no id)",
             n->id, (unsigned long long)r->target,
             (unsigned long long)r->peer_id, r->addr,
             n->ident.cluster_id ? hex(c2, n->ident.cluster_id) : "?");
    n->ident.flags |= STOR_IDENT_CONFLICT;
    n->ident.conflict_cluster = r->peer_cluster;
    if (save_identity(n, NULL) != 0)
        CRAFT_ERROR(&n->log, "out of memory storing the conflict");
}

/* Another cluster dials this node's own Raft id (not an earlier
 * incarnation's): it counts this incarnation as its member, which only a
 * node that made a new cluster of its state (-force-new-cluster) has left.
 * A conflict is a new incarnation, whose Raft id no other cluster knows. */
static bool left_cluster(const struct node *n, const struct peer_refusal *r)
{
    return r->reason == PEER_REFUSED_CLUSTER && r->target == n->raft_id &&
           r->peer_cluster != 0 && r->peer_cluster != n->ident.cluster_id;
}

/* A dialer that is none of our members addresses our name under another
 * Raft id: its cluster still counts a member of this name at this address.
 * That is a conflict if it is another cluster, or if this incarnation
 * founded its own cluster (clusters from before cluster ids have none). */
static bool is_conflict(const struct node *n, const struct peer_refusal *r)
{
    /* A dialer of another cluster that addresses this very incarnation
     * knew it as its member: this node left that cluster
     * (-force-new-cluster), it did not start afresh (left_cluster). */
    return r->inbound && r->target_tag == n->name_tag &&
           !in_conf(n, r->peer_id) && !left_cluster(n, r) &&
           (r->reason == PEER_REFUSED_CLUSTER ||
            ((n->ident.flags & STOR_IDENT_FOUNDER) && !n->joining));
}

static void refused_inbound(struct node *n, const struct peer_refusal *r,
                            const char *more)
{
    char c1[17], c2[17];
    bool named_us = r->target_tag == n->name_tag;
    if (is_conflict(n, r)) {
        set_conflict(n, r);
        CRAFT_ERROR(&n->log, "conflict: %s. This node refuses that cluster's "
                    "messages and all client requests (409). To repair: stop "
                    "this node, move its data directory %s aside, and restart "
                    "it with -join <HTTP address of a member of that cluster>"
                    "%s", n->conflict_why, n->o.inmem ? "(in memory)" : n->dir,
                    more);
        return;
    }
    if (left_cluster(n, r) && !in_conf(n, r->peer_id)) {
        CRAFT_WARN(&n->log, "peer %016llx at %s of cluster %s, an old member of "
                   "the cluster this node left (made a new cluster of its own, "
                   "-force-new-cluster), still dials it: refused. This node is "
                   "cluster %s now; that node must not come back with its old "
                   "directory: move the directory aside and restart it with "
                   "-join %s%s", (unsigned long long)r->peer_id, r->addr,
                   hex(c1, r->peer_cluster), hex(c2, n->ident.cluster_id),
                   n->http_addr, more);
    } else if (r->reason == PEER_REFUSED_CLUSTER && in_conf(n, r->peer_id)) {
        CRAFT_WARN(&n->log, "member %016llx at %s now says it is of cluster %s, "
                   "not this node's cluster %s: it made a new cluster of its "
                   "own (-force-new-cluster, after this cluster lost its "
                   "quorum for good), and this node is no longer its member. "
                   "Stop this node, move its data directory %s aside and "
                   "restart it with -join <HTTP address of that node>; the "
                   "connection is refused%s", (unsigned long long)r->peer_id,
                   r->addr, hex(c1, r->peer_cluster),
                   hex(c2, n->ident.cluster_id), n->dir, more);
    } else if (r->reason == PEER_REFUSED_CLUSTER) {
        CRAFT_WARN(&n->log, "peer %016llx at %s of cluster %s is talking to "
                   "this node (%s) of cluster %s, meaning to reach Raft id "
                   "%016llx: it holds this address for a member of its own "
                   "cluster. Check the -raddr of that cluster's members; the "
                   "connection is refused%s", (unsigned long long)r->peer_id,
                   r->addr, hex(c1, r->peer_cluster), n->id,
                   hex(c2, n->ident.cluster_id), (unsigned long long)r->target,
                   more);
    } else if (!named_us) {
        CRAFT_WARN(&n->log, "peer %016llx at %s means to reach Raft id %016llx "
                   "at this address, where %s (Raft id %016llx) listens: its "
                   "address for that member is stale; the connection is "
                   "refused%s", (unsigned long long)r->peer_id, r->addr,
                   (unsigned long long)r->target, n->id,
                   (unsigned long long)n->raft_id, more);
    } else if (n->joining) {
        CRAFT_INFO(&n->log, "peer %016llx at %s addresses Raft id %016llx, an "
                   "earlier incarnation of this node (its data was wiped, or "
                   "it ran -inmem); the join under way replaces it with this "
                   "one, %016llx%s", (unsigned long long)r->peer_id, r->addr,
                   (unsigned long long)r->target,
                   (unsigned long long)n->raft_id, more);
    } else if (in_conf(n, n->raft_id)) {
        CRAFT_INFO(&n->log, "peer %016llx at %s still addresses Raft id "
                   "%016llx, an earlier incarnation of this node that the "
                   "cluster has replaced with this one (%016llx); it stops "
                   "once it applies the change%s",
                   (unsigned long long)r->peer_id, r->addr,
                   (unsigned long long)r->target,
                   (unsigned long long)n->raft_id, more);
    } else {
        CRAFT_WARN(&n->log, "peer %016llx at %s addresses Raft id %016llx, "
                   "probably an earlier incarnation of this node (%s) whose "
                   "data was wiped. This node is Raft id %016llx and not a "
                   "member: the cluster must re-add it. Restart it with -join "
                   "<HTTP address of a member>; its messages are refused "
                   "meanwhile%s", (unsigned long long)r->peer_id, r->addr,
                   (unsigned long long)r->target, n->id,
                   (unsigned long long)n->raft_id, more);
    }
}

static void refused_outbound(struct node *n, const struct peer_refusal *r,
                             const char *more)
{
    char c1[17], c2[17];
    const struct kv_member *m = kv_member_by_raft_id(n->kv, r->target);
    const char *name = m ? m->id : "?";
    bool same_name = r->peer_tag == r->target_tag;
    if (r->reason == PEER_REFUSED_CLUSTER && r->peer_id == r->target &&
        !in_conf(n, r->target)) {
        /* A member of the cluster this node left (-force-new-cluster),
         * dialed until the entry removing it is applied. */
        CRAFT_INFO(&n->log, "%s (Raft id %016llx) at %s, a member of cluster %s "
                   "which this node left, refuses this cluster (%s), as it "
                   "should%s", name, (unsigned long long)r->target, r->addr,
                   hex(c2, r->peer_cluster), hex(c1, n->ident.cluster_id), more);
    } else if (r->reason == PEER_REFUSED_CLUSTER && r->peer_id == r->target) {
        CRAFT_WARN(&n->log, "member %s (Raft id %016llx) at %s refuses this "
                   "cluster (%s): it is still Raft id %016llx but of cluster "
                   "%s now. It made a new cluster of its own state "
                   "(-force-new-cluster, after this cluster lost its quorum "
                   "for good) and this node is not its member. Stop this "
                   "node, move its data directory %s aside and restart it "
                   "with -join %s%s", name, (unsigned long long)r->target,
                   r->addr, hex(c1, n->ident.cluster_id),
                   (unsigned long long)r->peer_id, hex(c2, r->peer_cluster),
                   n->dir, m && m->http_addr[0] ? m->http_addr : "<its HTTP address>",
                   more);
    } else if (r->reason == PEER_REFUSED_CLUSTER) {
        CRAFT_WARN(&n->log, "member %s (Raft id %016llx) at %s refuses this "
                   "cluster (%s): the node there is Raft id %016llx of "
                   "cluster %s. %s%s", name, (unsigned long long)r->target,
                   r->addr, hex(c1, n->ident.cluster_id),
                   (unsigned long long)r->peer_id, hex(c2, r->peer_cluster),
                   same_name ? "Its data directory was probably wiped and it "
                               "restarted without -join, starting a cluster "
                               "of its own: stop it, move its directory "
                               "aside and restart it with -join"
                             : "Another node took over that address: check "
                               "the member's address",
                   more);
    } else if (same_name) {
        CRAFT_WARN(&n->log, "member %s (Raft id %016llx) at %s is now Raft id "
                   "%016llx, a new incarnation (its data was wiped, or it "
                   "runs -inmem). It takes part again once it is re-added: "
                   "restart it with -join (a join under way does this)%s",
                   name, (unsigned long long)r->target, r->addr,
                   (unsigned long long)r->peer_id, more);
    } else {
        CRAFT_WARN(&n->log, "member %s (Raft id %016llx) at %s: another node "
                   "(Raft id %016llx) listens there; the member's address is "
                   "stale%s", name, (unsigned long long)r->target, r->addr,
                   (unsigned long long)r->peer_id, more);
    }
}

void node__on_refused(void *ud, const struct peer_refusal *r)
{
    struct node *n = ud;
    if (n->stopping)
        return;
    /* One line per kind and peer; a conflict is one kind whoever says it,
     * and its first sign is always logged (and recorded). */
    bool conflict = is_conflict(n, r);
    uint64_t key = conflict ? 0xc0f11c7ull
                            : ((uint64_t)r->inbound << 63) ^
                                  ((uint64_t)r->reason << 56) ^ r->peer_id ^
                                  (r->target << 1);
    unsigned suppressed = 0;
    if (!node__log_allowed(n, key, &suppressed) && !(conflict && !n->conflict))
        return;
    char more[64] = "";
    if (suppressed)
        snprintf(more, sizeof more, " (%u more like it since the last line)",
                 suppressed);
    if (r->inbound)
        refused_inbound(n, r, more);
    else
        refused_outbound(n, r, more);
}

/* ---- looking for evidence of our removal ---- */

struct node__probe;

/* One member asked; lives inside its probe. */
struct probe_reply {
    struct node__probe *p;
    size_t i;
};

struct node__probe {
    struct node *n;
    unsigned pending;
    struct node__httpc *reqs[RAFT_MAX_MEMBERS]; /* NULL once answered */
    struct probe_reply replies[RAFT_MAX_MEMBERS];
    char names[RAFT_MAX_MEMBERS][64];
    size_t n_reqs;
};

static void probe_done(struct node__probe *p)
{
    struct node *n = p->n;
    for (size_t i = 0; i < p->n_reqs; i++)
        node__httpc_cancel(p->reqs[i]);
    n->probe = NULL;
    n->next_probe_at = node__now(n) + PROBE_EVERY_MS;
    craft_free(p);
}

/* A member's /status proves this node's removal if that member is of our
 * cluster, knows a leader in a term at least ours, has committed and
 * applied at least up to the entry of our own latest configuration (so its
 * member list is that new or newer), and lists no member with our Raft id.
 * Raft ids are never re-added, so such a list can only postdate our
 * removal. */
static bool proves_removal(struct node *n, const char *who, const char *body)
{
    json_t *root = json_loads(body, 0, NULL);
    bool yes = false;
    uint64_t cid = 0, rid;
    const char *leader = json_string_value(
        json_object_get(json_object_get(root, "leader"), "id"));
    json_int_t term = json_integer_value(json_object_get(root, "term"));
    json_int_t commit = json_integer_value(json_object_get(root, "commit_index"));
    json_int_t applied = json_integer_value(json_object_get(root, "applied_index"));
    json_t *members = json_object_get(root, "members");
    uint64_t conf_index = raft_conf_index(n->raft);
    struct raft_soft_state s = raft_soft(n->raft);
    if (root == NULL || !json_is_array(members) || leader == NULL ||
        *leader == 0 || node__hex_field(root, "cluster_id", &cid) != 0 ||
        (n->ident.cluster_id != 0 && cid != n->ident.cluster_id) ||
        term < (json_int_t)s.term || commit < (json_int_t)conf_index ||
        applied < (json_int_t)conf_index)
        goto out;
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id == NULL)
            goto out;
        if (node__hex_field(m, "raft_id", &rid) != 0 || rid == 0)
            rid = craft_member_id(id, 0);
        if (rid == n->raft_id)
            goto out; /* still a member */
    }
    yes = true;
    node__mark_removed(n, (uint64_t)applied,
                       "member %s reports leader %s in term %lld with index "
                       "%lld applied, and no member with this node's Raft id",
                       who, leader, (long long)term, (long long)applied);
out:
    json_decref(root);
    return yes;
}

static void on_probe_reply(void *ud, int status, const char *body)
{
    struct probe_reply *pr = ud;
    struct node__probe *p = pr->p;
    size_t i = pr->i;
    p->reqs[i] = NULL;
    p->pending--;
    if (status == 200 && !p->n->removed && !p->n->stopping &&
        proves_removal(p->n, p->names[i], body)) {
        probe_done(p);
        return;
    }
    if (p->pending == 0)
        probe_done(p);
}

static void start_probe(struct node *n)
{
    struct node__probe *p = craft_calloc(1, sizeof *p);
    if (p == NULL)
        return;
    p->n = n;
    n->probe = p;
    char bind[64];
    const char *src = node__bind_host(n, bind);
    for (size_t i = 0; i < kv_member_count(n->kv) && p->n_reqs < RAFT_MAX_MEMBERS;
         i++) {
        const struct kv_member *m = kv_member_at(n->kv, i);
        if (m->raft_id == n->raft_id || strcmp(m->id, n->id) == 0 ||
            m->http_addr[0] == 0)
            continue;
        struct probe_reply *pr = &p->replies[p->n_reqs];
        pr->p = p;
        pr->i = p->n_reqs;
        snprintf(p->names[p->n_reqs], sizeof p->names[0], "%s", m->id);
        if (node__httpc_start(n, src, m->http_addr, "GET", "/status", NULL,
                              PROBE_TIMEOUT_MS, on_probe_reply, pr,
                              &p->reqs[p->n_reqs]) != 0)
            continue;
        p->n_reqs++;
        p->pending++;
    }
    if (p->pending == 0)
        probe_done(p);
    else
        CRAFT_DEBUG(&n->log, "no leader heard for a while: asking %u members "
                    "whether this node is still one of them", p->pending);
}

void node__identity_tick(struct node *n)
{
    uint64_t now = node__now(n);
    struct raft_soft_state s = raft_soft(n->raft);
    if (s.role == RAFT_LEADER)
        n->heard_leader_at = now;
    /* The configuration applied here: once it listed this Raft id, a later
     * one without it means the node was removed (ids never come back). */
    if (!n->removed) {
        const struct raft_conf *c = raft_conf_at(n->raft, n->applied);
        bool member = raft_conf_is_voter(c, n->raft_id) ||
                      raft_conf_is_learner(c, n->raft_id);
        if (member)
            n->was_member = true;
        else if (n->was_member)
            node__mark_removed(n, n->applied, "the configuration applied at "
                               "index %llu no longer lists it",
                               (unsigned long long)n->applied);
    }
    if (n->removed) {
        if (!n->removed_entered && s.role != RAFT_LEADER)
            enter_removed(n);
        return;
    }
    if (n->joining || n->probe != NULL || s.role == RAFT_LEADER ||
        !in_conf(n, n->raft_id) || now < n->next_probe_at ||
        now - n->heard_leader_at < PROBE_AFTER_TIMEOUTS * election_ms(n))
        return;
    start_probe(n);
}

void node__identity_stop(struct node *n)
{
    if (n->probe != NULL)
        probe_done(n->probe);
}

/* ---- GET /status ---- */

void node__identity_status(struct node *n, json_t *root)
{
    char b[17];
    json_object_set_new(root, "cluster_id",
                        json_string(n->ident.cluster_id
                                        ? hex(b, n->ident.cluster_id) : ""));
    json_object_set_new(root, "incarnation",
                        json_string(hex(b, n->ident.incarnation)));
    json_object_set_new(root, "raft_id", json_string(hex(b, n->raft_id)));
    json_object_set_new(root, "joining", json_boolean(n->joining));
    if (n->removed) {
        json_object_set_new(root, "role", json_string("removed"));
        json_object_set_new(
            root, "removed",
            json_pack("{s:I, s:s}", "index",
                      (json_int_t)n->ident.removed_index, "why",
                      n->removed_why));
    }
    if (n->conflict)
        json_object_set_new(
            root, "conflict",
            json_pack("{s:s, s:s}", "cluster_id",
                      n->ident.conflict_cluster
                          ? hex(b, n->ident.conflict_cluster) : "",
                      "why", n->conflict_why));
}
