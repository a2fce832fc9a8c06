#!/usr/bin/python3
"""mqtt-relay performance benchmarks (issue 7). See README.md in this directory.

One command measures, on loopback, with the same Mosquitto configuration everywhere:

  paths    four paths, QoS 0/1, 64 B / 1 KiB payloads, N messages, interleaved rounds:
           direct (pub -> A -> sub), bridge (A's own bridge to B), standalone (a third
           Mosquitto bridging A to B), relay (mqtt-relay between A and B)
  latency  p50/p99 on the same paths at a fixed rate: half of the relay path's median msg/s
  nagle    the relay path with TCP_NODELAY on/off in the load generator and the brokers
  batching the relay path with read batching off and at its default: msg/s, CPU, latency
  alone    the relay on its own between fakebroker's source and destination, pinned to one
           core (taskset), QoS 0 and 1, 64 B
  routes   the same with 10,000 routes instead of 1
  rss      the relay's RSS with 10,000 QoS 1 messages held unacknowledged by the destination
  profile  callgrind instructions per forwarded message and its top functions; syscalls per
           message (perf tracepoints) and a sampled CPU profile (perf record), when available

Every process it starts is stopped by PID when it ends (or on Ctrl-C).
"""

import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import speed  # issue 15's sections (speed.py, beside this file)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

PATHS = ["direct", "bridge", "standalone", "relay"]
INFLIGHT = 100  # Mosquitto max_inflight_messages, loadgen's QoS 1 window, relay's limits
DEFAULT = object()  # "not given" for keyword arguments whose None means something

# ---- processes -----------------------------------------------------------------------------

LIVE = []  # Popen objects started here and not yet reaped


def spawn(cmd, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, **kw)
    LIVE.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=5.0):
    """Stops one process we started, by its PID: sig, then SIGKILL after timeout."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in LIVE:
        LIVE.remove(p)
    for f in (p.stdout, p.stderr):
        if f:
            f.close()


def cleanup():
    for p in list(LIVE):
        stop(p, timeout=2.0)


def on_signal(sig, _frame):
    cleanup()
    sys.exit(128 + sig)


atexit.register(cleanup)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def cpu_split(pid):
    """(utime, stime) of pid, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]), int(rest[12])


def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    return sum(cpu_split(pid))


def cpu_ns(pid):
    """On-CPU time of pid's threads in ns (/proc/PID/task/*/schedstat, first field): exact,
    where utime + stime only counts 10 ms ticks; used for the short relay-alone runs."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def mem_kib(pid, field="VmHWM"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def kv(line):
    """'pub sent=1 rate=2.5' -> {'sent': 1.0, 'rate': 2.5}"""
    out = {}
    for tok in line.split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def read_line(p, prefix, timeout):
    """Reads p's stdout until a line starting with prefix (None on timeout / exit)."""
    import select
    end = time.time() + timeout
    buf = b""
    fd = p.stdout.fileno()
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], max(0.0, end - time.time()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode()
            if line.startswith(prefix):
                return line
    return None


# ---- configuration files --------------------------------------------------------------------

def mosquitto_conf(path, port, nodelay, bridges=(), version="3.1.1"):
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "max_queued_messages 0",
        f"max_inflight_messages {INFLIGHT}",
        f"set_tcp_nodelay {'true' if nodelay else 'false'}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    for name, rport, direction in bridges:
        lines += [
            "",
            f"connection {name}",
            f"address 127.0.0.1:{rport}",
            f"topic bench/# {direction} 1",
            "cleansession true",
            f"bridge_protocol_version {'mqttv50' if version == '5' else 'mqttv311'}",
            "try_private true",
            "notifications false",
            "start_type automatic",
            "restart_timeout 1 2",
            "keepalive_interval 60",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def relay_conf(path, a_port, b_port, version="3.1.1", recv_max=INFLIGHT, max_inflight=INFLIGHT,
               routes=None, names=("a", "b"), ack_timeout=None, batch_wait_us=None, spool=None):
    """routes: list of (filter) strings, all from names[0] to names[1]; default ['bench/#'].
    batch_wait_us: relay.batch_wait_us (None: the relay's default). spool: the destination's
    spool setting (None: the default, "auto")."""
    routes = routes or ["bench/#"]
    extra = f" ack_timeout = {ack_timeout};" if ack_timeout else ""
    dextra = extra + (f" spool = {spool};" if spool is not None else "")
    bw = f" batch_wait_us = {batch_wait_us};" if batch_wait_us is not None else ""
    with open(path, "w") as f:
        f.write(f'relay: {{ id = "bench"; log_level = "warn"; drain_timeout = 1000;{bw} }};\n')
        f.write("brokers = (\n")
        f.write(f'  {{ name = "{names[0]}"; url = "mqtt://127.0.0.1:{a_port}"; '
                f'version = "{version}"; clean_start = true; receive_maximum = {recv_max}; '
                f'max_inflight = {max_inflight};{extra} }},\n')
        f.write(f'  {{ name = "{names[1]}"; url = "mqtt://127.0.0.1:{b_port}"; '
                f'version = "{version}"; clean_start = true; receive_maximum = {recv_max}; '
                f'max_inflight = {max_inflight};{dextra} }}\n')
        f.write(");\nroutes = (\n")
        f.write(",\n".join(
            f'  {{ name = "r{i}"; from = "{names[0]}"; to = "{names[1]}"; filter = "{flt}"; '
            f'qos = 1; }}' for i, flt in enumerate(routes)))
        f.write("\n);\n")


def perf_cmd(pid, stat_file, record_file):
    if stat_file:
        return ["perf", "stat", "-x", ",", "-o", stat_file, "-e", "syscalls:sys_enter_*",
                "-p", str(pid)]
    return ["perf", "record", "-e", "cpu-clock", "-F", "4000", "-o", record_file, "-p", str(pid)]


def perf_counts(path):
    """{syscall: count} from a perf stat -x, file."""
    counts = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    counts[parts[2].replace("syscalls:sys_enter_", "")] = float(parts[0])
    return counts


def perf_top(data, out, limit="0.7"):
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                          "dso,symbol", "-g", "none", "--percent-limit", limit],
                         capture_output=True, text=True).stdout
    with open(data.replace(".data", ".txt"), "w") as f:
        f.write(rep)
    out("```")
    for ln in rep.splitlines():
        if ln.strip() and not ln.startswith("#"):
            out(re.sub(r"\s+", " ", ln.strip())[:140].replace(" - -", ""))
    out("```")
    out()


# ---- one measurement on the broker paths ---------------------------------------------------

class Bench:
    def __init__(self, args):
        self.a = args
        self.bin = os.path.join(args.build, "test", "bench")
        self.loadgen = os.path.join(self.bin, "loadgen")
        self.fake = os.path.join(self.bin, "fakebroker")
        self.relay = os.path.join(args.build, "relay", "mqtt-relay")
        self.tmp = os.path.join(args.out, "work")  # configurations and logs, kept
        os.makedirs(self.tmp, exist_ok=True)
        self.have_relay = os.access(self.relay, os.X_OK)

    def start_mosquitto(self, name, nodelay, bridges=()):
        for _ in range(5):
            port = free_port()
            conf = os.path.join(self.tmp, f"{name}.conf")
            mosquitto_conf(conf, port, nodelay, bridges, self.a.mqtt)
            log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
            p = spawn(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=log)
            log.close()
            if wait_port(port, p):
                return p, port
            stop(p)
        raise RuntimeError(f"mosquitto {name} did not start (see {self.tmp}/{name}.log)")

    def start_relay(self, conf, taskset=None, wrap=None):
        cmd = [self.relay, "-c", conf]
        if wrap:
            cmd = wrap + cmd
        if taskset is not None:
            cmd = ["taskset", "-c", str(taskset)] + cmd
        log = open(os.path.join(self.tmp, "relay.log"), "ab")
        # spool = "auto" keeps spools in the state directory: one of the bench's, never the
        # machine's (a loopback destination never spools; this keeps it so if one did)
        env = dict(os.environ, STATE_DIRECTORY=os.path.join(self.tmp, "state"))
        p = spawn(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        return p

    def vflag(self):
        return ["-V", "5"] if self.a.mqtt == "5" else []

    def run_path(self, path, qos, size, n, rate=0.0, nodelay=True, broker_nodelay=True,
                 perf_stat=None, perf_record=None, batch_wait_us=DEFAULT):
        """Starts the brokers (and bridge/relay) of path, runs sub + pub, stops everything.
        Returns a dict of figures. perf_stat / perf_record: files for perf attached to the
        relay (path "relay") while the messages flow. batch_wait_us: the relay's setting
        (DEFAULT: --batch-wait-us, or the relay's default)."""
        if batch_wait_us is DEFAULT:
            batch_wait_us = self.a.batch_wait_us
        procs = {}  # role -> Popen, the processes whose CPU/RSS we report
        perf = None
        try:
            if path == "direct":
                procs["A"], pa = self.start_mosquitto("A", broker_nodelay)
                pb = pa
            elif path == "bridge":
                procs["B"], pb = self.start_mosquitto("B", broker_nodelay)
                procs["A"], pa = self.start_mosquitto("A", broker_nodelay,
                                                      [("ab", pb, "out")])
            elif path == "standalone":
                procs["A"], pa = self.start_mosquitto("A", broker_nodelay)
                procs["B"], pb = self.start_mosquitto("B", broker_nodelay)
                procs["C"], _ = self.start_mosquitto(
                    "C", broker_nodelay, [("from-a", pa, "in"), ("to-b", pb, "out")])
            elif path == "relay":
                procs["A"], pa = self.start_mosquitto("A", broker_nodelay)
                procs["B"], pb = self.start_mosquitto("B", broker_nodelay)
                conf = os.path.join(self.tmp, "relay.conf")
                relay_conf(conf, pa, pb, self.a.mqtt, batch_wait_us=batch_wait_us)
                procs["relay"] = self.start_relay(conf)
            else:
                raise ValueError(path)
            nd = [] if nodelay else ["--no-nodelay"]
            probe = subprocess.run([self.loadgen, "probe", "-p", str(pa), "-P", str(pb),
                                    "-t", "bench/probe", "--first-ms", "20000"] + self.vflag(),
                                   stdout=subprocess.DEVNULL, timeout=60)
            if probe.returncode != 0:
                raise RuntimeError(f"{path}: no message crossed from A to B (probe)")
            sub = spawn([self.loadgen, "sub", "-p", str(pb), "-q", str(qos), "-n", str(n),
                         "--idle-ms", "3000"] + nd + self.vflag(), stdout=subprocess.PIPE)
            if read_line(sub, "ready", 20) is None:
                raise RuntimeError(f"{path}: subscriber not ready")
            if perf_stat or perf_record:
                perf = spawn(perf_cmd(procs["relay"].pid, perf_stat, perf_record),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # perf attached
            before = {r: cpu_split(p.pid) for r, p in procs.items()}
            pubcmd = [self.loadgen, "pub", "-p", str(pa), "-q", str(qos), "-n", str(n),
                      "-s", str(size), "-w", str(INFLIGHT)] + nd + self.vflag()
            if rate:
                pubcmd += ["-r", f"{rate:.0f}"]
            pub = spawn(pubcmd, stdout=subprocess.PIPE)
            pub_line = read_line(pub, "pub ", 600)
            sub_line = read_line(sub, "sub ", 600)
            after = {r: cpu_split(p.pid) for r, p in procs.items()}
            hwm = {r: mem_kib(p.pid) for r, p in procs.items()}
            stop(pub)
            stop(sub)
        finally:
            if perf:
                stop(perf, signal.SIGINT, 30)
            for p in procs.values():
                stop(p)
        if not pub_line or not sub_line:
            raise RuntimeError(f"{path}: no result (pub={pub_line!r} sub={sub_line!r})")
        ps, ss = kv(pub_line), kv(sub_line)
        cpu = {r: (sum(after[r]) - sum(before[r])) / CLK_TCK * 1e6 / n for r in procs}
        sys_share = {r: (after[r][1] - before[r][1]) / max(1, sum(after[r]) - sum(before[r]))
                     for r in procs}
        cpu["pub"] = ps["cpu_us"]
        cpu["sub"] = ss["cpu_us"]
        return {"rate": ss["rate"], "pub_rate": ps["rate"], "lost": int(ss["lost"]),
                "dup": int(ss["dup"]), "reordered": int(ss["reordered"]),
                "p50": ss["p50_us"], "p99": ss["p99_us"], "cpu": cpu, "sys_share": sys_share,
                "hwm_mib": {r: v / 1024 for r, v in hwm.items()}}

    # ---- the relay on its own ----------------------------------------------------------------

    def run_alone(self, qos, n, size=64, routes=None, window=None, hold=False, version="3.1.1",
                  pin=True, wrap=None, settle=0.5, recv_max=None, max_inflight=None,
                  perf_stat=None, perf_record=None, spool=None):
        """fakebroker (CPU 0) <-> relay (CPU 1). Returns a dict of figures."""
        w = window or self.a.alone_window
        recv_max = recv_max or w
        max_inflight = max_inflight or w
        routes = routes or ["bench/t"]
        cmd = [self.fake, "-q", str(qos), "-n", str(n), "-s", str(size), "-w", str(w),
               "--subs", str(len(routes))]
        if hold:
            cmd += ["--hold", "--idle-ms", "1000"]
        if perf_stat or perf_record:
            cmd += ["--delay-ms", "1500"]  # time to attach perf to the relay
        if pin:
            cmd = ["taskset", "-c", "0"] + cmd
        fake = spawn(cmd, stdout=subprocess.PIPE)
        relay = None
        perf = None
        try:
            ports = read_line(fake, "ports", 10)
            if not ports:
                raise RuntimeError("fakebroker did not start")
            ps, pd = ports.split()[1:3]
            conf = os.path.join(self.tmp, "alone.conf")
            relay_conf(conf, ps, pd, version, recv_max=recv_max, max_inflight=max_inflight,
                       routes=routes, names=("src", "dst"), ack_timeout=600000 if hold else None,
                       batch_wait_us=self.a.batch_wait_us, spool=spool)
            relay = self.start_relay(conf, taskset=1 if pin else None, wrap=wrap)
            # the relay's own process: under taskset it is exec'ed in place; valgrind too
            rpid = relay.pid
            if perf_stat or perf_record:
                time.sleep(0.2)
                perf = spawn(perf_cmd(rpid, perf_stat, perf_record),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = cpu_ns(rpid)
            if hold:
                held = read_line(fake, "held", 120)
                if held is None:
                    raise RuntimeError("the destination never held the messages")
                time.sleep(settle)
                res = {"rss_kib": mem_kib(rpid, "VmRSS"), "hwm_kib": mem_kib(rpid, "VmHWM"),
                       "held": int(held.split()[1])}
                fake.send_signal(signal.SIGTERM)
                line = read_line(fake, "fake ", 10)
            else:
                line = read_line(fake, "fake ", 600 if not wrap else 3600)
                res = {"hwm_kib": mem_kib(rpid, "VmHWM")}
            res["cpu_us"] = (cpu_ns(rpid) - t0) / 1e3 / n
            if perf:
                stop(perf, signal.SIGINT, 30)
        finally:
            if perf:
                stop(perf, signal.SIGINT, 30)
            if relay:
                stop(relay, timeout=120 if wrap else 5)
            stop(fake)
        if not line:
            raise RuntimeError("fakebroker gave no result")
        res.update(kv(line))
        return res


# ---- statistics and printing ----------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_range(xs, f="{:.0f}"):
    if not xs:
        return "-"
    if len(xs) == 1:
        return f.format(xs[0])
    return (f + " [" + f + "-" + f + "]").format(med(xs), min(xs), max(xs))


def kmsg(xs):
    return fmt_range([x / 1000 for x in xs], "{:.1f}") + "k"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    mosq = mosq.splitlines()[0] if mosq else "?"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    return {"nproc": os.cpu_count(), "model": model, "kernel": platform.release(),
            "os": platform.platform(), "mosquitto": mosq, "git": rev}


class Report:
    def __init__(self, path):
        self.f = open(path, "w")

    def __call__(self, *a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        self.f.write(s + "\n")
        self.f.flush()


# ---- sections -------------------------------------------------------------------------------

def section_paths(b, args, out, results):
    cases = [(q, s) for q in args.qos for s in args.sizes]
    paths = [p for p in args.paths if p != "relay" or b.have_relay]
    if "relay" in args.paths and not b.have_relay:
        out(f"NOTE: {b.relay} not found: the relay path is skipped")
    runs = {}  # (path, qos, size) -> [result per round]
    for rnd in range(args.rounds):
        for ci, (q, s) in enumerate(cases):
            k = (rnd + ci) % len(paths)
            order = paths[k:] + paths[:k]  # interleaved: each round starts elsewhere
            for path in order:
                r = b.run_path(path, q, s, args.n)
                runs.setdefault((path, q, s), []).append(r)
                print(f"  round {rnd + 1} qos{q} {s}B {path:10s} {r['rate']:9.0f} msg/s "
                      f"lost={r['lost']} dup={r['dup']}", file=sys.stderr, flush=True)
    results["paths"] = {f"{p}/{q}/{s}": v for (p, q, s), v in runs.items()}
    print_paths(runs, cases, paths, args, out)
    return runs


ROLES = ("pub", "A", "C", "relay", "B", "sub")


def print_paths(runs, cases, paths, args, out):
    ncpu = os.cpu_count()
    out()
    out(f"## Throughput: {args.n} messages, {args.rounds} interleaved rounds, median [min-max]")
    out()
    out("CPU us/msg: user + system time of each process over the run (/proc/PID/stat) divided "
        "by the messages; `all` adds every process, and `ceiling` = "
        f"{ncpu} CPUs x 1e6 / all: the rate at which this machine runs out of CPU.")
    out()
    for q, s in cases:
        out(f"### QoS {q}, {s} B payload")
        out()
        out("| path | msg/s | lost | dup | CPU us/msg: pub / A / C or relay / B / sub | "
            "all | ceiling msg/s | RSS MiB (VmHWM): A / C or relay / B |")
        out("|---|---|---|---|---|---|---|---|")
        for p in paths:
            rs = runs.get((p, q, s), [])
            if not rs:
                continue
            mid = {}
            for role in ROLES:
                xs = [r["cpu"][role] for r in rs if role in r["cpu"]]
                mid[role] = f"{med(xs):.2f}" if xs else "-"
            total = med([sum(r["cpu"].values()) for r in rs])
            hw = {}
            for role in ("A", "C", "relay", "B"):
                xs = [r["hwm_mib"][role] for r in rs if role in r["hwm_mib"]]
                hw[role] = f"{med(xs):.1f}" if xs else "-"
            mid_c = mid["relay"] if p == "relay" else mid["C"]
            hw_c = hw["relay"] if p == "relay" else hw["C"]
            out(f"| {p} | {kmsg([r['rate'] for r in rs])} | "
                f"{sum(r['lost'] for r in rs)} | {sum(r['dup'] for r in rs)} | "
                f"{mid['pub']} / {mid['A']} / {mid_c} / {mid['B']} / {mid['sub']} | "
                f"{total:.1f} | {ncpu * 1e6 / total / 1000:.0f}k | "
                f"{hw['A']} / {hw_c} / {hw['B']} |")
        out()
        if ("relay", q, s) in runs:
            rr = runs[("relay", q, s)]
            for other, target in (("standalone", 1.5 if q else 1.2), ("bridge", 0.95),
                                  ("direct", None)):
                if (other, q, s) not in runs:
                    continue
                ro = runs[(other, q, s)]
                ratios = [x["rate"] / y["rate"] for x, y in zip(rr, ro) if y["rate"]]
                t = f" (target >= {target}: {'met' if med(ratios) >= target else 'MISSED'})" \
                    if target and s == 64 else ""
                out(f"- relay / {other} msg/s: {fmt_range(ratios, '{:.2f}')}{t}")
            if ("standalone", q, s) in runs:
                rc = [x["cpu"]["relay"] / y["cpu"]["C"]
                      for x, y in zip(rr, runs[("standalone", q, s)]) if y["cpu"].get("C")]
                out(f"- relay CPU / standalone Mosquitto CPU per message: "
                    f"{fmt_range(rc, '{:.2f}')} (target <= 0.25: "
                    f"{'met' if rc and med(rc) <= 0.25 else 'MISSED'})")
                ks = [r["sys_share"]["relay"] for r in rr if "sys_share" in r]
                kc = [r["sys_share"]["C"] for r in runs[("standalone", q, s)]
                      if "sys_share" in r]
                if ks and kc:
                    out(f"- share of that CPU spent in the kernel (system time): relay "
                        f"{med(ks) * 100:.0f}%, standalone Mosquitto {med(kc) * 100:.0f}%")
                # what the brokers and clients alone allow: the relay path with a free relay
                rest = med([sum(v for k, v in r["cpu"].items() if k != "relay") for r in rr])
                free = ncpu * 1e6 / rest
                st = med([r["rate"] for r in runs[("standalone", q, s)]])
                out(f"- CPU budget: the relay path's other processes need {rest:.1f} us/msg, "
                    f"so with a relay costing nothing its CPU ceiling would be "
                    f"{free / 1000:.0f}k msg/s, {free / st:.2f}x the standalone path's median")
            out()


def section_latency(b, args, out, results, runs):
    cases = [(q, s) for q in args.qos for s in args.sizes]
    paths = [p for p in args.paths if p != "relay" or b.have_relay]
    half = {}
    for q, s in cases:
        base = "relay" if b.have_relay and ("relay", q, s) in runs else "direct"
        if args.rate:
            half[(q, s)] = args.rate
        elif (base, q, s) in runs:
            half[(q, s)] = med([r["rate"] for r in runs[(base, q, s)]]) / 2
        else:
            half[(q, s)] = 20000
    loads = [("half", "half the relay path's median msg/s", half, args.latency_secs)]
    if args.light_rate:
        loads.append(("light", f"a light {args.light_rate:.0f} msg/s",
                      {c: args.light_rate for c in cases}, min(args.latency_secs, 2.0)))
    results["latency"] = {}
    for key, title, rates, secs in loads:
        lat = {}
        for rnd in range(args.rounds):
            for ci, (q, s) in enumerate(cases):
                k = (rnd + ci) % len(paths)
                for path in paths[k:] + paths[:k]:
                    rate = rates[(q, s)]
                    n = int(min(args.n, max(2000, rate * secs)))
                    r = b.run_path(path, q, s, n, rate=rate)
                    r["target_rate"] = rate
                    lat.setdefault((path, q, s), []).append(r)
                    print(f"  latency round {rnd + 1} qos{q} {s}B {path:10s} at {rate:.0f}/s: "
                          f"p50 {r['p50']:.0f} us p99 {r['p99']:.0f} us", file=sys.stderr,
                          flush=True)
        results["latency"][key] = {f"{p}/{q}/{s}": v for (p, q, s), v in lat.items()}
        out(f"## Latency at a fixed rate: {title} ({secs:g} s of messages, {args.rounds} "
            "rounds; p50 median [min-max] / p99 median [min-max], microseconds)")
        out()
        out("| QoS | payload | msg/s | " + " | ".join(paths) + " |")
        out("|---|---|---|" + "---|" * len(paths))
        for q, s in cases:
            cells = []
            for p in paths:
                rs = lat.get((p, q, s), [])
                sat = any(r["rate"] < 0.9 * r["target_rate"] for r in rs)
                lost = sum(r["lost"] for r in rs)
                cells.append(fmt_range([r["p50"] for r in rs]) + " / " +
                             fmt_range([r["p99"] for r in rs]) +
                             (" (saturated)" if sat else "") + (f" lost {lost}" if lost else ""))
            out(f"| {q} | {s} B | {rates[(q, s)]:.0f} | " + " | ".join(cells) + " |")
        out()
    out("(saturated: that path delivered under 90% of the rate asked, so its latency is "
        "queueing)")
    out()


def section_nagle(b, args, out, results):
    if not b.have_relay:
        return
    variants = [("TCP_NODELAY everywhere (default)", True, True),
                ("loadgen without TCP_NODELAY", False, True),
                ("loadgen and brokers without TCP_NODELAY", False, False)]
    res = {}
    for rnd in range(args.rounds):
        for q in args.qos:
            for name, nd, bnd in variants:
                r = b.run_path("relay", q, 64, args.n, nodelay=nd, broker_nodelay=bnd)
                res.setdefault((name, q, "max"), []).append(r)
                rate = args.nagle_rate or 10000
                n = int(min(args.n, rate * args.latency_secs))
                r = b.run_path("relay", q, 64, n, rate=rate, nodelay=nd, broker_nodelay=bnd)
                res.setdefault((name, q, "lat"), []).append(r)
    results["nagle"] = {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in res.items()}
    out("## Nagle: the relay path, 64 B, max msg/s and latency at "
        f"{args.nagle_rate or 10000} msg/s")
    out()
    out("| setting | QoS | msg/s | relay CPU us/msg | p50 / p99 us at fixed rate |")
    out("|---|---|---|---|---|")
    for name, _, _ in variants:
        for q in args.qos:
            m, l_ = res[(name, q, "max")], res[(name, q, "lat")]
            out(f"| {name} | {q} | {kmsg([r['rate'] for r in m])} | "
                f"{med([r['cpu']['relay'] for r in m]):.2f} | "
                f"{med([r['p50'] for r in l_]):.0f} / {med([r['p99'] for r in l_]):.0f} |")
    out()


def section_batching(b, args, out, results):
    """The relay path with read batching off (batch_wait_us = 0) and at the relay's default:
    max msg/s and CPU, then latency at a light rate and at half the slower variant's max."""
    if not b.have_relay:
        return
    variants = [("off (batch_wait_us = 0)", 0), ("default (batch_wait_us = 300)", None)]
    res = {}
    for rnd in range(args.rounds):
        for q in args.qos:
            for name, bw in variants:
                r = b.run_path("relay", q, 64, args.n, batch_wait_us=bw)
                res.setdefault((name, q, "max"), []).append(r)
    half = {q: min(med([r["rate"] for r in res[(name, q, "max")]]) for name, _ in variants) / 2
            for q in args.qos}
    for rnd in range(args.rounds):
        for q in args.qos:
            for name, bw in variants:
                for key, rate in (("light", args.light_rate or 10000), ("half", half[q])):
                    n = int(min(args.n, max(2000, rate * min(args.latency_secs, 2.0))))
                    r = b.run_path("relay", q, 64, n, rate=rate, batch_wait_us=bw)
                    res.setdefault((name, q, key), []).append(r)
    results["batching"] = {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in res.items()}
    out("## Read batching: the relay path, 64 B, batching off and on")
    out()
    out("max msg/s with the CPU of the relay and of all five processes per message; p50 / p99 "
        f"latency (us) at {args.light_rate or 10000:.0f} msg/s and at half the slower "
        "variant's max (" + ", ".join(f"QoS {q}: {half[q]:.0f}" for q in args.qos) + " msg/s).")
    out()
    out("| batching | QoS | msg/s | relay CPU us/msg | all CPU us/msg | p50 / p99 light | "
        "p50 / p99 half |")
    out("|---|---|---|---|---|---|---|")
    for q in args.qos:
        for name, _ in variants:
            m = res[(name, q, "max")]
            lt, hf = res[(name, q, "light")], res[(name, q, "half")]
            out(f"| {name} | {q} | {kmsg([r['rate'] for r in m])} | "
                f"{med([r['cpu']['relay'] for r in m]):.2f} | "
                f"{med([sum(r['cpu'].values()) for r in m]):.1f} | "
                f"{med([r['p50'] for r in lt]):.0f} / {med([r['p99'] for r in lt]):.0f} | "
                f"{med([r['p50'] for r in hf]):.0f} / {med([r['p99'] for r in hf]):.0f} |")
    out()


def section_alone(b, args, out, results):
    if not b.have_relay:
        out("NOTE: no relay binary: the relay-alone sections are skipped")
        return
    rows = []
    for rnd in range(args.rounds):
        for q in (0, 1):
            for v in ("3.1.1", "5"):
                r = b.run_alone(q, args.alone_n, version=v)
                rows.append((q, v, r))
                print(f"  alone round {rnd + 1} qos{q} v{v}: {r['rate']:.0f} msg/s "
                      f"lost={r['lost']:.0f}", file=sys.stderr, flush=True)
    results["alone"] = [{"qos": q, "version": v, **r} for q, v, r in rows]
    out(f"## The relay on its own (fakebroker on CPU 0, relay pinned to CPU 1), 64 B, "
        f"{args.alone_n} messages, window {args.alone_window}, {args.rounds} rounds")
    out()
    out("msg/s: measured at the fake destination. CPU: the relay's on-CPU time per message; "
        "one core's worth of it, 10^6 / CPU, is the rate at which the relay itself would "
        "saturate its core (QoS 1 is bound by the window's round trip before that).")
    out()
    out("| QoS | MQTT | msg/s | relay CPU us/msg | 10^6 / CPU | lost | dup | target |")
    out("|---|---|---|---|---|---|---|---|")
    for q in (0, 1):
        for v in ("3.1.1", "5"):
            rs = [r for qq, vv, r in rows if qq == q and vv == v]
            rate = med([r["rate"] for r in rs])
            cpu = med([r["cpu_us"] for r in rs])
            tgt = 1e6 if q == 0 else 4e5
            out(f"| {q} | {v} | {kmsg([r['rate'] for r in rs])} | {cpu:.2f} | "
                f"{1e3 / cpu:.0f}k | {sum(r['lost'] for r in rs):.0f} | "
                f"{sum(r['dup'] for r in rs):.0f} | >= {tgt / 1000:.0f}k: "
                f"{'met' if rate >= tgt else 'MISSED'} |")
    out()


def gen_routes(n):
    """n - 1 routes that do not match bench/t (with wildcards, like real ones), then one that
    does, last: a linear scan has to reject all the others first."""
    routes = []
    for i in range(n - 1):
        routes.append(f"site{i % 100}/+/dev{i}/#" if i % 2 else f"bench/r{i}/+")
    routes.append("bench/t")
    return routes


def section_routes(b, args, out, results):
    if not b.have_relay:
        return
    res = {}
    sizes = {}  # messages per run: alone_n, or about 3 s worth where that would take long
    for v in ("3.1.1", "5"):
        for q in (0, 1):
            pilot = b.run_alone(q, 20000, routes=gen_routes(args.routes), version=v)
            sizes[(v, q, 1)] = args.alone_n
            sizes[(v, q, args.routes)] = int(min(args.alone_n, max(20000, pilot["rate"] * 3)))
    for rnd in range(args.rounds):
        for v in ("3.1.1", "5"):
            for q in (0, 1):
                for nr in (1, args.routes):
                    r = b.run_alone(q, sizes[(v, q, nr)], routes=gen_routes(nr), version=v)
                    res.setdefault((v, q, nr), []).append(r)
                    print(f"  routes round {rnd + 1} v{v} qos{q} {nr} routes: "
                          f"{r['rate']:.0f} msg/s", file=sys.stderr, flush=True)
    results["routes"] = {f"{v}/{q}/{nr}": x for (v, q, nr), x in res.items()}
    out(f"## Route matching: 1 route vs {args.routes} routes (relay alone, pinned, 64 B, "
        f"{args.alone_n} messages, or about 3 s worth when slower); the route that matches is "
        "the last one")
    out()
    out("In MQTT 5 the fake source puts the Subscription Identifier of the matching "
        "subscription in each PUBLISH, as a broker does, and the relay uses it instead of "
        "matching topics; in 3.1.1 it has to match the topic against its routes.")
    out()
    out("The CPU columns are steadier than msg/s, which at QoS 1 follows the window's round "
        "trip through two sleeping processes: relay CPU per message with 1 route / with "
        f"{args.routes} (ratio = 1-route CPU / {args.routes}-route CPU, 1.0 = no cost).")
    out()
    out(f"| MQTT | QoS | 1 route msg/s | {args.routes} routes msg/s | ratio | relay CPU us/msg "
        f"(1 / {args.routes}) | CPU ratio | relay VmHWM MiB (1 / {args.routes}) | "
        "target >= 0.80 |")
    out("|---|---|---|---|---|---|---|---|---|")
    for v in ("3.1.1", "5"):
        for q in (0, 1):
            one, many = res[(v, q, 1)], res[(v, q, args.routes)]
            ratio = [m["rate"] / o["rate"] for o, m in zip(one, many)]
            c1, cm = med([r["cpu_us"] for r in one]), med([r["cpu_us"] for r in many])
            out(f"| {v} | {q} | {kmsg([r['rate'] for r in one])} | "
                f"{kmsg([r['rate'] for r in many])} | {fmt_range(ratio, '{:.3f}')} | "
                f"{c1:.2f} / {cm:.2f} | {c1 / cm:.3f} | "
                f"{med([r['hwm_kib'] for r in one]) / 1024:.1f} / "
                f"{med([r['hwm_kib'] for r in many]) / 1024:.1f} | "
                f"{'met' if med(ratio) >= 0.8 else 'MISSED'} (CPU: "
                f"{'met' if c1 / cm >= 0.8 else 'MISSED'}) |")
    out()


def section_rss(b, args, out, results):
    if not b.have_relay:
        return
    res = {}
    for size in (64, 1024):
        for held in (0, args.held):
            if held == 0:
                # connected, one message forwarded and acknowledged: the idle footprint
                r = b.run_alone(1, 1, size=size, window=args.held)
                res[(size, 0)] = {"rss_kib": r["hwm_kib"], "hwm_kib": r["hwm_kib"]}
            else:
                res[(size, held)] = b.run_alone(1, held, size=size, window=held, hold=True)
    results["rss"] = {f"{s}/{h}": v for (s, h), v in res.items()}
    out(f"## Relay memory with {args.held} QoS 1 messages in flight (the destination "
        "acknowledges nothing)")
    out()
    out(f"Relay configuration: receive_maximum = {args.held} on the source, max_inflight = "
        f"{args.held} on the destination, ack_timeout = 600000 (so that it does not reconnect "
        "while holding).")
    out()
    out("| payload | idle VmHWM MiB | messages held | VmRSS MiB while held | VmHWM MiB | "
        "target <= 16 MiB |")
    out("|---|---|---|---|---|---|")
    for size in (64, 1024):
        i, h = res[(size, 0)], res[(size, args.held)]
        out(f"| {size} B | {i['hwm_kib'] / 1024:.1f} | {h['held']} | {h['rss_kib'] / 1024:.1f} | "
            f"{h['hwm_kib'] / 1024:.1f} | {'met' if h['hwm_kib'] <= 16 * 1024 else 'MISSED'} |")
    out()
    out("(fewer messages held than asked: the relay stopped reading its source at its byte "
        "window's high mark, RELAY_WINDOW_HIGH, before its message limit)")
    out()


def callgrind_functions(path, inclusive):
    """{function: Ir} from callgrind_annotate (every function, exclusive or inclusive)."""
    txt = subprocess.run(["callgrind_annotate", "--threshold=100",
                          f"--inclusive={'yes' if inclusive else 'no'}", path],
                         capture_output=True, text=True).stdout
    funcs = {}
    for ln in txt.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", ln)
        if not m or "PROGRAM TOTALS" in ln:
            continue
        name = m.group(2).strip()
        name = re.sub(r"'\d+", "", name)  # recursion levels
        name = re.sub(r"^\?\?\?:", "", name)
        name = re.sub(r"^\S*/", "", name)  # source paths
        name = re.sub(r"\[(?:[^\]]*/)?([^/\]]+)\]$", r"[\1]", name)  # object: base name
        funcs[name] = funcs.get(name, 0) + int(m.group(1).replace(",", ""))
    return funcs


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


def section_profile(b, args, out, results):
    if not b.have_relay:
        return
    prof = {}
    if shutil.which("valgrind") and shutil.which("callgrind_annotate"):
        out("## Instructions per forwarded message (callgrind)")
        out()
        out("Relay under `valgrind --tool=callgrind` between the fake brokers, 64 B, MQTT "
            f"3.1.1: instructions of a {args.cg_n}-message run minus those of a "
            f"{args.cg_n // 10}-message run (start-up and shutdown cancel out), divided by the "
            "difference in messages.")
        out()
        out("| QoS | instructions / message | whole run / messages |")
        out("|---|---|---|")
        per_fn = {}
        for q in (0, 1):
            tot, cgs = {}, {}
            small, big = args.cg_n // 10, args.cg_n
            for n in (small, big):
                cg = os.path.join(args.out, f"callgrind.q{q}.n{n}.out")
                # spool = false: under valgrind the fake destination's acknowledgements take
                # long enough for spool = "auto" to engage; this measures the direct path
                b.run_alone(q, n, pin=False, wrap=["valgrind", "--tool=callgrind",
                                                    f"--callgrind-out-file={cg}"], spool="false")
                tot[n], cgs[n] = callgrind_total(cg), cg
            per = (tot[big] - tot[small]) / (big - small)
            prof[f"ir_q{q}"] = per
            out(f"| {q} | {per:.0f} | {tot[big] / big:.0f} |")
            for incl in (False, True):
                fb = callgrind_functions(cgs[big], incl)
                fs = callgrind_functions(cgs[small], incl)
                per_fn[(q, incl)] = sorted(
                    ((k, (v - fs.get(k, 0)) / (big - small)) for k, v in fb.items()),
                    key=lambda kv_: -kv_[1])
        out()
        for incl in (False, True):
            what = ("inclusive: the function and what it calls" if incl
                    else "exclusive: the function alone")
            out(f"Per forwarded message, by function ({what}): instructions of the big run "
                "minus the small run, divided by the difference in messages.")
            out()
            out("| function | QoS 0 instr/msg | QoS 1 instr/msg |")
            out("|---|---|---|")
            q1 = dict(per_fn[(1, incl)])
            q0 = dict(per_fn[(0, incl)])
            # the frames every message passes through on its way down from main() say nothing
            skip = re.compile(r"ld-linux|below main|libc-start|libc_start_call_main|^main |"
                              r"relay_transport_service|lws_service|_lws_plat_service")
            names = [k for k, v in per_fn[(1, incl)]
                     if v >= 2 and not (incl and (skip.search(k) or k.startswith("0x")))]
            names = names[: args.top]
            names += [k for k, v in per_fn[(0, incl)] if v >= 2 and k not in names
                      and not (incl and (skip.search(k) or k.startswith("0x")))][:5]
            for k in names:
                out(f"| `{k[:90]}` | {q0.get(k, 0):.0f} | {q1.get(k, 0):.0f} |")
            out()
            with open(os.path.join(args.out, f"callgrind.per-message."
                                   f"{'incl' if incl else 'self'}.txt"), "w") as f:
                for q in (0, 1):
                    f.write(f"# QoS {q}\n")
                    for k, v in per_fn[(q, incl)]:
                        if abs(v) >= 0.5:
                            f.write(f"{v:10.1f}  {k}\n")
    if shutil.which("perf"):
        # syscalls per message: the relay alone, then the relay between two Mosquittos
        cols = {}
        for q in (0, 1):
            st = os.path.join(args.out, f"perf-stat.alone.q{q}.csv")
            try:
                b.run_alone(q, args.perf_n, perf_stat=st)
                cols[f"alone QoS {q}"] = (perf_counts(st), args.perf_n)
            except RuntimeError as e:
                out(f"(perf stat failed: {e})")
        for q in (0, 1):
            st = os.path.join(args.out, f"perf-stat.path.q{q}.csv")
            try:
                b.run_path("relay", q, 64, args.n, perf_stat=st)
                cols[f"A->relay->B QoS {q}"] = (perf_counts(st), args.n)
            except RuntimeError as e:
                out(f"(perf stat failed: {e})")
        if cols:
            out("## System calls per forwarded message (perf stat -e 'syscalls:sys_enter_*' "
                f"on the relay; alone: {args.perf_n} messages, pinned; between two Mosquittos: "
                f"{args.n} messages; 64 B, MQTT 3.1.1)")
            out()
            names = sorted({k for c, n in cols.values() for k, v in c.items() if v / n >= 0.0005},
                           key=lambda k: -max(c.get(k, 0) / n for c, n in cols.values()))
            out("| syscall | " + " | ".join(cols) + " |")
            out("|---|" + "---|" * len(cols))
            for k in names:
                out(f"| {k} | " + " | ".join(f"{c.get(k, 0) / n:.4f}"
                                          for c, n in cols.values()) + " |")
            out("| **all** | " + " | ".join(f"{sum(c.values()) / n:.3f}"
                                            for c, n in cols.values()) + " |")
            out()
            prof["syscalls"] = {k: {s_: v / n for s_, v in c.items() if v}
                                for k, (c, n) in cols.items()}
        out("## Where the relay's time goes (perf record -e cpu-clock on the relay, self time "
            "by symbol, >= 0.7 %)")
        out()
        for q in (0, 1):
            pd = os.path.join(args.out, f"perf.alone.q{q}.data")
            try:
                b.run_alone(q, args.perf_n, perf_record=pd)
            except RuntimeError as e:
                out(f"(perf record failed: {e})")
                continue
            out(f"Relay alone (pinned), QoS {q}, {args.perf_n} messages:")
            out()
            perf_top(pd, out)
        for q in (0, 1):
            pd = os.path.join(args.out, f"perf.path.q{q}.data")
            try:
                b.run_path("relay", q, 64, args.n, perf_record=pd)
            except RuntimeError as e:
                out(f"(perf record failed: {e})")
                continue
            out(f"Relay between two Mosquittos, QoS {q}, {args.n} messages:")
            out()
            perf_top(pd, out)
    results["profile"] = prof


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BENCH_BUILD", "/tmp/relay-bench-build"),
                    help="CMake build directory holding relay/mqtt-relay and test/bench/")
    ap.add_argument("-n", type=int, default=200000, help="messages per run (default 200000)")
    ap.add_argument("--quick", action="store_true",
                    help="20000 messages per run (relay alone: 200000), fewer profile runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--qos", default="0,1")
    ap.add_argument("--sizes", default="64,1024")
    ap.add_argument("--mqtt", default="3.1.1", choices=["3.1.1", "5"],
                    help="protocol of loadgen, the relay and Mosquitto's bridges")
    ap.add_argument("--rate", type=float, default=0,
                    help="fixed rate for the latency runs (default: half the relay's msg/s)")
    ap.add_argument("--latency-secs", type=float, default=4.0)
    ap.add_argument("--light-rate", type=float, default=10000,
                    help="a second, light fixed rate for the latency runs (0 = none)")
    ap.add_argument("--nagle-rate", type=float, default=10000)
    ap.add_argument("--batch-wait-us", type=int, default=None,
                    help="relay.batch_wait_us for every relay run (default: the relay's own)")
    ap.add_argument("--alone-n", type=int, default=1000000)
    ap.add_argument("--alone-window", type=int, default=1000,
                    help="relay receive_maximum / max_inflight and the fake source's window "
                         "in the relay-alone runs (default 1000)")
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--held", type=int, default=10000)
    ap.add_argument("--cg-n", type=int, default=50000)
    ap.add_argument("--perf-n", type=int, default=3000000)
    ap.add_argument("--top", type=int, default=25)
    speed.add_args(ap)  # issue 15: tls, mqtt5, wan, syscalls
    ap.add_argument("--sections",
                    default="paths,latency,nagle,batching,alone,routes,rss,profile," +
                    speed.SECTIONS)
    ap.add_argument("--out", default=None, help="directory for the report and raw results")
    ap.add_argument("--bifromq-n", type=int, default=2000,
                    help="bifromq section (not in the default list: --sections bifromq): "
                         "messages per run (bench_bifromq.py)")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="print the throughput tables again from a results.json, run nothing")
    args = ap.parse_args()
    if args.quick:
        args.n = 20000 if args.n == 200000 else args.n
        args.alone_n = 200000 if args.alone_n == 1000000 else args.alone_n
        args.cg_n = 20000 if args.cg_n == 50000 else args.cg_n
        args.latency_secs = 2.0
    args.paths = [p for p in args.paths.split(",") if p]
    args.qos = [int(x) for x in args.qos.split(",")]
    args.sizes = [int(x) for x in args.sizes.split(",")]
    speed.fix_args(args)
    sections = set(args.sections.split(","))
    if args.render:
        with open(args.render) as f:
            res = json.load(f)
        saved = argparse.Namespace(**res["args"])
        runs = {}
        for k, v in res.get("paths", {}).items():
            p, q, s = k.split("/")
            runs[(p, int(q), int(s))] = v
        print_paths(runs, [(q, s) for q in saved.qos for s in saved.sizes],
                    [p for p in saved.paths if any(k[0] == p for k in runs)], saved, print)
        return
    args.out = args.out or tempfile.mkdtemp(prefix="relay-bench-out-")
    os.makedirs(args.out, exist_ok=True)
    if not shutil.which("mosquitto") and sections & {"paths", "latency", "nagle", "batching"}:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")

    b = Bench(args)
    for exe in (b.loadgen, b.fake):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} not found: build first (test/bench/run.sh does)")
    out = Report(os.path.join(args.out, "report.md"))
    m = machine()
    results = {"machine": m, "args": {k: v for k, v in vars(args).items()}}
    out(f"# mqtt-relay benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    out()
    out(f"- machine: {m['nproc']} CPUs, {m['model']}, kernel {m['kernel']} ({m['os']})")
    out(f"- {m['mosquitto']}; mqtt-relay at git {m['git']}"
        + ("" if b.have_relay else " (NOT BUILT: relay figures missing)"))
    out(f"- every Mosquitto: persistence false, max_queued_messages 0 (no queue limit), "
        f"max_inflight_messages {INFLIGHT}, set_tcp_nodelay true (unless stated), "
        "loopback listener only")
    out(f"- bridges (in-broker and standalone): `topic bench/# out|in 1`, "
        f"bridge_protocol_version {'mqttv50' if args.mqtt == '5' else 'mqttv311'}, "
        "try_private true, cleansession true")
    out(f"- relay: one route a -> b, filter bench/#, qos 1, MQTT {args.mqtt} on both sides, "
        f"clean_start true, receive_maximum {INFLIGHT}, max_inflight {INFLIGHT}")
    out(f"- loadgen: MQTT {args.mqtt}, TCP_NODELAY on (unless stated), QoS 1 window "
        f"{INFLIGHT}; one publisher on A, one subscriber on B (on A for direct)")
    with open("/proc/loadavg") as f:
        out(f"- load average at the start: {' '.join(f.read().split()[:3])} (other processes "
            "on the machine disturb the figures)")
    out(f"- output directory: {args.out}")
    out()
    try:
        runs = {}
        if "paths" in sections:
            runs = section_paths(b, args, out, results)
        if "latency" in sections:
            section_latency(b, args, out, results, runs)
        if "nagle" in sections:
            section_nagle(b, args, out, results)
        if "batching" in sections:
            section_batching(b, args, out, results)
        if "alone" in sections:
            section_alone(b, args, out, results)
        if "routes" in sections:
            section_routes(b, args, out, results)
        if "rss" in sections:
            section_rss(b, args, out, results)
        if "profile" in sections:
            section_profile(b, args, out, results)
        if "bifromq" in sections:  # bench_bifromq.py (issue 12)
            import bench_bifromq
            bench_bifromq.section(b, args, out, results, sys.modules[__name__])
        speed.run_sections(b, args, out, results, sections)
    finally:
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        cleanup()
    with open("/proc/loadavg") as f:
        out(f"(load average at the end: {' '.join(f.read().split()[:3])})")
    print(f"\nreport: {args.out}/report.md", file=sys.stderr)


if __name__ == "__main__":
    main()
