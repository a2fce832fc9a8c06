/*
 * segment.c: the journal's segment files: the record format (laid out at the top of spool.c)
 * with its CRC32C checksums, the bounded read buffer every read goes through, the scan that
 * finds the next valid record (resynchronising after corrupt bytes), and the list of segments.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

#define REC_MAGIC 0x4d515253u
#define REC_VERSION 1u

/* ---- checksums and times --------------------------------------------------------------- */

/* CRC32C (Castagnoli, reflected 0x82F63B78), slicing by 8; the tables live in the spool. */
void spool_crc_init(uint32_t t[8][256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
}

/* Continues crc (0 to start) over p[0..n). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_CRC_HW 1
/* The same CRC32C with SSE 4.2's crc32 instruction: 8 bytes a step, several times faster than
 * the tables (a spooled message is checksummed once when written and once when read). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = (uint32_t)~crc;

    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;

    for (; n; n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t spool_crc_upd(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef HAVE_CRC_HW
    if (__builtin_cpu_supports("sse4.2"))
        return crc_hw(crc, p, n);
#endif
    return spool_crc_sw(t, crc, p, n);
}

uint32_t spool_crc_sw(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = crc ^ get32(p), hi = get32(p + 4);

        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
              t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    }
    while (n--)
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

static uint64_t to_wall(const struct relay_spool *sp, uint64_t mono)
{
    int64_t w = (int64_t)mono + sp->wall_off;

    return w > 0 ? (uint64_t)w : 0;
}

/* ---- records --------------------------------------------------------------------------- */

/* Checks the header at h (REC_HDR bytes). avail: bytes of the file from h on. */
bool spool_rec_parse(const struct relay_spool *sp, const uint8_t *h, uint64_t avail, struct rec *r)
{
    if (get32(h) != REC_MAGIC || get32(h + 4) != spool_crc_upd(sp->crc, 0, h + 8, REC_HDR - 8) ||
        h[53] != REC_VERSION)
        return false;
    r->len = get32(h + 8);
    r->dcrc = get32(h + 12);
    r->seq = get64(h + 16);
    r->t_wall = get64(h + 24);
    r->expiry = get32(h + 32);
    r->expiry_off = get32(h + 36);
    r->pid_off = get32(h + 40);
    r->route = get32(h + 44);
    r->conn = get32(h + 48);
    r->qos = h[52];
    return r->seq != 0 && r->len <= REC_MAX_DATA && r->len <= avail - REC_HDR && r->qos <= 2 &&
           (r->qos ? r->pid_off && (uint64_t)r->pid_off + 2 <= r->len : r->pid_off == 0) &&
           (!r->expiry_off || (uint64_t)r->expiry_off + 4 <= r->len);
}

void spool_rec_write(const struct relay_spool *sp, uint8_t *h, uint64_t seq,
                     const struct relay_msg *m, uint32_t conn)
{
    memset(h, 0, REC_HDR);
    put32(h, REC_MAGIC);
    put32(h + 8, m->len);
    put32(h + 12, spool_crc_upd(sp->crc, 0, m->data, m->len));
    put64(h + 16, seq);
    put64(h + 24, to_wall(sp, m->t_in_ms));
    put32(h + 32, m->expiry);
    put32(h + 36, m->expiry_off);
    put32(h + 40, m->pid_off);
    put32(h + 44, m->route);
    put32(h + 48, conn);
    h[52] = m->qos;
    h[53] = REC_VERSION;
    put32(h + 4, spool_crc_upd(sp->crc, 0, h + 8, REC_HDR - 8));
    memcpy(h + REC_HDR, m->data, m->len);
}

/* ---- the read buffer ------------------------------------------------------------------- */

void spool_rb_close(struct rbuf *rb)
{
    if (rb->fd >= 0)
        close(rb->fd);
    rb->fd = -1;
    rb->len = 0;
    rb->off = 0;
}

/* Makes file bytes [pos, pos + n) (n <= RB_CAP, pos + n <= end) available at *p. 0, 1 when
 * the file ends first, or -errno. Reads ahead up to end, never past it. */
int spool_rb_get(struct rbuf *rb, uint64_t pos, size_t n, uint64_t end, const uint8_t **p)
{
    size_t keep = 0, want;

    if (pos >= rb->off && pos + n <= rb->off + rb->len) {
        *p = rb->buf + (pos - rb->off);
        return 0;
    }
    if (pos >= rb->off && pos < rb->off + rb->len) {
        keep = (size_t)(rb->off + rb->len - pos);
        memmove(rb->buf, rb->buf + (pos - rb->off), keep);
    }
    rb->off = pos;
    rb->len = keep;
    want = end - pos < RB_CAP ? (size_t)(end - pos) : RB_CAP;
    while (rb->len < want) {
        ssize_t r = pread(rb->fd, rb->buf + rb->len, want - rb->len, (off_t)(pos + rb->len));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        rb->len += (size_t)r;
    }
    if (rb->len < n)
        return 1;
    *p = rb->buf + (pos - rb->off);
    return 0;
}

/* CRC32C of file bytes [pos, pos + n), or copies them to dst when dst is not NULL. 0, 1 (the
 * file is shorter), -errno. */
int spool_rb_span(struct relay_spool *sp, uint64_t pos, uint64_t n, uint64_t end, uint32_t *crc,
                  uint8_t *dst)
{
    uint32_t c = 0;

    while (n) {
        size_t k = n < RB_CAP ? (size_t)n : RB_CAP;
        const uint8_t *p = NULL;
        int rc = spool_rb_get(&sp->rb, pos, k, end, &p);

        if (rc)
            return rc;
        if (dst) {
            memcpy(dst, p, k);
            dst += k;
        } else {
            c = spool_crc_upd(sp->crc, c, p, k);
        }
        pos += k;
        n -= k;
    }
    if (crc)
        *crc = c;
    return 0;
}

/* 1 when a valid record starts at pos (r filled), 0 when not, -errno. */
static int try_rec(struct relay_spool *sp, uint64_t pos, uint64_t end, struct rec *r)
{
    const uint8_t *h = NULL;
    uint32_t c;
    int rc;

    if (end - pos < REC_HDR)
        return 0;
    rc = spool_rb_get(&sp->rb, pos, REC_HDR, end, &h);
    if (rc)
        return rc < 0 ? rc : 0;
    if (!spool_rec_parse(sp, h, end - pos, r))
        return 0;
    rc = spool_rb_span(sp, pos + REC_HDR, r->len, end, &c, NULL);
    if (rc)
        return rc < 0 ? rc : 0;
    return c == r->dcrc;
}

/* The next valid record at or after *pos, below end, in the read buffer's segment. 1: found at
 * *pos, *skipped corrupt bytes were passed over to reach it. 0: none; [*pos, end) holds no valid
 * record. -errno: a read failed. Resynchronises on the magic and both checksums. */
int spool_scan(struct relay_spool *sp, uint64_t end, uint64_t *pos, struct rec *r,
               uint64_t *skipped)
{
    static const uint8_t magic[4] = {REC_MAGIC & 0xff, (REC_MAGIC >> 8) & 0xff,
                                     (REC_MAGIC >> 16) & 0xff, REC_MAGIC >> 24};
    uint64_t q = *pos + 1;
    int rc = try_rec(sp, *pos, end, r);

    *skipped = 0;
    if (rc)
        return rc;
    while (q + REC_HDR <= end) {
        size_t n = end - q < RB_CAP ? (size_t)(end - q) : RB_CAP;
        const uint8_t *p = NULL, *f;

        if ((rc = spool_rb_get(&sp->rb, q, n, end, &p)) != 0)
            return rc < 0 ? rc : 0;
        f = memmem(p, n, magic, sizeof(magic));
        if (!f) {
            q += n - (sizeof(magic) - 1);
            continue;
        }
        q += (uint64_t)(f - p);
        if ((rc = try_rec(sp, q, end, r)) < 0)
            return rc;
        if (rc) {
            *skipped = q - *pos;
            *pos = q;
            return 1;
        }
        q++;
    }
    return 0;
}

/* Points the read buffer at segment s. 0 or -errno. */
int spool_rb_open(struct relay_spool *sp, const struct seg *s)
{
    char name[64];
    int fd;

    if (sp->rb.fd >= 0 && sp->rb.name == s->name)
        return 0;
    spool_rb_close(&sp->rb);
    seg_file(name, sizeof(name), s->name);
    fd = openat(sp->dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    sp->rb.fd = fd;
    sp->rb.name = s->name;
    return 0;
}

/* ---- the segment list ------------------------------------------------------------------ */

int spool_segs_push(struct relay_spool *sp, uint64_t name)
{
    if (sp->n_segs == sp->segs_cap) {
        size_t cap = sp->segs_cap ? 2 * sp->segs_cap : 16;
        struct seg *s = realloc(sp->segs, cap * sizeof(*s));

        if (!s)
            return -ENOMEM;
        sp->segs = s;
        sp->segs_cap = cap;
    }
    sp->segs[sp->n_segs++] = (struct seg){.name = name};
    return 0;
}

/* Forgets segs[i] (and unlinks its file when unlink_it), keeping the reader's place. */
void spool_segs_remove(struct relay_spool *sp, size_t i, bool unlink_it)
{
    char name[64];

    seg_file(name, sizeof(name), sp->segs[i].name);
    if (sp->rb.fd >= 0 && sp->rb.name == sp->segs[i].name)
        spool_rb_close(&sp->rb);
    if (i == sp->n_segs - 1 && sp->wfd >= 0) {
        close(sp->wfd);
        sp->wfd = -1;
    }
    if (unlink_it && unlinkat(sp->dfd, name, 0) != 0 && errno != ENOENT)
        relay_log(sp->log, RELAY_LOG_WARN, sp->who, "cannot remove %s/%s: %s", sp->dir, name,
                  strerror(errno));
    sp->seg_bytes -= sp->segs[i].size;
    memmove(sp->segs + i, sp->segs + i + 1, (sp->n_segs - i - 1) * sizeof(*sp->segs));
    sp->n_segs--;
    if (sp->rd_idx > i) {
        sp->rd_idx--;
    } else if (sp->rd_idx == i) {
        sp->rd_off = 0; /* it had read all of it: the next segment from its start */
        sp->cur_ok = false;
    }
}
