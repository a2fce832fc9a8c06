#!/usr/bin/env python3
"""Self-test of delayproxy (issue 15): the delay is what was asked, per direction, and the bytes
arrive intact and in order at bench rates.

    python3 test/bench/test_delayproxy.py --delayproxy BUILD/test/bench/delayproxy [-d 25]

Cases (everything on 127.0.0.1, free ports, every wait bounded, the proxy stopped by PID):
  ping-pong   64-byte request/answer through the proxy to an echo server, one at a time:
              every round trip takes at least 2 x delay (the proxy never delivers early) and
              the fastest at most 2 x delay + 3 ms (the median is printed: on a loaded machine
              the proxy waits for a CPU, which says nothing about its delay)
  asymmetric  -u D/2 -w 3D/2: the round trip is still their sum
  bulk        100 MiB one way to a sink that answers the SHA-256 of what it read once it saw
              EOF: the digest matches (intact, in order, the EOF passed on after the bytes) and
              the rate is printed (the target is ~50 MB/s)
  small       40,000 stamped 64-byte writes at ~20,000/s (TCP_NODELAY): all arrive in order,
              none early, and the fastest within 2 ms of the delay asked (p50 and p99 printed)
  counters    -s prints the counters at SIGTERM, and their byte counts match what was sent
Exit 0 pass, 1 fail, 77 skip (no binary).
"""
import argparse
import hashlib
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

SKIP = 77
checks = 0


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    global checks
    checks += 1
    if not cond:
        raise Failure(what + (": " + detail if detail else ""))
    print("  ok - %s" % what, flush=True)


def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def serve(lsock, handler):
    def loop():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


def sink_sha(c):
    h = hashlib.sha256()
    n = 0
    with c:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(struct.pack("!Q", n) + h.digest())


class Proxy:
    def __init__(self, binary, target_port, args):
        self.p = subprocess.Popen([binary, "-t", "127.0.0.1:%d" % target_port, "-s"] + args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        line = b""
        t = threading.Timer(10, self.p.kill)
        t.start()
        try:
            line = self.p.stdout.readline()
        finally:
            t.cancel()
        if not line.startswith(b"listening 127.0.0.1:"):
            raise Failure("delayproxy did not say where it listens: %r %r"
                          % (line, self.p.stderr.read()))
        self.port = int(line.split(b":")[1])

    def stop(self):
        """SIGTERM, bounded wait; returns the counters line (-s) from stderr."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            _, err = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate(timeout=5)
        return err.decode("utf-8", "replace")


def pingpong(port, n=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    msg = os.urandom(64)
    with s:
        for _ in range(n):
            t0 = time.monotonic()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(64 - len(got))
                if not d:
                    raise Failure("the echo connection closed")
                got += d
            rtts.append((time.monotonic() - t0) * 1000)
            if got != msg:
                raise Failure("echo answered other bytes")
    return rtts


def run(binary, d):
    procs = []
    try:
        el = listen()
        serve(el, echo)
        sl = listen()
        serve(sl, sink_sha)

        print("\n== ping-pong, -d %g" % d, flush=True)
        p = Proxy(binary, el.getsockname()[1], ["-d", str(d)])
        procs.append(p)
        rtts = pingpong(p.port)
        med = statistics.median(rtts)
        print("   . round trips (ms): min %.2f median %.2f max %.2f" % (min(rtts), med,
                                                                      max(rtts)))
        check(min(rtts) >= 2 * d, "no round trip shorter than 2 x %g ms" % d,
              "min %.3f" % min(rtts))
        check(min(rtts) <= 2 * d + 3, "the fastest round trip within 3 ms of %g ms" % (2 * d),
              "min %.3f (median %.3f)" % (min(rtts), med))

        print("\n== asymmetric, -u %g -w %g" % (d / 2, 3 * d / 2), flush=True)
        pa = Proxy(binary, el.getsockname()[1], ["-u", str(d / 2), "-w", str(3 * d / 2)])
        procs.append(pa)
        rtts = pingpong(pa.port, 20)
        med = statistics.median(rtts)
        print("   . round trips (ms): min %.2f median %.2f" % (min(rtts), med))
        check(2 * d <= min(rtts) <= 2 * d + 3,
              "round trip = up + down delay (%g ms)" % (2 * d), "min %.3f median %.3f"
              % (min(rtts), med))
        pa.stop()

        print("\n== bulk, 100 MiB one way", flush=True)
        pb = Proxy(binary, sl.getsockname()[1], ["-d", str(d)])
        procs.append(pb)
        total = 100 << 20
        block = os.urandom(1 << 20)
        h = hashlib.sha256()
        s = socket.create_connection(("127.0.0.1", pb.port), timeout=60)
        t0 = time.monotonic()
        with s:
            for i in range(total >> 20):
                chunk = block[i:] + block[:i]  # each MiB different
                h.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            ans = b""
            while len(ans) < 40:
                x = s.recv(40 - len(ans))
                if not x:
                    break
                ans += x
        secs = time.monotonic() - t0
        rate = total / secs / 1e6
        print("   . %.1f MB/s (%.2f s, including one round trip of %g ms)" % (rate, secs,
                                                                               2 * d))
        check(len(ans) == 40 and struct.unpack("!Q", ans[:8])[0] == total,
              "the sink read all %d bytes, then the EOF" % total,
              "answer %r" % ans[:8])
        check(ans[8:] == h.digest(), "SHA-256 of what arrived = of what was sent")
        err = pb.stop()
        print("   . " + err.strip())
        check(("up: %d bytes" % total) in err, "the counters show the %d bytes up" % total)

        print("\n== small writes, ~20,000/s", flush=True)
        arrivals = []

        def stamp_sink(c):
            buf = b""
            with c:
                while True:
                    x = c.recv(65536)
                    if not x:
                        return
                    now = time.monotonic_ns()
                    buf += x
                    k = len(buf) // 64
                    for j in range(k):
                        seq, ts = struct.unpack_from("!QQ", buf, j * 64)
                        arrivals.append((seq, now - ts))
                    buf = buf[k * 64:]
        tl = listen()
        serve(tl, stamp_sink)
        ps = Proxy(binary, tl.getsockname()[1], ["-d", str(d)])
        procs.append(ps)
        n = 40000
        s = socket.create_connection(("127.0.0.1", ps.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pad = b"\0" * 48
        t0 = time.monotonic()
        with s:
            for i in range(n):
                if i % 10 == 0:  # paced by sleeping: a spinning sender would starve the proxy
                    wait = t0 + i / 20000.0 - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                s.sendall(struct.pack("!QQ", i, time.monotonic_ns()) + pad)
            sent_secs = time.monotonic() - t0
            deadline = time.monotonic() + 30
            while len(arrivals) < n and time.monotonic() < deadline:
                time.sleep(0.05)
        seqs = [a[0] for a in arrivals]
        check(seqs == list(range(n)), "all %d small writes arrived, in order" % n,
              "%d arrived" % len(seqs))
        lat = sorted(a[1] / 1e6 for a in arrivals)
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
        print("   . %d writes in %.2f s (%.0f/s); one-way delay ms: min %.2f p50 %.2f p99 %.2f "
              "max %.2f" % (n, sent_secs, n / sent_secs, lat[0], p50, p99, lat[-1]))
        check(lat[0] >= d, "no write delivered before %g ms" % d, "min %.3f" % lat[0])
        check(lat[0] <= d + 2, "the fastest write within 2 ms of %g ms" % d, "min %.3f" % lat[0])
        err = ps.stop()
        print("   . " + err.strip())
    finally:
        for p in procs:
            p.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delayproxy", required=True)
    ap.add_argument("-d", type=float, default=25.0, help="one-way delay, ms (default 25)")
    a = ap.parse_args()
    if not os.access(a.delayproxy, os.X_OK):
        print("SKIP: no delayproxy binary at %s (build the delayproxy target)" % a.delayproxy)
        sys.exit(SKIP)
    try:
        run(a.delayproxy, a.d)
    except Failure as e:
        print("\nFAIL: %s" % e, flush=True)
        sys.exit(1)
    print("\nPASS: %d checks" % checks, flush=True)


if __name__ == "__main__":
    main()
