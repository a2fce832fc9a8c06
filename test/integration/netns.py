"""netns: run a process (the relay) with its own /etc/resolv.conf and /etc/hosts (issue 13).

glibc's resolver (and c-ares) read the name servers from /etc/resolv.conf, which names an
address only: port 53. So our DNS server (dnsserver.py) listens on port 53 of a loopback
address of its own (127.53.X.Y, one per test, so that tests can run side by side) in the
normal network namespace, and the process under test runs in a private MOUNT namespace
(`unshare -m`, private propagation) where a resolv.conf naming that address and a hosts file
of the test are bind-mounted over /etc/resolv.conf and /etc/hosts. Its network namespace is
the normal one: it reaches the brokers on 127.0.0.1 like everything else. The mounts vanish
with the process; nothing outside it sees them.

    import netns
    ok, why = netns.available()                      # root, unshare, mount --bind: else skip
    res = netns.Resolver(t, timeout=1, attempts=1)   # DNS server started, files written
    res.dns.set("broker.test", a=["127.0.0.1"])      # dnsserver.DnsServer: the table, counts
    res.dns.drop("hang.test")
    r = t.relay(brokers=[{"name": "b", "url": "mqtt://broker.test:%d" % port}, ...],
                start=False)
    r.wrapper = res.wrapper()                        # relaytest: the command prefix
    r.start()
    res.add_host("127.0.0.1", "late.test")           # a name appears in the hosts file now
    res.set_hosts([("127.0.0.2", "late.test")])      # or the whole file, rewritten in place
    res.set_options(timeout=2, attempts=1)           # resolv.conf rewritten in place
    res.run([sys.executable, "-c", "..."])           # any command under the same files
    netns.getaddrinfo(res, "broker.test")            # a lookup in a subprocess under them
    lk = netns.Looker(res)                           # a long-lived one (sees in-place rewrites
    lk.getaddrinfo("late.test")                      # only, as the relay would)

Files are always rewritten IN PLACE (same inode): a bind mount pins the inode it was given, so
a file replaced by rename() would not be seen by the process. glibc stats /etc/resolv.conf at
every lookup and reloads it when it changed, and reads /etc/hosts at every lookup (no cache
without nscd); see BROKERS.md "Network fault tools (ours)".
"""

import json
import os
import random
import shutil
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
import dnsserver  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# argv: sh -c SCRIPT netns RESOLV HOSTS CMD...
_SCRIPT = ('mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts '
           '&& shift 2 && exec "$@"')

_checked = None


def available():
    """(True, "") when a private mount namespace with bind-mounted files can be made here (root,
    util-linux unshare); else (False, why) -- a test then exits 77."""
    global _checked
    if _checked is not None:
        return _checked
    if os.geteuid() != 0:
        _checked = (False, "not root: unshare -m and mount --bind need CAP_SYS_ADMIN")
    elif shutil.which("unshare") is None:
        _checked = (False, "no unshare (util-linux)")
    elif not os.path.isfile("/etc/resolv.conf") or not os.path.isfile("/etc/hosts"):
        _checked = (False, "no /etc/resolv.conf or /etc/hosts to mount over")
    else:
        try:
            p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                _SCRIPT, "netns", "/dev/null", "/dev/null", "true"],
                               capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
            _checked = (True, "") if p.returncode == 0 else (
                False, "unshare -m / mount --bind failed: %s"
                % p.stderr.decode("utf-8", "replace").strip())
        except (OSError, subprocess.TimeoutExpired) as e:
            _checked = (False, "unshare -m failed: %s" % e)
    return _checked


def _write_in_place(path, text):
    """Rewrites path keeping its inode (a bind mount of it then sees the new text)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _bind_dns(log=None, addr=None):
    """A DnsServer on port 53 of a loopback address of our own (127.53.X.Y)."""
    tries = [addr] if addr else []
    pid = os.getpid()
    tries.append("127.53.%d.%d" % ((pid >> 8) & 255, pid & 255 or 1))
    tries += ["127.53.%d.%d" % (random.randrange(256), random.randrange(1, 255))
              for _ in range(20)]
    last = None
    for a in tries:
        try:
            return dnsserver.DnsServer(a, 53, log=log).start()
        except OSError as e:
            last = e
    raise OSError("no loopback address with port 53 free (127.53.X.Y): %s" % last)


class Resolver:
    """A DNS server of ours on 127.53.X.Y:53 and the private files that name it.

    t: a relaytest.Test (files go into t.tmp, the server is stopped by t.cleanup()) or a
    directory. timeout/attempts: resolv.conf's `options timeout:N attempts:N` for glibc
    (defaults 5 s and 2: a name whose server never answers fails after 10 s) and the same as
    `retrans:MS retry:N` for c-ares 1.18 (defaults 5 s and 4 tries, doubling each round: 75 s
    with one server). hosts: [(address, name, ...)], written after
    `127.0.0.1 localhost` (and `::1 localhost`). dns: an existing DnsServer to name instead
    (it must listen on port 53)."""

    def __init__(self, t, timeout=1, attempts=1, hosts=(), dns=None, options=(), search=None,
                 name="resolver"):
        self.t = t if hasattr(t, "tmp") else None
        base = t.tmp if self.t else t
        self.dir = os.path.join(base, name)
        k = 1
        while os.path.exists(self.dir):
            k += 1
            self.dir = os.path.join(base, "%s-%d" % (name, k))
        os.makedirs(self.dir)
        self.resolv_path = os.path.join(self.dir, "resolv.conf")
        self.hosts_path = os.path.join(self.dir, "hosts")
        log = self.t.note if (self.t and getattr(self.t, "verbose", False)) else None
        self.own_dns = dns is None
        self.dns = dns if dns is not None else _bind_dns(log)
        if self.dns.port != 53:
            raise ValueError("resolv.conf can only name port 53; %r" % self.dns)
        self.timeout = timeout
        self.attempts = attempts
        self.options = list(options)
        self.search = search
        self.hosts = [("127.0.0.1", "localhost"), ("::1", "localhost", "ip6-localhost")]
        self.hosts += [tuple(h) for h in hosts]
        self.write_resolv()
        self.write_hosts()
        if self.t:
            self.t._register(self)

    # ------------------------------------------------------------------ the files
    def resolv_text(self):
        lines = ["# relaytest netns.Resolver", "nameserver %s" % self.dns.addr]
        if self.search is not None:
            lines.append("search %s" % self.search)
        # glibc reads timeout:/attempts:; c-ares 1.18 (Debian 12) ignores them and reads
        # retrans:MS and retry:N instead (and doubles the wait each round): write both
        opts = ["timeout:%d" % self.timeout, "attempts:%d" % self.attempts,
                "retrans:%d" % (self.timeout * 1000), "retry:%d" % self.attempts] + self.options
        lines.append("options " + " ".join(opts))
        return "\n".join(lines) + "\n"

    def write_resolv(self):
        _write_in_place(self.resolv_path, self.resolv_text())

    def set_options(self, timeout=None, attempts=None, options=None):
        """Rewrites resolv.conf in place with new options (the next lookup reads them)."""
        if timeout is not None:
            self.timeout = timeout
        if attempts is not None:
            self.attempts = attempts
        if options is not None:
            self.options = list(options)
        self.write_resolv()

    def hosts_text(self):
        return "".join(" ".join(h) + "\n" for h in self.hosts)

    def write_hosts(self):
        _write_in_place(self.hosts_path, self.hosts_text())

    def add_host(self, addr, *names):
        """Appends `addr name...` to the hosts file (in place)."""
        self.hosts.append((addr,) + names)
        with open(self.hosts_path, "a") as f:
            f.write(" ".join((addr,) + names) + "\n")

    def set_hosts(self, entries):
        """Replaces the test's entries (localhost stays) and rewrites the file in place."""
        self.hosts = self.hosts[:2] + [tuple(e) for e in entries]
        self.write_hosts()

    # ------------------------------------------------------------------ running under them
    def wrapper(self):
        """The command prefix that runs a command under these files (relaytest.Relay.wrapper).
        The process keeps its PID (unshare and sh exec it), so signals reach it directly."""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", _SCRIPT, "netns",
                self.resolv_path, self.hosts_path]

    def popen(self, cmd, **kw):
        return subprocess.Popen(self.wrapper() + list(cmd), **kw)

    def run(self, cmd, timeout=60, **kw):
        """subprocess.run of cmd under these files (capture_output, bounded)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.wrapper() + list(cmd), timeout=timeout, **kw)

    def stop(self):
        if self.own_dns:
            self.dns.stop()


_GAI = r"""
import json, socket, sys, time
def look(name, fam):
    fam = {"any": 0, "4": socket.AF_INET, "6": socket.AF_INET6}[fam]
    t0 = time.monotonic()
    try:
        r = socket.getaddrinfo(name, 1883, fam, socket.SOCK_STREAM)
        out = {"ok": True, "addrs": sorted(set(x[4][0] for x in r))}
    except socket.gaierror as e:
        out = {"ok": False, "errno": e.errno, "error": str(e),
               "name": {socket.EAI_NONAME: "EAI_NONAME", socket.EAI_AGAIN: "EAI_AGAIN",
                        socket.EAI_FAIL: "EAI_FAIL"}.get(e.errno, str(e.errno))}
    out["seconds"] = time.monotonic() - t0
    print(json.dumps(out), flush=True)
if len(sys.argv) > 1:
    look(sys.argv[1], sys.argv[2])
else:  # a long-lived process: one "NAME FAMILY" per line
    for line in sys.stdin:
        look(*line.split())
"""


def _python():
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def getaddrinfo(res, name, family="any", timeout=60):
    """One getaddrinfo(name) in a fresh process under res's files: a dict {ok, addrs} or
    {ok: False, errno, name: EAI_NONAME | EAI_AGAIN | EAI_FAIL, error}, plus seconds (how long
    the call took). family: "any", "4" or "6". A fresh process mounts the files as they are
    now: to see what a running process (the relay) sees of a change, use Looker."""
    p = res.run([_python(), "-c", _GAI, name, family], timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("lookup of %s under %s failed to run (%d): %s"
                           % (name, res.resolv_path, p.returncode,
                              p.stderr.decode("utf-8", "replace")))
    return json.loads(p.stdout.decode())


class Looker:
    """A LONG-LIVED process under res's files that resolves names on demand, as the relay
    would: it mounted the files once, so it sees only what is rewritten in place.

        lk = netns.Looker(res)          # registered with res.t: stopped by its cleanup
        lk.getaddrinfo("late.test")     # the same dict as getaddrinfo()
        lk.stop()
    """

    def __init__(self, res):
        self.p = res.popen([_python(), "-c", _GAI], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        if res.t:
            res.t._register(self)

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def getaddrinfo(self, name, family="any", timeout=60):
        with self.cond:
            n = len(self.lines)
        self.p.stdin.write(("%s %s\n" % (name, family)).encode())
        self.p.stdin.flush()
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.lines) > n, timeout):
                raise RuntimeError("no answer from the lookup process for %s within %ss"
                                   % (name, timeout))
            return json.loads(self.lines[n].decode())

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
