#!/usr/bin/env python3
"""Turn test/vectors/*.hex into libFuzzer seed corpora, one directory per fuzz target.

Vector format (test/vectors/README): records separated by blank lines; '#' starts a comment;
a record is a line "name [tag]", a line "version N", one or more lines of hex bytes, and a
line "expect OK|MQC_EXXX". Records that do not parse are reported and skipped; an empty or
missing vectors directory gives the built-in seeds only.

Seeds written (file names are content hashes, so reruns are idempotent):
  decode/     [version - 3] + packet           (fuzz_decode's first byte picks the version)
  frame/      [0] + packet, and [0] + all packets of a file back to back (a stream)
  props/      the property blocks of 5.0 packets (as far as this small parser can find them)
  topic/      "filter\\0topic" pairs from PUBLISH topics and SUBSCRIBE filters, plus fixed ones
  roundtrip/  [version, type] + filler for every version x type

Extra RECORD files (format [u8 version][u32 BE length][packet], as seeds/packets.rec: the fixed
tables and some randomised packets of the mqtt-packet differential test) feed the same seeds,
so the fuzzers start from every packet type even while test/vectors is thin.

usage: hex2corpus.py VECTOR_DIR OUT_DIR [RECORD_FILE...]
"""
import hashlib
import os
import re
import sys


def parse_vectors(path):
    recs, cur, errors = [], None, []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines.append("")
    for no, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if raw.strip() == "":
            if cur is not None:
                if cur.get("hex") and cur.get("version") is not None:
                    try:
                        cur["bytes"] = bytes.fromhex(cur["hex"])
                        recs.append(cur)
                    except ValueError as e:
                        errors.append(f"{path}:{cur['line']}: bad hex: {e}")
                elif cur.get("name"):
                    errors.append(f"{path}:{cur['line']}: incomplete record {cur['name']!r}")
                cur = None
            continue
        if not line:
            continue
        if cur is None:
            cur = {"name": line, "line": no, "hex": "", "version": None}
            continue
        m = re.fullmatch(r"version\s+(\d+)", line)
        if m:
            cur["version"] = int(m.group(1))
            continue
        m = re.fullmatch(r"expect\s+(\S+)", line)
        if m:
            cur["expect"] = m.group(1)
            continue
        h = re.sub(r"0x|[\s,:]", "", line)
        if re.fullmatch(r"[0-9a-fA-F]*", h):
            cur["hex"] += h
        else:
            errors.append(f"{path}:{no}: not hex: {line!r}")
    return recs, errors


def read_records(path):
    b, off, out = open(path, "rb").read(), 0, []
    while off + 5 <= len(b):
        v, n = b[off], int.from_bytes(b[off + 1:off + 5], "big")
        out.append({"version": v, "bytes": b[off + 5:off + 5 + n], "line": off})
        off += 5 + n
    return out


def varint(b, i):
    """(value, next index) or None"""
    v, mul = 0, 1
    for k in range(4):
        if i + k >= len(b):
            return None
        v += (b[i + k] & 0x7F) * mul
        mul *= 128
        if not b[i + k] & 0x80:
            return v, i + k + 1
    return None


def u16(b, i):
    return (b[i] << 8) | b[i + 1] if i + 2 <= len(b) else None


def mqtt_str(b, i):
    n = u16(b, i)
    if n is None or i + 2 + n > len(b):
        return None
    return b[i + 2:i + 2 + n], i + 2 + n


def props_at(b, i):
    r = varint(b, i)
    if r is None:
        return None
    n, j = r
    if j + n > len(b):
        return None
    return b[j:j + n], j + n


def extract(pkt, version):
    """(property blocks, topics, filters) found in one packet; best effort."""
    blocks, topics, filters = [], [], []
    try:
        r = varint(pkt, 1)
        if r is None:
            return blocks, topics, filters
        _, i = r
        t, fl = pkt[0] >> 4, pkt[0] & 15
        if t == 3:  # PUBLISH
            s = mqtt_str(pkt, i)
            if s is None:
                return blocks, topics, filters
            topics.append(s[0])
            i = s[1] + (2 if (fl >> 1) & 3 else 0)
            if version == 5:
                p = props_at(pkt, i)
                if p:
                    blocks.append(p[0])
        elif t in (8, 10):  # SUBSCRIBE / UNSUBSCRIBE
            i += 2
            if version == 5:
                p = props_at(pkt, i)
                if not p:
                    return blocks, topics, filters
                blocks.append(p[0])
                i = p[1]
            while i < len(pkt):
                s = mqtt_str(pkt, i)
                if s is None:
                    break
                filters.append(s[0])
                i = s[1] + (1 if t == 8 else 0)
        elif t == 1 and version == 5:  # CONNECT: props after name, level, flags, keepalive
            s = mqtt_str(pkt, i)
            if s:
                p = props_at(pkt, s[1] + 4)
                if p:
                    blocks.append(p[0])
        elif version == 5 and t in (2,):
            p = props_at(pkt, i + 2)
            if p:
                blocks.append(p[0])
        elif version == 5 and t in (4, 5, 6, 7, 9, 11):
            p = props_at(pkt, i + (3 if t <= 7 else 2))
            if p:
                blocks.append(p[0])
        elif version == 5 and t in (14, 15):
            p = props_at(pkt, i + 1)
            if p:
                blocks.append(p[0])
    except IndexError:
        pass
    return blocks, topics, filters


FIXED_TOPIC = [
    b"a/+/c\0a/b/c", b"#\0$SYS/uptime", b"+/x\0$x/x", b"sport/#\0sport", b"sport/+\0sport/",
    b"+/+\0/", b"/+\0/x", b"$share/g/a/#\0a/b", b"$oshare/grp/+/t\0q/t", b"$share//a\0a",
    b"$share/g\0x", b"a/#/b\0a/x/b", b"a+\0a+", b"\xc3\xa9/\xf0\x9f\x98\x80\0\xc3\xa9/x",
    b"a//b\0a//b", b"+\0a", b"#\0#", b"\xed\xa0\x80\0\xc0\xaf",
]


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    vdir, out = sys.argv[1], sys.argv[2]
    seeds = {t: set() for t in ("decode", "frame", "props", "topic", "roundtrip")}
    nrec, errors = 0, []
    files = sorted(f for f in os.listdir(vdir) if f.endswith(".hex")) if os.path.isdir(vdir) else []
    sources = [(name, lambda n=name: parse_vectors(os.path.join(vdir, n))) for name in files]
    sources += [(os.path.basename(r), lambda r=r: (read_records(r), [])) for r in sys.argv[3:]]
    for name, load in sources:
        recs, errs = load()
        errors += errs
        stream = b""
        for r in recs:
            v, pkt = r["version"], r["bytes"]
            if v not in (3, 4, 5):
                errors.append(f"{name}:{r['line']}: version {v}")
                continue
            nrec += 1
            seeds["decode"].add(bytes([v - 3]) + pkt)
            seeds["frame"].add(b"\0" + pkt)
            if len(stream) < 8192:
                stream += pkt
            blocks, topics, filters = extract(pkt, v)
            seeds["props"].update(blocks)
            for t in topics:
                seeds["topic"].add(t + b"\0" + t)
                seeds["topic"].add(b"#\0" + t)
            for f in filters:
                seeds["topic"].add(f + b"\0" + (topics[0] if topics else b"a/b"))
        if stream:
            seeds["frame"].add(b"\0" + stream)
    seeds["topic"].update(FIXED_TOPIC)
    for v in range(3):
        for t in range(15):
            seeds["roundtrip"].add(bytes([v, t]) + bytes(range(7, 71)))
    seeds["props"].add(b"")
    seeds["props"].add(bytes.fromhex("26000161000162" "0b01" "0b7f" "0100"))
    seeds["decode"].add(bytes([1]) + bytes.fromhex("c000"))
    seeds["frame"].add(b"\0" + bytes.fromhex("c000"))
    for t, s in seeds.items():
        d = os.path.join(out, t)
        os.makedirs(d, exist_ok=True)
        for blob in s:
            p = os.path.join(d, hashlib.sha1(blob).hexdigest())
            if not os.path.exists(p):
                with open(p, "wb") as f:
                    f.write(blob)
    for e in errors[:20]:
        print("hex2corpus: " + e, file=sys.stderr)
    print(f"hex2corpus: {nrec} packets from {len(sources)} files -> " +
          ", ".join(f"{t} {len(s)}" for t, s in seeds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
