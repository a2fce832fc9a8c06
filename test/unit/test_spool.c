/* test_spool.c: the store-and-forward journal (spool.c) against a real directory under /tmp.
 *
 * Disk failures are injected by interposing fdatasync() and pwrite() in this executable (the
 * spool is linked in statically, so its calls resolve here; everything else passes through to
 * the system calls). An unwritable directory is made with chmod 0500, or, when running as root
 * (which ignores permission bits), with the immutable attribute (FS_IOC_SETFLAGS); when neither
 * is possible that part is skipped and says so. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/internal.h" /* the checksum functions */
#include "store/spool.h"

#define REC_HDR 56u /* the documented record header (spool.c) */

/* ---- fault injection ---------------------------------------------------------------------- */

static int fail_fsync; /* the next n fdatasync() calls fail with EIO */
static int fail_write; /* then the next n pwrite() calls fail with fail_errno */
static int write_skip; /* pwrite() calls that succeed before fail_write applies */
static int fail_errno = ENOSPC;
static size_t short_write; /* pwrite() writes at most this many bytes (0 = all) */
static unsigned long n_fdatasync;

int fdatasync(int fd)
{
    n_fdatasync++;
    if (fail_fsync > 0) {
        fail_fsync--;
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (fail_write > 0 && write_skip > 0) {
        write_skip--;
    } else if (fail_write > 0) {
        fail_write--;
        errno = fail_errno;
        return -1;
    }
    if (short_write && n > short_write)
        n = short_write;
    return syscall(SYS_pwrite64, fd, buf, n, off);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

struct fx {
    char dir[64];   /* the test's scratch directory */
    char spool[96]; /* dir/spool */
    struct relay_log log;
    uint32_t *durable; /* ack.ref.slot of each durable() call, in order */
    size_t n_durable, cap_durable;
    uint64_t base_ms;   /* t_in of message 0 */
    uint64_t t_tol;     /* t_in may move this much (ms) across a reopen: the wall offset */
    char immutable[96]; /* a directory made immutable, to undo in teardown */
};

static void on_durable(void *arg, const struct relay_spool_ack *ack)
{
    struct fx *f = arg;

    if (f->n_durable == f->cap_durable) {
        f->cap_durable = f->cap_durable ? 2 * f->cap_durable : 1024;
        f->durable = realloc(f->durable, f->cap_durable * sizeof(*f->durable));
        assert_non_null(f->durable);
    }
    f->durable[f->n_durable++] = ack->ref.slot;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* relay_spool_open() with the clocks read here (the spool reads none itself). */
static int spool_open(const char *dir, uint64_t max_size, const char *who, struct relay_log *log,
                      relay_spool_durable_fn durable, void *arg, struct relay_spool **out,
                      char *err, size_t errlen)
{
    struct timespec ts;
    struct relay_spool_opts o = {dir, max_size, who, log, durable, arg, mono_ms(), 0};

    clock_gettime(CLOCK_REALTIME, &ts);
    o.wall_offset_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)o.now_ms;
    return relay_spool_open(&o, out, err, errlen);
}

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/test_spool.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
    relay_log_init(&f->log, RELAY_LOG_INFO);
    f->base_ms = mono_ms() - 100000;
    fail_fsync = fail_write = write_skip = 0;
    short_write = 0;
    *st = f;
    return 0;
}

static int set_immutable(const char *path, bool on)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY), flags = 0, rc = -1;

    if (fd < 0)
        return -1;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
    return rc;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D)
        chmod(path, 0700);
    return remove(path);
}

static int teardown(void **st)
{
    struct fx *f = *st;

    if (f->immutable[0])
        set_immutable(f->immutable, false);
    chmod(f->spool, 0700);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f->durable);
    free(f);
    fail_fsync = fail_write = 0;
    short_write = 0;
    return 0;
}

/* Message i: payload bytes derived from i, the other fields varied by i. */
static struct relay_msg *mk(const struct fx *f, uint32_t i, size_t len)
{
    struct relay_msg *m = calloc(1, sizeof(*m) + len);

    assert_non_null(m);
    assert_true(len >= 16);
    m->len = (uint32_t)len;
    m->qos = (uint8_t)(i % 3);
    m->pid_off = m->qos ? 6 : 0;
    m->expiry = i % 2 ? 3600 + i : 0;
    m->expiry_off = m->expiry ? 10 : 0;
    m->route = i % 5;
    m->t_in_ms = f->base_ms + i;
    m->spool_seq = 999; /* ignored by append */
    for (size_t k = 0; k < len; k++)
        m->data[k] = (uint8_t)(i * 31u + k * 7u);
    return m;
}

static void check_msg(const struct fx *f, const struct relay_msg *m, uint32_t i, size_t len,
                      uint32_t conn, uint32_t got_conn)
{
    struct relay_msg *want = mk(f, i, len);

    assert_int_equal(m->len, want->len);
    assert_int_equal(m->qos, want->qos);
    assert_int_equal(m->pid_off, want->pid_off);
    assert_int_equal(m->expiry, want->expiry);
    assert_int_equal(m->expiry_off, want->expiry_off);
    assert_int_equal(m->route, want->route);
    assert_true(m->t_in_ms + f->t_tol >= want->t_in_ms && m->t_in_ms <= want->t_in_ms + f->t_tol);
    assert_memory_equal(m->data, want->data, len);
    assert_null(m->src);
    assert_null(m->next);
    assert_null(m->prev);
    assert_int_equal(m->pid, 0);
    assert_int_equal(m->state, 0);
    assert_int_equal(got_conn, conn);
    free(want);
}

static struct relay_spool *open_ok(struct fx *f, uint64_t max_size)
{
    struct relay_spool *sp = NULL;
    char err[256];
    int rc =
        spool_open(f->spool, max_size, "spool test", &f->log, on_durable, f, &sp, err, sizeof(err));

    if (rc)
        fail_msg("relay_spool_open: %d %s", rc, err);
    return sp;
}

/* Appends message i (len bytes, pool connection i % 4) with ack slot i + 1. */
static void append(struct fx *f, struct relay_spool *sp, uint32_t i, size_t len)
{
    struct relay_msg *m = mk(f, i, len);
    struct relay_spool_ack ack = {.ref = {.slot = i + 1, .gen = 7}};

    assert_int_equal(relay_spool_append(sp, m, i % 4, &ack), 0);
    free(m);
}

/* Hands out the next record; checks it is message i. Returns its sequence number. */
static uint64_t next_is(struct fx *f, struct relay_spool *sp, uint32_t i, size_t len)
{
    uint32_t conn = 99;
    struct relay_msg *m = relay_spool_next(sp, mono_ms(), &conn);
    uint64_t seq;

    if (!m)
        fail_msg("no record where message %u was expected", i);
    check_msg(f, m, i, len, i % 4, conn);
    seq = m->spool_seq;
    free(m);
    return seq;
}

static size_t count_segments(const char *dir)
{
    char cmd[256];
    size_t n = 0;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^seg-.*\\.log$'", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

/* The only segment file's path (asserts there is exactly one). */
static void only_segment(const char *dir, char *out, size_t cap)
{
    char cmd[256];
    FILE *p;

    assert_int_equal(count_segments(dir), 1);
    snprintf(cmd, sizeof(cmd), "ls %s/seg-*.log", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, (int)cap, p));
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

/* stderr into a file while the spool logs: the log lines are part of the contract. */
struct capture {
    int saved;
    char path[128];
};

static void capture_begin(struct fx *f, struct capture *c)
{
    int fd;

    snprintf(c->path, sizeof(c->path), "%s/stderr.txt", f->dir);
    fflush(stderr);
    fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(struct capture *c)
{
    FILE *fp;
    char *s = calloc(1, 65536);

    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    fp = fopen(c->path, "r");
    assert_non_null(fp);
    assert_non_null(s);
    if (fread(s, 1, 65535, fp) == 0)
        s[0] = '\0';
    fclose(fp);
    return s;
}

static void copy_file(const char *from, const char *to, off_t len)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char buf[65536];
    ssize_t n;

    assert_true(in >= 0 && out >= 0);
    for (off_t done = 0; done < len && (n = read(in, buf, sizeof(buf))) > 0; done += n)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    assert_int_equal(ftruncate(out, len), 0);
    close(out);
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* An independent bit-at-a-time CRC32C, to check the documented format. */
static uint32_t crc32c_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* The checksum the spool uses (the CPU's crc32 instruction where it has one) is the tables'
 * CRC32C and the reference one, at every length and when continued. */
static void crc_paths_agree(void **st)
{
    uint32_t t[8][256];
    uint8_t buf[200];

    (void)st;
    spool_crc_init(t);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 37u + 11u);
    for (size_t n = 0; n <= sizeof(buf); n++) {
        uint32_t ref = crc32c_ref(buf, n);

        assert_int_equal(spool_crc_upd((const uint32_t(*)[256])t, 0, buf, n), ref);
        assert_int_equal(spool_crc_sw((const uint32_t(*)[256])t, 0, buf, n), ref);
        for (size_t k = 0; k <= n; k += 7) /* in two pieces */
            assert_int_equal(spool_crc_upd((const uint32_t(*)[256])t,
                                           spool_crc_upd((const uint32_t(*)[256])t, 0, buf, k),
                                           buf + k, n - k),
                             ref);
    }
}

/* ---- round trip and format ---------------------------------------------------------------- */

static void round_trip(void **st)
{
    static const size_t lens[] = {16, 300, 2000, 70000, 1500000};
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);
    struct relay_spool_stats s;
    struct relay_msg *bad = mk(f, 1, 16);
    uint64_t bytes = 0, wall;
    uint8_t b[2 * REC_HDR + 316];
    char seg[256];
    struct timespec ts;
    int fd;

    bad->pid_off = 15; /* the packet identifier would end past the data */
    assert_int_equal(relay_spool_append(sp, bad, 0, NULL), -EINVAL);
    free(bad);
    for (uint32_t i = 0; i < 5; i++) {
        append(f, sp, i, lens[i]);
        bytes += REC_HDR + lens[i];
    }
    assert_null(
        relay_spool_next(sp, mono_ms(), NULL)); /* nothing is handed out before it is durable */
    assert_int_equal(f->n_durable, 0);
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(next_is(f, sp, i, lens[i]), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, 5);
    assert_int_equal(s.bytes, bytes);
    assert_int_equal(s.oldest_ms, f->base_ms);
    assert_int_equal(s.fsyncs, 1);
    assert_int_equal(s.write_errors, 0);
    relay_spool_close(sp, mono_ms());

    /* the file is what spool.c documents, checked with an independent CRC32C */
    assert_int_equal(crc32c_ref((const uint8_t *)"123456789", 9), 0xE3069283u);
    only_segment(f->spool, seg, sizeof(seg));
    assert_non_null(strstr(seg, "/seg-0000000000000001.log"));
    assert_int_equal(file_size(seg), bytes);
    fd = open(seg, O_RDONLY);
    assert_int_equal(read(fd, b, sizeof(b)), sizeof(b));
    close(fd);
    clock_gettime(CLOCK_REALTIME, &ts);
    wall = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u - 100000u;
    for (int r = 0; r < 2; r++) {
        const uint8_t *h = b + r * (REC_HDR + 16);
        struct relay_msg *m = mk(f, (uint32_t)r, lens[r]);

        assert_int_equal(le32(h), 0x4d515253u);
        assert_int_equal(le32(h + 4), crc32c_ref(h + 8, REC_HDR - 8));
        assert_int_equal(le32(h + 8), lens[r]);
        assert_int_equal(le32(h + 12), crc32c_ref(h + REC_HDR, lens[r]));
        assert_int_equal(le64(h + 16), r + 1);
        assert_true(le64(h + 24) + 2000 > wall && le64(h + 24) < wall + 2000);
        assert_int_equal(le32(h + 32), m->expiry);
        assert_int_equal(le32(h + 36), m->expiry_off);
        assert_int_equal(le32(h + 40), m->pid_off);
        assert_int_equal(le32(h + 44), m->route);
        assert_int_equal(le32(h + 48), r % 4);
        assert_int_equal(h[52], m->qos);
        assert_int_equal(h[53], 1);
        assert_memory_equal(h + REC_HDR, m->data, lens[r] < 300 ? lens[r] : 300);
        free(m);
    }

    /* and it comes back the same after a reopen (t_in to within the wall offset's rounding) */
    f->t_tol = 3;
    sp = open_ok(f, 1u << 30);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(next_is(f, sp, i, lens[i]), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    append(f, sp, 5, 16); /* numbering goes on */
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    assert_int_equal(next_is(f, sp, 5, 16), 6);
    relay_spool_close(sp, mono_ms());
}

/* ---- group commit ------------------------------------------------------------------------- */

static void group_commit(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);
    struct relay_spool_stats s;
    unsigned long n0 = n_fdatasync;
    uint64_t now = f->base_ms;
    uint32_t i;

    assert_int_equal(relay_spool_deadline(sp), 0);
    for (i = 0; i < 1000; i++)
        append(f, sp, i, 100);
    /* after a pause: due at once (the first append) */
    assert_int_equal(relay_spool_deadline(sp), f->base_ms);
    assert_int_equal(f->n_durable, 0);
    assert_int_equal(relay_spool_commit(sp, now += 2), 0);
    relay_spool_stats(sp, &s);
    assert_int_equal(s.fsyncs, 1);
    assert_int_equal(n_fdatasync - n0, 1); /* one fdatasync made 1000 records durable */
    assert_int_equal(f->n_durable, 1000);
    for (i = 0; i < 1000; i++)
        assert_int_equal(f->durable[i], i + 1); /* in append order */
    assert_int_equal(relay_spool_deadline(sp), 0);

    /* ten more batches: one fsync each. The deadline is the first append's t_in (the last
     * commit when that t_in is older: a message that waited elsewhere first), but never
     * within a millisecond of the last commit. */
    for (int b = 0; b < 10; b++) {
        uint64_t first = f->base_ms + i, last = now;

        for (int k = 0; k < 100; k++, i++)
            append(f, sp, i, 100);
        assert_int_equal(relay_spool_deadline(sp), first > last + 1 ? first : last + 1);
        now = f->base_ms + 5000 + 2u * (uint64_t)b;
        assert_int_equal(relay_spool_commit(sp, now), 0);
    }
    relay_spool_stats(sp, &s);
    assert_int_equal(s.fsyncs, 11);
    assert_int_equal(f->n_durable, 2000);
    for (uint32_t k = 0; k < 2000; k++)
        assert_int_equal(f->durable[k], k + 1);

    /* past 1 MiB pending, commit is due at once */
    for (size_t pend = 0; pend < (1u << 20) - 1100; pend += REC_HDR + 1000, i++) {
        append(f, sp, i, 1000);
        assert_int_equal(relay_spool_deadline(sp), now + 1);
    }
    append(f, sp, i++, 1000);
    assert_true(relay_spool_deadline(sp) <= now);
    assert_int_equal(relay_spool_commit(sp, now), 0);
    for (uint32_t k = 0; k < i; k++)
        next_is(f, sp, k, k < 2000 ? 100 : 1000);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());
}

/* ---- delivery out of order, reclaiming segments -------------------------------------------- */

static bool seg_exists(const struct fx *f, uint64_t name)
{
    char p[160];

    snprintf(p, sizeof(p), "%s/seg-%016llx.log", f->spool, (unsigned long long)name);
    return access(p, F_OK) == 0;
}

static void out_of_order_delivery(void **st)
{
    enum { N = 1200 };
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 20); /* segments of 128 KiB */
    struct relay_spool_stats s;
    uint64_t names[64], now = f->base_ms;
    size_t n_names = 0;

    for (uint32_t i = 0; i < N; i++) {
        append(f, sp, i, 500);
        if (i % 100 == 99)
            assert_int_equal(relay_spool_commit(sp, now += 2), 0);
    }
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(next_is(f, sp, i, 500), i + 1);
    for (uint64_t q = 1; q <= N; q++)
        if (seg_exists(f, q))
            names[n_names++] = q;
    assert_true(n_names >= 4);
    assert_int_equal(count_segments(f->spool), n_names);

    /* even sequence numbers first, in reverse: nothing can go (1 is still out) */
    for (uint64_t q = N; q >= 2; q -= 2)
        relay_spool_delivered(sp, q, mono_ms());
    relay_spool_delivered(sp, 4, mono_ms());      /* twice: ignored */
    relay_spool_delivered(sp, N + 50, mono_ms()); /* never handed out: ignored */
    relay_spool_delivered(sp, 0, mono_ms());
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, N / 2);
    assert_int_equal(s.oldest_ms, f->base_ms); /* message 0 (sequence 1) */
    assert_int_equal(count_segments(f->spool), n_names);

    /* then the odd ones: a segment goes as soon as the watermark passes its last record */
    for (uint64_t q = 1; q < N; q += 2) {
        uint64_t w = q + 2; /* the lowest sequence number still out */

        relay_spool_delivered(sp, q, mono_ms());
        for (size_t j = 0; j + 1 < n_names; j++)
            assert_int_equal(seg_exists(f, names[j]), names[j + 1] > w);
        relay_spool_stats(sp, &s);
        assert_int_equal(s.messages, (N - q - 1) / 2);
        if (s.messages)
            assert_int_equal(s.oldest_ms, f->base_ms + q + 1); /* message q+1 = sequence q+2 */
    }
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.oldest_ms, 0);
    assert_int_equal(count_segments(f->spool), 0); /* the active one too: it was large enough */
    assert_int_equal(s.bytes, 0);
    append(f, sp, N, 500); /* and the spool goes on in a new segment */
    assert_int_equal(relay_spool_commit(sp, now += 2), 0);
    assert_int_equal(next_is(f, sp, N, 500), N + 1);
    assert_true(seg_exists(f, N + 1));
    relay_spool_close(sp, mono_ms());
}

/* ---- restarts ----------------------------------------------------------------------------- */

static void restart_redelivers(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);

    for (uint32_t i = 0; i < 100; i++)
        append(f, sp, i, 200);
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    for (uint32_t i = 0; i < 100; i++)
        next_is(f, sp, i, 200);
    for (uint64_t q = 1; q <= 30; q++)
        relay_spool_delivered(sp, q, mono_ms());
    for (uint64_t q = 50; q <= 60; q++)
        relay_spool_delivered(sp, q, mono_ms());
    relay_spool_close(sp, mono_ms()); /* saves the watermark: 31 */

    f->t_tol = 3;
    sp = open_ok(f, 1u << 30);
    /* at least once, in order: 31..100 (50..60 again: above the watermark) */
    for (uint32_t i = 30; i < 100; i++)
        assert_int_equal(next_is(f, sp, i, 200), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    append(f, sp, 100, 200);
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    assert_int_equal(next_is(f, sp, 100, 200), 101);
    relay_spool_close(sp, mono_ms());
}

/* The child dies by SIGKILL without closing: only what a commit saved counts. */
static void crash_child(struct fx *f)
{
    struct relay_spool *sp = NULL;
    struct relay_msg *m;
    char err[256];
    uint64_t now = f->base_ms + 1000;

    if (spool_open(f->spool, 1u << 30, "child", &f->log, on_durable, f, &sp, err, sizeof(err)) != 0)
        _exit(2);
    for (uint32_t i = 0; i < 200; i++) {
        m = mk(f, i, 200);
        if (relay_spool_append(sp, m, i % 4, NULL) != 0)
            _exit(3);
        free(m);
    }
    if (relay_spool_commit(sp, now) != 0)
        _exit(4);
    while ((m = relay_spool_next(sp, mono_ms(), NULL)) != NULL)
        free(m);
    for (uint64_t q = 1; q <= 50; q++)
        relay_spool_delivered(sp, q, mono_ms());
    if (relay_spool_deadline(sp) > now)
        _exit(5);
    relay_spool_commit(sp, now); /* saves watermark 51 */
    for (uint64_t q = 51; q <= 120; q++)
        relay_spool_delivered(sp, q, mono_ms()); /* not saved: less than 500 ms later */
    for (uint32_t i = 200; i < 215; i++) {
        m = mk(f, i, 200);
        relay_spool_append(sp, m, i % 4, NULL);
        free(m);
        if (i == 209 && relay_spool_commit(sp, now + 100) != 0) /* 201..210 durable */
            _exit(6);
    }
    raise(SIGKILL); /* 211..215 were never durable (nor acknowledged) */
    _exit(7);
}

static void crash_redelivers(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp;
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crash_child(f);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("child exited with %d", WEXITSTATUS(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    f->t_tol = 3;
    sp = open_ok(f, 1u << 30);
    for (uint32_t i = 50; i < 210; i++) /* from the saved watermark on, in order */
        assert_int_equal(next_is(f, sp, i, 200), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    append(f, sp, 300, 200);
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    assert_int_equal(next_is(f, sp, 300, 200), 211);
    relay_spool_close(sp, mono_ms());
}

/* ---- damaged journals --------------------------------------------------------------------- */

/* Writes messages 0..n-1 (length len(i)) in one commit and closes; returns the segment path
 * and each record's end offset. */
static void write_journal(struct fx *f, uint32_t n, size_t (*len)(uint32_t), char *seg, size_t cap,
                          uint64_t *ends)
{
    struct relay_spool *sp = open_ok(f, 1u << 30);
    uint64_t off = 0;

    for (uint32_t i = 0; i < n; i++) {
        append(f, sp, i, len(i));
        ends[i] = off += REC_HDR + len(i);
    }
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    relay_spool_close(sp, mono_ms());
    only_segment(f->spool, seg, cap);
    assert_int_equal(file_size(seg), off);
}

static size_t tail_len(uint32_t i)
{
    return i < 9 ? 100 + 13 * i : 16 + 40 * (i - 9);
}

/* The last segment cut at every offset of its last three records: each complete record comes
 * back, the torn one is dropped (and said so), nothing crashes. */
static void truncated_tail(void **st)
{
    struct fx *f = *st;
    uint64_t ends[12];
    char seg[256], copy[256], t[128];

    f->t_tol = 3;
    write_journal(f, 12, tail_len, seg, sizeof(seg), ends);
    snprintf(t, sizeof(t), "%s/t", f->dir);
    snprintf(copy, sizeof(copy), "%s/%s", t, strrchr(seg, '/') + 1);
    for (uint64_t cut = ends[8]; cut <= ends[11]; cut++) {
        struct relay_spool *sp = NULL;
        struct capture c;
        uint32_t k = 0;
        char err[256], *log;

        while (k < 12 && ends[k] <= cut)
            k++;
        assert_int_equal(mkdir(t, 0700), 0);
        copy_file(seg, copy, (off_t)cut);
        capture_begin(f, &c);
        assert_int_equal(
            spool_open(t, 1u << 30, "cut", &f->log, on_durable, f, &sp, err, sizeof(err)), 0);
        log = capture_end(&c);
        for (uint32_t i = 0; i < k; i++)
            assert_int_equal(next_is(f, sp, i, tail_len(i)), i + 1);
        assert_null(relay_spool_next(sp, mono_ms(), NULL));
        if (cut == ends[k - 1]) {
            assert_null(strstr(log, "dropped"));
        } else {
            char want[64];

            if (!strstr(log, "dropped") || !strstr(log, "torn"))
                fail_msg("cut at %llu: no line about the torn record in:\n%s",
                         (unsigned long long)cut, log);
            snprintf(want, sizeof(want), "sequence %u,", k + 1);
            if (cut - ends[k - 1] >= REC_HDR && !strstr(log, want))
                fail_msg("cut at %llu: \"%s\" not in:\n%s", (unsigned long long)cut, want, log);
            assert_int_equal(file_size(copy), ends[k - 1]); /* truncated at the torn record */
        }
        free(log);
        relay_spool_close(sp, mono_ms());
        assert_int_equal(nftw(t, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    }
}

static size_t fixed_len(uint32_t i)
{
    (void)i;
    return 100;
}

static void poke(const char *path, uint64_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), n);
    close(fd);
}

/* Damage in the middle: a data byte, a length field, a magic, a fake magic in a payload. Each
 * damaged record is skipped with a log line; every other record comes back, in order. */
static void corrupt_middle(void **st)
{
    struct fx *f = *st;
    uint64_t ends[20];
    char seg[256], *log;
    struct relay_spool *sp = NULL;
    struct capture c;
    char err[256];
    static const uint8_t x = 0x5a, big[4] = {0xff, 0xff, 0xff, 0x7f}, zero[4] = {0};
    static const uint8_t fake[REC_HDR] = {0x53, 0x52, 0x51, 0x4d, 1, 2, 3, 4, 16};
    uint64_t got_seq[12];

    write_journal(f, 20, fixed_len, seg, sizeof(seg), ends);
    poke(seg, ends[3] + REC_HDR + 50, &x, 1);               /* record 4: its data */
    poke(seg, ends[7] + 8, big, sizeof(big));               /* record 8: its length */
    poke(seg, ends[11], zero, sizeof(zero));                /* record 12: its magic */
    poke(seg, ends[14] + REC_HDR + 10, fake, sizeof(fake)); /* record 15: a magic in its data */

    capture_begin(f, &c);
    assert_int_equal(
        spool_open(f->spool, 1u << 30, "mid", &f->log, on_durable, f, &sp, err, sizeof(err)), 0);
    log = capture_end(&c);
    assert_non_null(strstr(log, "corrupt bytes at offset"));
    assert_null(strstr(log, "dropped")); /* the tail is intact */
    free(log);
    f->t_tol = 3;
    for (uint32_t i = 0; i < 20; i++)
        if (i != 4 && i != 8 && i != 12 && i != 15)
            assert_int_equal(next_is(f, sp, i, 100), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());

    /* damage after the write, found by the reader (past what its 1 MiB buffer already holds):
     * logged as an error, skipped, the rest still comes */
    assert_int_equal(unlink(seg), 0);
    sp = open_ok(f, 1u << 30);
    for (uint32_t i = 0; i < 12; i++)
        append(f, sp, i, 100000);
    assert_int_equal(relay_spool_commit(sp, f->base_ms), 0);
    poke(seg, 11 * (REC_HDR + 100000) + REC_HDR + 7, &x, 1); /* record 11 */
    capture_begin(f, &c);
    for (uint32_t i = 0; i < 12; i++) {
        struct relay_msg *got = relay_spool_next(sp, mono_ms(), NULL);

        got_seq[i] = got ? got->spool_seq : 0;
        free(got);
    }
    log = capture_end(&c);
    for (uint32_t i = 0; i < 11; i++)
        assert_int_equal(got_seq[i], i + 1);
    assert_int_equal(got_seq[11], 0);
    assert_non_null(strstr(log, "ERROR"));
    assert_non_null(strstr(log, "corrupt bytes skipped at offset"));
    free(log);
    relay_spool_close(sp, mono_ms());

    /* a segment of nothing but zeros holds no record: it goes, the spool opens empty */
    assert_int_equal(unlink(seg), 0);
    copy_file("/dev/zero", seg, 4096);
    sp = open_ok(f, 1u << 30);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    assert_int_equal(count_segments(f->spool), 0);
    relay_spool_close(sp, mono_ms());
}

/* ---- max_size ----------------------------------------------------------------------------- */

static void full_and_hysteresis(void **st)
{
    struct fx *f = *st;
    const uint64_t max = 256u << 10;
    struct relay_spool *sp = open_ok(f, max);
    struct relay_spool_stats s;
    struct relay_msg *m;
    uint64_t now = f->base_ms;
    uint32_t n = 0;
    int rc;

    for (;; n++) {
        m = mk(f, n, 1000);
        rc = relay_spool_append(sp, m, 0, NULL);
        free(m);
        if (rc)
            break;
        assert_int_equal(relay_spool_full(sp), (n + 1) * (REC_HDR + 1000) >= max);
        if (n % 20 == 19)
            assert_int_equal(relay_spool_commit(sp, now += 2), 0);
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(n, max / (REC_HDR + 1000));
    assert_true(relay_spool_full(sp));
    relay_spool_stats(sp, &s);
    assert_true(s.bytes <= max && s.bytes + REC_HDR + 1000 > max);
    assert_int_equal(relay_spool_commit(sp, now += 2), 0);
    assert_true(relay_spool_full(sp));

    for (uint32_t i = 0; i < n; i++) {
        m = relay_spool_next(sp, mono_ms(), NULL);
        assert_non_null(m);
        relay_spool_delivered(sp, m->spool_seq, mono_ms());
        free(m);
        relay_spool_stats(sp, &s);
        /* full until usage falls under 90 % */
        assert_int_equal(relay_spool_full(sp), s.bytes >= max / 10 * 9);
        if (!relay_spool_full(sp))
            break;
    }
    assert_false(relay_spool_full(sp));
    m = mk(f, n, 1000);
    assert_int_equal(relay_spool_append(sp, m, 0, NULL), 0);
    free(m);
    relay_spool_close(sp, mono_ms());
}

/* ---- disk errors -------------------------------------------------------------------------- */

/* A failed fdatasync: nothing is reported durable, the spool is full, the retry comes a
 * second later and writes the records into a new segment. */
static void fsync_failure(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);
    struct relay_spool_stats s;
    uint64_t now = f->base_ms + 10;
    unsigned long calls;
    char old[256], neu[256];
    struct capture c;
    char *log;

    for (uint32_t i = 0; i < 5; i++)
        append(f, sp, i, 120);
    assert_int_equal(relay_spool_commit(sp, now), 0);
    for (uint32_t i = 5; i < 10; i++)
        append(f, sp, i, 120);
    fail_fsync = 1;
    capture_begin(f, &c);
    assert_int_equal(relay_spool_commit(sp, now), -EIO);
    log = capture_end(&c);
    assert_non_null(strstr(log, "fdatasync"));
    free(log);
    assert_int_equal(f->n_durable, 5);
    assert_true(relay_spool_full(sp));
    relay_spool_stats(sp, &s);
    assert_int_equal(s.write_errors, 1);
    assert_int_equal(s.fsyncs, 1);
    assert_int_equal(relay_spool_deadline(sp), now + 1000);
    calls = n_fdatasync;
    assert_int_equal(relay_spool_commit(sp, now + 10), -EIO); /* backing off: not tried */
    assert_int_equal(n_fdatasync, calls);
    assert_int_equal(relay_spool_commit(sp, now + 1000), 0);
    assert_false(relay_spool_full(sp));
    assert_int_equal(f->n_durable, 10);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(f->durable[i], i + 1);
    assert_int_equal(count_segments(f->spool), 2); /* the untrusted file is left behind */
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(next_is(f, sp, i, 120), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());

    /* Had the lost write reached the old file after all, the copies are skipped. */
    snprintf(old, sizeof(old), "%s/seg-0000000000000001.log", f->spool);
    snprintf(neu, sizeof(neu), "%s/seg-0000000000000006.log", f->spool);
    {
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "cat %s >> %s", neu, old);
        assert_int_equal(system(cmd), 0);
    }
    f->t_tol = 3;
    capture_begin(f, &c);
    sp = open_ok(f, 1u << 30);
    log = capture_end(&c);
    assert_non_null(strstr(log, "second copies"));
    free(log);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(next_is(f, sp, i, 120), i + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());
}

/* fdatasync fails on a segment's very first commit: the empty file goes, the retry makes it
 * again under the same name. */
static void fsync_failure_new_segment(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);

    for (uint32_t i = 0; i < 3; i++)
        append(f, sp, i, 50);
    fail_fsync = 1;
    assert_int_equal(relay_spool_commit(sp, f->base_ms), -EIO);
    assert_int_equal(count_segments(f->spool), 0);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    assert_int_equal(relay_spool_commit(sp, f->base_ms + 1000), 0);
    assert_int_equal(count_segments(f->spool), 1);
    assert_true(seg_exists(f, 1));
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(next_is(f, sp, i, 50), i + 1);
    relay_spool_close(sp, mono_ms());
}

/* Short writes, a full disk, an I/O error after part of a batch was written. */
static void write_failures(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 1u << 30);
    uint64_t now = f->base_ms;
    uint32_t i = 0;

    short_write = 100;
    for (; i < 50; i++)
        append(f, sp, i, 300);
    assert_int_equal(relay_spool_commit(sp, now), 0);

    for (; i < 60; i++)
        append(f, sp, i, 300);
    fail_write = 1;
    fail_errno = ENOSPC;
    assert_int_equal(relay_spool_commit(sp, now), -ENOSPC);
    assert_true(relay_spool_full(sp));
    assert_int_equal(f->n_durable, 50);
    assert_int_equal(relay_spool_commit(sp, now += 1000), 0);
    assert_false(relay_spool_full(sp));

    for (; i < 70; i++)
        append(f, sp, i, 300);
    fail_write = 1;
    write_skip = 5; /* 500 bytes reach the file, then EIO */
    fail_errno = EIO;
    assert_int_equal(relay_spool_commit(sp, now), -EIO);
    assert_int_equal(f->n_durable, 60);
    short_write = 0;
    assert_int_equal(relay_spool_commit(sp, now += 1000), 0);
    assert_int_equal(f->n_durable, 70);
    for (uint32_t k = 0; k < 70; k++)
        assert_int_equal(f->durable[k], k + 1);
    for (uint32_t k = 0; k < 70; k++)
        assert_int_equal(next_is(f, sp, k, 300), k + 1);
    relay_spool_close(sp, mono_ms());

    f->t_tol = 3;
    sp = open_ok(f, 1u << 30); /* the rewritten bytes are what is on disk */
    for (uint32_t k = 0; k < 70; k++)
        assert_int_equal(next_is(f, sp, k, 300), k + 1);
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());
}

/* ---- the directory ------------------------------------------------------------------------ */

/* Makes dir refuse new files: chmod 0500, or for root the immutable attribute. Returns false
 * (and says why) when neither works here. */
static bool make_unwritable(struct fx *f, const char *dir)
{
    char probe[200];
    int fd;

    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0500), 0);
    } else if (set_immutable(dir, true) == 0) {
        snprintf(f->immutable, sizeof(f->immutable), "%s", dir);
    } else {
        print_message("root, and %s cannot be made immutable (%s): skipped\n", dir,
                      strerror(errno));
        return false;
    }
    snprintf(probe, sizeof(probe), "%s/probe", dir);
    fd = open(probe, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0) {
        close(fd);
        unlink(probe);
        print_message("%s is still writable: skipped\n", dir);
        return false;
    }
    return true;
}

static void make_writable(struct fx *f, const char *dir)
{
    if (f->immutable[0]) {
        assert_int_equal(set_immutable(f->immutable, false), 0);
        f->immutable[0] = '\0';
    }
    assert_int_equal(chmod(dir, 0700), 0);
}

static void unwritable_directory(void **st)
{
    struct fx *f = *st;
    struct relay_spool *sp = (struct relay_spool *)1, *sp2 = NULL;
    char path[200], err[256];
    struct capture c;
    char *log;
    int fd;

    /* a path through a regular file, and a regular file as the directory */
    snprintf(path, sizeof(path), "%s/file", f->dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    close(fd);
    snprintf(path, sizeof(path), "%s/file/spool", f->dir);
    assert_int_equal(spool_open(path, 1u << 30, "x", &f->log, on_durable, f, &sp, err, sizeof(err)),
                     -ENOTDIR);
    assert_null(sp);
    assert_non_null(strstr(err, "cannot create spool directory"));
    assert_non_null(strstr(err, "Not a directory"));
    snprintf(path, sizeof(path), "%s/file", f->dir);
    assert_int_equal(spool_open(path, 1u << 30, "x", &f->log, on_durable, f, &sp, err, sizeof(err)),
                     -ENOTDIR);
    assert_non_null(strstr(err, "is not a directory"));

    /* created with mode 0700, parents too */
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    assert_int_equal(spool_open(path, 1u << 30, "x", &f->log, on_durable, f, &sp, err, sizeof(err)),
                     0);
    relay_spool_close(sp, mono_ms());
    {
        struct stat stt;

        assert_int_equal(stat(path, &stt), 0);
        assert_int_equal(stt.st_mode & 0777, 0700);
    }

    /* one relay per directory */
    sp = open_ok(f, 1u << 30);
    assert_int_equal(
        spool_open(f->spool, 1u << 30, "x", &f->log, on_durable, f, &sp2, err, sizeof(err)),
        -EBUSY);
    assert_non_null(strstr(err, "in use"));

    /* the directory stops taking files while the spool runs: nothing is reported durable,
     * the spool is full; once writable again the retry goes through */
    for (uint32_t i = 0; i < 3; i++)
        append(f, sp, i, 64);
    if (!make_unwritable(f, f->spool)) {
        relay_spool_close(sp, mono_ms());
        return;
    }
    capture_begin(f, &c);
    assert_true(relay_spool_commit(sp, f->base_ms) < 0);
    log = capture_end(&c);
    assert_non_null(strstr(log, "creating a segment"));
    free(log);
    assert_int_equal(f->n_durable, 0);
    assert_true(relay_spool_full(sp));
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    make_writable(f, f->spool);
    assert_int_equal(relay_spool_commit(sp, f->base_ms + 1000), 0);
    assert_int_equal(f->n_durable, 3);
    assert_false(relay_spool_full(sp));
    relay_spool_close(sp, mono_ms());

    /* an unwritable directory is refused at open with a clear error */
    assert_true(make_unwritable(f, f->spool));
    sp = (struct relay_spool *)1;
    assert_true(spool_open(f->spool, 1u << 30, "x", &f->log, on_durable, f, &sp, err, sizeof(err)) <
                0);
    assert_null(sp);
    if (!strstr(err, "is not writable"))
        fail_msg("unexpected error: %s", err);
    make_writable(f, f->spool);
}

/* ---- a random walk against a model -------------------------------------------------------- */

static uint32_t rnd(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*x >> 33);
}

/* Random appends, commits (some failing), hand-outs, deliveries in any order and reopens with
 * a small max_size (segments roll and go). Whatever happens: within a run records come out in
 * order and once; every message reported durable is delivered in the end. */
static void random_walk(void **st)
{
    enum { STEPS = 30000, MAXID = 20000 };
    struct fx *f = *st;
    struct relay_spool *sp = open_ok(f, 256u << 10);
    uint8_t *delivered = calloc(MAXID, 1);
    uint32_t *handed = calloc(MAXID, sizeof(*handed)), n_handed = 0, id = 0;
    uint64_t *seqs = calloc(MAXID, sizeof(*seqs)), x = 42, now = f->base_ms;
    const char *seed = getenv("SPOOL_SEED"); /* to explore: SPOOL_SEED=n test_spool */

    if (seed)
        x = strtoull(seed, NULL, 10);
    int64_t last = -1; /* the last id handed out in this run */
    struct relay_spool_stats s;
    struct relay_msg *m;

    assert_true(delivered && handed && seqs);
    for (int step = 0; step < STEPS && id < MAXID; step++) {
        uint32_t r = rnd(&x) % 100;

        if (r < 45) {
            struct relay_msg *a = mk(f, id, 16 + rnd(&x) % 600);
            struct relay_spool_ack ack = {.ref = {.slot = id + 1}};

            a->route = id;
            if (relay_spool_append(sp, a, 0, &ack) == 0)
                id++;
            free(a);
        } else if (r < 55) {
            fail_fsync = rnd(&x) % 10 == 0;
            fail_write = rnd(&x) % 10 == 0;
            short_write = rnd(&x) % 4 == 0 ? 1 + rnd(&x) % 500 : 0;
            relay_spool_commit(sp, now += 1000);
            fail_fsync = fail_write = 0;
            short_write = 0;
        } else if (r < 75) {
            if ((m = relay_spool_next(sp, mono_ms(), NULL)) != NULL) {
                assert_true((int64_t)m->route > last); /* in order, once */
                last = m->route;
                seqs[m->route] = m->spool_seq;
                handed[n_handed++] = m->route;
                free(m);
            }
        } else if (r < 97) {
            if (n_handed) {
                uint32_t k = rnd(&x) % n_handed, h = handed[k];

                handed[k] = handed[--n_handed];
                relay_spool_delivered(sp, seqs[h], mono_ms());
                delivered[h] = 1;
            }
        } else if (r < 99) {
            relay_spool_close(sp, mono_ms());
            sp = open_ok(f, 256u << 10);
            n_handed = 0; /* what was out comes again */
            last = -1;
        }
        relay_spool_stats(sp, &s);
        assert_true(s.bytes <= 256u << 10);
    }
    /* the end: the disk works, everything is handed out and delivered */
    while (relay_spool_deadline(sp))
        relay_spool_commit(sp, now += 1000);
    while ((m = relay_spool_next(sp, mono_ms(), NULL)) != NULL) {
        assert_true((int64_t)m->route > last);
        last = m->route;
        delivered[m->route] = 1;
        relay_spool_delivered(sp, m->spool_seq, mono_ms());
        free(m);
    }
    for (uint32_t k = 0; k < n_handed; k++) {
        relay_spool_delivered(sp, seqs[handed[k]], mono_ms());
        delivered[handed[k]] = 1;
    }
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, 0);
    for (size_t k = 0; k < f->n_durable; k++)
        if (!delivered[f->durable[k] - 1])
            fail_msg("message %u was reported durable and never delivered", f->durable[k] - 1);
    print_message("%u messages, %zu reported durable, %zu segment files left\n", id, f->n_durable,
                  count_segments(f->spool));
    relay_spool_close(sp, mono_ms());
    sp = open_ok(f, 256u << 10); /* all delivered: nothing comes back */
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_close(sp, mono_ms());
    free(delivered);
    free(handed);
    free(seqs);
}

/* ---- bounded memory ----------------------------------------------------------------------- */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* 100,000 records of 1 KiB (a 105 MB journal) pile up, the spool is reopened, then drained:
 * the heap never grows by more than a few MiB (pending buffer, read buffer, bookkeeping). */
static void bounded_memory(void **st)
{
    enum { N = 100000, LEN = 1000 };
    const size_t bound = 12u << 20;
    struct fx *f = *st;
    struct relay_spool *sp;
    struct relay_spool_stats s;
    size_t base, peak = 0;
    uint64_t now = f->base_ms, d;
    bool measurable;
    void *volatile probe; /* volatile: the compiler must not drop the allocation */

    f->durable = malloc(N * sizeof(*f->durable)); /* the test's own bookkeeping, up front */
    f->cap_durable = N;
    base = heap_in_use();
    probe = malloc(8u << 20);
    memset(probe, 1, 8u << 20);
    measurable = heap_in_use() >= base + (8u << 20);
    free(probe);
    if (!measurable)
        print_message("mallinfo2 does not see this allocator (sanitizer?): sizes not checked\n");

    sp = open_ok(f, 1ull << 30);
    for (uint32_t i = 0; i < N; i++) {
        append(f, sp, i, LEN);
        now = f->base_ms + i / 50; /* 50 messages per ms */
        d = relay_spool_deadline(sp);
        if (d && d <= now)
            assert_int_equal(relay_spool_commit(sp, now), 0);
        if (i % 1000 == 0 && heap_in_use() > base + peak)
            peak = heap_in_use() - base;
    }
    assert_int_equal(relay_spool_commit(sp, now + 2), 0);
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, N);
    assert_int_equal(s.bytes, (uint64_t)N * (REC_HDR + LEN));
    assert_true(s.fsyncs < 200); /* about one per MiB */
    assert_int_equal(f->n_durable, N);
    relay_spool_close(sp, mono_ms());

    f->t_tol = 3;
    sp = open_ok(f, 1ull << 30);
    if (heap_in_use() > base + peak)
        peak = heap_in_use() - base;
    for (uint32_t i = 0; i < N; i++) {
        uint64_t seq = next_is(f, sp, i, LEN);

        relay_spool_delivered(sp, seq, mono_ms());
        if (i % 1000 == 0 && heap_in_use() > base + peak)
            peak = heap_in_use() - base;
    }
    assert_null(relay_spool_next(sp, mono_ms(), NULL));
    relay_spool_stats(sp, &s);
    assert_int_equal(s.messages, 0);
    assert_true(count_segments(f->spool) <= 1);
    relay_spool_close(sp, mono_ms());
    print_message("heap above the start: at most %.1f MiB for a %.0f MiB journal\n",
                  (double)peak / (1 << 20), (double)N * (REC_HDR + LEN) / (1 << 20));
    if (measurable)
        assert_true(peak < bound);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_paths_agree),
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_order_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_redelivers, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_redelivers, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(full_and_hysteresis, setup, teardown),
        cmocka_unit_test_setup_teardown(fsync_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(fsync_failure_new_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(write_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(unwritable_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(random_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(bounded_memory, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
