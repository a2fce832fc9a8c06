"""blackhole: a peer that stops answering without closing (issue 13, dead-link detection).

A proxy process that stops forwarding (or a SIGSTOPped broker) does not make a dead link: the
kernel still ACKs what arrives and answers keepalive probes, so TCP keepalive never fires and
TCP_USER_TIMEOUT fires only once the receive window is full. A dead link is one where packets
vanish. This kernel has no netem, no iptables/nft programs (the kernel has nf_tables, the tools
are not installed) and no tc gact action, but it has the clsact qdisc and cls_bpf, and a
*classic* BPF program in direct-action mode may return TC_ACT_SHOT. So PortDrop puts on the
ingress of `lo` (every loopback packet passes there once) a filter that drops every TCP packet
whose source or destination port is one of ours, in both directions, SYNs included: the
sockets at both ends stay open and hear nothing, exactly as when a NAT or a firewall on the path
forgets the connection or a cable is pulled. (At ingress: the senders' stacks believe their
packets left; dropped at egress they would be told, and keepalive would never give up.)
off() removes the filter: the retransmissions get through again, and the connection resumes
if neither end gave up.

    hole = BlackHole(t, broker.port).start()  # a fault_proxy.FaultProxy to the broker, plus
                                              # the filter on its port (t: relaytest.Test)
    url = hole.url                            # the relay connects here
    hole.drop()                               # from now on nothing crosses, nothing is ACKed
    hole.restore()                            # packets flow again
    hole.proxy.live()                         # FaultProxy's record of the link (packets)
    pd = PortDrop(port).on() ... pd.off()     # the filter alone, on any port (e.g. a broker's)
    ok, why = available()                     # root and tc with clsact + cls_bpf: else skip

Only packets of the ports given are touched (other tests on the machine are not). Each filter
carries the PID of the process that added it: PortDrop removes its filter at off(), at stop(),
at interpreter exit, and removes the filters of dead processes before adding one, so a killed
test leaves nothing behind for long. The filters live on `lo` of the network namespace of the
caller (the normal one).
"""

import atexit
import os
import random
import re
import shutil
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
import fault_proxy  # noqa: E402

DEV = "lo"
# Ingress, not egress: a packet shot at egress makes dev_queue_xmit() return NET_XMIT_DROP to
# the sender's TCP, which takes it for local congestion: keepalive then re-probes every 0.5 s
# without ever counting a probe as lost (it never gives up). Shot at ingress, the packet was
# "sent" as far as the sender knows, as on a real path.
HOOK = "ingress"
PREF = 48879          # every filter of ours shares this tc priority (0xBEEF) ...
MAGIC = 0x6E657466    # ... and starts with `ld #PID; ldx #MAGIC` ("netf"): ours, and whose

TC_ACT_SHOT = 2
TC_ACT_UNSPEC = 0xFFFFFFFF  # -1: not ours, on to the next filter (the packet passes)

_lock = threading.Lock()
_live = set()
_checked = None


def _tc(*args, timeout=10):
    p = subprocess.run(["tc"] + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def program(ports, pid=None):
    """The classic BPF program (list of (code, jt, jf, k)) that returns TC_ACT_SHOT for a TCP
    packet (IPv4 or IPv6, on an Ethernet-framed device such as lo) whose source or destination
    port is in ports, TC_ACT_UNSPEC otherwise."""
    pid = os.getpid() if pid is None else pid
    ports = list(ports)
    prog = []  # (code, jt, jf, k) with jt/jf as label names or 0
    lab = {}

    def emit(code, k=0, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    emit(0x00, pid)                    # ld #pid        (a tag, overwritten below)
    emit(0x01, MAGIC)                  # ldx #magic     (a tag)
    emit(0x28, 12)                     # ldh [12]       ethertype
    emit(0x15, 0x0800, 0, "v6")        # jeq #IPv4
    emit(0x30, 23)                     # ldb [23]       IPv4 protocol
    emit(0x15, 6, 0, "pass")           # jeq #TCP
    emit(0xB1, 14)                     # ldxb 4*([14]&0xf)  IPv4 header length
    for off in (14, 16):               # TCP source port, destination port
        emit(0x48, off)                # ldh [x+off]
        for p in ports:
            emit(0x15, p, "drop", 0)   # jeq #port -> drop
    emit(0x05, 0, 0, 0)                # ja pass (patched below)
    prog[-1][3] = "pass"
    lab["v6"] = len(prog)
    emit(0x15, 0x86DD, 0, "pass")      # A is still the ethertype: jeq #IPv6
    emit(0x30, 20)                     # ldb [20]       next header (no extension headers)
    emit(0x15, 6, 0, "pass")
    for off in (54, 56):
        emit(0x28, off)                # ldh [14+40+off]
        for p in ports:
            emit(0x15, p, "drop", 0)
    lab["pass"] = len(prog)
    emit(0x06, TC_ACT_UNSPEC)          # ret #-1
    lab["drop"] = len(prog)
    emit(0x06, TC_ACT_SHOT)            # ret #TC_ACT_SHOT
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if code == 0x05:               # ja: k is the offset
            k = lab[k] - i - 1
        jt = lab[jt] - i - 1 if isinstance(jt, str) else jt
        jf = lab[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("too many ports for one program")
        out.append((code, jt, jf, k))
    return out


def bytecode(prog):
    """tc's `bytecode` text: "N,code jt jf k,..." (the format of bpf_asm -c / tcpdump -ddd)."""
    return ",".join([str(len(prog))] + ["%d %d %d %d" % ins for ins in prog])


def _ensure_clsact():
    rc, out = _tc("qdisc", "show", "dev", DEV)
    if "clsact" in out:
        return False
    rc, out = _tc("qdisc", "add", "dev", DEV, "clsact")
    if rc != 0 and "clsact" not in _tc("qdisc", "show", "dev", DEV)[1]:
        raise OSError("tc qdisc add dev %s clsact: %s" % (DEV, out.strip()))
    return rc == 0


def our_filters():
    """[(handle, owner pid, ports)] of the filters of ours on lo."""
    rc, out = _tc("filter", "show", "dev", DEV, HOOK)
    found = []
    for m in re.finditer(r"pref %d bpf .*?handle (0x[0-9a-f]+) .*?bytecode '([^']*)'" % PREF,
                         out):
        ins = [tuple(int(x) for x in i.split()) for i in m.group(2).split(",")[1:]]
        if len(ins) < 2 or ins[1][3] != MAGIC:
            continue
        ports = sorted({i[3] for i in ins if i[0] == 0x15 and i[1]})  # jeq #port -> drop
        found.append((m.group(1), ins[0][3], ports))
    return found


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _drop_idle_clsact():
    """Deletes the clsact qdisc of lo when no filter at all is left on it (as we found lo)."""
    if "filter" not in _tc("filter", "show", "dev", DEV, "egress")[1] and \
            "filter" not in _tc("filter", "show", "dev", DEV, "ingress")[1]:
        _tc("qdisc", "del", "dev", DEV, "clsact")


def sweep():
    """Removes the filters whose owner process is gone (and then the qdisc if it is idle).
    Returns how many."""
    n = 0
    for handle, pid, _ports in our_filters():
        if not _pid_alive(pid):
            _tc("filter", "del", "dev", DEV, HOOK, "pref", str(PREF), "handle", handle,
                "bpf")
            n += 1
    if n:
        _drop_idle_clsact()
    return n


def available():
    """(True, "") when PortDrop works here (root, tc, clsact, cls_bpf with a classic program in
    direct-action mode); else (False, why)."""
    global _checked
    if _checked is not None:
        return _checked
    if os.geteuid() != 0:
        _checked = (False, "not root: tc filters need CAP_NET_ADMIN")
    elif shutil.which("tc") is None:
        _checked = (False, "no tc (iproute2)")
    else:
        try:
            pd = PortDrop([1])  # port 1: nobody's
            pd.on()
            pd.off()
            _checked = (True, "")
        except (OSError, subprocess.TimeoutExpired) as e:
            _checked = (False, str(e))
    return _checked


class PortDrop:
    """A tc filter on lo that drops every TCP packet from or to the given port(s) while on."""

    def __init__(self, ports, log=None):
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        self._log = log
        self.handle = None
        self.made_qdisc = False

    @property
    def active(self):
        return self.handle is not None

    def on(self):
        if self.handle is not None:
            return self
        sweep()
        code = bytecode(program(self.ports))
        for _ in range(20):
            # (again each time: another process's sweep may have removed an idle qdisc)
            self.made_qdisc = _ensure_clsact() or self.made_qdisc
            handle = "0x%x" % random.randrange(1, 1 << 31)
            rc, out = _tc("filter", "add", "dev", DEV, HOOK, "pref", str(PREF),
                          "handle", handle, "bpf", "da", "bytecode", code)
            if rc == 0:
                break
            if "exists" not in out.lower() and "qdisc" not in out.lower() and \
                    "parent" not in out.lower():
                raise OSError("tc filter add dev %s %s ... bpf da bytecode: %s"
                              % (DEV, HOOK, out.strip()))
        else:
            raise OSError("cannot add a tc filter on %s: %s" % (DEV, out.strip()))
        self.handle = handle
        with _lock:
            _live.add(self)
        if self._log:
            self._log("dropping every packet of port(s) %s" % self.ports)
        return self

    def off(self):
        if self.handle is None:
            return self
        rc, out = _tc("filter", "del", "dev", DEV, HOOK, "pref", str(PREF), "handle",
                      self.handle, "bpf")
        if rc != 0:
            raise OSError("tc filter del handle %s: %s" % (self.handle, out.strip()))
        self.handle = None
        with _lock:
            _live.discard(self)
        if self._log:
            self._log("port(s) %s pass again" % self.ports)
        if self.made_qdisc:
            _drop_idle_clsact()  # leave lo as we found it
            self.made_qdisc = False
        return self

    def stop(self):
        self.off()


@atexit.register
def _off_all():
    with _lock:
        live = list(_live)
    for pd in live:
        try:
            pd.off()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class BlackHole:
    """A fault_proxy.FaultProxy to 127.0.0.1:upstream_port whose listening port can be turned
    into a black hole (drop()) and back (restore()). t: a relaytest.Test (its cleanup stops
    this) or None."""

    def __init__(self, t, upstream_port, name="hole", log=None):
        self.t = t
        self.proxy = fault_proxy.FaultProxy(upstream_port, name=name, log=log)
        self.port = self.proxy.port
        self.filter = PortDrop(self.port, log=(lambda s: log("%s: %s" % (name, s)))
                               if log else None)
        if t is not None:
            t._register(self)

    @property
    def url(self):
        return self.proxy.url

    @property
    def dropping(self):
        return self.filter.active

    def start(self):
        self.proxy.start()
        return self

    def drop(self):
        """Every packet to or from the proxy's port vanishes from now on (both directions,
        new connections too: their SYN is never answered)."""
        self.filter.on()
        return self

    def restore(self):
        self.filter.off()
        return self

    def stop(self):
        try:
            self.filter.off()
        finally:
            self.proxy.stop()
