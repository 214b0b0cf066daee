/* libFuzzer target for the kv command decoders (src/kv/kv_cmd.c and
 * kv_txn.c): a command that decodes must re-encode to exactly its bytes and
 * apply to what its operations say: a version-1 batch atomically, the last
 * operation on a key winning; a version-2 transaction like a plain model
 * of it here (compares, one branch, per-op results, revisions, lease 5
 * existing and any other lease missing), the map then listed in order
 * against the model; a version-3 lease command by what it says (grant,
 * revoke/expire of lease 5 deleting its key, keepalive). One that does not
 * decode must be refused by kv_apply, leaving the map as it was. Built and run by
 * `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kv/kv.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

static bool bytes_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* A map that is there before every command: "a" = "1", "b" = "". */
static struct kv *base_map(void)
{
    struct kv *kv = kv_new(1);
    CHECK(kv != NULL);
    CHECK(kv_put(kv, "a", 1, "1", 1) == 0 && kv_put(kv, "b", 1, "", 0) == 0);
    return kv;
}

/* What the map must hold for key after the ops: the last op on it wins;
 * untouched keys keep their base value. */
static void check_key(const struct kv *kv, const struct kv_op *ops, size_t n,
                      const uint8_t *key, size_t klen)
{
    const struct kv_op *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (bytes_eq(ops[i].key, ops[i].klen, key, klen))
            last = &ops[i];
    const uint8_t *v;
    size_t vl;
    int err = kv_get(kv, key, klen, &v, &vl);
    if (last == NULL && bytes_eq(key, klen, (const uint8_t *)"a", 1))
        CHECK(err == 0 && bytes_eq(v, vl, (const uint8_t *)"1", 1));
    if (last == NULL && bytes_eq(key, klen, (const uint8_t *)"b", 1))
        CHECK(err == 0 && vl == 0);
    if (last == NULL)
        return;
    if (last->type == KV_OP_DEL) {
        CHECK(err == CRAFT_ENOTFOUND);
    } else {
        CHECK(err == 0 && bytes_eq(v, vl, last->val, last->vlen));
    }
}

/* ---- the transaction model ---- */

struct ment {
    const uint8_t *key, *val;
    size_t klen, vlen;
    uint64_t create, mod, version, lease;
};

/* The transactions' base map: "a", "b" and BIG_N keys "k000".. with
 * 30-byte values, enough for a few leaves (so that puts split them and
 * deletes merge them). */
#define BIG_N 400
static char big_keys[BIG_N][4];
static char big_val[30] = "value-value-value-value-value";

struct model {
    struct ment e[2 + BIG_N + KV_TXN_MAX];
    size_t n;
};

static struct ment *m_find(struct model *m, const uint8_t *k, size_t kl)
{
    for (size_t i = 0; i < m->n; i++)
        if (bytes_eq(m->e[i].key, m->e[i].klen, k, kl))
            return &m->e[i];
    return NULL;
}

static bool m_cmp(struct model *m, const struct kv_compare *c)
{
    struct ment *e = m_find(m, c->key, c->klen);
    uint64_t x = 0;
    switch (c->target) {
    case KV_CMP_VALUE:
        if (e == NULL)
            return false;
        return (c->op == KV_CMP_EQ) ==
               bytes_eq(e->val, e->vlen, c->val, c->vlen);
    case KV_CMP_EXISTS:
        return (c->op == KV_CMP_EQ) == ((e != NULL) == (c->num == 1));
    case KV_CMP_MOD:
        x = e ? e->mod : 0;
        break;
    case KV_CMP_VERSION:
        x = e ? e->version : 0;
        break;
    default:
        x = e ? e->create : 0;
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

static int ment_cmp(const void *a, const void *b)
{
    const struct ment *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

struct lister {
    const struct model *m;
    size_t i;
};

static int list_cb(void *ud, const struct kv_meta *km)
{
    struct lister *l = ud;
    CHECK(l->i < l->m->n);
    const struct ment *e = &l->m->e[l->i++];
    CHECK(bytes_eq(km->key, km->klen, e->key, e->klen));
    CHECK(bytes_eq(km->val, km->vlen, e->val, e->vlen));
    CHECK(km->create_index == e->create && km->mod_index == e->mod &&
          km->version == e->version && km->lease == e->lease);
    return 0;
}

static void fuzz_txn(const uint8_t *data, size_t size)
{
    static struct kv_compare cmp[KV_TXN_MAX];
    static struct kv_txn_op succ[KV_TXN_MAX], fail[KV_TXN_MAX];
    struct kv *kv = base_map();
    for (int i = 0; i < BIG_N; i++) {
        big_keys[i][0] = 'k';
        big_keys[i][1] = (char)('0' + i / 100);
        big_keys[i][2] = (char)('0' + i / 10 % 10);
        big_keys[i][3] = (char)('0' + i % 10);
        CHECK(kv_put(kv, big_keys[i], 4, big_val, sizeof big_val) == 0);
    }
    /* lease 5, granted after the direct puts (they take kv_index) */
    uint8_t grant[KV_LEASE_CMD_MAX];
    size_t glen = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 1000, grant);
    CHECK(kv_apply_at(kv, 5, grant, glen) == 0);
    struct kv_txn t;
    if (kv_txn_decode(data, size, &t, cmp, succ, fail) != 0) {
        CHECK(kv_apply_at(kv, 7, data, size) == CRAFT_ECORRUPT);
        CHECK(kv_count(kv) == 2 + BIG_N && kv_index(kv) == 5);
        kv_free(kv);
        return;
    }
    CHECK(kv_txn_size(&t) == size);
    uint8_t *buf = malloc(size);
    CHECK(buf != NULL);
    CHECK(kv_txn_encode(&t, buf) == size && memcmp(buf, data, size) == 0);
    free(buf);

    static struct model m;
    m.n = 2;
    m.e[0] = (struct ment){(const uint8_t *)"a", (const uint8_t *)"1", 1, 1,
                           0, 0, 1, 0};
    m.e[1] = (struct ment){(const uint8_t *)"b", (const uint8_t *)"", 1, 0,
                           0, 0, 1, 0};
    for (int i = 0; i < BIG_N; i++)
        m.e[m.n++] = (struct ment){(const uint8_t *)big_keys[i],
                                   (const uint8_t *)big_val, 4,
                                   sizeof big_val, 0, 0, 1, 0};
    bool ok = true;
    for (size_t i = 0; i < t.n_cmp && ok; i++)
        ok = m_cmp(&m, &cmp[i]);
    const struct kv_txn_op *ops = ok ? t.success : t.failure;
    size_t n = ok ? t.n_success : t.n_failure;
    uint64_t missing = 0;
    for (size_t i = 0; i < n && !missing; i++)
        if (ops[i].type == KV_TOP_PUT && ops[i].lease != 0 && ops[i].lease != 5)
            missing = ops[i].lease;

    CHECK(kv_apply_at(kv, 7, data, size) == 0);
    CHECK(kv_index(kv) == 7);
    const struct kv_result *r = kv_last_result(kv);
    CHECK(r->missing_lease == missing);
    if (missing) { /* nothing changed */
        CHECK(!r->succeeded && r->failed_cmp == -1 && r->n_ops == 0);
        n = 0;
        ok = false;
    }
    CHECK(r->succeeded == ok && r->n_ops == n && r->err == 0);
    CHECK(r->lease_op == 0);
    for (size_t i = 0; i < n; i++) {
        const struct kv_txn_op *o = &ops[i];
        const struct kv_op_result *res = &r->ops[i];
        CHECK(res->type == o->type);
        struct ment *e = m_find(&m, o->key, o->klen);
        if (o->type == KV_TOP_PUT) {
            CHECK(res->created == (e == NULL));
            if (e == NULL) {
                e = &m.e[m.n++];
                *e = (struct ment){o->key, NULL, o->klen, 0, 7, 7, 0, 0};
            }
            e->val = o->val;
            e->vlen = o->vlen;
            e->mod = 7;
            e->version++;
            e->lease = o->lease;
        } else if (o->type == KV_TOP_DEL) {
            CHECK(res->deleted == (e != NULL));
            if (e)
                *e = m.e[--m.n];
        } else if (o->type == KV_TOP_DEL_PREFIX) {
            uint64_t del = 0;
            for (size_t j = 0; j < m.n;) {
                if (m.e[j].klen >= o->klen &&
                    (o->klen == 0 || memcmp(m.e[j].key, o->key, o->klen) == 0)) {
                    m.e[j] = m.e[--m.n];
                    del++;
                } else {
                    j++;
                }
            }
            CHECK(res->deleted == del);
        } else {
            CHECK(res->found == (e != NULL));
            if (e)
                CHECK(bytes_eq(res->meta.val, res->meta.vlen, e->val,
                               e->vlen) &&
                      bytes_eq(res->meta.key, res->meta.klen, e->key,
                               e->klen) &&
                      res->meta.mod_index == e->mod &&
                      res->meta.version == e->version);
        }
    }
    qsort(m.e, m.n, sizeof m.e[0], ment_cmp);
    CHECK(kv_count(kv) == m.n);
    struct kv_range all;
    kv_range_span(&all, NULL, 0, NULL, 0);
    struct lister l = {&m, 0};
    size_t got;
    bool more;
    CHECK(kv_list(kv, &all, NULL, 0, SIZE_MAX, list_cb, &l, &got, &more) == 0);
    CHECK(got == m.n && !more);
    uint64_t on5 = 0;
    for (size_t i = 0; i < m.n; i++)
        on5 += m.e[i].lease == 5;
    struct kv_lease ls;
    CHECK(kv_lease_get(kv, 5, &ls) == 0 && ls.n_keys == on5);
    kv_free(kv);
}

/* A version-3 command against a map with lease 5 holding key "a". */
static void fuzz_lease(const uint8_t *data, size_t size)
{
    struct kv *kv = base_map();
    uint8_t cmd[KV_LEASE_CMD_MAX];
    size_t clen = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 1000, cmd);
    CHECK(kv_apply_at(kv, 5, cmd, clen) == 0);
    struct kv_txn_op put = {KV_TOP_PUT, (const uint8_t *)"a", 1,
                            (const uint8_t *)"1", 1, 5};
    struct kv_txn t = {.success = &put, .n_success = 1};
    uint8_t tb[64];
    size_t tlen = kv_txn_encode(&t, tb);
    CHECK(tlen > 0 && kv_apply_at(kv, 6, tb, tlen) == 0);

    int err = kv_apply_at(kv, 7, data, size);
    if (err) {
        CHECK(err == CRAFT_ECORRUPT && kv_index(kv) == 6);
        CHECK(kv_count(kv) == 2 && kv_lease_count(kv) == 1);
        kv_free(kv);
        return;
    }
    const struct kv_result *r = kv_last_result(kv);
    uint8_t op = r->lease_op;
    bool grant = op == KV_LEASE_GRANT;
    /* one encoding per command (an expiry's refresh index is known from
     * the result only when it applied) */
    bool arg_known = op != KV_LEASE_EXPIRE || (r->lease_found && !r->lease_stale);
    clen = kv_lease_cmd_encode(op, grant ? 0 : r->lease_id,
                               grant ? r->lease_ttl_ms
                               : op == KV_LEASE_EXPIRE ? r->lease_refreshed : 0, cmd);
    CHECK(!arg_known || (clen == size && memcmp(cmd, data, size) == 0));
    CHECK(kv_index(kv) == 7 && r->succeeded && r->missing_lease == 0);
    struct kv_lease l;
    bool on5 = !grant && r->lease_id == 5;
    /* lease 5 was granted at 5 and never kept alive: an expiry naming
     * another refresh is stale */
    bool arg5 = data[size - 1] == 5 && !(data[size - 2] & 0x80); /* uvar 5 */
    bool stale = on5 && op == KV_LEASE_EXPIRE && !arg5;
    CHECK(r->lease_stale == stale);
    if (stale) {
        CHECK(r->lease_found && r->lease_deleted == 0 && r->lease_refreshed == 5);
        CHECK(kv_lease_count(kv) == 1 && kv_count(kv) == 2);
    } else if (grant) {
        CHECK(r->lease_id == 7 && r->lease_found);
        CHECK(kv_lease_get(kv, 7, &l) == 0 && l.ttl_ms == r->lease_ttl_ms &&
              l.n_keys == 0);
        CHECK(kv_lease_count(kv) == 2 && kv_count(kv) == 2);
    } else if (op == KV_LEASE_KEEPALIVE || !on5) {
        CHECK(r->lease_found == on5 && r->lease_deleted == 0);
        CHECK(op != KV_LEASE_KEEPALIVE || !on5 ||
              (kv_lease_get(kv, 5, &l) == 0 && l.refreshed == 7));
        CHECK(r->lease_ttl_ms == (on5 ? 1000u : 0u));
        CHECK(kv_lease_count(kv) == 1 && kv_count(kv) == 2);
    } else { /* revoke or expire of lease 5 */
        CHECK(r->lease_found && r->lease_deleted == 1);
        CHECK(kv_lease_count(kv) == 0 && kv_count(kv) == 1);
        CHECK(kv_get(kv, "a", 1, NULL, NULL) == CRAFT_ENOTFOUND);
    }
    kv_free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == KV_TXN_VERSION) {
        fuzz_txn(data, size);
        return 0;
    }
    if (size > 0 && data[0] == KV_LEASE_VERSION) {
        fuzz_lease(data, size);
        return 0;
    }
    struct kv *kv = base_map();
    struct kv_cmd_iter it;
    if (kv_cmd_iter_init(&it, data, size) != 0) {
        CHECK(kv_apply(kv, data, size) == CRAFT_ECORRUPT);
        CHECK(kv_count(kv) == 2 && kv_bytes(kv) == 3);
        kv_free(kv);
        return 0;
    }
    size_t n = it.left;
    CHECK(n <= size);
    struct kv_op *ops = calloc(n + 1, sizeof *ops);
    CHECK(ops != NULL);
    size_t k = 0;
    while (kv_cmd_iter_next(&it, &ops[k]))
        CHECK(++k <= n);
    CHECK(k == n);

    /* One encoding per command. */
    CHECK(kv_cmd_size(ops, n) == size);
    uint8_t *buf = malloc(size);
    CHECK(buf != NULL);
    CHECK(kv_cmd_encode(ops, n, buf) == size && memcmp(buf, data, size) == 0);
    free(buf);
    struct kv_cmd c;
    CHECK(kv_cmd_init(&c) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK((ops[i].type == KV_OP_SET
                   ? kv_cmd_set(&c, ops[i].key, ops[i].klen, ops[i].val,
                                ops[i].vlen)
                   : kv_cmd_del(&c, ops[i].key, ops[i].klen)) == 0);
    CHECK(c.n_ops == n && bytes_eq(c.data, c.len, data, size));
    kv_cmd_free(&c);

    /* Applied: the last op on each key wins, the rest is untouched. */
    CHECK(kv_apply(kv, data, size) == 0);
    for (size_t i = 0; i < n; i++)
        check_key(kv, ops, n, ops[i].key, ops[i].klen);
    check_key(kv, ops, n, (const uint8_t *)"a", 1);
    check_key(kv, ops, n, (const uint8_t *)"b", 1);
    free(ops);
    kv_free(kv);
    return 0;
}
