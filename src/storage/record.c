/* The on-disk format of log segments and snapshot files: encoding, decoding
 * and the validity rule. This comment is the format's specification.
 *
 * All integers are little-endian. CRC is CRC32C (common/crc32c.h, start 0).
 *
 * SEGMENT FILE "log-<seq:20 digits>-<first:20 digits>": a header, then
 * records back to back, appended and never rewritten.
 *   header (48 bytes)
 *     0   8  magic "CRAFTLOG"
 *     8   4  version (1)
 *    12   4  zero
 *    16   8  seq     segment sequence number, equal to the name's; the
 *                    segments in a directory have consecutive seqs
 *    24   8  salt    random, drawn when the file is created
 *    32   8  first   the index of the first entry it was created to hold
 *                    (informative: recovery orders segments by seq)
 *    40   4  CRC of bytes 0..39
 *    44   4  zero
 *   record (12 + len bytes)
 *     0   4  CRC of (salt as 8 bytes) || bytes 4 .. 12+len of the record
 *     4   4  len     payload bytes
 *     8   1  type    1 ENTRIES, 2 HS, 3 RESET
 *     9   3  zero
 *    12 len  payload
 *   payloads
 *     ENTRIES  0: u64 first index, 8: u32 count (>= 1), 12: u32 zero, then
 *              count times { u64 term, u32 len, u8 type, 3 zero, len bytes }
 *              for indexes first, first+1, ...: the log is truncated after
 *              first-1, then these are appended.
 *     HS       u64 term, u64 vote, u64 commit (the newest one counts)
 *     RESET    u64 index, u64 term: the log is discarded; it continues at
 *              index+1 (a snapshot at index was installed)
 *   Each new segment starts with an HS record holding the hard state of the
 *   moment (if any), so deleting older segments never loses it.
 *
 * VALIDITY RULE. A record at offset o is valid iff its 12 header bytes are
 * within the file, type is 1..3, the 3 zero bytes are zero, o+12+len is
 * within the file, and the CRC matches (so it covers the length, the type,
 * the payload and this file's salt: bytes of an older file, or of an older
 * incarnation of this name, never validate). A valid record whose payload
 * does not parse is corruption, never a torn write. The log is the valid
 * records from offset 48, in order, up to the first invalid one.
 *
 * SNAPSHOT FILE "snap-<index:20 digits>": a 4096-byte header, then the data.
 *     0   8  magic "CRAFTSNP"
 *     8   4  version (1)
 *    12   4  CRC of the data (meta.size bytes from offset 4096)
 *    16   8  index     last entry the snapshot covers
 *    24   8  term      its term
 *    32   8  size      data bytes
 *    40   4  n_voters  (<= RAFT_MAX_MEMBERS)
 *    44   4  n_learners
 *    48 256  voters    32 u64 slots, unused ones zero
 *   304 256  learners  32 u64 slots
 *   560      zero up to 4092
 *  4092   4  CRC of bytes 0..4091
 *   A snapshot is valid iff both CRCs match, the file is exactly
 *   4096 + size bytes and the name's index equals the header's. */
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "storage/internal.h"

void stor__seg_header_encode(uint8_t out[STOR__SEG_HDR], uint64_t seq,
                             uint64_t salt, uint64_t first)
{
    memset(out, 0, STOR__SEG_HDR);
    memcpy(out, STOR__SEG_MAGIC, 8);
    craft_put32(out + 8, STOR__VERSION);
    craft_put64(out + 16, seq);
    craft_put64(out + 24, salt);
    craft_put64(out + 32, first);
    craft_put32(out + 40, crc32c(0, out, 40));
}

const char *stor__seg_header_decode(const uint8_t *buf, size_t len,
                                    uint64_t *seq, uint64_t *salt,
                                    uint64_t *first)
{
    if (len < STOR__SEG_HDR)
        return "short segment header";
    if (memcmp(buf, STOR__SEG_MAGIC, 8) != 0)
        return "bad segment magic";
    if (craft_get32(buf + 40) != crc32c(0, buf, 40))
        return "bad segment header checksum";
    if (craft_get32(buf + 8) != STOR__VERSION)
        return "unsupported segment version";
    *seq = craft_get64(buf + 16);
    *salt = craft_get64(buf + 24);
    *first = craft_get64(buf + 32);
    return NULL;
}

static uint32_t rec_crc(const uint8_t *rec, uint32_t len, uint64_t salt)
{
    uint8_t s[8];
    craft_put64(s, salt);
    uint32_t crc = crc32c(0, s, 8);
    return crc32c(crc, rec + 4, (size_t)STOR__REC_HDR - 4 + len);
}

const char *stor__rec_check(const uint8_t *buf, size_t avail, uint64_t salt,
                            struct stor__rec *rec)
{
    if (avail < STOR__REC_HDR)
        return "short record header";
    uint32_t len = craft_get32(buf + 4);
    uint8_t type = buf[8];
    if (type < STOR__REC_ENTRIES || type > STOR__REC_RESET)
        return "bad record type";
    if (buf[9] != 0 || buf[10] != 0 || buf[11] != 0)
        return "bad record padding";
    if (len > STOR__REC_MAX)
        return "record length over limit";
    if (len > avail - STOR__REC_HDR)
        return "record runs past end of file";
    if (craft_get32(buf) != rec_crc(buf, len, salt))
        return "bad record checksum";
    rec->type = type;
    rec->len = len;
    rec->payload = buf + STOR__REC_HDR;
    return NULL;
}

void stor__rec_seal(uint8_t *out, uint8_t type, uint32_t len, uint64_t salt)
{
    craft_put32(out + 4, len);
    out[8] = type;
    out[9] = out[10] = out[11] = 0;
    craft_put32(out, rec_crc(out, len, salt));
}

void stor__snap_header_encode(uint8_t out[STOR__SNAP_HDR],
                              const struct raft_snap_meta *m, uint32_t crc)
{
    memset(out, 0, STOR__SNAP_HDR);
    memcpy(out, STOR__SNAP_MAGIC, 8);
    craft_put32(out + 8, STOR__VERSION);
    craft_put32(out + 12, crc);
    craft_put64(out + 16, m->index);
    craft_put64(out + 24, m->term);
    craft_put64(out + 32, m->size);
    craft_put32(out + 40, m->conf.n_voters);
    craft_put32(out + 44, m->conf.n_learners);
    for (uint32_t i = 0; i < m->conf.n_voters && i < RAFT_MAX_MEMBERS; i++)
        craft_put64(out + 48 + 8 * i, m->conf.voters[i]);
    for (uint32_t i = 0; i < m->conf.n_learners && i < RAFT_MAX_MEMBERS; i++)
        craft_put64(out + 304 + 8 * i, m->conf.learners[i]);
    craft_put32(out + STOR__SNAP_HDR - 4, crc32c(0, out, STOR__SNAP_HDR - 4));
}

const char *stor__snap_header_decode(const uint8_t *buf,
                                     struct raft_snap_meta *m, uint32_t *crc)
{
    if (memcmp(buf, STOR__SNAP_MAGIC, 8) != 0)
        return "bad snapshot magic";
    if (craft_get32(buf + STOR__SNAP_HDR - 4) !=
        crc32c(0, buf, STOR__SNAP_HDR - 4))
        return "bad snapshot header checksum";
    if (craft_get32(buf + 8) != STOR__VERSION)
        return "unsupported snapshot version";
    memset(m, 0, sizeof *m);
    *crc = craft_get32(buf + 12);
    m->index = craft_get64(buf + 16);
    m->term = craft_get64(buf + 24);
    m->size = craft_get64(buf + 32);
    m->conf.n_voters = craft_get32(buf + 40);
    m->conf.n_learners = craft_get32(buf + 44);
    if (m->conf.n_voters > RAFT_MAX_MEMBERS ||
        m->conf.n_learners > RAFT_MAX_MEMBERS)
        return "bad snapshot member count";
    for (uint32_t i = 0; i < m->conf.n_voters; i++)
        m->conf.voters[i] = craft_get64(buf + 48 + 8 * i);
    for (uint32_t i = 0; i < m->conf.n_learners; i++)
        m->conf.learners[i] = craft_get64(buf + 304 + 8 * i);
    return NULL;
}
