#!/usr/bin/env python3
"""Scan every capture under a folder on its own, both paths, and say what went wrong.

For a third-party corpus of captures that hold no mining (an IDS's test suite, a day of a
campus link): each capture is scanned with the batch path and with the per-packet path; the
report lists captures that raised, captures where the two paths disagree, and every host
called mining or suspect (on a corpus with no mining, each is a false alarm to look at).

    git clone https://github.com/OISF/suricata-verify
    python3 bench/corpus_check.py suricata-verify

Exit status 0 when nothing raised and the paths agree (false alarms are listed, not judged).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from poolsniff.errors import CaptureError  # noqa: E402
from poolsniff.scan import scan_files  # noqa: E402
from poolsniff.signatures import Catalogue  # noqa: E402

MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
          b"\x0a\x0d\x0d\x0a", b"\x1f\x8b")      # pcap (us, ns; both orders), pcapng, gzip


def _is_capture(p: Path) -> bool:
    if not p.is_file():
        return False
    with p.open("rb") as f:
        head = f.read(4)
    return head.startswith(MAGICS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    cat = Catalogue.load()
    files = sorted(p for p in args.folder.rglob("*") if _is_capture(p))
    raised, differ, alarms = [], [], []
    packets = skipped_frag = 0
    t0 = time.monotonic()
    for f in files:
        try:
            a = scan_files([str(f)], cat)
            b = scan_files([str(f)], cat, fast=False)
        except CaptureError:
            continue
        except Exception:  # noqa: BLE001 - the point is to list them
            raised.append((f, traceback.format_exc(limit=3)))
            continue
        packets += a.stats["packets"]
        skipped_frag += a.stats["skipped"].get("ip.fragment", 0)
        if [h.to_dict() for h in a.hosts] != [h.to_dict() for h in b.hosts] or a.stats != b.stats:
            differ.append(f)
        alarms += [(f, h.ip, h.verdict, h.reasons.sorted()[:2]) for h in a.hosts]
    print(f"{len(files)} captures, {packets:,} packets, {time.monotonic() - t0:.1f} s")
    print(f"raised: {len(raised)}; batch and per-packet paths differ: {len(differ)}; "
          f"hosts called mining or suspect: {len(alarms)}")
    for f, tb in raised:
        print(f"RAISED {f}\n{tb}")
    for f in differ:
        print(f"DIFFER {f}")
    for f, ip, verdict, reasons in alarms:
        print(f"{verdict.upper():8} {ip} in {f}: {'; '.join(reasons)}")
    return 1 if raised or differ else 0


if __name__ == "__main__":
    sys.exit(main())
