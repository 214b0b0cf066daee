/* Cluster configurations: membership tests, single-server changes, and the
 * history of configurations since the snapshot (to know the configuration
 * as of any index a snapshot may be taken at). */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

static int find(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return (int)i;
    return -1;
}

static void drop(uint64_t *ids, uint32_t *n, int i)
{
    memmove(&ids[i], &ids[i + 1], (*n - (uint32_t)i - 1) * sizeof ids[0]);
    (*n)--;
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    return find(c->voters, c->n_voters, id) >= 0;
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
    return find(c->learners, c->n_learners, id) >= 0;
}

int raft_conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
    if (cc->node == RAFT_NONE)
        return CRAFT_EINVAL;
    int v = find(c->voters, c->n_voters, cc->node);
    int l = find(c->learners, c->n_learners, cc->node);
    bool full = c->n_voters + c->n_learners >= RAFT_MAX_MEMBERS;
    switch (cc->op) {
    case RAFT_CONF_ADD_VOTER:
        if (v >= 0)
            return CRAFT_EEXISTS;
        if (l >= 0)
            drop(c->learners, &c->n_learners, l);
        else if (full)
            return CRAFT_ETOOBIG;
        c->voters[c->n_voters++] = cc->node;
        return 0;
    case RAFT_CONF_ADD_LEARNER:
        if (v >= 0 || l >= 0)
            return CRAFT_EEXISTS;
        if (full)
            return CRAFT_ETOOBIG;
        c->learners[c->n_learners++] = cc->node;
        return 0;
    case RAFT_CONF_REMOVE:
        if (v >= 0) {
            if (c->n_voters == 1)
                return CRAFT_EINVAL; /* never leave a cluster voterless */
            drop(c->voters, &c->n_voters, v);
            return 0;
        }
        if (l >= 0) {
            drop(c->learners, &c->n_learners, l);
            return 0;
        }
        return CRAFT_ENOTFOUND;
    default:
        return CRAFT_EINVAL;
    }
}

/* Remember that `c` is in force from `index` on. */
int raft__conf_push(struct raft *r, uint64_t index, const struct raft_conf *c)
{
    struct raft__conf_at *p =
        craft_realloc(r->confs, (r->n_confs + 1) * sizeof *p);
    if (p == NULL)
        return CRAFT_ENOMEM;
    r->confs = p;
    p[r->n_confs].index = index;
    p[r->n_confs].conf = *c;
    r->n_confs++;
    return 0;
}

/* The configuration in force at index (index >= the snapshot's). */
const struct raft_conf *raft__conf_at(const struct raft *r, uint64_t index)
{
    const struct raft_conf *c = &r->snap.conf;
    for (size_t i = 0; i < r->n_confs && r->confs[i].index <= index; i++)
        c = &r->confs[i].conf;
    return c;
}

/* Forget history that a snapshot at index now covers. */
void raft__conf_compact(struct raft *r, uint64_t index)
{
    size_t k = 0;
    while (k < r->n_confs && r->confs[k].index <= index)
        k++;
    memmove(r->confs, r->confs + k, (r->n_confs - k) * sizeof *r->confs);
    r->n_confs -= k;
}

/* A committed membership change takes effect. Entries that do not decode
 * or do not apply are skipped, identically on every node. */
int raft__apply_conf_entry(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0)
        return 0;
    struct raft_conf c = r->conf;
    if (raft_conf_apply(&c, &cc) != 0)
        return 0;
    int rv = raft__conf_push(r, e->index, &c);
    if (rv)
        return rv;
    r->conf = c;
    raft__prs_sync(r);
    return 0;
}
