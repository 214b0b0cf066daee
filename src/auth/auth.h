/* Users and roles of craftd's HTTP API (-auth-file): the auth file, password
 * checks against crypt(3) hashes, a short-lived cache of good checks, a
 * budget of hash computations, the role each route needs, and the HTTP
 * Basic credentials format. docs/security.md is the user's view.
 *
 * Owns struct auth_db: the users parsed from the file (names, hashes,
 * roles) and the verification cache. No h2o, no OpenSSL type in this
 * header; OpenSSL is used inside for HMAC-SHA256 only.
 *
 * Threading: an auth_db is used from one thread (the node's loop); nothing
 * is locked. A check that misses the cache needs a crypt(3) computation
 * that takes milliseconds (yescrypt: ~20 ms): auth_db_begin hands it out as
 * a job that auth_job_run computes on any thread (it reads and writes only
 * the job), and auth_db_finish takes back on the db's thread. auth_db_check
 * does all three on the caller's thread. The budget (AUTH_HASH_BURST, then
 * one per AUTH_HASH_PERIOD_MS) bounds how many computations wrong passwords
 * can cause.
 *
 * Ownership: auth_db_parse/auth_db_load return a db the caller frees with
 * auth_db_free. Strings passed in are copied or only read during the call.
 */
#ifndef CRAFT_AUTH_H
#define CRAFT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Roles, each including the ones below it. */
enum auth_role {
    AUTH_OPEN = 0,  /* no credentials needed (/livez, /readyz) */
    AUTH_READ = 1,  /* key reads, listing, watch, status */
    AUTH_WRITE = 2, /* + key writes, txn, leases */
    AUTH_ADMIN = 3, /* + join, remove, transfer, backup, metrics */
};

struct auth_db;

/* Parses an auth file's text: one `user:crypt-hash:role` a line (LF or
 * CRLF); blank lines and lines starting with '#' (after optional blanks)
 * are skipped. Refuses (CRAFT_EINVAL, with
 * "line N: why" in err) a malformed line, an empty or duplicate user, a hash
 * crypt(3) does not accept or that uses a legacy method (DES, MD5), an
 * unknown role, and a file without users. */
int auth_db_parse(struct auth_db **out, const char *text, size_t len, char *err, size_t errcap);

/* Reads and parses the file at path (a regular file of at most 1 MiB).
 * Errors: as auth_db_parse, or negative errno from opening or reading. A
 * file that group or others may read or write is loaded, but warn (warncap
 * > 0) gets a message saying so ("" otherwise): it holds password hashes. */
int auth_db_load(struct auth_db **out, const char *path, char *err, size_t errcap, char *warn,
                 size_t warncap);

void auth_db_free(struct auth_db *db);

/* Number of users. */
size_t auth_db_count(const struct auth_db *db);

/* Checks user/pass (any bytes, with lengths). Returns the user's role
 * (AUTH_READ..AUTH_ADMIN), AUTH_BAD for an unknown user or a wrong password
 * (both cost one hash computation, so timing does not tell them apart), or
 * AUTH_BUSY when the check needs a hash computation and the budget is
 * spent (nothing was checked: the client should retry later).
 * A good check is cached for AUTH_CACHE_MS after now_ms (a monotonic clock
 * in milliseconds), keyed by HMAC-SHA256(random key of this db, user NUL
 * pass), in AUTH_CACHE_SLOTS slots (the oldest is replaced when full); a
 * cached check costs one HMAC and no budget. Wrong passwords are never
 * cached. */
#define AUTH_BAD (-1)
#define AUTH_BUSY (-2)
#define AUTH_CACHE_MS 60000
#define AUTH_CACHE_SLOTS 64
#define AUTH_HASH_BURST 8          /* hash computations at once ... */
#define AUTH_HASH_PERIOD_MS 100    /* ... then one per 100 ms */
int auth_db_check(struct auth_db *db, const char *user, size_t ulen, const char *pass,
                  size_t plen, uint64_t now_ms);

/* The same check in three steps, so that the hash can be computed off the
 * db's thread. auth_db_begin returns the cached role, AUTH_BUSY, AUTH_BAD
 * (out of memory), or AUTH_PENDING with *job set (the budget is then spent):
 * the caller runs auth_job_run(*job) on any thread, then, back on the db's
 * thread, auth_db_finish(db, job, now_ms) returns the role or AUTH_BAD,
 * caches a good check, counts the hash and frees the job. auth_job_free
 * drops a job instead (run or not; the check then counts for nothing). A
 * job holds a copy of the password, wiped when it is hashed or freed. */
#define AUTH_PENDING (-3)
struct auth_job;
int auth_db_begin(struct auth_db *db, const char *user, size_t ulen, const char *pass,
                  size_t plen, uint64_t now_ms, struct auth_job **job);
void auth_job_run(struct auth_job *job);
int auth_db_finish(struct auth_db *db, struct auth_job *job, uint64_t now_ms);
void auth_job_free(struct auth_job *job);

/* How many checks computed a crypt(3) hash (cache misses); for tests. */
uint64_t auth_db_hash_count(const struct auth_db *db);

/* The role a request needs, from its method and path (without the query). */
enum auth_role auth_route_role(const char *method, size_t mlen, const char *path, size_t plen);

/* "open", "read", "write", "admin". */
const char *auth_role_name(int role);

/* Parses an Authorization header value "Basic <base64(user:pass)>" (scheme
 * case-insensitive, one or more spaces; strict base64 with padding, no
 * whitespace inside). The decoded bytes go to buf (cap bytes); user and pass
 * point into it (the password is what follows the first ':'). 0, or -1 for
 * anything malformed (another scheme, bad base64, no ':', an empty user,
 * decoded bytes that do not fit in cap). */
int auth_parse_basic(const char *hdr, size_t len, char *buf, size_t cap, const char **user,
                     size_t *ulen, const char **pass, size_t *plen);

/* Writes "Basic <base64(cred)>" (cred is "user:password") NUL-terminated to
 * out. 0, or -1 if it does not fit in cap. */
int auth_basic_header(const char *cred, char *out, size_t cap);

#endif
