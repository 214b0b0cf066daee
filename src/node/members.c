/* Members: their names and addresses travel in membership-change entries
 * (the core passes the bytes through) and live in the replicated map's
 * directory, so every node knows every member's Raft and HTTP address.
 * Joins (POST /join on any node) add a learner, which the leader promotes
 * to voter once it has caught up; /status reports all of it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/version.h"
#include "common/member_id.h"
#include "node/internal.h"

/* ctx = three strings, each [u16 length][bytes]: id, raft addr, http addr */
int node__member_ctx(const char *id, const char *raft_addr,
                     const char *http_addr, uint8_t **out, size_t *len)
{
    const char *s[3] = {id, raft_addr, http_addr ? http_addr : ""};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        if (strlen(s[i]) > 0xffff)
            return CRAFT_ETOOBIG;
        total += 2 + strlen(s[i]);
    }
    uint8_t *b = craft_malloc(total), *p = b;
    if (b == NULL)
        return CRAFT_ENOMEM;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(s[i]);
        craft_put16(p, (uint16_t)l);
        memcpy(p + 2, s[i], l);
        p += 2 + l;
    }
    *out = b;
    *len = total;
    return 0;
}

int node__member_ctx_decode(const uint8_t *p, size_t len, char out[3][512])
{
    for (int i = 0; i < 3; i++) {
        if (len < 2)
            return CRAFT_ECORRUPT;
        size_t l = craft_get16(p);
        if (len < 2 + l || l >= 512 || memchr(p + 2, 0, l))
            return CRAFT_ECORRUPT;
        memcpy(out[i], p + 2, l);
        out[i][l] = 0;
        p += 2 + l;
        len -= 2 + l;
    }
    return len == 0 ? 0 : CRAFT_ECORRUPT;
}

void node__apply_conf(struct node *n, const struct raft_entry *e)
{
    /* An entry this node had applied before it restarted is no news: it
     * is logged at debug level, so that a restart does not list the
     * cluster's history as if it happened now. */
    int lvl = e->index <= n->replayed_upto ? CRAFT_LOG_DEBUG : CRAFT_LOG_INFO;
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0)
        return;
    if (cc.op == RAFT_CONF_REMOVE) {
        const struct kv_member *m = kv_member_by_raft_id(n->kv, cc.node);
        char name[512] = "?";
        if (m) {
            snprintf(name, sizeof name, "%s", m->id);
            kv_member_del(n->kv, name);
        }
        if (cc.node == n->raft_id) {
            /* The state follows at the next tick, once the requests that
             * waited for this entry are answered. */
            node__mark_removed(n, e->index, "the entry at index %llu removed "
                               "it", (unsigned long long)e->index);
        } else {
            peer_remove(n->peers, cc.node);
            craft_log(&n->log, lvl, "member %s removed", name);
        }
        return;
    }
    const char *what = cc.op == RAFT_CONF_ADD_LEARNER ? "learner" : "voter";
    if (cc.ctx_len == 0) {
        const struct kv_member *m = kv_member_by_raft_id(n->kv, cc.node);
        craft_log(&n->log, lvl, "member %s is now a %s", m ? m->id : "?", what);
        return;
    }
    char s[3][512];
    if (node__member_ctx_decode(cc.ctx, cc.ctx_len, s) != 0) {
        CRAFT_WARN(&n->log, "membership entry %llu has a bad context",
                   (unsigned long long)e->index);
        return;
    }
    kv_member_set(n->kv, s[0], cc.node, s[1], s[2]);
    if (cc.node != n->raft_id && strcmp(s[0], n->id) != 0 && n->peers &&
        !n->removed)
        node__peer_set(n, cc.node, s[0], s[1]);
    craft_log(&n->log, lvl, "member %s (raft %s, http %s) added as %s", s[0],
              s[1], s[2][0] ? s[2] : "-", what);
}

/* The member name (its id string) is the peer's tag in the handshake and
 * its name in the transport's logs. */
int node__peer_set(struct node *n, uint64_t raft_id, const char *name,
                   const char *addr)
{
    int rv = peer_set(n->peers, raft_id, craft_member_id(name, 0), addr);
    if (rv == 0)
        peer_set_name(n->peers, raft_id, name);
    return rv;
}

/* Peers are the other members. Not one named like us: under our name the
 * cluster may still count an earlier incarnation of this node, at our own
 * address. */
void node__peers_sync(struct node *n)
{
    for (size_t i = 0; i < kv_member_count(n->kv); i++) {
        const struct kv_member *m = kv_member_at(n->kv, i);
        if (m->raft_id != n->raft_id && strcmp(m->id, n->id) != 0)
            node__peer_set(n, m->raft_id, m->id, m->raft_addr);
    }
}

void node__peers_from_log(struct node *n, const struct raft_entry *ents,
                          size_t n_ents)
{
    /* Entries the snapshot covers are in its member directory already,
     * removals included: a member they add may be long gone. */
    uint64_t snap = raft_snapshot(n->raft)->index;
    for (size_t i = 0; i < n_ents; i++) {
        struct raft_conf_change cc;
        char s[3][512];
        if (ents[i].index <= snap || ents[i].type != RAFT_ENTRY_CONF ||
            raft_conf_change_decode(ents[i].data, ents[i].len, &cc) != 0 ||
            cc.ctx_len == 0 || node__member_ctx_decode(cc.ctx, cc.ctx_len, s) != 0 ||
            cc.node == n->raft_id || strcmp(s[0], n->id) == 0)
            continue;
        node__peer_set(n, cc.node, s[0], s[1]);
    }
}

/* A restart with other -raddr/-haddr does not move a member: the others
 * go on dialling the addresses of its member entry, and the node hears no
 * leader. Say so at start, naming both, rather than leave an operator with
 * a silent node. The newest entry about this node wins: a stored log entry
 * after the snapshot's directory. */
void node__check_own_addresses(struct node *n, const struct raft_entry *ents,
                               size_t n_ents)
{
    char raft[512] = "", http[512] = "";
    const struct kv_member *m = kv_member_by_raft_id(n->kv, n->raft_id);
    if (m) {
        snprintf(raft, sizeof raft, "%s", m->raft_addr);
        snprintf(http, sizeof http, "%s", m->http_addr);
    }
    uint64_t snap = raft_snapshot(n->raft)->index;
    for (size_t i = 0; i < n_ents; i++) {
        struct raft_conf_change cc;
        char s[3][512];
        if (ents[i].index > snap && ents[i].type == RAFT_ENTRY_CONF &&
            raft_conf_change_decode(ents[i].data, ents[i].len, &cc) == 0 &&
            cc.node == n->raft_id && cc.ctx_len > 0 &&
            node__member_ctx_decode(cc.ctx, cc.ctx_len, s) == 0) {
            memcpy(raft, s[1], sizeof raft);
            memcpy(http, s[2], sizeof http);
        }
    }
    if (raft[0] && strcmp(raft, n->raft_addr) != 0)
        CRAFT_WARN(&n->log, "this node runs with -raddr %s, but the cluster "
                   "knows it at %s: the other members dial %s, so it will not "
                   "hear a leader. A restart does not move a member: start it "
                   "with -raddr %s, or add a member at the new address and "
                   "remove this one (docs/operations.md, runbook 3)",
                   n->raft_addr, raft, raft, raft);
    if (http[0] && n->http_addr && strcmp(http, n->http_addr) != 0)
        CRAFT_WARN(&n->log, "this node runs with -haddr %s, but its member "
                   "entry says %s: other nodes send joins and forwarded "
                   "requests there", n->http_addr, http);
}

/* How far behind the commit index a learner may be when it is promoted. */
#define NODE__PROMOTE_LAG 64

/* The leader promotes a learner once it has answered and (nearly) caught
 * up: a successful append response from it, and its match within
 * NODE__PROMOTE_LAG of the commit index. The answer matters: in a young
 * cluster (commit < 64) a learner at a bogus address, which never
 * answered (match 0), would be "within 64" and be promoted, and a few of
 * those leave the cluster without a quorum. */
void node__promote_learners(struct node *n)
{
    if (raft_soft(n->raft).role != RAFT_LEADER)
        return;
    const struct raft_conf *c = raft_conf(n->raft);
    for (uint32_t i = 0; i < c->n_learners; i++) {
        if (!raft_caught_up(n->raft, c->learners[i], NODE__PROMOTE_LAG))
            continue;
        struct raft_conf_change cc = {.op = RAFT_CONF_PROMOTE,
                                      .node = c->learners[i]};
        (void)raft_propose_conf(n->raft, 0, &cc); /* EBUSY: next tick */
        return;
    }
}

/* ---- joins ---- */

static void join_propose(struct node *n, struct node__req *q, uint8_t op,
                         uint64_t node, const uint8_t *ctx, size_t len)
{
    struct raft_conf_change cc = {.op = op, .node = node,
                                  .ctx_len = (uint32_t)len, .ctx = ctx};
    int rv = raft_propose_conf(n->raft, q->id, &cc);
    if (rv == CRAFT_EBUSY || rv == CRAFT_ENOLEADER || rv == CRAFT_ENOTLEADER ||
        rv == CRAFT_ETRANSFER)
        return; /* not issued: looked at again at the next tick */
    if (rv) {
        http_reply_error(q->http, 400, "cannot change membership: %s",
                         craft_strerror(rv));
        node__req_done(n, q);
        return;
    }
    q->issued = true;
}

static int parse_hex(const char *s, uint64_t *out)
{
    *out = 0;
    if (s == NULL)
        return 0;
    size_t len = strlen(s);
    if (len == 0 || len > 16 || strspn(s, "0123456789abcdefABCDEF") != len)
        return CRAFT_EINVAL;
    *out = strtoull(s, NULL, 16);
    return 0;
}

int node__join_check(struct node *n, struct http_req *req, const char *id,
                     const struct http_join_ext *ext, uint64_t *rid)
{
    uint64_t inc, claimed, cluster;
    *rid = 0;
    if (parse_hex(ext->incarnation, &inc) || parse_hex(ext->raft_id, &claimed) ||
        parse_hex(ext->cluster_id, &cluster)) {
        http_reply_error(req, 400, "incarnation, raft_id and cluster_id are "
                         "hexadecimal numbers of up to 16 digits");
        return -1;
    }
    if (ext->incarnation != NULL) {
        *rid = craft_member_id(id, inc);
        if (ext->raft_id != NULL && claimed != *rid) {
            http_reply_error(req, 400, "raft_id %s is not the Raft id of %s "
                             "with incarnation %s (%016llx)", ext->raft_id, id,
                             ext->incarnation, (unsigned long long)*rid);
            return -1;
        }
    } else if (ext->raft_id != NULL) {
        http_reply_error(req, 400, "raft_id without its incarnation");
        return -1;
    }
    if (cluster != 0 && n->ident.cluster_id != 0 &&
        cluster != n->ident.cluster_id) {
        http_reply_error(req, 400, "%s belongs to cluster %016llx; this is "
                         "cluster %016llx", id, (unsigned long long)cluster,
                         (unsigned long long)n->ident.cluster_id);
        return -1;
    }
    return 0;
}

/* Does member m (of another name) hold one of the join's addresses? The
 * message names the member and the address. */
static bool addr_clash(const struct node__req *q, const struct kv_member *m,
                       char *msg, size_t len)
{
    const char *mine[2] = {q->jaddr, q->jhttp};
    const char *theirs[2] = {m->raft_addr, m->http_addr};
    static const char *const name[2] = {"raft", "http"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (node__same_addr(mine[i], theirs[j])) {
                snprintf(msg, len, "%s address %s is the %s address of "
                         "member %s (Raft id %016llx): to replace %s, POST "
                         "/remove {\"id\":\"%s\"} first, then join",
                         i ? "http_addr" : "addr", mine[i], name[j], m->id,
                         (unsigned long long)m->raft_id, m->id, m->id);
                return true;
            }
    return false;
}

/* Is the join's name a member at other addresses? */
static bool id_clash(const struct node__req *q, const struct kv_member *m,
                     char *msg, size_t len)
{
    bool raft_differs = !node__same_addr(q->jaddr, m->raft_addr);
    bool http_differs = q->jhttp && q->jhttp[0] && m->http_addr[0] &&
                        !node__same_addr(q->jhttp, m->http_addr);
    if (!raft_differs && !http_differs)
        return false;
    snprintf(msg, len, "id %s is member %s (Raft id %016llx) at raft "
             "address %s, http address %s, not at %s%s%s: to move or "
             "replace it, POST /remove {\"id\":\"%s\"} first, then join",
             q->jid, m->id, (unsigned long long)m->raft_id, m->raft_addr,
             m->http_addr[0] ? m->http_addr : "-", q->jaddr,
             q->jhttp && q->jhttp[0] ? ", " : "",
             q->jhttp && q->jhttp[0] ? q->jhttp : "", m->id);
    return true;
}

static void refuse(struct node *n, struct node__req *q, int status,
                   const char *msg)
{
    http_reply_error(q->http, status, "%s", msg);
    node__req_done(n, q);
}

/* One step toward "q->jid is a voter at q->jaddr". A name or an address
 * that another member holds is refused (409, naming the member): taking
 * them over (hraftd removed the holder) let any join demote or remove a
 * voter. Replacing a member is an explicit POST /remove, then a join.
 * The one exception: a join that names its Raft id (craftd's joiner does)
 * and finds its name a member under another Raft id, at the same
 * addresses, is a new incarnation of that member (a wiped directory, an
 * -inmem restart, a removed node joined again): the old Raft id is
 * removed, the new one added as a learner and promoted once it has caught
 * up. A join without one (hraftd's) takes the member as it is. */
void node__join_step(struct node *n, struct node__req *q)
{
    /* The configuration changes when its entry is appended, the member
     * table when it applies. In between, a member just removed was still
     * in the table but no longer a learner, and the step added it back:
     * until they agree again, look at the next tick. */
    if (raft_conf_index(n->raft) > n->applied)
        return;
    const struct raft_conf *c = raft_conf(n->raft);
    const struct kv_member *same = kv_member_get(n->kv, q->jid);
    uint64_t rid = q->jrid ? q->jrid
                           : same ? same->raft_id : craft_member_id(q->jid, 0);
    const struct kv_member *owner = kv_member_by_raft_id(n->kv, rid);
    char msg[1024];
    if (q->jin && owner == NULL) {
        /* Applied as a member, then removed while the join waited (POST
         * /remove, or a join of another incarnation of the name). Raft ids
         * never come back: the node may already know it was removed. */
        snprintf(msg, sizeof msg, "%s (Raft id %016llx) was removed while "
                 "it joined; restart it with -join to join as a new "
                 "incarnation", q->jid, (unsigned long long)rid);
        refuse(n, q, 409, msg);
        return;
    }
    if (owner && strcmp(owner->id, q->jid) != 0) {
        snprintf(msg, sizeof msg, "Raft id %016llx of %s is member %s's",
                 (unsigned long long)rid, q->jid, owner->id);
        refuse(n, q, 409, msg);
        return;
    }
    for (size_t i = 0; i < kv_member_count(n->kv); i++) {
        const struct kv_member *m = kv_member_at(n->kv, i);
        if (strcmp(m->id, q->jid) != 0 && addr_clash(q, m, msg, sizeof msg)) {
            refuse(n, q, 409, msg);
            return;
        }
    }
    if (same && id_clash(q, same, msg, sizeof msg)) {
        refuse(n, q, 409, msg);
        return;
    }
    if (same && same->raft_id != rid) {
        unsigned more;
        if (node__log_allowed(n, 0x3000 ^ rid, &more))
            CRAFT_INFO(&n->log, "member %s rejoins as a new incarnation, Raft "
                       "id %016llx: removing its earlier one, %016llx, first",
                       q->jid, (unsigned long long)rid,
                       (unsigned long long)same->raft_id);
        join_propose(n, q, RAFT_CONF_REMOVE, same->raft_id, NULL, 0);
        return;
    }
    q->jin = q->jin || (same && same->raft_id == rid);
    if (raft_conf_is_voter(c, rid) && same) {
        http_reply_ok(q->http);
        node__req_done(n, q);
        return;
    }
    if (raft_conf_is_learner(c, rid) || raft_conf_is_voter(c, rid))
        return; /* the leader promotes it; look again at the next tick */
    if (c->n_voters + c->n_learners >= RAFT_MAX_MEMBERS) {
        snprintf(msg, sizeof msg, "the cluster is full: it has %u members "
                 "(%u voters, %u learners), the most it may have; remove "
                 "one first", (unsigned)(c->n_voters + c->n_learners),
                 (unsigned)c->n_voters, (unsigned)c->n_learners);
        refuse(n, q, 409, msg);
        return;
    }
    uint8_t *ctx;
    size_t len;
    if (node__member_ctx(q->jid, q->jaddr, q->jhttp, &ctx, &len) != 0) {
        refuse(n, q, 400, "member names too long");
        return;
    }
    join_propose(n, q, RAFT_CONF_ADD_LEARNER, rid, ctx, len);
    craft_free(ctx);
}

void node__joins_look(struct node *n)
{
    for (struct node__req *q = n->head, *next; q != NULL; q = next) {
        next = q->next; /* a step may answer q and free it */
        if (q->kind == NODE__JOIN && !q->issued && q->heap_pos == 0 &&
            q->resolve == NULL)
            node__join_step(n, q);
    }
}

void node__join_applied(struct node *n, struct node__req *q, bool ok)
{
    (void)ok; /* either way, look at the membership as it is now */
    q->issued = false;
    node__join_step(n, q);
}

/* Never step again at once: on a leader a refusal comes with the next
 * ready, and re-proposing the same change from here looped for good (the
 * core refused a 33rd member with ETOOBIG, forever, and the loop starved
 * everything else, SIGTERM included). */
void node__join_refused(struct node *n, struct node__req *q, int err)
{
    q->issued = false;
    char msg[256];
    switch (err) {
    case CRAFT_EEXISTS:
    case CRAFT_ENOTFOUND:
        return; /* the membership changed meanwhile: next tick */
    case CRAFT_ETOOBIG:
        snprintf(msg, sizeof msg, "the cluster is full: %d members is the "
                 "most it may have; remove one first", RAFT_MAX_MEMBERS);
        refuse(n, q, 409, msg);
        return;
    default:
        snprintf(msg, sizeof msg, "cannot change membership: %s",
                 craft_strerror(err));
        refuse(n, q, 400, msg);
        return;
    }
}

/* ---- GET /status ---- */

static json_t *server(const char *id, const char *addr)
{
    return json_pack("{s:s, s:s}", "id", id ? id : "", "address",
                     addr ? addr : "");
}

void node__status(struct node *n, struct http_req *req)
{
    struct raft_soft_state s = raft_soft(n->raft);
    const struct raft_conf *c = raft_conf(n->raft);
    const struct kv_member *lead = kv_member_by_raft_id(n->kv, s.leader);
    json_t *followers = json_array(), *members = json_array();
    for (size_t i = 0; i < kv_member_count(n->kv); i++) {
        const struct kv_member *m = kv_member_at(n->kv, i);
        bool voter = raft_conf_is_voter(c, m->raft_id);
        char rid[17];
        snprintf(rid, sizeof rid, "%016llx", (unsigned long long)m->raft_id);
        json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s}", "id", m->id,
                              "raft_addr", m->raft_addr, "http_addr",
                              m->http_addr, "voter", voter, "raft_id", rid);
        if (s.role == RAFT_LEADER) {
            uint64_t match, next;
            if (raft_progress(n->raft, m->raft_id, &match, &next))
                json_object_set_new(o, "match_index", json_integer((json_int_t)match));
        }
        json_array_append_new(members, o);
        if (m->raft_id != s.leader)
            json_array_append_new(followers, server(m->id, m->raft_addr));
    }
    json_t *root = json_pack(
        "{s:o, s:o, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s}",
        "me", server(n->id, n->raft_addr),
        "leader", server(lead ? lead->id : "", lead ? lead->raft_addr : ""),
        "followers", followers,
        "role", raft_role_name(s.role),
        "term", (json_int_t)s.term, /* <= RAFT_TERM_MAX < 2^63 */
        "commit_index", (json_int_t)raft_commit_index(n->raft),
        "applied_index", (json_int_t)n->applied,
        "last_index", (json_int_t)raft_last_index(n->raft),
        "snapshot_index", (json_int_t)raft_snapshot(n->raft)->index,
        "keys", (json_int_t)kv_count(n->kv),
        "members", members,
        "leader_http", lead ? lead->http_addr : "");
    if (root) {
        node__identity_status(n, root);
        json_object_set_new(root, "version", json_string(CRAFT_VERSION));
        json_object_set_new(root, "uptime_s",
                            json_integer((json_int_t)((node__now(n) - n->started_ms) / 1000)));
    }
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    if (body)
        http_reply_json(req, 200, body, strlen(body));
    else
        http_reply_error(req, 503, "out of memory");
    free(body);
    json_decref(root);
}
