"""The example configurations in config/ pass `mqtt-relay -c FILE --check` (issue 4, item 7).

Users copy these files, so each must be valid as shipped. The files refer to ../certs/ (TLS
examples): the test copies config/*.conf into a temporary directory next to a certs/ directory
made by certs/make-certs.sh, runs --check on each (exit 0, nothing on stderr), and checks the
printed plan names every route of the file. It also checks that none of them holds what looks
like a private key or a real password.

Needs only the relay binary and openssl (no broker): /usr/bin/python3 test_config_examples.py
--relay PATH/mqtt-relay. Exit 0 passed, 1 failed.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MINE = ("bifromq-mosquitto.conf", "edge-uplink-tls.conf", "pool-shared.conf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", required=True)
    args = ap.parse_args()
    relay = os.path.abspath(args.relay)
    if not os.access(relay, os.X_OK):
        print("FAIL: the relay binary %s does not exist" % relay)
        return 1
    failures = []
    tmp = tempfile.mkdtemp(prefix="relay-config-examples-")
    try:
        p = subprocess.run(["sh", os.path.join(ROOT, "certs", "make-certs.sh"),
                            os.path.join(tmp, "certs")], capture_output=True, timeout=60)
        if p.returncode != 0:
            print("FAIL: certs/make-certs.sh: %s" % p.stderr.decode("utf-8", "replace"))
            return 1
        os.makedirs(os.path.join(tmp, "config"))
        files = sorted(glob.glob(os.path.join(ROOT, "config", "*.conf")))
        names = [os.path.basename(f) for f in files]
        for m in MINE:
            if m not in names:
                failures.append("config/%s is missing" % m)
        for f in files:
            name = os.path.basename(f)
            dst = os.path.join(tmp, "config", name)
            shutil.copy(f, dst)
            with open(f) as fh:
                text = fh.read()
            if "PRIVATE KEY" in text or re.search(r'^\s*password\s*=', text, re.M):
                failures.append("%s: holds a key or a password" % name)
            try:
                p = subprocess.run([relay, "-c", dst, "--check"], capture_output=True,
                                   timeout=30, cwd=tmp, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                failures.append("%s: --check did not finish within 30s" % name)
                continue
            out = p.stdout.decode("utf-8", "replace")
            err = p.stderr.decode("utf-8", "replace")
            routes = re.findall(r'^\s*name\s*=\s*"([^"]+)"\s*;', text, re.M)
            if p.returncode != 0:
                failures.append("%s: --check exits %d: %s" % (name, p.returncode, err.strip()))
            elif err.strip():
                failures.append("%s: --check printed on stderr: %s" % (name, err.strip()))
            else:
                missing = [r for r in routes if r not in out]
                if missing:
                    failures.append("%s: the plan does not mention %s" % (name, missing))
                else:
                    print("  ok - config/%s passes --check (%d names in the plan)"
                          % (name, len(routes)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
