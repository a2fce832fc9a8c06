/*
 * recover.c: opening a spool: the directory (created 0700, flock'ed, tried for writing), the
 * list of its segment files, the recovery scan of each (a torn or corrupt tail is reported and
 * skipped, the last segment's torn tail truncated away) and the delivery watermark a previous
 * run saved. What is found is logged once ("recovered 1234 messages (5.1 MiB) ...").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

#define SEG_MAX (16u << 20) /* a new segment every 16 MiB ... */
#define SEG_MIN (16u << 10) /* ... or max_size / 8, at least 16 KiB */

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

/* ---- the watermark a previous run saved -------------------------------------------------- */

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
        get32(b + 16) != spool_crc_upd(sp->crc, 0, b, 16) || get64(b + 8) == 0) {
        relay_log(sp->log, RELAY_LOG_WARN, sp->who,
                  "%s/ack is damaged: every record in the journal is delivered again", sp->dir);
        return 1;
    }
    return get64(b + 8);
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
        if (spool_segs_push(sp, name) < 0) {
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
    if (size - pos >= REC_HDR && spool_rb_get(&sp->rb, pos, REC_HDR, size, &h) == 0 &&
        spool_rec_parse(sp, h, UINT64_MAX, &r))
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
    spool_rb_close(&sp->rb);
    sp->rb.fd = fd;
    sp->rb.name = s->name;
    while ((rc = spool_scan(sp, (uint64_t)st.st_size, &pos, &r, &skipped)) == 1) {
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
        spool_rb_close(&sp->rb);
        return rc;
    }
    if (pos < (uint64_t)st.st_size)
        recover_tail(sp, s, fd, last, pos, (uint64_t)st.st_size);
    s->size = pos; /* readers stop at the end of the last valid record */
    s->recovered = true;
    spool_rb_close(&sp->rb);
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
        spool_segs_remove(sp, 0, true);
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
        spool_segs_remove(sp, i, rc == 1);
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
    spool_crc_init(sp->crc);
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
    spool_reclaim(sp);
    spool_peek(sp);
    *out = sp;
    return 0;
fail:
    relay_spool_close(sp, o->now_ms);
    return rc;
}
