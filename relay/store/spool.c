/* spool.c: store and forward, a crash-safe journal of PUBLISH records per spooled destination.
 *
 * Files in the spool directory (flock'ed while open, so two relays never share one):
 *   seg-<16 hex digits>.log  append-only segments, named by the sequence number of the first
 *                            record written to them (a new one every seg_target bytes)
 *   ack, ack.tmp             the delivery watermark: every record below it was delivered
 *
 * A record, every field little-endian (REC_HDR = 56 bytes, then len bytes of data):
 *    0 u32 magic   "SRQM" (0x4d515253)        28 ...
 *    4 u32 hcrc    CRC32C of bytes 8..55      32 u32 expiry      Message Expiry Interval, s
 *    8 u32 len     bytes of data              36 u32 expiry_off  0 = none
 *   12 u32 dcrc    CRC32C of the data         40 u32 pid_off     0 for QoS 0
 *   16 u64 seq     1, 2, 3, ... never reused  44 u32 route
 *   24 u64 t_in    wall-clock ms since 1970   48 u32 conn        pool connection
 *                                             52 u8 qos, 53 u8 version (1), 54 u16 zero
 * The data is the encoded PUBLISH exactly as appended (struct relay_msg data[0..len)).
 *
 * Writes: appends are serialised into one pending buffer; a commit writes it with pwrite at the
 * segment's durable end (a short or failed write is simply redone from there) and fdatasyncs.
 * After a failed fdatasync the page cache of that file is not trusted (Linux drops the dirty
 * pages and clears the error): the segment is closed at its last durable byte and the pending
 * records are written again into a new segment. Recovery keeps the first copy of a sequence
 * number and skips later ones, so a record that reached the old file after all is harmless.
 *
 * Reads: one bounded read buffer (RB_CAP) over one segment, filled by pread or, for records just
 * committed while the reader is caught up, by copying the committed batch. Nothing else of the
 * journal is held in memory; a record larger than the buffer goes through it in pieces.
 *
 * Delivery: records are handed out in sequence order and reported delivered in any order. The
 * watermark is the lowest sequence number handed out and not delivered (or the next to hand
 * out); the handed-out records above it are a sorted array with a done flag. Segments whose
 * records are all below the watermark are deleted, and the watermark is saved (atomically:
 * write, fsync, rename, fsync the directory) at most every ACK_MS or when a segment goes. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool.h"

#define REC_HDR 56u
#define REC_MAGIC 0x4d515253u
#define REC_VERSION 1u
#define REC_MAX_DATA (268435455u + 5u) /* the largest MQTT packet */
#define SEG_MAX (16u << 20)            /* a new segment every 16 MiB ... */
#define SEG_MIN (16u << 10)            /* ... or max_size / 8, at least 16 KiB */
#define PEND_NOW (1u << 20)            /* this much pending: commit at once */
#define PEND_MAX (8u << 20)            /* this much pending (the disk stalls): refuse appends */
#define PEND_KEEP (2u << 20)           /* buffer kept across commits; larger ones are freed */
#define RB_CAP (1u << 20)              /* the read buffer */
#define GROUP_MS 2u
#define RETRY_MS 1000u
#define ACK_MS 500u
#define ACK_LEN 20u
#define ACK_MAGIC 0x4b415253u /* "SRAK" */

struct seg {
    uint64_t name;  /* the sequence number in the file name */
    uint64_t last;  /* sequence number of its last valid record; 0 = none yet */
    uint64_t size;  /* bytes of durable, valid records: readers stop here */
    bool recovered; /* scanned at open: damage in it was reported then */
};

struct pend {
    uint64_t seq;
    uint64_t t_in; /* monotonic ms, as appended */
    struct relay_spool_ack ack;
};

struct handed {
    uint64_t seq;
    uint64_t t_in;
    bool done;
};

struct rec {
    uint64_t seq, t_wall;
    uint32_t len, dcrc, expiry, expiry_off, pid_off, route, conn;
    uint8_t qos;
};

struct rbuf {
    int fd;        /* -1 = none */
    uint64_t name; /* the segment it reads */
    uint64_t off;  /* file offset of buf[0] */
    size_t len;
    uint8_t *buf; /* RB_CAP bytes */
};

struct relay_spool {
    char *dir, *who;
    struct relay_log *log;
    relay_spool_durable_fn durable;
    void *arg;
    int dfd; /* the directory, flock'ed */
    uint64_t max_size, seg_target;
    int64_t wall_off; /* wall-clock ms - monotonic ms, fixed at open */
    uint64_t now_ms;  /* the monotonic time of the entry point running (logs, ages) */
    uint32_t crc[8][256];

    struct seg *segs;
    size_t n_segs, segs_cap;
    int wfd;      /* the active segment, segs[n_segs - 1]; -1 = none (created at commit) */
    bool wfd_new; /* its directory entry is not yet fsynced */
    uint64_t seg_bytes;

    uint8_t *pbuf; /* pending records, serialised */
    size_t plen, pcap;
    struct pend *pm, *pm_spare;
    size_t n_pend, pm_cap, spare_cap;
    uint64_t next_seq, first_pend_ms, last_commit_ms;
    bool in_commit, failing, disk_error, over;
    uint64_t retry_at;
    int last_err;

    struct rbuf rb;
    size_t rd_idx;   /* the segment the reader is in; n_segs = the next one to be created */
    uint64_t rd_off; /* where its next record starts */
    bool cur_ok;     /* cur is the next record to hand out, at rd_off */
    struct rec cur;
    uint64_t oldest_unread; /* monotonic t_in of cur; 0 = none */
    uint64_t last_handed;   /* every record up to this one was handed out (or delivered) */
    struct handed *out;     /* handed out, not all delivered: sorted, out[out_head] not done */
    size_t out_head, out_n, out_cap;
    uint64_t n_held;

    uint64_t ack_saved, ack_last_ms;
    bool ack_dirty;
    uint64_t fsyncs, write_errors;
};

/* ---- little helpers -------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* CRC32C (Castagnoli, reflected 0x82F63B78), slicing by 8; the tables live in the spool. */
static void crc_init(uint32_t t[8][256])
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
static uint32_t crc_upd(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n)
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

static void seg_file(char *out, size_t cap, uint64_t name)
{
    snprintf(out, cap, "seg-%016" PRIx64 ".log", name);
}

/* "512 B", "3.4 KiB", "5.1 MiB", "2.0 GiB" into out. */
static const char *human(uint64_t bytes, char *out, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return out;
}

static uint64_t to_wall(const struct relay_spool *sp, uint64_t mono)
{
    int64_t w = (int64_t)mono + sp->wall_off;

    return w > 0 ? (uint64_t)w : 0;
}

/* Back to this run's monotonic clock: never in the future (a wall clock set back between runs
 * must not make a message look expired), 0 when it predates the clock's start. */
static uint64_t to_mono(const struct relay_spool *sp, uint64_t wall)
{
    int64_t m = (int64_t)wall - sp->wall_off;
    uint64_t now = sp->now_ms;

    if (m <= 0)
        return 0;
    return (uint64_t)m > now ? now : (uint64_t)m;
}

/* ---- records --------------------------------------------------------------------------- */

/* Checks the header at h (REC_HDR bytes). avail: bytes of the file from h on. */
static bool rec_parse(const struct relay_spool *sp, const uint8_t *h, uint64_t avail, struct rec *r)
{
    if (get32(h) != REC_MAGIC || get32(h + 4) != crc_upd(sp->crc, 0, h + 8, REC_HDR - 8) ||
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

static void rec_write(const struct relay_spool *sp, uint8_t *h, uint64_t seq,
                      const struct relay_msg *m, uint32_t conn)
{
    memset(h, 0, REC_HDR);
    put32(h, REC_MAGIC);
    put32(h + 8, m->len);
    put32(h + 12, crc_upd(sp->crc, 0, m->data, m->len));
    put64(h + 16, seq);
    put64(h + 24, to_wall(sp, m->t_in_ms));
    put32(h + 32, m->expiry);
    put32(h + 36, m->expiry_off);
    put32(h + 40, m->pid_off);
    put32(h + 44, m->route);
    put32(h + 48, conn);
    h[52] = m->qos;
    h[53] = REC_VERSION;
    put32(h + 4, crc_upd(sp->crc, 0, h + 8, REC_HDR - 8));
    memcpy(h + REC_HDR, m->data, m->len);
}

/* ---- the read buffer ------------------------------------------------------------------- */

static void rb_close(struct rbuf *rb)
{
    if (rb->fd >= 0)
        close(rb->fd);
    rb->fd = -1;
    rb->len = 0;
    rb->off = 0;
}

/* Makes file bytes [pos, pos + n) (n <= RB_CAP, pos + n <= end) available at *p. 0, 1 when
 * the file ends first, or -errno. Reads ahead up to end, never past it. */
static int rb_get(struct rbuf *rb, uint64_t pos, size_t n, uint64_t end, const uint8_t **p)
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
static int rb_span(struct relay_spool *sp, uint64_t pos, uint64_t n, uint64_t end, uint32_t *crc,
                   uint8_t *dst)
{
    uint32_t c = 0;

    while (n) {
        size_t k = n < RB_CAP ? (size_t)n : RB_CAP;
        const uint8_t *p = NULL;
        int rc = rb_get(&sp->rb, pos, k, end, &p);

        if (rc)
            return rc;
        if (dst) {
            memcpy(dst, p, k);
            dst += k;
        } else {
            c = crc_upd(sp->crc, c, p, k);
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
    rc = rb_get(&sp->rb, pos, REC_HDR, end, &h);
    if (rc)
        return rc < 0 ? rc : 0;
    if (!rec_parse(sp, h, end - pos, r))
        return 0;
    rc = rb_span(sp, pos + REC_HDR, r->len, end, &c, NULL);
    if (rc)
        return rc < 0 ? rc : 0;
    return c == r->dcrc;
}

/* The next valid record at or after *pos, below end, in the read buffer's segment. 1: found at
 * *pos, *skipped corrupt bytes were passed over to reach it. 0: none; [*pos, end) holds no valid
 * record. -errno: a read failed. Resynchronises on the magic and both checksums. */
static int scan(struct relay_spool *sp, uint64_t end, uint64_t *pos, struct rec *r,
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

        if ((rc = rb_get(&sp->rb, q, n, end, &p)) != 0)
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
static int rb_open(struct relay_spool *sp, const struct seg *s)
{
    char name[64];
    int fd;

    if (sp->rb.fd >= 0 && sp->rb.name == s->name)
        return 0;
    rb_close(&sp->rb);
    seg_file(name, sizeof(name), s->name);
    fd = openat(sp->dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    sp->rb.fd = fd;
    sp->rb.name = s->name;
    return 0;
}

/* ---- the segment list ------------------------------------------------------------------ */

static int segs_push(struct relay_spool *sp, uint64_t name)
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
static void segs_remove(struct relay_spool *sp, size_t i, bool unlink_it)
{
    char name[64];

    seg_file(name, sizeof(name), sp->segs[i].name);
    if (sp->rb.fd >= 0 && sp->rb.name == sp->segs[i].name)
        rb_close(&sp->rb);
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

/* ---- the watermark and its file --------------------------------------------------------- */

static uint64_t watermark(const struct relay_spool *sp)
{
    return sp->out_n ? sp->out[sp->out_head].seq : sp->last_handed + 1;
}

static int fsync_dir(struct relay_spool *sp)
{
    return fsync(sp->dfd) == 0 ? 0 : -errno;
}

/* Saves the watermark atomically. 0 or -errno (logged; the old file stays valid). */
static int ack_save(struct relay_spool *sp, uint64_t now_ms)
{
    uint8_t b[ACK_LEN];
    uint64_t w = watermark(sp);
    int fd, rc = 0;

    put32(b, ACK_MAGIC);
    put32(b + 4, 1);
    put64(b + 8, w);
    put32(b + 16, crc_upd(sp->crc, 0, b, 16));
    fd = openat(sp->dfd, "ack.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
    } else {
        if (pwrite(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
            rc = errno ? -errno : -EIO;
        else if (fdatasync(fd) != 0)
            rc = -errno;
        close(fd);
    }
    if (!rc && renameat(sp->dfd, "ack.tmp", sp->dfd, "ack") != 0)
        rc = -errno;
    if (!rc)
        rc = fsync_dir(sp);
    sp->ack_last_ms = now_ms;
    if (rc) {
        relay_log_limited(sp->log, now_ms, RELAY_LOG_WARN, sp->who,
                          "cannot save the delivery watermark in %s: %s (retrying)", sp->dir,
                          strerror(-rc));
        return rc;
    }
    sp->ack_saved = w;
    sp->ack_dirty = false;
    return 0;
}

/* The watermark saved by a previous run; 1 (everything) when there is none. */
static uint64_t ack_load(struct relay_spool *sp)
{
    uint8_t b[ACK_LEN];
    int fd = openat(sp->dfd, "ack", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return 1;
    n = pread(fd, b, sizeof(b), 0);
    close(fd);
    if (n != (ssize_t)sizeof(b) || get32(b) != ACK_MAGIC || get32(b + 4) != 1 ||
        get32(b + 16) != crc_upd(sp->crc, 0, b, 16) || get64(b + 8) == 0) {
        relay_log(sp->log, RELAY_LOG_WARN, sp->who,
                  "%s/ack is damaged: every record in the journal is delivered again", sp->dir);
        return 1;
    }
    return get64(b + 8);
}

/* Deletes the segments whose records are all below the watermark (a prefix of the list). The
 * active one goes too once it is large enough to be worth a new file, or the spool is full. */
static void reclaim(struct relay_spool *sp)
{
    uint64_t w = watermark(sp);
    bool gone = false;

    while (sp->n_segs && sp->segs[0].last && sp->segs[0].last < w) {
        if (sp->n_segs == 1 && sp->wfd >= 0 && sp->segs[0].size < sp->seg_target / 4 && !sp->over)
            break;
        segs_remove(sp, 0, true);
        gone = true;
    }
    if (sp->over && sp->seg_bytes + sp->plen < sp->max_size / 10 * 9)
        sp->over = false;
    if (w != sp->ack_saved)
        sp->ack_dirty = true;
    if (gone && sp->ack_dirty)
        ack_save(sp, sp->now_ms);
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Finds the next record to hand out (cur, at rd_off). 1, 0 when none is durable yet, -errno. */
static int peek(struct relay_spool *sp)
{
    uint64_t now = sp->now_ms;

    while (!sp->cur_ok) {
        struct seg *s;
        uint64_t pos, skipped;
        int rc;

        sp->oldest_unread = 0;
        if (sp->rd_idx >= sp->n_segs)
            return 0;
        s = &sp->segs[sp->rd_idx];
        if (sp->rd_off >= s->size) {
            if (sp->rd_idx + 1 >= sp->n_segs)
                return 0;
            sp->rd_idx++;
            sp->rd_off = 0;
            continue;
        }
        if ((rc = rb_open(sp, s)) < 0) {
            relay_log_limited(sp->log, now, RELAY_LOG_ERROR, sp->who,
                              "cannot read segment %016" PRIx64 " in %s: %s", s->name, sp->dir,
                              strerror(-rc));
            if (rc != -ENOENT)
                return rc;
            sp->rd_off = s->size; /* removed behind our back: nothing to read there */
            continue;
        }
        pos = sp->rd_off;
        rc = scan(sp, s->size, &pos, &sp->cur, &skipped);
        if (rc < 0) {
            relay_log_limited(sp->log, now, RELAY_LOG_ERROR, sp->who,
                              "reading segment %016" PRIx64 " in %s: %s (retrying)", s->name,
                              sp->dir, strerror(-rc));
            return rc;
        }
        if (rc == 0 || skipped)
            relay_log(sp->log, s->recovered ? RELAY_LOG_DEBUG : RELAY_LOG_ERROR, sp->who,
                      "segment %016" PRIx64 " in %s: %" PRIu64 " corrupt bytes skipped at offset "
                      "%" PRIu64,
                      s->name, sp->dir, rc ? skipped : s->size - pos, sp->rd_off);
        if (rc == 0) {
            sp->rd_off = s->size;
            continue;
        }
        sp->rd_off = pos;
        if (sp->cur.seq <= sp->last_handed) { /* below the watermark, or a second copy */
            sp->rd_off += REC_HDR + sp->cur.len;
            continue;
        }
        sp->cur_ok = true;
        sp->oldest_unread = to_mono(sp, sp->cur.t_wall);
    }
    return 1;
}

static int out_push(struct relay_spool *sp, uint64_t seq, uint64_t t_in)
{
    if (sp->out_head + sp->out_n == sp->out_cap) {
        if (sp->out_head) {
            memmove(sp->out, sp->out + sp->out_head, sp->out_n * sizeof(*sp->out));
            sp->out_head = 0;
        } else {
            size_t cap = sp->out_cap ? 2 * sp->out_cap : 256;
            struct handed *o = realloc(sp->out, cap * sizeof(*o));

            if (!o)
                return -ENOMEM;
            sp->out = o;
            sp->out_cap = cap;
        }
    }
    sp->out[sp->out_head + sp->out_n++] = (struct handed){seq, t_in, false};
    return 0;
}

struct relay_msg *relay_spool_next(struct relay_spool *sp, uint64_t now_ms, uint32_t *conn)
{
    struct relay_msg *m;
    const struct rec *r = &sp->cur;

    sp->now_ms = now_ms;
    if (peek(sp) <= 0)
        return NULL;
    m = malloc(sizeof(*m) + r->len);
    if (!m || out_push(sp, r->seq, to_mono(sp, r->t_wall)) < 0) {
        relay_log(sp->log, RELAY_LOG_ERROR, sp->who, "out of memory reading the spool");
        free(m);
        return NULL;
    }
    memset(m, 0, sizeof(*m));
    if (rb_span(sp, sp->rd_off + REC_HDR, r->len, sp->segs[sp->rd_idx].size, NULL, m->data)) {
        relay_log(sp->log, RELAY_LOG_ERROR, sp->who, "segment %016" PRIx64 " became unreadable",
                  sp->segs[sp->rd_idx].name);
        sp->out_n--;
        free(m);
        return NULL;
    }
    m->route = r->route;
    m->t_in_ms = sp->out[sp->out_head + sp->out_n - 1].t_in;
    m->expiry = r->expiry;
    m->expiry_off = r->expiry_off;
    m->pid_off = r->pid_off;
    m->len = r->len;
    m->spool_seq = r->seq;
    m->qos = r->qos;
    if (conn)
        *conn = r->conn;
    sp->last_handed = r->seq;
    sp->rd_off += REC_HDR + r->len;
    sp->cur_ok = false;
    peek(sp); /* for oldest_unread; errors are logged and retried by the next call */
    return m;
}

void relay_spool_delivered(struct relay_spool *sp, uint64_t seq, uint64_t now_ms)
{
    size_t lo = 0, hi = sp->out_n;
    struct handed *o = sp->out + sp->out_head;

    sp->now_ms = now_ms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (o[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == sp->out_n || o[lo].seq != seq || o[lo].done)
        return; /* never handed out, or already reported */
    o[lo].done = true;
    sp->n_held--;
    if (lo)
        return; /* the watermark stays where it is */
    while (sp->out_n && sp->out[sp->out_head].done) {
        sp->out_head++;
        sp->out_n--;
    }
    if (!sp->out_n) {
        sp->out_head = 0;
        if (sp->out_cap > 4096) { /* a burst handed out at once: give the memory back */
            free(sp->out);
            sp->out = NULL;
            sp->out_cap = 0;
        }
    }
    reclaim(sp);
}

/* ---- writing ----------------------------------------------------------------------------- */

int relay_spool_append(struct relay_spool *sp, const struct relay_msg *m, uint32_t conn,
                       const struct relay_spool_ack *ack)
{
    uint64_t size = (uint64_t)REC_HDR + m->len;

    if (m->len < 2 || m->len > REC_MAX_DATA || m->qos > 2 ||
        (m->qos ? !m->pid_off || (uint64_t)m->pid_off + 2 > m->len : m->pid_off != 0) ||
        (m->expiry_off && (uint64_t)m->expiry_off + 4 > m->len))
        return -EINVAL;
    if (sp->seg_bytes + sp->plen + size > sp->max_size) {
        /* Full, unless this one record is just too big for what is left: then full() stays
         * false (hysteresis could not end it when nothing else is held) and the caller holds
         * or refuses this message alone. */
        if (sp->seg_bytes + sp->plen >= sp->max_size / 10 * 9)
            sp->over = true;
        return -ENOSPC;
    }
    if (sp->plen >= PEND_MAX)
        return -ENOSPC; /* commits are failing or not being made: full() says so too */
    if (sp->plen + size > sp->pcap) {
        size_t cap = sp->pcap ? sp->pcap : 64u << 10;
        uint8_t *p;

        while (cap < sp->plen + size)
            cap *= 2;
        if (!(p = realloc(sp->pbuf, cap)))
            return -ENOMEM;
        sp->pbuf = p;
        sp->pcap = cap;
    }
    if (sp->n_pend == sp->pm_cap) {
        size_t cap = sp->pm_cap ? 2 * sp->pm_cap : 256;
        struct pend *p = realloc(sp->pm, cap * sizeof(*p));

        if (!p)
            return -ENOMEM;
        sp->pm = p;
        sp->pm_cap = cap;
    }
    rec_write(sp, sp->pbuf + sp->plen, sp->next_seq, m, conn);
    sp->pm[sp->n_pend] = (struct pend){sp->next_seq, m->t_in_ms, {0}};
    if (ack)
        sp->pm[sp->n_pend].ack = *ack;
    if (!sp->n_pend++)
        sp->first_pend_ms = m->t_in_ms > sp->last_commit_ms ? m->t_in_ms : sp->last_commit_ms;
    sp->next_seq++;
    sp->plen += size;
    sp->n_held++;
    if (sp->seg_bytes + sp->plen >= sp->max_size)
        sp->over = true;
    return 0;
}

/* The active segment, created (named after the first pending record) when there is none or
 * the current one is full. 0 or -errno. */
static int active_segment(struct relay_spool *sp)
{
    char name[64];
    int fd;

    if (sp->wfd >= 0 && sp->segs[sp->n_segs - 1].size < sp->seg_target)
        return 0;
    if (sp->wfd >= 0) {
        close(sp->wfd);
        sp->wfd = -1;
    }
    if (segs_push(sp, sp->pm[0].seq) < 0)
        return -ENOMEM;
    seg_file(name, sizeof(name), sp->pm[0].seq);
    fd = openat(sp->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* Left by a failed attempt: it can only hold copies of records still pending. */
        unlinkat(sp->dfd, name, 0);
        fd = openat(sp->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        int rc = -errno;

        sp->n_segs--;
        return rc;
    }
    sp->wfd = fd;
    sp->wfd_new = true;
    return 0;
}

/* After a failed fdatasync the file's page cache is not to be trusted: stop using the segment
 * at its last durable byte; the pending records go into a new one. */
static void poison_active(struct relay_spool *sp)
{
    struct seg *s = &sp->segs[sp->n_segs - 1];

    if (ftruncate(sp->wfd, (off_t)s->size) != 0) {
        /* best effort: recovery skips whatever lies past the durable records */
    }
    close(sp->wfd);
    sp->wfd = -1;
    if (!s->size)
        segs_remove(sp, sp->n_segs - 1, true);
}

/* Writes and syncs the pending records. 0, or -errno with *what naming the step. */
static int write_pending(struct relay_spool *sp, const char **what)
{
    uint64_t off;
    size_t done = 0;
    int rc;

    *what = "creating a segment";
    if ((rc = active_segment(sp)) < 0)
        return rc;
    off = sp->segs[sp->n_segs - 1].size;
    *what = "write";
    while (done < sp->plen) {
        ssize_t n = pwrite(sp->wfd, sp->pbuf + done, sp->plen - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO; /* redone from the durable end next time */
        done += (size_t)n;
    }
    *what = "fdatasync";
    if (fdatasync(sp->wfd) != 0 || (sp->wfd_new && fsync(sp->dfd) != 0)) {
        rc = -errno;
        poison_active(sp);
        return rc;
    }
    sp->wfd_new = false;
    return 0;
}

/* Copies a committed batch into the read buffer when it continues what the reader holds, so a
 * reader that keeps up never reads the file. */
static void feed_reader(struct relay_spool *sp, uint64_t name, uint64_t start)
{
    struct rbuf *rb = &sp->rb;

    if (rb->fd < 0 || rb->name != name || rb->off + rb->len != start || sp->rd_idx >= sp->n_segs ||
        sp->segs[sp->rd_idx].name != name || sp->rd_off < rb->off)
        return;
    if (sp->rd_off < start) { /* drop what the reader is done with */
        size_t drop = (size_t)(sp->rd_off - rb->off);

        memmove(rb->buf, rb->buf + drop, rb->len - drop);
        rb->len -= drop;
        rb->off += drop;
    } else {
        rb->off = start;
        rb->len = 0;
    }
    if (rb->len + sp->plen > RB_CAP)
        return;
    memcpy(rb->buf + rb->len, sp->pbuf, sp->plen);
    rb->len += sp->plen;
}

/* Gives back pending-side memory a burst made large. */
static void trim_pending(struct relay_spool *sp)
{
    if (sp->pcap > PEND_KEEP) {
        free(sp->pbuf);
        sp->pbuf = NULL;
        sp->pcap = 0;
    }
    if (sp->pm_cap > 16384) {
        free(sp->pm);
        sp->pm = NULL;
        sp->pm_cap = 0;
    }
}

/* Commits without reporting (close). 0 or -errno. */
static int commit(struct relay_spool *sp, uint64_t now_ms, size_t *n_done)
{
    const char *what = "";
    struct seg *s;
    uint64_t start;
    struct pend *t;
    size_t tc;
    int rc;

    *n_done = 0;
    if (!sp->n_pend)
        return 0;
    if ((rc = write_pending(sp, &what)) < 0) {
        sp->write_errors++;
        sp->failing = sp->disk_error = true;
        sp->retry_at = now_ms + RETRY_MS;
        sp->last_err = rc;
        relay_log_limited(sp->log, now_ms, RELAY_LOG_ERROR, sp->who,
                          "%s in %s failed: %s; %zu messages (%zu bytes) wait, retrying in %u ms",
                          what, sp->dir, strerror(-rc), sp->n_pend, sp->plen, RETRY_MS);
        return rc;
    }
    if (sp->failing)
        relay_log(sp->log, RELAY_LOG_INFO, sp->who, "writing to %s works again", sp->dir);
    sp->failing = sp->disk_error = false;
    sp->fsyncs++;
    s = &sp->segs[sp->n_segs - 1];
    start = s->size;
    s->size += sp->plen;
    s->last = sp->pm[sp->n_pend - 1].seq;
    sp->seg_bytes += sp->plen;
    feed_reader(sp, s->name, start);
    /* the reported records move to the spare array: durable() may append again */
    t = sp->pm;
    sp->pm = sp->pm_spare;
    sp->pm_spare = t;
    tc = sp->pm_cap;
    sp->pm_cap = sp->spare_cap;
    sp->spare_cap = tc;
    *n_done = sp->n_pend;
    sp->n_pend = 0;
    sp->plen = 0;
    trim_pending(sp);
    if (!sp->cur_ok)
        peek(sp);
    return 0;
}

int relay_spool_commit(struct relay_spool *sp, uint64_t now_ms)
{
    size_t n;
    int rc;

    if (sp->in_commit)
        return 0; /* from a durable() callback: the next deadline comes soon */
    sp->now_ms = now_ms;
    if (sp->ack_dirty && now_ms >= sp->ack_last_ms + ACK_MS)
        ack_save(sp, now_ms);
    if (!sp->n_pend)
        return 0;
    if (sp->failing && now_ms < sp->retry_at)
        return sp->last_err;
    sp->in_commit = true;
    rc = commit(sp, now_ms, &n);
    sp->last_commit_ms = now_ms;
    for (size_t i = 0; i < n; i++)
        sp->durable(sp->arg, &sp->pm_spare[i].ack);
    sp->in_commit = false;
    if (sp->spare_cap > 16384) {
        free(sp->pm_spare);
        sp->pm_spare = NULL;
        sp->spare_cap = 0;
    }
    return rc;
}

uint64_t relay_spool_deadline(const struct relay_spool *sp)
{
    uint64_t d = 0;

    if (sp->n_pend) {
        if (sp->failing)
            d = sp->retry_at;
        else if (sp->plen >= PEND_NOW)
            d = sp->last_commit_ms;
        else
            d = sp->first_pend_ms + GROUP_MS;
    }
    if (sp->ack_dirty && (!d || sp->ack_last_ms + ACK_MS < d))
        d = sp->ack_last_ms + ACK_MS;
    return d ? d : (sp->n_pend || sp->ack_dirty);
}

bool relay_spool_full(const struct relay_spool *sp)
{
    return sp->over || sp->disk_error || sp->plen >= PEND_MAX;
}

void relay_spool_stats(const struct relay_spool *sp, struct relay_spool_stats *st)
{
    st->bytes = sp->seg_bytes + sp->plen;
    st->messages = sp->n_held;
    if (sp->out_n)
        st->oldest_ms = sp->out[sp->out_head].t_in;
    else if (sp->oldest_unread)
        st->oldest_ms = sp->oldest_unread;
    else if (sp->n_pend)
        st->oldest_ms = sp->pm[0].t_in;
    else
        st->oldest_ms = 0;
    st->fsyncs = sp->fsyncs;
    st->write_errors = sp->write_errors;
}

/* ---- opening and recovery ---------------------------------------------------------------- */

/* mkdir -p with mode 0700 for what is missing. 0 or -errno. */
static int make_dirs(const char *dir)
{
    char *p = strdup(dir);
    int rc = 0;

    if (!p)
        return -ENOMEM;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;

        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->name, y = ((const struct seg *)b)->name;

    return x < y ? -1 : x > y;
}

/* The segment files in the directory, sorted. 0 or -errno. */
static int list_segments(struct relay_spool *sp)
{
    int fd = openat(sp->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;

    if (!d) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    while ((e = readdir(d)) != NULL) {
        char *end;
        uint64_t name;

        if (strlen(e->d_name) != 24 || strncmp(e->d_name, "seg-", 4) != 0 ||
            strcmp(e->d_name + 20, ".log") != 0)
            continue;
        name = strtoull(e->d_name + 4, &end, 16);
        if (end != e->d_name + 20 || !name)
            continue;
        if (segs_push(sp, name) < 0) {
            closedir(d);
            return -ENOMEM;
        }
    }
    closedir(d);
    if (sp->n_segs > 1)
        qsort(sp->segs, sp->n_segs, sizeof(*sp->segs), cmp_seg);
    return 0;
}

struct recovery {
    uint64_t w;    /* the saved watermark */
    uint64_t prev; /* the highest sequence number seen so far */
    uint64_t held, held_bytes, dups;
};

/* What lies past the last valid record of segment s, from pos to size: a torn write (the last
 * segment: truncated away) or leftovers of a failed commit (kept, ignored). */
static void recover_tail(struct relay_spool *sp, struct seg *s, int fd, bool last, uint64_t pos,
                         uint64_t size)
{
    char name[64], what[96];
    const uint8_t *h = NULL;
    struct rec r;

    seg_file(name, sizeof(name), s->name);
    if (size - pos >= REC_HDR && rb_get(&sp->rb, pos, REC_HDR, size, &h) == 0 &&
        rec_parse(sp, h, UINT64_MAX, &r))
        snprintf(what, sizeof(what),
                 "a torn record (sequence %" PRIu64 ", %" PRIu64 " of its %" PRIu64 " bytes)",
                 r.seq, size - pos, (uint64_t)REC_HDR + r.len);
    else
        snprintf(what, sizeof(what), "%" PRIu64 " bytes of a torn record", size - pos);
    if (!last) {
        relay_log(sp->log, RELAY_LOG_WARN, sp->who,
                  "%s/%s: ignoring %s at offset %" PRIu64 " (left by a failed write)", sp->dir,
                  name, what, pos);
        return;
    }
    relay_log(sp->log, RELAY_LOG_WARN, sp->who, "dropped %s at %s/%s offset %" PRIu64, what,
              sp->dir, name, pos);
    if (ftruncate(fd, (off_t)pos) != 0 || fdatasync(fd) != 0)
        relay_log(sp->log, RELAY_LOG_WARN, sp->who, "cannot truncate %s/%s: %s", sp->dir, name,
                  strerror(errno));
}

/* Scans segment s: its valid end, last record, and what it holds at or above the watermark.
 * 1: scanned (s->last == 0 when it holds no valid record), 0: not a regular file (left alone),
 * -errno: cannot be read (the spool does not open rather than lose it). */
static int recover_segment(struct relay_spool *sp, struct seg *s, bool last, struct recovery *rv)
{
    char name[64];
    struct stat st;
    uint64_t pos = 0, skipped;
    struct rec r;
    int fd, rc;

    seg_file(name, sizeof(name), s->name);
    fd = openat(sp->dfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno != ELOOP && errno != EISDIR) {
        rc = -errno;
        relay_log(sp->log, RELAY_LOG_ERROR, sp->who, "cannot open %s/%s: %s", sp->dir, name,
                  strerror(-rc));
        return rc;
    }
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        relay_log(sp->log, RELAY_LOG_WARN, sp->who, "%s/%s is not a regular file: ignored", sp->dir,
                  name);
        return 0;
    }
    rb_close(&sp->rb);
    sp->rb.fd = fd;
    sp->rb.name = s->name;
    while ((rc = scan(sp, (uint64_t)st.st_size, &pos, &r, &skipped)) == 1) {
        if (skipped)
            relay_log(sp->log, RELAY_LOG_ERROR, sp->who,
                      "%s/%s: skipped %" PRIu64 " corrupt bytes at offset %" PRIu64, sp->dir, name,
                      skipped, pos - skipped);
        if (r.seq <= rv->prev) {
            rv->dups++; /* the second copy of a record rewritten after a failed fdatasync */
        } else {
            rv->prev = s->last = r.seq;
            if (r.seq >= rv->w) {
                rv->held++;
                rv->held_bytes += REC_HDR + r.len;
            }
        }
        pos += REC_HDR + r.len;
    }
    if (rc < 0) {
        relay_log(sp->log, RELAY_LOG_ERROR, sp->who, "%s/%s: %s", sp->dir, name, strerror(-rc));
        rb_close(&sp->rb);
        return rc;
    }
    if (pos < (uint64_t)st.st_size)
        recover_tail(sp, s, fd, last, pos, (uint64_t)st.st_size);
    s->size = pos; /* readers stop at the end of the last valid record */
    s->recovered = true;
    rb_close(&sp->rb);
    return 1;
}

/* Rebuilds the segment list from the files; drops what is delivered or holds nothing valid. */
static int recover(struct relay_spool *sp)
{
    struct recovery rv = {.w = ack_load(sp)};
    size_t i = 0, gone = 0;
    char size[32];
    int rc;

    if ((rc = list_segments(sp)) < 0)
        return rc;
    sp->ack_saved = rv.w;
    /* segments followed by one that starts at or below the watermark hold only delivered ones */
    while (sp->n_segs > 1 && sp->segs[1].name <= rv.w) {
        segs_remove(sp, 0, true);
        gone++;
    }
    while (i < sp->n_segs) {
        struct seg *s = &sp->segs[i];

        if ((rc = recover_segment(sp, s, i + 1 == sp->n_segs, &rv)) < 0)
            return rc;
        sp->seg_bytes += s->size;
        if (rc && s->last) {
            i++;
            continue;
        }
        if (rc)
            relay_log(sp->log, RELAY_LOG_WARN, sp->who,
                      "segment %016" PRIx64 " holds no valid record: removed", s->name);
        segs_remove(sp, i, rc == 1);
    }
    sp->next_seq = rv.prev + 1 > rv.w ? rv.prev + 1 : rv.w;
    sp->last_handed = rv.w - 1;
    sp->n_held = rv.held;
    if (rv.dups)
        relay_log(sp->log, RELAY_LOG_WARN, sp->who,
                  "skipped %" PRIu64 " second copies of records (written again after a failed "
                  "fdatasync)",
                  rv.dups);
    if (rv.held || sp->n_segs || gone)
        relay_log(sp->log, RELAY_LOG_INFO, sp->who,
                  "recovered %" PRIu64 " messages (%s) in %zu segment file%s of %s, delivery "
                  "resumes at sequence %" PRIu64,
                  rv.held, human(rv.held_bytes, size, sizeof(size)), sp->n_segs,
                  sp->n_segs == 1 ? "" : "s", sp->dir, rv.w);
    return 0;
}

/* Creates, locks and checks the directory. 0 or -errno with err filled. */
static int open_dir(struct relay_spool *sp, char *err, size_t errlen)
{
    struct stat st;
    int rc, fd;

    if (stat(sp->dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "spool directory %s is not a directory", sp->dir);
        return -ENOTDIR;
    }
    if ((rc = make_dirs(sp->dir)) < 0) {
        snprintf(err, errlen, "cannot create spool directory %s: %s", sp->dir, strerror(-rc));
        return rc;
    }
    sp->dfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open spool directory %s: %s", sp->dir, strerror(-rc));
        return rc;
    }
    if (flock(sp->dfd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        snprintf(err, errlen, "spool directory %s is in use by another process%s%s", sp->dir,
                 rc == -EWOULDBLOCK ? "" : ": ", rc == -EWOULDBLOCK ? "" : strerror(-rc));
        return rc == -EWOULDBLOCK ? -EBUSY : rc;
    }
    /* Writable? Try it, as permission bits do not tell (root, read-only mounts, immutable). */
    fd = openat(sp->dfd, "ack.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        if (unlinkat(sp->dfd, "ack.tmp", 0) == 0)
            return 0;
    }
    rc = -errno;
    snprintf(err, errlen, "spool directory %s is not writable: %s", sp->dir, strerror(-rc));
    return rc;
}

int relay_spool_open(const struct relay_spool_opts *o, struct relay_spool **out, char *err,
                     size_t errlen)
{
    struct relay_spool *sp = calloc(1, sizeof(*sp));
    const char *dir = o->dir;
    uint64_t max_size = o->max_size;
    int rc = -ENOMEM;

    *out = NULL;
    snprintf(err, errlen, "out of memory");
    if (!sp)
        return -ENOMEM;
    sp->dfd = sp->wfd = sp->rb.fd = -1;
    sp->log = o->log;
    sp->durable = o->durable;
    sp->arg = o->arg;
    sp->max_size = max_size;
    sp->seg_target = max_size / 8 > SEG_MAX   ? SEG_MAX
                     : max_size / 8 < SEG_MIN ? SEG_MIN
                                              : max_size / 8;
    sp->wall_off = o->wall_offset_ms;
    sp->now_ms = o->now_ms;
    crc_init(sp->crc);
    sp->dir = strdup(dir);
    sp->who = strdup(o->who ? o->who : "spool");
    sp->rb.buf = malloc(RB_CAP);
    if (!sp->dir || !sp->who || !sp->rb.buf)
        goto fail;
    if ((rc = open_dir(sp, err, errlen)) < 0)
        goto fail;
    if ((rc = recover(sp)) < 0) {
        snprintf(err, errlen, "cannot recover the spool in %s: %s", dir, strerror(-rc));
        goto fail;
    }
    reclaim(sp);
    peek(sp);
    *out = sp;
    return 0;
fail:
    relay_spool_close(sp, o->now_ms);
    return rc;
}

void relay_spool_close(struct relay_spool *sp, uint64_t now_ms)
{
    size_t n;

    if (!sp)
        return;
    sp->now_ms = now_ms;
    if (sp->dfd >= 0 && sp->n_pend)
        commit(sp, now_ms, &n); /* sources are not told: they redeliver */
    if (sp->dfd >= 0 && sp->ack_dirty)
        ack_save(sp, now_ms);
    rb_close(&sp->rb);
    if (sp->wfd >= 0)
        close(sp->wfd);
    if (sp->dfd >= 0)
        close(sp->dfd); /* releases the lock */
    free(sp->rb.buf);
    free(sp->segs);
    free(sp->pbuf);
    free(sp->pm);
    free(sp->pm_spare);
    free(sp->out);
    free(sp->dir);
    free(sp->who);
    free(sp);
}
