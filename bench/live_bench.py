#!/usr/bin/env python3
"""Live capture benchmark: how many packets a second can `poolsniff watch` take on one
core without a drop in libpcap's counters, and does its memory stay flat?

Builds a veth pair inside a fresh network namespace (replayed traffic cannot leave
the machine), starts `poolsniff watch -i vb` pinned to one core, and replays a
capture into the other end with `tcpreplay --pps R --loop L` pinned to the other
core, at rising rates. After each rate the watch is stopped (SIGTERM) and its final
`stats` event gives libpcap's received and dropped counts. A rate counts as kept up
only with no drop *and* the capture ring's backlog processed within 2 s of the replay's
end (a large ring hides a watch that falls behind over a short replay). Then one long
replay at the best such rate samples the watch's RSS every second.

Needs root and tcpreplay. Example:

    python3 bench/live_bench.py --pcap /tmp/bench/bench.pcap --rates 50000,100000,200000,300000
    python3 bench/live_bench.py --pcap /tmp/bench/bench.pcap --workers 3 --watch-cpus 1-3 \\
        --replay-cpu 0                                      # a watch with capture processes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def rss_kb(pid: int) -> int:
    """Resident memory of the process and its children (a watch's --workers)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_kb(int(k)) for k in kids)


def one_rate(ns: str, pcap: str, pps: int, loops: int, tmp: Path, cpu_watch: str,
             cpu_replay: str, buffer_mb: int, sample: bool = False, workers: int = 1) -> dict:
    alerts = tmp / f"alerts-{pps}.json"
    err = tmp / f"watch-{pps}.err"
    db = tmp / f"w-{pps}.db"
    w = subprocess.Popen(["ip", "netns", "exec", ns, "taskset", "-c", cpu_watch, sys.executable,
                          "-m", "poolsniff", "watch", "-i", "vb", "--db", str(db), "--alerts",
                          str(alerts), "--buffer-mb", str(buffer_mb), "--stats-every", "1s",
                          "--no-status", "--workers", str(workers)],
                         stdout=subprocess.DEVNULL, stderr=err.open("w"),
                         cwd=ROOT)
    while "watching live:vb" not in err.read_text():
        if w.poll() is not None:
            raise SystemExit(err.read_text())
        time.sleep(0.05)
    t0 = time.time()
    rp = subprocess.Popen(["ip", "netns", "exec", ns, "taskset", "-c", cpu_replay, "tcpreplay",
                           "-i", "va", "--pps", str(pps), "--loop", str(loops), pcap],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []
    while rp.poll() is None:
        if sample:
            samples.append((round(time.time() - t0, 1), rss_kb(w.pid)))
        time.sleep(1.0)
    out = rp.stdout.read() if rp.stdout else ""
    sent = int(re.search(r"Successful packets:\s+(\d+)", out).group(1))
    rate = re.search(r"Rated: .*?([\d.]+) pps", out)
    # the capture ring (--buffer-mb) holds a backlog: zero drops over a short replay can hide a
    # watch that falls behind. Wait until it has processed what libpcap received, and time it.
    t_end = time.time()
    replay_s = t_end - t0
    drain_s = None
    while time.time() - t_end < 300:
        time.sleep(0.5)
        last = _last_stats(alerts)
        # libpcap's "received" counts the packets the ring dropped too
        if last and last["packets"] >= last["capture"]["received"] - last["capture"]["dropped"] - 16:
            drain_s = round(time.time() - t_end, 1)
            break
    peak = rss_kb(w.pid)
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=600)
    stats = _last_stats(alerts)
    if stats is None:
        raise SystemExit(f"no stats event from the watch: {err.read_text()[-2000:]}")
    cap = stats["capture"]
    return {"pps_asked": pps, "pps_sent": float(rate.group(1)) if rate else None, "sent": sent,
            "received": cap["received"], "dropped": cap["dropped"], "drain_s": drain_s,
            "kept_up": cap["dropped"] == 0 and drain_s is not None and drain_s <= 2.0,
            # what the watch processed per second, replay and backlog together
            "processed_pps": round(stats["packets"] / (replay_s + (drain_s or 0.0))),
            "if_dropped": cap["if_dropped"], "packets_processed": stats["packets"],
            "rss_mb_end": round(peak / 1024, 1), "hosts_mining": None,
            "rss_samples_mb": [(t, round(k / 1024, 1)) for t, k in samples]}


def _last_stats(alerts: Path) -> dict | None:
    try:
        lines = [x for x in alerts.read_text().splitlines() if '"event_type": "stats"' in x]
        return json.loads(lines[-1])["stats"] if lines else None
    except (OSError, ValueError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--rates", default="50000,100000,150000,200000,300000")
    ap.add_argument("--seconds", type=float, default=10.0, help="replay length per rate")
    ap.add_argument("--long", type=float, default=60.0, help="length of the memory run")
    ap.add_argument("--buffer-mb", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1, help="watch --workers")
    ap.add_argument("--watch-cpus", default="0", help="cores the watch runs on (taskset -c)")
    ap.add_argument("--replay-cpu", default="1", help="core tcpreplay runs on")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "live.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespace, capture)")
    npk = int(subprocess.run(["capinfos", "-c", "-M", a.pcap], capture_output=True, text=True)
              .stdout.split()[-1]) if subprocess.run(["which", "capinfos"],
                                                     capture_output=True).returncode == 0 else 0
    ns = f"psbench{os.getpid()}"
    sh("ip", "netns", "add", ns)
    results = []
    try:
        sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for d in ("va", "vb"):
            sh("ip", "-n", ns, "link", "set", d, "mtu", "65535")
            sh("ip", "-n", ns, "link", "set", d, "up")
        tmp = Path(tempfile.mkdtemp(prefix="psbench-"))
        for pps in [int(x) for x in a.rates.split(",")]:
            loops = max(1, int(pps * a.seconds / npk)) if npk else 1
            r = one_rate(ns, a.pcap, pps, loops, tmp, a.watch_cpus, a.replay_cpu, a.buffer_mb,
                         workers=a.workers)
            r.pop("rss_samples_mb")
            results.append(r)
            print(f"{pps:>8} pps asked, {r['pps_sent'] or 0:>10,.0f} sent/s: received "
                  f"{r['received']:>9,}  dropped {r['dropped']:>9,}  backlog drained in "
                  f"{r['drain_s']} s  kept up: {r['kept_up']}  processed {r['processed_pps']:,} pps  "
                  f"rss {r['rss_mb_end']} MB", flush=True)
        clean = [r for r in results if r["kept_up"]]
        best = max(clean, key=lambda r: r["pps_sent"] or 0) if clean else None
        long_rate = int(best["pps_asked"]) if best else int(a.rates.split(",")[0])
        loops = max(1, int(long_rate * a.long / npk)) if npk else 1
        mem = one_rate(ns, a.pcap, long_rate, loops, tmp, a.watch_cpus, a.replay_cpu, a.buffer_mb,
                       sample=True, workers=a.workers)
        s = [k for _t, k in mem["rss_samples_mb"]]
        print(f"memory over a {a.long:.0f}s replay at {long_rate} pps: RSS "
              f"{min(s) if s else 0}–{max(s) if s else 0} MB (samples each second: "
              f"{s}); dropped {mem['dropped']}")
    finally:
        sh("ip", "netns", "del", ns)
    doc = {"date": time.strftime("%Y-%m-%d"), "pcap": a.pcap, "packets_in_pcap": npk,
           "cpu": os.cpu_count(), "workers": a.workers, "watch_cpus": a.watch_cpus,
           "replay_cpu": a.replay_cpu, "rates": results,
           "best_kept_up_pps": best["pps_sent"] if best else None, "memory_run": mem}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(f"best rate kept up with (no drop, backlog drained within 2 s): "
          f"{doc['best_kept_up_pps']} pps; written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
