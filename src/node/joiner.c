/* The client side of a join: a new node asks a member (-join, an HTTP
 * address) for /status to learn the cluster id (stored durably before the
 * node takes part) and every member's Raft id and address, then POSTs
 * /join with its name, addresses and incarnation, retrying with backoff
 * until a member accepts. A refusal (4xx) or too many failures is fatal: a
 * node must never sit silently outside the cluster it was told to join. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/member_id.h"
#include "node/internal.h"

#define JOIN_MAX_ATTEMPTS 60
#define JOIN_BACKOFF_MAX_MS 5000
#define JOIN_TIMEOUT_MS 30000 /* > the leader's deadline for a join (25 s) */

struct node__joiner {
    struct node *n;
    char addr[PEER_HOST_MAX + 8]; /* the member's HTTP address */
    int phase; /* 0: GET /status, 1: storing the cluster id, 2: POST /join */
    unsigned attempt;
    unsigned backoff_ms;
    uv_timer_t timer;
    struct node__httpc *req; /* in flight, or NULL */
};

static void attempt(struct node__joiner *j);

static void on_timer_closed(uv_handle_t *h)
{
    craft_free(h->data);
}

static void on_timer(uv_timer_t *t)
{
    attempt(t->data);
}

static void retry(struct node__joiner *j, const char *why)
{
    struct node *n = j->n;
    if (++j->attempt >= JOIN_MAX_ATTEMPTS) {
        CRAFT_ERROR(&n->log, "could not join via %s after %u attempts "
                    "(last: %s); giving up", j->addr, j->attempt, why);
        exit(1);
    }
    CRAFT_WARN(&n->log, "join via %s: %s; retrying in %u ms", j->addr, why,
               j->backoff_ms);
    uv_timer_start(&j->timer, on_timer, j->backoff_ms, 0);
    j->backoff_ms = j->backoff_ms * 2 > JOIN_BACKOFF_MAX_MS
                        ? JOIN_BACKOFF_MAX_MS : j->backoff_ms * 2;
}

/* Every member's Raft id and address from a /status document (members of
 * a craftd from before incarnations carry no raft_id: their id is the hash
 * of the name). Our own name is skipped: under it the cluster may still
 * count an earlier incarnation of this node. */
static void learn_members(struct node__joiner *j, json_t *root)
{
    json_t *members = json_object_get(root, "members");
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *addr = json_string_value(json_object_get(m, "raft_addr"));
        uint64_t rid;
        if (id == NULL || addr == NULL || strcmp(id, j->n->id) == 0)
            continue;
        if (node__hex_field(m, "raft_id", &rid) != 0 || rid == 0)
            rid = craft_member_id(id, 0);
        node__peer_set(j->n, rid, id, addr);
    }
}

static void cluster_stored(struct node *n, int rc)
{
    struct node__joiner *j = n->joiner;
    if (j == NULL)
        return; /* stopped meanwhile */
    if (rc) {
        CRAFT_ERROR(&n->log, "cannot store the cluster id in %s: %s; "
                    "stopping (nothing was sent)", n->dir, craft_strerror(rc));
        exit(1);
    }
    j->phase = 2;
    attempt(j);
}

/* The member's /status: check and store its cluster id, learn its members. */
static void got_status(struct node__joiner *j, const char *body)
{
    struct node *n = j->n;
    json_t *root = json_loads(body, 0, NULL);
    uint64_t cid = 0;
    if (root == NULL || node__hex_field(root, "cluster_id", &cid) != 0) {
        json_decref(root);
        retry(j, "GET /status: not a craftd status document");
        return;
    }
    if (n->ident.cluster_id != 0 && cid != 0 && cid != n->ident.cluster_id) {
        CRAFT_ERROR(&n->log, "refusing to join via %s: that member is of "
                    "cluster %016llx, and this node's data directory %s is "
                    "of cluster %016llx. Give -join a member of this node's "
                    "own cluster, or move the directory aside to join the "
                    "other one as a new node", j->addr,
                    (unsigned long long)cid, n->dir,
                    (unsigned long long)n->ident.cluster_id);
        exit(1);
    }
    learn_members(j, root);
    json_decref(root);
    if (cid != 0 && n->ident.cluster_id == 0) {
        /* Stored before we ask to be added, so before we take part. */
        CRAFT_INFO(&n->log, "joining cluster %016llx", (unsigned long long)cid);
        j->phase = 1;
        int rv = node__identity_learn_cluster(n, cid, cluster_stored);
        if (rv)
            cluster_stored(n, rv);
        return;
    }
    j->phase = 2;
    attempt(j);
}

static void on_reply(void *ud, int status, const char *body)
{
    struct node__joiner *j = ud;
    struct node *n = j->n;
    j->req = NULL;
    if (status == 0) {
        retry(j, body);
        return;
    }
    if (status >= 400 && status < 500 && status != 429) {
        const char *hint = "";
        if (status == 401)
            hint = n->httpc_auth ? " (check the -join-user credentials)"
                                  : " (the cluster has users: give -join-user "
                                    "user:password of an admin, or set CRAFTD_JOIN_USER)";
        else if (status == 403)
            hint = " (-join-user must be a user with the admin role)";
        CRAFT_ERROR(&n->log, "join refused by %s (HTTP %d): %s%s", j->addr,
                    status, body, hint);
        exit(1);
    }
    if (status != 200) {
        char why[64];
        snprintf(why, sizeof why, "HTTP %d", status);
        retry(j, why);
        return;
    }
    if (j->phase == 0) {
        got_status(j, body);
        return;
    }
    CRAFT_INFO(&n->log, "joined the cluster via %s as Raft id %016llx",
               j->addr, (unsigned long long)n->raft_id);
    node__joiner_stop(n);
    node__identity_joined(n);
}

static void attempt(struct node__joiner *j)
{
    struct node *n = j->n;
    int rv;
    char bind[64];
    const char *src = node__bind_host(n, bind);
    if (j->phase == 0) {
        rv = node__httpc_start(n, src, j->addr, "GET", "/status", NULL,
                               JOIN_TIMEOUT_MS, on_reply, j, &j->req);
    } else {
        char inc[17], rid[17], cid[17];
        snprintf(inc, sizeof inc, "%016llx",
                 (unsigned long long)n->ident.incarnation);
        snprintf(rid, sizeof rid, "%016llx", (unsigned long long)n->raft_id);
        snprintf(cid, sizeof cid, "%016llx",
                 (unsigned long long)n->ident.cluster_id);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", n->id,
                              "addr", n->raft_addr, "http_addr", n->http_addr,
                              "incarnation", inc, "raft_id", rid);
        if (o && n->ident.cluster_id != 0)
            json_object_set_new(o, "cluster_id", json_string(cid));
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (body == NULL) {
            retry(j, "out of memory");
            return;
        }
        rv = node__httpc_start(n, src, j->addr, "POST", "/join", body,
                               JOIN_TIMEOUT_MS, on_reply, j, &j->req);
        free(body);
    }
    if (rv)
        retry(j, craft_strerror(rv));
}

int node__joiner_start(struct node *n)
{
    struct node__joiner *j = craft_calloc(1, sizeof *j);
    if (j == NULL)
        return CRAFT_ENOMEM;
    char host[PEER_HOST_MAX + 1];
    uint16_t port;
    int rv = peer_parse_addr(n->o.join, host, sizeof host, &port);
    if (rv) {
        craft_free(j);
        return rv;
    }
    snprintf(j->addr, sizeof j->addr, "%s", n->o.join);
    j->n = n;
    j->backoff_ms = 100;
    uv_timer_init(n->loop, &j->timer);
    j->timer.data = j;
    n->joiner = j;
    CRAFT_INFO(&n->log, "joining the cluster via %s as %s (Raft id %016llx)",
               n->o.join, n->id, (unsigned long long)n->raft_id);
    attempt(j);
    return 0;
}

void node__joiner_stop(struct node *n)
{
    struct node__joiner *j = n->joiner;
    if (j == NULL)
        return;
    n->joiner = NULL;
    node__httpc_cancel(j->req);
    uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}
