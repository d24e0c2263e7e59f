"""Resource bounds under abuse, on small sizes of bench/abuse.py's captures: the flow cap,
the line cap, per-host set caps with their "and N more" counts, the DNS endpoint table.
bench/abuse.py runs the issue's sizes and prints memory and time."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import abuse  # noqa: E402


@pytest.fixture(scope="module")
def cat():
    from poolsniff.signatures import Catalogue
    return Catalogue.load()


def scan(path: Path, cat, **kw):
    from poolsniff.scan import scan_files
    return scan_files([str(path)], cat, **kw)


def test_flood_of_one_packet_flows_is_capped(tmp_path, cat):
    p = tmp_path / "flood.pcap"
    abuse.write(p, abuse.flood(30_000))
    res = scan(p, cat, max_flows=1000)
    assert res.stats["flows"] == 30_000
    assert res.stats["flows_evicted"] == 30_000 - 1000
    assert res.hosts == []


def _peak(path: Path, cat) -> tuple[int, object]:
    tracemalloc.start()
    try:
        res = scan(path, cat)
        return tracemalloc.get_traced_memory()[1], res
    finally:
        tracemalloc.stop()


def test_endless_line_is_capped_and_the_miner_still_found(tmp_path, cat, monkeypatch):
    from poolsniff.framing import MAX_LINE_BYTES
    from poolsniff.sources import pcapfile
    monkeypatch.setattr(pcapfile, "BLOCK_BYTES", 1 << 20)    # blocks of 1 MB (default 32 MB)
    peaks = []
    for mb in (2, 8):
        p = tmp_path / f"line{mb}.pcap"
        abuse.write(p, abuse.long_line(mb))
        peak, res = _peak(p, cat)
        peaks.append(peak)
        assert res.stats["anomalies"].get("framing.line_too_long", 0) >= 1
        [h] = res.hosts
        assert h.verdict == "mining" and "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.rig" in h.workers.items
    # memory does not follow the line: 4x the line, not 4x the memory (the line cap is
    # 64 KB; what remains is one block of the capture)
    assert peaks[1] < peaks[0] * 1.5 + 4 * MAX_LINE_BYTES, peaks


def test_many_workers_keep_a_bounded_set_and_count_the_rest(tmp_path, cat):
    from poolsniff.evidence import MAX_SET
    p = tmp_path / "workers.pcap"
    abuse.write(p, abuse.many_workers(3000))
    [h] = scan(p, cat).hosts
    d = h.to_dict()
    assert len(d["workers"]) == MAX_SET and d["workers_more"] == 3000 - MAX_SET
    assert d["sessions"] == 3000
    # one session that authorizes 500 workers: the flow keeps MAX_SET and counts the rest
    p2 = tmp_path / "one.pcap"
    abuse.write(p2, abuse.one_session_workers(500))
    [h2] = scan(p2, cat).hosts
    d2 = h2.to_dict()
    assert len(d2["workers"]) == MAX_SET and d2["workers_more"] == 501 - MAX_SET


def test_dns_answers_fill_a_bounded_endpoint_table(tmp_path, cat, monkeypatch):
    from poolsniff import pipeline
    from poolsniff.batch import feed_block
    from poolsniff.sources.pcapfile import CaptureReader
    monkeypatch.setattr(pipeline, "MAX_ENDPOINTS", 1000)
    p = tmp_path / "dns.pcap"
    abuse.write(p, abuse.dns_answers(20_000))
    sc = pipeline.Scanner(cat)
    sc.begin_file("dns")
    for blk in CaptureReader(str(p)).blocks(4096):
        feed_block(sc, blk)
        assert len(sc.endpoints) <= 1000
    sc.finish_all()
    assert sc.stats.dns_messages == 20_000
    [h] = sc.results()
    assert h.verdict == "suspect" and h.evidence_total == 20_000 and len(h.evidence) <= 40
    assert len(sc.domain_events) <= 10_000
