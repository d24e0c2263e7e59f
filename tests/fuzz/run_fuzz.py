#!/usr/bin/env python3
"""Long fuzz run: every target of tests/fuzz/targets.py under atheris (libFuzzer,
coverage-guided) for a fixed number of inputs, each in its own process, with a per-input
time limit and a memory limit. Seeds come from the repository (generated captures,
signatures, a registry, mining messages). Writes tests/fuzz/results.json; the README
beside this file records a run.

    python tests/fuzz/run_fuzz.py --runs 1000000            # every target
    python tests/fuzz/run_fuzz.py --runs 200000 --target dns --jobs 2

A crash leaves its input in tests/fuzz/crashes/<target>/ (reproduce with
``python tests/fuzz/run_fuzz.py --target T --reproduce FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SEED_LINES = [
    b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}\n'
    b'{"id":1,"result":[[["mining.notify","ae6812eb"]],"08000002",4],"error":null}\n'
    b'{"id":null,"method":"mining.set_difficulty","params":[8192]}\n'
    b'{"id":2,"method":"mining.submit","params":["w","j","00","5","6"]}\n{"id":2,"result":true}\n',
    b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4A","pass":"x",'
    b'"agent":"XMRig/6.21"}}\n{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"1",'
    b'"job":{"blob":"0707","job_id":"9","target":"b88d0600","algo":"rx/0"},"status":"OK"}}\n',
    b'{"id":2,"method":"eth_submitLogin","params":["0xabc"]}\n{"id":2,"result":true}\n'
    b'{"id":3,"method":"eth_getWork","params":[]}\n'
    b'{"id":3,"result":["0x1","0x2","0x00000000ffff"]}\n',
    b'{"id":null,"method":"mining.set_target","params":["0004189374bc6a7ef9db22d0e5604189"]}\n',
    b'[' * 200 + b']' * 200 + b'\n{"a":' * 50 + b'1' + b'}' * 50 + b'\n',
]


def _deflated_ws_seed() -> bytes:
    """An upgrade, then permessage-deflate messages (RSV1 set; the second split in two
    frames) compressed with context takeover."""
    import zlib
    c = zlib.compressobj(wbits=-15)
    z1 = (c.compress(b'{"type":"job","params":{"job_id":"1"}}') + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    z2 = (c.compress(b'{"type":"job","params":{"job_id":"2"}}') + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    h = len(z2) // 2
    return (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\xff" + bytes([0xC1, len(z1)]) + z1
            + bytes([0x41, h]) + z2[:h] + bytes([0x80, len(z2) - h]) + z2[h:])


def fragment_seed() -> bytes:
    """The frames of pcaps/fragments_xmrig.pcap, each a 2-byte length and its bytes."""
    from poolsniff.sources.pcapfile import CaptureReader
    out = b""
    for blk in CaptureReader(str(ROOT / "pcaps" / "fragments_xmrig.pcap")).blocks(4096):
        for o, n in zip(blk.offs.tolist(), blk.incl.tolist()):
            out += n.to_bytes(2, "big") + blk.buf[o:o + n]
    return out


def seeds(target: str, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    files: list[bytes] = []
    pcaps = ROOT / "pcaps"
    if target in ("capture_pcap", "scan_pcap"):
        files = [p.read_bytes() for p in sorted(pcaps.glob("*.pcap"))[:12]]
        if target == "scan_pcap":      # tunnelled traffic and DNS over TCP through the scanner too
            files.append((pcaps / "tunnels_xmrig.pcap").read_bytes())
            files.append((pcaps / "dns_over_tcp.pcap").read_bytes())
            files.append((pcaps / "fragments_xmrig.pcap").read_bytes())
    elif target == "capture_pcapng":
        files = [p.read_bytes() for p in sorted(pcaps.glob("*.pcapng"))]
    elif target in ("json_dialects", "line_framer", "pipeline"):
        files = SEED_LINES if target != "pipeline" else [x.replace(b"\n", b"\n\xff") for x in SEED_LINES]
    elif target == "signatures_yaml":
        text = (ROOT / "signatures" / "pools.yaml").read_bytes()
        files = [text[:4000], text[:800]]
    elif target == "registry":
        files = [b"institutions:\n  - name: A\n    category: university\n    city: X\n"
                 b"    cidrs: [10.0.0.0/8, 2001:db8::/32]\n",
                 b"name,category,city,cidr\nA,enterprise,B,10.1.0.0/16\nA,enterprise,B,10.2.0.0/16\n"]
    elif target == "http_websocket":
        files = [b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
                 b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\xff\x81\x85\x11\x22\x33\x44abcde",
                 _deflated_ws_seed()]
    elif target == "proxy":          # chunks split at 0xff, client and proxy in turn
        files = [b"\x05\x02\x00\x02\xff\x05\x02\xff\x01\x01u\x01p\xff\x01\x00\xff\x05\x01\x00\x03"
                 b"\x04pool\x0d\x05\xff\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00",
                 b"\x04\x01\x0d\x05\x00\x00\x00\x01u\x00pool.example\x00\xff\x00\x5a\x00\x00\x00\x00\x00\x00",
                 b"CONNECT pool.example:3333 HTTP/1.1\r\n\r\n\xffHTTP/1.1 200 OK\r\n\r\n"]
    elif target == "decode":         # a link-type byte (1: Ethernet), then the frame
        from poolsniff.sources.pcapfile import CaptureReader
        for name in ("tunnels_xmrig.pcap", "stratum_btc_spaced_crlf_qinq.pcap", "ethstratum_ipv6.pcap"):
            for blk in CaptureReader(str(pcaps / name)).blocks(4096):
                for o, n in zip(blk.offs.tolist()[::7], blk.incl.tolist()[::7]):
                    files.append(b"\x01" + blk.buf[o:o + n])
    elif target == "ip_fragments":    # frames, each a 2-byte length and its bytes
        files = [fragment_seed()]
    elif target == "dns":
        files = [bytes.fromhex("12348180000100010000000004706f6f6c076578616d706c6503636f6d0000010001"
                               "c00c000100010000003c0004cb007101")]
    elif target == "tls_client_hello":
        files = [bytes.fromhex("160301003a010000360303" + "00" * 32 + "000002130101000008"
                               "0000000c000a00000778612e706f6f6c")]
        # a server's TLS 1.2 flight with a certificate, from the generated capture
        from poolsniff.sources.pcapfile import CaptureReader
        for blk in CaptureReader(str(pcaps / "tls_certificate.pcap")).blocks(4096):
            for o, n in zip(blk.offs.tolist(), blk.incl.tolist()):
                at = blk.buf.find(b"\x16\x03\x03", o, o + n)
                if at >= 0 and blk.buf[at + 5] == 2:
                    files.append(blk.buf[at:o + n])
    for i, b in enumerate(files):
        (d / f"seed{i}").write_bytes(b)


HARNESS = r"""
import sys, atheris
with atheris.instrument_imports(include=["poolsniff"]):
    import poolsniff.batch, poolsniff.pipeline, poolsniff.decode, poolsniff.framing
    import poolsniff.dialects, poolsniff.protocols, poolsniff.registry, poolsniff.signatures
    import poolsniff.sources.pcapfile, poolsniff.stream, poolsniff.output, poolsniff.evidence
sys.path.insert(0, {here!r})
from targets import TARGETS
fn = TARGETS[{target!r}]
atheris.Setup(sys.argv, fn)
atheris.Fuzz()
"""


def run_target(target: str, runs: int, max_len: int, timeout_s: int, rss_mb: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    corpus = work / "corpus"
    seeds(target, corpus)
    crashes = HERE / "crashes" / target
    crashes.mkdir(parents=True, exist_ok=True)
    harness = work / "harness.py"
    harness.write_text(HARNESS.format(here=str(HERE), target=target))
    cmd = [sys.executable, str(harness), str(corpus), f"-runs={runs}", f"-max_len={max_len}",
           f"-timeout={timeout_s}", f"-rss_limit_mb={rss_mb}", f"-artifact_prefix={crashes}/",
           "-print_final_stats=1"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", out)
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    peak = re.search(r"stat::peak_rss_mb:\s*(\d+)", out)
    cov = re.findall(r"cov: (\d+)", out)
    ok = p.returncode == 0 and done is not None
    res = {"target": target, "ok": ok, "runs": int(execs.group(1)) if execs else
           (int(done.group(1)) if done else 0), "seconds": round(took, 1),
           "peak_rss_mb": int(peak.group(1)) if peak else None,
           "coverage_edges": int(cov[-1]) if cov else None, "returncode": p.returncode}
    if not ok:
        res["tail"] = out[-3000:]
    return res


def main() -> int:
    from targets import TARGETS  # noqa: PLC0415 - path set below
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--target", action="append", choices=sorted(TARGETS))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--timeout", type=int, default=10, help="seconds allowed per input")
    ap.add_argument("--rss-mb", type=int, default=1024, help="memory limit of a fuzzing process")
    ap.add_argument("--reproduce", metavar="FILE")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    a = ap.parse_args()
    targets = a.target or sorted(TARGETS)
    if a.reproduce:
        TARGETS[targets[0]](Path(a.reproduce).read_bytes())
        print("no exception")
        return 0
    with ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(lambda t: run_target(t, a.runs, a.max_len, a.timeout, a.rss_mb),
                              targets))
    for r in results:
        print(f"{r['target']:<18} {'ok  ' if r['ok'] else 'FAIL'} {r['runs']:>10,} inputs "
              f"{r['seconds']:>8.1f} s  peak {r['peak_rss_mb']} MB  edges {r['coverage_edges']}")
        if not r["ok"]:
            print(r.get("tail", ""))
    # each target's last run: a run of some targets keeps the others' figures
    out = Path(a.out)
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError):
        doc = {}
    day = time.strftime("%Y-%m-%d")
    kept = [r for r in doc.get("results", []) if r.get("target") not in targets]
    for r in results:
        r["date"] = day
    doc.update({"date": day, "python": sys.version.split()[0], "runs_requested": a.runs,
                "results": sorted(kept + results, key=lambda r: r.get("target", ""))})
    out.write_text(json.dumps(doc, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
