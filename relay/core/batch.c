/* batch.c: the read-batching policy (see batch.h), and the core's count of the waits. */
#include "core/batch.h"
#include "core/internal.h"

void relay_batch_init(struct relay_batch *b, uint32_t max_us)
{
    b->max_us = max_us;
    b->contended = false;
    b->run_ns = b->wait_ns = 0;
}

bool relay_batch_may_wait(const struct relay_batch *b, uint32_t packets, bool round_full)
{
    return b->max_us && packets >= RELAY_BATCH_MIN_PACKETS && !round_full;
}

void relay_batch_sample(struct relay_batch *b, bool ok, uint64_t run_ns, uint64_t wait_ns)
{
    uint64_t run, wait;

    if (!ok) {
        b->contended = false;
        return;
    }
    run = run_ns - b->run_ns;
    wait = wait_ns - b->wait_ns;
    /* on at a quarter, off below a sixteenth: batching itself shortens the waits it reacts to */
    if (!b->run_ns || !run)
        b->contended = false;
    else
        b->contended = wait >= run / (b->contended ? 16 : 4);
    b->run_ns = run_ns;
    b->wait_ns = wait_ns;
}

uint32_t relay_batch_wait_us(const struct relay_batch *b, uint32_t packets, bool round_full)
{
    if (!relay_batch_may_wait(b, packets, round_full) || !b->contended)
        return 0;
    return packets >= b->max_us / RELAY_BATCH_US_PER_PACKET ? b->max_us
                                                            : packets * RELAY_BATCH_US_PER_PACKET;
}

void relay_core_batch_waited(void *core, uint32_t us)
{
    struct relay *r = core;

    r->stats.batch_waits++;
    r->stats.batch_wait_us += us;
}
