#!/usr/bin/env python3
"""Abuse: captures an attacker who knows poolsniff watches could send, and what they cost.

    python3 bench/abuse.py                 # the sizes of the issue (takes a few minutes)
    python3 bench/abuse.py --scale 0.01    # a quick look

Cases (each a generated pcap, scanned by `poolsniff scan -f json` under /usr/bin/time):
  flood    N one-packet flows (distinct 5-tuples)         -> flow cap, evictions counted
  line     one mining session, then a line of M MB with no newline -> line cap, oversize counted
  workers  W sessions from one host, each a new worker name        -> per-host set cap + "more"
  dns      D DNS answers for a pool name, each a new address       -> endpoint table cap
  held     H sessions turned mining, each holding ~248 KB a side past a hole -> reassembly memcap
  spoofed  S DNS queries for a pool name, each from a forged source        -> host table cap
Prints seconds, peak RSS and the bounding counters; writes bench/out/abuse.json.
The generators are also used by tests/test_abuse.py on small sizes.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000.0
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
POOL = bytes([203, 0, 113, 77])
POOL_NAME = b"stratum.dogepool.com"        # a stratum host of the bundled catalogue


def _ip4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, dst) + l4


def _tcp(sp: int, dp: int, seq: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, 1, 0x50, flags, 65535, 0, 0) + payload


def _udp(sp: int, dp: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload


def write(path: Path, frames: Iterator[bytes]) -> int:
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        buf = []
        for frame in frames:
            t = T0 + n / 10_000
            buf.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
            n += 1
            if len(buf) >= 50_000:
                f.write(b"".join(buf))
                buf = []
        f.write(b"".join(buf))
    return n


class _Session:
    """One TCP session client:sport -> POOL:3333 with a handshake."""

    def __init__(self, client: bytes, sport: int) -> None:
        self.c, self.sp, self.cs, self.ss = client, sport, 1000, 90_000

    def open(self) -> Iterator[bytes]:
        yield ETH + _ip4(self.c, POOL, 6, _tcp(self.sp, 3333, self.cs - 1, 0x02, b""))
        yield ETH + _ip4(POOL, self.c, 6, _tcp(3333, self.sp, self.ss - 1, 0x12, b""))

    def client(self, data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 1448):
            part = data[i:i + 1448]
            yield ETH + _ip4(self.c, POOL, 6, _tcp(self.sp, 3333, self.cs, 0x18, part))
            self.cs += len(part)

    def pool(self, data: bytes) -> Iterator[bytes]:
        yield ETH + _ip4(POOL, self.c, 6, _tcp(3333, self.sp, self.ss, 0x18, data))
        self.ss += len(data)


def _hello(s: _Session, worker: str) -> Iterator[bytes]:
    yield from s.open()
    yield from s.client(b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.11.1"]}\n')
    yield from s.pool(b'{"id":1,"result":[[["mining.notify","1"]],"08000002",4],"error":null}\n')
    yield from s.client(b'{"id":2,"method":"mining.authorize","params":["%s","x"]}\n'
                        % worker.encode())
    yield from s.pool(b'{"id":2,"result":true,"error":null}\n')


def flood(n: int) -> Iterator[bytes]:
    for i in range(n):
        src = struct.pack("!I", 0x0A000000 + (i >> 16))
        yield ETH + _ip4(src, POOL, 6, _tcp(1024 + (i & 0xFFFF) % 64000, 443, i, 0x02, b""))


def long_line(megabytes: float) -> Iterator[bytes]:
    s = _Session(bytes([10, 7, 0, 1]), 41000)
    yield from _hello(s, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.rig")
    yield from s.client(b'{"id":3,"method":"mining.submit","params":["' + b"A" * 1000)
    chunk = b"A" * (1448 * 64)
    left = int(megabytes * 1_000_000)
    while left > 0:
        part = chunk[:left]
        yield from s.client(part)
        left -= len(part)


def many_workers(n: int) -> Iterator[bytes]:
    for i in range(n):
        s = _Session(bytes([10, 7, 0, 2]), 1024 + i % 64000)
        s.cs += (i // 64000) * 100_000        # a reused port is a new session, not a retransmission
        yield from _hello(s, f"1BoatSLRHtKNngkdXEeobR76b53LETtpyT.w{i}")


def one_session_workers(n: int) -> Iterator[bytes]:
    s = _Session(bytes([10, 7, 0, 3]), 42000)
    yield from _hello(s, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.first")
    for i in range(n):
        yield from s.client(b'{"id":%d,"method":"mining.authorize","params":["w%d","x"]}\n'
                            % (100 + i, i))


def dns_answers(n: int) -> Iterator[bytes]:
    qname = b"".join(bytes([len(p)]) + p for p in POOL_NAME.split(b".")) + b"\0"
    resolver, client = bytes([10, 7, 0, 53]), bytes([10, 7, 0, 4])
    for i in range(n):
        msg = struct.pack("!HHHHHH", i & 0xFFFF, 0x8180, 1, 1, 0, 0) + qname + b"\0\x01\0\x01" + \
            b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x04" + struct.pack("!I", 0x64000000 + i)
        yield ETH + _ip4(resolver, client, 17, _udp(53, 5000 + i % 1000, msg))


def held(n: int) -> Iterator[bytes]:
    """n sessions that turn mining (a subscribe line), then send data past a hole that never
    fills, ~248 KB in each direction: what each holds for reassembly until it ends."""
    for i in range(n):
        s = _Session(struct.pack("!I", 0x0A080000 + i), 1024 + i % 64000)
        yield from _hello(s, f"1BoatSLRHtKNngkdXEeobR76b53LETtpyT.h{i}")
        block = bytes([65 + i % 26]) * 1400
        for k in range(177):
            yield ETH + _ip4(s.c, POOL, 6, _tcp(s.sp, 3333, s.cs + 1400 + k * 1400, 0x18, block))
            yield ETH + _ip4(POOL, s.c, 6, _tcp(3333, s.sp, s.ss + 1400 + k * 1400, 0x18, block))


def spoofed_lookups(n: int) -> Iterator[bytes]:
    """n DNS queries for a pool name, each from a source address of its own (UDP sources are
    free to forge): each would be a 'suspect' host of its own."""
    qname = b"".join(bytes([len(p)]) + p for p in POOL_NAME.split(b".")) + b"\0"
    resolver = bytes([10, 7, 0, 53])
    for i in range(n):
        msg = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\0\x01\0\x01"
        yield ETH + _ip4(struct.pack("!I", 0x0B000000 + i), resolver, 17,
                         _udp(5000 + i % 1000, 53, msg))


CASES = {"flood": flood, "line": long_line, "workers": many_workers, "dns": dns_answers,
         "held": held, "spoofed": spoofed_lookups}


def run(path: Path) -> dict:
    out = path.with_suffix(".json")
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "RSS_KB=%M", sys.executable, "-m", "poolsniff",
                        "scan", str(path), "-f", "json", "-o", str(out)], capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    rss = int(r.stderr.rsplit("RSS_KB=", 1)[1].split()[0])
    doc = json.loads(out.read_text())
    return {"seconds": round(wall, 1), "peak_rss_mb": round(rss / 1024), "doc": doc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    sizes = {"flood": int(5_000_000 * a.scale), "line": 50 * a.scale,
             "workers": int(100_000 * a.scale), "dns": int(1_000_000 * a.scale),
             "held": int(4_000 * a.scale), "spoofed": int(1_000_000 * a.scale)}
    rows = []
    for name, size in sizes.items():
        path = a.out / f"abuse-{name}.pcap"
        pkts = write(path, CASES[name](size))
        r = run(path)
        st, hosts = r["doc"]["stats"], r["doc"]["hosts"]
        bound = {
            "flood": lambda: f"flows {st['flows']:,}, evicted {st['flows_evicted']:,}",
            "line": lambda: f"oversize lines {st['anomalies'].get('framing.line_too_long', 0)}, "
                            f"mining host kept: {bool(hosts)}",
            "workers": lambda: f"workers kept {len(hosts[0]['workers'])} + "
                               f"{hosts[0]['workers_more']:,} more",
            "dns": lambda: f"DNS messages {st['dns_messages']:,}, hosts {len(hosts)} (endpoint "
                           f"table capped at 100,000)",
            "held": lambda: f"mining hosts {len(hosts):,}, segments refused "
                            f"{st['anomalies'].get('stream.memcap_drop', 0):,}",
            "spoofed": lambda: f"hosts {len(hosts):,}, not kept "
                               f"{st['anomalies'].get('hosts.table_full', 0):,}",
        }[name]()
        row = {"case": name, "size": size, "packets": pkts, "seconds": r["seconds"],
               "peak_rss_mb": r["peak_rss_mb"], "bounded_by": bound}
        rows.append(row)
        print(f"{name:<8} {size:>12,} -> {pkts:>10,} packets  {r['seconds']:>7.1f} s  "
              f"peak {r['peak_rss_mb']:>5} MB  {bound}", flush=True)
        path.unlink()
    (a.out / "abuse.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows},
                                                 indent=1))


if __name__ == "__main__":
    main()
