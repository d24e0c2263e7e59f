#!/usr/bin/env python3
"""Memory under a flood of one-packet flows: peak RSS must stay flat past the flow cap.

    python3 bench/flood.py --packets 1000000 2000000 5000000 10000000

Writes, for each size, a pcap of SYNs from distinct source ports/addresses (every packet a
new flow), scans it with poolsniff and prints seconds, peak RSS and the flows evicted. Each
tracked flow costs under 1 KB; the table holds at most pipeline.MAX_FLOWS of them.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_flood(path: Path, n: int) -> None:
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        for i in range(n):
            src = 0x0A000000 + (i >> 16)
            ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, src, 0xCB007101)
            tcp = struct.pack("!HHIIBBHHH", 1024 + (i & 0xFFFF) % 64000, 443, i, 0, 0x50, 0x02, 1024, 0, 0)
            pkt = eth + ip + tcp
            t = 1_700_000_000 + i / 100_000
            chunk.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(pkt), len(pkt)) + pkt)
            if len(chunk) >= 100_000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| one-packet flows | seconds | peak RSS | flows evicted |")
    print("|---:|---:|---:|---:|")
    for n in args.packets:
        path = args.out / f"flood-{n}.pcap"
        if not path.exists():
            write_flood(path, n)
        res = args.out / f"flood-{n}.json"
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "RSS_KB=%M", sys.executable, "-m", "poolsniff", "scan",
                            str(path), "-f", "json", "-o", str(res)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rss = int(r.stderr.rsplit("RSS_KB=", 1)[1].split()[0])
        stats = json.loads(res.read_text())["stats"]
        print(f"| {n:,} | {wall:.1f} | {rss / 1024:.0f} MB | {stats['flows_evicted']:,} |")


if __name__ == "__main__":
    main()
