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


def _holdings(sc) -> int:
    """What the scanner's flows hold back, counted from the flows themselves."""
    n = 0
    for f in sc.flows.values():
        n += sum(s.ooo_bytes for s in f.streams or ())
        n += sum(fr.held for fr in f.framers or () if fr is not None)
        n += len(f.tls_buf)
        n += f.proxy.buffered() if f.proxy is not None else 0
    return n


def test_flows_holding_bytes_past_a_hole_stay_under_the_memcap(tmp_path, cat):
    """Fake miners that each hold ~248 KB a side past a hole that never fills: without a cap
    over all flows, 2,000 of them took 1.24 GB. The memcap holds what it allows, refuses the
    rest (counted), every miner is still found, and both paths agree."""
    from poolsniff.batch import feed_block
    from poolsniff.pipeline import Scanner
    from poolsniff.sources.pcapfile import CaptureReader
    p = tmp_path / "held.pcap"
    abuse.write(p, abuse.held(40))
    cap = 2 << 20
    results = []
    for fast in (True, False):
        sc = Scanner(cat, memcap=cap)
        sc.begin_file("held")
        rd = CaptureReader(str(p), batch_size=4096)
        for chunk in (rd.blocks(4096) if fast else rd):
            feed_block(sc, chunk) if fast else sc.feed(chunk)
            assert sc.budget.used == _holdings(sc) <= cap
        sc.finish_all()
        assert sc.budget.used == 0                  # all given back as the flows ended
        assert sc.stats.anomalies["stream.memcap_drop"] > 0
        results.append([h.to_dict() for h in sc.results()])
        assert len(results[-1]) == 40 and all(h["verdict"] == "mining" for h in results[-1])
    assert results[0] == results[1]
    # with the default cap (256 MB) these 40 flows hold all they send: nothing refused
    res = scan(p, cat)
    assert "stream.memcap_drop" not in res.stats["anomalies"] and len(res.hosts) == 40


def test_memcap_accounting_matches_the_flows_on_the_suite(cat):
    """What the budget says is held equals what the flows hold, after every batch of every
    capture of pcaps/ (both paths), and nothing is left once the flows end."""
    from conftest import PCAPS
    from poolsniff.batch import feed_block
    from poolsniff.pipeline import Scanner
    from poolsniff.sources.pcapfile import CaptureReader
    paths = sorted(PCAPS.glob("*.pcap*")) + sorted((PCAPS / "malformed").glob("*.pcap*"))
    for path in paths:
        for fast in (True, False):
            sc = Scanner(cat)
            try:
                rd = CaptureReader(str(path), batch_size=512)
            except Exception:        # the damaged captures that are not captures at all
                continue
            sc.begin_file(path.name)
            for chunk in (rd.blocks(512) if fast else rd):
                feed_block(sc, chunk) if fast else sc.feed(chunk)
                assert sc.budget.used == _holdings(sc), (path.name, fast)
            sc.finish_all()
            assert sc.budget.used == 0, (path.name, fast)


def test_partial_lines_and_messages_count_against_the_memcap():
    from poolsniff.framing import HttpFramer, LineFramer
    from poolsniff.stream import Budget, HalfStream
    b = Budget(1000)
    lines = []
    lf = LineFramer(lambda line, f, t: lines.append(line), lambda *a: None, budget=b)
    lf.feed(b'{"id":1}\n{"id":2,', 1, 0.0)
    assert b.used == lf.held == 8
    lf.feed(b"x" * 2000, 2, 0.0)                     # the partial line outgrows the cap: dropped
    assert b.used == 0 and b.refused == 1 and lf.resync
    lf.feed(b'tail"}\n{"id":3}\n', 3, 0.0)         # re-synced at the next newline
    assert lines == [b'{"id":1}', b'{"id":3}']
    hf = HttpFramer(lambda m: None, lambda *a: None, b)
    hf.feed(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"y" * 1200, 1, 0.0)
    assert hf.dead and b.used == 0 and b.refused == 2
    hs = HalfStream(lambda *a: None, b)
    hs.syn(99)
    hs.segment(600, b"z" * 600, 1, 0.0)            # held past the hole at 100
    hs.segment(2000, b"z" * 600, 2, 0.0)           # refused: over the cap
    assert hs.ooo_bytes == b.used == 600 and b.refused == 3
    hs.release()
    assert b.used == 0


def test_a_framer_let_go_while_it_feeds_gives_everything_back():
    """An HTTP request that decides its flow 'other' drops the flow's framers from inside the
    framer's own feed; the pipelined bytes after it must not be held (and counted) again."""
    from poolsniff.framing import HttpFramer
    from poolsniff.stream import Budget
    b = Budget(10_000)
    box = []
    hf = HttpFramer(lambda m: box[0].release(), lambda *a: None, b)
    box.append(hf)
    hf.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next-request-not-yet-whole", 1, 0.0)
    assert b.used == 0 and hf.held == 0


def test_an_unfinished_client_hello_is_held_then_given_back(cat):
    from poolsniff.batch import feed_block
    from poolsniff.sources.pcapfile import block_from_packets
    from poolsniff.pipeline import Scanner
    s = abuse._Session(bytes([10, 7, 0, 9]), 43000)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"r" * 89      # 100 of 517 bytes
    frames = list(s.open()) + list(s.client(hello))
    sc = Scanner(cat)
    sc.begin_file("tls")
    feed_block(sc, block_from_packets([(i + 1, abuse.T0 + i / 10, 1, f)
                                       for i, f in enumerate(frames)]))
    assert sc.budget.used == _holdings(sc) == 100
    sc.finish_all()
    assert sc.budget.used == 0


def test_a_flood_of_fins_on_one_flow_keeps_one_closing_entry(cat):
    """Packet by packet (the path a block that would overflow the flow table takes), every
    FIN pushed an entry to the closing heap: 40,000 FINs on one flow, 40,000 entries until
    the flow fell silent. A flow has one entry; the flow still ends once silent."""
    from poolsniff.pipeline import CLOSED_LINGER_S, Scanner
    s = abuse._Session(bytes([10, 7, 0, 1]), 41000)
    fin = [abuse.ETH + abuse._ip4(s.c, abuse.POOL, 6, abuse._tcp(s.sp, 3333, s.cs, 0x11, b"")),
           abuse.ETH + abuse._ip4(abuse.POOL, s.c, 6, abuse._tcp(3333, s.sp, s.ss, 0x11, b""))]
    frames = list(s.open()) + [fin[i % 2] for i in range(40_000)]
    pkts = [(i + 1, abuse.T0 + i * 1e-5, 1, f) for i, f in enumerate(frames)]
    sc = Scanner(cat)
    sc.begin_file("fins")
    for i in range(0, len(pkts), 4096):
        sc.feed(pkts[i:i + 4096])
        assert len(sc.closing) <= 1
    assert len(sc.flows) == 1
    sc.expire(abuse.T0 + 1 + CLOSED_LINGER_S + 1)
    assert not sc.flows and not sc.closing


def test_spoofed_lookups_fill_a_bounded_host_table(tmp_path, cat, monkeypatch):
    """One forged DNS query for a pool name per source address made a host record each
    (~7 KB: 80,000 of them, 600 MB). The table holds MAX_HOSTS; the rest is counted and
    said, and a pool session that comes when the table is full still counts as pool traffic."""
    from poolsniff import pipeline
    monkeypatch.setattr(pipeline, "MAX_HOSTS", 500)
    monkeypatch.setattr(pipeline, "MAX_DOMAIN_EVENTS", 100)     # (bounded on their own)
    p = tmp_path / "spoofed.pcap"
    frames = list(abuse.spoofed_lookups(2_000))
    s = abuse._Session(bytes([10, 7, 0, 99]), 45000)
    frames += list(abuse._hello(s, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.late"))
    abuse.write(p, iter(frames))
    res = scan(p, cat)
    assert len(res.hosts) == 500 and res.stats["hosts_suspect"] == 500
    assert res.stats["anomalies"]["hosts.table_full"] == 1_500 + 1      # the late miner too
    assert any("host table was full" in w for w in res.warnings)
    assert sum(b[1] for b in res.traffic.to_list()) > 0                 # its pool bytes counted
    # 3,000 more forged sources past the cap cost what their packets cost (the block, the
    # address strings remembered), not 3,000 host records (~7 KB each: 21 MB more)
    peaks = []
    for n in (1_000, 4_000):
        q = tmp_path / f"s{n}.pcap"
        abuse.write(q, abuse.spoofed_lookups(n))
        peaks.append(_peak(q, cat)[0])
    assert peaks[1] - peaks[0] < 3_000 * 2_500, peaks


def test_a_proxy_opening_is_held_against_the_memcap(cat):
    """A SOCKS5 opening waiting for the proxy's answer holds its bytes in the account; at a
    cap too small for it, the flow is given up on; either way nothing is left at the end."""
    from poolsniff.batch import feed_block
    from poolsniff.pipeline import Scanner
    from poolsniff.sources.pcapfile import block_from_packets
    s = abuse._Session(bytes([10, 7, 0, 8]), 44000)
    frames = list(s.open()) + list(s.client(b"\x05\x01\x00"))
    pkts = [(i + 1, abuse.T0 + i / 10, 1, f) for i, f in enumerate(frames)]
    for cap, held in ((None, 3), (2, 0)):
        sc = Scanner(cat, memcap=cap)
        sc.begin_file("socks")
        feed_block(sc, block_from_packets(pkts))
        [flow] = sc.flows.values()
        assert sc.budget.used == _holdings(sc) == held
        assert (flow.state == "other") == (held == 0)
        sc.finish_all()
        assert sc.budget.used == 0
