"""State stays bounded: the flow table honours its cap, each tracked flow stays under 1 KB."""

import struct
import tracemalloc

from poolsniff import pipeline
from poolsniff.model import Segment
from poolsniff.pipeline import Scanner


def _syn(i):
    return Segment(i, 1.0 + i * 1e-3, 4, struct.pack("!I", 0x0A000000 + i), b"\xcb\x00\x71\x01", 6,
                   1024 + i % 60000, 443, 0x02, i, b"", 40)


def test_flow_table_cap_evicts_and_counts(catalogue, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_FLOWS", 1000)
    sc = Scanner(catalogue)
    sc.begin_file("flood")
    for i in range(5000):
        sc._tcp(_syn(i))
    assert len(sc.flows) == 1000
    assert sc.stats.flows == 5000 and sc.stats.flows_evicted == 4000


def test_memory_per_tracked_flow_under_1kb(catalogue):
    sc = Scanner(catalogue)
    sc.begin_file("flood")
    for i in range(200):            # warm up caches and interned objects
        sc._tcp(_syn(i))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    n = 10_000
    for i in range(200, 200 + n):
        sc._tcp(_syn(i))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert grown / n < 1024


def test_memory_per_open_mining_session(catalogue):
    """A Stratum session caught in the middle (subscribed, authorised, jobs and shares flowing)
    holds reassembly, framing, session and evidence state: bounded, and kept small — 2,000
    such sessions open at once, measured with tracemalloc (8.8 KB each when written; a deque
    per pending request id, a copy of each evidence text per flow and a dict per evidence
    note made it 11.8 KB)."""
    import dpkt

    from conftest import PCAPS
    from poolsniff.batch import feed_block
    from poolsniff.sources.pcapfile import block_from_packets
    pk = list(dpkt.pcap.Reader(open(PCAPS / "stratum_btc_compact.pcap", "rb")))
    cip = dpkt.ethernet.Ethernet(pk[0][1]).data.src
    recs = []
    for i in range(2000):
        nip = bytes([10, 200, i >> 8, i & 255])
        for j, (ts, buf) in enumerate(pk[:24]):           # the session's first 24 packets
            e = dpkt.ethernet.Ethernet(buf)
            ip, tcp = e.data, e.data.data
            if ip.src == cip:
                ip.src, tcp.sport = nip, 1024 + i
            else:
                ip.dst, tcp.dport = nip, 1024 + i
            recs.append((j, ts + i * 1e-3, bytes(e)))
    recs.sort(key=lambda r: (r[0], r[1]))                  # all sessions open at once
    pkts = [(k + 1, ts, 1, b) for k, (_j, ts, b) in enumerate(recs)]
    feed_block(Scanner(catalogue), block_from_packets(pkts[:4096]))    # warm up caches
    blocks = [block_from_packets(pkts[k:k + 4096]) for k in range(0, len(pkts), 4096)]
    sc = Scanner(catalogue)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for blk in blocks:
        feed_block(sc, blk)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert sum(f.state == "mining" for f in sc.flows.values()) == 2000
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert grown / 2000 < 10 * 1024, grown / 2000
