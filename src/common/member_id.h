/* The numeric Raft id of a member: its name (hraftd's -id string) and the
 * incarnation of its data directory, a random number drawn when a node
 * starts with no state. A node whose directory was wiped (or an -inmem node
 * restarted) comes back with a new incarnation, hence a new Raft id: the
 * cluster sees a stranger, never the voter it used to be, until it is
 * re-added (docs/identity.md). Pure functions: any thread. */
#ifndef CRAFT_MEMBER_ID_H
#define CRAFT_MEMBER_ID_H

#include <stdint.h>

/* FNV-1a 64 of name, then of the incarnation's 8 little-endian bytes
 * unless it is 0 (incarnation 0 is the data directories written before
 * incarnations existed: their ids were FNV-1a of the name alone). Never
 * RAFT_NONE (0). */
uint64_t craft_member_id(const char *name, uint64_t incarnation);

#endif
