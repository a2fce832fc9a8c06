"""statustest: what the tests of the relay's HTTP listener (issue 17) share: one HTTP request
with its headers, GET /api/v1/status parsed, and the shape of that JSON as the man page documents
it (check_shape: every documented member present with its type).

Standard library only; run with /usr/bin/python3 like the rest (relaytest.py)."""

import http.client
import json
import re

import relaytest as rt

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def request(port, method, path, headers=None, body=None, timeout=10):
    """(status, {lower-case header name: value}, body bytes) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def status(port):
    """GET /api/v1/status, parsed (raises rt.Failure when it is not 200 JSON)."""
    st, hdr, body = request(port, "GET", "/api/v1/status")
    if st != 200:
        raise rt.Failure("GET /api/v1/status answered %d: %r" % (st, body[:200]))
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise rt.Failure("GET /api/v1/status is not JSON (%s): %r" % (e, body[:300]))


def post_reload(port, token=None, timeout=20):
    """POST /-/reload (as `curl -X POST` sends it: no body): (status, headers, parsed JSON)."""
    h = {"Authorization": "Bearer " + token} if token else {}
    st, hdr, body = request(port, "POST", "/-/reload", h, timeout=timeout)
    try:
        return st, hdr, json.loads(body.decode("utf-8"))
    except ValueError:
        raise rt.Failure("POST /-/reload answered %d, not JSON: %r" % (st, body[:200]))


# The documented shape of GET /api/v1/status: a type, or a dict (an object: every member
# required), or a list of one shape (an array of such), or a tuple of alternatives. "time" is an
# RFC 3339 string; NUM any number; None null.
NUM = (int, float)
TIME = "time"
CONN = {
    "index": int, "client_id": str, "state": str, "state_since": TIME, "url": str,
    "up_since": (TIME, None), "connected_seconds": NUM, "reconnects": int,
    "last_error": (None, {"at": TIME, "text": str}), "retry_in_seconds": NUM,
    "inflight": int, "inflight_limit": int, "queued_bytes": int, "rx_paused": bool,
    "bytes_sent": int, "bytes_received": int, "pace": (None, dict),
}
SPOOL = {"messages": int, "bytes": int, "max_bytes": int, "oldest_age_seconds": NUM,
         "full": bool, "history": {"interval_seconds": int, "messages": [int]}}
SHAPE = {
    "api": int,
    "relay": {"id": str, "version": str, "now": TIME, "started": TIME, "uptime_seconds": NUM,
              "healthy": bool, "config_file": str,
              "reload": {"count": int,
                         "last": (None, {"at": TIME, "ok": bool, "message": str})}},
    "brokers": [{"name": str, "version": str, "urls": [str], "tls": bool, "profile": (None, str),
                 "tls_cert_expiry": (None, TIME), "connections_up": int, "connections": int,
                 "spool": (None, SPOOL), "conns": [CONN]}],
    "routes": [{"name": str, "from": str, "to": str, "filter": str, "subscription": str,
                "topic": str, "qos": int, "received": int, "forwarded": int,
                "dropped": {k: int for k in ("loop", "expired", "too_large", "bad_topic",
                                             "qos0_overflow", "rejected")},
                "rate": {"interval_seconds": int, "in": [int], "out": [int]}}],
    "log": [{"ts": TIME, "level": str, "who": str, "msg": str, "repeated": int}],
}
STATES = {"up", "subscribing", "connecting", "waiting", "closing", "idle"}


def shape_errors(v, shape, where="$"):
    """Where v differs from shape (a list of texts; empty when it conforms)."""
    if isinstance(shape, tuple):
        errs = [shape_errors(v, s, where) for s in shape]
        return [] if any(not e for e in errs) else errs[0]
    if shape is None:
        return [] if v is None else ["%s: %r is not null" % (where, v)]
    if shape == TIME:
        return [] if isinstance(v, str) and RFC3339.match(v) else [
            "%s: %r is not an RFC 3339 time" % (where, v)]
    if isinstance(shape, dict):
        if not isinstance(v, dict):
            return ["%s: not an object" % where]
        out = []
        for k, s in shape.items():
            if k not in v:
                out.append("%s: no member %r" % (where, k))
            else:
                out += shape_errors(v[k], s, "%s.%s" % (where, k))
        return out
    if isinstance(shape, list):
        if not isinstance(v, list):
            return ["%s: not an array" % where]
        out = []
        for i, x in enumerate(v):
            out += shape_errors(x, shape[0], "%s[%d]" % (where, i))
        return out
    if shape is int and isinstance(v, bool) or shape is NUM and isinstance(v, bool):
        return ["%s: %r is a boolean, not a number" % (where, v)]
    return [] if isinstance(v, shape) else ["%s: %r is not %s" % (where, v, shape)]


def check_shape(t, s, what):
    errs = shape_errors(s, SHAPE)
    for b in s.get("brokers", []):
        for c in b.get("conns", []):
            if c.get("state") not in STATES:
                errs.append("broker %s conn %s: state %r" % (b.get("name"), c.get("index"),
                                                            c.get("state")))
        sp = b.get("spool")
        if sp and len(sp["history"]["messages"]) != 60:
            errs.append("broker %s: spool history of %d values" % (b["name"],
                                                                   len(sp["history"]["messages"])))
    for r in s.get("routes", []):
        if len(r["rate"]["in"]) != 60 or len(r["rate"]["out"]) != 60:
            errs.append("route %s: rates of %d/%d values" % (r["name"], len(r["rate"]["in"]),
                                                             len(r["rate"]["out"])))
    t.check(not errs, "%s: GET /api/v1/status has the documented shape" % what,
            "; ".join(errs[:8]))


def by_name(items, name):
    return next((x for x in items if x.get("name") == name), None)
