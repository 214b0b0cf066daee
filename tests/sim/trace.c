/* The event trace of one run: a ring of fixed-size records, formatted only
 * when printed (on failure, or live with --verbose). Nodes are slots; Raft
 * ids in events are recorded as sim_tag()s (n3, or n3.2 for the second
 * incarnation of slot 3). */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"

void sim_trace_init(struct sim_trace *t, size_t cap)
{
    t->ring = craft_calloc(cap, sizeof(*t->ring));
    t->cap = t->ring ? cap : 0;
    t->n = 0;
}

void sim_trace_free(struct sim_trace *t)
{
    craft_free(t->ring);
    t->ring = NULL;
    t->cap = 0;
}

void sim_ev(struct sim *s, int kind, unsigned x, uint64_t node, uint64_t peer,
            uint64_t a, uint64_t b, uint64_t c, uint64_t d, const char *str)
{
    struct sim_trace *t = &s->trace;
    if (t->cap == 0)
        return;
    struct sim_event *e = &t->ring[t->n % t->cap];
    t->n++;
    e->step = s->now;
    e->kind = (uint16_t)kind;
    e->node = (uint8_t)node;
    e->peer = (uint8_t)peer;
    e->x = (uint8_t)x;
    e->a = a;
    e->b = b;
    e->c = c;
    e->d = d;
    e->str[0] = 0;
    if (str) {
        strncpy(e->str, str, sizeof(e->str) - 1);
        e->str[sizeof(e->str) - 1] = 0;
    }
    if (s->o.verbose) {
        char line[200];
        sim_event_format(e, line, sizeof(line));
        fprintf(s->out, "%s\n", line);
    }
}

static const char *msg_name(uint64_t type)
{
    static const char *const names[] = {
        "?",         "APP",        "APP_RESP",  "VOTE",       "VOTE_RESP",
        "PRE_VOTE",  "PRE_VOTE_R", "HB",        "HB_RESP",    "SNAP",
        "SNAP_RESP", "TIMEOUT_NOW", "PROP",     "PROP_RESP",  "READ_IDX",
        "READ_IDX_R", "TRANSFER",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

static const char *op_name(uint64_t kind)
{
    static const char *const names[] = {"?",   "put", "del", "get",
                                        "cas", "txn", "list"};
    return kind >= 1 && kind <= SIM_OP_LIST ? names[kind] : "?";
}

static const char *outcome_name(uint64_t o)
{
    return o == SIM_OK ? "ok" : o == SIM_FAIL ? "fail" : "unknown";
}

static const char *conf_op_name(uint64_t op)
{
    return op == RAFT_CONF_ADD_VOTER     ? "add-voter"
           : op == RAFT_CONF_ADD_LEARNER ? "add-learner"
           : op == RAFT_CONF_REMOVE      ? "remove"
           : op == RAFT_CONF_FOUNDER     ? "founder"
           : op == RAFT_CONF_PROMOTE     ? "promote"
                                         : "?";
}

static void fmt_msg(const struct sim_event *e, char *buf, size_t len,
                    const char *verb)
{
    unsigned n_ent = (unsigned)(e->d & 0xffffffff);
    bool reject = (e->d >> 32) & 1;
    int l = snprintf(buf, len, "%s n%u->n%u %s t%" PRIu64 " i%" PRIu64
                     " c%" PRIu64 "%s", verb, e->node, e->peer, msg_name(e->x),
                     e->a, e->b, e->c, reject ? " REJECT" : "");
    if (l > 0 && (size_t)l < len && n_ent)
        l += snprintf(buf + l, len - (size_t)l, " ents=%u", n_ent);
    if (l > 0 && (size_t)l < len && e->str[0])
        snprintf(buf + l, len - (size_t)l, " %s", e->str);
}

static const char *rejoin_name(uint64_t r)
{
    return r == 2 ? "a voter" : r == 1 ? "a learner" : "nothing: not a member";
}

static void fmt_ident(const struct sim_event *e, char *buf, size_t len)
{
    char t[16];
    switch (e->x) {
    case 1:
    case 2:
        snprintf(buf, len, "n%u %s (the join re-adds it as %s)", e->node,
                 e->x == 1 ? "CRASH: its data directory is WIPED"
                           : "CRASH: its disk loses its last synced writes",
                 rejoin_name(e->a));
        break;
    case 3:
        snprintf(buf, len, "n%u refuses to start: its log ends at %" PRIu64
                 ", before its durable commit %" PRIu64 " (raft_new: %s);"
                 " the operator moves the directory aside at step %" PRIu64,
                 e->node, e->a, e->b, craft_errname((int)(int64_t)e->c), e->d);
        break;
    case 4:
        snprintf(buf, len, "n%u refuses to start: storage finds a zeroed"
                 " segment; the operator moves the directory aside at step %"
                 PRIu64, e->node, e->d);
        break;
    case 5:
        snprintf(buf, len, "n%u starts empty as %s (incarnation %#" PRIx64
                 ", Raft id %#" PRIx64 "), to join as %s", e->node,
                 sim_tag_str(e->a, t, sizeof(t)), e->b, e->c,
                 rejoin_name(e->d));
        break;
    default:
        snprintf(buf, len, "n%u has rejoined as %s", e->node,
                 sim_tag_str(e->a, t, sizeof(t)));
        break;
    }
}

void sim_event_format(const struct sim_event *e, char *out, size_t len)
{
    char buf[160], t[16];
    switch (e->kind) {
    case EV_SEND: fmt_msg(e, buf, sizeof(buf), "send"); break;
    case EV_DROP: fmt_msg(e, buf, sizeof(buf), "DROP"); break;
    case EV_DUP: fmt_msg(e, buf, sizeof(buf), "dup "); break;
    case EV_DELIVER: fmt_msg(e, buf, sizeof(buf), "recv"); break;
    case EV_LOST: fmt_msg(e, buf, sizeof(buf), "lost"); break;
    case EV_STEP_ERR:
        snprintf(buf, sizeof(buf), "n%u raft_step(%s from n%u) = %s", e->node,
                 msg_name(e->x), e->peer, craft_errname((int)(int64_t)e->a));
        break;
    case EV_ROLE:
        snprintf(buf, sizeof(buf), "n%u is %s term %" PRIu64 " leader %s",
                 e->node, raft_role_name((enum raft_role)e->x), e->a,
                 sim_tag_str(e->b, t, sizeof(t)));
        break;
    case EV_HS:
        snprintf(buf, sizeof(buf), "n%u hard state term %" PRIu64 " vote %s"
                 " commit %" PRIu64, e->node, e->a,
                 sim_tag_str(e->b, t, sizeof(t)), e->c);
        break;
    case EV_PERSIST:
        snprintf(buf, sizeof(buf), "n%u persist entries %" PRIu64 "..%" PRIu64
                 "%s (done in %" PRIu64 " steps)", e->node, e->a, e->b, e->str,
                 e->d);
        break;
    case EV_APPLY:
        snprintf(buf, sizeof(buf), "n%u apply %" PRIu64 "..%" PRIu64
                 " (last term %" PRIu64 ")", e->node, e->a, e->b, e->c);
        break;
    case EV_SNAP_TAKEN:
        snprintf(buf, sizeof(buf), "n%u snapshot taken at %" PRIu64 " (%" PRIu64
                 " bytes), log kept from %" PRIu64, e->node, e->a, e->b, e->c);
        break;
    case EV_SNAP_INSTALL:
        snprintf(buf, sizeof(buf), "n%u snapshot installed at %" PRIu64
                 " term %" PRIu64 " (%" PRIu64 " bytes)", e->node, e->a, e->b,
                 e->c);
        break;
    case EV_CRASH:
        snprintf(buf, sizeof(buf), "n%u CRASH%s (kept %" PRIu64 "/%" PRIu64
                 " parts of the in-flight write)", e->node, e->str, e->a, e->b);
        break;
    case EV_RESTART:
        snprintf(buf, sizeof(buf), "n%u restart: term %" PRIu64 " commit %" PRIu64
                 " snap %" PRIu64 " last %" PRIu64, e->node, e->a, e->b, e->c,
                 e->d);
        break;
    case EV_STOP:
        snprintf(buf, sizeof(buf), "n%u stopped for good (removed)", e->node);
        break;
    case EV_PART:
        snprintf(buf, sizeof(buf), "partition %s: {%#" PRIx64 "} x {%#" PRIx64
                 "} (node bitmasks) until step %" PRIu64, e->str, e->a, e->b,
                 e->c);
        break;
    case EV_HEAL: snprintf(buf, sizeof(buf), "heal %s", e->str); break;
    case EV_INVOKE:
        snprintf(buf, sizeof(buf), "client %u op#%" PRIu64 " %s%s k%" PRIu64
                 " %s at n%u", e->peer, e->a, op_name(e->x),
                 e->c ? "(lease)" : "", e->b, e->str, e->node);
        break;
    case EV_DONE:
        snprintf(buf, sizeof(buf), "client %u op#%" PRIu64 " %s: %s (index %"
                 PRIu64 " term %" PRIu64 ")", e->peer, e->a,
                 outcome_name(e->x), e->str, e->b, e->c);
        break;
    case EV_PROP:
        snprintf(buf, sizeof(buf), "n%u prop result id %#" PRIx64 " -> index %"
                 PRIu64 " term %" PRIu64 " %s", e->node, e->a, e->b, e->c,
                 craft_errname((int)(int64_t)e->d));
        break;
    case EV_READ:
        snprintf(buf, sizeof(buf), "n%u read result id %" PRIu64 " -> index %"
                 PRIu64 " %s", e->node, e->a, e->b,
                 craft_errname((int)(int64_t)e->d));
        break;
    case EV_CONF:
        snprintf(buf, sizeof(buf), "n%u propose %s %s -> %s", e->node,
                 conf_op_name(e->x), sim_tag_str(e->a, t, sizeof(t)),
                 craft_errname((int)(int64_t)e->b));
        break;
    case EV_CONF_APPLIED:
        snprintf(buf, sizeof(buf), "conf change committed at %" PRIu64
                 ": %s %s", e->b, conf_op_name(e->x),
                 sim_tag_str(e->a, t, sizeof(t)));
        break;
    case EV_TRANSFER:
        snprintf(buf, sizeof(buf), "n%u transfer leadership to n%u -> %s",
                 e->node, e->peer, craft_errname((int)(int64_t)e->a));
        break;
    case EV_FINAL:
        snprintf(buf, sizeof(buf), "final phase: %s", e->str);
        break;
    case EV_PAUSE:
        snprintf(buf, sizeof(buf), "n%u PAUSED until step %" PRIu64
                 " (at tick %" PRIu64 ")", e->node, e->a, e->b);
        break;
    case EV_WAKE:
        snprintf(buf, sizeof(buf), "n%u wakes: owes %" PRIu64 " ticks, %" PRIu64
                 " messages queued", e->node, e->a, e->b);
        break;
    case EV_CAMPAIGN:
        snprintf(buf, sizeof(buf), "n%u campaigns early (raft_campaign) -> %s",
                 e->node, craft_errname((int)(int64_t)e->a));
        break;
    case EV_LATE:
        snprintf(buf, sizeof(buf), "the %s n%u->n%u is held back until step %"
                 PRIu64, msg_name(e->x), e->node, e->peer, e->a);
        break;
    case EV_IDENT: fmt_ident(e, buf, sizeof(buf)); break;
    case EV_FORGE:
        snprintf(buf, sizeof(buf), "n%u is handed a forged %s (%s) as from"
                 " n%u: term %" PRIu64 " index %" PRIu64 " commit %" PRIu64
                 " -> %s", e->node, msg_name(e->x), e->str, e->peer, e->a,
                 e->b, e->c, craft_errname((int)(int64_t)e->d));
        break;
    default:
        snprintf(buf, sizeof(buf), "note: %s %" PRIu64 " %" PRIu64, e->str,
                 e->a, e->b);
        break;
    }
    snprintf(out, len, "[%6" PRIu64 "] %s", e->step, buf);
}

void sim_trace_print(const struct sim *s, FILE *f, size_t last)
{
    const struct sim_trace *t = &s->trace;
    uint64_t n = t->n < t->cap ? t->n : t->cap;
    if (last < n)
        n = last;
    char line[200];
    for (uint64_t i = t->n - n; i < t->n; i++) {
        sim_event_format(&t->ring[i % t->cap], line, sizeof(line));
        fprintf(f, "  %s\n", line);
    }
}
