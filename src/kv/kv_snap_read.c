/* Snapshot restore: read a stream (format in kv_snap_write.c) into a NEW
 * struct kv, checking structure, counts and the CRC32C trailer; on any
 * failure the new map is dropped and the caller's state is untouched. */
#include "kv/kv_internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/endian.h"

/* Lengths read from the stream are trusted for at most this many bytes at a
 * time: a corrupt length fails as a truncated stream after allocating at
 * most about twice what the stream really holds. */
#define ALLOC_STEP (1024 * 1024)
#define FD_BUF (64 * 1024)

struct in {
    kv_read_fn fn;
    void *ud;
    uint32_t crc;
};

static int get(struct in *in, void *buf, size_t len)
{
    int err = in->fn(in->ud, buf, len);
    if (err == CRAFT_ETRUNCATED)
        return CRAFT_ECORRUPT;
    if (err)
        return err;
    in->crc = crc32c(in->crc, buf, len);
    return 0;
}

static int get_u32(struct in *in, uint32_t *v)
{
    uint8_t b[4];
    int err = get(in, b, sizeof b);
    if (err == 0)
        *v = craft_get32(b);
    return err;
}

/* A new block of hdr + len + extra bytes with len bytes read at offset
 * hdr; grown step by step (see ALLOC_STEP). The lengths come from the
 * stream (up to 2^33 for a record's key and value together): their sum is
 * taken in 64 bits, and a block that a size_t cannot hold (32-bit) is
 * CRAFT_ENOMEM rather than a short block. */
static int get_alloc(struct in *in, size_t hdr, uint64_t len64, size_t extra,
                     uint8_t **out)
{
    if (len64 > SIZE_MAX || (uint64_t)hdr + len64 + extra > SIZE_MAX)
        return CRAFT_ENOMEM;
    size_t len = (size_t)len64; /* and hdr + len + extra fits: so does every
                                   hdr + want + extra below */
    size_t have = 0, want = len < ALLOC_STEP ? len : ALLOC_STEP;
    uint8_t *p = craft_malloc(hdr + want + extra);
    for (;;) {
        if (p == NULL)
            return CRAFT_ENOMEM;
        int err = get(in, p + hdr + have, want - have);
        if (err) {
            craft_free(p);
            return err;
        }
        have = want;
        if (have == len)
            break;
        want = len - have > have ? 2 * have : len;
        uint8_t *q = craft_realloc(p, hdr + want + extra);
        if (q == NULL)
            craft_free(p);
        p = q;
    }
    *out = p;
    return 0;
}

/* A u32-length string, NUL-terminated; one holding a NUL is corrupt. */
static int get_str(struct in *in, char **s)
{
    uint32_t len;
    uint8_t *p;
    int err = get_u32(in, &len);
    err = err ? err : get_alloc(in, 0, len, 1, &p);
    if (err)
        return err;
    if (memchr(p, 0, len) != NULL) {
        craft_free(p);
        return CRAFT_ECORRUPT;
    }
    p[len] = 0;
    *s = (char *)p;
    return 0;
}

static int get_member(struct in *in, struct kv *kv)
{
    uint8_t b[8];
    char *s[3] = {NULL, NULL, NULL};
    int err = get(in, b, sizeof b);
    for (int i = 0; i < 3 && !err; i++)
        err = get_str(in, &s[i]);
    if (!err)
        err = kv_member_set(kv, s[0], craft_get64(b), s[1], s[2]);
    for (int i = 0; i < 3; i++)
        craft_free(s[i]);
    return err;
}

/* One key record of a snapshot of the given version. */
static int get_entry(struct in *in, struct kv *kv, uint32_t version,
                     uint64_t applied)
{
    uint8_t h[KV__SNAP_REC];
    size_t hlen = version == 1 ? KV__SNAP_REC_V1 : KV__SNAP_REC;
    int err = get(in, h, hlen);
    if (err)
        return err;
    uint32_t klen = craft_get32(h), vlen = craft_get32(h + 4);
    uint64_t create = applied, mod = applied, ver = 1, lease = 0;
    if (version != 1) {
        create = craft_get64(h + 8);
        mod = craft_get64(h + 16);
        ver = craft_get64(h + 24);
        lease = version == 2 ? 0 : craft_get64(h + 32); /* see the format */
        if (ver == 0 || create > mod || mod > applied)
            return CRAFT_ECORRUPT;
    }
    struct kv__lease *ls = lease ? kv__lease_find(kv, lease) : NULL;
    if (lease && ls == NULL)
        return CRAFT_ECORRUPT;
    /* Key and value: a small record's on the stack (kv__store copies it
     * into the leaf), a big one's in the blob the record will own. */
    uint8_t small[sizeof(struct kv__blob) + KV__INLINE_MAX];
    bool big = kv__needs_blob(klen, vlen);
    uint8_t *p = small;
    err = big ? get_alloc(in, sizeof(struct kv__blob), (uint64_t)klen + vlen, 0, &p)
              : get(in, small + sizeof(struct kv__blob), (size_t)klen + vlen);
    if (err)
        return err;
    struct kv__blob *b = (struct kv__blob *)p;
    const uint8_t *key = b->data, *val = b->data + klen;
    /* its home slot asked for now: the miss overlaps the work below */
    uint64_t hk = kv__hkey(kv, key, klen);
    __builtin_prefetch(&kv->hs[kv__hash_home(kv, hk)]);
    err = kv__reserve(kv, 1, klen, kv__rec_bound(klen, vlen));
    if (err) {
        if (big)
            craft_free(p);
        return err;
    }
    struct kv__path path;
    /* no key twice: version 2 keys in increasing order, so each one goes
     * past the end of the map (found without a search); version 1's in
     * any order */
    bool ok;
    if (version != 1) {
        ok = kv__seek_end(kv, key, klen, &path);
    } else {
        kv__seek(kv, key, klen, &path);
        ok = !path.found;
    }
    struct kv__lkey *lk = NULL;
    if (ok && ls != NULL &&
        ((lk = kv__lkey_new(kv, key, klen)) == NULL || kv__lease_room(ls, 1) != 0)) {
        craft_free(lk);
        if (big)
            craft_free(p);
        return CRAFT_ENOMEM;
    }
    if (!ok) {
        if (big)
            craft_free(p);
        return CRAFT_ECORRUPT;
    }
    if (lk != NULL)
        kv__lease_attach(ls, lk);
    b->klen = klen;
    b->vlen = vlen;
    kv__store(kv, &path, hk, key, klen, val, vlen, create, mod, ver, lease, big ? b : NULL);
    return 0;
}

/* The lease table of a version-3 snapshot. */
static int get_leases(struct in *in, struct kv *kv, uint64_t applied)
{
    uint8_t b[24];
    int err = get(in, b, 8);
    uint64_t n = err ? 0 : craft_get64(b), last = 0;
    for (uint64_t i = 0; i < n && !err; i++) {
        err = get(in, b, 24);
        if (err)
            break;
        uint64_t id = craft_get64(b), ttl = craft_get64(b + 8);
        uint64_t refreshed = craft_get64(b + 16);
        if (id <= last || ttl == 0 || refreshed < id || refreshed > applied)
            return CRAFT_ECORRUPT;
        err = kv__lease_grant(kv, id, ttl, refreshed);
        last = id;
    }
    return err;
}

/* Everything after the header and before the trailer. */
static int get_body(struct in *in, struct kv *kv, uint32_t version,
                    uint64_t applied, uint32_t n_members, uint64_t n_keys)
{
    int err = 0;
    for (uint32_t i = 0; i < n_members && !err; i++)
        err = get_member(in, kv);
    if (!err && version == 3)
        err = get_leases(in, kv, applied);
    for (uint64_t i = 0; i < n_keys && !err; i++)
        err = get_entry(in, kv, version, applied);
    if (err)
        return err;
    /* a repeated member id would have replaced an earlier one */
    if (kv->n_members != n_members || kv->count != n_keys)
        return CRAFT_ECORRUPT;
    return 0;
}

static int get_snapshot(struct in *in, struct kv *kv, uint64_t *applied_out)
{
    uint8_t h[KV__SNAP_HDR];
    int err = get(in, h, sizeof h);
    if (err)
        return err;
    uint32_t version = craft_get32(h + 8);
    if (memcmp(h, KV__SNAP_MAGIC, 8) != 0 ||
        version < 1 || version > KV__SNAP_VERSION ||
        craft_get32(h + 12) != 0)
        return CRAFT_ECORRUPT;
    uint64_t applied = craft_get64(h + 16);
    err = get_body(in, kv, version, applied, craft_get32(h + 24),
                   craft_get64(h + 28));
    if (err)
        return err;
    uint32_t computed = in->crc, stored;
    err = get_u32(in, &stored);
    if (err)
        return err;
    if (stored != computed)
        return CRAFT_ECORRUPT;
    *applied_out = applied;
    kv->index = applied;
    kv__trim(kv);
    return 0;
}

int kv_restore(kv_read_fn read_fn, void *ud, uint64_t hash_seed,
               struct kv **out, uint64_t *applied_index)
{
    struct in in = {read_fn, ud, 0};
    struct kv *kv = kv_new(hash_seed);
    if (kv == NULL)
        return CRAFT_ENOMEM;
    uint64_t applied;
    int err = get_snapshot(&in, kv, &applied);
    if (err) {
        kv_free(kv);
        return err;
    }
    *out = kv;
    *applied_index = applied;
    return 0;
}

/* ---- sources ------------------------------------------------------------- */

struct fd_src {
    int fd;
    uint8_t *buf; /* FD_BUF bytes, [pos, end) not yet consumed */
    size_t pos;
    size_t end;
};

static int fd_fill(struct fd_src *s)
{
    for (;;) {
        ssize_t n = read(s->fd, s->buf, FD_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return CRAFT_ETRUNCATED;
        s->pos = 0;
        s->end = (size_t)n;
        return 0;
    }
}

static int fd_read(void *ud, void *buf, size_t len)
{
    struct fd_src *s = ud;
    uint8_t *p = buf;
    while (len > 0) {
        if (s->pos == s->end) {
            int err = fd_fill(s);
            if (err)
                return err;
        }
        size_t n = s->end - s->pos < len ? s->end - s->pos : len;
        memcpy(p, s->buf + s->pos, n);
        s->pos += n;
        p += n;
        len -= n;
    }
    return 0;
}

int kv_restore_fd(int fd, uint64_t hash_seed, struct kv **out,
                  uint64_t *applied_index)
{
    struct fd_src s = {fd, craft_malloc(FD_BUF), 0, 0};
    if (s.buf == NULL)
        return CRAFT_ENOMEM;
    int err = kv_restore(fd_read, &s, hash_seed, out, applied_index);
    craft_free(s.buf);
    return err;
}

struct mem_src {
    const uint8_t *buf;
    size_t len;
    size_t off;
};

static int mem_read(void *ud, void *buf, size_t len)
{
    struct mem_src *m = ud;
    if (len > m->len - m->off)
        return CRAFT_ETRUNCATED;
    memcpy(buf, m->buf + m->off, len);
    m->off += len;
    return 0;
}

int kv_restore_mem(const void *buf, size_t len, uint64_t hash_seed,
                   struct kv **out, uint64_t *applied_index)
{
    struct mem_src m = {buf, len, 0};
    struct kv *kv;
    uint64_t applied;
    int err = kv_restore(mem_read, &m, hash_seed, &kv, &applied);
    if (err)
        return err;
    if (m.off != m.len) {
        kv_free(kv);
        return CRAFT_ECORRUPT;
    }
    *out = kv;
    *applied_index = applied;
    return 0;
}
