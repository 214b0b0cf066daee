/* Tests of the Raft message wire codec and the membership-change payload
 * codec (src/raft/codec.c): round trips, truncation, bit flips, rejection of
 * every kind of malformed input, allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit/count_alloc.h"
#include "common/alloc.h"
#include "common/endian.h"
#include "raft/raft.h"

/* ---- Building messages -------------------------------------------------- */

#define MAX_GEN_ENTRIES 8

/* A message together with the storage its pointers refer to. */
struct gen {
    struct raft_msg m;
    struct raft_entry ents[MAX_GEN_ENTRIES];
    uint8_t pool[4096];
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Zero half the time, else a value of random magnitude. */
static uint64_t rand_field(uint64_t *s)
{
    uint64_t r = rng_next(s);
    if (r & 1)
        return 0;
    unsigned bits = (unsigned)((r >> 1) % 64) + 1;
    uint64_t v = rng_next(s);
    return bits == 64 ? v : v & ((1ULL << bits) - 1);
}

static void fill_pool(struct gen *g, uint64_t seed)
{
    for (size_t i = 0; i < sizeof g->pool; i++)
        g->pool[i] = (uint8_t)rng_next(&seed);
}

/* Every field of m populated, for the given type. */
static void full_msg(struct gen *g, uint8_t type)
{
    memset(g, 0, sizeof *g);
    fill_pool(g, 42 + type);
    struct raft_msg *m = &g->m;
    m->type = type;
    m->reject = true;
    m->transfer = true;
    m->err = CRAFT_ENOTLEADER;
    m->from = 1;
    m->to = 0x0102030405060708ULL;
    m->term = 7;
    m->index = 1000;
    m->log_term = 6;
    m->commit = 999;
    m->hint = UINT64_MAX;
    m->ctx = 0x8000000000000000ULL;
    m->n_entries = 3;
    m->entries = g->ents;
    g->ents[0] = (struct raft_entry){6, 1001, RAFT_ENTRY_NORMAL, 100, g->pool};
    g->ents[1] = (struct raft_entry){7, 1002, RAFT_ENTRY_NOOP, 0, NULL};
    g->ents[2] = (struct raft_entry){7, 1003, RAFT_ENTRY_CONF, 30, g->pool + 100};
    struct raft_snap_chunk *s = &m->snap;
    s->meta.index = 900;
    s->meta.term = 5;
    s->meta.size = 1 << 20;
    s->meta.conf.n_voters = 3;
    s->meta.conf.voters[0] = 1;
    s->meta.conf.voters[1] = 2;
    s->meta.conf.voters[2] = 3;
    s->meta.conf.n_learners = 2;
    s->meta.conf.learners[0] = 4;
    s->meta.conf.learners[1] = UINT64_MAX;
    s->offset = 65536;
    s->len = 200;
    s->data = g->pool + 200;
    s->last = true;
}

static void rand_msg(struct gen *g, uint64_t *s)
{
    memset(g, 0, sizeof *g);
    fill_pool(g, rng_next(s));
    struct raft_msg *m = &g->m;
    m->type = (uint8_t)(1 + rng_next(s) % (RAFT_MSG__COUNT - 1));
    m->reject = rng_next(s) & 1;
    m->transfer = rng_next(s) & 1;
    m->err = (rng_next(s) & 1) ? (int32_t)rng_next(s) : 0;
    m->from = rand_field(s);
    m->to = rand_field(s);
    m->term = rand_field(s);
    m->index = rand_field(s);
    m->log_term = rand_field(s);
    m->commit = rand_field(s);
    m->hint = rand_field(s);
    m->ctx = rand_field(s);
    if (rng_next(s) & 1) {
        m->n_entries = (uint32_t)(1 + rng_next(s) % MAX_GEN_ENTRIES);
        m->entries = g->ents;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            struct raft_entry *e = &g->ents[i];
            e->term = rand_field(s);
            e->index = rand_field(s);
            e->type = (uint8_t)(rng_next(s) % 3);
            e->len = (uint32_t)(rng_next(s) % 300);
            e->data = e->len ? g->pool + rng_next(s) % 1000 : NULL;
        }
    }
    if (rng_next(s) & 1) {
        struct raft_snap_chunk *c = &m->snap;
        c->meta.index = rand_field(s);
        c->meta.term = rand_field(s);
        c->meta.size = rand_field(s);
        uint32_t members = (uint32_t)(rng_next(s) % (RAFT_MAX_MEMBERS + 1));
        c->meta.conf.n_voters = (uint32_t)(rng_next(s) % (members + 1));
        c->meta.conf.n_learners = members - c->meta.conf.n_voters;
        for (uint32_t i = 0; i < members; i++) {
            uint64_t id = ((rng_next(s) >> 8) << 6) | (i + 1); /* unique */
            if (i < c->meta.conf.n_voters)
                c->meta.conf.voters[i] = id;
            else
                c->meta.conf.learners[i - c->meta.conf.n_voters] = id;
        }
        c->offset = rand_field(s);
        c->len = (uint32_t)(rng_next(s) % 2000);
        c->data = c->len ? g->pool + rng_next(s) % 2000 : NULL;
        c->last = rng_next(s) & 1;
    }
}

/* ---- Checking ----------------------------------------------------------- */

static void assert_bytes_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n)
        assert_memory_equal(a, b, n);
}

static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->transfer, b->transfer);
    assert_int_equal(a->err, b->err);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->hint, b->hint);
    assert_int_equal(a->ctx, b->ctx);
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_int_equal(x->term, y->term);
        assert_int_equal(x->index, y->index);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->len, y->len);
        assert_bytes_equal(x->data, y->data, x->len);
    }
    const struct raft_snap_chunk *s = &a->snap, *t = &b->snap;
    assert_int_equal(s->meta.index, t->meta.index);
    assert_int_equal(s->meta.term, t->meta.term);
    assert_int_equal(s->meta.size, t->meta.size);
    assert_int_equal(s->meta.conf.n_voters, t->meta.conf.n_voters);
    assert_int_equal(s->meta.conf.n_learners, t->meta.conf.n_learners);
    assert_bytes_equal((const uint8_t *)s->meta.conf.voters,
                       (const uint8_t *)t->meta.conf.voters,
                       8 * s->meta.conf.n_voters);
    assert_bytes_equal((const uint8_t *)s->meta.conf.learners,
                       (const uint8_t *)t->meta.conf.learners,
                       8 * s->meta.conf.n_learners);
    assert_int_equal(s->offset, t->offset);
    assert_int_equal(s->len, t->len);
    assert_bytes_equal(s->data, t->data, s->len);
    assert_int_equal(s->last, t->last);
}

static bool points_into(const uint8_t *p, size_t n, const uint8_t *buf,
                        size_t len)
{
    if (n == 0)
        return p == NULL;
    return p >= buf && p + n <= buf + len;
}

/* Encodes m into an exactly sized heap buffer (so ASan and valgrind see any
 * overrun); the caller frees it. */
static uint8_t *encode(const struct raft_msg *m, size_t *len)
{
    *len = raft_msg_size(m);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    raft_msg_encode(m, buf);
    return buf;
}

/* Decodes buf, which must succeed and re-encode to exactly the same bytes. */
static void check_canonical(const uint8_t *buf, size_t len,
                            struct raft_msg *out)
{
    assert_int_equal(raft_msg_decode(buf, len, out), 0);
    assert_int_equal(out->entries == NULL, out->n_entries == 0);
    for (uint32_t i = 0; i < out->n_entries; i++)
        assert_true(points_into(out->entries[i].data, out->entries[i].len,
                                buf, len));
    assert_true(points_into(out->snap.data, out->snap.len, buf, len));
    size_t len2;
    uint8_t *again = encode(out, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(again, buf, len);
    free(again);
}

static void roundtrip(const struct raft_msg *m)
{
    size_t len;
    uint8_t *buf = encode(m, &len);
    struct raft_msg d;
    check_canonical(buf, len, &d);
    assert_msg_equal(m, &d);
    raft_msg_decoded_free(&d);
    assert_null(d.entries);
    free(buf);
}

/* Decodes a heap copy of exactly len bytes of src; expects failure and that
 * nothing was left allocated; returns the error. */
static int decode_fails(const uint8_t *src, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, src, len);
    struct raft_msg m;
    memset(&m, 0xa5, sizeof m);
    int err = raft_msg_decode(copy, len, &m);
    assert_true(err < 0);
    assert_null(m.entries);
    assert_int_equal(m.n_entries, 0);
    assert_int_equal(m.type, 0);
    assert_int_equal(count_alloc_live, 0);
    free(copy);
    return err;
}

/* ---- Message tests ------------------------------------------------------ */

static void test_type_names(void **state)
{
    for (int t = 1; t < RAFT_MSG__COUNT; t++) {
        const char *name = raft_msg_type_name(t);
        assert_non_null(name);
        assert_string_not_equal(name, "UNKNOWN");
        for (int u = 1; u < t; u++)
            assert_string_not_equal(name, raft_msg_type_name(u));
    }
    assert_string_equal(raft_msg_type_name(RAFT_MSG_APP), "APP");
    assert_string_equal(raft_msg_type_name(RAFT_MSG_TRANSFER), "TRANSFER");
    assert_string_equal(raft_msg_type_name(0), "UNKNOWN");
    assert_string_equal(raft_msg_type_name(RAFT_MSG__COUNT), "UNKNOWN");
    assert_string_equal(raft_msg_type_name(-1), "UNKNOWN");
    assert_string_equal(raft_msg_type_name(255), "UNKNOWN");
}

static void test_roundtrip_every_type_full(void **state)
{
    struct gen g;
    for (uint8_t t = 1; t < RAFT_MSG__COUNT; t++) {
        full_msg(&g, t);
        roundtrip(&g.m);
    }
}

static void test_roundtrip_minimal(void **state)
{
    for (uint8_t t = 1; t < RAFT_MSG__COUNT; t++) {
        struct raft_msg m = {.type = t};
        assert_int_equal(raft_msg_size(&m), 5); /* header only */
        roundtrip(&m);
    }
    /* A snapshot response carries only snap.meta.index and snap.offset. */
    struct raft_msg m = {.type = RAFT_MSG_SNAP_RESP, .from = 2, .to = 1,
                         .term = 3};
    m.snap.meta.index = 50;
    m.snap.offset = 4096;
    assert_int_equal(raft_msg_size(&m), 5 + 3 * 8 + 39);
    roundtrip(&m);
    /* Only snap.last set is still a snapshot section. */
    struct raft_msg l = {.type = RAFT_MSG_SNAP};
    l.snap.last = true;
    roundtrip(&l);
}

static void test_roundtrip_random(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    for (int i = 0; i < 3000; i++) {
        rand_msg(g, &seed);
        roundtrip(&g->m);
    }
    free(g);
}

static void test_decode_into_buffer(void **state)
{
    struct gen g;
    full_msg(&g, RAFT_MSG_APP);
    size_t len;
    uint8_t *buf = encode(&g.m, &len);
    struct raft_msg d;
    assert_int_equal(raft_msg_decode(buf, len, &d), 0);
    /* Data is not copied: it points into buf. */
    assert_ptr_not_equal(d.entries[0].data, g.ents[0].data);
    assert_true(d.entries[0].data > buf && d.entries[0].data < buf + len);
    assert_null(d.entries[1].data); /* empty entry */
    assert_int_equal(count_alloc_live, 1); /* the entries array only */
    raft_msg_decoded_free(&d);
    raft_msg_decoded_free(&d); /* idempotent */
    free(buf);
}

static void test_truncation_every_offset(void **state)
{
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    uint64_t seed = 7;
    for (int k = 0; k < RAFT_MSG__COUNT + 20; k++) {
        if (k < RAFT_MSG__COUNT - 1)
            full_msg(g, (uint8_t)(k + 1));
        else
            rand_msg(g, &seed);
        size_t len;
        uint8_t *buf = encode(&g->m, &len);
        assert_int_equal(decode_fails(buf, 0), CRAFT_ETRUNCATED);
        for (size_t cut = 1; cut < len; cut++) {
            int err = decode_fails(buf, cut);
            if (cut < 5)
                assert_int_equal(err, CRAFT_ETRUNCATED);
            else
                assert_true(err == CRAFT_ETRUNCATED || err == CRAFT_ECORRUPT);
        }
        free(buf);
    }
    free(g);
}

static void test_bit_flips(void **state)
{
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    uint64_t seed = 11;
    int accepted = 0, refused = 0;
    for (int k = 0; k < 12; k++) {
        if (k < 4)
            full_msg(g, (uint8_t)(k * 4 + 1));
        else
            rand_msg(g, &seed);
        size_t len;
        uint8_t *buf = encode(&g->m, &len);
        for (size_t bit = 0; bit < len * 8; bit++) {
            uint8_t *copy = malloc(len);
            assert_non_null(copy);
            memcpy(copy, buf, len);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct raft_msg d;
            int err = raft_msg_decode(copy, len, &d);
            if (err == 0) { /* then it must be a valid, canonical message */
                raft_msg_decoded_free(&d);
                check_canonical(copy, len, &d);
                raft_msg_decoded_free(&d);
                accepted++;
            } else {
                assert_true(err == CRAFT_ECORRUPT || err == CRAFT_ETRUNCATED ||
                            err == CRAFT_EVERSION);
                assert_null(d.entries);
                refused++;
            }
            assert_int_equal(count_alloc_live, 0);
            free(copy);
        }
        free(buf);
    }
    /* Flips in data bytes are accepted, flips in the header are not. */
    assert_true(accepted > 0);
    assert_true(refused > 0);
    free(g);
}

static void test_random_garbage(void **state)
{
    uint64_t seed = 12345;
    uint8_t buf[96];
    for (int i = 0; i < 20000; i++) {
        size_t len = rng_next(&seed) % sizeof buf;
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rng_next(&seed);
        if (len)
            buf[0] = RAFT_WIRE_VERSION;
        if (len > 4) { /* mostly known types, flags and field bits */
            buf[1] = (uint8_t)(rng_next(&seed) % 18);
            buf[2] &= 3;
            buf[4] &= 7;
        }
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        struct raft_msg d;
        if (raft_msg_decode(copy, len, &d) == 0) {
            raft_msg_decoded_free(&d);
            check_canonical(copy, len, &d);
            raft_msg_decoded_free(&d);
        }
        assert_int_equal(count_alloc_live, 0);
        free(copy);
    }
}

static void test_bad_version(void **state)
{
    assert_int_equal(decode_fails(NULL, 0), CRAFT_ETRUNCATED);
    struct gen g;
    full_msg(&g, RAFT_MSG_HEARTBEAT);
    size_t len;
    uint8_t *buf = encode(&g.m, &len);
    const uint8_t versions[] = {0, 2, 0x81, 255};
    for (size_t i = 0; i < sizeof versions; i++) {
        buf[0] = versions[i];
        assert_int_equal(decode_fails(buf, len), CRAFT_EVERSION);
        assert_int_equal(decode_fails(buf, 1), CRAFT_EVERSION);
    }
    free(buf);
}

/* Writes a header; returns the offset after it. */
static size_t hdr(uint8_t *p, uint8_t type, uint8_t flags, uint16_t mask)
{
    p[0] = RAFT_WIRE_VERSION;
    p[1] = type;
    p[2] = flags;
    craft_put16(p + 3, mask);
    return 5;
}

static void test_bad_header(void **state)
{
    uint8_t b[64];
    struct raft_msg m;
    hdr(b, RAFT_MSG_VOTE, 3, 0);
    assert_int_equal(raft_msg_decode(b, 5, &m), 0); /* the baseline is valid */
    assert_true(m.reject && m.transfer);

    const uint8_t types[] = {0, RAFT_MSG__COUNT, 100, 255};
    for (size_t i = 0; i < sizeof types; i++) {
        hdr(b, types[i], 0, 0);
        assert_int_equal(decode_fails(b, 5), CRAFT_ECORRUPT);
    }
    for (unsigned bit = 2; bit < 8; bit++) { /* bool flags other than 0/1 */
        hdr(b, RAFT_MSG_VOTE, (uint8_t)(1u << bit), 0);
        assert_int_equal(decode_fails(b, 5), CRAFT_ECORRUPT);
    }
    for (unsigned bit = 11; bit < 16; bit++) { /* reserved field bits */
        hdr(b, RAFT_MSG_VOTE, 0, (uint16_t)(1u << bit));
        memset(b + 5, 1, 40);
        assert_int_equal(decode_fails(b, 45), CRAFT_ECORRUPT);
    }
    /* A present field must be non-zero (one encoding per message). */
    for (unsigned bit = 0; bit < 9; bit++) {
        size_t n = hdr(b, RAFT_MSG_VOTE, 0, (uint16_t)(1u << bit));
        size_t w = bit == 0 ? 4 : 8;
        memset(b + n, 0, w);
        assert_int_equal(decode_fails(b, n + w), CRAFT_ECORRUPT);
        b[n + w - 1] = 1;
        assert_int_equal(raft_msg_decode(b, n + w, &m), 0);
        assert_int_equal(decode_fails(b, n + w - 1), CRAFT_ETRUNCATED);
    }
    /* Header-only message with fields announced but absent. */
    hdr(b, RAFT_MSG_APP, 0, 0x7ff);
    assert_int_equal(decode_fails(b, 5), CRAFT_ETRUNCATED);
}

static void test_trailing_bytes(void **state)
{
    struct gen g;
    for (uint8_t t = 1; t < RAFT_MSG__COUNT; t += 5) {
        full_msg(&g, t);
        size_t len;
        uint8_t *buf = encode(&g.m, &len);
        uint8_t *longer = malloc(len + 8);
        assert_non_null(longer);
        memcpy(longer, buf, len);
        memset(longer + len, 0, 8);
        assert_int_equal(decode_fails(longer, len + 1), CRAFT_ECORRUPT);
        assert_int_equal(decode_fails(longer, len + 8), CRAFT_ECORRUPT);
        free(longer);
        free(buf);
    }
    uint8_t b[6];
    hdr(b, RAFT_MSG_HEARTBEAT, 0, 0);
    b[5] = 0;
    assert_int_equal(decode_fails(b, 6), CRAFT_ECORRUPT);
}

/* An APP with only entries: n at 5, entry 0 at 9 (term 9, index 17, type 25,
 * len 26, data 30). */
static uint8_t *app_with_entries(size_t *len)
{
    static const uint8_t d[] = "hello";
    struct raft_entry e[2] = {{1, 2, RAFT_ENTRY_NORMAL, 5, d},
                              {1, 3, RAFT_ENTRY_NORMAL, 5, d}};
    struct raft_msg m = {.type = RAFT_MSG_APP, .n_entries = 2, .entries = e};
    return encode(&m, len);
}

static void test_bad_entries(void **state)
{
    size_t len;
    uint8_t *buf = app_with_entries(&len);
    assert_int_equal(len, 5 + 4 + 2 * (21 + 5));
    struct raft_msg m;
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);
    raft_msg_decoded_free(&m);

    const uint32_t counts[] = {0, 3, 1000, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        craft_put32(buf + 5, counts[i]);
        assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    }
    craft_put32(buf + 5, 1); /* one entry, the second is trailing garbage */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put32(buf + 5, 2);

    for (unsigned t = 3; t < 256; t += 84) { /* unknown entry type */
        buf[25] = (uint8_t)t;
        assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    }
    buf[25] = RAFT_ENTRY_CONF;

    const uint32_t lens[] = {5 + 26 + 1, 0x10000, UINT32_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        craft_put32(buf + 26, lens[i]);
        assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    }
    craft_put32(buf + 26, 5 + 26); /* swallows entry 1: its header is gone */
    assert_int_equal(decode_fails(buf, len), CRAFT_ETRUNCATED);
    free(buf);
}

/* A SNAP with only the snapshot section (at 5): index 5, term 13, size 21,
 * n_voters 29, n_learners 30, ids from 31, then offset, len, last, data. */
static uint8_t *snap_msg(size_t *len, uint32_t nv, uint32_t nl)
{
    static const uint8_t d[] = "chunk";
    struct raft_msg m = {.type = RAFT_MSG_SNAP};
    m.snap.meta.index = 10;
    m.snap.meta.conf.n_voters = nv;
    m.snap.meta.conf.n_learners = nl;
    for (uint32_t i = 0; i < nv; i++)
        m.snap.meta.conf.voters[i] = 100 + i;
    for (uint32_t i = 0; i < nl; i++)
        m.snap.meta.conf.learners[i] = 200 + i;
    m.snap.len = 5;
    m.snap.data = d;
    return encode(&m, len);
}

static void test_bad_snap(void **state)
{
    size_t len;
    uint8_t *buf = snap_msg(&len, 2, 1);
    size_t tail = 31 + 3 * 8; /* offset of snap.offset */
    assert_int_equal(len, tail + 8 + 4 + 1 + 5);
    struct raft_msg m;
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);

    /* Member counts over RAFT_MAX_MEMBERS, alone or together. */
    const uint8_t counts[][2] = {{33, 0}, {0, 33}, {20, 13}, {255, 255},
                                 {32, 0}, {3, 1}, {0, 4}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        buf[29] = counts[i][0];
        buf[30] = counts[i][1];
        assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    }
    buf[29] = 2;
    buf[30] = 1;

    craft_put64(buf + 39, 0); /* voter 0 is RAFT_NONE */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put64(buf + 39, 100); /* duplicate voter */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put64(buf + 39, 101);
    craft_put64(buf + 47, 101); /* learner that is also a voter */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put64(buf + 47, 200);
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);

    buf[tail + 12] = 2; /* last must be 0 or 1 */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    buf[tail + 12] = 1;
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);
    assert_true(m.snap.last);

    craft_put32(buf + tail + 8, 6); /* data length over the buffer */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put32(buf + tail + 8, UINT32_MAX);
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    craft_put32(buf + tail + 8, 4); /* one trailing byte */
    assert_int_equal(decode_fails(buf, len), CRAFT_ECORRUPT);
    free(buf);

    /* An all-zero section is never produced by the encoder. */
    uint8_t b[5 + 39] = {0};
    hdr(b, RAFT_MSG_SNAP, 0, 0x400);
    assert_int_equal(decode_fails(b, sizeof b), CRAFT_ECORRUPT);
    b[5 + 38] = 1; /* last */
    assert_int_equal(raft_msg_decode(b, sizeof b, &m), 0);

    /* 33 distinct members with all their bytes present: refused for the
     * count alone (voters plus learners), whatever the split. */
    const uint8_t splits[][2] = {{33, 0}, {17, 16}, {0, 33}};
    for (size_t k = 0; k < 3; k++) {
        uint8_t big[5 + 39 + 33 * 8] = {0};
        hdr(big, RAFT_MSG_SNAP, 0, 0x400);
        big[29] = splits[k][0];
        big[30] = splits[k][1];
        for (int i = 0; i < 33; i++)
            craft_put64(big + 31 + 8 * i, 1000 + i);
        big[sizeof big - 1] = 1; /* last */
        assert_int_equal(decode_fails(big, sizeof big), CRAFT_ECORRUPT);
    }

    /* The largest configuration is accepted. */
    buf = snap_msg(&len, 20, 12);
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);
    assert_int_equal(m.snap.meta.conf.learners[11], 211);
    free(buf);
}

static void test_decode_enomem(void **state)
{
    struct gen g;
    full_msg(&g, RAFT_MSG_APP);
    size_t len;
    uint8_t *buf = encode(&g.m, &len);
    count_alloc_countdown = 1;
    struct raft_msg m;
    assert_int_equal(raft_msg_decode(buf, len, &m), CRAFT_ENOMEM);
    assert_null(m.entries);
    assert_int_equal(count_alloc_live, 0);
    count_alloc_countdown = 1; /* no entries: no allocation at all */
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .commit = 5};
    free(buf);
    buf = encode(&hb, &len);
    assert_int_equal(raft_msg_decode(buf, len, &m), 0);
    assert_null(m.entries);
    count_alloc_countdown = 0;
    free(buf);
}

/* Runs fn in a child with stderr closed; returns its wait status. */
static int run_child(void (*fn)(void))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        fn();
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void encode_unfilled_snap(void)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAP};
    m.snap.len = 10; /* data left NULL by mistake */
    uint8_t buf[128];
    if (raft_msg_size(&m) <= sizeof buf)
        raft_msg_encode(&m, buf);
}

static void test_encode_unfilled_snap_asserts(void **state)
{
    int status = run_child(encode_unfilled_snap);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

/* ---- Membership-change payload ------------------------------------------ */

static uint8_t *cc_encode(const struct raft_conf_change *cc, size_t *len)
{
    *len = raft_conf_change_size(cc);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    raft_conf_change_encode(cc, buf);
    return buf;
}

static int cc_decode_copy(const uint8_t *src, size_t len,
                          struct raft_conf_change *cc)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, src, len);
    int err = raft_conf_change_decode(copy, len, cc);
    free(copy);
    return err;
}

static void test_cc_roundtrip(void **state)
{
    static const uint8_t ctx[] = "node7 127.0.0.7:12000 127.0.0.7:11000";
    for (uint8_t op = RAFT_CONF_ADD_VOTER; op <= RAFT_CONF_REMOVE; op++) {
        struct raft_conf_change cc = {op, 7 + op, sizeof ctx, ctx};
        size_t len;
        uint8_t *buf = cc_encode(&cc, &len);
        assert_int_equal(len, 14 + sizeof ctx);
        struct raft_conf_change d;
        assert_int_equal(raft_conf_change_decode(buf, len, &d), 0);
        assert_int_equal(d.op, op);
        assert_int_equal(d.node, 7 + op);
        assert_int_equal(d.ctx_len, sizeof ctx);
        assert_ptr_equal(d.ctx, buf + 14);
        assert_memory_equal(d.ctx, ctx, sizeof ctx);
        free(buf);
    }
    struct raft_conf_change cc = {RAFT_CONF_REMOVE, UINT64_MAX, 0, NULL};
    size_t len;
    uint8_t *buf = cc_encode(&cc, &len);
    assert_int_equal(len, 14);
    struct raft_conf_change d;
    assert_int_equal(raft_conf_change_decode(buf, len, &d), 0);
    assert_int_equal(d.node, UINT64_MAX);
    assert_int_equal(d.ctx_len, 0);
    assert_null(d.ctx);
    free(buf);
}

static void test_cc_rejects(void **state)
{
    static const uint8_t ctx[] = "abc";
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 3, 3, ctx}, d;
    size_t len;
    uint8_t *buf = cc_encode(&cc, &len);

    assert_int_equal(raft_conf_change_decode(NULL, 0, &d), CRAFT_ETRUNCATED);
    for (size_t cut = 1; cut < len; cut++) {
        memset(&d, 0xa5, sizeof d);
        int err = cc_decode_copy(buf, cut, &d);
        assert_int_equal(err, cut < 14 ? CRAFT_ETRUNCATED : CRAFT_ECORRUPT);
        assert_null(d.ctx);
        assert_int_equal(d.op, 0);
    }
    buf[0] = 2;
    assert_int_equal(cc_decode_copy(buf, len, &d), CRAFT_EVERSION);
    assert_int_equal(cc_decode_copy(buf, 1, &d), CRAFT_EVERSION);
    buf[0] = 1;
    const uint8_t ops[] = {0, 6, 255};
    for (size_t i = 0; i < sizeof ops; i++) {
        buf[1] = ops[i];
        assert_int_equal(cc_decode_copy(buf, len, &d), CRAFT_ECORRUPT);
    }
    buf[1] = RAFT_CONF_ADD_VOTER;
    craft_put64(buf + 2, 0); /* node RAFT_NONE */
    assert_int_equal(cc_decode_copy(buf, len, &d), CRAFT_ECORRUPT);
    craft_put64(buf + 2, 3);
    const uint32_t lens[] = {4, 1000, UINT32_MAX, 2};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        craft_put32(buf + 10, lens[i]);
        assert_int_equal(cc_decode_copy(buf, len, &d), CRAFT_ECORRUPT);
    }
    craft_put32(buf + 10, 3);
    assert_int_equal(cc_decode_copy(buf, len, &d), 0);

    uint8_t *longer = malloc(len + 1); /* trailing byte */
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(cc_decode_copy(longer, len + 1, &d), CRAFT_ECORRUPT);
    free(longer);
    free(buf);
}

static void test_cc_bit_flips(void **state)
{
    static const uint8_t ctx[] = "ctx bytes";
    struct raft_conf_change cc = {RAFT_CONF_ADD_VOTER, 0x1234, 9, ctx}, d;
    size_t len;
    uint8_t *buf = cc_encode(&cc, &len);
    for (size_t bit = 0; bit < len * 8; bit++) {
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (raft_conf_change_decode(copy, len, &d) == 0) {
            size_t len2;
            uint8_t *again = cc_encode(&d, &len2);
            assert_int_equal(len2, len);
            assert_memory_equal(again, copy, len);
            free(again);
        }
        free(copy);
    }
    free(buf);
}

#define T(f) cmocka_unit_test_setup_teardown(f, count_alloc_setup, count_alloc_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_type_names),
        T(test_roundtrip_every_type_full),
        T(test_roundtrip_minimal),
        T(test_roundtrip_random),
        T(test_decode_into_buffer),
        T(test_truncation_every_offset),
        T(test_bit_flips),
        T(test_random_garbage),
        T(test_bad_version),
        T(test_bad_header),
        T(test_trailing_bytes),
        T(test_bad_entries),
        T(test_bad_snap),
        T(test_decode_enomem),
        T(test_encode_unfilled_snap_asserts),
        T(test_cc_roundtrip),
        T(test_cc_rejects),
        T(test_cc_bit_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
