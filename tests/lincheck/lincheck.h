/* lincheck: a linearizability checker for key-value histories.
 *
 * It owns nothing between calls: lincheck_check() takes a history (an array
 * of operations recorded by clients), decides whether some sequential order
 * of those operations, consistent with their real-time order, explains every
 * result, and fills a result that the caller frees with
 * lincheck_result_free(). The history is only read during the call; the
 * library keeps no pointer into it afterwards (it copies what it reports).
 *
 * Model: every key is an independent register whose initial state is
 * "absent". put(k, v) sets it, delete(k) makes it absent, get(k) returns its
 * value or absent. Values are NUL-terminated strings compared by bytes.
 *
 * Revisions and compare-and-set: the register also holds the mod_index of
 * the write that set it (0 while absent; deletes make it 0). An op may carry
 * one (has_mod): an ok put or cas the mod_index it was given, a get the one
 * it read, a failed cas the current one the store reported. cas(k, expect,
 * v) writes v iff the key's mod_index equals expect (0: the key is absent);
 * an ok cas took effect, a failed one did not but observed a mod_index other
 * than expect (and equal to mod when has_mod): unlike other failed writes it
 * is checked as a read, so a cas refused although nothing had changed is a
 * violation. A write whose mod_index is not known (an unknown outcome, or
 * has_mod false) leaves the mod_index undetermined: the first later op that
 * observes one fixes it (a value-only model would accept a reused index; an
 * undetermined one is not checked against other writes' indexes: accepted
 * limitation). Ops without has_mod check values only, as before.
 * Linearizability is compositional, so the history is split by key and each
 * key is checked on its own. An atomic multi-key batch may be recorded as one
 * put/delete per key with the same times and outcome: the checker then
 * verifies each key separately and cannot see a batch that was applied to
 * some keys and not to others (accepted limitation).
 *
 * Outcomes: ok (it happened, between invoke and complete); fail (it
 * definitely did not happen: the op is dropped); unknown (it may or may not
 * have happened, and if it did, at any point after invoke, even after the end
 * of the history; complete is ignored and treated as +infinity). A get whose
 * outcome is not ok is dropped: it observed nothing.
 *
 * Algorithm: Wing & Gong's search with Lowe's memoisation, as in Porcupine: a
 * depth-first search over a doubly linked list of call/return events, with a
 * cache of (set of linearized ops, register state) pairs already explored,
 * and undo on backtrack. Each key gets a budget of search steps (and of cache
 * memory); a key that exhausts it makes the verdict LINCHECK_UNKNOWN rather
 * than hanging. Equal invoke/complete timestamps count as overlapping.
 *
 * Memory: all allocation goes through opts->alloc (NULL: the libc
 * allocator). This folder is linked into the lincheck CLI without libcraft.a,
 * so it cannot call craft_malloc(); tests pass a failing allocator here.
 *
 * Threading: no global state; any thread may call any function, and
 * concurrent calls on different results are safe.
 */
#ifndef CRAFT_LINCHECK_H
#define CRAFT_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/alloc.h"

/* The "complete" time of an operation that never completed. */
#define LINCHECK_INF UINT64_MAX

enum lincheck_kind {
    LINCHECK_PUT = 1, /* value required */
    LINCHECK_DELETE,  /* value ignored */
    LINCHECK_GET,     /* value = what it read; has_value false = absent */
    LINCHECK_CAS,     /* value required: written iff mod_index == expect */
};

enum lincheck_outcome {
    LINCHECK_OUTCOME_OK = 0, /* took effect between invoke and complete */
    LINCHECK_OUTCOME_FAIL,   /* definitely did not take effect */
    LINCHECK_OUTCOME_UNKNOWN /* may take effect at any time after invoke */
};

enum lincheck_verdict {
    LINCHECK_OK = 0,    /* every key is linearizable */
    LINCHECK_VIOLATION, /* some key has no linearization */
    LINCHECK_UNKNOWN,   /* no violation found, but some key ran out of budget */
};

/* One recorded operation. Read-only for the library. */
struct lincheck_op {
    uint64_t client;    /* who issued it; only shown in explanations */
    const char *key;    /* must not be NULL */
    int kind;           /* enum lincheck_kind */
    const char *value;  /* put: written value; get: value read */
    bool has_value;     /* false: no value (get read "absent"); value unused */
    uint64_t invoke;    /* when the client sent it */
    uint64_t complete;  /* when it got the answer; >= invoke if outcome ok */
    int outcome;        /* enum lincheck_outcome */
    /* Revisions (see Model above). has_mod false: not recorded. */
    uint64_t mod;       /* ok put/cas: its mod_index; get: read; failed cas:
                           the current one reported (0: absent) */
    bool has_mod;
    uint64_t expect;    /* cas: the mod_index it requires (0: absent) */
};

struct lincheck_opts {
    uint64_t max_steps;        /* per key search steps; 0: 10^7 (~0.3 s) */
    size_t max_cache_bytes;    /* per key cache memory; 0: 256 MiB */
    size_t max_explain_ops;    /* ops listed in an explanation; 0: 100 */
    const struct craft_allocator *alloc; /* NULL: malloc/realloc/free */
};

struct lincheck_result {
    int verdict;          /* enum lincheck_verdict */
    size_t n_ops;         /* ops in the history */
    size_t n_checked;     /* ops left after dropping failed puts and gets */
    size_t n_keys;        /* distinct keys */
    size_t n_bad_keys;    /* keys with a violation */
    size_t n_unknown_keys; /* keys that ran out of budget */
    uint64_t steps;       /* search steps over all keys */
    /* The first key (in byte order) with a violation, else the first that ran
     * out of budget; NULL when the verdict is LINCHECK_OK. Owned by the
     * result. */
    char *bad_key;
    /* Multi-line text on bad_key: its ops sorted by invoke time, those of the
     * longest linearizable prefix found marked with their position in it.
     * NULL when the verdict is LINCHECK_OK. Owned by the result. */
    char *explanation;
    const struct craft_allocator *alloc; /* private: frees the two above */
};

/* Check ops[0..n) (n may be 0; ops may then be NULL). On success returns 0
 * and fills *res, which the caller releases with lincheck_result_free().
 * Returns CRAFT_EINVAL for a malformed op (NULL key, unknown kind or outcome,
 * put or cas without a value, has_value with a NULL value, ok op completing
 * before its invocation or never, a delete with a mod, a failed cas reporting
 * the mod_index it expected) and CRAFT_ENOMEM when allocation fails; *res then
 * holds nothing to free (freeing it is harmless). opts may be NULL
 * (defaults). */
int lincheck_check(const struct lincheck_op *ops, size_t n,
                   const struct lincheck_opts *opts,
                   struct lincheck_result *res);

/* Free what res owns and zero it. res may be NULL or already freed. */
void lincheck_result_free(struct lincheck_result *res);

/* Print the verdict, counts and (if any) the explanation to f. */
void lincheck_result_print(const struct lincheck_result *res, FILE *f);

/* "ok", "violation", "unknown"; "?" for anything else. Never NULL. */
const char *lincheck_verdict_name(int verdict);

#endif
