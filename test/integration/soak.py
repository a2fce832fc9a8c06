"""Soak: a steady QoS 1 stream through the relay for a long time (30 minutes by default) with
periodic broker restarts; the relay's RSS is sampled every 10 s and must stay flat; every
message must arrive. Not a ctest test (too long for CI): run it by hand and keep the figures.

    SOAK_MINUTES=30 SOAK_RATE=200 SOAK_RESTART_EVERY=120 \\
        /usr/bin/python3 test/integration/soak.py --relay build/relay/mqtt-relay

Setup: Mosquitto src -> relay -> Mosquitto dst, route "soak/#" at QoS 1, both brokers with
persistence. The publisher on src and the subscriber on dst have persistent sessions, so a
broker restart (SIGTERM: Mosquitto saves its state; then start on the same port) loses
nothing on the brokers' side: every message acknowledged by src must reach the subscriber.
Restarts alternate between src and dst every SOAK_RESTART_EVERY seconds.

Figures printed at the end: messages published and received, duplicates, restarts, the
relay's reconnects (from /metrics), RSS first/min/max/last and its trend after a warm-up
(least squares, KiB per hour). Pass: zero loss, the relay alive throughout, and RSS flat: the
mean of the last fifth of the samples within SOAK_RSS_SLACK_KIB (default 4096) of the mean of
the first fifth after the warm-up.
"""
import os
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = float(os.environ.get("SOAK_RATE", "200"))
RESTART_EVERY = float(os.environ.get("SOAK_RESTART_EVERY", "120"))
SAMPLE_EVERY = float(os.environ.get("SOAK_SAMPLE_EVERY", "10"))
WARMUP = float(os.environ.get("SOAK_WARMUP", "60"))
RSS_SLACK_KIB = int(os.environ.get("SOAK_RSS_SLACK_KIB", "4096"))


class Publisher(threading.Thread):
    def __init__(self, client, until):
        super().__init__(daemon=True)
        self.client = client
        self.until = until
        self.n = 0
        self.infos = []
        self.error = None

    def run(self):
        try:
            t0 = time.monotonic()
            while time.monotonic() < self.until:
                self.infos.append(self.client.c.publish("soak/%d" % (self.n % 50),
                                                        str(self.n).encode(), 1))
                self.n += 1
                ahead = self.n / RATE - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as e:  # reported by the main thread
            self.error = e


def metric_sum(port, name):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def trend_kib_per_hour(samples):
    if len(samples) < 3:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [v for _, v in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if not den:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600.0


def run(t):
    t.section("soak: %.0f min at %.0f msg/s (QoS 1), a broker restart every %.0f s"
              % (MINUTES, RATE, RESTART_EVERY))
    src = t.broker("src", persistence=True, log_all=False)
    dst = t.broker("dst", persistence=True, log_all=False)
    port = rt.free_port()
    reconnect = {"min": 250, "max": 2000}
    relay = t.relay(relay={"id": "soak", "metrics": "127.0.0.1:%d" % port},
                    brokers=[{"name": "src", "url": src.url, "version": "5",
                              "reconnect": reconnect},
                             {"name": "dst", "url": dst.url, "version": "5",
                              "reconnect": reconnect}],
                    routes=[{"from": "src", "to": "dst", "filter": "soak/#", "qos": 1}])
    relay.wait_ready({"src": src, "dst": dst})
    sub = t.client(dst, "5", client_id="soak-sub", clean=False,
                   session_expiry=86400).subscribe("soak/#", 1)
    pub = t.client(src, "5", client_id="soak-pub", clean=False, session_expiry=86400,
                   max_inflight=100)
    start = time.monotonic()
    end = start + MINUTES * 60.0
    pt = Publisher(pub, end)
    pt.start()
    samples = []
    restarts = 0
    next_restart = start + RESTART_EVERY
    next_sample = start
    while time.monotonic() < end:
        now = time.monotonic()
        relay.check_alive()
        if now >= next_sample:
            v = relay.rss_kib()
            if v is not None:
                samples.append((now - start, v))
            next_sample += SAMPLE_EVERY
        if now >= next_restart:
            b = src if restarts % 2 == 0 else dst
            t.note("%5.0f s: restart %s (%d published, %d received, RSS %s KiB)"
                   % (now - start, b.name, pt.n, sub.count(), relay.rss_kib()))
            b.restart()
            restarts += 1
            next_restart += RESTART_EVERY
        time.sleep(0.2)
    pt.join(30)
    t.check(pt.error is None, "the publisher ran to the end", repr(pt.error))
    # every publish acknowledged by src (paho keeps what it could not send while src was down
    # and sends it after reconnecting; is_published() raises for those, so read the flag)
    def acked(info):
        with info._condition:
            return info._published
    deadline = time.monotonic() + 300
    while not all(acked(i) for i in pt.infos) and time.monotonic() < deadline:
        time.sleep(0.5)
    unacked = sum(1 for i in pt.infos if not acked(i))
    t.check(unacked == 0, "src acknowledged all %d publishes" % pt.n,
            "%d not acknowledged" % unacked)
    want = set(range(pt.n))

    def got():
        return set(int(m.payload) for m in sub.received())
    rt.wait_until(lambda: want <= got(), 300, 1.0)
    received = sub.received()
    missing = want - got()
    dups = len(received) - len(got())
    relay.check_alive()
    after = [(x, v) for x, v in samples if x >= WARMUP]
    fifth = max(1, len(after) // 5)
    first = sum(v for _, v in after[:fifth]) / fifth if after else 0
    last = sum(v for _, v in after[-fifth:]) / fifth if after else 0
    reconnects = metric_sum(port, "mqtt_relay_reconnects_total")
    t.say("\n   soak figures")
    t.say("   duration            %.1f min, %d broker restarts (src and dst alternately)"
          % ((time.monotonic() - start) / 60.0, restarts))
    t.say("   published (QoS 1)   %d at %.0f msg/s" % (pt.n, RATE))
    t.say("   received            %d distinct, %d duplicates, %d missing"
          % (len(got()), dups, len(missing)))
    t.say("   relay reconnects    %s" % (int(reconnects) if reconnects is not None else "?"))
    if samples:
        vals = [v for _, v in samples]
        t.say("   RSS KiB             first %d, min %d, max %d, last %d (%d samples every "
              "%.0f s)" % (vals[0], min(vals), max(vals), vals[-1], len(vals), SAMPLE_EVERY))
        t.say("   RSS after warm-up   first fifth %.0f, last fifth %.0f, trend %+.0f KiB/h"
              % (first, last, trend_kib_per_hour(after)))
    t.check(not missing, "zero loss at QoS 1 (%d messages, %d duplicates)" % (pt.n, dups),
            "%d missing, e.g. %s" % (len(missing), sorted(missing)[:20]))
    t.check(abs(last - first) <= RSS_SLACK_KIB,
            "RSS flat: last fifth %.0f KiB vs first fifth %.0f KiB (slack %d KiB)"
            % (last, first, RSS_SLACK_KIB))
    pub.stop()
    sub.stop()
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
