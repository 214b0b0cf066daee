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

/* RAFT_CONF_FOUNDER is not a change anyone may propose: EINVAL. */
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
    case RAFT_CONF_PROMOTE:
        if (l < 0)
            return v >= 0 ? CRAFT_EEXISTS : CRAFT_ENOTFOUND;
        drop(c->learners, &c->n_learners, l);
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
static int conf_push(struct raft *r, uint64_t index, const struct raft_conf *c)
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
    if (k == 0)
        return;
    memmove(r->confs, r->confs + k, (r->n_confs - k) * sizeof *r->confs);
    r->n_confs -= k;
}

/* The configuration in force changed: follow it. */
static void conf_changed(struct raft *r, const struct raft_conf *c)
{
    r->conf = *c;
    raft__prs_sync(r);
    if (r->role != RAFT_LEADER)
        return;
    /* A leader that is no longer a voter leads on without counting
     * itself until the change commits, then hands over (raft__hand_over). */
    r->leaving = !raft_conf_is_voter(&r->conf, r->id);
    if (r->transferee != RAFT_NONE &&
        (r->leaving || !raft_conf_is_voter(&r->conf, r->transferee)))
        raft__abort_transfer(r);
    raft__reads_on_round(r); /* the quorum changed */
}

/* A membership entry was appended: it is in force from now on, committed
 * or not (thesis §4.1), on every node alike. Entries that do not decode or
 * do not apply are skipped, identically everywhere. */
int raft__conf_on_append(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0)
        return 0;
    struct raft_conf *f = &r->founders;
    if (cc.op == RAFT_CONF_FOUNDER) {
        if (f->n_voters < RAFT_MAX_MEMBERS &&
            !raft_conf_is_voter(f, cc.node))
            f->voters[f->n_voters++] = cc.node;
        return 0;
    }
    struct raft_conf c = r->conf;
    if (f->n_voters > 0 && c.n_voters == 0 && c.n_learners == 0)
        c = *f; /* the founding configuration, all at once */
    memset(f, 0, sizeof *f);
    if (raft_conf_apply(&c, &cc) != 0)
        return 0;
    int rv = conf_push(r, e->index, &c);
    if (rv)
        return rv;
    conf_changed(r, &c);
    return 0;
}

/* Entries from `from` on were dropped: so were their configurations. */
void raft__conf_truncate(struct raft *r, uint64_t from)
{
    size_t n = r->n_confs;
    while (r->n_confs > 0 && r->confs[r->n_confs - 1].index >= from)
        r->n_confs--;
    if (n == r->n_confs)
        return;
    struct raft_conf c = r->n_confs ? r->confs[r->n_confs - 1].conf
                                    : r->snap.conf;
    conf_changed(r, &c);
}

/* The log was replaced by a snapshot; entries kept after it still count. */
void raft__conf_restore(struct raft *r)
{
    r->n_confs = 0;
    memset(&r->founders, 0, sizeof r->founders);
    struct raft_conf c = r->snap.conf;
    r->conf = c;
    const struct raft__log *l = &r->log;
    for (uint64_t i = l->offset + 1; i <= raft__log_last(l); i++) {
        const struct raft_entry *e = raft__log_at(l, i);
        if (e->type == RAFT_ENTRY_CONF)
            (void)raft__conf_on_append(r, e);
    }
    conf_changed(r, &r->conf);
}
