"""brokers: private RabbitMQ 3.10 and ejabberd 23.01 instances for the integration tests.

Both are Erlang programs. Each instance runs as root from the Debian packages' files, without
their system services or users: its own node name, ports on 127.0.0.1, Mnesia, log, spool and
config files in the test's temporary directory, in the foreground, stopped by PID. They behave
like relaytest.Broker (and are registered with the Test object for its cleanup):

    rq = brokers.rabbitmq(t, "rq")              # rq.url, rq.port, rq.stop(), rq.kill() (SIGKILL),
    ej = brokers.ejabberd(t, "ej")              # rq.restart(), rq.log_text(), rq.start_times
    ej.credentials                              # ejabberd wants a user name and a password

    rq = brokers.RabbitMQ(t, "rq", tls=certs, ws=True).start()   # more listeners: rq.ports,
    rq.url_of("tls"), rq.url_of("ws", "/ws")    # rq.connected_ids() (client ids, from its log)
    brokers.require_rabbitmq()                  # exit 77 (skip) without the package
    shim = brokers.BridgeBitShim(rq.port).start()   # clears the bridge bit of CONNECT

and what both broker tests share: client() (a relaytest Client with the broker's credentials),
listener_client() (one on the TLS or WebSocket listener), wait_route() (readiness by probes,
whatever the broker logs), Sections (every section runs; the test fails at the end naming the
failed ones), payload_diff().

What runs, by PID (BROKERS.md has the facts behind each choice):
  RabbitMQ  epmd -port P -address 127.0.0.1 (its own, in the foreground), then
            /usr/lib/rabbitmq/bin/rabbitmq-server with RABBITMQ_ALLOW_INPUT=1 so the script
            execs erl instead of waiting on it (the PID we start is then beam.smp itself, and
            PR_SET_PDEATHSIG survives the execs), -noinput added by hand.
  ejabberd  erl -noinput -mnesia dir '"SPOOL"' -s ejabberd (a node without distribution:
            nonode@nohost, so no epmd).
beam.smp starts erl_child_setup, which starts inet_gethost (two of them): stop() and kill()
signal those too (found through /proc before beam goes), although they exit on their own once
beam is gone.

Each start logs to its own file (log_paths[i], the broker's console output: both are configured
to log there and not to files), so log_text(i) is the log of one run, as with Mosquitto.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQ_PLUGINS = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"


# ----------------------------------------------------------------------------------------------
# skips


def _skip(msg):
    print("SKIP: %s" % msg, flush=True)
    sys.exit(rt.SKIP)


def require_rabbitmq(web=False):
    """Exits 77 unless rabbitmq-server (with its rabbitmq_mqtt plugin) and epmd are installed."""
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        _skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    for tool in ("epmd", "erl"):
        if not _which(tool):
            _skip("%s is not installed (apt-get install erlang-base)" % tool)
    want = ["rabbitmq_mqtt"] + (["rabbitmq_web_mqtt"] if web else [])
    for p in want:
        if not glob.glob(os.path.join(RABBITMQ_PLUGINS, p + "-*")):
            _skip("the RabbitMQ plugin %s is not installed" % p)


def ejabberd_lib_dir():
    """The directory holding ejabberd-23.01/ and its Erlang dependencies (ERL_LIBS), or None."""
    hits = sorted(glob.glob("/usr/lib/*/ejabberd-[0-9]*/ebin/mod_mqtt.beam"))
    if not hits:
        return None
    return os.path.dirname(os.path.dirname(os.path.dirname(hits[0])))


def require_ejabberd():
    """Exits 77 unless ejabberd (with mod_mqtt) and erl are installed."""
    if ejabberd_lib_dir() is None:
        _skip("ejabberd is not installed (apt-get install ejabberd)")
    if not _which("erl"):
        _skip("erl is not installed (apt-get install erlang-base)")


def _which(tool):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/bin", "/usr/sbin"]:
        if d and os.access(os.path.join(d, tool), os.X_OK):
            return os.path.join(d, tool)
    return None


# ----------------------------------------------------------------------------------------------
# processes


def _children_map():
    """{ppid: [pid, ...]} from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) < 2:
            continue
        out.setdefault(int(rest[1]), []).append(int(d))
    return out


def descendants(pid):
    """Every process below pid (children, grandchildren...), found now."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rfind(")") + 2:].split()[0] != "Z"


class Aux(rt.Broker):
    """A helper process a broker needs (epmd), registered with the Test for cleanup (which kills
    every Broker's proc) and for dump_logs (log_paths)."""

    def __init__(self, t, name, argv, log_path, env=None, cwd=None):
        # no rt.Broker.__init__: no port, no directory, no Mosquitto configuration
        self.t = t
        self.name = name
        self.argv = argv
        self.log_paths = [log_path]
        self.env = env
        self.cwd = cwd
        self.proc = None

    def start(self):
        with open(self.log_paths[0], "ab") as lf:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         preexec_fn=rt._pdeathsig)
        self.t._register(self)
        return self

    def stop(self, timeout=5):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait(5)


class ErlangBroker(rt.Broker):
    """What RabbitMQ and ejabberd share: one beam.smp started by PID with its console output in
    log_paths[i], ports on 127.0.0.1 (self.port: MQTT over TCP; self.ports: every listener by
    name), stop/kill/restart that also reach beam's children, start_times (seconds from exec to
    every listener accepting, one per start)."""

    kind = "erlang"
    log_name = "console"

    def __init__(self, t, name, tls=None, ws=False):
        super().__init__(t, name, log_all=True)
        self.tls = tls              # listeners.Certs: a TLS listener with its server certificate
        self.ws = ws                # a WebSocket listener too
        self.ports = {"tcp": self.port}
        if tls is not None:
            self.ports["tls"] = rt.free_port()
        if ws:
            self.ports["ws"] = rt.free_port()
        self.start_times = []
        self.pids_seen = set()      # every beam and child PID, for the leftover check

    # ------------------------------------------------------------------ to be provided
    def _prepare(self):
        """Writes the configuration; returns (argv, env)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ urls
    def url_of(self, listener, path=""):
        scheme = {"tcp": "mqtt", "tls": "mqtts", "ws": "ws"}[listener]
        return "%s://127.0.0.1:%d%s" % (scheme, self.ports[listener], path)

    # ------------------------------------------------------------------ life
    def start(self, timeout=90):
        if self.running():
            raise RuntimeError("%s %s already running" % (self.kind, self.name))
        argv, env = self._prepare()
        n = len(self.log_paths) + 1
        log = os.path.join(self.dir, "%s-%d.log" % (self.log_name, n))
        self.log_paths.append(log)
        t0 = time.monotonic()
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                         preexec_fn=rt._pdeathsig)
        self.t._register(self)
        left = []

        def up():
            if self.proc.poll() is not None:
                return True
            left[:] = [n for n, p in self.ports.items() if not rt.port_accepts(p)]
            return not left

        ok = rt.wait_until(up, timeout, 0.1)
        if self.proc.poll() is not None:
            raise rt.Failure("%s %s exited at start (status %s):\n%s"
                             % (self.kind, self.name, self.proc.returncode, rt.tail(log, 60)))
        if not ok:
            raise rt.Failure("%s %s: listeners %s do not accept after %ss:\n%s"
                             % (self.kind, self.name, left, timeout, rt.tail(log, 60)))
        dt = time.monotonic() - t0
        self.start_times.append(dt)
        self.pids_seen.add(self.proc.pid)
        self.pids_seen.update(descendants(self.proc.pid))
        self.t.note("%s %s started in %.1fs (beam.smp pid %d; %s)"
                    % (self.kind, self.name, dt, self.proc.pid,
                       ", ".join("%s %d" % kv for kv in self.ports.items())))
        return self

    def _signal_all(self, sig):
        """Signals beam and every process below it; returns the children signalled."""
        kids = descendants(self.proc.pid)
        self.pids_seen.update(kids)
        for p in [self.proc.pid] + kids:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        return kids

    def _reap(self, kids, timeout=10):
        rt.wait_until(lambda: not any(_alive(p) for p in kids), timeout, 0.05)

    def stop(self, timeout=30):
        """SIGTERM to beam (both brokers shut down cleanly on it: RabbitMQ writes its queues,
        ejabberd closes Mnesia), a bounded wait, then SIGKILL; then beam's children."""
        if not self.running():
            return
        self.resume()
        kids = descendants(self.proc.pid)
        self.pids_seen.update(kids)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.t.note("%s %s did not stop within %ss of SIGTERM: SIGKILL"
                        % (self.kind, self.name, timeout))
            self._signal_all(signal.SIGKILL)
            self.proc.wait(10)
        for p in kids:
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self._reap(kids)

    def kill(self):
        """SIGKILL to beam and its children at once."""
        if not self.running():
            return
        self.resume()
        self.t.note("SIGKILL %s %s (beam.smp pid %d)" % (self.kind, self.name, self.proc.pid))
        kids = self._signal_all(signal.SIGKILL)
        self.proc.wait(10)
        self._reap(kids)

    def resume(self):
        if self.running():
            for p in [self.proc.pid] + descendants(self.proc.pid):
                try:
                    os.kill(p, signal.SIGCONT)
                except OSError:
                    pass

    def restart(self, timeout=90):
        self.stop()
        return self.start(timeout)

    def leftovers(self):
        """PIDs of this broker's processes still alive (after stop or kill: none)."""
        own = [self.proc.pid] if self.running() else []
        return [p for p in self.pids_seen if _alive(p) and p not in own]

    # Mosquitto's log words (relaytest.Broker.connected_ids/subscriptions) do not apply here
    def connected_ids(self, i=-1):
        return []

    def subscriptions(self, i=-1):
        return []


# ----------------------------------------------------------------------------------------------
# RabbitMQ


class RabbitMQ(ErlangBroker):
    """RabbitMQ 3.10 with rabbitmq_mqtt (and rabbitmq_web_mqtt when ws) on 127.0.0.1.

    Its own epmd on a free port; node rt<pid>-NAME@localhost; distribution on a free port bound
    to 127.0.0.1; no AMQP listener; anonymous MQTT logins are guest/guest (allowed on loopback);
    Mnesia (queues, sessions, retained messages) in DIR/mnesia, kept across restart(), so
    persistent sessions survive it. Logs to the console only (log_paths[i]).

    connected_ids(i): client ids from "accepting MQTT connection <pid> (A -> B, client id: ID)".
    """

    kind = "rabbitmq"
    log_name = "rabbitmq"

    def __init__(self, t, name, tls=None, ws=False, log_level="info"):
        super().__init__(t, name, tls=tls, ws=ws)
        self.epmd_port = rt.free_port()
        self.dist_port = rt.free_port()
        self.node = "rt%d-%s@localhost" % (os.getpid(), re.sub(r"[^A-Za-z0-9_-]", "_", name))
        self.log_level = log_level
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home, exist_ok=True)
        self.epmd = None

    def _prepare(self):
        d = self.dir
        lines = [
            "listeners.tcp = none",
            "mqtt.listeners.tcp.1 = 127.0.0.1:%d" % self.port,
            "mqtt.allow_anonymous = true",
            "mqtt.default_user = guest",
            "mqtt.default_pass = guest",
            "log.file = false",
            "log.console = true",
            "log.console.level = %s" % self.log_level,
            "log.console.use_colors = off",
            "log.console.formatter.single_line = on",
            # the default 50 MB free-disk alarm would block publishers on a full build disk
            "disk_free_limit.absolute = 1MB",
        ]
        plugins = ["rabbitmq_mqtt"]
        if self.tls is not None:
            lines += [
                "mqtt.listeners.ssl.1 = 127.0.0.1:%d" % self.ports["tls"],
                "ssl_options.cacertfile = %s" % self.tls.path("ca"),
                "ssl_options.certfile = %s" % self.tls.path("server"),
                "ssl_options.keyfile = %s" % self.tls.key("server"),
                "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false",
            ]
        if self.ws:
            plugins.append("rabbitmq_web_mqtt")
            lines += ["web_mqtt.tcp.ip = 127.0.0.1", "web_mqtt.tcp.port = %d" % self.ports["ws"]]
        files = {
            "rabbitmq.conf": "\n".join(lines) + "\n",
            "enabled_plugins": "[%s].\n" % ",".join(plugins),
            "advanced.config": "[].\n",
            "rabbitmq-env.conf": "",
        }
        for n, text in files.items():
            with open(os.path.join(d, n), "w") as f:
                f.write(text)
        if self.epmd is None or not self.epmd.running():
            self.epmd = Aux(self.t, self.name + "-epmd",
                            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                            os.path.join(d, "epmd.log"), cwd=d).start()
            if not rt.wait_until(lambda: rt.port_accepts(self.epmd_port), 10, 0.05):
                raise rt.Failure("epmd for %s does not accept on port %d:\n%s"
                                 % (self.name, self.epmd_port, rt.tail(self.epmd.log_paths[0])))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": self.home,                       # .erlang.cookie
            "RABBITMQ_ALLOW_INPUT": "1",             # exec erl: the PID we hold is beam.smp
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-noinput -kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(d, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
            "RABBITMQ_PID_FILE": os.path.join(d, "rabbitmq.pid"),
        })
        return [RABBITMQ_SERVER], env

    def start(self, timeout=90):
        super().start(timeout)
        # the PID file names beam.smp: the one we hold (RABBITMQ_ALLOW_INPUT made the script exec)
        pidfile = os.path.join(self.dir, "rabbitmq.pid")
        if rt.wait_until(lambda: os.path.exists(pidfile), 5, 0.05):
            with open(pidfile) as f:
                txt = f.read().strip()
            if txt.isdigit() and int(txt) != self.proc.pid:
                raise rt.Failure("rabbitmq %s: its PID file says %s, we started %d: the script "
                                 "did not exec erl" % (self.name, txt, self.proc.pid))
        return self

    def connected_ids(self, i=-1):
        return re.findall(r"accepting MQTT connection <[\d.]+> \([^)]*client id: ([^)]*)\)",
                          self.log_text(i))

    def stop_all(self):
        """stop() and then its epmd."""
        self.stop()
        if self.epmd is not None:
            self.epmd.stop()


def rabbitmq(t, name, **kw):
    return RabbitMQ(t, name, **kw).start()


# ----------------------------------------------------------------------------------------------
# ejabberd


class Ejabberd(ErlangBroker):
    """ejabberd 23.01 with mod_mqtt on 127.0.0.1: one virtual host "localhost", anonymous logins
    (login_anon: any user name with a non-empty password; CONNACK 5 / Not authorized without
    both), mod_mqtt's queue raised to 100000. TLS listener (tls=Certs) and WebSocket listener
    (ws=True: ejabberd_http serving mod_mqtt on /mqtt) optional. Mnesia in DIR/spool, kept
    across restart(): retained messages survive it, sessions (RAM tables) do not.

    credentials: (user, password) for clients and the relay.
    connected_ids(i): client ids from "Opened MQTT session for USER@localhost/ID from ADDR"."""

    kind = "ejabberd"
    log_name = "ejabberd"
    credentials = ("relaytest", "any")

    def __init__(self, t, name, tls=None, ws=False, log_level="info", max_queue=100000):
        super().__init__(t, name, tls=tls, ws=ws)
        self.log_level = log_level
        self.max_queue = max_queue
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.spool, exist_ok=True)

    def _prepare(self):
        d = self.dir
        y = ["hosts:", "  - localhost",
             "loglevel: %s" % self.log_level,
             "log_rotate_count: 0",
             "auth_method: [anonymous]",
             "anonymous_protocol: login_anon"]
        if self.tls is not None:
            y += ["certfiles:", "  - %s" % self.tls.path("server"),
                  "  - %s" % self.tls.key("server")]
        y += ["listen:",
              "  -", "    port: %d" % self.port, '    ip: "127.0.0.1"', "    module: mod_mqtt",
              "    backlog: 1000"]
        if self.tls is not None:
            y += ["  -", "    port: %d" % self.ports["tls"], '    ip: "127.0.0.1"',
                  "    module: mod_mqtt", "    tls: true", "    backlog: 1000"]
        if self.ws:
            y += ["  -", "    port: %d" % self.ports["ws"], '    ip: "127.0.0.1"',
                  "    module: ejabberd_http", "    request_handlers:",
                  "      /mqtt: mod_mqtt"]
        y += ["modules:", "  mod_mqtt:", "    max_queue: %d" % self.max_queue]
        conf = os.path.join(d, "ejabberd.yml")
        with open(conf, "w") as f:
            f.write("\n".join(y) + "\n")
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EJABBERD_", "ERL_"))}
        env.update({
            "HOME": d,
            "ERL_LIBS": ejabberd_lib_dir(),
            "EJABBERD_CONFIG_PATH": conf,
            "EJABBERD_LOG_PATH": os.path.join(d, "log", "ejabberd.log"),
            "ERL_CRASH_DUMP": os.path.join(d, "erl_crash.dump"),
        })
        # no busy-waiting schedulers (RabbitMQ's scripts say the same): the machine is shared
        argv = ["erl", "-noinput", "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none",
                "-mnesia", "dir", '"%s"' % self.spool, "-s", "ejabberd"]
        return argv, env


    def connected_ids(self, i=-1):
        return re.findall(r"Opened MQTT session for [^/\s]+/(\S+) from ", self.log_text(i))


def ejabberd(t, name, **kw):
    return Ejabberd(t, name, **kw).start()


# ----------------------------------------------------------------------------------------------
# what both broker tests share


class Sections:
    """Runs a test's sections in order. A section that fails is reported (FAILED - why) and the
    next one runs, so one run shows every section's outcome; finish() then fails the test naming
    them. fatal=True (setup) stops at once."""

    def __init__(self, t):
        self.t = t
        self.failed = []
        self.passed = []
        self.skipped = []

    def run(self, name, fn, fatal=False, skip=None):
        self.t.section(name)
        if skip:
            self.t.say("  skipped - %s" % skip)
            self.skipped.append(name)
            return
        try:
            fn()
            self.passed.append(name)
        except rt.Failure as e:
            if fatal:
                raise
            self.t.say("  FAILED - %s" % e)
            self.failed.append((name, str(e).splitlines()[0]))

    def finish(self):
        self.t.say("\nsections: %d passed, %d failed, %d skipped"
                   % (len(self.passed), len(self.failed), len(self.skipped)))
        if self.failed:
            self.t.section_name = None
            raise rt.Failure("%d section(s) failed:\n%s" % (
                len(self.failed), "\n".join("   [%s] %s" % f for f in self.failed)))


def payload_diff(got, want):
    """Where two payloads differ, in words (for failure messages)."""
    if len(got) != len(want):
        return "%d bytes, want %d" % (len(got), len(want))
    i = next(i for i in range(len(got)) if got[i] != want[i])
    return "byte %d of %d is 0x%02x, want 0x%02x" % (i, len(got), got[i], want[i])


def client(t, broker, version="5", **kw):
    """A connected relaytest Client, with the broker's credentials when it wants some."""
    c = rt.Client(t, broker, version, **kw)
    creds = getattr(broker, "credentials", None)
    if creds:
        c.c.username_pw_set(*creds)
    return c.connect()


class _Listener:
    """What relaytest.Client needs of a broker (name, port), for another listener of it."""

    def __init__(self, broker, listener):
        self.name = "%s-%s" % (broker.name, listener)
        self.port = broker.ports[listener]


def listener_client(t, broker, listener, version="5", certs=None, path="/mqtt", **kw):
    """A connected relaytest Client on another listener of the broker: "tls" (the server
    certificate checked against the test CA, certs: listeners.Certs) or "ws" (WebSocket on
    path)."""
    c = rt.Client(t, _Listener(broker, listener), version, **kw)
    if listener == "tls":
        c.c.tls_set(ca_certs=certs.path("ca"))
    elif listener == "ws":
        # paho chooses its transport when it is made: a new one, with relaytest's callbacks
        old = c.c
        c.c = rt.mqtt.Client(client_id=c.client_id, protocol=rt.VERSIONS[version],
                             transport="websockets",
                             **({} if version == "5" else {"clean_session": c.clean}))
        c.c.ws_set_options(path=path)
        for cb in ("on_connect", "on_disconnect", "on_message", "on_subscribe"):
            setattr(c.c, cb, getattr(old, cb))
        c.c.max_inflight_messages_set(100)
        c.c.max_queued_messages_set(0)
        c.c.reconnect_delay_set(1, 2)
    creds = getattr(broker, "credentials", None)
    if creds:
        c.c.username_pw_set(*creds)
    return c.connect()


def wait_route(t, pub, topic, sub, what, timeout=30, relay=None):
    """Readiness of one route, whatever the brokers log: publishes QoS 1 probes on topic through
    pub every 0.5 s until one reaches sub (under the same topic), then waits for the last one
    published. A probe the source broker dropped (published before the relay's subscription
    existed) never comes; every probe after the first that arrived does (one publisher, one
    subscription, one relay link: in order). Returns how many probes arrived, which is what the
    route carried (for /metrics)."""
    tb = topic.encode()
    k = 0
    deadline = time.monotonic() + timeout

    def arrived():
        return sub.received(lambda m: m.topic == tb)

    while True:
        k += 1
        pub.publish(topic, b"probe %d" % k, 1)
        if rt.wait_until(lambda: arrived(), 0.5, 0.02):
            break
        if time.monotonic() >= deadline:
            why = ""
            if relay is not None:
                relay.check_alive()
                why = "\n     the relay's last log lines:\n     " + "\n     ".join(
                    relay.log_lines()[-12:])
            raise rt.Failure("%s: no probe on %s reached the other side within %ss (%d sent)%s"
                             % (what, topic, timeout, k, why))
    last = b"probe %d" % k
    if not rt.wait_until(lambda: any(m.payload == last for m in arrived()), 15, 0.02):
        raise rt.Failure("%s: probes arrived, but not the last one (%s)" % (what, last))
    n = len(arrived())
    t.note("%s ready: %d of %d probes on %s crossed" % (what, n, k, topic))
    return n


# ----------------------------------------------------------------------------------------------
# the bridge-bit shim (a stand-in until the relay falls back on its own)


class BridgeBitShim:
    """A TCP proxy to 127.0.0.1:upstream_port that clears the bridge bit in the protocol level
    byte of the first packet (CONNECT) of every connection: 0x84 -> 0x04, 0x83 -> 0x03. All
    other bytes pass unchanged. A connection it cannot open upstream is closed at once.
    patched counts the CONNECTs it changed, passed the ones it let through unchanged."""

    def __init__(self, upstream_port, name="shim"):
        self.upstream_port = upstream_port
        self.name = name
        self.patched = 0
        self.passed = 0
        self.lock = threading.Lock()
        self.socks = []
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def start(self):
        threading.Thread(target=self._accept, daemon=True, name="shim-" + self.name).start()
        return self

    def stop(self):
        self.stopping.set()
        for s in [self.lsock] + self.snapshot():
            try:
                s.close()
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return list(self.socks)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    @staticmethod
    def _level_offset(buf):
        """Index of the protocol level byte in a CONNECT at the start of buf, None if more bytes
        are needed, -1 if buf does not start with a CONNECT."""
        if not buf:
            return None
        if buf[0] != 0x10:
            return -1
        i = 1
        while True:                     # remaining length: 1 to 4 bytes
            if i >= len(buf):
                return None
            if not buf[i] & 0x80:
                break
            i += 1
            if i > 4:
                return -1
        i += 1
        if i + 2 > len(buf):
            return None
        n = (buf[i] << 8) | buf[i + 1]  # protocol name length
        at = i + 2 + n
        return at if at < len(buf) else None

    def _serve(self, down):
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            up.settimeout(None)
        except OSError:
            down.close()
            return
        for x in (down, up):
            x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.socks += [down, up]
        buf = b""
        try:
            while True:                 # the first packet, until its level byte is in
                data = down.recv(65536)
                if not data:
                    raise OSError("closed before CONNECT")
                buf += data
                at = self._level_offset(buf)
                if at is None:
                    continue
                if at >= 0 and buf[at] in (0x83, 0x84):
                    buf = buf[:at] + bytes([buf[at] & 0x7F]) + buf[at + 1:]
                    with self.lock:
                        self.patched += 1
                else:
                    with self.lock:
                        self.passed += 1
                up.sendall(buf)
                break
        except OSError:
            for x in (down, up):
                x.close()
            return
        threading.Thread(target=self._pipe, args=(up, down), daemon=True).start()
        self._pipe(down, up)

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                x.close()
            except OSError:
                pass
