/* Error codes shared by every craftd module.
 *
 * Errors are negative ints and 0 is success, as in libuv. One X-macro table
 * generates the enum and the strings, so the two can never drift apart.
 * craft_strerror() never returns NULL, for any input. */
#ifndef CRAFT_ERROR_H
#define CRAFT_ERROR_H

#define CRAFT_ERRORS(X)                                                      \
    X(NOMEM, "out of memory")                                                \
    X(INVAL, "invalid argument")                                             \
    X(CORRUPT, "corrupt data (checksum or format mismatch)")                 \
    X(IO, "input/output error")                                              \
    X(NOSPACE, "no space left on device")                                    \
    X(NOTLEADER, "not the leader")                                           \
    X(NOLEADER, "no leader known")                                           \
    X(TRANSFER, "leadership transfer in progress")                           \
    X(BUSY, "another membership change is in progress")                      \
    X(NOTFOUND, "not found")                                                 \
    X(EXISTS, "already exists")                                              \
    X(DROPPED, "request dropped (leadership changed)")                       \
    X(TOOBIG, "too big")                                                     \
    X(TIMEOUT, "timed out")                                                  \
    X(SHUTDOWN, "shutting down")                                             \
    X(LOCKED, "data directory is in use by another process")                 \
    X(VERSION, "unsupported format version")                                 \
    X(TRUNCATED, "input truncated")                                          \
    X(OVERLOAD, "too many uncommitted proposals")

enum craft_error {
    CRAFT_OK = 0,
    CRAFT__FIRST = -1000,
#define CRAFT__ENUM(name, str) CRAFT_E##name,
    CRAFT_ERRORS(CRAFT__ENUM)
#undef CRAFT__ENUM
    CRAFT__LAST
};

/* A human-readable message for err: a craft error, a negative errno, or 0. */
const char *craft_strerror(int err);
/* The symbolic name ("CRAFT_ECORRUPT", "ENOENT", ...). Never NULL. */
const char *craft_errname(int err);

#endif
