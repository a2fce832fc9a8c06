/*
 * batch.h: the read-batching policy (relay.batch_wait_us).
 *
 * Brokers write each PUBLISH on its own, so under load the relay wakes for every few packets,
 * and every wake costs a poll, a read and a write here, and a wake-up and a smaller read in the
 * broker at each end. When CPUs are scarce that overhead is what limits the whole path, so
 * after a round that handled packets (RELAY_BATCH_MIN_PACKETS) the relay lets the next ones
 * gather: the transport flushes what the round produced and then sleeps
 * RELAY_BATCH_US_PER_PACKET per packet handled, at most batch_wait_us. Every read and write
 * then carries many packets, and a message waits at most batch_wait_us more. On a 2-vCPU AMD
 * EPYC VM (~1.3 us a null system call) waiting after every busy round (1 packet, 50 us each)
 * took the relay from 15 to 8 us of CPU per QoS 1 message (3.7 to 2.7 at QoS 0) between two
 * Mosquittos, and the path from 0.90 to 1.02 of Mosquitto's in-broker bridge, with p50 / p99
 * at 5,000 QoS 1 msg/s within the noise (4 to 1 packets, 20 to 50 us: issue 15).
 *
 * It does not wait
 * - after a round that handled nothing (a timer, a write);
 * - when a read filled the transport's buffer: the relay itself is behind;
 * - when the relay gets a CPU whenever it wants one: waiting would only lengthen the round trip
 *   of a source or destination that waits for acknowledgements (a window-bound flow), and save
 *   CPU nobody needs. Contention is the time the relay spent runnable but waiting for a CPU
 *   (/proc/self/schedstat), sampled every RELAY_BATCH_SAMPLE_MS: contended from a quarter of
 *   the time it ran, and until it falls under a sixteenth. Measured: about as long as it ran
 *   between two busy Mosquittos on 2 vCPUs, 2-5 % of it with a core of its own.
 *
 * The transport measures and applies; the decision is here, pure, and unit-tested.
 */
#ifndef RELAY_CORE_BATCH_H
#define RELAY_CORE_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_BATCH_US_PER_PACKET 50u /* wait per packet the last round handled */
#define RELAY_BATCH_SAMPLE_MS 100u    /* how often CPU contention is sampled */
#define RELAY_BATCH_MIN_PACKETS 1u    /* fewer in a round: no wait */

struct relay_batch {
    uint32_t max_us;          /* relay.batch_wait_us: the longest wait; 0 = off */
    bool contended;           /* the relay waited for a CPU in the last sample period */
    uint64_t run_ns, wait_ns; /* the previous sample (cumulative), 0 = none yet */
};

void relay_batch_init(struct relay_batch *b, uint32_t max_us);
/* Whether a round with this many packets (round_full: a read filled the buffer) may wait at
 * all, before contention is looked at: the transport samples only then. */
bool relay_batch_may_wait(const struct relay_batch *b, uint32_t packets, bool round_full);
/* A sample of the process's cumulative run time and run-queue wait time (ns); ok false when
 * they could not be read (then: not contended). */
void relay_batch_sample(struct relay_batch *b, bool ok, uint64_t run_ns, uint64_t wait_ns);
/* How long to sleep (us) after such a round; 0 = read again at once. */
uint32_t relay_batch_wait_us(const struct relay_batch *b, uint32_t packets, bool round_full);

#endif
