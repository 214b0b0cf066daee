/* Seed corpora for the fuzz targets, made by the real code from valid
 * inputs: data directories written by the store (fuzz_recover), snapshot
 * files and kv snapshots (fuzz_snap), kv commands (fuzz_kvcmd).
 * `fuzz_seeds <dir>` writes <dir>/<target>/seed-<n> files (overwriting
 * earlier seeds, leaving what the fuzzer added). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "kv/kv.h"
#include "memfs.h"
#include "storage/storage.h"

static const char *root;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void must(int err, const char *what)
{
    if (err) {
        fprintf(stderr, "fuzz_seeds: %s: error %d\n", what, err);
        exit(1);
    }
}

static void put_seed(const char *target, int n, const uint8_t *prefix,
                     size_t plen, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
    snprintf(path, sizeof path, "%s/%s/seed-%02d", root, target, n);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(prefix, 1, plen, f) != plen ||
        fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die(path);
}

/* The memfs directory as a fuzz_recover input. */
static void dump_dir(int n)
{
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    size_t len = memfs_dump(buf, cap);
    if (len == 0)
        die("directory too big for a seed");
    put_seed("recover", n, NULL, 0, buf, len);
    free(buf);
}

static struct stor *open_store(uint64_t segment_bytes)
{
    struct stor_opts o = {.dir = MEMFS_DIR, .sys = memfs_sys(),
                          .segment_bytes = segment_bytes};
    struct stor *s;
    struct raft_persisted p;
    must(stor_open(&o, &s, &p), "stor_open");
    stor_release_persisted(s);
    return s;
}

static void save(struct stor *s, uint64_t from, uint64_t to, uint64_t term,
                 const struct raft_hard_state *hs)
{
    for (uint64_t i = from; i <= to; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "cmd %llu/%llu",
                           (unsigned long long)i, (unsigned long long)term);
        struct raft_entry e = {term, i, RAFT_ENTRY_NORMAL, (uint32_t)len,
                               (const uint8_t *)buf};
        must(stor_save(s, i == to ? hs : NULL, &e, 1, NULL), "stor_save");
    }
}

static void snapshot(struct stor *s, uint64_t index, uint64_t term,
                     const uint8_t *data, size_t len)
{
    struct raft_snap_meta m = {.index = index, .term = term};
    m.conf.n_voters = 3;
    m.conf.voters[0] = 11, m.conf.voters[1] = 12, m.conf.voters[2] = 13;
    struct stor_snap_writer *w;
    must(stor_snap_begin(s, &m, &w), "stor_snap_begin");
    must(stor_snap_write(w, data, len), "stor_snap_write");
    must(stor_snap_commit(w, NULL), "stor_snap_commit");
}

static void recover_seeds(void)
{
    int n = 0;
    /* A new store. */
    memfs_reset();
    stor_close(open_store(0));
    dump_dir(n++);
    /* A few saves, a term change, a commit refresh. */
    memfs_reset();
    struct stor *s = open_store(0);
    save(s, 1, 5, 1, &(struct raft_hard_state){1, 1, 3});
    save(s, 4, 7, 2, &(struct raft_hard_state){2, 2, 5});
    must(stor_save_commit(s, 7), "stor_save_commit");
    stor_close(s);
    dump_dir(n++);
    /* Small segments, a snapshot, compaction. */
    memfs_reset();
    s = open_store(300);
    for (uint64_t i = 1; i <= 30; i += 3)
        save(s, i, i + 2, 1 + i / 10,
             &(struct raft_hard_state){1 + i / 10, 2, i});
    snapshot(s, 20, 2, (const uint8_t *)"snapshot data", 13);
    must(stor_compact(s, 15), "stor_compact");
    stor_close(s);
    dump_dir(n++);
    /* A snapshot received in chunks, the log reset to it. */
    memfs_reset();
    s = open_store(0);
    save(s, 1, 4, 1, &(struct raft_hard_state){1, 1, 2});
    const uint8_t data[8] = "abcdefgh";
    struct raft_snap_chunk c = {.meta = {.index = 50, .term = 3, .size = 8},
                                .len = 4, .data = data};
    c.meta.conf.n_voters = 1;
    c.meta.conf.voters[0] = 5;
    must(stor_save(s, NULL, NULL, 0, &c), "chunk");
    c.offset = 4, c.data = data + 4, c.last = true;
    struct raft_entry e = {3, 51, RAFT_ENTRY_NORMAL, 2, (const uint8_t *)"hi"};
    must(stor_save(s, &(struct raft_hard_state){3, 5, 50}, &e, 1, &c),
         "last chunk");
    stor_close(s);
    dump_dir(n++);
    /* A torn tail: seed 1's directory with its segment cut short. */
    memfs_reset();
    s = open_store(0);
    save(s, 1, 6, 1, &(struct raft_hard_state){1, 1, 4});
    stor_close(s);
    const char *name;
    const uint8_t *d;
    size_t len;
    for (size_t k = 0; memfs_file(k, &name, &d, &len); k++) {
        if (strncmp(name, "log-", 4) == 0) {
            uint8_t *copy = malloc(len);
            memcpy(copy, d, len);
            memfs_put(name, copy, len - 7);
            free(copy);
            break;
        }
    }
    dump_dir(n++);
}

static uint8_t *kv_seed(int which, size_t *len)
{
    struct kv *kv = kv_new(7);
    if (kv == NULL)
        die("kv_new");
    if (which >= 1) {
        must(kv_put(kv, "user1", 5, "batman", 6), "kv_put");
        must(kv_put(kv, "", 0, "empty key", 9), "kv_put");
        must(kv_put(kv, "k\0bin", 5, "v\0\xff", 3), "kv_put");
        must(kv_member_set(kv, "node0", 42, "127.0.0.1:12000",
                           "127.0.0.1:11000"), "kv_member_set");
    }
    if (which >= 2) {
        for (int i = 0; i < 50; i++) {
            char k[16], v[16];
            int kl = snprintf(k, sizeof k, "key%d", i);
            int vl = snprintf(v, sizeof v, "value%d", i * i);
            must(kv_put(kv, k, (size_t)kl, v, (size_t)vl), "kv_put");
        }
        must(kv_member_set(kv, "node1", 43, "h1:12001", "h1:11001"), "m");
    }
    if (which >= 3) { /* leases: one holding two keys, one empty */
        uint8_t cmd[KV_LEASE_CMD_MAX];
        size_t len = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 5000, cmd);
        must(kv_apply_at(kv, 90, cmd, len), "grant");
        must(kv_apply_at(kv, 91, cmd, len), "grant");
        struct kv_txn_op ops[] = {
            {KV_TOP_PUT, (const uint8_t *)"l1", 2, (const uint8_t *)"x", 1, 90},
            {KV_TOP_PUT, (const uint8_t *)"l2", 2, (const uint8_t *)"y", 1, 90},
        };
        struct kv_txn t = {.success = ops, .n_success = 2};
        uint8_t tb[64];
        size_t tlen = kv_txn_encode(&t, tb);
        must(kv_apply_at(kv, 92, tb, tlen), "txn");
    }
    uint8_t *buf;
    must(kv_snapshot_write_mem(kv, 100 + (uint64_t)which, &buf, len),
         "kv_snapshot_write_mem");
    kv_free(kv);
    return buf;
}

static void snap_seeds(void)
{
    int n = 0;
    for (int which = 0; which < 4; which++) {
        size_t len;
        uint8_t *kvs = kv_seed(which, &len);
        for (uint8_t mode = 1; mode <= 2; mode++)
            put_seed("snap", n++, &mode, 1, kvs, len);
        /* The same as a storage snapshot file, as the store writes it. */
        memfs_reset();
        struct stor *s = open_store(0);
        snapshot(s, 9 + (uint64_t)which, 2, kvs, len);
        stor_close(s);
        const char *name;
        const uint8_t *d;
        size_t flen;
        for (size_t k = 0; memfs_file(k, &name, &d, &flen); k++)
            if (strncmp(name, "snap-", 5) == 0)
                put_seed("snap", n++, (const uint8_t *)"\0", 1, d, flen);
        craft_free(kvs);
    }
}

static void kvcmd_seeds(void)
{
    struct kv_op ops[] = {
        {KV_OP_SET, (const uint8_t *)"user1", 5, (const uint8_t *)"batman", 6},
        {KV_OP_DEL, (const uint8_t *)"user2", 5, NULL, 0},
        {KV_OP_SET, (const uint8_t *)"a", 1, (const uint8_t *)"", 0},
        {KV_OP_SET, (const uint8_t *)"a", 1, (const uint8_t *)"2", 1},
        {KV_OP_DEL, (const uint8_t *)"b", 1, NULL, 0},
    };
    static uint8_t big[300];
    memset(big, 'x', sizeof big);
    struct kv_op large = {KV_OP_SET, big, 200, big, sizeof big};
    struct {
        const struct kv_op *ops;
        size_t n;
    } cmds[] = {{ops, 0}, {ops, 1}, {ops + 1, 1}, {ops, 5}, {&large, 1}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        size_t len = kv_cmd_size(cmds[i].ops, cmds[i].n);
        uint8_t *buf = malloc(len);
        kv_cmd_encode(cmds[i].ops, cmds[i].n, buf);
        put_seed("kvcmd", (int)i, NULL, 0, buf, len);
        free(buf);
    }
    /* version 2: transactions */
    struct kv_compare cmps[] = {
        {KV_CMP_MOD, KV_CMP_EQ, (const uint8_t *)"a", 1, 0, NULL, 0},
        {KV_CMP_EXISTS, KV_CMP_NE, (const uint8_t *)"c", 1, 1, NULL, 0},
        {KV_CMP_VALUE, KV_CMP_EQ, (const uint8_t *)"b", 1, 0,
         (const uint8_t *)"", 0},
        {KV_CMP_VERSION, KV_CMP_GT, (const uint8_t *)"a", 1, 0, NULL, 0},
    };
    struct kv_txn_op tops[] = {
        {KV_TOP_PUT, (const uint8_t *)"a", 1, (const uint8_t *)"x", 1, 5},
        {KV_TOP_GET, (const uint8_t *)"a", 1, NULL, 0, 0},
        {KV_TOP_DEL, (const uint8_t *)"b", 1, NULL, 0, 0},
        {KV_TOP_DEL_PREFIX, (const uint8_t *)"", 0, NULL, 0, 0},
        {KV_TOP_PUT, (const uint8_t *)"c\0", 2, big, sizeof big, 0},
    };
    struct kv_txn txns[] = {
        {cmps, 4, tops, 5, tops + 1, 1},
        {cmps, 1, tops, 1, NULL, 0},
        {cmps + 1, 1, tops + 2, 3, tops, 2},
        {NULL, 0, tops + 4, 1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof txns / sizeof txns[0]; i++) {
        size_t len = kv_txn_size(&txns[i]);
        uint8_t *buf = malloc(len);
        kv_txn_encode(&txns[i], buf);
        put_seed("kvcmd", 100 + (int)i, NULL, 0, buf, len);
        free(buf);
    }
    /* version 3: lease commands (lease 5 exists in the target's map) */
    struct {
        uint8_t op;
        uint64_t id, ttl;
    } lc[] = {{KV_LEASE_GRANT, 0, 30000}, {KV_LEASE_REVOKE, 5, 0},
              {KV_LEASE_EXPIRE, 5, 5}, {KV_LEASE_KEEPALIVE, 5, 0},
              {KV_LEASE_REVOKE, 6, 0}};
    for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
        uint8_t buf[KV_LEASE_CMD_MAX];
        size_t len = kv_lease_cmd_encode(lc[i].op, lc[i].id, lc[i].ttl, buf);
        put_seed("kvcmd", 200 + (int)i, NULL, 0, buf, len);
    }
    /* a transaction putting with lease 5 and one naming a missing lease */
    struct kv_txn_op lput[] = {
        {KV_TOP_PUT, (const uint8_t *)"a", 1, (const uint8_t *)"v", 1, 5},
        {KV_TOP_PUT, (const uint8_t *)"n", 1, (const uint8_t *)"v", 1, 77},
    };
    for (size_t i = 0; i < 2; i++) {
        struct kv_txn lt = {.success = lput, .n_success = i + 1};
        size_t len = kv_txn_size(&lt);
        uint8_t *buf = malloc(len);
        kv_txn_encode(&lt, buf);
        put_seed("kvcmd", 210 + (int)i, NULL, 0, buf, len);
        free(buf);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds <corpus dir>\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        die(root);
    recover_seeds();
    snap_seeds();
    kvcmd_seeds();
    memfs_reset();
    return 0;
}
