/* The users of an auth file: strict parsing, password checks with
 * crypt_r(3) compared in constant time, the cache of good checks and the
 * budget of hash computations. */
#include "auth/auth.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/ratelimit.h"

#define AUTH__MAX_FILE (1u << 20)
#define AUTH__MAX_NAME 256
#define AUTH__MAX_HASH 512

struct auth__user {
    char *name;  /* NUL-terminated, no ':' */
    char *hash;  /* crypt(3) hash, NUL-terminated */
    int role;    /* AUTH_READ..AUTH_ADMIN */
};

/* One remembered good check: HMAC of the credentials, the role it gave. */
struct auth__cached {
    unsigned char mac[32];
    int role;
    uint64_t expires_ms; /* 0: empty slot */
};

struct auth_db {
    struct auth__user *users;
    size_t n;
    unsigned char key[32]; /* random per db: cache keys mean nothing elsewhere */
    struct auth__cached cache[AUTH_CACHE_SLOTS];
    struct craft_ratelimit budget; /* hash computations allowed */
    uint64_t hashes;       /* crypt(3) computations */
    char *dummy;           /* hashed for unknown users: same cost as a real check */
};

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t cap, unsigned line,
                                                      const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(err, cap, "line %u: %s", line, msg);
    else
        snprintf(err, cap, "%s", msg);
    return CRAFT_EINVAL;
}

static int parse_role(const char *s, size_t len)
{
    static const char *const names[] = {"read", "write", "admin"};
    for (int i = 0; i < 3; i++)
        if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0)
            return AUTH_READ + i;
    return -1;
}

/* crypt(3)'s alphabet plus '$' (and ',' '=' for yescrypt/bcrypt params). */
static bool hash_chars_ok(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '/' || c == '$' || c == ',' || c == '='))
            return false;
    }
    return true;
}

void auth_db_free(struct auth_db *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->n; i++) {
        craft_free(db->users[i].name);
        OPENSSL_cleanse(db->users[i].hash, strlen(db->users[i].hash));
        craft_free(db->users[i].hash);
    }
    craft_free(db->users);
    craft_free(db->dummy);
    OPENSSL_cleanse(db, sizeof *db);
    craft_free(db);
}

static int add_user(struct auth_db *db, const char *name, size_t nlen, const char *hash,
                    size_t hlen, int role)
{
    struct auth__user *u = craft_realloc(db->users, (db->n + 1) * sizeof *u);
    if (u == NULL)
        return CRAFT_ENOMEM;
    db->users = u;
    u = &db->users[db->n];
    u->name = craft_malloc(nlen + 1);
    u->hash = craft_malloc(hlen + 1);
    if (u->name == NULL || u->hash == NULL) {
        craft_free(u->name);
        craft_free(u->hash);
        return CRAFT_ENOMEM;
    }
    memcpy(u->name, name, nlen);
    u->name[nlen] = 0;
    memcpy(u->hash, hash, hlen);
    u->hash[hlen] = 0;
    u->role = role;
    db->n++;
    return 0;
}

/* One line (without its newline). */
static int parse_line(struct auth_db *db, const char *s, size_t len, unsigned line, char *err,
                      size_t cap)
{
    if (len > 0 && s[len - 1] == '\r')
        len--;
    size_t lead = 0; /* blank lines and comments may be indented */
    while (lead < len && (s[lead] == ' ' || s[lead] == '\t'))
        lead++;
    if (lead == len || s[lead] == '#')
        return 0;
    if (memchr(s, '\0', len) != NULL)
        return fail(err, cap, line, "NUL byte");
    const char *c1 = memchr(s, ':', len);
    const char *end = s + len;
    const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
    if (c1 == NULL || c2 == NULL || memchr(c2 + 1, ':', (size_t)(end - c2 - 1)) != NULL)
        return fail(err, cap, line, "expected user:crypt-hash:role");
    size_t nlen = (size_t)(c1 - s), hlen = (size_t)(c2 - c1 - 1), rlen = (size_t)(end - c2 - 1);
    if (nlen == 0)
        return fail(err, cap, line, "empty user name");
    if (nlen > AUTH__MAX_NAME)
        return fail(err, cap, line, "user name longer than %d bytes", AUTH__MAX_NAME);
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return fail(err, cap, line, "user name with a space or control character");
    int role = parse_role(c2 + 1, rlen);
    if (role < 0)
        return fail(err, cap, line, "unknown role \"%.*s\": use read, write or admin",
                    (int)(rlen > 32 ? 32 : rlen), c2 + 1);
    const char *hash = c1 + 1;
    if (hlen == 0 || hlen > AUTH__MAX_HASH || hash[0] != '$' || !hash_chars_ok(hash, hlen))
        return fail(err, cap, line, "malformed hash: expected a crypt(3) hash such as $y$... "
                                    "(mkpasswd -m yescrypt)");
    char h[AUTH__MAX_HASH + 1];
    memcpy(h, hash, hlen);
    h[hlen] = 0;
    int cs = crypt_checksalt(h);
    if (cs == CRYPT_SALT_METHOD_LEGACY)
        return fail(err, cap, line, "hash method too weak (DES/MD5): use yescrypt or SHA-512");
    if (cs != CRYPT_SALT_OK)
        return fail(err, cap, line, "malformed hash: crypt(3) does not accept it");
    /* A hash must reproduce itself from its own setting part: this catches
     * truncated or damaged hashes, which would otherwise never match. */
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *probe = crypt_r("", h, &cd);
    if (probe == NULL || probe[0] == '*' || strlen(probe) != hlen)
        return fail(err, cap, line, "malformed hash: wrong length for its method");
    for (size_t i = 0; i < db->n; i++)
        if (strlen(db->users[i].name) == nlen && memcmp(db->users[i].name, s, nlen) == 0)
            return fail(err, cap, line, "duplicate user \"%.*s\"", (int)nlen, s);
    int rv = add_user(db, s, nlen, hash, hlen, role);
    if (rv)
        return fail(err, cap, line, "out of memory");
    return 0;
}

int auth_db_parse(struct auth_db **out, const char *text, size_t len, char *err, size_t errcap)
{
    *out = NULL;
    err[0] = 0;
    struct auth_db *db = craft_calloc(1, sizeof *db);
    if (db == NULL)
        return CRAFT_ENOMEM;
    if (getrandom(db->key, sizeof db->key, 0) != (ssize_t)sizeof db->key) {
        auth_db_free(db);
        return fail(err, errcap, 0, "cannot get random bytes for the cache key");
    }
    craft_ratelimit_init(&db->budget, AUTH_HASH_PERIOD_MS, AUTH_HASH_BURST);
    unsigned line = 1;
    int rv = 0;
    for (size_t i = 0; i < len && rv == 0; line++) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t l = nl ? (size_t)(nl - (text + i)) : len - i;
        rv = parse_line(db, text + i, l, line, err, errcap);
        i += l + 1;
    }
    if (rv == 0 && db->n == 0)
        rv = fail(err, errcap, 0, "no users");
    if (rv == 0) {
        /* Same method and cost as the first user's hash: an unknown user
         * costs what a known one does. */
        struct crypt_data cd;
        memset(&cd, 0, sizeof cd);
        const char *d = crypt_r("craftd-no-such-user", db->users[0].hash, &cd);
        db->dummy = d ? craft_memdup(d, strlen(d) + 1) : NULL;
        if (db->dummy == NULL)
            rv = fail(err, errcap, 0, "out of memory");
    }
    if (rv != 0) {
        auth_db_free(db);
        return rv;
    }
    *out = db;
    return 0;
}

int auth_db_load(struct auth_db **out, const char *path, char *err, size_t errcap, char *warn,
                 size_t warncap)
{
    *out = NULL;
    err[0] = 0;
    if (warncap > 0)
        warn[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > AUTH__MAX_FILE) {
        close(fd);
        return fail(err, errcap, 0, "not a regular file of at most %u bytes", AUTH__MAX_FILE);
    }
    if ((st.st_mode & 077) && warncap > 0)
        snprintf(warn, warncap, "mode %03o: group or others may read or change it, and it holds "
                 "password hashes (chmod 600 it)", (unsigned)(st.st_mode & 0777));
    size_t size = (size_t)st.st_size;
    char *buf = craft_malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return CRAFT_ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? -errno : CRAFT_ETRUNCATED;
            close(fd);
            craft_free(buf);
            return e;
        }
        got += (size_t)r;
    }
    close(fd);
    int rv = auth_db_parse(out, buf, size, err, errcap);
    OPENSSL_cleanse(buf, size);
    craft_free(buf);
    return rv;
}

size_t auth_db_count(const struct auth_db *db)
{
    return db->n;
}

uint64_t auth_db_hash_count(const struct auth_db *db)
{
    return db->hashes;
}

/* Constant-time for equal lengths; the lengths of crypt outputs are public. */
static bool same_hash(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/* HMAC-SHA256(db->key, user NUL pass); all-zero if it cannot be computed
 * (such a check is then simply not cached). Credentials of an HTTP Basic
 * header (at most 1 KiB) fit on the stack: no allocation per request. */
static void cred_mac(const struct auth_db *db, const char *user, size_t ulen, const char *pass,
                     size_t plen, unsigned char mac[32])
{
    unsigned len = 32;
    unsigned char stack[1280];
    size_t n = ulen + plen + 1;
    unsigned char *msg = n <= sizeof stack ? stack : craft_malloc(n);
    memset(mac, 0, 32);
    if (msg == NULL)
        return;
    memcpy(msg, user, ulen);
    msg[ulen] = 0;
    memcpy(msg + ulen + 1, pass, plen);
    if (HMAC(EVP_sha256(), db->key, sizeof db->key, msg, n, mac, &len) == NULL)
        memset(mac, 0, 32);
    OPENSSL_cleanse(msg, n);
    if (msg != stack)
        craft_free(msg);
}

static bool mac_valid(const unsigned char mac[32])
{
    unsigned char acc = 0;
    for (int i = 0; i < 32; i++)
        acc |= mac[i];
    return acc != 0;
}

/* The slot for a new good check: a free or expired one, else the oldest. */
static struct auth__cached *cache_slot(struct auth_db *db, uint64_t now_ms)
{
    struct auth__cached *best = &db->cache[0];
    for (unsigned i = 0; i < AUTH_CACHE_SLOTS; i++) {
        struct auth__cached *c = &db->cache[i];
        if (c->expires_ms <= now_ms)
            return c;
        if (c->expires_ms < best->expires_ms)
            best = c;
    }
    return best;
}

/* A check that needs a crypt(3) computation: what the worker reads and
 * writes, all owned by the job (nothing points into the db, which the loop
 * may change or free meanwhile). */
struct auth_job {
    unsigned char mac[32];  /* cache key; all-zero: not cacheable */
    int role;               /* the user's, or AUTH_BAD for an unknown user */
    bool has_nul;           /* the password had a NUL byte: never matches */
    bool ran;               /* auth_job_run was called */
    char *pass;             /* NUL-terminated copy */
    size_t plen;
    char setting[AUTH__MAX_HASH + 1]; /* the user's hash, or the dummy */
    bool ok;                /* after auth_job_run: the password matched */
    struct crypt_data cd;   /* crypt_r's scratch (large: kept off the stack) */
};

void auth_job_free(struct auth_job *job)
{
    if (job == NULL)
        return;
    OPENSSL_cleanse(job->pass, job->plen);
    craft_free(job->pass);
    OPENSSL_cleanse(job, sizeof *job);
    craft_free(job);
}

int auth_db_begin(struct auth_db *db, const char *user, size_t ulen, const char *pass,
                  size_t plen, uint64_t now_ms, struct auth_job **out)
{
    *out = NULL;
    unsigned char mac[32];
    cred_mac(db, user, ulen, pass, plen, mac);
    if (mac_valid(mac)) {
        for (unsigned i = 0; i < AUTH_CACHE_SLOTS; i++) {
            struct auth__cached *c = &db->cache[i];
            if (c->expires_ms > now_ms && CRYPTO_memcmp(c->mac, mac, 32) == 0)
                return c->role;
        }
    }
    if (!craft_ratelimit_allow(&db->budget, now_ms, NULL))
        return AUTH_BUSY;
    const struct auth__user *u = NULL;
    for (size_t i = 0; i < db->n; i++)
        if (strlen(db->users[i].name) == ulen && memcmp(db->users[i].name, user, ulen) == 0)
            u = &db->users[i];
    struct auth_job *job = craft_calloc(1, sizeof *job);
    /* crypt_r takes a C string: a password with a NUL byte never matches
     * (it is still hashed, up to the NUL, so that it costs the same). */
    char *p = craft_malloc(plen + 1);
    if (job == NULL || p == NULL) {
        craft_free(job);
        craft_free(p);
        return AUTH_BAD;
    }
    memcpy(p, pass, plen);
    p[plen] = 0;
    memcpy(job->mac, mac, 32);
    job->role = u ? u->role : AUTH_BAD;
    job->has_nul = memchr(pass, 0, plen) != NULL;
    job->pass = p;
    job->plen = plen;
    const char *setting = u ? u->hash : db->dummy;
    memcpy(job->setting, setting, strlen(setting) + 1); /* at most AUTH__MAX_HASH */
    *out = job;
    return AUTH_PENDING;
}

void auth_job_run(struct auth_job *job)
{
    const char *got = crypt_r(job->pass, job->setting, &job->cd);
    job->ok = job->role != AUTH_BAD && !job->has_nul && got != NULL && got[0] != '*' &&
              same_hash(got, job->setting);
    OPENSSL_cleanse(job->pass, job->plen);
    OPENSSL_cleanse(&job->cd, sizeof job->cd);
    job->ran = true;
}

int auth_db_finish(struct auth_db *db, struct auth_job *job, uint64_t now_ms)
{
    if (job->ran)
        db->hashes++;
    bool ok = job->ran && job->ok;
    int role = job->role;
    if (ok && mac_valid(job->mac)) {
        struct auth__cached *c = cache_slot(db, now_ms);
        memcpy(c->mac, job->mac, 32);
        c->role = role;
        c->expires_ms = now_ms + AUTH_CACHE_MS;
    }
    auth_job_free(job);
    return ok ? role : AUTH_BAD;
}

int auth_db_check(struct auth_db *db, const char *user, size_t ulen, const char *pass,
                  size_t plen, uint64_t now_ms)
{
    struct auth_job *job;
    int rv = auth_db_begin(db, user, ulen, pass, plen, now_ms, &job);
    if (rv != AUTH_PENDING)
        return rv;
    auth_job_run(job);
    return auth_db_finish(db, job, now_ms);
}
