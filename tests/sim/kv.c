/* The simulated state machine: a few keys of short string values, the
 * command codec, and the snapshot format (with filler bytes and a checksum so
 * chunked transfers are long and any corruption shows). Commands tagged
 * SIM_CMD_KV go to src/kv's real state machine (kv->map, see txn.c), whose
 * own snapshot rides inside this one. */
#include "sim/sim.h"

#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "kv/kv.h"

#define KV_VERSION 1
#define SNAP_MAGIC 0x534e4150u /* "SNAP" */

size_t sim_kv_encode(uint8_t *buf, int op, unsigned key, const char *value)
{
    size_t vlen = op == SIM_CMD_PUT ? strlen(value) : 0;
    buf[0] = KV_VERSION;
    buf[1] = (uint8_t)op;
    buf[2] = (uint8_t)key;
    buf[3] = (uint8_t)vlen;
    memcpy(buf + 4, value ? value : "", vlen);
    return 4 + vlen;
}

void sim_kv_reset(struct sim_kv *kv)
{
    kv_free(kv->map);
    memset(kv, 0, sizeof(*kv));
}

struct kv *sim_kv_map(struct sim_kv *kv)
{
    if (kv->map == NULL)
        kv->map = kv_new(1);
    return kv->map;
}

static int apply_map(struct sim_kv *kv, uint64_t index, const uint8_t *p,
                     size_t len)
{
    struct kv *map = sim_kv_map(kv);
    if (map == NULL)
        return CRAFT_ENOMEM;
    return kv_apply_at(map, index, p, len);
}

int sim_kv_apply(struct sim_kv *kv, unsigned n_keys, uint64_t index,
                 const uint8_t *p, size_t len)
{
    if (len > 1 && p[0] == SIM_CMD_KV)
        return apply_map(kv, index, p + 1, len - 1);
    if (len > SIM_LEASE_TAG && p[0] == SIM_CMD_LEASE)
        return apply_map(kv, index, p + SIM_LEASE_TAG, len - SIM_LEASE_TAG);
    if (len < 4 || p[0] != KV_VERSION || p[2] >= n_keys ||
        (size_t)p[3] + 4 != len || p[3] >= SIM_VAL_MAX)
        return CRAFT_ECORRUPT;
    unsigned k = p[2];
    if (p[1] == SIM_CMD_PUT) {
        memcpy(kv->val[k], p + 4, p[3]);
        kv->val[k][p[3]] = 0;
        kv->present[k] = true;
    } else if (p[1] == SIM_CMD_DEL && p[3] == 0) {
        kv->present[k] = false;
        kv->val[k][0] = 0;
    } else {
        return CRAFT_ECORRUPT;
    }
    return 0;
}

/* Layout: magic u32, index u64, term u64, pad u32, then per key: present u8,
 * len u8, bytes; then the map's snapshot: length u32 (0: no map), bytes;
 * then pad filler bytes; then FNV-1a of all before, u64. */
int sim_kv_serialize(const struct sim_kv *kv, unsigned pad, uint8_t **out,
                     size_t *len)
{
    uint8_t *map = NULL;
    size_t mlen = 0;
    if (kv->map && kv_snapshot_write_mem(kv->map, kv->applied, &map, &mlen))
        return CRAFT_ENOMEM;
    size_t n = 24 + SIM_MAX_KEYS * (2 + SIM_VAL_MAX) + 4 + mlen + pad + 8;
    uint8_t *b = craft_malloc(n);
    if (!b) {
        craft_free(map);
        return CRAFT_ENOMEM;
    }
    size_t o = 0;
    craft_put32(b, SNAP_MAGIC);
    craft_put64(b + 4, kv->applied);
    craft_put64(b + 12, kv->applied_term);
    craft_put32(b + 20, pad);
    o = 24;
    for (unsigned k = 0; k < SIM_MAX_KEYS; k++) {
        size_t vl = kv->present[k] ? strlen(kv->val[k]) : 0;
        b[o++] = kv->present[k];
        b[o++] = (uint8_t)vl;
        memcpy(b + o, kv->val[k], vl);
        o += vl;
    }
    craft_put32(b + o, (uint32_t)mlen);
    if (mlen > 0) /* map is NULL without a state machine */
        memcpy(b + o + 4, map, mlen);
    o += 4 + mlen;
    craft_free(map);
    for (unsigned i = 0; i < pad; i++)
        b[o++] = (uint8_t)(kv->applied * 31 + i * 7);
    craft_put64(b + o, sim_fnv(SIM_FNV_INIT, b, o));
    o += 8;
    *out = b;
    *len = o;
    return 0;
}

int sim_kv_restore(struct sim_kv *kv, const uint8_t *p, size_t len,
                   const struct raft_snap_meta *meta)
{
    if (len < 32 || craft_get32(p) != SNAP_MAGIC ||
        craft_get64(p + len - 8) != sim_fnv(SIM_FNV_INIT, p, len - 8))
        return CRAFT_ECORRUPT;
    if (craft_get64(p + 4) != meta->index || craft_get64(p + 12) != meta->term)
        return CRAFT_EINVAL;
    struct sim_kv t;
    memset(&t, 0, sizeof(t));
    t.applied = meta->index;
    t.applied_term = meta->term;
    t.conf = meta->conf;
    uint32_t pad = craft_get32(p + 20);
    size_t o = 24;
    for (unsigned k = 0; k < SIM_MAX_KEYS; k++) {
        if (o + 2 > len - 8)
            return CRAFT_ECORRUPT;
        t.present[k] = p[o] != 0;
        size_t vl = p[o + 1];
        o += 2;
        if (vl >= SIM_VAL_MAX || o + vl > len - 8)
            return CRAFT_ECORRUPT;
        memcpy(t.val[k], p + o, vl);
        t.val[k][vl] = 0;
        o += vl;
    }
    if (o + 4 > len - 8)
        return CRAFT_ECORRUPT;
    size_t mlen = craft_get32(p + o);
    o += 4;
    if (mlen > len - 8 - o || o + mlen + pad + 8 != len)
        return CRAFT_ECORRUPT;
    if (mlen) {
        uint64_t at;
        int err = kv_restore_mem(p + o, mlen, 1, &t.map, &at);
        if (err)
            return err;
        if (at != meta->index) {
            kv_free(t.map);
            return CRAFT_ECORRUPT;
        }
    }
    kv_free(kv->map);
    *kv = t;
    return 0;
}

bool sim_kv_equal(const struct sim_kv *a, const struct sim_kv *b)
{
    for (unsigned k = 0; k < SIM_MAX_KEYS; k++) {
        if (a->present[k] != b->present[k])
            return false;
        if (a->present[k] && strcmp(a->val[k], b->val[k]) != 0)
            return false;
    }
    return sim_map_fp(a->map, "t/") == sim_map_fp(b->map, "t/");
}

static bool same_set(const uint64_t *a, uint32_t na, const uint64_t *b,
                     uint32_t nb)
{
    if (na != nb)
        return false;
    for (uint32_t i = 0; i < na; i++) {
        bool found = false;
        for (uint32_t j = 0; j < nb && !found; j++)
            found = a[i] == b[j];
        if (!found)
            return false;
    }
    return true;
}

bool sim_conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    return same_set(a->voters, a->n_voters, b->voters, b->n_voters) &&
           same_set(a->learners, a->n_learners, b->learners, b->n_learners);
}
