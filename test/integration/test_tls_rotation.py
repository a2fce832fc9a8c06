"""Certificate rotation without a restart (issue 13, item 2).

Three throw-away CAs (CA1..CA3), each with a server certificate for localhost and a client
certificate whose CN names it ("relay-client-N"). One Mosquitto mTLS listener trusts client
certificates of all three CAs (cafile = CA1+CA2+CA3) and takes the certificate's CN as the user
name (use_identity_as_username), so its log says which client certificate each connection
presented ("u'relay-client-N'"). The relay's ca.pem, client.pem and client.key are always
rewritten IN PLACE (same inode, as cert-manager, certbot or a Vault agent do).

  start     set 1 (CA1, client-1 valid 10 days): connected as relay-client-1; a WARN says the
            certificate expires within 14 days; mqtt_relay_tls_cert_expiry_seconds is about
            10 days.
  sighup    the link is up; the three files are rewritten with set 2 (ca.pem = CA1+CA2,
            client-2 valid 400 days, its key): nothing changes until SIGHUP; then the reload
            reconnects that broker ("1 connections reconnecting with new settings"; the
            configuration text did not change, the files' content did) and the broker sees
            relay-client-2; the expiry gauge is now about 400 days.
  reconnect the files are rewritten with set 3 (ca.pem = CA3 alone, client-3, its key) and no
            signal is sent; the broker restarts with a server certificate of CA3: the plain
            reconnect reads the files again, verifies the server with CA3 and presents
            client-3 (ca.pem as it was before could not verify the new server).
  half      the key file is rewritten half-written (the first half of a new key's PEM) with a
            new certificate, then SIGHUP: one WARN line says the files do not load and why,
            and the old context is kept: the broker sees relay-client-3 again; two more plain
            reconnects add no line (the same content is said once); once the key is written
            whole, the next reconnect presents relay-client-4.
  wrongkey  a key that is not the certificate's: the same, one line ("does not match").
"""
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

EXT = """[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""


def ossl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=30)
    if p.returncode != 0:
        raise rt.Failure("openssl %s: %s" % (" ".join(args), p.stderr.decode()))


def make_set(d, n, client_days):
    """CA n, its server certificate and its client certificate (CN relay-client-n) in d."""
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write(EXT)
    ca = os.path.join(d, "ca%d" % n)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "3650", "-subj",
         "/CN=rotation test CA %d" % n, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for leaf, cn, days, sect in (("server%d" % n, "localhost", 825, "server"),
                                 ("client%d" % n, "relay-client-%d" % n, client_days, "client")):
        p = os.path.join(d, leaf)
        ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", p + ".key", "-out", p + ".csr", "-subj", "/CN=" + cn)
        ossl("x509", "-req", "-in", p + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", p + ".pem", "-days", str(days), "-extfile", ext,
             "-extensions", sect)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def write_in_place(path, data):
    """Same inode: truncate and write (what a rotation agent does)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def users(broker):
    """The user names (client certificate CNs) of the relay's connections, in order, over
    every run of the broker."""
    out = []
    lines = []
    for i in range(len(broker.log_paths)):
        lines += broker.log_lines(i)
    for line in lines:
        m = re.search(r"as itest-rot \(.*u'([^']*)'\)", line)
        if m:
            out.append(m.group(1))
    return out


def run(t):
    d = os.path.join(t.tmp, "pki")
    os.makedirs(d)
    for n, days in ((1, 10), (2, 400), (3, 400), (4, 400)):
        make_set(d, n, days)
    P = lambda name: os.path.join(d, name)  # noqa: E731
    with open(P("trust.pem"), "wb") as f:
        f.write(read(P("ca1.pem")) + read(P("ca2.pem")) + read(P("ca3.pem")) + read(P("ca4.pem")))
    srv_cert, srv_key = P("srv.pem"), P("srv.key")
    write_in_place(srv_cert, read(P("server1.pem")))
    write_in_place(srv_key, read(P("server1.key")))
    tlsport = rt.free_port()
    b = t.broker("mtls", extra=["", "listener %d 127.0.0.1" % tlsport, "cafile " + P("trust.pem"),
                                "certfile " + srv_cert, "keyfile " + srv_key,
                                "require_certificate true", "use_identity_as_username true"])
    anchor = t.broker("anchor")
    rdir = os.path.join(t.tmp, "relay-files")
    os.makedirs(rdir)
    ca, cert, key = (os.path.join(rdir, x) for x in ("ca.pem", "client.pem", "client.key"))

    def rotate(ca_data, n, key_data=None):
        write_in_place(ca, ca_data)
        write_in_place(cert, read(P("client%d.pem" % n)))
        write_in_place(key, key_data if key_data is not None else read(P("client%d.key" % n)))

    rotate(read(P("ca1.pem")), 1)
    inodes = [os.stat(x).st_ino for x in (ca, cert, key)]
    mport = rt.free_port()

    def expiry_days():
        return rt.metric(rt.get_metrics(mport), "mqtt_relay_tls_cert_expiry_seconds",
                         broker="rot") / 86400.0

    t.section("start: set 1 (client certificate valid 10 days)")
    r = t.relay(relay={"metrics": "127.0.0.1:%d" % mport}, brokers=[
        {"name": "rot", "url": "mqtts://127.0.0.1:%d" % tlsport, "client_id": "itest-rot",
         "tls": {"ca_file": ca, "cert_file": cert, "key_file": key,
                 "server_name": "localhost"},
         "reconnect": {"min": 200, "max": 1000}},
        {"name": "anchor", "url": anchor.url},
    ], routes=[{"from": "anchor", "to": "rot", "filter": "r/#"}])
    t.check(rt.wait_until(lambda: users(b) == ["relay-client-1"], 15),
            "connected with relay-client-1", "\n".join(r.log_lines()[-5:]))
    warn = [l for l in r.log_lines() if "WARN" in l and "expires in" in l]
    t.check(warn, "a WARN: the client certificate expires within 14 days")
    t.note(warn[0])
    t.check(9.0 < expiry_days() <= 10.01, "mqtt_relay_tls_cert_expiry_seconds{broker=\"rot\"}: "
            "%.2f days" % expiry_days())

    t.section("sighup: the files rewritten in place, then SIGHUP")
    rotate(read(P("ca1.pem")) + read(P("ca2.pem")), 2)
    time.sleep(1.5)
    t.check(users(b) == ["relay-client-1"], "without a signal the live link stays as it was")
    r.proc.send_signal(1)  # SIGHUP
    t.check(rt.wait_until(lambda: users(b) == ["relay-client-1", "relay-client-2"], 15),
            "after SIGHUP the broker sees relay-client-2", "\n".join(r.log_lines()[-8:]))
    t.check(any("1 connections reconnecting with new settings" in l for l in r.log_lines()),
            "the reload reconnected the broker whose files changed in content")
    t.check(399 < expiry_days() <= 400.01, "the expiry gauge follows: %.1f days" % expiry_days())

    t.section("reconnect: rewritten again, no signal; the broker restarts with a CA3 server")
    rotate(read(P("ca3.pem")), 3)
    write_in_place(srv_cert, read(P("server3.pem")))
    write_in_place(srv_key, read(P("server3.key")))
    b.restart()
    t.check(rt.wait_until(lambda: users(b)[2:] == ["relay-client-3"], 15),
            "the plain reconnect verified the server with CA3 and presented relay-client-3",
            "\n".join(r.log_lines()[-8:]))

    t.section("half: a half-written key keeps the old context, said once")
    half = read(P("client4.key"))
    rotate(read(P("ca3.pem")), 4, key_data=half[:len(half) // 2])
    r.proc.send_signal(1)
    t.check(rt.wait_until(lambda: users(b)[2:] == ["relay-client-3", "relay-client-3"], 15),
            "reconnected (SIGHUP: the content changed) with the old certificate",
            "\n".join(r.log_lines()[-8:]))
    said = [l for l in r.log_lines() if "do not load" in l]
    t.check(len(said) == 1, "one line says the files do not load", "\n".join(said))
    t.note(said[0])
    t.check("tls.key_file" in said[0] and "keeping the previous" in said[0],
            "it names the key file and says the previous context is kept")
    for k in range(2):
        n = len(users(b))
        b.restart()
        t.check(rt.wait_until(lambda: len(users(b)) > n, 15) and users(b)[-1] == "relay-client-3",
                "plain reconnect %d: still relay-client-3" % (k + 1))
    t.check(len([l for l in r.log_lines() if "do not load" in l]) == 1,
            "no second line for the same content")
    write_in_place(key, half)
    n = len(users(b))
    b.restart()
    t.check(rt.wait_until(lambda: len(users(b)) > n, 15) and users(b)[-1] == "relay-client-4",
            "the key written whole: the next reconnect presents relay-client-4")

    t.section("wrongkey: a key that is not the certificate's")
    write_in_place(key, read(P("client2.key")))  # client-4's certificate, client-2's key
    n = len(users(b))
    b.restart()
    t.check(rt.wait_until(lambda: len(users(b)) > n, 15) and users(b)[-1] == "relay-client-4",
            "the old context (relay-client-4) is kept")
    said = [l for l in r.log_lines() if "does not match" in l]
    t.check(len(said) == 1, "one line says the key does not match the certificate")
    t.note(said[0])
    t.check([os.stat(x).st_ino for x in (ca, cert, key)] == inodes,
            "every rewrite kept the files' inodes (in place)")
    r.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
