/* GET /livez and GET /readyz (docs/operations.md). /livez answers 200
 * whenever the node's loop gets to it: that proves the one thread that
 * runs Raft, the storage callbacks and HTTP is not stuck (a stuck loop
 * answers nothing, and the probe times out), nothing about the cluster.
 * /readyz applies node__ready_eval to the node's state: 200 when it is a
 * member, knows a leader it has heard from lately and has applied to within
 * NODE_READY_MAX_LAG entries of that leader's commit index; 503 with the
 * reason and each condition otherwise. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/internal.h"
#include "node/metrics.h"

void node__ready_eval(const struct node__ready_in *in, struct node__ready *out)
{
    *out = (struct node__ready){0};
    out->member = in->member && !in->removed && !in->conflict;
    out->has_leader = in->leads ||
                      (in->leader_known && in->since_leader_ms <= in->election_ms);
    out->lag = in->leader_commit > in->applied ? in->leader_commit - in->applied : 0;
    out->caught_up = out->lag <= in->max_lag;
    out->ready = !in->stopping && out->member && out->has_leader && out->caught_up;
    if (in->stopping)
        snprintf(out->why, sizeof out->why, "shutting down");
    else if (in->removed)
        snprintf(out->why, sizeof out->why, "removed from the cluster");
    else if (in->conflict)
        snprintf(out->why, sizeof out->why, "in conflict with another cluster");
    else if (!in->member)
        snprintf(out->why, sizeof out->why, "not a member of the cluster (yet)");
    else if (!in->leader_known)
        snprintf(out->why, sizeof out->why, "no leader known");
    else if (!out->has_leader)
        snprintf(out->why, sizeof out->why, "no word from the leader for %llu ms "
                 "(election timeout %llu ms)", (unsigned long long)in->since_leader_ms,
                 (unsigned long long)in->election_ms);
    else if (!out->caught_up)
        snprintf(out->why, sizeof out->why, "applied index %llu is %llu entries behind the "
                 "leader's commit index %llu (at most %llu allowed)",
                 (unsigned long long)in->applied, (unsigned long long)out->lag,
                 (unsigned long long)in->leader_commit, (unsigned long long)in->max_lag);
}

static void reply_json(struct http_req *req, int status, json_t *root)
{
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (body == NULL) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    http_reply_json(req, status, body, strlen(body));
    free(body);
}

void node__on_livez(void *ud, struct http_req *req)
{
    (void)ud;
    reply_json(req, 200, json_pack("{s:s}", "status", "alive"));
}

/* The readiness rule applied to n now. */
static void ready_now(struct node *n, struct node__ready_in *inp, struct node__ready *r)
{
    struct raft_soft_state s = raft_soft(n->raft);
    const struct raft_conf *c = raft_conf_at(n->raft, n->applied);
    uint64_t now = node__now(n);
    struct node__ready_in in = {
        .stopping = n->stopping || n->handing_over,
        .removed = n->removed,
        .conflict = n->conflict,
        .member = raft_conf_is_voter(c, n->raft_id) || raft_conf_is_learner(c, n->raft_id),
        .leads = s.role == RAFT_LEADER,
        .leader_known = s.leader != RAFT_NONE,
        .since_leader_ms = now > n->heard_leader_at ? now - n->heard_leader_at : 0,
        .election_ms = (uint64_t)n->o.election_ticks * n->o.tick_ms,
        .applied = n->applied,
        .leader_commit = node__leader_commit(n),
        .max_lag = NODE_READY_MAX_LAG,
    };
    *inp = in;
    node__ready_eval(&in, r);
}

bool node_ready(struct node *n)
{
    struct node__ready_in in;
    struct node__ready r;
    ready_now(n, &in, &r);
    return r.ready;
}

void node__on_readyz(void *ud, struct http_req *req)
{
    struct node *n = ud;
    struct raft_soft_state s = raft_soft(n->raft);
    struct node__ready_in in;
    struct node__ready r;
    ready_now(n, &in, &r);
    const struct kv_member *lead = kv_member_by_raft_id(n->kv, s.leader);
    json_t *root = json_pack("{s:b, s:b, s:b, s:b, s:s, s:I, s:I, s:I, s:I}",
                             "ready", r.ready, "member", r.member, "has_leader", r.has_leader,
                             "caught_up", r.caught_up, "leader", lead ? lead->id : "",
                             "applied_index", (json_int_t)in.applied,
                             "leader_commit", (json_int_t)in.leader_commit,
                             "lag", (json_int_t)r.lag, "max_lag", (json_int_t)in.max_lag);
    if (root != NULL && !r.ready)
        json_object_set_new(root, "error", json_sprintf("not ready: %s", r.why));
    reply_json(req, r.ready ? 200 : 503, root);
}
