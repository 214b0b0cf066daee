/* Unit tests for src/storage: round trips, overwrite, roll-over, compaction,
 * snapshots (local, chunked, fallback, fork), in-memory mode, torn tails at
 * every offset, bit flips, injected I/O errors and crashes that drop what was
 * not synced, the lock. Each test works in its own mkdtemp directory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/endian.h"
#include "common/error.h"
#include "storage/internal.h"
#include "storage/storage.h"

/* ---- log capture ---- */

struct logcap {
    int warns, errors;
    char last[1024];      /* the last WARN or ERROR */
    char infos[4096];     /* INFO lines since the open, as fit */
};

static void log_fn(void *ud, int level, const char *msg)
{
    struct logcap *c = ud;
    if (level == CRAFT_LOG_WARN)
        c->warns++;
    if (level == CRAFT_LOG_ERROR)
        c->errors++;
    if (level >= CRAFT_LOG_WARN)
        snprintf(c->last, sizeof c->last, "%s", msg);
    size_t used = strlen(c->infos);
    if (level == CRAFT_LOG_INFO)
        snprintf(c->infos + used, sizeof c->infos - used, "%s\n", msg);
    if (getenv("STOR_TEST_VERBOSE"))
        fprintf(stderr, "  [%s] %s\n", craft_log_level_name(level), msg);
}

/* ---- fault injection and the crash model (test-only global state) ----
 * A fault's `after` counts calls that still succeed; 0 fails this call and
 * every later one until cleared; -1 never fails.
 * The crash model remembers, per inode, the file content as of its last
 * fdatasync, and the directory listing (name -> inode) as of the last fsync
 * of the data directory; crash() rebuilds the directory from exactly that. */

struct fault {
    int after;
    int err;
};

struct shadow {
    ino_t ino;
    uint8_t *data;
    size_t len;
};

struct dentry {
    char name[64];
    ino_t ino;
};

static struct {
    bool nosync; /* fdatasync/fsync do nothing (fast loops) */
    bool half;   /* pwrite writes at most half of what it is asked */
    struct fault pwrite, fdatasync, fsync, pread, ftruncate, fallocate;
    bool falloc_partial;   /* a failing fallocate grows the file halfway */
    struct fault anysync;  /* fdatasync or fsync, whichever comes */
    uint64_t now_ms;       /* the store's clock: moves only when told */
    unsigned n_pwrite, n_fdatasync, n_fsync; /* calls that succeeded */
    unsigned n_fallocate;                    /* calls made */
    bool model;
    char dir[256];
    ino_t dir_ino;
    struct shadow sh[64];
    size_t n_sh;
    struct dentry dl[64];
    size_t n_dl;
} fx;

static bool fault_hit(struct fault *f)
{
    if (f->after < 0)
        return false;
    if (f->after > 0) {
        f->after--;
        return false;
    }
    errno = f->err;
    return true;
}

static void faults_clear(void)
{
    fx.nosync = fx.half = fx.falloc_partial = false;
    fx.pwrite = fx.fdatasync = fx.fsync = fx.pread = fx.ftruncate =
        fx.fallocate = fx.anysync = (struct fault){-1, 0};
}

static void model_file_synced(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    struct shadow *s = NULL;
    for (size_t i = 0; i < fx.n_sh; i++)
        if (fx.sh[i].ino == st.st_ino)
            s = &fx.sh[i];
    if (s == NULL) {
        assert_true(fx.n_sh < 64);
        s = &fx.sh[fx.n_sh++];
        *s = (struct shadow){.ino = st.st_ino};
    }
    free(s->data);
    s->len = (size_t)st.st_size;
    s->data = malloc(s->len + 1);
    assert_non_null(s->data);
    assert_int_equal(pread(fd, s->data, s->len, 0), (ssize_t)s->len);
}

static void model_dir_synced(void)
{
    DIR *d = opendir(fx.dir);
    assert_non_null(d);
    struct dirent *e;
    fx.n_dl = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        assert_true(fx.n_dl < 64);
        snprintf(fx.dl[fx.n_dl].name, 64, "%.63s", e->d_name);
        fx.dl[fx.n_dl++].ino = e->d_ino;
    }
    closedir(d);
}

static void model_forget(void)
{
    for (size_t i = 0; i < fx.n_sh; i++)
        free(fx.sh[i].data);
    fx.n_sh = fx.n_dl = 0;
}

/* Everything now in the directory counts as durable. */
static void model_start(const char *dir)
{
    model_forget();
    snprintf(fx.dir, sizeof fx.dir, "%s", dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    fx.dir_ino = st.st_ino;
    model_dir_synced();
    for (size_t i = 0; i < fx.n_dl; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, fx.dl[i].name);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        model_file_synced(fd);
        close(fd);
    }
    fx.model = true;
}

/* Power loss: the directory holds what was synced, nothing else. */
static void model_crash(void)
{
    DIR *d = opendir(fx.dir);
    assert_non_null(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", fx.dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    for (size_t i = 0; i < fx.n_dl; i++) {
        snprintf(path, sizeof path, "%s/%s", fx.dir, fx.dl[i].name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        for (size_t k = 0; k < fx.n_sh; k++)
            if (fx.sh[k].ino == fx.dl[i].ino)
                assert_int_equal(write(fd, fx.sh[k].data, fx.sh[k].len),
                                 (ssize_t)fx.sh[k].len);
        close(fd);
    }
    fx.model = false;
    model_forget();
}

static ssize_t t_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (fault_hit(&fx.pwrite))
        return -1;
    if (fx.half && n > 1)
        n /= 2;
    fx.n_pwrite++;
    return pwrite(fd, buf, n, off);
}

static int t_clock_gettime(clockid_t clk, struct timespec *ts)
{
    ts->tv_sec = (time_t)(fx.now_ms / 1000);
    ts->tv_nsec = (long)(fx.now_ms % 1000) * 1000000;
    return 0;
}

static ssize_t t_pread(int fd, void *buf, size_t n, off_t off)
{
    if (fault_hit(&fx.pread))
        return -1;
    return pread(fd, buf, n, off);
}

static int t_fdatasync(int fd)
{
    if (fault_hit(&fx.fdatasync) || fault_hit(&fx.anysync))
        return -1;
    fx.n_fdatasync++;
    if (fx.model)
        model_file_synced(fd);
    return fx.nosync ? 0 : fdatasync(fd);
}

static int t_fsync(int fd)
{
    if (fault_hit(&fx.fsync) || fault_hit(&fx.anysync))
        return -1;
    fx.n_fsync++;
    struct stat st;
    if (fx.model && fstat(fd, &st) == 0 && st.st_ino == fx.dir_ino)
        model_dir_synced();
    return fx.nosync ? 0 : fsync(fd);
}

static int t_ftruncate(int fd, off_t len)
{
    if (fault_hit(&fx.ftruncate))
        return -1;
    return ftruncate(fd, len);
}

static int t_fallocate(int fd, int mode, off_t off, off_t len)
{
    fx.n_fallocate++;
    if (fault_hit(&fx.fallocate)) {
        int err = errno;
        if (fx.falloc_partial)
            assert_int_equal(fallocate(fd, mode, off, len / 2), 0);
        errno = err;
        return -1;
    }
    return fallocate(fd, mode, off, len);
}

static struct stor_sys tsys;

/* ---- fixture ---- */

struct env {
    char root[64];
    char dir[128];
    struct logcap cap;
    struct craft_logger lg;
    struct stor_opts o;
    struct stor *s;
    struct raft_persisted p;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    snprintf(e->root, sizeof e->root, "/tmp/craft-stor-XXXXXX");
    if (e == NULL || mkdtemp(e->root) == NULL)
        return -1;
    snprintf(e->dir, sizeof e->dir, "%s/data", e->root);
    e->lg = (struct craft_logger){log_fn, &e->cap, CRAFT_LOG_DEBUG};
    tsys = *stor_sys_default();
    tsys.pwrite = t_pwrite;
    tsys.pread = t_pread;
    tsys.fdatasync = t_fdatasync;
    tsys.fsync = t_fsync;
    tsys.ftruncate = t_ftruncate;
    tsys.fallocate = t_fallocate;
    tsys.clock_gettime = t_clock_gettime;
    fx.now_ms = 1000000;
    e->o = (struct stor_opts){.dir = e->dir, .log = &e->lg, .sys = &tsys};
    faults_clear();
    *state = e;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *f)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct env *e = *state;
    stor_close(e->s);
    model_forget();
    fx.model = false;
    nftw(e->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    return 0;
}

static int env_open(struct env *e)
{
    e->cap = (struct logcap){0};
    stor_close(e->s);
    e->s = NULL;
    return stor_open(&e->o, &e->s, &e->p);
}

static void env_reopen(struct env *e)
{
    int err = env_open(e);
    if (err)
        fail_msg("stor_open: %s (%s)", craft_errname(err), e->cap.last);
}

/* Entry i of term t carries "e<i>t<t>" and i % 7 extra bytes. */
static struct raft_entry mkent(uint64_t i, uint64_t t, char *buf)
{
    int n = sprintf(buf, "e%" PRIu64 "t%" PRIu64 "%.*s", i, t, (int)(i % 7),
                    "xxxxxxx");
    return (struct raft_entry){t, i, RAFT_ENTRY_NORMAL, (uint32_t)n,
                               (const uint8_t *)buf};
}

static int save_range(struct stor *s, uint64_t from, uint64_t to,
                      uint64_t term, const struct raft_hard_state *hs)
{
    size_t n = to - from + 1;
    struct raft_entry *ents = calloc(n, sizeof *ents);
    char(*bufs)[32] = calloc(n, 32);
    for (size_t i = 0; i < n; i++)
        ents[i] = mkent(from + i, term, bufs[i]);
    int err = stor_save(s, hs, ents, n, NULL);
    free(ents);
    free(bufs);
    return err;
}

/* The persisted log is exactly from..to, terms given by term_of. */
static void check_log(const struct raft_persisted *p, uint64_t from,
                      uint64_t to, uint64_t (*term_of)(uint64_t))
{
    assert_int_equal(p->n_entries, to - from + 1);
    for (size_t k = 0; k < p->n_entries; k++) {
        const struct raft_entry *x = &p->entries[k];
        char buf[32];
        struct raft_entry want = mkent(from + k, term_of(from + k), buf);
        assert_int_equal(x->index, want.index);
        assert_int_equal(x->term, want.term);
        assert_int_equal(x->type, want.type);
        assert_int_equal(x->len, want.len);
        assert_memory_equal(x->data, want.data, want.len);
    }
}

static uint64_t term1(uint64_t i)
{
    return 1;
}

static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* The path of the only segment (or the newest one). */
static void last_segment(const char *dir, char *out, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char best[64] = "";
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "log-", 4) == 0 &&
            strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof best, "%.63s", de->d_name);
    closedir(d);
    assert_true(best[0] != '\0');
    snprintf(out, size, "%s/%s", dir, best);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

/* The segment file of (seq, first) in dir, holding len bytes of b. */
static void write_segment_file(const char *dir, uint64_t seq, uint64_t first,
                               const uint8_t *b, size_t len)
{
    char name[64], path[256];
    stor__seg_name(name, sizeof name, seq, first);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_all(path, b, len);
}

/* A state file holding st (gen >= 1) in its slot, and st with gen - 1 in
 * the other. */
static void write_state(const char *dir, const struct stor__state *st)
{
    uint8_t buf[STOR__STATE_BYTES];
    struct stor__state older = *st;
    older.gen--;
    stor__state_encode(buf + (st->gen % 2) * STOR__STATE_SLOT, st);
    stor__state_encode(buf + (older.gen % 2) * STOR__STATE_SLOT, &older);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, STOR__STATE_NAME);
    write_all(path, buf, sizeof buf);
}

/* ---- round trips ---- */

static void test_roundtrip(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(e->p.hs.term, 0);
    assert_int_equal(e->p.snap.index, 0);
    struct stat st;
    assert_int_equal(stat(e->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    struct raft_hard_state hs = {1, 1, 0};
    assert_int_equal(save_range(e->s, 1, 10, 1, &hs), 0);
    hs.commit = 5;
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), 0);
    assert_int_equal(stor_last_index(e->s), 10);
    env_reopen(e);
    assert_int_equal(e->p.hs.term, 1);
    assert_int_equal(e->p.hs.vote, 1);
    assert_int_equal(e->p.hs.commit, 5);
    check_log(&e->p, 1, 10, term1);
    assert_int_equal(stor_last_index(e->s), 10);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);

    /* Appending after a reopen continues the same segment. */
    assert_int_equal(save_range(e->s, 11, 12, 1, NULL), 0);
    stor_release_persisted(e->s);
    env_reopen(e);
    check_log(&e->p, 1, 12, term1);
    assert_int_equal(e->p.hs.commit, 5);
    assert_int_equal(count_files(e->dir, "log-"), 1);
}

static uint64_t term_overwritten(uint64_t i)
{
    return i >= 6 ? 2 : 1;
}

static void test_overwrite_suffix(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 10, 1, NULL), 0);
    assert_int_equal(save_range(e->s, 6, 8, 2, NULL), 0);
    assert_int_equal(stor_last_index(e->s), 8);
    env_reopen(e);
    check_log(&e->p, 1, 8, term_overwritten);

    /* A gap after the log, a non-contiguous batch, index 0: refused. */
    assert_int_equal(save_range(e->s, 10, 11, 2, NULL), CRAFT_EINVAL);
    char b1[32], b2[32];
    struct raft_entry bad[2] = {mkent(9, 2, b1), mkent(11, 2, b2)};
    assert_int_equal(stor_save(e->s, NULL, bad, 2, NULL), CRAFT_EINVAL);
    bad[0].index = 0;
    assert_int_equal(stor_save(e->s, NULL, bad, 1, NULL), CRAFT_EINVAL);
    env_reopen(e);
    check_log(&e->p, 1, 8, term_overwritten);
}

static uint64_t term_rolled(uint64_t i)
{
    return i >= 50 ? 2 : 1;
}

static void take_snapshot(struct env *e, uint64_t index, uint64_t term,
                          size_t size)
{
    struct raft_snap_meta m = {.index = index, .term = term};
    m.conf.n_voters = 3;
    m.conf.voters[0] = 1, m.conf.voters[1] = 2, m.conf.voters[2] = 3;
    m.conf.n_learners = 1;
    m.conf.learners[0] = 9;
    struct stor_snap_writer *w;
    assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
    uint8_t buf[1000];
    for (size_t off = 0; off < size; off += sizeof buf) {
        size_t n = size - off < sizeof buf ? size - off : sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)((off + k) * 7 + index);
        assert_int_equal(stor_snap_write(w, buf, n), 0);
    }
    struct raft_snap_meta got;
    assert_int_equal(stor_snap_commit(w, &got), 0);
    assert_int_equal(got.index, index);
    assert_int_equal(got.size, size);
}

static void check_snapshot_data(struct stor *s, uint64_t index, size_t size)
{
    uint8_t *buf = malloc(size + 1);
    assert_int_equal(stor_snap_read(s, index, 0, buf, size), 0);
    for (size_t k = 0; k < size; k++)
        assert_int_equal(buf[k], (uint8_t)(k * 7 + index));
    free(buf);
}

static void test_rollover_and_compact(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 600;
    env_reopen(e);
    struct raft_hard_state hs = {1, 2, 0};
    for (uint64_t i = 1; i <= 100; i++) {
        hs.commit = i - 1 < 40 ? i - 1 : 40;
        assert_int_equal(save_range(e->s, i, i, 1, &hs), 0);
    }
    int segs = count_files(e->dir, "log-");
    assert_true(segs >= 10);
    env_reopen(e);
    check_log(&e->p, 1, 100, term1);
    assert_int_equal(e->p.hs.commit, 40);

    /* Overwrite from 50, which lies in an older segment. */
    assert_int_equal(save_range(e->s, 50, 60, 2, NULL), 0);
    env_reopen(e);
    check_log(&e->p, 1, 60, term_rolled);

    /* Compaction needs a snapshot behind keep_from. */
    assert_int_equal(stor_compact(e->s, 40), CRAFT_EINVAL);
    take_snapshot(e, 55, 2, 3000);
    assert_int_equal(stor_compact(e->s, 57), CRAFT_EINVAL);
    segs = count_files(e->dir, "log-");
    assert_int_equal(stor_compact(e->s, 30), 0);
    int after = count_files(e->dir, "log-");
    assert_true(after < segs);
    env_reopen(e);
    assert_true(e->p.entries[0].index <= 30);
    assert_true(e->p.entries[0].index > 1);
    check_log(&e->p, e->p.entries[0].index, 60, term_rolled);
    assert_int_equal(e->p.snap.index, 55);
    assert_int_equal(e->p.hs.commit, 40);

    /* Compacting everything keeps the segment being written. */
    assert_int_equal(stor_compact(e->s, 56), 0);
    assert_true(count_files(e->dir, "log-") >= 1);
    assert_true(count_files(e->dir, "log-") < after);
    env_reopen(e);
    assert_true(e->p.entries[0].index <= 56);
    check_log(&e->p, e->p.entries[0].index, 60, term_rolled);
}

static void test_commit_lost(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 5};
    assert_int_equal(save_range(e->s, 1, 5, 1, &hs), 0);
    assert_int_equal(save_range(e->s, 3, 3, 2, NULL), 0); /* a bug upstream */
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_int_equal(e->cap.errors, 1);
    assert_non_null(strstr(e->cap.last, "commit index 5"));
}

/* ---- snapshots ---- */

static void test_snapshot_local(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_snap_meta m;
    assert_int_equal(stor_snap_newest(e->s, &m), CRAFT_ENOTFOUND);
    assert_int_equal(save_range(e->s, 1, 20, 1, NULL), 0);
    take_snapshot(e, 5, 1, 10000);
    assert_int_equal(stor_snap_newest(e->s, &m), 0);
    assert_int_equal(m.index, 5);
    check_snapshot_data(e->s, 5, 10000);

    uint8_t buf[16];
    assert_int_equal(stor_snap_read(e->s, 5, 9990, buf, 10), 0);
    assert_int_equal(buf[0], (uint8_t)(9990 * 7 + 5));
    assert_int_equal(stor_snap_read(e->s, 5, 9995, buf, 10), CRAFT_EINVAL);
    assert_int_equal(stor_snap_read(e->s, 4, 0, buf, 1), CRAFT_ENOTFOUND);

    /* Streaming through a descriptor. */
    int fd;
    uint64_t data_off;
    assert_int_equal(stor_snap_open_read(e->s, 5, &fd, &data_off, &m), 0);
    assert_int_equal(m.size, 10000);
    assert_int_equal(m.conf.n_voters, 3);
    assert_int_equal(read(fd, buf, 4), 4);
    assert_int_equal(buf[3], (uint8_t)(3 * 7 + 5));
    close(fd);

    /* One writer at a time; abort leaves nothing behind. */
    struct stor_snap_writer *w, *w2;
    assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
    assert_int_equal(stor_snap_begin(e->s, &m, &w2), CRAFT_EBUSY);
    stor_snap_abort(w);
    assert_int_equal(count_files(e->dir, "tmp-"), 0);

    take_snapshot(e, 7, 1, 100);
    take_snapshot(e, 9, 1, 0);
    assert_int_equal(count_files(e->dir, "snap-"), 2);
    assert_int_equal(stor_snap_read(e->s, 5, 0, buf, 1), CRAFT_ENOTFOUND);
    check_snapshot_data(e->s, 7, 100);

    env_reopen(e);
    assert_int_equal(e->p.snap.index, 9);
    assert_int_equal(e->p.snap.term, 1);
    assert_int_equal(e->p.snap.size, 0);
    assert_int_equal(e->p.snap.conf.n_voters, 3);
    assert_int_equal(e->p.snap.conf.voters[2], 3);
    assert_int_equal(e->p.snap.conf.n_learners, 1);
    assert_int_equal(e->p.snap.conf.learners[0], 9);
    check_log(&e->p, 1, 20, term1);
    check_snapshot_data(e->s, 7, 100);

    /* A leftover temporary file is removed at open. */
    assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
    assert_int_equal(stor_snap_write(w, "abc", 3), 0);
    env_reopen(e);
    assert_int_equal(count_files(e->dir, "tmp-"), 0);
}

static void test_snapshot_fork(void **state)
{
    struct env *e = *state;
    for (int inmem = 0; inmem < 2; inmem++) {
        e->o.inmem = inmem;
        env_reopen(e);
        struct raft_snap_meta m = {.index = 3, .term = 1};
        struct stor_snap_writer *w;
        assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The child writes the state machine, Redis-style. */
            int fd = stor_snap_writer_fd(w);
            char buf[64];
            for (int i = 0; i < 100; i++) {
                int n = snprintf(buf, sizeof buf, "key%d=value%d\n", i, i);
                if (write(fd, buf, (size_t)n) != n)
                    _exit(1);
            }
            _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        struct raft_snap_meta got;
        assert_int_equal(stor_snap_commit(w, &got), 0);
        char data[2048];
        assert_true(got.size > 1000 && got.size < sizeof data);
        assert_int_equal(stor_snap_read(e->s, 3, 0, data, got.size), 0);
        assert_memory_equal(data, "key0=value0\nkey1=value1\n", 24);
        assert_memory_equal(data + got.size - 14, "key99=value99\n", 14);
    }
}

static void test_snapshot_fallback(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 20, 1, NULL), 0);
    take_snapshot(e, 10, 1, 5000);
    take_snapshot(e, 15, 1, 5000);

    char path[256];
    snprintf(path, sizeof path, "%s/snap-%020d", e->dir, 15);
    size_t len;
    uint8_t *b = read_all(path, &len);
    b[STOR__SNAP_HDR + 1234] ^= 0x10;
    write_all(path, b, len);
    free(b);
    env_reopen(e);
    assert_int_equal(e->p.snap.index, 10);
    assert_true(e->cap.warns >= 2);
    check_log(&e->p, 1, 20, term1);
    check_snapshot_data(e->s, 10, 5000);
}

static void chunk_save(struct env *e, const struct raft_snap_meta *m,
                       const uint8_t *data, uint64_t off, uint32_t len,
                       bool last, int want)
{
    struct raft_snap_chunk c = {*m, off, len, data + off, last};
    assert_int_equal(stor_save(e->s, NULL, NULL, 0, &c), want);
}

static void test_snapshot_chunks(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 400;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 3};
    assert_int_equal(save_range(e->s, 1, 30, 1, &hs), 0);
    take_snapshot(e, 3, 1, 100);

    struct raft_snap_meta m = {.index = 100, .term = 3, .size = 3000};
    m.conf.n_voters = 1;
    m.conf.voters[0] = 7;
    uint8_t data[3000];
    for (size_t k = 0; k < sizeof data; k++)
        data[k] = (uint8_t)(k * 7 + 100);

    /* A chunk that does not continue a receive is refused. */
    chunk_save(e, &m, data, 1000, 1000, false, CRAFT_EINVAL);
    chunk_save(e, &m, data, 0, 1000, false, 0);
    chunk_save(e, &m, data, 2000, 1000, false, CRAFT_EINVAL);
    chunk_save(e, &m, data, 1000, 1000, false, 0);
    chunk_save(e, &m, data, 1000, 1000, false, 0); /* re-sent: fine */
    assert_int_equal(stor_last_index(e->s), 30);

    /* The last chunk, with the hard state and entries after it. */
    char b1[32], b2[32];
    struct raft_entry ents[2] = {mkent(101, 3, b1), mkent(102, 3, b2)};
    struct raft_snap_chunk c = {m, 2000, 1000, data + 2000, true};
    hs = (struct raft_hard_state){3, 7, 100};
    assert_int_equal(stor_save(e->s, &hs, ents, 2, &c), 0);
    assert_int_equal(stor_last_index(e->s), 102);
    check_snapshot_data(e->s, 100, 3000);
    check_snapshot_data(e->s, 3, 100); /* the one before is kept too */
    assert_int_equal(count_files(e->dir, "log-"), 1);

    env_reopen(e);
    assert_int_equal(e->p.snap.index, 100);
    assert_int_equal(e->p.snap.term, 3);
    assert_int_equal(e->p.snap.conf.voters[0], 7);
    assert_int_equal(e->p.hs.term, 3);
    assert_int_equal(e->p.hs.commit, 100);
    assert_int_equal(e->p.n_entries, 2);
    assert_int_equal(e->p.entries[0].index, 101);
    assert_int_equal(stor_last_index(e->s), 102);

    /* A last chunk whose size disagrees with the meta is refused. */
    m.index = 200;
    chunk_save(e, &m, data, 0, 1000, false, 0);
    m.size = 2500;
    chunk_save(e, &m, data, 1000, 1000, true, CRAFT_EINVAL);

    /* The newest snapshot corrupt, and the log reset past the older one:
     * nothing can be recovered without lost entries. */
    stor_close(e->s);
    e->s = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/snap-%020d", e->dir, 100);
    size_t len;
    uint8_t *b = read_all(path, &len);
    b[STOR__SNAP_HDR + 5] ^= 1;
    write_all(path, b, len);
    free(b);
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_int_equal(e->cap.warns, 1);
    assert_int_equal(e->cap.errors, 1);
}

static void test_inmem(void **state)
{
    struct env *e = *state;
    e->o.inmem = true;
    e->o.dir = NULL;
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 0);
    struct raft_hard_state hs = {2, 1, 0};
    assert_int_equal(save_range(e->s, 1, 10, 2, &hs), 0);
    assert_int_equal(save_range(e->s, 5, 6, 3, NULL), 0);
    assert_int_equal(stor_last_index(e->s), 6);
    assert_int_equal(save_range(e->s, 9, 9, 3, NULL), CRAFT_EINVAL);
    take_snapshot(e, 4, 2, 2500);
    check_snapshot_data(e->s, 4, 2500);
    assert_int_equal(stor_compact(e->s, 5), 0);

    struct raft_snap_meta m = {.index = 50, .term = 4, .size = 10};
    const uint8_t data[10] = "0123456789";
    chunk_save(e, &m, data, 0, 4, false, 0);
    chunk_save(e, &m, data, 4, 6, true, 0);
    assert_int_equal(stor_last_index(e->s), 50);
    uint8_t out[10];
    assert_int_equal(stor_snap_read(e->s, 50, 0, out, 10), 0);
    assert_memory_equal(out, data, 10);
    assert_int_equal(stor_snap_newest(e->s, &m), 0);
    assert_int_equal(m.index, 50);
    /* No directory was ever made. */
    assert_int_equal(access(e->dir, F_OK), -1);
    /* Two in-memory stores do not lock each other out. */
    struct stor *s2;
    struct raft_persisted p2;
    assert_int_equal(stor_open(&e->o, &s2, &p2), 0);
    stor_close(s2);
}

/* ---- torn tails and bit flips ---- */

/* Five saves of one entry each; returns the segment bytes, and where the
 * last record starts. */
static uint64_t path_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static uint8_t *five_records(struct env *e, char *seg, size_t seglen,
                             size_t *len, size_t *last_off)
{
    fx.nosync = true;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 4, 1, NULL), 0);
    /* Closed, the segment ends at its last record (no preallocation). */
    env_reopen(e);
    last_segment(e->dir, seg, seglen);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    *last_off = (size_t)st.st_size;
    assert_int_equal(save_range(e->s, 5, 5, 1, NULL), 0);
    stor_close(e->s);
    e->s = NULL;
    return read_all(seg, len);
}

/* After damage at the tail: entries 1..4 survive, 5 is gone, and a new
 * write lands and reads back. */
static void check_recovers_to_4(struct env *e)
{
    env_reopen(e);
    check_log(&e->p, 1, 4, term1);
    assert_int_equal(save_range(e->s, 5, 6, 2, NULL), 0);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 6);
    assert_int_equal(e->p.entries[5].term, 2);
    assert_int_equal(e->cap.warns, 0);
}

static void test_torn_tail_every_offset(void **state)
{
    struct env *e = *state;
    char seg[256];
    size_t len, last_off;
    uint8_t *orig = five_records(e, seg, sizeof seg, &len, &last_off);
    assert_true(len - last_off > STOR__REC_HDR);
    for (size_t cut = last_off; cut < len; cut++) {
        write_all(seg, orig, cut);
        env_reopen(e);
        check_log(&e->p, 1, 4, term1);
        if (cut > last_off) {
            assert_int_equal(e->cap.warns, 1);
            assert_non_null(strstr(e->cap.last, "torn tail"));
        } else {
            assert_int_equal(e->cap.warns, 0);
        }
        check_recovers_to_4(e);
        unlink(seg); /* the next round writes it afresh */
    }
    /* Zeroes after the last record, as much as preallocation leaves: cut
     * without a WARN. More (a file extended but never written): a torn
     * tail. */
    uint8_t *z = calloc(1, len + STOR__PREALLOC + 1);
    memcpy(z, orig, len);
    write_all(seg, z, len + STOR__PREALLOC);
    env_reopen(e);
    check_log(&e->p, 1, 5, term1);
    assert_int_equal(e->cap.warns, 0);
    assert_non_null(strstr(e->cap.infos, "preallocated space"));
    assert_int_equal(path_size(seg), len);
    write_all(seg, z, len + STOR__PREALLOC + 1);
    env_reopen(e);
    check_log(&e->p, 1, 5, term1);
    assert_int_equal(e->cap.warns, 1);
    assert_non_null(strstr(e->cap.last, "torn tail"));
    free(z);
    free(orig);
}

static void test_bitflips(void **state)
{
    struct env *e = *state;
    char seg[256];
    size_t len, last_off;
    uint8_t *orig = five_records(e, seg, sizeof seg, &len, &last_off);
    uint8_t *b = malloc(len);

    /* Any bit of the last record: a torn tail. */
    for (size_t bit = 0; bit < (len - last_off) * 8; bit++) {
        memcpy(b, orig, len);
        b[last_off + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        write_all(seg, b, len);
        env_reopen(e);
        check_log(&e->p, 1, 4, term1);
        assert_int_equal(e->cap.warns, 1);
        assert_int_equal(e->cap.errors, 0);
    }
    /* A bit of the OPEN record (synced at creation): refused. */
    for (size_t off = STOR__SEG_HDR; off < STOR__SEG_CREATE; off++) {
        memcpy(b, orig, len);
        b[off] ^= (uint8_t)(1u << (off % 8));
        write_all(seg, b, len);
        assert_int_equal(env_open(e), CRAFT_ECORRUPT);
        assert_int_equal(e->cap.errors, 1);
        assert_non_null(strstr(e->cap.last, "offset 48"));
    }
    /* A bit of an earlier record, with valid ones after it: refused. */
    for (size_t off = STOR__SEG_CREATE; off < last_off; off += 3) {
        memcpy(b, orig, len);
        b[off] ^= (uint8_t)(1u << (off % 8));
        write_all(seg, b, len);
        assert_int_equal(env_open(e), CRAFT_ECORRUPT);
        assert_int_equal(e->cap.errors, 1);
        assert_non_null(strstr(e->cap.last, "followed by a valid record"));
    }
    /* The segment header: refused too (it is not zero, so not torn). */
    memcpy(b, orig, len);
    b[20] ^= 4;
    write_all(seg, b, len);
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    /* A header torn at creation (all zero), with the state file as it was
     * before the segment existed: the segment is dropped. */
    memset(b, 0, len);
    write_all(seg, b, 30);
    write_state(e->dir, &(struct stor__state){.gen = 1});
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(e->cap.warns, 1);
    free(b);
    free(orig);
}

/* Hand-made segment files, to reach states the API never writes. */
static size_t put_rec_ents(uint8_t *out, uint64_t salt, uint64_t first,
                           uint32_t count)
{
    uint8_t *p = out + STOR__REC_HDR;
    craft_put64(p, first);
    craft_put32(p + 8, count);
    craft_put32(p + 12, 0);
    p += STOR__ENTS_HDR;
    for (uint32_t i = 0; i < count; i++, p += STOR__ENT_HDR) {
        memset(p, 0, STOR__ENT_HDR);
        craft_put64(p, 1);
    }
    uint32_t len = (uint32_t)(p - out - STOR__REC_HDR);
    stor__rec_seal(out, STOR__REC_ENTRIES, len, salt);
    return STOR__REC_HDR + len;
}

/* The size of segment seq (any first index) in dir, 0 if there is none. */
static uint64_t segment_size(const char *dir, uint64_t seq)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t size = 0, q, f;
    while (d && (de = readdir(d)) != NULL) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stor__seg_parse(de->d_name, &q, &f) && q == seq &&
            stat(path, &st) == 0)
            size = (uint64_t)st.st_size;
    }
    if (d)
        closedir(d);
    return size;
}

/* A segment of format 2: header, OPEN record (the previous segment's size
 * as found in dir), then entries records. */
static void write_segment(const char *dir, uint64_t seq, uint64_t first,
                          const uint64_t *firsts, const uint32_t *counts,
                          size_t n)
{
    uint8_t buf[4096];
    uint64_t salt = 77 + seq;
    stor__seg_header_encode(buf, seq, salt, first);
    struct stor__open o = {.prev_size = seq > 1 ? segment_size(dir, seq - 1)
                                                : 0};
    stor__open_encode(buf + STOR__SEG_HDR + STOR__REC_HDR, &o);
    stor__rec_seal(buf + STOR__SEG_HDR, STOR__REC_OPEN, STOR__OPEN_LEN, salt);
    size_t off = STOR__SEG_CREATE;
    for (size_t i = 0; i < n; i++)
        off += put_rec_ents(buf + off, salt, firsts[i], counts[i]);
    write_segment_file(dir, seq, first, buf, off);
}

static void test_corruption_refused(void **state)
{
    struct env *e = *state;
    assert_int_equal(mkdir(e->dir, 0700), 0);
    write_state(e->dir, &(struct stor__state){.gen = 1});

    /* A gap in indexes inside one segment. */
    uint64_t f1[] = {1, 5};
    uint32_t c1[] = {2, 2};
    write_segment(e->dir, 1, 1, f1, c1, 2);
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_non_null(strstr(e->cap.last, "gap"));

    /* Consecutive segments that join up are fine. */
    uint64_t f2[] = {3};
    uint32_t c2[] = {2};
    write_segment(e->dir, 1, 1, f1, c1, 1);
    write_segment(e->dir, 2, 3, f2, c2, 1);
    write_segment(e->dir, 3, 5, (uint64_t[]){5}, c2, 1);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 6);
    stor_close(e->s);
    e->s = NULL;

    /* A missing middle segment. */
    char name[64], path[256];
    stor__seg_name(name, sizeof name, 2, 3);
    snprintf(path, sizeof path, "%s/%s", e->dir, name);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_non_null(strstr(e->cap.last, "jumps from 1 to 3"));

    /* Damage in a segment that is not the last, even at its end. */
    write_segment(e->dir, 2, 3, f2, c2, 1);
    size_t len;
    uint8_t *b = read_all(path, &len);
    b[len - 1] ^= 1;
    write_all(path, b, len);
    free(b);
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_non_null(strstr(e->cap.last, name));
}

/* ---- injected errors ---- */

static void test_write_errors(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 3, 1, NULL), 0);

    fx.pwrite = (struct fault){0, EIO};
    assert_int_equal(save_range(e->s, 4, 4, 1, NULL), CRAFT_EIO);
    fx.pwrite = (struct fault){0, ENOSPC};
    assert_int_equal(save_range(e->s, 4, 4, 1, NULL), CRAFT_ENOSPACE);
    assert_int_equal(stor_last_index(e->s), 3);

    /* Short writes are continued. */
    fx.pwrite = (struct fault){-1, 0};
    fx.half = true;
    assert_int_equal(save_range(e->s, 4, 5, 1, NULL), 0);
    /* A short write, then no space: the partial batch is cut off again. */
    fx.pwrite = (struct fault){1, ENOSPC};
    assert_int_equal(save_range(e->s, 6, 9, 1, NULL), CRAFT_ENOSPACE);
    faults_clear();
    /* The store was not poisoned: writes go on. */
    assert_int_equal(save_range(e->s, 6, 6, 1, NULL), 0);
    env_reopen(e);
    check_log(&e->p, 1, 6, term1);
    assert_int_equal(e->cap.warns, 0);

    /* A partial write that cannot be cut off: stop writing. */
    fx.pwrite = (struct fault){1, EIO};
    fx.half = true;
    fx.ftruncate = (struct fault){0, EIO};
    assert_int_equal(save_range(e->s, 7, 9, 1, NULL), CRAFT_EIO);
    faults_clear();
    assert_int_equal(save_range(e->s, 7, 7, 1, NULL), CRAFT_EIO);
    assert_int_equal(e->cap.errors, 1);
}

static void test_fsync_errors(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 3, 1, NULL), 0);
    fx.fdatasync = (struct fault){0, EIO};
    assert_int_equal(save_range(e->s, 4, 4, 1, NULL), CRAFT_EIO);
    assert_int_equal(e->cap.errors, 1);
    faults_clear();
    /* fsyncgate: no retry can be trusted; everything refuses. */
    assert_int_equal(save_range(e->s, 4, 4, 1, NULL), CRAFT_EIO);
    struct raft_hard_state hs = {5, 0, 0};
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), CRAFT_EIO);
    assert_int_equal(stor_compact(e->s, 1), CRAFT_EIO);
    struct raft_snap_meta m = {.index = 2, .term = 1};
    struct stor_snap_writer *w;
    assert_int_equal(stor_snap_begin(e->s, &m, &w), CRAFT_EIO);
    env_reopen(e);
    assert_true(e->p.n_entries == 3 || e->p.n_entries == 4);

    /* Directory fsync failing while a new segment is made. */
    e->o.segment_bytes = 200;
    env_reopen(e);
    fx.fsync = (struct fault){0, EIO};
    int err = 0;
    for (uint64_t i = 5; err == 0 && i < 50; i++)
        err = save_range(e->s, i, i, 1, NULL);
    assert_int_equal(err, CRAFT_EIO);
    faults_clear();
    assert_int_equal(save_range(e->s, 50, 50, 1, NULL), CRAFT_EIO);

    /* A snapshot commit whose fdatasync fails leaves no file behind. */
    e->o.segment_bytes = 0;
    env_reopen(e);
    assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
    assert_int_equal(stor_snap_write(w, "abc", 3), 0);
    fx.fdatasync = (struct fault){0, EIO};
    assert_int_equal(stor_snap_commit(w, NULL), CRAFT_EIO);
    faults_clear();
    assert_int_equal(count_files(e->dir, "tmp-"), 0);
    assert_int_equal(count_files(e->dir, "snap-"), 0);

    /* A read error at start-up is an error, not corruption. */
    stor_close(e->s);
    e->s = NULL;
    fx.pread = (struct fault){0, EIO};
    assert_int_equal(env_open(e), CRAFT_EIO);
}

/* ---- crashes ---- */

static void crash(struct env *e)
{
    stor_close(e->s);
    e->s = NULL;
    faults_clear();
    model_crash();
}

static void test_crash_drops_unsynced(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    model_start(e->dir);
    struct raft_hard_state hs = {1, 1, 0};
    for (uint64_t i = 1; i <= 10; i++) {
        hs.commit = i - 1;
        assert_int_equal(save_range(e->s, i, i, 1, &hs), 0);
    }
    /* The write lands in the page cache, the machine dies before sync. */
    fx.fdatasync = (struct fault){0, EIO};
    fx.fsync = (struct fault){0, EIO};
    hs.commit = 10;
    assert_int_not_equal(save_range(e->s, 11, 11, 1, &hs), 0);
    crash(e);
    env_reopen(e);
    check_log(&e->p, 1, 10, term1);
    assert_int_equal(e->p.hs.commit, 9);

    /* Crash while a new segment is being created (its name never made it
     * to disk). Whatever survives, start-up succeeds with 1..10 intact. */
    e->o.segment_bytes = 300;
    env_reopen(e);
    model_start(e->dir);
    fx.fsync = (struct fault){0, EIO};
    int err = 0;
    uint64_t i = 11;
    while (err == 0)
        err = save_range(e->s, i, i, 1, NULL), i++;
    crash(e);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, i - 2);
    check_log(&e->p, 1, i - 2, term1);

    /* Crash between a snapshot's rename and its directory fsync. */
    model_start(e->dir);
    fx.fsync = (struct fault){0, EIO};
    struct raft_snap_meta m = {.index = 5, .term = 1};
    struct stor_snap_writer *w;
    assert_int_equal(stor_snap_begin(e->s, &m, &w), 0);
    assert_int_equal(stor_snap_write(w, "hello", 5), 0);
    assert_int_equal(stor_snap_commit(w, NULL), CRAFT_EIO);
    crash(e);
    env_reopen(e);
    assert_int_equal(e->p.snap.index, 0);

    /* Crash in the middle of a chunked receive: the partial file goes. */
    model_start(e->dir);
    struct raft_snap_meta rm = {.index = 500, .term = 2, .size = 20};
    const uint8_t data[20] = "abcdefghijklmnopqrst";
    chunk_save(e, &rm, data, 0, 10, false, 0);
    crash(e);
    env_reopen(e);
    assert_int_equal(e->p.snap.index, 0);
    assert_int_equal(count_files(e->dir, "tmp-"), 0);

    /* And a completed one survives with its log reset. */
    model_start(e->dir);
    chunk_save(e, &rm, data, 0, 10, false, 0);
    chunk_save(e, &rm, data, 10, 10, true, 0);
    crash(e);
    env_reopen(e);
    assert_int_equal(e->p.snap.index, 500);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(stor_last_index(e->s), 500);
}

/* A crash after the snapshot was renamed but before the log reset record:
 * the log, which does not hold the snapshot's entry, is discarded. */
static void test_snapshot_without_reset(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 1, 8, 1, NULL), 0);
    model_start(e->dir);
    struct raft_snap_meta rm = {.index = 40, .term = 2, .size = 4};
    /* The third pwrite fails: after the last chunk's data and the snapshot
     * header, the one creating the segment with the log reset record. */
    chunk_save(e, &rm, (const uint8_t *)"wxyz", 0, 4, false, 0);
    fx.pwrite = (struct fault){2, EIO};
    chunk_save(e, &rm, (const uint8_t *)"wxyz", 0, 4, true, CRAFT_EIO);
    crash(e);
    env_reopen(e);
    assert_int_equal(e->p.snap.index, 40);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(stor_last_index(e->s), 40);
}

static uint64_t term2(uint64_t i)
{
    return 2;
}

static void check_snapshot_bytes(struct stor *s, uint64_t index,
                                 const uint8_t *want, size_t len)
{
    uint8_t buf[64];
    assert_true(len <= sizeof buf);
    assert_int_equal(stor_snap_read(s, index, 0, buf, len), 0);
    assert_memory_equal(buf, want, len);
}

/* A log segment's path and bytes, kept aside to put back after a "crash". */
struct seg_copy {
    char path[256];
    uint8_t *data;
    size_t len;
};

static int seg_copy_cmp(const void *a, const void *b)
{
    return strcmp(((const struct seg_copy *)a)->path,
                  ((const struct seg_copy *)b)->path);
}

/* All n segments of dir, oldest first (the names sort by sequence). */
static void copy_segments(const char *dir, struct seg_copy *out, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    size_t k = 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "log-", 4) != 0)
            continue;
        assert_true(k < n);
        snprintf(out[k].path, sizeof out[k].path, "%s/%.63s", dir,
                 de->d_name);
        out[k].data = read_all(out[k].path, &out[k].len);
        k++;
    }
    closedir(d);
    assert_int_equal(k, n);
    qsort(out, n, sizeof *out, seg_copy_cmp);
}

/* The same crash, reached through the internal receive step: the snapshot
 * file is renamed into place, the log reset record is never written. The
 * first reopen must write that reset itself, or the entries saved next land
 * behind the stale log: with a log shorter than the snapshot (1..5 under
 * snapshot 10) the third open saw a gap; with a log of another term (1..12
 * in term 1 under snapshot 10 of term 2) the entries 11..13 saved after it
 * were silently discarded with that log. */
static void snapshot_renamed_no_reset(struct env *e, uint64_t n_log)
{
    env_reopen(e);
    struct raft_hard_state hs = {2, 0, 0};
    assert_int_equal(save_range(e->s, 1, n_log, 1, &hs), 0);
    const uint8_t data[4] = {1, 2, 3, 4};
    struct raft_snap_chunk c = {.meta = {.index = 10, .term = 2, .size = 4},
                                .len = 4, .data = data, .last = true};
    c.meta.conf.n_voters = 1;
    c.meta.conf.voters[0] = 1;
    bool committed = false;
    assert_int_equal(stor__snap_recv(e->s, &c, &committed), 0);
    assert_true(committed);
    stor_close(e->s); /* the crash: no reset record */
    e->s = NULL;

    env_reopen(e);
    assert_int_equal(e->p.snap.index, 10);
    assert_int_equal(e->p.snap.term, 2);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(stor_last_index(e->s), 10);
    assert_int_equal(save_range(e->s, 11, 13, 2, NULL), 0);
    assert_int_equal(stor_last_index(e->s), 13);

    env_reopen(e);
    assert_int_equal(e->p.snap.index, 10);
    assert_int_equal(e->p.hs.term, 2);
    check_log(&e->p, 11, 13, term2);
    assert_int_equal(stor_last_index(e->s), 13);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);
    check_snapshot_bytes(e->s, 10, data, sizeof data);
}

static void test_snapshot_renamed_short_log(void **state)
{
    snapshot_renamed_no_reset(*state, 5);
}

static void test_snapshot_renamed_other_term(void **state)
{
    snapshot_renamed_no_reset(*state, 12);
}

/* Power loss while a last snapshot chunk was saved together with entries
 * the log already held (10 is the snapshot's last entry; 11..12 re-sent):
 * the new segment kept its RESET record but its ENTRIES record is torn, and
 * the older segments, holding the acknowledged 11..12, were not deleted yet
 * (whole or only a prefix of them). The reset must not drop 11..12. */
static void test_reset_batch_torn(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 150; /* one segment per save below */
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    for (uint64_t i = 1; i <= 12; i += 3)
        assert_int_equal(save_range(e->s, i, i + 2, 1, &hs), 0);
    size_t n_old = (size_t)count_files(e->dir, "log-");
    assert_true(n_old >= 3);
    struct seg_copy old[8];
    assert_true(n_old <= 8);
    copy_segments(e->dir, old, n_old);

    char b1[32], b2[32];
    struct raft_entry ents[2] = {mkent(11, 1, b1), mkent(12, 1, b2)};
    const uint8_t data[4] = "snap";
    struct raft_snap_chunk c = {.meta = {.index = 10, .term = 1, .size = 4},
                                .len = 4, .data = data, .last = true};
    hs.commit = 10;
    assert_int_equal(stor_save(e->s, &hs, ents, 2, &c), 0);
    assert_int_equal(count_files(e->dir, "log-"), 1); /* old ones deleted */
    stor_close(e->s);
    e->s = NULL;
    char seg[256];
    size_t len;
    last_segment(e->dir, seg, sizeof seg);
    uint8_t *b = read_all(seg, &len);

    /* [header][OPEN][RESET][ENTRIES 11..12][hard state] */
    size_t ents_off = STOR__SEG_CREATE + (STOR__REC_HDR + 16);
    size_t ents_end = len - (STOR__REC_HDR + 24);
    assert_true(ents_end > ents_off + STOR__REC_HDR);
    for (size_t gone = 0; gone < n_old; gone++) {
        for (size_t cut = ents_off; cut < ents_end; cut++) {
            for (size_t k = 0; k < n_old; k++) {
                if (k >= gone)
                    write_all(old[k].path, old[k].data, old[k].len);
                else
                    unlink(old[k].path);
            }
            write_all(seg, b, cut);
            env_reopen(e);
            assert_int_equal(e->p.snap.index, 10);
            assert_int_equal(e->p.hs.commit, 0);
            check_log(&e->p, 11, 12, term1);
            assert_int_equal(stor_last_index(e->s), 12);
            assert_int_equal(e->cap.errors, 0);
        }
    }
    /* The log goes on from there. */
    assert_int_equal(save_range(e->s, 13, 13, 1, NULL), 0);
    env_reopen(e);
    check_log(&e->p, 11, 13, term1);
    free(b);
    for (size_t k = 0; k < n_old; k++)
        free(old[k].data);
}

static void test_lock(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct stor *s2 = NULL;
    struct raft_persisted p2;
    assert_int_equal(stor_open(&e->o, &s2, &p2), CRAFT_ELOCKED);
    assert_null(s2);
    stor_close(e->s);
    e->s = NULL;
    assert_int_equal(stor_open(&e->o, &s2, &p2), 0);
    stor_close(s2);

    /* In another process too. */
    env_reopen(e);
    pid_t pid = fork();
    if (pid == 0) {
        struct stor *s3;
        struct stor_opts o = e->o;
        o.log = NULL;
        _exit(stor_open(&o, &s3, &p2) == CRAFT_ELOCKED ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* With lock_wait_ms, a lock held by someone else is tried again: one held
 * past the wait is refused after it, one let go within it (a killed
 * craftd's snapshot writer exiting) is taken. */
static void test_lock_wait(void **state)
{
    struct env *e = *state;
    env_reopen(e); /* e->s holds the lock */
    struct stor_opts o = e->o;
    o.log = NULL;
    o.lock_wait_ms = 60;
    struct stor *s2 = NULL;
    struct raft_persisted p2;
    uint64_t t0 = mono_ms();
    assert_int_equal(stor_open(&o, &s2, &p2), CRAFT_ELOCKED);
    assert_true(mono_ms() - t0 >= 60);
    assert_null(s2);
    stor_close(e->s);
    e->s = NULL;

    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) { /* holds the lock for 200 ms, then exits without closing */
        struct stor *s3;
        o.lock_wait_ms = 0;
        if (stor_open(&o, &s3, &p2) != 0 || write(ready[1], "x", 1) != 1)
            _exit(1);
        usleep(200 * 1000);
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    o.lock_wait_ms = 0;
    assert_int_equal(stor_open(&o, &s2, &p2), CRAFT_ELOCKED); /* at once: held */
    o.lock_wait_ms = 10000;
    t0 = mono_ms();
    assert_int_equal(stor_open(&o, &s2, &p2), 0);
    uint64_t waited = mono_ms() - t0;
    assert_in_range(waited, 100, 9000); /* the child's 200 ms, less what passed */
    stor_close(s2);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(ready[1]);
    env_reopen(e);
}

/* ---- disks that lie: damage that a crash cannot explain is refused ---- */

static void truncate_path(const char *path, uint64_t len)
{
    assert_int_equal(truncate(path, (off_t)len), 0);
}

/* Overwrite [from, to) of path with byte c. */
static void fill_path(const char *path, uint64_t from, uint64_t to, int c)
{
    size_t len;
    uint8_t *b = read_all(path, &len);
    assert_true(from <= to && to <= len);
    memset(b + from, c, to - from);
    write_all(path, b, len);
    free(b);
}

/* Append n bytes of c to path. */
static void append_path(const char *path, size_t n, int c)
{
    uint8_t *z = malloc(n + 1);
    memset(z, c, n);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, z, n), (ssize_t)n);
    close(fd);
    free(z);
}

/* The state file's newest valid slot. */
static struct stor__state read_state(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, STOR__STATE_NAME);
    size_t len;
    uint8_t *b = read_all(path, &len);
    assert_int_equal(len, STOR__STATE_BYTES);
    struct stor__state st[2];
    const char *w0 = stor__state_decode(b, 0, &st[0]);
    const char *w1 = stor__state_decode(b + STOR__STATE_SLOT, 1, &st[1]);
    free(b);
    assert_true(w0 == NULL || w1 == NULL);
    if (w0)
        return st[1];
    if (w1)
        return st[0];
    return st[1].gen > st[0].gen ? st[1] : st[0];
}

/* The refusal names the data directory, the file and an offset, and says
 * how to repair. */
static void check_refusal(struct env *e, const char *file, const char *what)
{
    assert_int_equal(env_open(e), CRAFT_ECORRUPT);
    assert_int_equal(e->cap.errors, 1);
    const char *m = e->cap.last;
    if (!strstr(m, e->dir) || !strstr(m, file) || !strstr(m, "offset ") ||
        !strstr(m, what) || !strstr(m, "-join <a member>") ||
        !strstr(m, "fresh incarnation"))
        fail_msg("refusal lacks '%s' or '%s': %s", file, what, m);
}

static const char *base_name(const char *path)
{
    const char *p = strrchr(path, '/');
    return p ? p + 1 : path;
}

/* The case: the newest segment zero-filled, header and all (a write
 * the disk acknowledged and lost). Its hard state is gone with it, so only
 * the length of the file tells that its creation had been synced. */
static void test_zeroed_newest_segment(void **state)
{
    struct env *e = *state;
    for (int multi = 0; multi < 2; multi++) {
        e->o.segment_bytes = multi ? 700 : 0;
        env_reopen(e);
        struct raft_hard_state hs = {1, 1, 0};
        for (uint64_t i = 1; i <= 40; i++) {
            hs.commit = i - 1;
            assert_int_equal(save_range(e->s, i, i, 1, &hs), 0);
        }
        assert_true(multi ? count_files(e->dir, "log-") >= 3
                          : count_files(e->dir, "log-") == 1);
        stor_close(e->s);
        e->s = NULL;
        char seg[256];
        last_segment(e->dir, seg, sizeof seg);
        uint64_t len = path_size(seg);
        assert_true(len > STOR__SEG_CREATE);
        fill_path(seg, 0, len, 0);
        check_refusal(e, base_name(seg), "longer than the segment's "
                                         "creation write");
        assert_non_null(strstr(e->cap.last, "offset 0"));
        assert_int_equal(path_size(seg), len); /* nothing was cut */
        nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* The creation write of segment seq: header and OPEN record. */
static void creation_bytes(uint8_t out[STOR__SEG_CREATE], uint64_t seq,
                           uint64_t first, uint64_t prev_size)
{
    stor__seg_header_encode(out, seq, 1234, first);
    struct stor__open o = {.hs = {1, 1, 3}, .prev_size = prev_size};
    stor__open_encode(out + STOR__SEG_HDR + STOR__REC_HDR, &o);
    stor__rec_seal(out + STOR__SEG_HDR, STOR__REC_OPEN, STOR__OPEN_LEN, 1234);
}

/* A crash while segment 2 was being created leaves a file no longer than
 * its creation write, of any content: removed with a WARN, and the log goes
 * on. A longer one, or one the state file names, is refused. */
static void test_torn_creation(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 3};
    assert_int_equal(save_range(e->s, 1, 5, 1, &hs), 0);
    stor_close(e->s);
    e->s = NULL;
    char seg1[256], seg2[256], name2[64];
    last_segment(e->dir, seg1, sizeof seg1);
    stor__seg_name(name2, sizeof name2, 2, 6);
    snprintf(seg2, sizeof seg2, "%s/%s", e->dir, name2);
    uint8_t good[STOR__SEG_CREATE], b[STOR__SEG_CREATE + 1];
    creation_bytes(good, 2, 6, path_size(seg1));

    for (size_t k = 0; k <= STOR__SEG_CREATE; k++) {
        for (int fill = 0; fill < 3; fill++) {
            if (fill == 0)
                memcpy(b, good, k);
            else
                memset(b, fill == 1 ? 0 : 0xff, k);
            write_all(seg2, b, k);
            if (fill == 0 && k == STOR__SEG_CREATE) {
                env_reopen(e); /* complete: an empty segment, kept */
                assert_int_equal(e->cap.warns, 0);
                assert_int_equal(count_files(e->dir, "log-"), 2);
                continue;
            }
            env_reopen(e);
            assert_int_equal(e->cap.warns, 1);
            assert_int_equal(e->cap.errors, 0);
            assert_non_null(strstr(e->cap.last, "removing it"));
            check_log(&e->p, 1, 5, term1);
            assert_int_equal(e->p.hs.commit, 3);
            assert_int_equal(access(seg2, F_OK), -1);
        }
    }
    /* One byte more than the creation write: that write had been synced
     * before anything else, so this is damage. */
    memset(b, 0, sizeof b);
    write_all(seg2, b, STOR__SEG_CREATE + 1);
    check_refusal(e, name2, "longer than the segment's creation write");
    /* No longer than it, but the state file names segment 2: refused. */
    char stpath[256];
    snprintf(stpath, sizeof stpath, "%s/%s", e->dir, STOR__STATE_NAME);
    size_t stlen;
    uint8_t *stsave = read_all(stpath, &stlen);
    struct stor__state st = read_state(e->dir);
    st.gen++;
    st.seg_seq = 2;
    st.seg_off = STOR__SEG_CREATE;
    write_state(e->dir, &st);
    write_all(seg2, b, 40);
    check_refusal(e, name2, "its creation had been synced");
    write_all(stpath, stsave, stlen);
    free(stsave);
    assert_int_equal(unlink(seg2), 0);

    /* The log goes on, in a new segment 2. */
    e->o.segment_bytes = 100;
    env_reopen(e);
    assert_int_equal(save_range(e->s, 6, 6, 1, NULL), 0);
    assert_int_equal(count_files(e->dir, "log-"), 2);
    env_reopen(e);
    check_log(&e->p, 1, 6, term1);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);
}

/* Invalid bytes at the end of the last segment: a torn tail only if no
 * longer than one write step (or than the record its header claims). */
static void test_tail_bound(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 2};
    assert_int_equal(save_range(e->s, 1, 4, 1, &hs), 0);
    stor_close(e->s);
    e->s = NULL;
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t len = path_size(seg);

    /* Zeroes of exactly one step: torn, cut. */
    append_path(seg, STOR__WRITE_MAX, 0);
    env_reopen(e);
    check_log(&e->p, 1, 4, term1);
    assert_int_equal(e->cap.warns, 1);
    assert_non_null(strstr(e->cap.last, "torn tail"));
    stor_close(e->s);
    e->s = NULL;
    assert_int_equal(path_size(seg), len);

    /* One byte more: damage. */
    append_path(seg, STOR__WRITE_MAX + 1, 0);
    check_refusal(e, base_name(seg), "more than one write step");
    assert_int_equal(path_size(seg), len + STOR__WRITE_MAX + 1);

    /* A torn record longer than a step (one huge entry, written alone):
     * its header claims the length, and the tail is within it. */
    truncate_path(seg, len);
    uint8_t h[STOR__REC_HDR] = {0};
    craft_put32(h + 4, STOR__WRITE_MAX + 1000);
    h[8] = STOR__REC_ENTRIES;
    int fd = open(seg, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
    close(fd);
    append_path(seg, STOR__WRITE_MAX + 500, 0x55);
    env_reopen(e);
    check_log(&e->p, 1, 4, term1);
    assert_int_equal(e->cap.warns, 1);
    stor_close(e->s);
    e->s = NULL;
    /* The same bytes under a header claiming a short record: damage. */
    craft_put32(h + 4, 100);
    fd = open(seg, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
    close(fd);
    append_path(seg, STOR__WRITE_MAX + 500, 0x55);
    check_refusal(e, base_name(seg), "more than one write step");
}

/* Zeroes or a cut below the length the state file says was durable: the
 * disk lost synced writes, even if the rest looks like a torn tail. */
static void test_state_position(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    assert_int_equal(save_range(e->s, 1, 3, 1, &hs), 0);
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t len3 = e->s->seg_size; /* the file is longer: preallocated */
    fx.now_ms += STOR_STATE_REFRESH_MS; /* the next save refreshes it */
    hs.commit = 3;
    assert_int_equal(save_range(e->s, 4, 6, 1, &hs), 0);
    uint64_t len6 = e->s->seg_size;
    assert_int_equal(read_state(e->dir).seg_off, len6);
    assert_int_equal(read_state(e->dir).hs.commit, 3);
    assert_int_equal(save_range(e->s, 7, 7, 1, NULL), 0);
    stor_close(e->s);
    e->s = NULL;
    uint64_t len7 = path_size(seg);
    size_t olen;
    uint8_t *orig = read_all(seg, &olen);

    /* The unsynced-looking end after the durable length: a torn tail, or
     * preallocated space never written if it is zeros. */
    fill_path(seg, len6, len7, 0xa5);
    env_reopen(e);
    check_log(&e->p, 1, 6, term1);
    assert_int_equal(e->cap.warns, 1);
    assert_non_null(strstr(e->cap.last, "torn tail"));
    write_all(seg, orig, olen);
    fill_path(seg, len6, len7, 0);
    env_reopen(e);
    check_log(&e->p, 1, 6, term1);
    assert_int_equal(e->cap.warns, 0);
    assert_non_null(strstr(e->cap.infos, "preallocated space"));
    stor_close(e->s);
    e->s = NULL;

    /* Zeroes from before it: refused. */
    write_all(seg, orig, olen);
    fill_path(seg, len3, len7, 0);
    check_refusal(e, base_name(seg), "durable up to offset");
    /* Cut at a record boundary before it: refused. */
    write_all(seg, orig, olen);
    truncate_path(seg, len3);
    check_refusal(e, base_name(seg), "it was truncated");
    free(orig);
}

/* ---- preallocation ---- */

enum { BLOB = 8000 };

/* Save entries from..to, each BLOB bytes (a pattern of its index), in one
 * save. */
static int save_blobs(struct stor *s, uint64_t from, uint64_t to)
{
    size_t n = to - from + 1;
    struct raft_entry *ents = calloc(n, sizeof *ents);
    uint8_t *data = malloc(n * BLOB);
    assert_true(ents && data);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < BLOB; k++)
            data[i * BLOB + k] = (uint8_t)((from + i) * 31 + k);
        ents[i] = (struct raft_entry){1, from + i, RAFT_ENTRY_NORMAL, BLOB,
                                      data + i * BLOB};
    }
    int err = stor_save(s, NULL, ents, n, NULL);
    free(ents);
    free(data);
    return err;
}

static void check_blobs(const struct raft_persisted *p, uint64_t last)
{
    assert_int_equal(p->n_entries, last);
    for (size_t i = 0; i < p->n_entries; i++) {
        const struct raft_entry *x = &p->entries[i];
        assert_int_equal(x->index, i + 1);
        assert_int_equal(x->len, BLOB);
        for (size_t k = 0; k < BLOB; k += 997)
            assert_int_equal(x->data[k], (uint8_t)(x->index * 31 + k));
    }
}

/* The current segment's file: at least its records, at most a
 * preallocation chunk more. */
static void check_alloc_bound(struct env *e)
{
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t size = path_size(seg);
    if (size < e->s->seg_size || size > e->s->seg_size + STOR__PREALLOC)
        fail_msg("%s: %" PRIu64 " bytes for %" PRIu64 " of records", seg,
                 size, e->s->seg_size);
}

/* The segment being written is allocated a chunk ahead of its records, so
 * that its syncs commit no new length; each closed segment ends at its last
 * record (the next one's OPEN record says so); after a crash the zeros
 * behind the records are cut without a WARN. */
static void test_preallocation(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 4 * STOR__PREALLOC;
    fx.nosync = true;
    env_reopen(e);
    fx.n_fallocate = 0;
    char seg[256];
    assert_int_equal(save_blobs(e->s, 1, 1), 0);
    last_segment(e->dir, seg, sizeof seg);
    assert_int_equal(fx.n_fallocate, 1);
    assert_int_equal(path_size(seg), STOR__SEG_CREATE + STOR__PREALLOC);
    assert_true(e->s->seg_size < path_size(seg));

    /* About 12 MiB in saves of 1 to 4 entries: three roll-overs. */
    uint64_t last = 1;
    while (count_files(e->dir, "log-") < 4) {
        uint64_t to = last + 1 + last % 4;
        assert_int_equal(save_blobs(e->s, last + 1, to), 0);
        last = to;
        check_alloc_bound(e);
    }
    /* A chunk per MiB written, and up to one more per segment (each
     * starts its own, and the last of a segment is clipped at its end). */
    uint64_t mib = last * BLOB >> 20;
    if (fx.n_fallocate < mib || fx.n_fallocate > mib + 2 * 4)
        fail_msg("%u preallocations for %" PRIu64 " MiB", fx.n_fallocate, mib);
    env_reopen(e); /* refused if a closed segment had kept its zeros */
    check_blobs(&e->p, last);
    assert_int_equal(e->cap.warns, 0);
    assert_null(strstr(e->cap.infos, "preallocated space"));
    last_segment(e->dir, seg, sizeof seg);
    assert_int_equal(path_size(seg), e->s->seg_size); /* cut at close */

    /* Power loss after a few saves: the synced file ends in zeros. */
    model_start(e->dir);
    for (int i = 0; i < 3; i++, last++)
        assert_int_equal(save_blobs(e->s, last + 1, last + 1), 0);
    assert_true(path_size(seg) > e->s->seg_size);
    fx.ftruncate = (struct fault){0, EIO}; /* the close cannot cut it */
    crash(e);
    assert_true(path_size(seg) > STOR__SEG_CREATE + 3 * BLOB);
    env_reopen(e);
    check_blobs(&e->p, last);
    assert_int_equal(e->cap.warns, 0);
    assert_non_null(strstr(e->cap.infos, "preallocated space"));
    assert_int_equal(path_size(seg), e->s->seg_size);
    assert_int_equal(save_blobs(e->s, last + 1, last + 1), 0);
    env_reopen(e);
    check_blobs(&e->p, last + 1);
}

/* A file system that cannot preallocate, or a full disk that allocates
 * part of a chunk and fails: saves go on, and every segment still ends
 * at its last record once closed. */
static void test_preallocation_refused(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 2 * STOR__PREALLOC;
    fx.nosync = true;
    env_reopen(e);
    fx.fallocate = (struct fault){0, EOPNOTSUPP};
    fx.n_fallocate = 0;
    uint64_t last = 0;
    for (; last < 200; last++) {
        assert_int_equal(save_blobs(e->s, last + 1, last + 1), 0);
        char seg[256];
        last_segment(e->dir, seg, sizeof seg);
        assert_int_equal(path_size(seg), e->s->seg_size);
    }
    assert_int_equal(fx.n_fallocate, 1); /* tried once, then not again */
    env_reopen(e);
    check_blobs(&e->p, last);

    fx.fallocate = (struct fault){0, ENOSPC};
    fx.falloc_partial = true;
    unsigned calls = fx.n_fallocate;
    while (count_files(e->dir, "log-") < 5) {
        assert_int_equal(save_blobs(e->s, last + 1, last + 2), 0);
        last += 2;
        check_alloc_bound(e);
    }
    assert_true(fx.n_fallocate > calls + 4);
    env_reopen(e);
    check_blobs(&e->p, last);
    assert_int_equal(e->cap.warns, 0);

    /* The cut at a roll-over fails: the save that needed the new segment
     * fails and leaves nothing behind, the next one rolls over. */
    faults_clear();
    fx.nosync = true;
    int segs = count_files(e->dir, "log-");
    while (e->s->seg_size + 2 * BLOB <= e->o.segment_bytes) {
        assert_int_equal(save_blobs(e->s, last + 1, last + 1), 0);
        last++;
    }
    assert_true(e->s->seg_alloc > e->s->seg_size); /* space to cut */
    fx.ftruncate = (struct fault){0, EIO};
    assert_int_equal(save_blobs(e->s, last + 1, last + 2), CRAFT_EIO);
    assert_int_equal(count_files(e->dir, "log-"), segs);
    fx.ftruncate = (struct fault){-1, 0};
    assert_int_equal(save_blobs(e->s, last + 1, last + 2), 0);
    last += 2;
    assert_int_equal(count_files(e->dir, "log-"), segs + 1);
    env_reopen(e);
    check_blobs(&e->p, last);
    assert_int_equal(e->cap.warns, 0);

    /* A save of a chunk or more is not preallocated for. */
    faults_clear();
    fx.nosync = true;
    calls = fx.n_fallocate;
    uint64_t to = last + STOR__PREALLOC / BLOB + 1;
    assert_int_equal(save_blobs(e->s, last + 1, to), 0);
    assert_int_equal(fx.n_fallocate, calls);
    check_alloc_bound(e);
    env_reopen(e);
    check_blobs(&e->p, to);
}

/* A save bigger than a write step goes in steps of whole records, each
 * synced; a tear within the last step is cut, wherever it falls. */
static void test_big_save_steps(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    assert_int_equal(save_range(e->s, 1, 1, 1, &hs), 0);
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t start = e->s->seg_size; /* the file is longer: preallocated */

    enum { N = 10, BIG = 1 << 20 };
    uint8_t *data = malloc(BIG);
    for (size_t k = 0; k < BIG; k++)
        data[k] = (uint8_t)(k * 13);
    struct raft_entry ents[N];
    for (size_t i = 0; i < N; i++)
        ents[i] = (struct raft_entry){1, 2 + i, RAFT_ENTRY_NORMAL, BIG, data};
    unsigned w0 = fx.n_pwrite, s0 = fx.n_fdatasync;
    assert_int_equal(stor_save(e->s, NULL, ents, N, NULL), 0);
    /* Records of one entry each; three fit in 4 MiB: steps of 3, 3, 3, 1. */
    assert_int_equal(fx.n_pwrite - w0, 4);
    assert_int_equal(fx.n_fdatasync - s0, 4);
    stor_close(e->s);
    e->s = NULL;
    size_t len;
    uint8_t *orig = read_all(seg, &len);
    uint64_t rec = STOR__REC_HDR + STOR__ENTS_HDR + STOR__ENT_HDR + BIG;
    assert_int_equal(len, start + N * rec);
    uint64_t last_step = start + 9 * rec;

    /* Cut anywhere in the last step: in its record's header, in the
     * entry header, every 65521st byte of the data, at the last byte. */
    fx.nosync = true;
    uint64_t cuts[64];
    size_t n_cuts = 0;
    for (uint64_t c = last_step; c <= last_step + 48; c++)
        if (c % 4 == 0 || c - last_step >= 40)
            cuts[n_cuts++] = c;
    for (uint64_t c = last_step + 1000; c < len; c += 65521)
        cuts[n_cuts++] = c;
    cuts[n_cuts++] = len - 1;
    assert_true(n_cuts <= 64);
    for (size_t k = 0; k < n_cuts; k++) {
        write_all(seg, orig, (size_t)cuts[k]);
        env_reopen(e);
        assert_int_equal(e->p.n_entries, 10);
        assert_int_equal(e->cap.errors, 0);
        assert_int_equal(e->cap.warns, cuts[k] > last_step);
    }
    fx.nosync = false;
    /* The last step's bytes lost (zero) though the file kept its length. */
    write_all(seg, orig, len);
    fill_path(seg, last_step, len, 0);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 10);
    assert_int_equal(e->p.entries[9].len, BIG);
    assert_memory_equal(e->p.entries[9].data, data, BIG);
    stor_close(e->s);
    e->s = NULL;
    /* Two steps' worth lost: more than the last write, damage. */
    write_all(seg, orig, len);
    fill_path(seg, start + 6 * rec, len, 0);
    check_refusal(e, base_name(seg), "more than one write step");

    /* One entry bigger than a step is a write of its own; a tear in it is
     * within the length its (intact) header claims. */
    write_all(seg, orig, start);
    env_reopen(e);
    uint8_t *huge = calloc(1, STOR__WRITE_MAX + 4096);
    struct raft_entry he = {1, 2, RAFT_ENTRY_NORMAL, STOR__WRITE_MAX + 4096,
                            huge};
    w0 = fx.n_pwrite;
    assert_int_equal(stor_save(e->s, NULL, &he, 1, NULL), 0);
    assert_int_equal(fx.n_pwrite - w0, 1);
    stor_close(e->s);
    e->s = NULL;
    size_t hlen;
    uint8_t *hbuf = read_all(seg, &hlen);
    write_all(seg, hbuf, hlen - 10);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 1);
    assert_int_equal(e->cap.warns, 1);
    stor_close(e->s);
    e->s = NULL;
    /* Known limit: with its header lost too, it is refused (safe side). */
    memset(hbuf + start, 0, STOR__REC_HDR);
    write_all(seg, hbuf, hlen - 10);
    check_refusal(e, base_name(seg), "more than one write step");
    free(hbuf);
    free(huge);
    free(data);
    free(orig);
}

/* Older segments are closed: one that is truncated (even at a record
 * boundary), extended or missing is refused, and so is a log missing its
 * newest segment. */
static void test_older_segment_damage(void **state)
{
    struct env *e = *state;
    e->o.segment_bytes = 600;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    for (uint64_t i = 1; i <= 40; i++)
        assert_int_equal(save_range(e->s, i, i, 1, &hs), 0);
    stor_close(e->s);
    e->s = NULL;
    size_t n = (size_t)count_files(e->dir, "log-");
    assert_true(n >= 4 && n <= 16);
    struct seg_copy old[16];
    copy_segments(e->dir, old, n);
#define RESTORE()                                                            \
    for (size_t k = 0; k < n; k++)                                           \
    write_all(old[k].path, old[k].data, old[k].len)

    /* Segment 2 cut at its last record boundary. */
    size_t off = STOR__SEG_CREATE, prev = off;
    while (off < old[1].len) {
        prev = off;
        off += STOR__REC_HDR + craft_get32(old[1].data + off + 4);
    }
    assert_int_equal(off, old[1].len);
    truncate_path(old[1].path, prev);
    check_refusal(e, base_name(old[2].path), "truncated or extended");
    assert_non_null(strstr(e->cap.last, "offset 48"));
    /* Cut inside a record. */
    RESTORE();
    truncate_path(old[1].path, old[1].len - 5);
    check_refusal(e, base_name(old[1].path), "record");
    /* Extended by zeroes. */
    RESTORE();
    append_path(old[1].path, 100, 0);
    check_refusal(e, base_name(old[1].path), "bad record type");
    /* Missing in the middle. */
    RESTORE();
    assert_int_equal(unlink(old[1].path), 0);
    check_refusal(e, base_name(old[2].path), "jumps from 1 to 3");
    /* The newest missing: the state file named it at its creation. */
    RESTORE();
    assert_int_equal(unlink(old[n - 1].path), 0);
    check_refusal(e, STOR__STATE_NAME, "segments are missing at the end");
    /* All of them missing: the term is gone with them. */
    for (size_t k = 0; k < n - 1; k++)
        assert_int_equal(unlink(old[k].path), 0);
    check_refusal(e, STOR__STATE_NAME, "records term 1");
    RESTORE();
    env_reopen(e);
    check_log(&e->p, 1, 40, term1);
    for (size_t k = 0; k < n; k++)
        free(old[k].data);
#undef RESTORE
}

static uint64_t term_of_index(uint64_t i)
{
    return i;
}

/* Rewrite the state file with its newest slot changed by fn. */
static void edit_state(const char *dir, void (*fn)(struct stor__state *))
{
    struct stor__state st = read_state(dir);
    fn(&st);
    st.gen++;
    write_state(dir, &st);
}

static void st_term_up(struct stor__state *st) { st->hs.term++; }
static void st_vote_other(struct stor__state *st) { st->hs.vote = 7; }
static void st_commit_far(struct stor__state *st) { st->hs.commit = 99; }
static void st_seq_up(struct stor__state *st) { st->seg_seq++; }
static void st_term_down(struct stor__state *st)
{
    st->hs.term--;
    st->hs.vote = 0;
}
static void st_vote_none(struct stor__state *st) { st->hs.vote = 0; }

/* The state file ahead of the log: the log lost synced writes. */
static void test_state_ahead(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    assert_int_equal(save_range(e->s, 1, 5, 1, &hs), 0);
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t len5 = e->s->seg_size; /* the file is longer: preallocated */
    /* A new term and vote: in the log, then in the state file. */
    hs = (struct raft_hard_state){2, 2, 0};
    assert_int_equal(save_range(e->s, 6, 6, 2, &hs), 0);
    assert_int_equal(read_state(e->dir).hs.term, 2);
    stor_close(e->s);
    e->s = NULL;
    size_t olen;
    uint8_t *orig = read_all(seg, &olen);

    /* The disk dropped the last save (a cut at a record boundary, which
     * looks like a clean log): the state file, written with the new term,
     * says how far the log was durable. */
    truncate_path(seg, len5);
    check_refusal(e, base_name(seg), "it was truncated");
    write_all(seg, orig, olen);

    char stpath[256];
    snprintf(stpath, sizeof stpath, "%s/%s", e->dir, STOR__STATE_NAME);
    size_t stlen;
    uint8_t *stsave = read_all(stpath, &stlen);
    struct {
        void (*fn)(struct stor__state *);
        const char *what;
    } ahead[] = {
        {st_term_up, "records term 3"},
        {st_vote_other, "records a vote for 0000000000000007 in term 2"},
        {st_commit_far, "records commit index 99, but the log ends at "
                        "index 6"},
        {st_seq_up, "segments are missing at the end"},
    };
    for (size_t i = 0; i < sizeof ahead / sizeof ahead[0]; i++) {
        write_all(stpath, stsave, stlen);
        edit_state(e->dir, ahead[i].fn);
        check_refusal(e, STOR__STATE_NAME, ahead[i].what);
    }
    /* The log ahead of the state file (a crash between the two syncs of a
     * save): accepted, and the state file catches up at once. */
    void (*behind[])(struct stor__state *) = {st_term_down, st_vote_none};
    for (size_t i = 0; i < 2; i++) {
        write_all(stpath, stsave, stlen);
        edit_state(e->dir, behind[i]);
        env_reopen(e);
        assert_int_equal(e->p.hs.term, 2);
        assert_int_equal(e->p.hs.vote, 2);
        assert_int_equal(e->cap.warns + e->cap.errors, 0);
        struct stor__state st = read_state(e->dir);
        assert_int_equal(st.hs.term, 2);
        assert_int_equal(st.hs.vote, 2);
        stor_close(e->s);
        e->s = NULL;
    }
    /* A commit index the state file has and the log's hard state not
     * (recorded by stor_save_commit): taken, it is within the log. */
    write_all(stpath, stsave, stlen);
    env_reopen(e);
    assert_int_equal(stor_save_commit(e->s, 4), 0);
    env_reopen(e);
    assert_int_equal(e->p.hs.commit, 4);
    free(stsave);
    free(orig);
}

/* Two slots written alternately: a torn one leaves the other. */
static void test_state_slots(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    for (uint64_t t = 1; t <= 5; t++) {
        struct raft_hard_state hs = {t, 1, 0};
        assert_int_equal(save_range(e->s, t, t, t, &hs), 0);
    }
    stor_close(e->s);
    e->s = NULL;
    char stpath[256];
    snprintf(stpath, sizeof stpath, "%s/%s", e->dir, STOR__STATE_NAME);
    size_t len;
    uint8_t *orig = read_all(stpath, &len);
    assert_int_equal(len, STOR__STATE_BYTES);
    struct stor__state st0, st1;
    assert_null(stor__state_decode(orig, 0, &st0));
    assert_null(stor__state_decode(orig + STOR__STATE_SLOT, 1, &st1));
    assert_int_equal(st0.gen > st1.gen ? st0.gen - st1.gen
                                       : st1.gen - st0.gen, 1);
    unsigned newest = st1.gen > st0.gen;
    assert_int_equal((newest ? st1 : st0).hs.term, 5);
    assert_int_equal((newest ? st0 : st1).hs.term, 4);

    /* Either slot torn (garbage, zeroes, one bit): the other is used. */
    for (unsigned k = 0; k < 2; k++) {
        for (int how = 0; how < 3; how++) {
            uint8_t *b = read_all(stpath, &len);
            memcpy(b, orig, len);
            uint8_t *slot = b + k * STOR__STATE_SLOT;
            if (how == 0)
                memset(slot, 0xa5, STOR__STATE_SLOT);
            else if (how == 1)
                memset(slot, 0, STOR__STATE_SLOT);
            else
                slot[30] ^= 8;
            write_all(stpath, b, len);
            free(b);
            env_reopen(e);
            assert_int_equal(e->cap.errors, 0);
            assert_int_equal(e->cap.warns, 1);
            assert_non_null(strstr(e->cap.last, "was torn"));
            assert_int_equal(e->p.hs.term, 5);
            check_log(&e->p, 1, 5, term_of_index);
            /* Torn newest slot: the older one had term 4, the log term 5;
             * the file was brought up to date at open. */
            assert_int_equal(read_state(e->dir).hs.term, 5);
            stor_close(e->s);
            e->s = NULL;
        }
    }
    /* Both slots spoilt, or the file cut: refused. */
    uint8_t *b = read_all(stpath, &len);
    memcpy(b, orig, len);
    b[3] ^= 1;
    b[STOR__STATE_SLOT + 40] ^= 1;
    write_all(stpath, b, len);
    check_refusal(e, STOR__STATE_NAME, "neither slot of the state file is "
                                       "valid");
    write_all(stpath, orig, STOR__STATE_SLOT);
    check_refusal(e, STOR__STATE_NAME, "512 bytes long instead of 1024");
    write_all(stpath, orig, 0);
    check_refusal(e, STOR__STATE_NAME, "0 bytes long");
    write_all(stpath, orig, len);
    env_reopen(e);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);
    free(b);
    free(orig);
}

/* A segment of format 1 (before the OPEN record): header version 1, an HS
 * record, entries records. */
static void write_segment_v1(const char *dir, uint64_t seq, uint64_t first,
                             uint64_t from, uint32_t count, uint64_t commit)
{
    uint8_t buf[4096];
    uint64_t salt = 55 + seq;
    stor__seg_header_encode(buf, seq, salt, first);
    craft_put32(buf + 8, STOR__SEG_VERSION_1);
    craft_put32(buf + 40, crc32c(0, buf, 40));
    size_t off = STOR__SEG_HDR;
    craft_put64(buf + off + STOR__REC_HDR, 1);
    craft_put64(buf + off + STOR__REC_HDR + 8, 1);
    craft_put64(buf + off + STOR__REC_HDR + 16, commit);
    stor__rec_seal(buf + off, STOR__REC_HS, 24, salt);
    off += STOR__REC_HDR + 24;
    off += put_rec_ents(buf + off, salt, from, count);
    write_segment_file(dir, seq, first, buf, off);
}

/* A directory from before the state file (segments of format 1 only) is
 * taken as it is, and gets one; a format 2 log without one is refused. */
static void test_state_absent(void **state)
{
    struct env *e = *state;
    assert_int_equal(mkdir(e->dir, 0700), 0);
    write_segment_v1(e->dir, 1, 1, 1, 3, 2);
    write_segment_v1(e->dir, 2, 4, 4, 2, 4);
    env_reopen(e);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);
    assert_int_equal(e->p.n_entries, 5);
    assert_int_equal(e->p.hs.commit, 4);
    struct stor__state st = read_state(e->dir);
    assert_int_equal(st.hs.term, 1);
    assert_int_equal(st.hs.commit, 4);
    assert_int_equal(st.seg_seq, 2);
    /* Appends go on in the format 1 segment, then a format 2 one. */
    e->o.segment_bytes = 300;
    env_reopen(e);
    for (uint64_t i = 6; i <= 12; i++)
        assert_int_equal(save_range(e->s, i, i, 1, NULL), 0);
    assert_true(count_files(e->dir, "log-") >= 3);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 12);
    assert_int_equal(e->cap.warns + e->cap.errors, 0);
    stor_close(e->s);
    e->s = NULL;

    /* Format 2 segments and no state file: it was lost. */
    char stpath[256];
    snprintf(stpath, sizeof stpath, "%s/%s", e->dir, STOR__STATE_NAME);
    assert_int_equal(unlink(stpath), 0);
    check_refusal(e, STOR__STATE_NAME, "the state file is missing");
}

/* Errors on the new writes behave like the others: a failed write is
 * returned (nothing may be acknowledged), a failed sync poisons. */
static void test_state_errors(void **state)
{
    struct env *e = *state;
    /* No space for the state file at the first open: nothing left. */
    fx.pwrite = (struct fault){0, ENOSPC};
    assert_int_equal(env_open(e), CRAFT_ENOSPACE);
    faults_clear();
    assert_int_equal(count_files(e->dir, "tmp-"), 0);
    assert_int_equal(count_files(e->dir, STOR__STATE_NAME), 0);

    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    assert_int_equal(save_range(e->s, 1, 3, 1, &hs), 0);
    /* A term change whose state slot write fails: an error, the store is
     * not poisoned, and the next save writes the slot. */
    hs = (struct raft_hard_state){2, 2, 0};
    fx.pwrite = (struct fault){1, EIO}; /* the log append, then the slot */
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), CRAFT_EIO);
    faults_clear();
    assert_int_equal(read_state(e->dir).hs.term, 1);
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), 0);
    assert_int_equal(read_state(e->dir).hs.term, 2);
    /* Its fdatasync fails: poisoned. */
    hs = (struct raft_hard_state){3, 1, 0};
    fx.fdatasync = (struct fault){1, EIO};
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), CRAFT_EIO);
    faults_clear();
    assert_int_equal(e->cap.errors, 1);
    assert_non_null(strstr(e->cap.last, "sync of state failed"));
    assert_int_equal(save_range(e->s, 4, 4, 3, &hs), CRAFT_EIO);
    assert_int_equal(stor_save_commit(e->s, 2), CRAFT_EIO);
    assert_false(stor_state_due(e->s, 100));
    env_reopen(e);
    assert_int_equal(e->p.hs.term, 3); /* the log had it: ahead, fine */
    assert_int_equal(read_state(e->dir).hs.term, 3);

    /* A save of several steps whose second step fails: the file is cut
     * back to where the save began, durably; no partial save remains. */
    char seg[256];
    last_segment(e->dir, seg, sizeof seg);
    uint64_t before = path_size(seg);
    enum { BIG = 3 << 20 };
    uint8_t *data = calloc(1, BIG);
    struct raft_entry ents[2] = {{3, 4, 0, BIG, data}, {3, 5, 0, BIG, data}};
    fx.pwrite = (struct fault){1, ENOSPC};
    unsigned s0 = fx.n_fdatasync;
    assert_int_equal(stor_save(e->s, NULL, ents, 2, NULL), CRAFT_ENOSPACE);
    faults_clear();
    assert_int_equal(fx.n_fdatasync - s0, 2); /* step 1, then the cut */
    assert_int_equal(path_size(seg), before);
    assert_int_equal(save_range(e->s, 4, 4, 3, NULL), 0); /* not poisoned */
    env_reopen(e);
    assert_int_equal(e->p.entries[e->p.n_entries - 1].index, 4);
    assert_int_equal(e->p.entries[e->p.n_entries - 1].len, 8);
    /* The second step's fdatasync fails: poisoned. */
    fx.fdatasync = (struct fault){1, EIO};
    assert_int_equal(stor_save(e->s, NULL, ents, 2, NULL), CRAFT_EIO);
    faults_clear();
    assert_int_equal(save_range(e->s, 5, 5, 3, NULL), CRAFT_EIO);
    free(data);

    /* (The unacknowledged save may or may not be there after a restart.) */
    env_reopen(e);
    uint64_t last = stor_last_index(e->s);
    assert_true(last == 4 || last == 5);

    /* Creating a segment: its fdatasync fails, or the state write after
     * it: poisoned either way, and the log reopens. */
    for (int which = 0; which < 2; which++) {
        e->o.segment_bytes = 100;
        env_reopen(e);
        fx.fdatasync = (struct fault){which ? 1 : 0, EIO};
        assert_int_equal(save_range(e->s, last + 1, last + 1, 3, NULL),
                         CRAFT_EIO);
        faults_clear();
        assert_int_equal(save_range(e->s, last + 1, last + 1, 3, NULL),
                         CRAFT_EIO);
        env_reopen(e);
        assert_int_equal(stor_last_index(e->s), last);
        assert_int_equal(e->cap.errors, 0);
    }
}

/* Costs: one fdatasync per save, one more on a term or vote change, and
 * the commit index refreshed at most once per STOR_STATE_REFRESH_MS. */
static void test_state_refresh(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 0};
    unsigned s0 = fx.n_fdatasync;
    assert_int_equal(save_range(e->s, 1, 1, 1, &hs), 0);
    assert_int_equal(fx.n_fdatasync - s0, 2);
    s0 = fx.n_fdatasync;
    for (uint64_t i = 2; i <= 20; i++) {
        hs.commit = i - 1;
        assert_int_equal(save_range(e->s, i, i, 1, &hs), 0);
    }
    assert_int_equal(fx.n_fdatasync - s0, 19);
    assert_int_equal(read_state(e->dir).hs.commit, 0);
    assert_false(stor_state_due(e->s, 19));
    fx.now_ms += STOR_STATE_REFRESH_MS - 1;
    assert_false(stor_state_due(e->s, 19));
    fx.now_ms += 1;
    assert_true(stor_state_due(e->s, 19));
    assert_false(stor_state_due(e->s, 0)); /* nothing new */
    /* The next save carries the refresh. */
    s0 = fx.n_fdatasync;
    hs.commit = 20;
    assert_int_equal(save_range(e->s, 21, 21, 1, &hs), 0);
    assert_int_equal(fx.n_fdatasync - s0, 2);
    assert_int_equal(read_state(e->dir).hs.commit, 20);
    assert_false(stor_state_due(e->s, 21));
    /* A vote in the same term is written at once. */
    s0 = fx.n_fdatasync;
    hs.vote = 3;
    assert_int_equal(stor_save(e->s, &hs, NULL, 0, NULL), 0);
    assert_int_equal(fx.n_fdatasync - s0, 2);
    assert_int_equal(read_state(e->dir).hs.vote, 3);
    /* stor_save_commit: nothing if not ahead; capped at the last index. */
    s0 = fx.n_fdatasync;
    assert_int_equal(stor_save_commit(e->s, 20), 0);
    assert_int_equal(fx.n_fdatasync - s0, 0);
    assert_int_equal(stor_save_commit(e->s, 500), 0);
    assert_int_equal(fx.n_fdatasync - s0, 1);
    assert_int_equal(read_state(e->dir).hs.commit, 21);
    env_reopen(e);
    assert_int_equal(e->p.hs.commit, 21);
    assert_int_equal(e->p.hs.vote, 3);
    /* Never in memory. */
    e->o.inmem = true;
    e->o.dir = NULL;
    env_reopen(e);
    fx.now_ms += 10 * STOR_STATE_REFRESH_MS;
    assert_false(stor_state_due(e->s, 5));
    assert_int_equal(stor_save_commit(e->s, 5), 0);
}

/* A snapshot whose term differs from the log's at a committed index does
 * not belong to this log; under an uncommitted one it is Raft's rule for
 * an installed snapshot (the log is discarded). */
static void test_snapshot_mismatch(void **state)
{
    struct env *e = *state;
    env_reopen(e);
    struct raft_hard_state hs = {1, 1, 8};
    assert_int_equal(save_range(e->s, 1, 10, 1, &hs), 0);
    take_snapshot(e, 5, 2, 100);
    char name[64];
    stor__snap_name(name, sizeof name, 5);
    check_refusal(e, name, "the snapshot does not match the log");

    nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    env_reopen(e);
    hs.commit = 3;
    assert_int_equal(save_range(e->s, 1, 10, 1, &hs), 0);
    take_snapshot(e, 5, 2, 100);
    env_reopen(e);
    assert_int_equal(e->p.n_entries, 0);
    assert_int_equal(e->p.snap.index, 5);
    assert_int_equal(e->cap.errors, 0);
}

/* Power loss at every sync of a run of saves (term changes, segment
 * roll-overs, a snapshot and compaction): what was acknowledged survives,
 * nothing is refused, and the state file agrees with the log. */
static void crash_run(struct env *e, int fail_at, uint64_t *acked,
                      uint64_t *acked_term)
{
    e->o.segment_bytes = 400;
    fx.nosync = true;
    env_reopen(e);
    model_start(e->dir);
    fx.anysync = (struct fault){fail_at, EIO};
    *acked = 0;
    *acked_term = 0;
    for (uint64_t i = 1; i <= 30; i++) {
        uint64_t t = 1 + i / 7;
        struct raft_hard_state hs = {t, t % 3 + 1, i > 3 ? i - 3 : 0};
        if (i % 5 == 0)
            fx.now_ms += STOR_STATE_REFRESH_MS;
        if (save_range(e->s, i, i, t, &hs) != 0)
            break;
        *acked = i;
        *acked_term = t;
        if (i == 20) {
            struct raft_snap_meta m = {.index = 15, .term = 1 + 15 / 7};
            struct stor_snap_writer *w;
            if (stor_snap_begin(e->s, &m, &w) != 0)
                break;
            if (stor_snap_write(w, "snap", 4) != 0 ||
                stor_snap_commit(w, NULL) != 0 || stor_compact(e->s, 12))
                break;
        }
        if (i == 25 && stor_save_commit(e->s, 24) != 0)
            break;
    }
    crash(e);
    fx.nosync = false;
}

static uint64_t term_crash(uint64_t i)
{
    return 1 + i / 7;
}

static void test_crash_at_every_sync(void **state)
{
    struct env *e = *state;
    int runs = 0;
    for (int k = 0;; k++) {
        uint64_t acked, term;
        crash_run(e, k, &acked, &term);
        env_reopen(e);
        assert_int_equal(e->cap.errors, 0);
        uint64_t last = stor_last_index(e->s);
        assert_true(last >= acked);
        assert_true(e->p.hs.term >= term);
        if (e->p.n_entries)
            check_log(&e->p, e->p.entries[0].index, last, term_crash);
        struct stor__state st = read_state(e->dir);
        assert_true(st.hs.term == e->p.hs.term);
        runs++;
        nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        if (acked == 30)
            break;
    }
    assert_true(runs > 60);
    print_message("power loss at each of %d syncs: nothing acknowledged "
                  "lost, nothing refused\n", runs - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_suffix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollover_and_compact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_fallback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_chunks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_inmem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bitflips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_drops_unsynced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_without_reset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_renamed_short_log,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_renamed_other_term,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_batch_torn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zeroed_newest_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preallocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preallocation_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_big_save_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_segment_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_every_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
