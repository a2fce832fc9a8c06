"""Issue 15's sections of run.py: speed where users run the relay.

  tls       TLS on both links of the bridge, the standalone Mosquitto and the relay (mqtts://,
            the throw-away CA of certs/make-certs.sh); QoS 0 and 1
  mqtt5     MQTT 5 on both links (loadgen, bridges, relay)
  wan       a delay proxy (delayproxy) between the relay and the destination, and separately
            between the source and the relay (for Mosquitto: the bridge's link), at 20, 50 and
            100 ms of round trip (and 0 ms: the link's capacity); QoS 1, 64 B and 1 KiB;
            Mosquitto with its defaults (20 unacknowledged messages out), the relay with a new
            user's configuration ("defaults") and a tuned one
  syscalls  system calls per forwarded message of the relay and of each Mosquitto on the
            bridge, standalone and relay paths (perf stat -e raw_syscalls:sys_enter per process)

Each measures the relay side by side with Mosquitto's in-broker bridge and a standalone
Mosquitto in the same run, interleaved. The publisher and subscriber (loadgen) always use a
plain listener of A and B; the links the middle process makes are the ones under test. run.py
sets R to itself (its helpers: spawn, stop, ports, /proc readers, statistics, the report).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

R = None  # run.py, set by run.py before any section runs

MIDDLE = ("bridge", "standalone", "relay")


def note(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- configuration files --------------------------------------------------------------------

def mosquitto_conf(path, port, *, tls_port=None, certs=None, bench=True, bridges=(),
                   version="3.1.1"):
    """bench: the paths section's settings (max_inflight_messages 100); else Mosquitto's
    defaults but for the queue limit (lifted: past it Mosquitto drops silently) and
    TCP_NODELAY, as issue 15 measured. bridges: (name, host, port, direction, tls)."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "max_queued_messages 0", "set_tcp_nodelay true", "log_dest stderr",
             "log_type error", "log_type warning"]
    if bench:
        lines.append(f"max_inflight_messages {R.INFLIGHT}")
    if os.geteuid() == 0:
        lines.append("user root")
    if tls_port:
        lines += ["", f"listener {tls_port} 127.0.0.1", f"cafile {certs}/ca.pem",
                  f"certfile {certs}/server.pem", f"keyfile {certs}/server.key"]
    for name, host, bport, direction, tls in bridges:
        lines += ["", f"connection {name}", f"address {host}:{bport}",
                  f"topic bench/# {direction} 1", "cleansession true",
                  f"bridge_protocol_version {'mqttv50' if version == '5' else 'mqttv311'}",
                  "try_private true", "notifications false", "start_type automatic",
                  "restart_timeout 1 2", "keepalive_interval 60"]
        if tls:
            lines.append(f"bridge_cafile {certs}/ca.pem")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def relay_conf(path, a_url, b_url, *, version="3.1.1", variant="bench", certs=None):
    """variant: "bench" (the paths section's: clean start, receive_maximum = max_inflight =
    100), "defaults" (a new user's: names, URLs, versions), "tuned" (defaults + always spooled
    toward b, a larger automatic window), "e2e" (end to end, never spooled, with room for the
    round trip: receive_maximum = 10000 on a)."""
    def broker(name, url, extra=""):
        s = f'  {{ name = "{name}"; url = "{url}"; version = "{version}";'
        if variant == "bench":
            s += (f" clean_start = true; receive_maximum = {R.INFLIGHT}; "
                  f"max_inflight = {R.INFLIGHT};")
        if url.startswith("mqtts"):
            s += f' tls = {{ ca_file = "{certs}/ca.pem"; }};'
        return s + extra + " }"
    xa = " receive_maximum = 10000;" if variant == "e2e" else ""
    xb = {"tuned": " spool = true; max_inflight_cap = 8192;",
          "e2e": " spool = false;"}.get(variant, "")
    with open(path, "w") as f:
        f.write('relay: { id = "bench"; log_level = "info"; drain_timeout = 1000; };\n')
        f.write("brokers = (\n" + broker("a", a_url, xa) + ",\n" + broker("b", b_url, xb) +
                "\n);\n")
        f.write('routes = ( { from = "a"; to = "b"; filter = "bench/#"; qos = 1; } );\n')


def make_certs(out):
    d = os.path.join(out, "certs")
    if not os.path.exists(os.path.join(d, "server.pem")):
        subprocess.run([os.path.join(R.ROOT, "certs", "make-certs.sh"), d], check=True,
                       stdout=subprocess.DEVNULL)
    return d


# ---- one measurement ------------------------------------------------------------------------

class Speed:
    """Starts the processes of one path (brokers, bridge or relay, a delay proxy), runs loadgen
    through it and stops everything (by PID)."""

    def __init__(self, b, args):
        self.b = b
        self.a = args
        self.proxy_bin = os.path.join(b.bin, "delayproxy")
        self.certs = None
        self.seq = 0

    def mosquitto(self, name, **kw):
        for _ in range(5):
            port = R.free_port()
            conf = os.path.join(self.b.tmp, f"{name}.conf")
            tls_port = R.free_port() if kw.get("tls_port") else None
            kw2 = dict(kw)
            kw2["tls_port"] = tls_port
            mosquitto_conf(conf, port, certs=self.certs, **kw2)
            log = open(os.path.join(self.b.tmp, f"{name}.log"), "ab")
            p = R.spawn(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=log)
            log.close()
            if R.wait_port(port, p) and (not tls_port or R.wait_port(tls_port, p)):
                return p, port, tls_port
            R.stop(p)
        raise RuntimeError(f"mosquitto {name} did not start (see {self.b.tmp}/{name}.log)")

    def proxy(self, target, delay_ms):
        p = R.spawn([self.proxy_bin, "-t", f"127.0.0.1:{target}", "-d", f"{delay_ms / 2:g}", "-s"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = R.read_line(p, "listening", 10)
        if not line:
            raise RuntimeError("delayproxy did not start")
        return p, int(line.split(":")[-1])

    def run(self, path, qos, size, n, *, tls=False, version="3.1.1", bench=True,
            variant="bench", wan=None, sysc=False):
        """path: bridge, standalone or relay. wan: None or (where, rtt_ms), where "dst" (the
        link into B) or "src" (the link from A). variant: the relay's configuration. sysc: count
        the system calls of A, C or the relay, and B. Returns the figures."""
        if tls and not self.certs:
            self.certs = make_certs(self.a.out)
        procs, proxy, perfs = {}, None, {}
        stats = ""
        self.seq += 1
        state = os.path.join(self.b.tmp, f"state-{self.seq}")
        mk = dict(bench=bench, version=version)
        if tls:
            mk["tls_port"] = True
        try:
            procs["A"], pa, pat = self.mosquitto("A", **mk)
            procs["B"], pb, pbt = self.mosquitto("B", **mk)
            a_port, b_port = (pat, pbt) if tls else (pa, pb)
            if wan:
                where, rtt = wan
                proxy, pp = self.proxy(a_port if where == "src" else b_port, rtt)
                if where == "src":
                    a_port = pp
                else:
                    b_port = pp
            host = "localhost" if tls else "127.0.0.1"  # Mosquitto checks the name, not the IP
            if path == "bridge":
                # A's own bridge out to B; across a slow source link, B's bridge pulls from A
                R.stop(procs["B" if wan and wan[0] == "src" else "A"])
                if wan and wan[0] == "src":
                    procs["B"], pb, _ = self.mosquitto(
                        "B", bridges=[("ba", host, a_port, "in", tls)], **mk)
                else:
                    procs["A"], pa, _ = self.mosquitto(
                        "A", bridges=[("ab", host, b_port, "out", tls)], **mk)
            elif path == "standalone":
                procs["C"], _, _ = self.mosquitto(
                    "C", bridges=[("from-a", host, a_port, "in", tls),
                                  ("to-b", host, b_port, "out", tls)], **mk)
            else:
                scheme = "mqtts" if tls else "mqtt"
                conf = os.path.join(self.b.tmp, "relay.conf")
                relay_conf(conf, f"{scheme}://127.0.0.1:{a_port}",
                           f"{scheme}://127.0.0.1:{b_port}", version=version, variant=variant,
                           certs=self.certs)
                shutil.rmtree(state, ignore_errors=True)
                log = open(os.path.join(self.b.tmp, "relay.log"), "ab")
                env = dict(os.environ, STATE_DIRECTORY=state)
                procs["relay"] = R.spawn([self.b.relay, "-c", conf], stdout=subprocess.DEVNULL,
                                         stderr=log, env=env)
                log.close()
            vf = ["-V", "5"] if version == "5" else []
            probe = subprocess.run([self.b.loadgen, "probe", "-p", str(pa), "-P", str(pb),
                                    "-t", "bench/probe", "--first-ms", "30000"] + vf,
                                   stdout=subprocess.DEVNULL, timeout=90)
            if probe.returncode != 0:
                raise RuntimeError(f"{path}: no message crossed from A to B (probe)")
            sub = R.spawn([self.b.loadgen, "sub", "-p", str(pb), "-q", str(qos), "-n", str(n),
                           "--idle-ms", "5000"] + vf, stdout=subprocess.PIPE)
            if R.read_line(sub, "ready", 20) is None:
                raise RuntimeError(f"{path}: subscriber not ready")
            if sysc:
                for role, p in procs.items():
                    f = os.path.join(self.b.tmp, f"perf-{role}.csv")
                    perfs[role] = (R.spawn(["perf", "stat", "-x", ",", "-o", f, "-e",
                                            "raw_syscalls:sys_enter", "-p", str(p.pid)],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL), f)
                time.sleep(1.0)
            before = {r: R.cpu_split(p.pid) for r, p in procs.items()}
            pub = R.spawn([self.b.loadgen, "pub", "-p", str(pa), "-q", str(qos), "-n", str(n),
                           "-s", str(size), "-w", str(R.INFLIGHT)] + vf, stdout=subprocess.PIPE)
            pub_line = R.read_line(pub, "pub ", 900)
            sub_line = R.read_line(sub, "sub ", 900)
            after = {r: R.cpu_split(p.pid) for r, p in procs.items()}
            R.stop(pub)
            R.stop(sub)
        finally:
            for p, _ in perfs.values():
                R.stop(p, signal.SIGINT, 30)
            for p in procs.values():
                R.stop(p)
            if proxy:
                proxy.send_signal(signal.SIGTERM)
                try:
                    stats = proxy.communicate(timeout=10)[1].decode(errors="replace")
                except subprocess.TimeoutExpired:
                    pass
                R.stop(proxy)
            shutil.rmtree(state, ignore_errors=True)
        if not pub_line or not sub_line:
            raise RuntimeError(f"{path}: no result (pub={pub_line!r} sub={sub_line!r})")
        ps, ss = R.kv(pub_line), R.kv(sub_line)
        cpu = {r: (sum(after[r]) - sum(before[r])) / R.CLK_TCK * 1e6 / n for r in procs}
        res = {"rate": ss["rate"], "lost": int(ss["lost"]), "dup": int(ss["dup"]),
               "reordered": int(ss["reordered"]), "p50": ss["p50_us"], "p99": ss["p99_us"],
               "cpu": cpu, "pub_cpu": ps["cpu_us"], "sub_cpu": ss["cpu_us"]}
        if perfs:
            res["syscalls"] = {r: sum(R.perf_counts(f).values()) / n for r, (_, f) in perfs.items()}
        if stats:
            res["proxy"] = stats.strip().splitlines()[-1]
        return res


def mid(r, path):
    """CPU us/msg of the middle process: the standalone Mosquitto or the relay."""
    return r["cpu"].get("relay" if path.startswith("relay") else "C")


def ratio_line(out, runs, num, den, what, target=None):
    rs = [x["rate"] / y["rate"] for x, y in zip(runs.get(num, []), runs.get(den, []))
          if y["rate"]]
    if not rs:
        return None
    t = ""
    if target:
        t = f" (target >= {target}: {'met' if R.med(rs) >= target else 'MISSED'})"
    out(f"- {what}: {R.fmt_range(rs, '{:.2f}')}{t}")
    return R.med(rs)


def lost_cell(rs):
    return f"{sum(r['lost'] for r in rs)} / {sum(r['reordered'] for r in rs)}"


# ---- tls and mqtt5: the paths with one setting changed ----------------------------------------

def section_variant(sp, args, out, results, key, title, **kw):
    paths = [p for p in MIDDLE if p != "relay" or sp.b.have_relay]
    runs = {}
    cases = [(q, s) for q in args.qos for s in args.speed_sizes]
    for rnd in range(args.rounds):
        for ci, (q, s) in enumerate(cases):
            k = (rnd + ci) % len(paths)
            for path in paths[k:] + paths[:k]:
                r = sp.run(path, q, s, args.n, **kw)
                runs.setdefault((path, q, s), []).append(r)
                note(f"  {key} round {rnd + 1} qos{q} {s}B {path:10s} {r['rate']:9.0f} msg/s "
                     f"lost={r['lost']} reordered={r['reordered']}")
    results[key] = {f"{p}/{q}/{s}": v for (p, q, s), v in runs.items()}
    out(f"## {title}: {args.n} messages, {args.rounds} interleaved rounds, median [min-max]")
    out()
    out("| QoS | payload | path | msg/s | CPU us/msg of the middle process | "
        "CPU us/msg A / B | lost / reordered |")
    out("|---|---|---|---|---|---|---|")
    for q, s in cases:
        for p in paths:
            rs = runs.get((p, q, s), [])
            if not rs:
                continue
            m = [mid(r, p) for r in rs if mid(r, p) is not None]
            mm = f"{R.med(m):.2f}" if m else "-"
            out(f"| {q} | {s} B | {p} | {R.kmsg([r['rate'] for r in rs])} | {mm} | "
                f"{R.med([r['cpu']['A'] for r in rs]):.1f} / "
                f"{R.med([r['cpu']['B'] for r in rs]):.1f} | {lost_cell(rs)} |")
    out()
    for q, s in cases:
        sub = {p: runs.get((p, q, s), []) for p in paths}
        out(f"QoS {q}, {s} B:")
        out()
        ratio_line(out, sub, "relay", "bridge", "relay / in-broker bridge msg/s", 0.95)
        ratio_line(out, sub, "relay", "standalone", "relay / standalone Mosquitto msg/s")
        rc = [x["cpu"]["relay"] / y["cpu"]["C"] for x, y in zip(sub["relay"], sub["standalone"])
              if y["cpu"].get("C")] if sub.get("relay") and sub.get("standalone") else []
        if rc:
            out(f"- relay CPU / standalone Mosquitto CPU per message: {R.fmt_range(rc, '{:.2f}')} "
                f"(target <= 0.25: {'met' if R.med(rc) <= 0.25 else 'MISSED'})")
        out()


def section_tls(sp, args, out, results):
    section_variant(sp, args, out, results, "tls",
                    "TLS on both links (mqtts://, the throw-away CA of certs/make-certs.sh; the "
                    "publisher and subscriber on plain listeners)", tls=True)


def section_mqtt5(sp, args, out, results):
    section_variant(sp, args, out, results, "mqtt5",
                    "MQTT 5 on both links (loadgen, the bridges' bridge_protocol_version "
                    "mqttv50, the relay's brokers)", version="5")


# ---- wan ----------------------------------------------------------------------------------

WAN_PATHS = (("bridge", "bridge", "bench"), ("standalone", "standalone", "bench"),
             ("relay", "relay", "defaults"), ("relay-tuned", "relay", "tuned"),
             ("relay-e2e", "relay", "e2e"))


def wan_n(args, where, rtt):
    """Messages per run: args.wan_n, but about 6 s worth where the source's window of 20 binds
    every path (the source link)."""
    if where == "src" and rtt:
        return int(min(args.wan_n, max(1000, 20 * 1000 / rtt * 6)))
    return args.wan_n


def section_wan(sp, args, out, results):
    if not os.access(sp.proxy_bin, os.X_OK):
        out(f"NOTE: {sp.proxy_bin} not built: the wan section is skipped")
        return
    paths = [p for p in WAN_PATHS if p[1] != "relay" or sp.b.have_relay]
    rtts = [0] + args.wan_rtts
    runs = {}
    for where in ("dst", "src"):
        rounds = args.wan_rounds if where == "dst" else 1
        for rnd in range(rounds):
            for size in args.speed_sizes_wan:
                for ri, rtt in enumerate(rtts):
                    k = (rnd + ri) % len(paths)
                    for label, path, variant in paths[k:] + paths[:k]:
                        if variant == "e2e" and where == "src":
                            continue  # the same as "relay" there: nothing is held long
                        n = wan_n(args, where, rtt)
                        r = sp.run(path, 1, size, n, bench=False, variant=variant,
                                   wan=(where, rtt))
                        r["n"] = n
                        runs.setdefault((where, size, rtt, label), []).append(r)
                        note(f"  wan {where} round {rnd + 1} {size}B {rtt:3d} ms {label:11s} "
                             f"{r['rate']:9.0f} msg/s lost={r['lost']} "
                             f"reordered={r['reordered']}")
    results["wan"] = {f"{w}/{s}/{t}/{l}": v for (w, s, t, l), v in runs.items()}
    labels = [p[0] for p in paths]
    out(f"## Across a WAN: a delay proxy (delayproxy, fixed one-way delay, no bandwidth cap) on "
        f"one link, QoS 1, one topic, {args.wan_n} messages (the source link: about 6 s worth)")
    out()
    out("Mosquitto with its defaults (max_inflight_messages 20) but max_queued_messages 0 and "
        "set_tcp_nodelay true; the bridges as in `paths`. `relay`: a new user's configuration "
        "(names, URLs, versions: spool = \"auto\", max_inflight \"auto\"); `relay-tuned`: "
        "spool = true and max_inflight_cap = 8192 toward B; `relay-e2e`: end to end "
        "(spool = false toward B) with receive_maximum = 10000 on A, so that the relay may "
        "hold a round trip's worth (destination link only). Share of the link: msg/s over the "
        "delayed link divided by the same path's msg/s through the proxy at 0 ms (what the "
        "link carries when a round trip costs nothing). Median [min-max] of the rounds "
        f"({args.wan_rounds} on the destination link, 1 on the source link).")
    out()
    for where, title in (("dst", "the link between the relay (or the bridge) and B"),
                         ("src", "the link between A and the relay (or the bridge)")):
        out(f"### Delay on {title}")
        out()
        rl = [l for l in labels if l.startswith("relay") and
              any(k[0] == where and k[3] == l for k in runs)]
        out("| payload | RTT | " + " | ".join(f"{l} msg/s (share)" for l in labels) + " | " +
            " | ".join(f"{l} / bridge" for l in rl) + " | lost / reordered (all paths) |")
        out("|---|---|" + "---|" * (len(labels) + len(rl) + 1))
        for size in args.speed_sizes_wan:
            cap = {l: R.med([r["rate"] for r in runs.get((where, size, 0, l), [])])
                   for l in labels}
            for rtt in rtts:
                cells, allr = [], []
                for l in labels:
                    rs = runs.get((where, size, rtt, l), [])
                    allr += rs
                    if not rs:
                        cells.append("-")
                        continue
                    share = R.med([r["rate"] for r in rs]) / cap[l] if cap.get(l) else 0
                    cells.append(f"{R.kmsg([r['rate'] for r in rs])} ({share:.0%})")
                rat = []
                for l in rl:
                    xs = [x["rate"] / y["rate"] for x, y in
                          zip(runs.get((where, size, rtt, l), []),
                              runs.get((where, size, rtt, "bridge"), [])) if y["rate"]]
                    rat.append(R.fmt_range(xs, "{:.2f}") if xs else "-")
                out(f"| {size} B | {rtt} ms | " + " | ".join(cells) + " | " + " | ".join(rat) +
                    f" | {lost_cell(allr)} |")
        out()
    t = [x["rate"] / y["rate"] for x, y in zip(runs.get(("dst", 64, 50, "relay"), []),
                                               runs.get(("dst", 64, 50, "bridge"), []))]
    tt = [x["rate"] / y["rate"] for x, y in zip(runs.get(("dst", 64, 50, "relay-tuned"), []),
                                                runs.get(("dst", 64, 50, "bridge"), []))]
    if t:
        out(f"- target (50 ms on the destination link, 64 B): relay with a new user's "
            f"configuration / Mosquitto's bridge {R.fmt_range(t, '{:.2f}')}, tuned "
            f"{R.fmt_range(tt, '{:.2f}')} (target >= 0.95: "
            f"{'met' if R.med(t) >= 0.95 and tt and R.med(tt) >= 0.95 else 'MISSED'})")
    px = [r["proxy"] for rs in runs.values() for r in rs if "proxy" in r]
    late = [int(x.rsplit(" ", 1)[-1]) for x in px if x.rsplit(" ", 1)[-1].isdigit()]
    if late:
        out(f"- delayproxy releases more than 1 ms late, per run: median {R.med(late):.0f}, "
            f"max {max(late)} (it waits for a CPU like everyone else); e.g. `{px[-1]}`")
    out()


# ---- syscalls ---------------------------------------------------------------------------------

def section_syscalls(sp, args, out, results):
    if not shutil.which("perf"):
        out("NOTE: perf not installed: the syscalls section is skipped")
        return
    relays = [("relay", sp.b.relay)] if sp.b.have_relay else []
    if args.baseline_relay:
        relays.append(("relay (baseline)", args.baseline_relay))
    paths = [("bridge", "bridge", None), ("standalone", "standalone", None)] + \
        [(label, "relay", binp) for label, binp in relays]
    runs = {}
    own = sp.b.relay
    for rnd in range(args.rounds):
        for q in args.qos:
            for label, path, binp in paths:
                if binp:
                    sp.b.relay = binp
                try:
                    r = sp.run(path, q, 64, args.n, sysc=True)
                finally:
                    sp.b.relay = own
                runs.setdefault((label, q), []).append(r)
                note(f"  syscalls round {rnd + 1} qos{q} {label:16s} "
                     + " ".join(f"{k}={v:.2f}" for k, v in r["syscalls"].items()))
    results["syscalls"] = {f"{l}/{q}": v for (l, q), v in runs.items()}
    out(f"## System calls per forwarded message (perf stat -e raw_syscalls:sys_enter on each "
        f"process; {args.n} messages of 64 B, MQTT 3.1.1, median of {args.rounds} rounds)")
    out()
    out("| path | QoS | A | middle (C or relay) | B | A + middle + B | msg/s |")
    out("|---|---|---|---|---|---|---|")
    for label, path, _ in paths:
        for q in args.qos:
            rs = runs.get((label, q), [])
            if not rs:
                continue
            m = "relay" if path == "relay" else "C"

            def sc(role):
                xs = [r["syscalls"][role] for r in rs if role in r["syscalls"]]
                return R.med(xs) if xs else None
            a, c, b = sc("A"), sc(m), sc("B")
            tot = R.med([sum(r["syscalls"].values()) for r in rs])
            out(f"| {label} | {q} | {a:.2f} | {'-' if c is None else f'{c:.2f}'} | {b:.2f} | "
                f"{tot:.2f} | {R.kmsg([r['rate'] for r in rs])} |")
    out()


# ---- run.py's hooks ---------------------------------------------------------------------------

SECTIONS = "tls,mqtt5,wan,syscalls"


def add_args(ap):
    ap.add_argument("--speed-sizes", default="64",
                    help="payloads of the tls and mqtt5 sections (default 64)")
    ap.add_argument("--wan-rtts", default="20,50,100",
                    help="round trips of the wan section, ms (0 is always measured too)")
    ap.add_argument("--wan-sizes", default="64,1024", help="payloads of the wan section")
    ap.add_argument("--wan-rounds", type=int, default=2,
                    help="interleaved rounds on the destination link (the source link: 1)")
    ap.add_argument("--wan-n", type=int, default=20000,
                    help="messages per wan run (default 20000; --quick 5000)")
    ap.add_argument("--baseline-relay", default=None, metavar="BIN",
                    help="another mqtt-relay binary measured beside the built one in the "
                         "syscalls section (e.g. a build of the commit before a change)")


def fix_args(args):
    args.speed_sizes = [int(x) for x in args.speed_sizes.split(",")]
    args.speed_sizes_wan = [int(x) for x in args.wan_sizes.split(",")]
    args.wan_rtts = [int(x) for x in args.wan_rtts.split(",") if x and int(x)]
    if args.quick and args.wan_n == 20000:
        args.wan_n = 5000


def run_sections(b, args, out, results, sections):
    global R
    R = sys.modules["__main__"] if hasattr(sys.modules["__main__"], "Bench") else \
        sys.modules.get("run")
    sp = Speed(b, args)
    for name, fn in (("tls", section_tls), ("mqtt5", section_mqtt5), ("wan", section_wan),
                     ("syscalls", section_syscalls)):
        if name in sections:
            fn(sp, args, out, results)
