/*
 * spool.h: store and forward, a crash-safe journal per spooled destination broker.
 */
#ifndef RELAY_STORE_SPOOL_H
#define RELAY_STORE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"
#include "util/msg.h"

/* A spooled destination takes messages into an append-only journal of checksummed records under
 * spool.dir, acknowledges them to their sources once a commit (write + fdatasync, batched: one
 * fsync for many records) made them durable, and hands them back in order for delivery; a record
 * is reclaimed once the destination acknowledged it. Single-threaded: the core calls commit
 * when relay_spool_deadline() says, from its timer. */
struct relay_spool;

/* What durability reports back for each appended record (the source to acknowledge). */
struct relay_spool_ack {
    struct relay_conn *src; /* NULL: nothing to acknowledge (QoS 0 source) */
    struct relay_in_ref ref;
    uint32_t src_epoch;
};

typedef void (*relay_spool_durable_fn)(void *arg, const struct relay_spool_ack *ack);

struct relay_spool_stats {
    uint64_t bytes;        /* journal bytes held (not yet reclaimed) */
    uint64_t messages;     /* records not yet delivered and acknowledged */
    uint64_t oldest_ms;    /* t_in_ms of the oldest record held (monotonic, like now_ms;
                              after a restart carried over through the wall clock), 0 = none */
    uint64_t fsyncs;       /* commits done */
    uint64_t write_errors; /* failed writes / fsyncs (retried) */
};

struct relay_spool_opts {
    const char *dir;   /* created with mode 0700 if missing */
    uint64_t max_size; /* bytes */
    const char *who;   /* "spool edge": the log's context */
    struct relay_log *log;
    relay_spool_durable_fn durable; /* see relay_spool_commit() */
    void *arg;
    uint64_t now_ms;        /* the caller's monotonic clock, now */
    int64_t wall_offset_ms; /* wall clock minus that clock: records carry wall times, so that
                               their age survives a restart */
};

/* Opens the journal in o->dir, bounded by o->max_size bytes. Recovers what a previous run left:
 * skips a torn or corrupt tail (checksum), logs what it found ("spool edge: recovered 1234
 * messages (5.1 MiB), dropped a torn record at ..."). durable(arg, ack) is called from
 * relay_spool_commit() for each record made durable, in append order. 0, or -errno with a
 * message in err (unwritable directory, ...). The spool reads no clock: every entry point that
 * needs the time is given now_ms. */
int relay_spool_open(const struct relay_spool_opts *o, struct relay_spool **out, char *err,
                     size_t errlen);
/* Commits what is pending, then closes. Records not yet delivered stay for the next run.
 * durable() is not called from here: those sources are never acknowledged and redeliver
 * (duplicates, never loss), and the core may already be tearing down. NULL does nothing. */
void relay_spool_close(struct relay_spool *sp, uint64_t now_ms);

/* Appends a copy of m (its encoded PUBLISH and the fields the session needs: qos, pid_off,
 * expiry, expiry_off, t_in_ms, route) with ack to report once durable. conn is the pool
 * connection the record is for (kept so per-topic order survives a restart). Never blocks on
 * the disk: the record waits in memory until the next commit. 0, or -ENOSPC when the spool is
 * full (the caller must not acknowledge the source: it backpressures instead; full() may stay
 * false when only this message is too big for the room left), -EINVAL when m's offsets do not
 * fit in m->len. */
int relay_spool_append(struct relay_spool *sp, const struct relay_msg *m, uint32_t conn,
                       const struct relay_spool_ack *ack);
/* Writes and fdatasyncs pending records, then calls durable() for each. 0, or -errno after
 * logging (the records stay pending and are retried at the next deadline; nothing is reported
 * durable that is not on disk). */
int relay_spool_commit(struct relay_spool *sp, uint64_t now_ms);
/* When commit should run next (0 = nothing pending). Group commit: at once after the first
 * pending append, unless the last commit is less than a millisecond old (then a millisecond
 * after it: one fsync for what a busy stream brought meanwhile), or at once when much is
 * pending; 1 s apart while the disk fails; also when the delivery watermark is due to be saved
 * (at most every 500 ms). */
uint64_t relay_spool_deadline(const struct relay_spool *sp);

/* The next durable record not yet handed out, for delivery: a malloc'ed relay_msg (spool_seq
 * set, src NULL, next/prev NULL) and *conn its pool connection; NULL when none. The caller
 * hands it to the destination session, and reports relay_spool_delivered() when it is done. */
struct relay_msg *relay_spool_next(struct relay_spool *sp, uint64_t now_ms, uint32_t *conn);
/* Record seq was delivered (acknowledged) or dropped for good: it may be reclaimed. Records
 * handed out are kept (and resent after reconnects) by the destination session itself; after a
 * restart every record not reported delivered is handed out again (at least once). */
void relay_spool_delivered(struct relay_spool *sp, uint64_t seq, uint64_t now_ms);
/* Full: at max_size (or the disk refuses writes). The core pauses the sources feeding this
 * broker while it is; hysteresis like a window (resumes under 90 %). */
bool relay_spool_full(const struct relay_spool *sp);
void relay_spool_stats(const struct relay_spool *sp, struct relay_spool_stats *st);
/* Records appended (committed or not) that relay_spool_next() has not handed out yet. */
uint64_t relay_spool_unread(const struct relay_spool *sp);
/* True when dir holds segment files, e.g. left by an earlier run (an empty or missing directory
 * does not count): the caller opens such a spool at start to deliver them. */
bool relay_spool_present(const char *dir);

#endif
