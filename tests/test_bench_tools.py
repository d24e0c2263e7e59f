"""The benchmark's capture builders (bench/): what they build is what the README's figures
claim it is."""

import subprocess
import sys

from conftest import PCAPS, ROOT, scan_json
from poolsniff.sources.pcapfile import CaptureReader


def test_sessions_builder_makes_distinct_concurrent_miners(tmp_path, catalogue):
    """bench/make_sessions_pcap.py: N copies of a capture, each with clients of its own,
    overlapping in time; every copy's miner is found, with its own address."""
    out = tmp_path / "miners.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_sessions_pcap.py"),
                    str(PCAPS / "xmrig_compact.pcap"), "--copies", "3", "--spacing-ms", "1",
                    "--out", str(out)], check=True, capture_output=True)
    one, _ = scan_json([PCAPS / "xmrig_compact.pcap"], catalogue)
    many, stats = scan_json([out], catalogue)
    assert list(one) == ["10.1.0.15"]
    assert sorted(many) == ["10.0.0.15", "10.0.1.15", "10.0.2.15"]
    assert all(h["verdict"] == "mining" for h in many.values())
    assert {h["shares"]["accepted"] for h in many.values()} == {one["10.1.0.15"]["shares"]["accepted"]}
    # the copies overlap in time (as concurrent sessions do) and keep capture-time order
    clients = []
    ts = []
    for batch in CaptureReader(str(out)):
        for _frame, t, _lt, buf in batch:
            ts.append(t)
            src, dst = buf[26:30], buf[30:34]
            clients.append((src if src[0] == 10 else dst)[2])
    assert ts == sorted(ts)
    last_of_first = max(i for i, c in enumerate(clients) if c == 0)
    assert clients.index(1) < last_of_first and clients.index(2) < last_of_first
