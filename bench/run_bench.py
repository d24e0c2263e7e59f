#!/usr/bin/env python3
"""Throughput of poolsniff against tcpdump and nDPI's ndpiReader, on one file, in one run.

    python3 bench/run_bench.py                      # builds bench/out/bench.pcap (2 M packets)
    python3 bench/run_bench.py --packets 500000 --runs 3 --cpu 0

Builds the benchmark capture with ../shared/bench/make_bench_pcap.py from
../shared/pcaps/public (unless --pcap is given), then times, alternating and
best of --runs each: ``tcpdump -r F -w /dev/null``, ``ndpiReader -i F -q`` and
``poolsniff scan F --format json``, each pinned to one core (taskset). Prints
packets/s, the ratio of poolsniff to each peer and peak RSS (/usr/bin/time %M),
and writes the same as JSON to bench/out/results.json. Needs tcpdump and
libndpi-bin (Debian), and /usr/bin/time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"


def build(out: Path, packets: int) -> None:
    if out.exists() and out.stat().st_size > 0:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_bench_pcap.py"), "--out", str(out),
                    "--packets", str(packets), str(SHARED / "pcaps" / "public")], check=True)


def count_packets(path: Path) -> int:
    import struct
    n = 0
    with open(path, "rb") as f:
        f.read(24)
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            incl = struct.unpack("<I", h[8:12])[0]
            f.seek(incl, 1)
            n += 1


def timed(cmd: list[str], cpu: int | None) -> tuple[float, int]:
    """(wall seconds, peak RSS KB) of one run of cmd."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "RSS_KB=%M"] + pin + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    m = re.search(r"RSS_KB=(\d+)", r.stderr)
    return wall, int(m.group(1)) if m else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pcap", type=Path, help="use this capture instead of building one")
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0, help="core to pin every tool to (-1: no pinning)")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    cpu = None if args.cpu < 0 else args.cpu
    pcap = args.pcap or args.out / f"bench-{args.packets}.pcap"
    if not args.pcap:
        build(pcap, args.packets)
    n = count_packets(pcap)
    tools = {
        "tcpdump": ["tcpdump", "-r", str(pcap), "-w", "/dev/null"],
        "ndpiReader": ["ndpiReader", "-i", str(pcap), "-q"],
        "poolsniff": [sys.executable, "-m", "poolsniff", "scan", str(pcap), "--format", "json",
                      "-o", os.devnull],
    }
    missing = [t for t, c in tools.items() if t != "poolsniff" and not shutil.which(c[0])]
    for t in missing:
        print(f"warning: {t} not installed (apt-get install tcpdump libndpi-bin); skipped", file=sys.stderr)
        del tools[t]
    best: dict[str, tuple[float, int]] = {}
    for run in range(args.runs):
        for name, cmd in tools.items():           # alternate the tools within each round
            wall, rss = timed(cmd, cpu)
            print(f"run {run + 1}: {name:10s} {wall:8.2f} s  {rss / 1024:8.1f} MB", file=sys.stderr)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, rss)
    rows = {name: {"seconds": w, "pps": n / w, "peak_rss_mb": rss / 1024} for name, (w, rss) in best.items()}
    ps = rows["poolsniff"]["pps"]
    for name, row in rows.items():
        row["poolsniff_ratio"] = ps / row["pps"]
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "capture": str(pcap), "packets": n, "bytes": pcap.stat().st_size, "runs": args.runs,
        "pinned_cpu": cpu, "tools": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{n} packets, {pcap.stat().st_size / 1e6:.0f} MB, best of {args.runs}, one core"
          f" ({result['machine']}, {result['date']})\n")
    print("| tool | seconds | packets/s | poolsniff ÷ tool | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['seconds']:.2f} | {row['pps'] / 1e3:,.0f} k | "
              f"{row['poolsniff_ratio']:.2f}× | {row['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
