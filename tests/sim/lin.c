/* Hands the clients' history to lincheck (tests/lincheck) at the end of a
 * run: writes ok/fail/unknown, reads that observed something, and the CAS
 * registers of src/kv's keys with their mod_index (lincheck's CAS model):
 * reads with the mod_index read, CAS ok with the index they were given,
 * refused with the one the compare saw, unknown. A CAS whose entry was lost
 * observed nothing and is left out; multi-key txns and listings are
 * checked against txn.c's model instead. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"
#include "lincheck/lincheck.h"

static const char *const key_names[SIM_MAX_KEYS] = {"k0", "k1", "k2", "k3",
                                                     "k4"};

void sim_check_linear(struct sim *s)
{
    struct lincheck_op *ops = craft_calloc(s->hist.n + 1, sizeof(*ops));
    if (!ops) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->hist.n; i++) {
        const struct sim_op *h = &s->hist.ops[i];
        if (h->stage == SIM_ST_DROPPED)
            continue;
        if (h->stage != SIM_ST_DONE) /* still pending at the very end */
            if (h->kind == SIM_OP_GET)
                continue;
        if (h->kind == SIM_OP_TXN || h->kind == SIM_OP_LIST)
            continue;
        bool done = h->stage == SIM_ST_DONE;
        if (h->kind == SIM_OP_CAS && done && h->outcome == SIM_FAIL &&
            !h->refused)
            continue;
        struct lincheck_op *o = &ops[n++];
        o->client = h->client;
        o->key = h->key >= SIM_TKEY ? sim_tkey_name(h->key)
                                    : key_names[h->key];
        o->mod = h->mod;
        o->has_mod = h->has_mod && done && h->outcome != SIM_UNKNOWN;
        o->expect = h->expect;
        o->invoke = h->invoke;
        o->complete = h->complete;
        switch (h->kind) {
        case SIM_OP_PUT:
            o->kind = LINCHECK_PUT;
            o->value = h->value;
            o->has_value = true;
            break;
        case SIM_OP_DELETE:
            o->kind = LINCHECK_DELETE;
            break;
        case SIM_OP_CAS:
            o->kind = LINCHECK_CAS;
            o->value = h->value;
            o->has_value = true;
            break;
        default:
            o->kind = LINCHECK_GET;
            o->has_value = h->has_value;
            o->value = h->has_value ? h->value : NULL;
        }
        if (h->stage != SIM_ST_DONE || h->outcome == SIM_UNKNOWN) {
            o->outcome = LINCHECK_OUTCOME_UNKNOWN;
            o->complete = LINCHECK_INF;
        } else {
            o->outcome = h->outcome == SIM_OK ? LINCHECK_OUTCOME_OK
                                              : LINCHECK_OUTCOME_FAIL;
        }
    }
    struct lincheck_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.max_steps = 2000000;
    opts.max_explain_ops = 40;
    struct lincheck_result res;
    int rc = lincheck_check(ops, n, &opts, &res);
    if (rc) {
        sim_fail(s, "sim", "lincheck rejects the recorded history: %s",
                 craft_errname(rc));
    } else if (res.verdict == LINCHECK_VIOLATION) {
        sim_fail(s, "linearizability", "key %s has no linearization (%zu ops"
                 " checked; explanation below)", res.bad_key ? res.bad_key : "?",
                 res.n_checked);
        const char *ex = res.explanation ? res.explanation : "";
        craft_free(s->detail);
        s->detail = craft_memdup(ex, strlen(ex) + 1);
    } else if (res.verdict == LINCHECK_UNKNOWN) {
        sim_ev(s, EV_NOTE, 0, 0, 0, res.steps, 0, 0, 0, "lincheck budget out");
    }
    lincheck_result_free(&res);
    craft_free(ops);
}
