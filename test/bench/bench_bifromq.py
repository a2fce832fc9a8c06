"""The bench's bifromq section (issue 12): the relay publishing into a broker that enforces
BifroMQ's rules (test/integration/bifromq_broker.py, a separate process), with profile =
"bifromq" and connections = 1, 4, 16; and the bytes per message topic aliases save.

    test/bench/run.sh --sections bifromq [--bifromq-n 2000]

Per run: a fresh rules broker (its tally read from its control port), a Mosquitto A as the
source, the relay A -> bq (MQTT 5 both sides; bq with the profile and N connections; A's
receive_maximum 50 x N, so a backlog keeps every connection busy), and N loadgen publishers on
A (QoS 1, 64-byte payloads), publisher i on a topic the relay's hash puts on connection i, each
sending --bifromq-n / N messages (at least 1,000) at 240 a second (a little above a
connection's pace, so that a backlog builds, interleaved over the topics as real traffic is: at
full speed one publisher's burst fills the relay's receive_maximum from A with messages for one
pool connection, held until it delivered them, while the others starve). Nobody
subscribes at bq (it answers PUBACK 0x10): its Python delivery path is not what is measured.

Figures, all from the broker's own tally: msg/s while every connection had messages (from the
last connection's first accepted PUBLISH to the first one's last) against N x 200, and from the
first to the last accepted PUBLISH of any connection; the median of each connection's full
fixed windows, the busiest fixed and sliding one-second window of any connection, and the
broker's disconnects. Bytes per message: the relay's mqtt_relay_bytes_sent_total toward bq over
the messages, with topic_aliases at the profile's 10 and at 0, on a 44-character topic.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BROKER = os.path.join(HERE, "..", "integration", "bifromq_broker.py")
PACE = 200
ALIAS_TOPIC = "factory/line-07/cell-3/telemetry/temperature"
# Each publisher a little faster than one connection's pace, so the relay is the bottleneck and
# a backlog builds, interleaved across the topics as real traffic is. (At full speed one
# publisher's burst would fill the relay's receive_maximum from A with messages for one pool
# connection while the others starve: each message is held until its connection delivered it.)
PUB_RATE = 240


def relay_hash(b):
    """route/route.c's relay_hash (FNV-1a): the pool connection a topic goes to."""
    h = 2166136261
    for x in b:
        h = ((h ^ x) * 16777619) & 0xFFFFFFFF
    return h


def topics_for(n_conns, base="bench/bq"):
    """One topic per pool connection: topics[i] goes to connection i."""
    out = [None] * n_conns
    k = 0
    while None in out:
        t = "%s/%d" % (base, k)
        i = relay_hash(t.encode()) % n_conns
        if out[i] is None:
            out[i] = t
        k += 1
    return out


def http_json(port, path, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return json.loads(r.read().decode())


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def msum(ms, name, **labels):
    return sum(v for k, v in ms.items() if k.startswith(name + "{") and
               all('%s="%s"' % (lk, lv) in k for lk, lv in labels.items()))


def full_windows(c):
    w = {int(k): v for k, v in c.get("windows", {}).items()}
    if len(w) < 3:
        return []
    ks = sorted(w)
    return [w.get(k, 0) for k in range(ks[0] + 1, ks[-1])]


def one_run(R, b, n_conns, per_conn, aliases=None, topic=None, tag=""):
    """One measurement. R: run.py's module (its process helpers). Returns a dict."""
    work = b.tmp
    procs = []
    try:
        stats_file = os.path.join(work, "bq%s.json" % tag)
        with open(os.path.join(work, "bq%s.log" % tag), "ab") as log:
            brk = R.spawn(["/usr/bin/python3", BROKER, "--port", "0", "--control-port", "0",
                           "--stats-file", stats_file], stdout=subprocess.PIPE, stderr=log)
        procs.append(brk)
        first = R.read_line(brk, "", 20)
        if not first:
            raise RuntimeError("bifromq_broker.py did not start")
        port = int(first.split()[0])
        cport = int(first.split("control_port=")[1].split()[0])
        a, pa = b.start_mosquitto("bqA%s" % tag, True)
        procs.append(a)
        mport = R.free_port()
        conf = os.path.join(work, "bq%s.conf" % tag)
        al = "" if aliases is None else " topic_aliases = %d;" % aliases
        with open(conf, "w") as f:
            f.write('relay: { id = "bench"; log_level = "warn"; drain_timeout = 1000; '
                    'metrics = "127.0.0.1:%d"; };\n' % mport)
            f.write("brokers = (\n")
            f.write('  { name = "a"; url = "mqtt://127.0.0.1:%d"; version = "5"; clean_start = '
                    'true; receive_maximum = %d; },\n' % (pa, 50 * n_conns))
            f.write('  { name = "bq"; url = "mqtt://127.0.0.1:%d"; version = "5"; clean_start = '
                    'true; profile = "bifromq"; connections = %d;%s }\n' % (port, n_conns, al))
            f.write(');\nroutes = ( { from = "a"; to = "bq"; filter = "bench/#"; qos = 1; }, '
                    '{ from = "a"; to = "bq"; filter = "factory/#"; qos = 1; } );\n')
        relay = b.start_relay(conf)
        procs.append(relay)
        deadline = time.monotonic() + 20
        while True:
            try:
                ms = metrics(mport)
                if msum(ms, "mqtt_relay_connection_up") >= n_conns + 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not connect (see %s/relay.log)" % work)
            time.sleep(0.1)
        time.sleep(0.5)  # the SUBACK at A
        topics = [topic] if topic else topics_for(n_conns)
        pubs = []
        for i, tp in enumerate(topics):
            pubs.append(R.spawn([b.loadgen, "pub", "-p", str(pa), "-q", "1", "-n",
                                 str(per_conn), "-s", "64", "-w", "100", "-t", tp, "-V", "5",
                                 "-r", str(PUB_RATE)], stdout=subprocess.PIPE))
        procs.extend(pubs)
        for p in pubs:
            if R.read_line(p, "pub ", 300) is None:
                raise RuntimeError("a publisher gave no result")
        total = n_conns * per_conn if not topic else per_conn
        deadline = time.monotonic() + 120
        while True:
            st = http_json(cport, "/stats")
            if st["totals"]["accepted"] >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("bq accepted %d of %d" % (st["totals"]["accepted"], total))
            time.sleep(0.2)
        st = http_json(cport, "/stats?times=1")
        ms = metrics(mport)
    finally:
        for p in reversed(procs):
            R.stop(p)
    conns = [c for c in st["connections"] if c["client_id"] and
             c["client_id"].startswith("bench-bq") and c["accepted"]]
    starts = [c["opened"] + c["publish_times"][0] for c in conns]
    ends = [c["opened"] + c["publish_times"][-1] for c in conns]
    acc = sum(c["accepted"] for c in conns)
    span = max(ends) - min(starts) if conns else 0
    # while every connection had messages: from the last first PUBLISH to the first last one
    lo, hi = (max(starts), min(ends)) if conns else (0, 0)
    steady_n = sum(1 for c in conns for x in c["publish_times"] if lo <= c["opened"] + x < hi)
    meds = [statistics.median(full_windows(c)) for c in conns if full_windows(c)]
    disc = {}
    for c in st["connections"]:
        if c["disconnect"]:
            disc[c["disconnect"]] = disc.get(c["disconnect"], 0) + 1
    sent = msum(ms, "mqtt_relay_bytes_sent_total", broker="bq")
    return {"conns": n_conns, "accepted": acc, "span_s": span,
            "rate": acc / span if span > 0 else 0.0,
            "steady_s": hi - lo, "steady": steady_n / (hi - lo) if hi > lo else 0.0,
            "per_conn_median": statistics.median(meds) if meds else 0.0,
            "busiest_fixed": max((c["max_fixed"] for c in st["connections"]), default=0),
            "busiest_sliding": max((c["max_sliding"] for c in st["connections"]), default=0),
            "disconnects": disc, "bytes_per_msg": sent / acc if acc else 0.0}


def section(b, args, out, results, R):
    """run.py calls this for --sections bifromq; R is run.py's module."""
    if not b.have_relay:
        out("## bifromq: the relay is not built: skipped")
        return
    n = getattr(args, "bifromq_n", 2000)
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    out("## Into BifroMQ's rules (bifromq_broker.py), profile = \"bifromq\"")
    out()
    out(f"{os.cpu_count()} vCPUs ({model}), shared: the broker is one Python thread, the relay, "
        "Mosquitto and the loadgens run beside it. Figures from the broker's own tally.")
    out()
    out("msg/s while all connections had messages (from the last connection's first accepted "
        "PUBLISH to the first one's last), and from the first to the last accepted PUBLISH.")
    out()
    out("| connections | messages | msg/s, all busy | N x 200 | ratio | msg/s first to last | "
        "median full window per connection | busiest fixed / sliding window | disconnects |")
    out("|---|---|---|---|---|---|---|---|---|")
    res = []
    for nc in (1, 4, 16):
        per = max(1000, n // nc) if nc > 1 else n
        r = one_run(R, b, nc, per, tag="-%d" % nc)
        res.append(r)
        out(f"| {nc} | {r['accepted']} | {r['steady']:.0f} | {nc * PACE} | "
            f"{r['steady'] / (nc * PACE):.3f} | {r['rate']:.0f} | {r['per_conn_median']:.0f} | "
            f"{r['busiest_fixed']} / {r['busiest_sliding']} | {r['disconnects'] or 0} |")
    out()
    on = one_run(R, b, 1, 1000, aliases=None, topic=ALIAS_TOPIC, tag="-alias-on")
    off = one_run(R, b, 1, 1000, aliases=0, topic=ALIAS_TOPIC, tag="-alias-off")
    saved = off["bytes_per_msg"] - on["bytes_per_msg"]
    out(f"Topic aliases (topic \"{ALIAS_TOPIC}\", {len(ALIAS_TOPIC)} bytes; 64-byte payload; "
        "MQTT 5 with the relay-path user property): bytes on the wire per message "
        f"{off['bytes_per_msg']:.1f} without, {on['bytes_per_msg']:.1f} with "
        f"(topic_aliases = 10): {saved:.1f} bytes saved per message "
        f"({100.0 * saved / off['bytes_per_msg']:.0f} %).")
    out()
    results["bifromq"] = {"runs": res, "alias_on": on, "alias_off": off,
                          "alias_saved_per_msg": saved}


if __name__ == "__main__":
    sys.exit("run it through run.py: test/bench/run.sh --sections bifromq")
