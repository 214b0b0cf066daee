/* Unit tests for the identity file (src/storage/identity.c): round trips,
 * every single-bit flip and every length refused, a missing file, injected
 * failures at each step of the atomic write leaving the old identity (or,
 * once the rename is done, the new one) readable, random ids. Each test
 * works in its own mkdtemp directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "storage/storage.h"

/* ---- a syscall table that fails on demand (test-only state) ---- */

static struct {
    int fail_pwrite, fail_fdatasync, fail_rename, fail_fsync; /* errno or 0 */
    int short_writes;     /* pwrite writes one byte at a time */
    int zero_random;      /* getrandom returns this many all-zero draws */
    unsigned fdatasyncs, fsyncs, renames;
} F;

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (F.fail_pwrite) {
        errno = F.fail_pwrite;
        return -1;
    }
    return pwrite(fd, buf, F.short_writes && n > 1 ? 1 : n, off);
}

static int f_fdatasync(int fd)
{
    F.fdatasyncs++;
    if (F.fail_fdatasync) {
        errno = F.fail_fdatasync;
        return -1;
    }
    return fdatasync(fd);
}

static int f_fsync(int fd)
{
    F.fsyncs++;
    if (F.fail_fsync) {
        errno = F.fail_fsync;
        return -1;
    }
    return fsync(fd);
}

static int f_renameat(int a, const char *o, int b, const char *nw)
{
    F.renames++;
    if (F.fail_rename) {
        errno = F.fail_rename;
        return -1;
    }
    return renameat(a, o, b, nw);
}

static ssize_t f_getrandom(void *buf, size_t n, unsigned flags)
{
    if (F.zero_random > 0) {
        F.zero_random--;
        memset(buf, 0, n);
        return (ssize_t)n;
    }
    return getrandom(buf, n, flags);
}

static struct stor_sys fake_sys(void)
{
    struct stor_sys s = *stor_sys_default();
    s.pwrite = f_pwrite;
    s.fdatasync = f_fdatasync;
    s.fsync = f_fsync;
    s.renameat = f_renameat;
    s.getrandom = f_getrandom;
    return s;
}

/* ---- fixtures ---- */

struct env {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    static struct env e;
    memset(&F, 0, sizeof F);
    snprintf(e.dir, sizeof e.dir, "/tmp/craft-ident-XXXXXX");
    if (mkdtemp(e.dir) == NULL)
        return -1;
    snprintf(e.path, sizeof e.path, "%s/%s", e.dir, STOR_IDENTITY_FILE);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char p[160];
    snprintf(p, sizeof p, "%s/tmp-identity", e->dir);
    unlink(p);
    unlink(e->path);
    rmdir(e->dir);
    return 0;
}

static const struct stor_identity SAMPLE = {
    .cluster_id = 0x0123456789abcdefull,
    .incarnation = 0xfedcba9876543210ull,
    .flags = STOR_IDENT_REMOVED | STOR_IDENT_FOUNDER,
    .removed_index = 4242,
    .conflict_cluster = 77,
};

static void assert_same(const struct stor_identity *a,
                        const struct stor_identity *b)
{
    assert_true(a->cluster_id == b->cluster_id);
    assert_true(a->incarnation == b->incarnation);
    assert_int_equal(a->flags, b->flags);
    assert_true(a->removed_index == b->removed_index);
    assert_true(a->conflict_cluster == b->conflict_cluster);
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
    struct env *e = *state;
    struct stor_identity got;
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), CRAFT_ENOTFOUND);
    struct stor_sys sys = fake_sys();
    assert_int_equal(stor_identity_save(e->dir, &sys, &SAMPLE), 0);
    /* One data sync of the file, one sync of the directory, one rename. */
    assert_int_equal(F.fdatasyncs, 1);
    assert_int_equal(F.fsyncs, 1);
    assert_int_equal(F.renames, 1);
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &SAMPLE);
    struct stat st;
    assert_int_equal(stat(e->path, &st), 0);
    assert_int_equal(st.st_size, STOR_IDENTITY_SIZE);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Overwrite: the newest counts; short writes are finished. */
    struct stor_identity b = {.incarnation = 5};
    F.short_writes = 1;
    assert_int_equal(stor_identity_save(e->dir, &sys, &b), 0);
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &b);
}

/* Every single-bit flip of the file is refused, as is every other length. */
static void test_damage_refused(void **state)
{
    struct env *e = *state;
    uint8_t good[STOR_IDENTITY_SIZE], b[STOR_IDENTITY_SIZE + 1];
    stor_identity_encode(&SAMPLE, good);
    struct stor_identity got;
    for (size_t i = 0; i < STOR_IDENTITY_SIZE * 8; i++) {
        memcpy(b, good, sizeof good);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        write_bytes(e->path, b, sizeof good);
        int rv = stor_identity_load(e->dir, NULL, &got);
        assert_int_equal(rv, CRAFT_ECORRUPT);
        assert_true(got.incarnation == 0); /* zeroed on error */
    }
    for (size_t n = 0; n <= STOR_IDENTITY_SIZE + 1; n++) {
        if (n == STOR_IDENTITY_SIZE)
            continue;
        memcpy(b, good, sizeof good);
        b[STOR_IDENTITY_SIZE] = 0;
        write_bytes(e->path, b, n);
        assert_int_equal(stor_identity_load(e->dir, NULL, &got), CRAFT_ECORRUPT);
    }
    /* Unknown flags with a valid CRC: refused too (a newer format). */
    struct stor_identity odd = SAMPLE;
    odd.flags = 0x80;
    stor_identity_encode(&odd, b);
    write_bytes(e->path, b, STOR_IDENTITY_SIZE);
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), CRAFT_ECORRUPT);
    assert_int_equal(stor_identity_decode(b, STOR_IDENTITY_SIZE, &got),
                     CRAFT_ECORRUPT);
    write_bytes(e->path, good, sizeof good);
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &SAMPLE);
}

/* A write that fails before the rename leaves the old identity; one that
 * fails at the directory sync has already replaced it (the caller treats
 * the error as "not known to be durable" and does not act on it). */
static void test_failures_keep_old(void **state)
{
    struct env *e = *state;
    struct stor_sys sys = fake_sys();
    struct stor_identity got, next = {.cluster_id = 9, .incarnation = 10};
    assert_int_equal(stor_identity_save(e->dir, &sys, &SAMPLE), 0);

    F.fail_pwrite = ENOSPC;
    assert_int_equal(stor_identity_save(e->dir, &sys, &next), CRAFT_ENOSPACE);
    F.fail_pwrite = 0;
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &SAMPLE);

    F.fail_fdatasync = EIO;
    F.renames = 0;
    assert_int_equal(stor_identity_save(e->dir, &sys, &next), CRAFT_EIO);
    assert_int_equal(F.renames, 0); /* never renamed unsynced data */
    F.fail_fdatasync = 0;
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &SAMPLE);

    F.fail_rename = EACCES;
    assert_int_equal(stor_identity_save(e->dir, &sys, &next), -EACCES);
    F.fail_rename = 0;
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &SAMPLE);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/tmp-identity", e->dir);
    assert_int_equal(access(tmp, F_OK), -1); /* cleaned up */

    F.fail_fsync = EIO;
    assert_int_equal(stor_identity_save(e->dir, &sys, &next), CRAFT_EIO);
    F.fail_fsync = 0;
    assert_int_equal(stor_identity_load(e->dir, NULL, &got), 0);
    assert_same(&got, &next);

    /* No such directory. */
    assert_int_equal(stor_identity_save("/nonexistent/craft", &sys, &next),
                     -ENOENT);
    assert_int_equal(stor_identity_load("/nonexistent/craft", NULL, &got),
                     CRAFT_ENOTFOUND);
}

static void test_random_ids(void **state)
{
    struct stor_sys sys = fake_sys();
    uint64_t a = 0, b = 0;
    assert_int_equal(stor_random_id(&sys, &a), 0);
    assert_int_equal(stor_random_id(&sys, &b), 0);
    assert_true(a != 0 && b != 0 && a != b);
    F.zero_random = 3; /* zero is never an id: drawn again */
    assert_int_equal(stor_random_id(&sys, &a), 0);
    assert_true(a != 0);
    assert_int_equal(F.zero_random, 0);
    F.zero_random = 100; /* a source that only gives zeros is an error */
    assert_int_equal(stor_random_id(&sys, &a), CRAFT_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_keep_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_random_ids, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
