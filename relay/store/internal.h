/*
 * internal.h: the journal's state and what its files share (spool.c: the running journal,
 * appending, committing, handing records out and reclaiming them; segment.c: the record format,
 * CRC32C, the read buffer and the segment list; recover.c: opening, recovering what a previous
 * run left). The file layout is described at the top of spool.c. Nothing outside store/
 * includes it (tests may).
 */
#ifndef RELAY_STORE_INTERNAL_H
#define RELAY_STORE_INTERNAL_H

#include <inttypes.h>
#include <stdio.h>

#include "store/spool.h"

#define REC_HDR 56u
#define REC_MAX_DATA (268435455u + 5u) /* the largest MQTT packet */
#define RB_CAP (1u << 20)              /* the read buffer */
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

/* ---- little helpers: little-endian fields, segment file names ---- */

static inline void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void seg_file(char *out, size_t cap, uint64_t name)
{
    snprintf(out, cap, "seg-%016" PRIx64 ".log", name);
}

/* ---- segment.c: CRC32C, records ---- */
void spool_crc_init(uint32_t t[8][256]);
/* CRC32C of p[0..n) continuing crc: the SSE 4.2 instruction where the CPU has it, else the
 * tables (spool_crc_sw, also what the tests compare it with). */
uint32_t spool_crc_upd(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n);
uint32_t spool_crc_sw(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n);
bool spool_rec_parse(const struct relay_spool *sp, const uint8_t *h, uint64_t avail, struct rec *r);
void spool_rec_write(const struct relay_spool *sp, uint8_t *h, uint64_t seq,
                     const struct relay_msg *m, uint32_t conn);

/* ---- segment.c: the read buffer ---- */
void spool_rb_close(struct rbuf *rb);
int spool_rb_get(struct rbuf *rb, uint64_t pos, size_t n, uint64_t end, const uint8_t **p);
int spool_rb_span(struct relay_spool *sp, uint64_t pos, uint64_t n, uint64_t end, uint32_t *crc,
                  uint8_t *dst);
int spool_scan(struct relay_spool *sp, uint64_t end, uint64_t *pos, struct rec *r,
               uint64_t *skipped);
int spool_rb_open(struct relay_spool *sp, const struct seg *s);

/* ---- segment.c: the segment list ---- */
int spool_segs_push(struct relay_spool *sp, uint64_t name);
void spool_segs_remove(struct relay_spool *sp, size_t i, bool unlink_it);

/* ---- spool.c ---- */
void spool_reclaim(struct relay_spool *sp);
int spool_peek(struct relay_spool *sp);

#endif
