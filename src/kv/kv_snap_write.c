/* Snapshot writing: the whole state as one checksummed byte stream, to any
 * sink, to a file descriptor (write(2) only, fork-safe) or to memory.
 *
 * Format, version 3 (integers little-endian):
 *   header, 36 bytes:
 *     0   8   magic "CRAFTKVS"
 *     8   u32 version, 3 (the reader also takes 1 and 2)
 *     12  u32 flags, 0 (a reader rejects anything else)
 *     16  u64 applied index (the last log entry the state includes)
 *     24  u32 n_members
 *     28  u64 n_keys
 *   n_members member records:
 *     u64 raft_id, then three strings (id, raft_addr, http_addr), each a
 *     u32 length and that many bytes (no NUL byte inside, none stored)
 *   the lease table (version 3 only): u64 n_leases, then n_leases records
 *     u64 id, u64 ttl_ms, u64 refreshed (the index of its GRANT or last
 *     KEEPALIVE), in strictly increasing id order, id and ttl >= 1,
 *     id <= refreshed <= applied index
 *   n_keys key records, in strictly increasing byte-wise key order:
 *     u32 klen, u32 vlen, u64 create_index, u64 mod_index, u64 version,
 *     u64 lease, klen bytes of key, vlen bytes of value
 *     (lease 0 or the id of a lease of the table: the reader rebuilds each
 *     lease's key set from these, and rejects an id not in the table)
 *   (version 2: no lease table; a key's lease id is read as 0, no lease,
 *   since a version-2 state had no lease records to attach it to.)
 *   (version 1: records "u32 klen, u32 vlen, key, value" in any order, no
 *   key twice; read with create_index = mod_index = applied, version 1.)
 *   trailer: u32 CRC32C of every byte before it.
 * A snapshot is valid only if all of it is present and the CRC matches;
 * the reader (kv_snap_read.c) builds a new map and drops it otherwise. */
#include "kv/kv_internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/endian.h"

#define OUT_BUF (32 * 1024)

/* A buffered sink that checksums what it emits. Lives on the stack. */
struct out {
    kv_write_fn fn;
    void *ud;
    uint32_t crc;
    size_t n;
    uint8_t buf[OUT_BUF];
};

static int emit(struct out *o, const void *p, size_t len)
{
    o->crc = crc32c(o->crc, p, len);
    return o->fn(o->ud, p, len);
}

static int flush(struct out *o)
{
    size_t n = o->n;
    o->n = 0;
    return n ? emit(o, o->buf, n) : 0;
}

static int put_bytes(struct out *o, const void *p, size_t len)
{
    if (len <= OUT_BUF - o->n) {
        if (len)
            memcpy(o->buf + o->n, p, len);
        o->n += len;
        return 0;
    }
    int err = flush(o);
    if (err)
        return err;
    if (len >= OUT_BUF / 2) /* big: straight through, no copy */
        return emit(o, p, len);
    memcpy(o->buf, p, len);
    o->n = len;
    return 0;
}

static int put_u32(struct out *o, uint32_t v)
{
    uint8_t b[4];
    craft_put32(b, v);
    return put_bytes(o, b, sizeof b);
}

static int put_u64(struct out *o, uint64_t v)
{
    uint8_t b[8];
    craft_put64(b, v);
    return put_bytes(o, b, sizeof b);
}

static int put_str(struct out *o, const char *s)
{
    size_t len = strlen(s);
    int err = put_u32(o, (uint32_t)len);
    return err ? err : put_bytes(o, s, len);
}

static int put_header(struct out *o, const struct kv *kv, uint64_t applied)
{
    uint8_t h[KV__SNAP_HDR];
    memcpy(h, KV__SNAP_MAGIC, 8);
    craft_put32(h + 8, KV__SNAP_VERSION);
    craft_put32(h + 12, 0);
    craft_put64(h + 16, applied);
    craft_put32(h + 24, (uint32_t)kv->n_members);
    craft_put64(h + 28, kv->count);
    return put_bytes(o, h, sizeof h);
}

static int put_members(struct out *o, const struct kv *kv)
{
    int err = 0;
    for (size_t i = 0; i < kv->n_members && !err; i++) {
        const struct kv_member *m = &kv->members[i];
        err = put_u64(o, m->raft_id);
        err = err ? err : put_str(o, m->id);
        err = err ? err : put_str(o, m->raft_addr);
        err = err ? err : put_str(o, m->http_addr);
    }
    return err;
}

static int put_leases(struct out *o, const struct kv *kv)
{
    int err = put_u64(o, kv->n_leases);
    for (size_t i = 0; i < kv->n_leases && !err; i++) {
        err = put_u64(o, kv->leases[i]->id);
        err = err ? err : put_u64(o, kv->leases[i]->ttl_ms);
        err = err ? err : put_u64(o, kv->leases[i]->refreshed);
    }
    return err;
}

static const struct kv__leaf *first_leaf(const struct kv *kv)
{
    const void *n = kv->root;
    for (unsigned d = 0; d < kv->height; d++)
        n = ((const struct kv__inode *)n)->child[0];
    return n;
}

/* The key records, leaf by leaf; with drop, each leaf's page leaves this
 * process once its records are in the buffer (the child writer). */
static int put_entries(struct out *o, const struct kv *kv, struct kv__drop *drop)
{
    for (const struct kv__leaf *l = first_leaf(kv), *next; l; l = next) {
        next = l->next;
        for (uint32_t i = 0; i < l->n; i++) {
            struct kv__rec r;
            kv__rec_decode(l, i, &r);
            uint8_t h[KV__SNAP_REC];
            craft_put32(h, (uint32_t)r.klen);
            craft_put32(h + 4, (uint32_t)r.vlen);
            craft_put64(h + 8, r.create);
            craft_put64(h + 16, r.mod);
            craft_put64(h + 24, r.version);
            craft_put64(h + 32, r.lease);
            int err = put_bytes(o, h, sizeof h);
            err = err ? err : put_bytes(o, r.key, r.klen);
            err = err ? err : put_bytes(o, r.val, r.vlen);
            if (err)
                return err;
        }
        if (drop)
            kv__pages_drop(drop, l);
    }
    if (drop)
        kv__pages_drop_end(drop);
    return 0;
}

uint64_t kv_snapshot_size(const struct kv *kv)
{
    uint64_t n = KV__SNAP_HDR + KV__SNAP_TRAILER;
    for (size_t i = 0; i < kv->n_members; i++) { /* each term in 64 bits */
        const struct kv_member *m = &kv->members[i];
        n += 8 + 12 + (uint64_t)strlen(m->id) + (uint64_t)strlen(m->raft_addr) +
             (uint64_t)strlen(m->http_addr);
    }
    n += 8 + 24 * (uint64_t)kv->n_leases;
    return n + KV__SNAP_REC * (uint64_t)kv->count + (uint64_t)kv->bytes;
}

static int write_all(const struct kv *kv, uint64_t applied_index,
                     kv_write_fn write_fn, void *ud, struct kv__drop *drop)
{
    struct out o;
    o.fn = write_fn;
    o.ud = ud;
    o.crc = 0;
    o.n = 0;
    int err = put_header(&o, kv, applied_index);
    err = err ? err : put_members(&o, kv);
    err = err ? err : put_leases(&o, kv);
    err = err ? err : put_entries(&o, kv, drop);
    err = err ? err : flush(&o);
    if (err)
        return err;
    uint8_t t[KV__SNAP_TRAILER];
    craft_put32(t, o.crc);
    return write_fn(ud, t, sizeof t);
}

int kv_snapshot_write(const struct kv *kv, uint64_t applied_index,
                      kv_write_fn write_fn, void *ud)
{
    return write_all(kv, applied_index, write_fn, ud, NULL);
}

/* ---- sinks --------------------------------------------------------------- */

static int fd_write(void *ud, const void *buf, size_t len)
{
    int fd = *(const int *)ud;
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return (errno == ENOSPC || errno == EDQUOT) ? CRAFT_ENOSPACE
                                                        : -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int kv_snapshot_write_fd(const struct kv *kv, int fd, uint64_t applied_index)
{
    return kv_snapshot_write(kv, applied_index, fd_write, &fd);
}

/* The forked writer gives back what it will not read, then each leaf once
 * written: a page this process no longer maps is the parent's alone, and
 * the parent's next write to it copies nothing (Redis's child likewise
 * gives back large values once written). What is left to copy: the
 * leaves the writer has not reached yet, and the parent's other memory. */
int kv_snapshot_write_child(struct kv *kv, int fd, uint64_t applied_index)
{
    struct kv__drop drop = {0, 0};
    kv__pages_drop_unread(kv);
    return write_all(kv, applied_index, fd_write, &fd, &drop);
}

struct mem_sink {
    uint8_t *buf;
    size_t cap;
    size_t off;
};

static int mem_write(void *ud, const void *buf, size_t len)
{
    struct mem_sink *m = ud;
    if (len > m->cap - m->off)
        return CRAFT_EINVAL; /* kv_snapshot_size disagrees: a bug */
    memcpy(m->buf + m->off, buf, len);
    m->off += len;
    return 0;
}

int kv_snapshot_write_mem(const struct kv *kv, uint64_t applied_index,
                          uint8_t **buf, size_t *len)
{
    uint64_t size = kv_snapshot_size(kv);
    if (size > SIZE_MAX)
        return CRAFT_ENOMEM;
    struct mem_sink m = {craft_malloc((size_t)size), (size_t)size, 0};
    if (m.buf == NULL)
        return CRAFT_ENOMEM;
    int err = kv_snapshot_write(kv, applied_index, mem_write, &m);
    if (err == 0 && m.off != m.cap)
        err = CRAFT_EINVAL;
    if (err) {
        craft_free(m.buf);
        return err;
    }
    *buf = m.buf;
    *len = m.off;
    return 0;
}
