/* Proposals and membership changes: accepted by the leader, forwarded to it
 * by a follower; each one gets exactly one outcome (struct
 * raft_prop_result) unless its forwarding message is lost. */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

void raft__prop_result(struct raft *r, uint64_t id, uint64_t index,
                       uint64_t term, int err)
{
    if (raft__grow(&r->props, &r->cap_props, r->n_props, sizeof *r->props))
        return; /* the caller times the proposal out */
    struct raft_prop_result *res = &r->props[r->n_props++];
    res->id = id;
    res->index = index;
    res->term = term;
    res->err = err;
}

/* Append an entry of our own term to the leader's log. */
uint64_t raft__append_local(struct raft *r, uint8_t type, const void *data,
                            size_t len)
{
    struct raft_entry e = {.term = r->term,
                           .index = raft__log_last(&r->log) + 1,
                           .type = type,
                           .len = (uint32_t)len,
                           .data = data};
    if (raft__log_append(r, &e, 1) != 0)
        return 0;
    r->uncommitted_bytes += len;
    if (type == RAFT_ENTRY_CONF)
        r->pending_conf_index = e.index;
    return e.index;
}

/* May the leader take this entry now? */
static int leader_accepts(const struct raft *r, const struct raft_entry *e)
{
    if (r->transferee != RAFT_NONE || r->leaving)
        return CRAFT_ETRANSFER;
    if (r->uncommitted_bytes > 0 &&
        r->uncommitted_bytes + e->len > r->cfg.max_uncommitted_bytes)
        return CRAFT_EOVERLOAD;
    if (e->type == RAFT_ENTRY_CONF) {
        if (r->pending_conf_index > r->log.committed)
            return CRAFT_EBUSY;
        struct raft_conf_change cc;
        if (raft_conf_change_decode(e->data, e->len, &cc) != 0)
            return CRAFT_EINVAL;
        struct raft_conf c = r->conf;
        return raft_conf_apply(&c, &cc);
    }
    if (e->type != RAFT_ENTRY_NORMAL)
        return CRAFT_EINVAL;
    return 0;
}

/* As leader: take it or say why not. Returns 0 and sets *index, or an
 * error. */
static int leader_propose(struct raft *r, const struct raft_entry *e,
                          uint64_t *index)
{
    int err = leader_accepts(r, e);
    if (err)
        return err;
    *index = raft__append_local(r, e->type, e->data, e->len);
    return *index ? 0 : CRAFT_ENOMEM;
}

static int propose(struct raft *r, uint64_t id, uint8_t type,
                   const void *data, size_t len)
{
    if (len > r->cfg.max_msg_bytes)
        return CRAFT_ETOOBIG;
    struct raft_entry e = {.type = type, .len = (uint32_t)len, .data = data};
    if (r->role == RAFT_LEADER) {
        uint64_t index = 0;
        int err = leader_propose(r, &e, &index);
        raft__prop_result(r, id, index, err ? 0 : r->term, err);
        return 0;
    }
    if (r->lead == RAFT_NONE) {
        raft__prop_result(r, id, 0, 0, CRAFT_ENOLEADER);
        return 0;
    }
    struct raft_msg *m = raft__send(r, RAFT_MSG_PROP, r->lead);
    m->ctx = id;
    m->n_entries = 1;
    m->entries = raft__arena_alloc(&r->arena, sizeof *m->entries);
    uint8_t *copy = raft__arena_alloc(&r->arena, len ? len : 1);
    if (len)
        memcpy(copy, data, len);
    e.data = copy;
    m->entries[0] = e;
    return 0;
}

int raft_propose(struct raft *r, uint64_t id, const void *data, size_t len)
{
    return propose(r, id, RAFT_ENTRY_NORMAL, data, len);
}

int raft_propose_conf(struct raft *r, uint64_t id,
                      const struct raft_conf_change *cc)
{
    if (cc->node == RAFT_NONE || cc->op < RAFT_CONF_ADD_VOTER ||
        cc->op > RAFT_CONF_PROMOTE || cc->op == RAFT_CONF_FOUNDER)
        return CRAFT_EINVAL;
    size_t len = raft_conf_change_size(cc);
    uint8_t *buf = craft_malloc(len);
    if (buf == NULL)
        return CRAFT_ENOMEM;
    raft_conf_change_encode(cc, buf);
    int rv = propose(r, id, RAFT_ENTRY_CONF, buf, len);
    craft_free(buf);
    return rv;
}

/* A proposal forwarded by a follower. */
void raft__handle_prop(struct raft *r, const struct raft_msg *m)
{
    int err;
    uint64_t index = 0;
    if (r->role != RAFT_LEADER)
        err = r->lead == RAFT_NONE ? CRAFT_ENOLEADER : CRAFT_ENOTLEADER;
    else if (m->n_entries != 1 || m->entries[0].len > r->cfg.max_msg_bytes)
        err = CRAFT_EINVAL;
    else
        err = leader_propose(r, &m->entries[0], &index);
    struct raft_msg *resp = raft__send(r, RAFT_MSG_PROP_RESP, m->from);
    resp->ctx = m->ctx;
    if (err) {
        resp->reject = true;
        resp->err = err;
    } else {
        resp->index = index;
        resp->log_term = r->term;
    }
}

void raft__handle_prop_resp(struct raft *r, const struct raft_msg *m)
{
    int err = 0;
    if (m->reject)
        err = m->err ? m->err : CRAFT_ENOTLEADER;
    raft__prop_result(r, m->ctx, err ? 0 : m->index, err ? 0 : m->log_term,
                      err);
}
