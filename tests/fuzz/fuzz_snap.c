/* libFuzzer target for the snapshot readers. The first byte picks what the
 * rest is:
 *   0  a storage snapshot file (src/storage/snapshot.c), opened by
 *      stor_open through the in-memory file system; if accepted, its data
 *      is read back whole and given to the kv reader too;
 *   1  a kv snapshot stream (src/kv/kv_snap_read.c);
 *   2  a kv snapshot stream committed as the data of a storage snapshot,
 *      read back through a reopened store: the same bytes, then as 1.
 * A kv snapshot that is accepted must write out again and read back to the
 * same map and members. Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "kv/kv.h"
#include "memfs.h"
#include "storage/storage.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* a and b hold the same pairs and the same members. */
static void check_same(const struct kv *a, const struct kv *b)
{
    CHECK(kv_count(a) == kv_count(b) && kv_bytes(a) == kv_bytes(b));
    struct kv_iter it;
    kv_iter_init(&it);
    const uint8_t *k, *v, *v2;
    size_t kl, vl, vl2;
    while (kv_iter_next(a, &it, &k, &kl, &v, &vl)) {
        CHECK(kv_get(b, k, kl, &v2, &vl2) == 0);
        CHECK(vl == vl2 && (vl == 0 || memcmp(v, v2, vl) == 0));
    }
    CHECK(kv_member_count(a) == kv_member_count(b));
    for (size_t i = 0; i < kv_member_count(a); i++) {
        const struct kv_member *x = kv_member_at(a, i), *y = kv_member_at(b, i);
        CHECK(same_str(x->id, y->id) && x->raft_id == y->raft_id &&
              same_str(x->raft_addr, y->raft_addr) &&
              same_str(x->http_addr, y->http_addr));
    }
}

/* Offset of the key count in a kv snapshot header (kv_snap_write.c). */
#define KV_COUNT_OFF 28

static void kv_snapshot(const uint8_t *data, size_t size)
{
    /* The reader reserves a table for the header's key count (up to 1M
     * slots, kv_snap_read.c) before the stream proves it. A count larger
     * than the bytes could hold (a key takes at least 8) always fails at
     * the end of the stream, but costs ~5 ms here (16 MB allocated,
     * cleared, freed): enough to make 10^7 runs take half a day. Such
     * inputs are skipped; test_kv.c corrupts that count too. */
    if (size >= KV_COUNT_OFF + 8 && craft_get64(data + KV_COUNT_OFF) > size)
        return;
    struct kv *kv = NULL;
    uint64_t applied = 0;
    int err = kv_restore_mem(data, size, 1, &kv, &applied);
    if (err) {
        CHECK(kv == NULL);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(kv_snapshot_write_mem(kv, applied, &buf, &len) == 0);
    CHECK(len == kv_snapshot_size(kv));
    struct kv *again = NULL;
    uint64_t applied2 = 0;
    CHECK(kv_restore_mem(buf, len, 2, &again, &applied2) == 0);
    CHECK(applied2 == applied);
    check_same(kv, again);
    check_same(again, kv);
    kv_free(again);
    kv_free(kv);
    craft_free(buf);
}

static int open_store(struct stor **s, struct raft_persisted *p)
{
    struct stor_opts o = {.dir = MEMFS_DIR, .sys = memfs_sys()};
    return stor_open(&o, s, p);
}

/* The data of the store's newest snapshot, read back whole: by offset and
 * through a descriptor; NULL if it has none. */
static uint8_t *read_snapshot(struct stor *s, struct raft_snap_meta *m)
{
    if (stor_snap_newest(s, m) != 0)
        return NULL;
    uint8_t *buf = malloc(m->size + 1);
    CHECK(buf != NULL);
    CHECK(stor_snap_read(s, m->index, 0, buf, m->size) == 0);
    uint8_t one;
    CHECK(stor_snap_read(s, m->index, m->size, &one, 1) == CRAFT_EINVAL);
    int fd;
    uint64_t off;
    struct raft_snap_meta m2;
    CHECK(stor_snap_open_read(s, m->index, &fd, &off, &m2) == 0);
    CHECK(m2.index == m->index && m2.size == m->size);
    if (m->size) {
        uint8_t *b2 = malloc(m->size);
        CHECK(b2 && memfs_sys()->pread(fd, b2, m->size, (off_t)off) ==
                        (ssize_t)m->size);
        CHECK(memcmp(b2, buf, m->size) == 0);
        free(b2);
    }
    memfs_sys()->close(fd);
    return buf;
}

static void storage_file(const uint8_t *data, size_t size)
{
    memfs_reset();
    uint64_t index = size >= 24 ? craft_get64(data + 16) : 1;
    char name[64];
    snprintf(name, sizeof name, "snap-%020llu", (unsigned long long)index);
    memfs_put(name, data, size);
    struct stor *s = NULL;
    struct raft_persisted p;
    if (open_store(&s, &p) != 0) {
        CHECK(s == NULL && memfs_open_fds() == 0);
        return;
    }
    struct raft_snap_meta m;
    uint8_t *buf = read_snapshot(s, &m);
    CHECK((buf != NULL) == (p.snap.index != 0));
    if (buf) {
        CHECK(m.index == index && m.index == p.snap.index);
        CHECK(size == 4096 + m.size);
        CHECK(m.size == 0 || memcmp(buf, data + 4096, m.size) == 0);
        kv_snapshot(buf, m.size);
    }
    free(buf);
    stor_close(s);
    CHECK(memfs_open_fds() == 0);
}

static void through_storage(const uint8_t *data, size_t size)
{
    memfs_reset();
    struct stor *s = NULL;
    struct raft_persisted p;
    CHECK(open_store(&s, &p) == 0);
    struct raft_snap_meta m = {.index = 7, .term = 2};
    m.conf.n_voters = 1;
    m.conf.voters[0] = 1;
    struct stor_snap_writer *w;
    CHECK(stor_snap_begin(s, &m, &w) == 0);
    for (size_t off = 0; off < size;) { /* in uneven pieces */
        size_t n = size - off < 1000 ? size - off : 1000;
        CHECK(stor_snap_write(w, data + off, n) == 0);
        off += n;
    }
    CHECK(stor_snap_commit(w, &m) == 0 && m.size == size);
    stor_close(s);
    CHECK(open_store(&s, &p) == 0);
    CHECK(p.snap.index == 7 && p.snap.size == size);
    uint8_t *buf = read_snapshot(s, &m);
    CHECK(buf != NULL && (size == 0 || memcmp(buf, data, size) == 0));
    kv_snapshot(buf, size);
    free(buf);
    stor_close(s);
    CHECK(memfs_open_fds() == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        storage_file(data + 1, size - 1);
        break;
    case 1:
        kv_snapshot(data + 1, size - 1);
        break;
    default:
        through_storage(data + 1, size - 1);
        break;
    }
    return 0;
}
