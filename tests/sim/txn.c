/* The keys the simulated nodes keep in src/kv's real state machine (t/c0,
 * t/c1, t/m/a..t/m/c, in sim_kv.map), the clients' operations on them, and
 * the model they are checked against.
 *
 * Clients: a CAS is a linearizable read of t/c<i> (its value and mod_index)
 * then a version-2 transaction "mod_index of t/c<i> == what was read: put a
 * new value", recorded for lincheck's CAS model (lin.c); a multi-key txn is a
 * random transaction over t/m/ (compares on existence, version, mod_index or
 * value, then puts of two keys, deletes or a delete_prefix); a listing is a
 * read-index read answered with kv_list over t/m/.
 *
 * The model (struct sim_model) is a sequential map written here, not taken
 * from src/kv: it decodes each applied command with kv_txn_decode and
 * evaluates compares and ops itself, and records per index the map's
 * fingerprint, its t/m/ listing's and whether the compares held. Every node
 * that applies a transaction must report the same compare result and hold
 * the same map (sim_txn_check_apply); every listing must be the model's at
 * the index the node served it from. */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "kv/kv.h"

static const char *const tkey_names[SIM_MODEL_KEYS] = {"t/c0", "t/c1",
                                                       "t/m/a", "t/m/b",
                                                       "t/m/c"};
#define MKEY(i) (SIM_CAS_KEYS + (i))
#define LIST_PREFIX "t/m/"

const char *sim_tkey_name(unsigned id)
{
    unsigned i = id - SIM_TKEY;
    return i < SIM_MODEL_KEYS ? tkey_names[i] : "t/?";
}

/* ---- fingerprints, the same for the model and the map ---- */

static uint64_t fp_rec(uint64_t h, const void *key, size_t klen,
                       const void *val, size_t vlen, uint64_t create,
                       uint64_t mod, uint64_t version)
{
    uint8_t b[24];
    craft_put64(b, create);
    craft_put64(b + 8, mod);
    craft_put64(b + 16, version);
    uint8_t l[2] = {(uint8_t)klen, (uint8_t)vlen};
    h = sim_fnv(h, l, 2);
    h = sim_fnv(h, key, klen);
    h = sim_fnv(h, val, vlen);
    return sim_fnv(h, b, sizeof(b));
}

struct fp_ctx {
    uint64_t h;
};

static int fp_one(void *ud, const struct kv_meta *m)
{
    struct fp_ctx *c = ud;
    c->h = fp_rec(c->h, m->key, m->klen, m->val, m->vlen, m->create_index,
                  m->mod_index, m->version);
    return 0;
}

uint64_t sim_map_fp(const struct kv *map, const char *prefix)
{
    struct fp_ctx c = {SIM_FNV_INIT};
    if (map == NULL)
        return c.h;
    struct kv_range r;
    kv_range_prefix(&r, prefix, strlen(prefix));
    size_t n;
    bool more;
    /* one page: the sim has SIM_MODEL_KEYS t/ keys at most; a map holding
     * more lists "more", which makes the fingerprint differ */
    kv_list(map, &r, NULL, 0, SIM_MODEL_KEYS, fp_one, &c, &n, &more);
    if (more)
        c.h = ~c.h;
    return c.h;
}

static uint64_t model_fp(const struct sim_model *m, const char *prefix)
{
    uint64_t h = SIM_FNV_INIT;
    size_t pl = strlen(prefix);
    for (unsigned i = 0; i < m->n; i++) {
        const struct sim_mrec *r = &m->rec[i];
        if (strncmp(r->key, prefix, pl) != 0)
            continue;
        h = fp_rec(h, r->key, strlen(r->key), r->val, strlen(r->val),
                   r->create, r->mod, r->version);
    }
    return h;
}

/* ---- the model ---- */

void sim_model_free(struct sim_model *m)
{
    craft_free(m->at);
    memset(m, 0, sizeof(*m));
}

static struct sim_mrec *model_find(struct sim_model *m, const uint8_t *key,
                                   size_t klen)
{
    for (unsigned i = 0; i < m->n; i++)
        if (strlen(m->rec[i].key) == klen &&
            memcmp(m->rec[i].key, key, klen) == 0)
            return &m->rec[i];
    return NULL;
}

static bool model_compare(struct sim_model *m, const struct kv_compare *c)
{
    const struct sim_mrec *r = model_find(m, c->key, c->klen);
    uint64_t x = 0;
    switch (c->target) {
    case KV_CMP_EXISTS:
        return (c->op == KV_CMP_EQ) == ((r != NULL) == (c->num == 1));
    case KV_CMP_VALUE:
        if (!r)
            return false;
        return (c->op == KV_CMP_EQ) ==
               (strlen(r->val) == c->vlen &&
                memcmp(r->val, c->val, c->vlen) == 0);
    case KV_CMP_MOD:
        x = r ? r->mod : 0;
        break;
    case KV_CMP_VERSION:
        x = r ? r->version : 0;
        break;
    default: /* KV_CMP_CREATE */
        x = r ? r->create : 0;
    }
    switch (c->op) {
    case KV_CMP_EQ:
        return x == c->num;
    case KV_CMP_NE:
        return x != c->num;
    case KV_CMP_LT:
        return x < c->num;
    default:
        return x > c->num;
    }
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct sim_mrec *)a)->key,
                  ((const struct sim_mrec *)b)->key);
}

static void model_remove(struct sim_model *m, struct sim_mrec *r)
{
    *r = m->rec[--m->n];
    qsort(m->rec, m->n, sizeof(m->rec[0]), by_key);
}

/* One op of the executed branch. False if it does not fit the model (a key
 * or value the sim never writes). */
static bool model_op(struct sim_model *m, const struct kv_txn_op *o,
                     uint64_t index)
{
    struct sim_mrec *r = model_find(m, o->key, o->klen);
    switch (o->type) {
    case KV_TOP_PUT:
        if (o->vlen >= SIM_VAL_MAX || o->klen >= sizeof(r->key))
            return false;
        if (!r) {
            if (m->n == SIM_MODEL_KEYS)
                return false;
            r = &m->rec[m->n++];
            memset(r, 0, sizeof(*r));
            memcpy(r->key, o->key, o->klen);
            r->create = index;
        }
        memcpy(r->val, o->val, o->vlen);
        r->val[o->vlen] = 0;
        r->mod = index;
        r->version++;
        qsort(m->rec, m->n, sizeof(m->rec[0]), by_key);
        return true;
    case KV_TOP_DEL:
        if (r)
            model_remove(m, r);
        return true;
    case KV_TOP_DEL_PREFIX:
        for (unsigned i = 0; i < m->n;)
            if (strlen(m->rec[i].key) >= o->klen &&
                memcmp(m->rec[i].key, o->key, o->klen) == 0)
                model_remove(m, &m->rec[i]);
            else
                i++;
        return true;
    default: /* KV_TOP_GET */
        return true;
    }
}

/* Apply a SIM_CMD_KV command (a version-2 txn) to the model: its compares'
 * result, or -1 if it does not decode. */
static int model_txn(struct sim_model *m, uint64_t index, const uint8_t *p,
                     size_t len)
{
    struct kv_compare cmp[KV_TXN_MAX];
    struct kv_txn_op succ[KV_TXN_MAX], fail[KV_TXN_MAX];
    struct kv_txn t;
    if (kv_txn_decode(p, len, &t, cmp, succ, fail) != 0)
        return -1;
    bool ok = true;
    for (size_t i = 0; i < t.n_cmp && ok; i++)
        ok = model_compare(m, &cmp[i]);
    const struct kv_txn_op *ops = ok ? t.success : t.failure;
    size_t n = ok ? t.n_success : t.n_failure;
    for (size_t i = 0; i < n; i++)
        if (!model_op(m, &ops[i], index))
            return -1;
    return ok;
}

void sim_model_step(struct sim *s, const struct raft_entry *e)
{
    struct sim_model *m = &s->model;
    if (e->index <= m->index)
        return;
    if (e->index != m->index + 1) {
        sim_fail(s, "sim", "the txn model is at %" PRIu64 ", entry %" PRIu64
                 " applied first", m->index, e->index);
        return;
    }
    if (e->index >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        while (cap <= e->index)
            cap *= 2;
        struct sim_mstep *at = craft_realloc(m->at, cap * sizeof(*at));
        if (!at) {
            sim_fail(s, "sim", "out of memory");
            return;
        }
        m->at = at;
        m->cap = cap;
    }
    int8_t succeeded = -1;
    if (e->type == RAFT_ENTRY_NORMAL && e->len > 0 &&
        ((const uint8_t *)e->data)[0] == SIM_CMD_KV) {
        int rc = model_txn(m, e->index, (const uint8_t *)e->data + 1,
                           e->len - 1);
        if (rc < 0) {
            sim_fail(s, "sim", "the txn model cannot apply entry %" PRIu64,
                     e->index);
            return;
        }
        succeeded = (int8_t)rc;
    }
    m->index = e->index;
    m->at[e->index] = (struct sim_mstep){model_fp(m, "t/"),
                                         model_fp(m, LIST_PREFIX), succeeded};
}

void sim_txn_check_apply(struct sim *s, const struct sim_node *n,
                         const struct raft_entry *e)
{
    const struct sim_model *m = &s->model;
    if (e->index > m->index || n->kv.map == NULL)
        return; /* the model failed already */
    const struct sim_mstep *at = &m->at[e->index];
    const struct kv_result *r = kv_last_result(n->kv.map);
    if (r->index != e->index || (int8_t)r->succeeded != at->succeeded) {
        sim_fail(s, "txn-compare", "n%" PRIu64 " applied the txn at index %"
                 PRIu64 " with its compares %s (failed compare %d), the model"
                 " says they %s", n->id, e->index,
                 r->succeeded ? "holding" : "failing", r->failed_cmp,
                 at->succeeded == 1 ? "hold" : "fail");
        return;
    }
    if (sim_map_fp(n->kv.map, "t/") != at->fp_all)
        sim_fail(s, "txn-state", "n%" PRIu64 " holds other t/ keys or"
                 " revisions than the model after index %" PRIu64, n->id,
                 e->index);
}

/* ---- clients ---- */

static unsigned pick(struct sim *s, unsigned n)
{
    return (unsigned)sim_rng_below(&s->rng, n);
}

void sim_txn_issue(struct sim *s, struct sim_client *c, struct sim_node *n)
{
    unsigned r = pick(s, 100);
    if (r < 50) {
        c->cas_key = (uint8_t)(SIM_TKEY + pick(s, SIM_CAS_KEYS));
        c->cas_reading = true;
        if (sim_client_invoke(s, c, SIM_OP_GET, c->cas_key, n, false) < 0)
            c->cas_reading = false;
    } else if (r < 80) {
        sim_client_invoke(s, c, SIM_OP_TXN, SIM_TKEY + MKEY(pick(s, SIM_MKEYS)),
                          n, false);
    } else {
        sim_client_invoke(s, c, SIM_OP_LIST, SIM_TKEY + MKEY(0), n, false);
    }
}

void sim_txn_cas(struct sim *s, struct sim_client *c, struct sim_node *n)
{
    c->cas_next = false;
    sim_client_invoke(s, c, SIM_OP_CAS, c->cas_key, n, false);
}

static void key_of(unsigned id, const uint8_t **k, size_t *klen)
{
    const char *name = sim_tkey_name(id);
    *k = (const uint8_t *)name;
    *klen = strlen(name);
}

/* A random multi-key txn: a compare or two on t/m/ keys, then puts of two
 * keys with the op's value, or deletes; the failure branch does otherwise. */
static void random_txn(struct sim *s, const struct sim_op *op,
                       struct kv_compare *cmp, size_t *n_cmp,
                       struct kv_txn_op *succ, size_t *n_succ,
                       struct kv_txn_op *fail, size_t *n_fail)
{
    const uint8_t *v = (const uint8_t *)op->value;
    size_t vlen = strlen(op->value);
    *n_cmp = 1 + pick(s, 2);
    for (size_t i = 0; i < *n_cmp; i++) {
        struct kv_compare *c = &cmp[i];
        memset(c, 0, sizeof(*c));
        key_of(SIM_TKEY + MKEY(pick(s, SIM_MKEYS)), &c->key, &c->klen);
        c->target = (uint8_t)(KV_CMP_MOD + pick(s, 5));
        c->op = (uint8_t)pick(s, 4);
        if (c->target == KV_CMP_VALUE || c->target == KV_CMP_EXISTS)
            c->op = (uint8_t)pick(s, 2);
        if (c->target == KV_CMP_EXISTS)
            c->num = pick(s, 2);
        else if (c->target == KV_CMP_VERSION)
            c->num = pick(s, 4);
        else if (c->target == KV_CMP_VALUE) {
            c->val = v; /* never equal to a value written before: != holds */
            c->vlen = vlen;
        } else {
            c->num = op->expect; /* an index near the node's applied one */
        }
    }
    unsigned a = pick(s, SIM_MKEYS), b = (a + 1 + pick(s, 2)) % SIM_MKEYS;
    memset(succ, 0, 3 * sizeof(*succ));
    memset(fail, 0, 2 * sizeof(*fail));
    if (pick(s, 8) == 0) {
        succ[0].type = KV_TOP_DEL_PREFIX;
        succ[0].key = (const uint8_t *)LIST_PREFIX;
        succ[0].klen = strlen(LIST_PREFIX);
        *n_succ = 1;
    } else {
        succ[0].type = succ[1].type = KV_TOP_PUT;
        key_of(SIM_TKEY + MKEY(a), &succ[0].key, &succ[0].klen);
        key_of(SIM_TKEY + MKEY(b), &succ[1].key, &succ[1].klen);
        succ[0].val = succ[1].val = v;
        succ[0].vlen = succ[1].vlen = vlen;
        succ[2].type = KV_TOP_GET;
        key_of(SIM_TKEY + MKEY(a), &succ[2].key, &succ[2].klen);
        *n_succ = 3;
    }
    fail[0].type = pick(s, 2) ? KV_TOP_PUT : KV_TOP_DEL;
    key_of(SIM_TKEY + MKEY(b), &fail[0].key, &fail[0].klen);
    fail[0].val = v;
    fail[0].vlen = fail[0].type == KV_TOP_PUT ? vlen : 0;
    *n_fail = 1;
}

size_t sim_txn_encode(struct sim *s, const struct sim_op *op, uint8_t *buf,
                      size_t cap)
{
    struct kv_compare cmp[2];
    struct kv_txn_op succ[3], fail[2];
    struct kv_txn t = {cmp, 0, succ, 0, fail, 0};
    if (op->kind == SIM_OP_CAS) {
        memset(cmp, 0, sizeof(cmp[0]));
        memset(succ, 0, sizeof(succ[0]));
        memset(fail, 0, sizeof(fail[0]));
        cmp[0].target = KV_CMP_MOD;
        cmp[0].op = KV_CMP_EQ;
        cmp[0].num = op->expect;
        key_of(op->key, &cmp[0].key, &cmp[0].klen);
        succ[0].type = KV_TOP_PUT;
        succ[0].key = cmp[0].key;
        succ[0].klen = cmp[0].klen;
        succ[0].val = (const uint8_t *)op->value;
        succ[0].vlen = strlen(op->value);
        fail[0].type = KV_TOP_GET;
        fail[0].key = cmp[0].key;
        fail[0].klen = cmp[0].klen;
        t.n_cmp = t.n_success = t.n_failure = 1;
    } else {
        random_txn(s, op, cmp, &t.n_cmp, succ, &t.n_success, fail,
                   &t.n_failure);
    }
    size_t len = kv_txn_size(&t);
    if (len == 0 || len + 1 > cap)
        return 0;
    buf[0] = SIM_CMD_KV;
    return 1 + kv_txn_encode(&t, buf + 1);
}

void sim_txn_read(struct sim *s, const struct sim_node *n, struct sim_op *op)
{
    if (op->kind == SIM_OP_LIST) {
        s->st.lists++;
        const struct sim_model *m = &s->model;
        uint64_t at = n->kv.applied;
        if (at > m->index)
            return; /* the model failed already */
        /* an empty listing's fingerprint is the initial value */
        uint64_t want = at ? m->at[at].fp_list : SIM_FNV_INIT;
        if (sim_map_fp(n->kv.map, LIST_PREFIX) != want)
            sim_fail(s, "txn-list", "n%" PRIu64 " lists " LIST_PREFIX " at"
                     " index %" PRIu64 " otherwise than the model", n->id, at);
        op->has_value = false;
        return;
    }
    struct kv_meta meta;
    const char *name = sim_tkey_name(op->key);
    op->has_mod = true;
    if (n->kv.map == NULL ||
        kv_get_meta(n->kv.map, name, strlen(name), &meta) != 0) {
        op->has_value = false;
        op->value[0] = 0;
        op->mod = 0;
        return;
    }
    size_t vl = meta.vlen < SIM_VAL_MAX - 1 ? meta.vlen : SIM_VAL_MAX - 1;
    memcpy(op->value, meta.val, vl);
    op->value[vl] = 0;
    op->has_value = true;
    op->mod = meta.mod_index;
}

void sim_txn_result(const struct sim_node *n, struct sim_op *op)
{
    if (n->kv.map == NULL)
        return;
    const struct kv_result *r = kv_last_result(n->kv.map);
    if (r->index != op->index || op->kind != SIM_OP_CAS)
        return;
    op->has_mod = true;
    op->refused = !r->succeeded;
    op->mod = r->succeeded ? op->index : r->failed_mod_index;
}
