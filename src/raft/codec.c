/* The Raft message wire codec and the membership-change payload codec:
 * struct raft_msg and struct raft_conf_change to and from bytes. The byte
 * layout and the decoder's validity rules are in docs/wire-format.md. */
#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "raft/raft.h"

/* Message header: version, type, flags, u16 field mask. */
#define MSG_HDR 5
/* Fixed part of an entry: term, index, type, len. */
#define ENTRY_HDR 21
/* Fixed part of the snapshot section: index, term, size, n_voters,
 * n_learners, offset, len, last. */
#define SNAP_FIXED 39
/* Membership-change payload: version, op, node, ctx_len. */
#define CC_HDR 14
#define CC_VERSION 1

/* Bits of the flags byte. */
#define FLAG_REJECT 0x01
#define FLAG_TRANSFER 0x02
#define FLAG_ALL (FLAG_REJECT | FLAG_TRANSFER)

/* Bits of the field mask: a set bit means the field follows, in bit order,
 * and is non-zero. Bits 1..8 are the u64 fields of u64_fields[]. */
#define F_ERR 0x0001
#define F_ENTRIES 0x0200
#define F_SNAP 0x0400
#define F_ALL 0x07ff

static const size_t u64_fields[] = {
    offsetof(struct raft_msg, from),     offsetof(struct raft_msg, to),
    offsetof(struct raft_msg, term),     offsetof(struct raft_msg, index),
    offsetof(struct raft_msg, log_term), offsetof(struct raft_msg, commit),
    offsetof(struct raft_msg, hint),     offsetof(struct raft_msg, ctx),
};
#define N_U64_FIELDS (sizeof u64_fields / sizeof u64_fields[0])

static const char *const msg_type_names[RAFT_MSG__COUNT] = {
    [RAFT_MSG_APP] = "APP",
    [RAFT_MSG_APP_RESP] = "APP_RESP",
    [RAFT_MSG_VOTE] = "VOTE",
    [RAFT_MSG_VOTE_RESP] = "VOTE_RESP",
    [RAFT_MSG_PRE_VOTE] = "PRE_VOTE",
    [RAFT_MSG_PRE_VOTE_RESP] = "PRE_VOTE_RESP",
    [RAFT_MSG_HEARTBEAT] = "HEARTBEAT",
    [RAFT_MSG_HEARTBEAT_RESP] = "HEARTBEAT_RESP",
    [RAFT_MSG_SNAP] = "SNAP",
    [RAFT_MSG_SNAP_RESP] = "SNAP_RESP",
    [RAFT_MSG_TIMEOUT_NOW] = "TIMEOUT_NOW",
    [RAFT_MSG_PROP] = "PROP",
    [RAFT_MSG_PROP_RESP] = "PROP_RESP",
    [RAFT_MSG_READ_INDEX] = "READ_INDEX",
    [RAFT_MSG_READ_INDEX_RESP] = "READ_INDEX_RESP",
    [RAFT_MSG_TRANSFER] = "TRANSFER",
};

const char *raft_msg_type_name(int type)
{
    if (type <= 0 || type >= RAFT_MSG__COUNT || !msg_type_names[type])
        return "UNKNOWN";
    return msg_type_names[type];
}

/* ---- Encoding ---------------------------------------------------------- */

static uint64_t u64_field(const struct raft_msg *m, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)m + u64_fields[i], sizeof v);
    return v;
}

static bool snap_present(const struct raft_snap_chunk *s)
{
    return s->meta.index || s->meta.term || s->meta.size ||
           s->meta.conf.n_voters || s->meta.conf.n_learners || s->offset ||
           s->len || s->last;
}

static unsigned field_mask(const struct raft_msg *m)
{
    unsigned mask = 0;
    if (m->err)
        mask |= F_ERR;
    for (size_t i = 0; i < N_U64_FIELDS; i++)
        if (u64_field(m, i))
            mask |= 1u << (i + 1);
    if (m->n_entries)
        mask |= F_ENTRIES;
    if (snap_present(&m->snap))
        mask |= F_SNAP;
    return mask;
}

size_t raft_msg_size(const struct raft_msg *m)
{
    unsigned mask = field_mask(m);
    size_t size = MSG_HDR;
    if (mask & F_ERR)
        size += 4;
    for (size_t i = 0; i < N_U64_FIELDS; i++)
        if (mask & (1u << (i + 1)))
            size += 8;
    if (mask & F_ENTRIES) {
        size += 4;
        for (uint32_t i = 0; i < m->n_entries; i++)
            size += ENTRY_HDR + (size_t)m->entries[i].len;
    }
    if (mask & F_SNAP) {
        const struct raft_conf *c = &m->snap.meta.conf;
        size += SNAP_FIXED + 8 * ((size_t)c->n_voters + c->n_learners) +
                m->snap.len;
    }
    return size;
}

static uint8_t *put8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    craft_put32(p, v);
    return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    craft_put64(p, v);
    return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const uint8_t *data, size_t len)
{
    if (len)
        memcpy(p, data, len);
    return p + len;
}

static uint8_t *encode_entries(const struct raft_msg *m, uint8_t *p)
{
    assert(m->entries != NULL);
    p = put32(p, m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        assert(e->type <= RAFT_ENTRY_CONF);
        assert(e->data != NULL || e->len == 0);
        p = put64(p, e->term);
        p = put64(p, e->index);
        p = put8(p, e->type);
        p = put32(p, e->len);
        p = put_bytes(p, e->data, e->len);
    }
    return p;
}

static uint8_t *encode_snap(const struct raft_snap_chunk *s, uint8_t *p)
{
    const struct raft_conf *c = &s->meta.conf;
    assert(c->n_voters <= RAFT_MAX_MEMBERS &&
           c->n_learners <= RAFT_MAX_MEMBERS - c->n_voters);
    /* In a RAFT_MSG_SNAP the caller fills data before sending. */
    assert(s->data != NULL || s->len == 0);
    p = put64(p, s->meta.index);
    p = put64(p, s->meta.term);
    p = put64(p, s->meta.size);
    p = put8(p, (uint8_t)c->n_voters);
    p = put8(p, (uint8_t)c->n_learners);
    for (uint32_t i = 0; i < c->n_voters; i++)
        p = put64(p, c->voters[i]);
    for (uint32_t i = 0; i < c->n_learners; i++)
        p = put64(p, c->learners[i]);
    p = put64(p, s->offset);
    p = put32(p, s->len);
    p = put8(p, s->last ? 1 : 0);
    return put_bytes(p, s->data, s->len);
}

void raft_msg_encode(const struct raft_msg *m, uint8_t *buf)
{
    assert(m->type > 0 && m->type < RAFT_MSG__COUNT);
    unsigned mask = field_mask(m);
    uint8_t *p = buf;
    p = put8(p, RAFT_WIRE_VERSION);
    p = put8(p, m->type);
    p = put8(p, (uint8_t)((m->reject ? FLAG_REJECT : 0) |
                          (m->transfer ? FLAG_TRANSFER : 0)));
    craft_put16(p, (uint16_t)mask);
    p += 2;
    if (mask & F_ERR)
        p = put32(p, (uint32_t)m->err);
    for (size_t i = 0; i < N_U64_FIELDS; i++)
        if (mask & (1u << (i + 1)))
            p = put64(p, u64_field(m, i));
    if (mask & F_ENTRIES)
        p = encode_entries(m, p);
    if (mask & F_SNAP)
        p = encode_snap(&m->snap, p);
    assert((size_t)(p - buf) == raft_msg_size(m));
}

/* ---- Decoding ---------------------------------------------------------- */

/* A bounds-checked cursor. Reading a fixed-width field past the end is
 * CRAFT_ETRUNCATED; a declared length longer than what is left is
 * CRAFT_ECORRUPT. */
struct reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

static size_t left(const struct reader *r)
{
    return r->len - r->pos;
}

static int get8(struct reader *r, uint8_t *v)
{
    if (left(r) < 1)
        return CRAFT_ETRUNCATED;
    *v = r->buf[r->pos++];
    return 0;
}

static int get32(struct reader *r, uint32_t *v)
{
    if (left(r) < 4)
        return CRAFT_ETRUNCATED;
    *v = craft_get32(r->buf + r->pos);
    r->pos += 4;
    return 0;
}

static int get64(struct reader *r, uint64_t *v)
{
    if (left(r) < 8)
        return CRAFT_ETRUNCATED;
    *v = craft_get64(r->buf + r->pos);
    r->pos += 8;
    return 0;
}

static int get_bool(struct reader *r, bool *v)
{
    uint8_t b;
    int err = get8(r, &b);
    if (err)
        return err;
    if (b > 1)
        return CRAFT_ECORRUPT;
    *v = b;
    return 0;
}

/* Points *data at the next len bytes (NULL when len is 0). */
static int get_bytes(struct reader *r, uint32_t len, const uint8_t **data)
{
    if (len > left(r))
        return CRAFT_ECORRUPT;
    *data = len ? r->buf + r->pos : NULL;
    r->pos += len;
    return 0;
}

static int decode_entry(struct reader *r, struct raft_entry *e)
{
    int err;
    if ((err = get64(r, &e->term)) || (err = get64(r, &e->index)) ||
        (err = get8(r, &e->type)) || (err = get32(r, &e->len)))
        return err;
    if (e->type > RAFT_ENTRY_CONF)
        return CRAFT_ECORRUPT;
    return get_bytes(r, e->len, &e->data);
}

/* Allocates m->entries; the caller frees it on any later failure. */
static int decode_entries(struct reader *r, struct raft_msg *m)
{
    uint32_t n;
    int err = get32(r, &n);
    if (err)
        return err;
    if (n == 0 || n > left(r) / ENTRY_HDR)
        return CRAFT_ECORRUPT;
    m->entries = craft_calloc(n, sizeof *m->entries);
    if (!m->entries)
        return CRAFT_ENOMEM;
    m->n_entries = n;
    for (uint32_t i = 0; i < n; i++)
        if ((err = decode_entry(r, &m->entries[i])))
            return err;
    return 0;
}

/* A member id is valid if non-zero and not already among the first n of
 * ids (voters and learners are checked as one list). */
static bool member_ok(const uint64_t *ids, uint32_t n, uint64_t id)
{
    if (id == RAFT_NONE)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return false;
    return true;
}

static int decode_conf(struct reader *r, struct raft_conf *c)
{
    uint8_t nv, nl;
    int err;
    if ((err = get8(r, &nv)) || (err = get8(r, &nl)))
        return err;
    if ((unsigned)nv + nl > RAFT_MAX_MEMBERS ||
        ((size_t)nv + nl) * 8 > left(r))
        return CRAFT_ECORRUPT;
    uint64_t all[RAFT_MAX_MEMBERS];
    uint32_t n_all = 0;
    for (uint32_t i = 0; i < (unsigned)nv + nl; i++) {
        uint64_t id;
        if ((err = get64(r, &id)))
            return err;
        if (!member_ok(all, n_all, id))
            return CRAFT_ECORRUPT;
        all[n_all++] = id;
        if (i < nv)
            c->voters[i] = id;
        else
            c->learners[i - nv] = id;
    }
    c->n_voters = nv;
    c->n_learners = nl;
    return 0;
}

static int decode_snap(struct reader *r, struct raft_snap_chunk *s)
{
    int err;
    if ((err = get64(r, &s->meta.index)) || (err = get64(r, &s->meta.term)) ||
        (err = get64(r, &s->meta.size)) ||
        (err = decode_conf(r, &s->meta.conf)) ||
        (err = get64(r, &s->offset)) || (err = get32(r, &s->len)) ||
        (err = get_bool(r, &s->last)) ||
        (err = get_bytes(r, s->len, &s->data)))
        return err;
    /* The encoder leaves out an all-zero section: one encoding per message. */
    return snap_present(s) ? 0 : CRAFT_ECORRUPT;
}

static int decode_header(struct reader *r, struct raft_msg *m, unsigned *mask)
{
    if (r->len < 1)
        return CRAFT_ETRUNCATED;
    if (r->buf[0] != RAFT_WIRE_VERSION)
        return CRAFT_EVERSION;
    if (r->len < MSG_HDR)
        return CRAFT_ETRUNCATED;
    uint8_t type = r->buf[1], flags = r->buf[2];
    *mask = craft_get16(r->buf + 3);
    r->pos = MSG_HDR;
    if (type == 0 || type >= RAFT_MSG__COUNT || (flags & ~FLAG_ALL) ||
        (*mask & ~(unsigned)F_ALL))
        return CRAFT_ECORRUPT;
    m->type = type;
    m->reject = flags & FLAG_REJECT;
    m->transfer = flags & FLAG_TRANSFER;
    return 0;
}

static int decode_scalars(struct reader *r, struct raft_msg *m, unsigned mask)
{
    int err;
    if (mask & F_ERR) {
        uint32_t v;
        if ((err = get32(r, &v)))
            return err;
        if (v == 0)
            return CRAFT_ECORRUPT;
        m->err = (int32_t)v;
    }
    for (size_t i = 0; i < N_U64_FIELDS; i++) {
        if (!(mask & (1u << (i + 1))))
            continue;
        uint64_t v;
        if ((err = get64(r, &v)))
            return err;
        if (v == 0)
            return CRAFT_ECORRUPT; /* a present field is never zero */
        memcpy((char *)m + u64_fields[i], &v, sizeof v);
    }
    return 0;
}

static int decode_msg(struct reader *r, struct raft_msg *m)
{
    unsigned mask;
    int err;
    if ((err = decode_header(r, m, &mask)) ||
        (err = decode_scalars(r, m, mask)))
        return err;
    if ((mask & F_ENTRIES) && (err = decode_entries(r, m)))
        return err;
    if ((mask & F_SNAP) && (err = decode_snap(r, &m->snap)))
        return err;
    return left(r) ? CRAFT_ECORRUPT : 0;
}

int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m)
{
    struct reader r = {buf, len, 0};
    memset(m, 0, sizeof *m);
    int err = decode_msg(&r, m);
    if (err) {
        raft_msg_decoded_free(m);
        memset(m, 0, sizeof *m);
    }
    return err;
}

void raft_msg_decoded_free(struct raft_msg *m)
{
    craft_free(m->entries);
    m->entries = NULL;
    m->n_entries = 0;
}

/* ---- Membership-change payload ----------------------------------------- */

size_t raft_conf_change_size(const struct raft_conf_change *cc)
{
    return CC_HDR + (size_t)cc->ctx_len;
}

void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *buf)
{
    /* What the decoder would refuse is a bug of the proposer. */
    assert(cc->op >= RAFT_CONF_ADD_VOTER && cc->op <= RAFT_CONF_PROMOTE);
    assert(cc->node != RAFT_NONE);
    assert(cc->ctx != NULL || cc->ctx_len == 0);
    uint8_t *p = buf;
    p = put8(p, CC_VERSION);
    p = put8(p, cc->op);
    p = put64(p, cc->node);
    p = put32(p, cc->ctx_len);
    put_bytes(p, cc->ctx, cc->ctx_len);
}

int raft_conf_change_decode(const uint8_t *buf, size_t len,
                            struct raft_conf_change *cc)
{
    memset(cc, 0, sizeof *cc);
    if (len < 1)
        return CRAFT_ETRUNCATED;
    if (buf[0] != CC_VERSION)
        return CRAFT_EVERSION;
    if (len < CC_HDR)
        return CRAFT_ETRUNCATED;
    uint8_t op = buf[1];
    uint64_t node = craft_get64(buf + 2);
    uint32_t ctx_len = craft_get32(buf + 10);
    if (op < RAFT_CONF_ADD_VOTER || op > RAFT_CONF_PROMOTE ||
        node == RAFT_NONE || ctx_len != len - CC_HDR)
        return CRAFT_ECORRUPT; /* ctx_len must cover exactly the rest */
    cc->op = op;
    cc->node = node;
    cc->ctx_len = ctx_len;
    cc->ctx = ctx_len ? buf + CC_HDR : NULL;
    return 0;
}
