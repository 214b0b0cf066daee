/* -force-new-cluster (docs/operations.md, "A quorum lost for good"): the
 * state of a node whose cluster can never again reach a quorum becomes a
 * new one-member cluster.
 *
 * What it does, at start, before the core, the transport or HTTP run:
 *  - it refuses what has nothing to keep: a missing or empty directory, a
 *    directory without Raft state, a removed node, a node in conflict, a
 *    node that its latest configuration does not list;
 *  - it keeps the whole log, up to the last entry, committed or not (as
 *    etcd's --force-new-cluster): the node's last entries may be writes the
 *    old cluster committed without telling it yet, and dropping them could
 *    lose acknowledged writes; keeping them may resurrect writes that were
 *    never acknowledged. Nobody can tell which: it says how many;
 *  - it draws a new cluster id and stores it (IDENTITY) before anything
 *    else is written, so that old members that come back are refused by the
 *    peer handshake rather than merged (docs/identity.md). The incarnation,
 *    hence the Raft id, stays: the log and the votes it holds are its own;
 *  - it appends, in a new term, one membership entry per other member (a
 *    removal) and, for a learner, its own promotion, and stores them with a
 *    commit index at the new last entry: every entry of the log is then
 *    committed, and the configuration in force is this node alone;
 *  - it logs one ERROR line per member dropped, a WARN with the entries it
 *    promoted, and an ERROR summary; then the node starts as after a
 *    restart and leads alone.
 * A crash half-way leaves either the old state with a new cluster id (the
 * node talks to nobody; run it again with the flag) or the finished state. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"

/* At most every member but this one, and its own promotion. */
#define MAX_CHANGES RAFT_MAX_MEMBERS

__attribute__((format(printf, 3, 4))) static int say(char *why, size_t cap, const char *fmt,
                                                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return CRAFT_EINVAL;
}

int node_force_dir_check(const char *dir, char *why, size_t cap)
{
    why[0] = '\0';
    DIR *d = opendir(dir);
    if (d == NULL) {
        int err = -errno;
        if (err == -ENOENT)
            return say(why, cap, "the data directory %s does not exist: -force-new-cluster "
                       "keeps the state a node already has, and there is none here. Give "
                       "the directory of the node with the longest log", dir);
        say(why, cap, "cannot read the data directory %s: %s", dir, craft_strerror(err));
        return err;
    }
    struct dirent *e;
    bool any = false;
    while (!any && (e = readdir(d)) != NULL)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    if (!any)
        return say(why, cap, "the data directory %s is empty: -force-new-cluster keeps the "
                   "state a node already has, and there is none here. Give the directory "
                   "of the node with the longest log", dir);
    return 0;
}

/* A member's name and addresses: from the newest membership entry of the
 * log that carries them, else from the snapshot's member directory. */
struct who {
    char name[512], raft_addr[512], http_addr[512];
};

static void find_member(const struct node *n, const struct raft_persisted *p, uint64_t id,
                        struct who *w)
{
    snprintf(w->name, sizeof w->name, "?");
    w->raft_addr[0] = w->http_addr[0] = '\0';
    for (size_t i = p->n_entries; i-- > 0;) {
        const struct raft_entry *e = &p->entries[i];
        struct raft_conf_change cc;
        char s[3][512];
        if (e->type != RAFT_ENTRY_CONF || raft_conf_change_decode(e->data, e->len, &cc) != 0 ||
            cc.node != id || cc.ctx_len == 0 ||
            node__member_ctx_decode(cc.ctx, cc.ctx_len, s) != 0)
            continue;
        snprintf(w->name, sizeof w->name, "%s", s[0]);
        snprintf(w->raft_addr, sizeof w->raft_addr, "%s", s[1]);
        snprintf(w->http_addr, sizeof w->http_addr, "%s", s[2]);
        return;
    }
    const struct kv_member *m = kv_member_by_raft_id(n->kv, id);
    if (m != NULL) {
        snprintf(w->name, sizeof w->name, "%s", m->id);
        snprintf(w->raft_addr, sizeof w->raft_addr, "%s", m->raft_addr);
        snprintf(w->http_addr, sizeof w->http_addr, "%s", m->http_addr);
    }
}

/* Why this node's state cannot become a cluster, or NULL. */
static const char *refusal(const struct node *n, char *buf, size_t cap)
{
    if (n->removed) {
        snprintf(buf, cap, "this node was removed from its cluster (%s): its state is "
                 "no longer the cluster's", n->removed_why);
        return buf;
    }
    if (n->conflict) {
        snprintf(buf, cap, "this node is in conflict (%s): its state is not the data of "
                 "the cluster that counts it", n->conflict_why);
        return buf;
    }
    if (raft_hard(n->raft).term + 1 >= RAFT_TERM_MAX) {
        snprintf(buf, cap, "its term %llu is at the bound: it could never lead",
                 (unsigned long long)raft_hard(n->raft).term);
        return buf;
    }
    const struct raft_conf *c = raft_conf(n->raft);
    if (!raft_conf_is_voter(c, n->raft_id) && !raft_conf_is_learner(c, n->raft_id)) {
        snprintf(buf, cap, "this node (Raft id %016llx) is not in the latest configuration "
                 "its log holds (%u voters, %u learners): it never finished joining, so "
                 "what it has is not the cluster's state", (unsigned long long)n->raft_id,
                 c->n_voters, c->n_learners);
        return buf;
    }
    return NULL;
}

/* The membership entries that leave this node alone, in term `term` from
 * index `first`: one removal per other member, its own promotion if it is
 * a learner. Their data is allocated in bufs (freed by the caller). */
static int build_changes(const struct node *n, uint64_t term, uint64_t first,
                         struct raft_entry *ents, uint8_t **bufs, size_t *count)
{
    const struct raft_conf *c = raft_conf(n->raft);
    struct raft_conf_change cc[MAX_CHANGES + 1];
    size_t k = 0;
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] != n->raft_id)
            cc[k++] = (struct raft_conf_change){.op = RAFT_CONF_REMOVE, .node = c->voters[i]};
    bool learner = false;
    for (uint32_t i = 0; i < c->n_learners; i++) {
        if (c->learners[i] == n->raft_id)
            learner = true;
        else
            cc[k++] = (struct raft_conf_change){.op = RAFT_CONF_REMOVE,
                                                .node = c->learners[i]};
    }
    if (learner) { /* first: a removal never leaves the cluster without a voter */
        memmove(&cc[1], &cc[0], k * sizeof cc[0]);
        cc[0] = (struct raft_conf_change){.op = RAFT_CONF_PROMOTE, .node = n->raft_id};
        k++;
    }
    for (size_t i = 0; i < k; i++) {
        size_t len = raft_conf_change_size(&cc[i]);
        bufs[i] = craft_malloc(len);
        if (bufs[i] == NULL) {
            *count = i;
            return CRAFT_ENOMEM;
        }
        raft_conf_change_encode(&cc[i], bufs[i]);
        ents[i] = (struct raft_entry){.term = term, .index = first + i,
                                      .type = RAFT_ENTRY_CONF, .len = (uint32_t)len,
                                      .data = bufs[i]};
    }
    *count = k;
    return 0;
}

/* One ERROR line per member dropped; the number of voters among them. */
static unsigned log_dropped(struct node *n, const struct raft_persisted *p, uint64_t old)
{
    const struct raft_conf *c = raft_conf(n->raft);
    unsigned voters = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        const uint64_t *ids = pass == 0 ? c->voters : c->learners;
        uint32_t count = pass == 0 ? c->n_voters : c->n_learners;
        for (uint32_t i = 0; i < count; i++) {
            if (ids[i] == n->raft_id)
                continue;
            struct who w;
            find_member(n, p, ids[i], &w);
            CRAFT_ERROR(&n->log, "-force-new-cluster: dropped %s %s (Raft id %016llx, raft "
                        "%s, http %s) of cluster %016llx", pass == 0 ? "voter" : "learner",
                        w.name, (unsigned long long)ids[i],
                        w.raft_addr[0] ? w.raft_addr : "?", w.http_addr[0] ? w.http_addr : "?",
                        (unsigned long long)old);
            voters += pass == 0;
        }
    }
    return voters;
}

int node__force_new(struct node *n, const struct raft_config *cfg, struct raft_persisted *p)
{
    char buf[1400];
    const char *no = refusal(n, buf, sizeof buf);
    if (no != NULL) {
        CRAFT_ERROR(&n->log, "-force-new-cluster: %s. Nothing was changed; start the node "
                    "without the flag, or give it the directory of another node", no);
        return CRAFT_EINVAL;
    }
    const struct raft_conf *c = raft_conf(n->raft);
    uint64_t old = n->ident.cluster_id, last = raft_last_index(n->raft);
    uint64_t commit = raft_commit_index(n->raft), term = raft_hard(n->raft).term + 1;
    size_t dropped = c->n_voters + c->n_learners - 1;

    /* The new cluster id first: from then on no old member is let in. */
    struct stor_identity id = n->ident;
    int rv = stor_random_id(NULL, &id.cluster_id);
    if (rv == 0) {
        id.flags |= STOR_IDENT_FOUNDER;
        rv = stor_identity_save(n->dir, NULL, &id);
    }
    if (rv) {
        CRAFT_ERROR(&n->log, "-force-new-cluster: cannot store a new cluster id in %s: %s; "
                    "nothing was changed", n->dir, craft_strerror(rv));
        return rv;
    }
    n->ident = id;

    struct raft_entry ents[MAX_CHANGES + 1];
    uint8_t *bufs[MAX_CHANGES + 1];
    size_t k = 0;
    rv = build_changes(n, term, last + 1, ents, bufs, &k);
    if (rv == 0) {
        struct raft_hard_state hs = {.term = term, .vote = RAFT_NONE, .commit = last + k};
        rv = stor_save(n->stor, &hs, ents, k, NULL);
    }
    for (size_t i = 0; i < k; i++)
        craft_free(bufs[i]);
    if (rv) {
        CRAFT_ERROR(&n->log, "-force-new-cluster: cannot write the new configuration into "
                    "%s: %s. The node has a new cluster id but still its old members: run "
                    "it again with -force-new-cluster", n->dir, craft_strerror(rv));
        return rv;
    }

    unsigned voters = log_dropped(n, p, old);
    if (last > commit)
        CRAFT_WARN(&n->log, "-force-new-cluster: kept %llu %s (index %llu..%llu) that this "
                   "node did not know to be committed, as committed: the old cluster may "
                   "have committed them or not, nobody can tell now",
                   (unsigned long long)(last - commit),
                   last - commit == 1 ? "entry" : "entries", (unsigned long long)(commit + 1),
                   (unsigned long long)last);
    else
        CRAFT_WARN(&n->log, "-force-new-cluster: kept 0 entries not known to be committed: "
                   "this node knew every entry of its log (up to %llu) to be committed",
                   (unsigned long long)last);
    CRAFT_ERROR(&n->log, "-force-new-cluster: cluster %016llx is now cluster %016llx, with "
                "%s (Raft id %016llx) its only voter: kept the log up to index %llu "
                "(%llu entries not known to be committed among them), dropped %zu members "
                "(%u voters, %zu learners) in term %llu. Old members that come back are "
                "refused: move their data directories aside and restart them with -join "
                "%s", (unsigned long long)old, (unsigned long long)id.cluster_id, n->id,
                (unsigned long long)n->raft_id, (unsigned long long)last,
                (unsigned long long)(last - commit), dropped, voters, dropped - voters,
                (unsigned long long)term, n->http_addr);

    if (old == 0)
        CRAFT_WARN(&n->log, "-force-new-cluster: the old cluster had no cluster id (it was "
                   "founded by an older craftd), so the peer handshake cannot tell its "
                   "members from this cluster's: never restart them with their old "
                   "directories");

    /* Read back as at a restart. */
    raft_free(n->raft);
    n->raft = NULL;
    stor_close(n->stor);
    n->stor = NULL;
    struct stor_opts so = {.dir = n->dir, .log = &n->log};
    rv = stor_open(&so, &n->stor, p);
    if (rv == 0)
        rv = raft_new(cfg, p, &n->raft);
    if (rv)
        return rv;
    c = raft_conf(n->raft);
    if (c->n_voters != 1 || c->voters[0] != n->raft_id || c->n_learners != 0 ||
        raft_commit_index(n->raft) != raft_last_index(n->raft)) {
        CRAFT_ERROR(&n->log, "-force-new-cluster: the configuration read back is not this "
                    "node alone (%u voters, %u learners)", c->n_voters, c->n_learners);
        return CRAFT_ECORRUPT;
    }
    return 0;
}
