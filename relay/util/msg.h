/*
 * msg.h: one outgoing PUBLISH, encoded once for its destination, and the lists that hold it.
 *
 * The message is the vocabulary the session (its queues), the store (spooled records come back
 * as messages) and the core (which builds them) share, so it lives below all three.
 */
#ifndef RELAY_UTIL_MSG_H
#define RELAY_UTIL_MSG_H

#include <stddef.h>
#include <stdint.h>

/* Identifies one received QoS 1/2 message on its source session until it is acknowledged. */
struct relay_in_ref {
    uint32_t slot; /* index + 1; 0 = nothing to acknowledge */
    uint32_t gen;  /* the slot's generation when the message arrived */
};

struct relay_conn; /* the core's connection: only ever a pointer here */

/* One outgoing PUBLISH; resent from these bytes after a reconnect (DUP set). Owned by the
 * destination session's queues until done. */
struct relay_msg {
    struct relay_msg *next, *prev;
    struct relay_conn *src; /* the connection to acknowledge once delivered, or NULL */
    struct relay_in_ref ref;
    uint32_t src_epoch;  /* src's link epoch when received (orphans: see core/conn.c) */
    uint32_t route;      /* route index, for the counters */
    uint64_t t_in_ms;    /* when the source message arrived */
    uint64_t sent_ms;    /* when last written */
    uint32_t expiry;     /* Message Expiry Interval as received, seconds; 0 = none */
    uint32_t expiry_off; /* offset of its 4 value bytes in data; 0 = none */
    uint32_t pid_off;    /* offset of the packet identifier; 0 for QoS 0 */
    uint32_t len;        /* bytes in data */
    uint32_t nth;        /* the session's: sends before it in the broker's second (rate.h) */
    uint64_t spool_seq;  /* record number in the destination's spool; 0 = not spooled */
    uint16_t pid;        /* 0 until it enters the window */
    uint16_t conn;       /* the pool connection it is for (spool records) */
    uint8_t cache;       /* relay_msg_alloc's size class + 1; 0 = plain malloc */
    uint8_t qos;
    uint8_t state; /* the session's */
    uint8_t data[];
};

/* Why a message was not delivered (counted per route and reason in /metrics). */
enum relay_drop {
    RELAY_DROP_LOOP = 0,
    RELAY_DROP_EXPIRED,
    RELAY_DROP_TOO_LARGE,
    RELAY_DROP_BAD_TOPIC,
    RELAY_DROP_QOS0_OVERFLOW,
    RELAY_DROP_REJECTED, /* the destination refused it (PUBACK/PUBREC reason code >= 0x80 with
                            no reason of its own below: 0x80, 0x91, ...) */
    /* what the destination's PUBACK/PUBREC said (the answer policy, session/outbox.c); the
     * labels are stable (/metrics), and every reason from RELAY_DROP_REJECTED on is a refusal
     * by the destination (core/forward.c leaves their log line to the session) */
    RELAY_DROP_NOT_AUTHORIZED,  /* 0x87 */
    RELAY_DROP_TOPIC_INVALID,   /* 0x90 */
    RELAY_DROP_PAYLOAD_INVALID, /* 0x99 */
    RELAY_DROP__COUNT
};
const char *relay_drop_name(enum relay_drop d);

/* Freed message buffers of two sizes, reused: no malloc/free per forwarded message. */
struct relay_msg_pool {
    struct relay_msg *cache[2];
    uint32_t cached[2];
};

/* A message with room for size bytes of packet, its header zeroed: from the pool for the common
 * sizes. NULL when out of memory. relay_msg_free() puts it back (or frees it); plain free() is
 * also correct for any message. */
struct relay_msg *relay_msg_alloc(struct relay_msg_pool *pool, size_t size);
void relay_msg_free(struct relay_msg_pool *pool, struct relay_msg *m);
/* Frees what the pool keeps. */
void relay_msg_pool_cleanup(struct relay_msg_pool *pool);
/* Frees a list linked by next. */
void relay_msg_free_list(struct relay_msg *m);

/* A reload renumbered the routes: each message of the list (linked by next) names route
 * map[i] instead of i (UINT32_MAX: gone), for i < n_old. */
void relay_msg_remap_routes(struct relay_msg *m, const uint32_t *map, size_t n_old);

/* Doubly linked lists of messages (queues, in-flight lists, waits), by head and tail. */
static inline void relay_msg_unlink(struct relay_msg **head, struct relay_msg **tail,
                                    struct relay_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        *head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        *tail = m->prev;
    m->next = m->prev = NULL;
}

static inline void relay_msg_push_back(struct relay_msg **head, struct relay_msg **tail,
                                       struct relay_msg *m)
{
    m->next = NULL;
    m->prev = *tail;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static inline void relay_msg_push_front(struct relay_msg **head, struct relay_msg **tail,
                                        struct relay_msg *m)
{
    m->prev = NULL;
    m->next = *head;
    if (*head)
        (*head)->prev = m;
    else
        *tail = m;
    *head = m;
}

#endif
