"""Bounded memory: 50,000 QoS 1 messages wait behind a stopped destination.

The destination broker is SIGSTOPped; 50,000 QoS 1 messages of 1 KiB (about 50 MiB in all, so
a relay that buffered them would pass the limit) are published at the source, whose queue for
the relay is unlimited (max_queued_messages 0). The relay's RSS (VmRSS in /proc/PID/status) is
sampled every 50 ms from its start to the end of the drain: it must stay under 64 MiB (SPEC:
with default settings). After SIGCONT all 50,000 arrive (duplicates reported, not failed).

Under AddressSanitizer (detected in the binary) the allocator's shadow and quarantine make RSS
meaningless as an absolute number: the quarantine is cut to 16 MiB and the limit applies to the
growth above the RSS measured once the relay is connected.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

N = 50000
SIZE = 1024
LIMIT_KIB = 64 * 1024


class Sampler(threading.Thread):
    def __init__(self, relay):
        super().__init__(daemon=True)
        self.relay = relay
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            v = self.relay.rss_kib()
            if v is not None:
                self.samples.append(v)
            time.sleep(0.05)

    @property
    def peak(self):
        return max(self.samples) if self.samples else 0


def payload(n):
    head = b"%08d:" % n
    return head + b"x" * (SIZE - len(head))


def asan_binary(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def rss_check(t, asan, baseline, peak, when):
    if asan:
        t.check(peak - baseline < LIMIT_KIB, "relay RSS growth %s: %d KiB < 64 MiB (ASan "
                "build; peak %d KiB)" % (when, peak - baseline, peak))
    else:
        t.check(peak < LIMIT_KIB, "relay RSS peak %s: %d KiB < 64 MiB" % (when, peak))


def run(t):
    t.section("50,000 QoS 1 messages behind a SIGSTOPped destination")
    asan = asan_binary(t.relay_bin)
    src = t.broker("src", log_all=False)
    dst = t.broker("dst", log_all=False)
    relay = t.relay(
        brokers=[{"name": "src", "url": src.url, "version": "5"},
                 {"name": "dst", "url": dst.url, "version": "5"}],
        routes=[{"from": "src", "to": "dst", "filter": "mem/#", "qos": 1}],
        start=False)
    if asan:
        given = os.environ.get("ASAN_OPTIONS", "")
        relay.env = {"ASAN_OPTIONS": (given + ":" if given else "") + "quarantine_size_mb=16"}
        t.note("AddressSanitizer build: quarantine 16 MiB, limit on growth above the baseline")
    relay.start()
    sampler = Sampler(relay)
    sampler.start()
    relay.wait_ready({"src": src, "dst": dst})
    sub = t.client(dst, "5", clean=False).subscribe("mem/#", 1)
    pub = t.client(src, "5", max_inflight=200)
    time.sleep(0.5)
    baseline = relay.rss_kib()
    t.note("relay RSS when connected: %d KiB" % baseline)

    dst.pause()
    for n in range(N):
        pub.publish("mem/%d" % (n % 16), payload(n), 1)
    pub.wait_published(300)  # the source holds all 50,000 for the relay now
    t.note("50,000 messages published and acknowledged by the source")
    relay.check_alive()
    time.sleep(3)  # the backlog sits there while we keep sampling
    during = sampler.peak
    rss_check(t, asan, baseline, during, "with the backlog waiting")
    dst.resume()
    t.note("SIGCONT broker dst")

    def count():
        got = set()
        for m in sub.received():
            got.add(m.payload[:8])
        return len(got)

    rt.wait_until(lambda: count() >= N, 300, 0.5)
    sampler.stop.set()
    sampler.join()
    relay.check_alive()
    got = [m.payload for m in sub.received()]
    distinct = set(got)
    wanted = set(payload(n) for n in range(N))
    missing = wanted - distinct
    t.check(not missing and distinct <= wanted,
            "after SIGCONT all %d messages arrive, byte for byte (%d duplicates)"
            % (N, len(got) - len(distinct)),
            "%d missing, %d unexpected" % (len(missing), len(distinct - wanted)))
    t.say("   duplicates: %d" % (len(got) - len(distinct)))
    peak = sampler.peak
    t.say("   relay RSS: baseline %d KiB, peak %d KiB over %d samples"
          % (baseline, peak, len(sampler.samples)))
    rss_check(t, asan, baseline, peak, "from start to the end of the drain")
    pub.stop()
    sub.stop()
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
