"""Store and forward (SPEC "Store and forward", issue 5): a destination broker with a spool.

Every scenario has a Mosquitto source "src" (log_type all: its log shows each PUBLISH it sends
to the relay and each PUBACK it gets back, which is how the tests see what the relay
acknowledged), a destination "dst" with `spool = { dir; max_size; }` in the relay's
configuration, and a subscriber on dst whose persistent session was saved before dst was
stopped, so dst queues for it whatever the relay delivers, whenever dst comes back.

(1) 100,000 QoS 1 messages (256-byte numbered payloads over 20 topics) while dst is down; the
    relay is SIGKILLed when about 40% are spooled and restarted. Once the publisher has all its
    PUBACKs from src and src's log shows every message sent to the relay and acknowledged by it
    (nothing outstanding), src is SIGKILLed (no persistence: it forgets everything) and only
    then dst started: whatever reaches the subscriber came from the spool. Asserted: every
    number arrives; per topic, the sequence of first arrivals is increasing; duplicates (what
    the relay had spooled but not yet acknowledged when it was killed, spooled again when src
    redelivered it) are printed. The spool metrics then drain to 0 messages.

(2) The journal truncated at random offsets. 3,000 messages are spooled with dst down (the
    spool metrics checked against the files: messages equals what is held, bytes equals the
    segment files' sizes, oldest age grows, fsyncs between 1 and the number of messages), the
    relay SIGKILLed, the segment files parsed here (the record layout in relay/store/spool.c), and for
    several cuts of the LAST segment (inside a header, inside a payload, on a record boundary,
    at 0, and uniformly random ones; seed printed, SPOOL_TEST_SEED to repeat) a copy of the
    directory is truncated and a relay started on it. What is guaranteed: every record that
    lies entirely before the cut (and every record of the earlier segments) is delivered, and
    nothing else of the journal (the rest is gone from the disk). Asserted exactly, as sets of
    numbers; the log must say "recovered K messages" with K the number of complete records
    held, and "dropped ... offset P" with P the start of the torn record when the cut is inside
    one. Messages published after the recovery are then spooled behind it and delivered too.

(3) A full spool (max_size 2 MiB, 8 KiB payloads, 600 messages) stops the source: the relay's
    PUBACKs to src stop while src still has messages for it (its log: PUBLISHes without
    PUBACK), the journal holds every number the relay acknowledged (acknowledged only once
    spooled), and spool_bytes stays within max_size. dst back: everything arrives and src has
    nothing outstanding.

(4) A full disk (a 1 MiB tmpfs under a spool whose max_size is larger): the write error is
    logged and counted, nothing is acknowledged that is not in the journal, and once dst is
    back and the journal drains everything arrives. Skipped (with a note) where tmpfs cannot
    be mounted.

(5) An unusable spool directory: a path under a regular file, an immutable directory (chattr
    +i, when available), a directory another relay holds: the relay refuses to start with exit
    status 2 and a line naming the directory and the reason, and never connects to src (so it
    acknowledges nothing).

(6) dst SIGSTOPped in the middle of 5,000 messages (its socket open, nothing answered): src's
    log shows every message acknowledged by the relay while dst is stopped; after SIGCONT all
    arrive, first arrivals in order per topic.

(7) The spool directory made immutable (chattr +i) while the relay runs and dst is down: the
    error creating the next segment is logged, nothing is acknowledged that is not in the
    journal, and after chattr -i the rest is spooled and acknowledged, then delivered.

(8) SIGHUP while dst is down and the spool holds 100 messages of route ra and 50 of rb: the new
    file removes ra and adds rc (so the routes are numbered differently). Every spooled message
    still arrives (they were acknowledged to the source: removing a route must not lose them),
    and forwarded_total counts rb's 50 for rb, none for rc.

Every scenario runs even when an earlier one failed; the test fails at the end with the list.
SPOOL_TEST_ONLY=unusable,truncated,stopped,immutable,disk_full,reload,100k,full runs only those.
"""
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

# ----------------------------------------------------------------------------------------------
# what the source broker's log says about the relay's session


class SourceLog:
    """Follows a Mosquitto log (log_type all) as it grows: the PUBLISHes src sends to client id
    cid and the PUBACKs it gets back. outstanding: packet ids sent and not acknowledged (a resend
    after a reconnect uses the same id); first_sends: PUBLISHes sent with DUP 0 (each message
    once); acked_topics: the topic of each acknowledged PUBLISH, in order."""

    SEND = re.compile(rb"Sending PUBLISH to (\S+) \(d([01]), q[12], r[01], m(\d+), '([^']*)'")
    ACK = re.compile(rb"Received PUBACK from (\S+) \(Mid: (\d+)")

    def __init__(self, broker, cid):
        self.broker = broker
        self.cid = cid.encode()
        self.path = broker.log_paths[-1]
        self.off = 0
        self.rest = b""
        self.outstanding = {}
        self.first_sends = 0
        self.sends = 0
        self.acks = 0
        self.acked_topics = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self
        self.off += len(data)
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            m = self.SEND.search(line)
            if m and m.group(1) == self.cid:
                self.sends += 1
                if m.group(2) == b"0":
                    self.first_sends += 1
                self.outstanding[int(m.group(3))] = m.group(4)
                continue
            m = self.ACK.search(line)
            if m and m.group(1) == self.cid:
                self.acks += 1
                topic = self.outstanding.pop(int(m.group(2)), None)
                if topic is not None:
                    self.acked_topics.append(topic)
        return self

    def summary(self):
        return ("src sent %d PUBLISHes to %s (%d first sends), got %d PUBACKs, %d outstanding"
                % (self.sends, self.cid.decode(), self.first_sends, self.acks,
                   len(self.outstanding)))


def wait_subscribed(t, relay, src, cid, filt, timeout=20):
    """Bounded wait until src's log shows cid's subscription to filt (dst may be down, so
    Relay.wait_ready, which wants the destination connected too, does not apply)."""
    def ok():
        relay.check_alive()
        return any(s[0] == cid and s[2] == filt for s in src.subscriptions())
    if not rt.wait_until(ok, timeout, 0.1):
        raise rt.Failure("src's log shows no SUBSCRIBE %s from %s after %ss" % (filt, cid,
                                                                                timeout))


def prepared_destination(t, name, filt):
    """dst with persistence and a subscriber whose session (subscription filt, QoS 1) is saved,
    then dst stopped: while dst is down the subscriber's paho thread keeps retrying, and once dst
    is back it queues everything for that session from the first message on."""
    dst = t.broker(name, persistence=True, log_all=False)
    sub = t.client(dst, "5", clean=False, session_expiry=3600).subscribe(filt, 1)
    dst.stop()
    t.note("%s stopped with the subscriber's session saved" % name)
    return dst, sub


def spool_metrics(port, broker="dst"):
    ms = rt.get_metrics(port)
    return {k: rt.metric(ms, "mqtt_relay_spool_" + k, broker=broker)
            for k in ("bytes", "messages", "oldest_age_seconds", "fsyncs_total",
                      "write_errors_total")}


def pad(prefix, size):
    return prefix + b"." * max(0, size - len(prefix))


# ----------------------------------------------------------------------------------------------
# the journal's files (layout: relay/store/spool.c)

REC = struct.Struct("<IIIIQQIIIIIBBH")  # 56 bytes
REC_MAGIC = 0x4D515253


def segments(d):
    return sorted(f for f in os.listdir(d) if re.match(r"^seg-[0-9a-f]{16}\.log$", f))


def parse_segment(path, marker):
    """[(start, end, seq, number)] for the complete records at the start of the file (number:
    the integer after marker in the record's data), and the file's size."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = 0
    pat = re.compile(re.escape(marker) + rb"(\d+);")
    while off + REC.size <= len(data):
        magic, _hcrc, ln, _dcrc, seq = REC.unpack_from(data, off)[:5]
        end = off + REC.size + ln
        if magic != REC_MAGIC or end > len(data):
            break
        m = pat.search(data, off + REC.size, end)
        out.append((off, end, seq, int(m.group(1)) if m else None))
        off = end
    return out, len(data)


def journal_numbers(d, marker):
    nums = []
    for s in segments(d):
        recs, _ = parse_segment(os.path.join(d, s), marker)
        nums += [r[3] for r in recs]
    return nums


def numbers_of(msgs, marker):
    pat = re.compile(re.escape(marker) + rb"(\d+);")
    out = []
    for m in msgs:
        mm = pat.match(m.payload)
        if mm:
            out.append(int(mm.group(1)))
    return out


class Publisher(threading.Thread):
    """Publishes (topic, payload) pairs at QoS 1 as fast as paho goes; done once all are
    queued, complete once src acknowledged each (wait_published)."""

    def __init__(self, client, items):
        super().__init__(daemon=True)
        self.client = client
        self.items = items
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            for topic, payload in self.items:
                while True:
                    info = self.client.c.publish(topic, payload, 1)
                    if info.rc != rt.mqtt.MQTT_ERR_QUEUE_SIZE:
                        break
                    # paho's packet ids wrap at 65535: wait until the oldest are acknowledged
                    time.sleep(0.01)
                if info.rc != rt.mqtt.MQTT_ERR_SUCCESS:
                    raise rt.Failure("publish to %r failed (rc %s)" % (topic, info.rc))
                self.client.pending.append(info)
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            self.done.set()


def relay_config(src, dst, spool_dir, max_size, filt, rid="sp"):
    return dict(
        relay={"id": rid},
        brokers=[{"name": "src", "url": src.url, "reconnect": {"min": 100, "max": 1000}},
                 {"name": "dst", "url": dst.url, "reconnect": {"min": 100, "max": 1000},
                  "spool": {"dir": spool_dir, "max_size": max_size}}],
        routes=[{"from": "src", "to": "dst", "filter": filt, "qos": 1}])


def start_spooled_relay(t, name, src, dst, spool_dir, max_size, filt, metrics_port, rid="sp",
                        start=True):
    cfg = relay_config(src, dst, spool_dir, max_size, filt, rid)
    cfg["relay"]["metrics"] = "127.0.0.1:%d" % metrics_port
    r = t.relay(name=name, start=start, **cfg)
    return r


# ----------------------------------------------------------------------------------------------
# (1) 100,000 messages, relay SIGKILLed in the middle

N1 = 100000
TOPICS1 = 20


def scenario_100k(t):
    t.section("(1) dst down, %d QoS 1 messages over %d topics, relay SIGKILLed in the middle"
              % (N1, TOPICS1))
    src = t.broker("src1")
    dst, sub = prepared_destination(t, "dst1", "big/#")
    mport = rt.free_port()
    relay = start_spooled_relay(t, "relay1", src, dst, "spool", 1 << 30, "big/#", mport)
    cid = relay.client_ids("src")[0]
    wait_subscribed(t, relay, src, cid, "big/#")
    slog = SourceLog(src, cid)

    items = [("big/%d" % (n % TOPICS1), pad(b"n:%d;" % n, 256)) for n in range(N1)]
    pub = t.client(src, "5", max_inflight=200)
    pt = Publisher(pub, items)
    t0 = time.monotonic()
    pt.start()

    def spooled():
        relay.check_alive()
        try:
            return spool_metrics(mport)["messages"]
        except OSError:
            return 0
    at = int(N1 * 0.4)
    if not rt.wait_until(lambda: spooled() >= at, 300, 0.1):
        raise rt.Failure("the spool did not reach %d messages (holds %s; %s)"
                         % (at, spooled(), slog.poll().summary()))
    held = spooled()
    t.note("%d messages spooled after %.1fs; %s" % (held, time.monotonic() - t0,
                                                   slog.poll().summary()))
    relay.kill()
    relay.start()
    t.check(pt.done.wait(300) and pt.error is None, "the publisher queued all %d" % N1,
            repr(pt.error))
    pub.wait_published(300)
    t.check(True, "the publisher got src's PUBACK for all %d (dst never started yet)" % N1)

    def all_acked():
        relay.check_alive()
        slog.poll()
        return slog.first_sends >= N1 and not slog.outstanding
    ok = rt.wait_until(all_acked, 600, 0.25)
    t.check(ok, "src's log: all %d messages sent to the relay and every PUBLISH acknowledged by "
            "it while dst is down (%s)" % (N1, slog.summary()))
    sm = spool_metrics(mport)
    t.note("spool after all were acknowledged: %d messages, %d bytes, %d fsyncs (%.1f messages "
           "per fsync), oldest %.1fs" % (sm["messages"], sm["bytes"], sm["fsyncs_total"],
                                         sm["messages"] / max(1, sm["fsyncs_total"]),
                                         sm["oldest_age_seconds"]))
    t.check(sm["messages"] >= N1, "mqtt_relay_spool_messages %d >= %d (duplicates of what was "
            "spooled but not yet acknowledged at the kill may be held twice)"
            % (sm["messages"], N1))
    rec = [l for l in relay.log_lines(current_only=True) if "recovered" in l]
    t.check(bool(rec) and re.search(r"recovered (\d+) messages", rec[0])
            and int(re.search(r"recovered (\d+) messages", rec[0]).group(1)) >= held,
            "the restarted relay recovered at least the %d messages held before the kill" % held,
            "its log: %s" % (rec or relay.log_lines(current_only=True)[:10]))
    t.note(rec[0])

    src.kill()
    t.note("SIGKILL src (no persistence): from now on only the spool holds the messages")
    dst.start()
    t.note("dst started after %.1fs" % (time.monotonic() - t0))

    def distinct():
        relay.check_alive()
        return len(set(numbers_of(sub.received(), b"n:")))
    ok = rt.wait_until(lambda: distinct() >= N1, 900, 0.5)
    got = numbers_of(sub.received(), b"n:")
    missing = set(range(N1)) - set(got)
    dups = len(got) - len(set(got))
    t.check(ok and not missing, "every one of the %d numbers arrived (%d duplicates)"
            % (N1, dups), "%d missing, e.g. %s" % (len(missing), sorted(missing)[:20]))
    bad = []
    for k in range(TOPICS1):
        firsts = rt.first_occurrence_order(
            [m for m in sub.received() if m.topic == b"big/%d" % k])
        nums = [int(p.split(b";")[0][2:]) for p in firsts]
        if nums != sorted(nums):
            i = next(i for i in range(1, len(nums)) if nums[i] < nums[i - 1])
            bad.append("big/%d: %d after %d" % (k, nums[i], nums[i - 1]))
    t.check(not bad, "per topic, first arrivals in publish order (%d topics)" % TOPICS1,
            "; ".join(bad[:5]))
    t.say("   duplicates (1) 100k with relay SIGKILL: %d (held in the spool at the kill: %d)"
          % (dups, held))
    ok = rt.wait_until(lambda: spool_metrics(mport)["messages"] == 0, 60, 0.2)
    sm = spool_metrics(mport)
    t.check(ok and sm["oldest_age_seconds"] == 0,
            "the spool drained: 0 messages, oldest age 0 (bytes now %d)" % sm["bytes"],
            repr(sm))
    relay.stop()
    sub.stop()
    pub.stop()
    dst.stop()


# ----------------------------------------------------------------------------------------------
# (2) the journal truncated

N2 = 3000


def scenario_truncated(t):
    t.section("(2) the last segment truncated at random offsets")
    seed = int(os.environ.get("SPOOL_TEST_SEED") or time.time())
    rnd = random.Random(seed)
    t.note("random seed %d (SPOOL_TEST_SEED=%d repeats it)" % (seed, seed))
    src = t.broker("src2")
    dst, _ = prepared_destination(t, "dst2", "tr/#")
    mport = rt.free_port()
    max_size = 8 << 20  # segments of max_size / 8 = 1 MiB: 3,000 records of ~480 bytes make two
    relay = start_spooled_relay(t, "relay2", src, dst, "spool", max_size, "tr/#", mport)
    cid = relay.client_ids("src")[0]
    wait_subscribed(t, relay, src, cid, "tr/#")
    slog = SourceLog(src, cid)
    pub = t.client(src, "5", max_inflight=200)
    for n in range(N2):
        pub.publish("tr/%d" % (n % 10), pad(b"tr:%d;" % n, 400), 1)
    pub.wait_published(120)
    t0 = time.monotonic()
    ok = rt.wait_until(lambda: slog.poll().acks >= N2 and not slog.outstanding, 120, 0.1)
    t.check(ok, "src's log: the relay acknowledged all %d while dst is down (%s)"
            % (N2, slog.summary()))

    sdir = os.path.join(relay.dir, "spool")
    files = segments(sdir)
    sm = spool_metrics(mport)
    total = sum(os.path.getsize(os.path.join(sdir, f)) for f in files)
    t.check(sm["messages"] == N2, "metrics: mqtt_relay_spool_messages = %d, what is held"
            % sm["messages"])
    t.check(sm["bytes"] == total, "metrics: mqtt_relay_spool_bytes = %d, the size of the %d "
            "segment files" % (sm["bytes"], len(files)), "files hold %d bytes" % total)
    t.check(1 <= sm["fsyncs_total"] < N2, "metrics: mqtt_relay_spool_fsyncs_total = %d, fewer "
            "than the %d messages (group commit: %.1f per fsync)"
            % (sm["fsyncs_total"], N2, N2 / max(1, sm["fsyncs_total"])))
    age1 = sm["oldest_age_seconds"]
    time.sleep(1.5)
    age2 = spool_metrics(mport)["oldest_age_seconds"]
    elapsed = time.monotonic() - t0
    t.check(0 < age1 < age2 and age2 - age1 >= 1.0,
            "metrics: mqtt_relay_spool_oldest_age_seconds grows with time (%.2f, then %.2f "
            "1.5s later)" % (age1, age2))
    t.check(age2 < elapsed + 120, "oldest age %.1fs is not older than the test" % age2)
    relay.kill()

    # what the files hold
    t.check(len(files) >= 2, "the journal has %d segment files (the cut goes into the last)"
            % len(files), repr(files))
    recs = {f: parse_segment(os.path.join(sdir, f), b"tr:") for f in files}
    nums = [r[3] for f in files for r in recs[f][0]]
    t.check(sorted(nums) == list(range(N2)),
            "the journal holds each of the %d numbers the relay acknowledged exactly once" % N2,
            "%d records, %d distinct" % (len(nums), len(set(nums))))
    last = files[-1]
    last_recs, last_size = recs[last]
    earlier = [r[3] for f in files[:-1] for r in recs[f][0]]
    t.check(last_recs[-1][1] == last_size, "the last segment ends with a complete record")

    # the cuts: (label, offset)
    r = rnd.choice(last_recs[1:])
    cuts = [("inside a header", r[0] + rnd.randrange(1, REC.size))]
    r = rnd.choice(last_recs)
    cuts.append(("inside a record's data", r[0] + REC.size + rnd.randrange(0, r[1] - r[0]
                                                                            - REC.size)))
    cuts.append(("on a record boundary", rnd.choice(last_recs[1:])[0]))
    cuts.append(("at 0 (an empty last segment)", 0))
    cuts.append(("one byte short of the end", last_size - 1))
    for _ in range(2):
        cuts.append(("uniformly random", rnd.randrange(0, last_size)))

    fence_base = 1000000
    for k, (what, cut) in enumerate(cuts):
        complete = [x for x in last_recs if x[1] <= cut]
        torn = next((x for x in last_recs if x[0] < cut < x[1]), None)
        expect = set(earlier) | {x[3] for x in complete}
        t.note("cut %d: %s, offset %d of %d in %s: %d complete records before it%s"
               % (k + 1, what, cut, last_size, last, len(complete),
                  ", record at %d torn" % torn[0] if torn else ""))
        d2 = t.broker("dst2-cut%d" % (k + 1), log_all=False)
        sub = t.client(d2, "5").subscribe("tr/#", 1)
        cfg = relay_config(src, d2, "spool", max_size, "tr/#")
        rl = t.relay(name="relay2-cut%d" % (k + 1), start=False, **cfg)
        cdir = os.path.join(rl.dir, "spool")
        shutil.copytree(sdir, cdir)
        os.truncate(os.path.join(cdir, last), cut)
        rl.start()
        rl.wait_ready({"src": src, "dst": d2})
        fence = [fence_base * (k + 1) + i for i in range(20)]
        for n in fence:
            pub.publish("tr/new", pad(b"tr:%d;" % n, 100), 1)
        pub.wait_published(60)
        want = expect | set(fence)
        ok = rt.wait_until(lambda: set(numbers_of(sub.received(), b"tr:")) >= want
                           or not rl.running(), 120, 0.2)
        rl.check_alive()
        got = numbers_of(sub.received(), b"tr:")
        gs = set(got)
        t.check(ok and gs == want,
                "cut %d: exactly the %d complete records arrive, then the %d published after "
                "the restart (%d duplicates)" % (k + 1, len(expect), len(fence),
                                                 len(got) - len(gs)),
                "missing %d e.g. %s; unexpected %d e.g. %s"
                % (len(want - gs), sorted(want - gs)[:10], len(gs - want),
                   sorted(gs - want)[:10]))
        log = rl.log_lines()
        recov = [l for l in log if re.search(r"recovered \d+ messages", l)]
        held = int(re.search(r"recovered (\d+) messages", recov[0]).group(1)) if recov else None
        t.check(held == len(expect), "cut %d: the log says it recovered %d messages"
                % (k + 1, len(expect)), "its lines: %s" % (recov or log[:8]))
        if torn is not None:
            dropped = [l for l in log if "dropped" in l and last in l]
            t.check(any(re.search(r"offset %d\b" % torn[0], l) for l in dropped),
                    "cut %d: the log names the torn record dropped at offset %d: %s"
                    % (k + 1, torn[0], dropped[0] if dropped else None),
                    "its lines: %s" % log[:10])
        elif cut == 0:
            t.check(any(last[4:20] in l and "no valid record" in l for l in log),
                    "cut %d: the log says the empty last segment was removed" % (k + 1),
                    "its lines: %s" % log[:10])
        else:
            t.check(not any("dropped" in l for l in log),
                    "cut %d: on a record boundary nothing is said to be dropped" % (k + 1),
                    "its lines: %s" % log[:10])
        rl.stop()
        sub.stop()
        d2.stop()
    pub.stop()


# ----------------------------------------------------------------------------------------------
# (3) a full spool, (4) a full disk

def held_back(t, relay, slog, mport, n, what):
    """Bounded wait until the relay's PUBACKs to src stop coming while src still has messages for
    it: the count is unchanged over 3 s, with PUBLISHes outstanding. Returns the count."""
    last = [-1, time.monotonic()]

    def stable():
        relay.check_alive()
        slog.poll()
        now = time.monotonic()
        if slog.acks != last[0]:
            last[0], last[1] = slog.acks, now
            return False
        return now - last[1] >= 3.0 and slog.acks < n and slog.outstanding
    ok = rt.wait_until(stable, 120, 0.2)
    t.check(ok, "%s: the relay's PUBACKs to src stopped at %d of %d with %d PUBLISHes outstanding "
            "at src (%s)" % (what, slog.acks, n, len(slog.outstanding), slog.summary()))
    return slog.acks


def scenario_full(t):
    n = 600
    max_size = 2 << 20
    t.section("(3) a full spool (max_size %d, %d messages of 8 KiB) holds the source back"
              % (max_size, n))
    src = t.broker("src3")
    dst, sub = prepared_destination(t, "dst3", "fs/#")
    mport = rt.free_port()
    relay = start_spooled_relay(t, "relay3", src, dst, "spool", max_size, "fs/#", mport)
    cid = relay.client_ids("src")[0]
    wait_subscribed(t, relay, src, cid, "fs/#")
    slog = SourceLog(src, cid)
    pub = t.client(src, "5")
    for i in range(n):
        pub.publish("fs/%d" % i, pad(b"fs:%d;" % i, 8192), 1)
    pub.wait_published(60)
    acks = held_back(t, relay, slog, mport, n, "full spool")
    sm = spool_metrics(mport)
    sdir = os.path.join(relay.dir, "spool")
    jn = journal_numbers(sdir, b"fs:")
    acked = {int(tp.split(b"/")[1]) for tp in slog.acked_topics}
    t.check(acked <= set(jn), "every number the relay acknowledged is in the journal (%d acked, "
            "%d records)" % (len(acked), len(jn)),
            "acknowledged, not in the journal: %s" % sorted(acked - set(jn))[:10])
    t.check(sm["messages"] == acks == len(jn), "mqtt_relay_spool_messages %d = PUBACKs %d = "
            "journal records %d" % (sm["messages"], acks, len(jn)))
    t.check(sm["bytes"] <= max_size, "mqtt_relay_spool_bytes %d within max_size %d"
            % (sm["bytes"], max_size))
    ms = rt.get_metrics(mport)
    t.note("mqtt_relay_rx_paused{broker=\"src\"} = %s"
           % rt.metric(ms, "mqtt_relay_rx_paused", broker="src"))
    dst.start()
    t.note("dst started")
    ok = rt.wait_until(lambda: set(numbers_of(sub.received(), b"fs:")) >= set(range(n))
                       or not relay.running(), 120, 0.2)
    relay.check_alive()
    got = numbers_of(sub.received(), b"fs:")
    if not ok:
        ms = rt.get_metrics(mport)
        detail = ("%d missing, e.g. %s; %s; relay: received %d, forwarded %d, "
                  "rx_paused{src} %d, spool %s"
                  % (len(set(range(n)) - set(got)), sorted(set(range(n)) - set(got))[:20],
                     slog.poll().summary(),
                     rt.metric(ms, "mqtt_relay_messages_received_total"),
                     rt.metric(ms, "mqtt_relay_messages_forwarded_total"),
                     rt.metric(ms, "mqtt_relay_rx_paused", broker="src"),
                     spool_metrics(mport)))
    t.check(ok, "dst back: all %d arrive (%d duplicates)" % (n, len(got) - len(set(got))),
            detail if not ok else None)
    ok = rt.wait_until(lambda: not slog.poll().outstanding and slog.first_sends >= n, 60, 0.2)
    t.check(ok, "src has nothing outstanding for the relay (%s)" % slog.summary())
    relay.stop()
    sub.stop()
    pub.stop()
    dst.stop()


def scenario_disk_full(t):
    n = 300
    t.section("(4) a full disk under the spool: a 1 MiB tmpfs, max_size 4 MiB, %d x 8 KiB" % n)
    mnt = os.path.join(t.tmp, "tmpfs")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt],
                       capture_output=True)
    if p.returncode != 0:
        t.note("SKIPPED: cannot mount a tmpfs here (%s)" % p.stderr.decode().strip())
        return
    try:
        src = t.broker("src4")
        dst, sub = prepared_destination(t, "dst4", "df/#")
        mport = rt.free_port()
        sdir = os.path.join(mnt, "spool")
        relay = start_spooled_relay(t, "relay4", src, dst, sdir, 4 << 20, "df/#", mport)
        cid = relay.client_ids("src")[0]
        wait_subscribed(t, relay, src, cid, "df/#")
        slog = SourceLog(src, cid)
        pub = t.client(src, "5")
        for i in range(n):
            pub.publish("df/%d" % i, pad(b"df:%d;" % i, 8192), 1)
        pub.wait_published(60)
        held_back(t, relay, slog, mport, n, "full disk")
        sm = spool_metrics(mport)
        jn = journal_numbers(sdir, b"df:")
        acked = {int(tp.split(b"/")[1]) for tp in slog.acked_topics}
        t.check(acked <= set(jn), "every number the relay acknowledged is in the journal (%d "
                "acked, %d records)" % (len(acked), len(jn)),
                "acknowledged, not in the journal: %s" % sorted(acked - set(jn))[:10])
        t.check(sm["write_errors_total"] > 0, "mqtt_relay_spool_write_errors_total = %d"
                % sm["write_errors_total"])
        errs = [l for l in relay.log_lines() if " ERROR " in l and "spool" in l]
        t.check(any("No space left" in l for l in errs),
                "the relay logs the disk error: %s" % (errs[0] if errs else None),
                "its log: %s" % relay.log_lines()[-10:])
        dst.start()
        t.note("dst started")
        ok = rt.wait_until(lambda: set(numbers_of(sub.received(), b"df:")) >= set(range(n))
                           or not relay.running(), 180, 0.2)
        relay.check_alive()
        got = numbers_of(sub.received(), b"df:")
        t.check(ok, "dst back: all %d arrive (%d duplicates)" % (n, len(got) - len(set(got))),
                "missing %d, e.g. %s; spool %s; %s"
                % (len(set(range(n)) - set(got)), sorted(set(range(n)) - set(got))[:20],
                   spool_metrics(mport), slog.poll().summary()))
        t.check(any("works again" in l for l in relay.log_lines()),
                "the relay logs that writing works again")
        relay.stop()
        sub.stop()
        pub.stop()
        dst.stop()
    finally:
        for x in t.things:
            if isinstance(x, rt.Relay) and x.running():
                x.kill()
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def scenario_stopped(t):
    n = 5000
    t.section("(6) dst SIGSTOPped in the middle of %d QoS 1 messages: the spool keeps "
              "acknowledging" % n)
    src = t.broker("src6")
    dst = t.broker("dst6", log_all=False)
    mport = rt.free_port()
    relay = start_spooled_relay(t, "relay6", src, dst, "spool", 64 << 20, "st/#", mport)
    relay.wait_ready({"src": src, "dst": dst})
    sub = t.client(dst, "5").subscribe("st/#", 1)
    slog = SourceLog(src, relay.client_ids("src")[0])
    pub = t.client(src, "5")
    for i in range(1000):
        pub.publish("st/%d" % (i % 10), pad(b"st:%d;" % i, 200), 1)
    pub.wait_published(60)
    ok = rt.wait_until(lambda: len(set(numbers_of(sub.received(), b"st:"))) >= 1000, 60, 0.1)
    t.check(ok, "the first 1000 arrive while dst runs")
    dst.pause()
    for i in range(1000, n):
        pub.publish("st/%d" % (i % 10), pad(b"st:%d;" % i, 200), 1)
    pub.wait_published(60)
    ok = rt.wait_until(lambda: relay.check_alive() or (slog.poll().first_sends >= n
                                                       and not slog.outstanding), 120, 0.2)
    sm = spool_metrics(mport)
    t.check(ok, "dst stopped: src's log shows all %d sent to the relay and acknowledged (%s); "
            "the spool holds %d" % (n, slog.summary(), sm["messages"]))
    t.check(sm["messages"] >= n - 1000 - 200, "mqtt_relay_spool_messages %d: what dst has not "
            "acknowledged" % sm["messages"])
    dst.resume()
    t.note("SIGCONT dst")
    ok = rt.wait_until(lambda: set(numbers_of(sub.received(), b"st:")) >= set(range(n))
                       or not relay.running(), 180, 0.2)
    relay.check_alive()
    got = numbers_of(sub.received(), b"st:")
    t.check(ok, "all %d arrive (%d duplicates)" % (n, len(got) - len(set(got))),
            "missing %d, e.g. %s" % (len(set(range(n)) - set(got)),
                                     sorted(set(range(n)) - set(got))[:20]))
    bad = []
    for k in range(10):
        firsts = rt.first_occurrence_order([m for m in sub.received()
                                            if m.topic == b"st/%d" % k])
        nums = numbers_of([rt.Msg(b"", p, 1, False, {}, False) for p in firsts], b"st:")
        if nums != sorted(nums):
            bad.append("st/%d" % k)
    t.check(not bad, "per topic, first arrivals in publish order", repr(bad))
    t.say("   duplicates (6) dst SIGSTOP: %d" % (len(got) - len(set(got))))
    relay.stop()
    sub.stop()
    pub.stop()


def scenario_immutable_at_run_time(t):
    n = 150
    t.section("(7) the spool directory made immutable (chattr +i) while the relay runs")
    src = t.broker("src7")
    dst, sub = prepared_destination(t, "dst7", "im/#")
    mport = rt.free_port()
    # max_size 1 MiB (the least): segments of 128 KiB, a new file every ~32 messages of 4 KB,
    # and 150 of them (600 KB) do not fill it
    relay = start_spooled_relay(t, "relay7", src, dst, "spool", 1 << 20, "im/#", mport)
    cid = relay.client_ids("src")[0]
    wait_subscribed(t, relay, src, cid, "im/#")
    sdir = os.path.join(relay.dir, "spool")
    slog = SourceLog(src, cid)
    pub = t.client(src, "5")
    first = 40
    for i in range(first):
        pub.publish("im/%d" % i, pad(b"im:%d;" % i, 4000), 1)
    pub.wait_published(60)
    ok = rt.wait_until(lambda: relay.check_alive() or (slog.poll().acks >= first
                                                       and not slog.outstanding), 60, 0.1)
    t.check(ok, "the first %d are spooled and acknowledged (%s)" % (first, slog.summary()))
    p = subprocess.run(["chattr", "+i", sdir], capture_output=True)
    if p.returncode != 0:
        t.note("SKIPPED: no chattr +i here (%s)" % p.stderr.decode().strip())
        relay.stop()
        return
    try:
        for i in range(first, n):
            pub.publish("im/%d" % i, pad(b"im:%d;" % i, 4000), 1)
        pub.wait_published(60)
        held_back(t, relay, slog, mport, n, "immutable directory")
        jn = journal_numbers(sdir, b"im:")
        acked = {int(tp.split(b"/")[1]) for tp in slog.acked_topics}
        t.check(acked <= set(jn), "every number the relay acknowledged is in the journal (%d "
                "acked, %d records)" % (len(acked), len(jn)),
                "acknowledged, not in the journal: %s" % sorted(acked - set(jn))[:10])
        errs = [l for l in relay.log_lines() if " ERROR " in l and "spool" in l]
        t.check(any("Operation not permitted" in l or "Permission denied" in l for l in errs),
                "the relay logs the error: %s" % (errs[0] if errs else None),
                "its log: %s" % relay.log_lines()[-10:])
    finally:
        subprocess.run(["chattr", "-i", sdir], capture_output=True)
    t.note("chattr -i")
    ok = rt.wait_until(lambda: relay.check_alive() or (slog.poll().acks >= n
                                                       and not slog.outstanding), 60, 0.2)
    t.check(ok, "writable again: the relay spools and acknowledges the rest while dst is still "
            "down (%s)" % slog.summary())
    dst.start()
    ok = rt.wait_until(lambda: set(numbers_of(sub.received(), b"im:")) >= set(range(n))
                       or not relay.running(), 120, 0.2)
    relay.check_alive()
    got = numbers_of(sub.received(), b"im:")
    t.check(ok, "dst back: all %d arrive (%d duplicates)" % (n, len(got) - len(set(got))),
            "missing %s" % sorted(set(range(n)) - set(got))[:20])
    relay.stop()
    sub.stop()
    pub.stop()


def scenario_reload(t):
    t.section("(8) SIGHUP while the spool holds messages: a route removed, one added")
    src = t.broker("src8", log_all=False)
    dst, sub = prepared_destination(t, "dst8", "#")
    mport = rt.free_port()
    cfg = relay_config(src, dst, "spool", 64 << 20, "ra/#")
    cfg["relay"]["metrics"] = "127.0.0.1:%d" % mport
    cfg["routes"] = [{"name": "ra", "from": "src", "to": "dst", "filter": "ra/#", "qos": 1},
                     {"name": "rb", "from": "src", "to": "dst", "filter": "rb/#", "qos": 1}]
    relay = t.relay(name="relay8", **cfg)
    cid = relay.client_ids("src")[0]
    wait_subscribed(t, relay, src, cid, "rb/#")
    pub = t.client(src, "5")
    for i in range(100):
        pub.publish("ra/%d" % i, b"rl:%d;" % i, 1)
    for i in range(100, 150):
        pub.publish("rb/%d" % i, b"rl:%d;" % i, 1)
    pub.wait_published(60)
    ok = rt.wait_until(lambda: relay.check_alive() or spool_metrics(mport)["messages"] >= 150,
                       30, 0.1)
    t.check(ok, "150 spooled while dst is down (100 on route ra, 50 on rb)")
    # ra goes (rb becomes the first route), rc comes last: the spooled records were written
    # under the old route numbering
    routes = [{"name": "rb", "from": "src", "to": "dst", "filter": "rb/#", "qos": 1},
              {"name": "rc", "from": "src", "to": "dst", "filter": "rc/#", "qos": 1}]
    with open(relay.conf_path, "w") as f:
        f.write(rt.relay_config_text(cfg["relay"], cfg["brokers"], routes))
    n = len(relay.log_lines())
    os.kill(relay.pid, signal.SIGHUP)
    line = None
    for _ in range(100):
        relay.check_alive()
        line = next((l for l in relay.log_lines()[n:] if "reloaded" in l or "ERROR" in l), None)
        if line:
            break
        time.sleep(0.1)
    t.check(line is not None and "reloaded" in line, "reloaded: %s" % line)
    dst.start()
    ok = rt.wait_until(lambda: relay.check_alive() or set(numbers_of(sub.received(), b"rl:"))
                       >= set(range(150)), 60, 0.2)
    got = numbers_of(sub.received(), b"rl:")
    t.check(ok, "every spooled message arrives, those of the removed route too (%d "
            "duplicates)" % (len(got) - len(set(got))),
            "missing %s" % sorted(set(range(150)) - set(got))[:20])
    rt.wait_until(lambda: spool_metrics(mport)["messages"] == 0, 20, 0.2)
    ms = rt.get_metrics(mport)
    fb = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route="rb")
    fc = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route="rc")
    t.check(fb == 50 and fc == 0, "forwarded_total: rb 50, rc 0 (spooled records counted for "
            "the route they came by, not by their old index in the new list: got rb %d, rc %d)"
            % (fb, fc))
    relay.stop()
    sub.stop()
    pub.stop()


# ----------------------------------------------------------------------------------------------
# (5) unusable spool directories

def refused(t, what, src, spool_dir, reason_re, name):
    mport = rt.free_port()
    relay = start_spooled_relay(t, name, src, src, spool_dir, 1 << 20, "x/#", mport)
    try:
        relay.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise rt.Failure("%s: the relay still runs after 20s" % what)
    err = relay.stderr_text()
    line = next((l for l in err.splitlines() if "ERROR" in l), "")
    t.check(relay.proc.returncode == 2, "%s: the relay exits with status 2 (got %s)"
            % (what, relay.proc.returncode), err[-2000:])
    t.check(re.search(reason_re, line) is not None, "%s: it says why: %s" % (what, line.strip()),
            err[-2000:])
    cid = relay.client_ids("src")[0]
    t.check(cid not in src.connected_ids(), "%s: it never connected to src (acknowledged "
            "nothing)" % what)


def scenario_unusable(t):
    t.section("(5) an unusable spool directory")
    src = t.broker("src5")
    base = os.path.join(t.tmp, "unusable")
    os.makedirs(base)
    afile = os.path.join(base, "afile")
    with open(afile, "w") as f:
        f.write("not a directory\n")
    refused(t, "a path under a regular file", src, os.path.join(afile, "spool"),
            r"afile/spool.*(Not a directory|not a directory)", "relay5a")
    refused(t, "a regular file as the directory", src, afile, r"afile.*not a directory",
            "relay5b")

    imm = os.path.join(base, "immutable")
    os.makedirs(imm)
    p = subprocess.run(["chattr", "+i", imm], capture_output=True)
    if p.returncode == 0:
        try:
            refused(t, "an immutable directory (chattr +i)", src, imm,
                    r"immutable.*not writable.*(Operation not permitted|Permission denied)",
                    "relay5c")
        finally:
            subprocess.run(["chattr", "-i", imm], capture_output=True)
    else:
        t.note("no chattr +i here (%s): immutable case skipped" % p.stderr.decode().strip())

    # a directory another relay holds
    shared = os.path.join(base, "shared")
    dst = t.broker("dst5", log_all=False)
    mport = rt.free_port()
    first = start_spooled_relay(t, "relay5d", src, dst, shared, 1 << 20, "x/#", mport,
                                rid="sp5d")
    first.wait_ready({"src": src, "dst": dst})
    second = start_spooled_relay(t, "relay5e", src, dst, shared, 1 << 20, "x/#", rt.free_port(),
                                 rid="sp5e")
    try:
        second.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise rt.Failure("a second relay on the same spool directory still runs after 20s")
    line = next((l for l in second.stderr_text().splitlines() if "ERROR" in l), "")
    t.check(second.proc.returncode == 2 and "in use" in line,
            "a second relay on a spool directory in use exits 2: %s" % line.strip(),
            second.stderr_text()[-1500:])
    first.check_alive()
    first.stop()


def run(t):
    """Runs every scenario even when one fails (each is independent), then fails with the list."""
    only = os.environ.get("SPOOL_TEST_ONLY", "")
    failed = []
    for key, fn in (("unusable", scenario_unusable), ("truncated", scenario_truncated),
                    ("stopped", scenario_stopped), ("immutable", scenario_immutable_at_run_time),
                    ("disk_full", scenario_disk_full), ("reload", scenario_reload),
                    ("100k", scenario_100k), ("full", scenario_full)):
        if only and key not in only.split(","):
            continue
        first = len(t.things)
        try:
            fn(t)
        except rt.Failure as e:
            failed.append("[%s] %s" % (t.section_name, e))
            print("\nFAILED [%s]: %s" % (t.section_name, e), flush=True)
            # stop what this scenario started (its logs stay for the dump at the end)
            for x in reversed(t.things[first:]):
                try:
                    if isinstance(x, rt.Client):
                        x.stop()
                    elif isinstance(x, (rt.Relay, rt.Broker)) and x.running():
                        os.kill(x.proc.pid, signal.SIGCONT)  # in case it was stopped
                        x.proc.kill()
                        x.proc.wait(10)
                except Exception as ex:  # keep going
                    print("cleanup after the failure: %s" % ex, flush=True)
    if failed:
        t.section_name = None
        raise rt.Failure("%d scenario%s failed:\n  %s" % (len(failed),
                                                       "" if len(failed) == 1 else "s",
                                                       "\n  ".join(failed)))


if __name__ == "__main__":
    rt.main(run, __doc__)
