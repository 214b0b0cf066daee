/* Raft ids from member names and incarnations (see member_id.h). */
#include "common/member_id.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

uint64_t craft_member_id(const char *name, uint64_t incarnation)
{
    uint64_t h = FNV_OFFSET;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= FNV_PRIME;
    }
    for (int i = 0; incarnation != 0 && i < 8; i++) {
        h ^= (incarnation >> (8 * i)) & 0xff;
        h *= FNV_PRIME;
    }
    return h ? h : 1;
}
