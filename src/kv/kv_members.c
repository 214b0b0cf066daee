/* The member directory: node id -> raft id and addresses, a small array in
 * insertion order (a cluster has a handful of members; lookups scan). */
#include "kv/kv_internal.h"

#include <string.h>
#include <sys/types.h>

#include "common/alloc.h"

static void member_clear(struct kv_member *m)
{
    craft_free(m->id);
    craft_free(m->raft_addr);
    craft_free(m->http_addr);
}

void kv__members_free(struct kv *kv)
{
    for (size_t i = 0; i < kv->n_members; i++)
        member_clear(&kv->members[i]);
    craft_free(kv->members);
    kv->members = NULL;
    kv->n_members = kv->members_cap = 0;
}

static char *dup_str(const char *s)
{
    if (s == NULL)
        s = "";
    return craft_memdup(s, strlen(s) + 1);
}

static ssize_t index_of(const struct kv *kv, const char *id)
{
    for (size_t i = 0; i < kv->n_members; i++)
        if (strcmp(kv->members[i].id, id) == 0)
            return (ssize_t)i;
    return -1;
}

/* Room for one more member. */
static int grow(struct kv *kv)
{
    if (kv->n_members < kv->members_cap)
        return 0;
    size_t cap = kv->members_cap ? kv->members_cap * 2 : 4;
    struct kv_member *m = craft_realloc(kv->members, cap * sizeof *m);
    if (m == NULL)
        return CRAFT_ENOMEM;
    kv->members = m;
    kv->members_cap = cap;
    return 0;
}

int kv_member_set(struct kv *kv, const char *id, uint64_t raft_id,
                  const char *raft_addr, const char *http_addr)
{
    if (id == NULL)
        return CRAFT_EINVAL;
    struct kv_member m = {
        .id = dup_str(id),
        .raft_id = raft_id,
        .raft_addr = dup_str(raft_addr),
        .http_addr = dup_str(http_addr),
    };
    ssize_t i = index_of(kv, id);
    if (!m.id || !m.raft_addr || !m.http_addr || (i < 0 && grow(kv) != 0)) {
        member_clear(&m);
        return CRAFT_ENOMEM;
    }
    if (i >= 0) {
        member_clear(&kv->members[i]);
        kv->members[i] = m;
    } else {
        kv->members[kv->n_members++] = m;
    }
    return 0;
}

int kv_member_del(struct kv *kv, const char *id)
{
    ssize_t i = id ? index_of(kv, id) : -1;
    if (i < 0)
        return CRAFT_ENOTFOUND;
    member_clear(&kv->members[i]);
    memmove(&kv->members[i], &kv->members[i + 1],
            (kv->n_members - (size_t)i - 1) * sizeof kv->members[0]);
    kv->n_members--;
    return 0;
}

const struct kv_member *kv_member_get(const struct kv *kv, const char *id)
{
    ssize_t i = id ? index_of(kv, id) : -1;
    return i < 0 ? NULL : &kv->members[i];
}

const struct kv_member *kv_member_by_raft_id(const struct kv *kv,
                                             uint64_t raft_id)
{
    for (size_t i = 0; i < kv->n_members; i++)
        if (kv->members[i].raft_id == raft_id)
            return &kv->members[i];
    return NULL;
}

size_t kv_member_count(const struct kv *kv)
{
    return kv->n_members;
}

const struct kv_member *kv_member_at(const struct kv *kv, size_t i)
{
    return i < kv->n_members ? &kv->members[i] : NULL;
}
