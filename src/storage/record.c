/* The on-disk format of log segments, the state file and snapshot files:
 * encoding, decoding and the validity rules. This comment is the format's
 * specification (docs/disk-format.md adds the recovery rules at length).
 *
 * All integers are little-endian. CRC is CRC32C (common/crc32c.h, start 0).
 *
 * SEGMENT FILE "log-<seq:20 digits>-<first:20 digits>": a header, then
 * records back to back, appended and never rewritten.
 *   header (48 bytes)
 *     0   8  magic "CRAFTLOG"
 *     8   4  version (2; 1 for segments written before the OPEN record)
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
 *     8   1  type    1 ENTRIES, 2 HS, 3 RESET, 4 OPEN
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
 *     OPEN     u64 term, u64 vote, u64 commit: the hard state of the moment
 *              (all zero: none yet); u64 prev_size: the length in bytes of
 *              segment seq-1 when this one was created (0: there was none).
 *              The first record of every version 2 segment, and only there.
 *
 * CREATION RULE. A version 2 segment is created by one write of its header
 * and its OPEN record (STOR__SEG_CREATE = 92 bytes), then fdatasync of the
 * file, fsync of the directory and a write of the state file naming it, and
 * only then is any other record written into it. So a segment whose header
 * or OPEN record is invalid can be the remains of a crash during its
 * creation only if it is the last segment, the file is no longer than 92
 * bytes, and the state file names neither it nor a later segment. Nothing
 * in it was ever acknowledged: only synced bytes are, nothing is written
 * into a segment before its creation is synced, and a file that short was
 * never written to after that; it holds no entry, and its hard state is
 * the one of the segment before. It is removed. Anywhere else an invalid
 * header or OPEN record is damage. The previous segment's length in OPEN
 * must equal that file's length, else it was truncated or extended after
 * it was closed: damage.
 *
 * VALIDITY RULE. A record at offset o is valid iff its 12 header bytes are
 * within the file, type is 1..4, the 3 zero bytes are zero, o+12+len is
 * within the file, and the CRC matches (so it covers the length, the type,
 * the payload and this file's salt: bytes of an older file, or of an older
 * incarnation of this name, never validate). A valid record whose payload
 * does not parse is corruption, never a torn write. The log is the valid
 * records from offset 48, in order, up to the first invalid one.
 *
 * TORN TAIL RULE. Every write to a segment but the creation is one step of
 * a save: at most STOR__WRITE_MAX (4 MiB) of whole records, or one record
 * alone if it is longer, fdatasync'd before the next step is written and
 * before the save returns. Bytes are acknowledged only once synced, so the
 * only unacknowledged bytes a crash can leave are those of the last step,
 * at the end of the last segment. An invalid record at offset o of the last
 * segment (size bytes) is therefore a torn tail, cut off at o, iff no valid
 * record follows it anywhere in the file (a byte-by-byte scan), size - o is
 * at most max(4 MiB, the length its header claims if the header looks like
 * one), and o is not below the length the state file says was durable.
 * Anything else is damage.
 *
 * STATE FILE "state": 1024 bytes, two slots of 512 at offsets 0 and 512,
 * written alternately (the write of counter gen goes to slot gen % 2, in
 * place, then fdatasync), so a torn write spoils one slot and the other
 * still holds the write before. It is created whole (temporary file,
 * fdatasync, rename, directory fsync) before the first version 2 segment.
 *   slot
 *     0   8  magic "CRAFTSTA"
 *     8   4  version (1)
 *    12   4  zero
 *    16   8  gen      write counter; its parity is the slot's index
 *    24   8  term     } the hard state: term and vote are written here
 *    32   8  vote     } whenever they change, after the log batch holding
 *    40   8  commit   } them is synced and before any message depending on
 *                       them is sent; the commit index about once a second
 *    48   8  seg_seq  the log was durable up to offset seg_off of segment
 *    56   8  seg_off  seg_seq when this slot was written
 *    64   4  CRC of bytes 0..63
 *    68      zero up to 512
 *   A slot is valid iff magic, version, the zero bytes 12..15, the parity
 *   of gen and the CRC are right; the valid slot with the higher gen
 *   counts. A file of another size, or with no valid slot, is damage. The
 *   state file is never behind anything a peer was told; the log may be
 *   ahead of it (a crash between the two syncs). Recovery refuses a log
 *   that is behind it.
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
    craft_put32(out + 8, STOR__SEG_VERSION);
    craft_put64(out + 16, seq);
    craft_put64(out + 24, salt);
    craft_put64(out + 32, first);
    craft_put32(out + 40, crc32c(0, out, 40));
}

const char *stor__seg_header_decode(const uint8_t *buf, size_t len,
                                    uint32_t *version, uint64_t *seq,
                                    uint64_t *salt, uint64_t *first)
{
    if (len < STOR__SEG_HDR)
        return "short segment header";
    if (memcmp(buf, STOR__SEG_MAGIC, 8) != 0)
        return "bad segment magic";
    if (craft_get32(buf + 40) != crc32c(0, buf, 40))
        return "bad segment header checksum";
    *version = craft_get32(buf + 8);
    if (*version != STOR__SEG_VERSION && *version != STOR__SEG_VERSION_1)
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
                            struct stor__rec *rec, uint64_t *claimed)
{
    if (claimed)
        *claimed = 0;
    if (avail < STOR__REC_HDR)
        return "short record header";
    uint32_t len = craft_get32(buf + 4);
    uint8_t type = buf[8];
    if (type < STOR__REC_ENTRIES || type > STOR__REC_OPEN)
        return "bad record type";
    if (buf[9] != 0 || buf[10] != 0 || buf[11] != 0)
        return "bad record padding";
    if (len > STOR__REC_MAX)
        return "record length over limit";
    if (claimed)
        *claimed = (uint64_t)STOR__REC_HDR + len;
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

void stor__open_encode(uint8_t *out, const struct stor__open *o)
{
    craft_put64(out, o->hs.term);
    craft_put64(out + 8, o->hs.vote);
    craft_put64(out + 16, o->hs.commit);
    craft_put64(out + 24, o->prev_size);
}

void stor__open_decode(const uint8_t *p, struct stor__open *o)
{
    o->hs.term = craft_get64(p);
    o->hs.vote = craft_get64(p + 8);
    o->hs.commit = craft_get64(p + 16);
    o->prev_size = craft_get64(p + 24);
}

void stor__state_encode(uint8_t out[STOR__STATE_SLOT],
                        const struct stor__state *st)
{
    memset(out, 0, STOR__STATE_SLOT);
    memcpy(out, STOR__STATE_MAGIC, 8);
    craft_put32(out + 8, STOR__STATE_VERSION);
    craft_put64(out + 16, st->gen);
    craft_put64(out + 24, st->hs.term);
    craft_put64(out + 32, st->hs.vote);
    craft_put64(out + 40, st->hs.commit);
    craft_put64(out + 48, st->seg_seq);
    craft_put64(out + 56, st->seg_off);
    craft_put32(out + 64, crc32c(0, out, 64));
}

const char *stor__state_decode(const uint8_t *buf, unsigned k,
                               struct stor__state *st)
{
    if (memcmp(buf, STOR__STATE_MAGIC, 8) != 0)
        return "bad state slot magic";
    if (craft_get32(buf + 64) != crc32c(0, buf, 64))
        return "bad state slot checksum";
    if (craft_get32(buf + 8) != STOR__STATE_VERSION)
        return "unsupported state slot version";
    if (craft_get32(buf + 12) != 0 || craft_get64(buf + 16) % 2 != k)
        return "state slot out of place";
    st->gen = craft_get64(buf + 16);
    st->hs.term = craft_get64(buf + 24);
    st->hs.vote = craft_get64(buf + 32);
    st->hs.commit = craft_get64(buf + 40);
    st->seg_seq = craft_get64(buf + 48);
    st->seg_off = craft_get64(buf + 56);
    return NULL;
}

void stor__snap_header_encode(uint8_t out[STOR__SNAP_HDR],
                              const struct raft_snap_meta *m, uint32_t crc)
{
    memset(out, 0, STOR__SNAP_HDR);
    memcpy(out, STOR__SNAP_MAGIC, 8);
    craft_put32(out + 8, STOR__SNAP_VERSION);
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
    if (craft_get32(buf + 8) != STOR__SNAP_VERSION)
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
