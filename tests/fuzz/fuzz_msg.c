/* libFuzzer target for the Raft wire codecs (src/raft/codec.c): decode
 * arbitrary bytes as a message and as a membership-change payload; whatever
 * decodes must re-encode to exactly the input and decode to the same value.
 * Built and run by `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

static bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

static bool entry_eq(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->index == b->index && a->type == b->type &&
           a->len == b->len && bytes_eq(a->data, b->data, a->len);
}

static bool snap_eq(const struct raft_snap_chunk *a,
                    const struct raft_snap_chunk *b)
{
    const struct raft_conf *x = &a->meta.conf, *y = &b->meta.conf;
    return a->meta.index == b->meta.index && a->meta.term == b->meta.term &&
           a->meta.size == b->meta.size && x->n_voters == y->n_voters &&
           x->n_learners == y->n_learners &&
           memcmp(x->voters, y->voters, 8 * x->n_voters) == 0 &&
           memcmp(x->learners, y->learners, 8 * x->n_learners) == 0 &&
           a->offset == b->offset && a->len == b->len && a->last == b->last &&
           bytes_eq(a->data, b->data, a->len);
}

static bool msg_eq(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->reject != b->reject ||
        a->transfer != b->transfer || a->err != b->err || a->from != b->from ||
        a->to != b->to || a->term != b->term || a->index != b->index ||
        a->log_term != b->log_term || a->commit != b->commit ||
        a->hint != b->hint || a->ctx != b->ctx ||
        a->n_entries != b->n_entries || !snap_eq(&a->snap, &b->snap))
        return false;
    for (uint32_t i = 0; i < a->n_entries; i++)
        if (!entry_eq(&a->entries[i], &b->entries[i]))
            return false;
    return true;
}

static void fuzz_msg(const uint8_t *data, size_t size)
{
    struct raft_msg m;
    if (raft_msg_decode(data, size, &m) != 0) {
        CHECK(m.entries == NULL && m.n_entries == 0);
        return;
    }
    size_t len = raft_msg_size(&m);
    CHECK(len == size);
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    raft_msg_encode(&m, buf);
    CHECK(memcmp(buf, data, len) == 0); /* one encoding per message */
    struct raft_msg again;
    CHECK(raft_msg_decode(buf, len, &again) == 0);
    CHECK(msg_eq(&m, &again));
    raft_msg_decoded_free(&again);
    raft_msg_decoded_free(&m);
    free(buf);
}

static void fuzz_conf_change(const uint8_t *data, size_t size)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(data, size, &cc) != 0)
        return;
    size_t len = raft_conf_change_size(&cc);
    CHECK(len == size);
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    raft_conf_change_encode(&cc, buf);
    CHECK(memcmp(buf, data, len) == 0);
    struct raft_conf_change again;
    CHECK(raft_conf_change_decode(buf, len, &again) == 0);
    CHECK(again.op == cc.op && again.node == cc.node &&
          again.ctx_len == cc.ctx_len &&
          bytes_eq(again.ctx, cc.ctx, cc.ctx_len));
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_msg(data, size);
    fuzz_conf_change(data, size);
    return 0;
}
