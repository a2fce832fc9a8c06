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
 * write, fsync, rename, fsync the directory) at most every ACK_MS or when a segment goes.
 *
 * This file is the running journal: appending and committing, handing records out and taking
 * their delivery reports, the watermark's file, reclaiming segments, closing. segment.c holds
 * the record format, the checksums, the read buffer and the segment list; recover.c opens the
 * spool and recovers what a previous run left. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

#define PEND_NOW (1u << 20)  /* this much pending: commit at once */
#define PEND_MAX (8u << 20)  /* this much pending (the disk stalls): refuse appends */
#define PEND_KEEP (2u << 20) /* buffer kept across commits; larger ones are freed */
#define GROUP_MS 1u          /* at most one commit per GROUP_MS while busy; at once after a pause */
#define RETRY_MS 1000u
#define ACK_MS 500u

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
    put32(b + 16, spool_crc_upd(sp->crc, 0, b, 16));
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

/* Deletes the segments whose records are all below the watermark (a prefix of the list). The
 * active one goes too once it is large enough to be worth a new file, or the spool is full. */
void spool_reclaim(struct relay_spool *sp)
{
    uint64_t w = watermark(sp);
    bool gone = false;

    while (sp->n_segs && sp->segs[0].last && sp->segs[0].last < w) {
        if (sp->n_segs == 1 && sp->wfd >= 0 && sp->segs[0].size < sp->seg_target / 4 && !sp->over)
            break;
        spool_segs_remove(sp, 0, true);
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

/* Finds the next record to hand out (cur, at rd_off). 1, 0 when none is durable yet, -errno. */
int spool_peek(struct relay_spool *sp)
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
        if ((rc = spool_rb_open(sp, s)) < 0) {
            relay_log_limited(sp->log, now, RELAY_LOG_ERROR, sp->who,
                              "cannot read segment %016" PRIx64 " in %s: %s", s->name, sp->dir,
                              strerror(-rc));
            if (rc != -ENOENT)
                return rc;
            sp->rd_off = s->size; /* removed behind our back: nothing to read there */
            continue;
        }
        pos = sp->rd_off;
        rc = spool_scan(sp, s->size, &pos, &sp->cur, &skipped);
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
    if (spool_peek(sp) <= 0)
        return NULL;
    m = malloc(sizeof(*m) + r->len);
    if (!m || out_push(sp, r->seq, to_mono(sp, r->t_wall)) < 0) {
        relay_log(sp->log, RELAY_LOG_ERROR, sp->who, "out of memory reading the spool");
        free(m);
        return NULL;
    }
    memset(m, 0, sizeof(*m));
    if (spool_rb_span(sp, sp->rd_off + REC_HDR, r->len, sp->segs[sp->rd_idx].size, NULL, m->data)) {
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
    spool_peek(sp); /* for oldest_unread; errors are logged and retried by the next call */
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
    spool_reclaim(sp);
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
    spool_rec_write(sp, sp->pbuf + sp->plen, sp->next_seq, m, conn);
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
    if (spool_segs_push(sp, sp->pm[0].seq) < 0)
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
        spool_segs_remove(sp, sp->n_segs - 1, true);
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
        spool_peek(sp);
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
        else /* at once, unless a commit was made within GROUP_MS: a source that waits for
              * its acknowledgements (a window of 20) is not kept waiting, and a busy stream
              * still makes one fsync for many records */
            d = sp->first_pend_ms > sp->last_commit_ms + GROUP_MS ? sp->first_pend_ms
                                                                  : sp->last_commit_ms + GROUP_MS;
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

uint64_t relay_spool_unread(const struct relay_spool *sp)
{
    return sp->next_seq > sp->last_handed + 1 ? sp->next_seq - sp->last_handed - 1 : 0;
}

bool relay_spool_present(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;

    if (!d)
        return false;
    while (!found && (e = readdir(d)))
        found = !strncmp(e->d_name, "seg-", 4);
    closedir(d);
    return found;
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
    spool_rb_close(&sp->rb);
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
