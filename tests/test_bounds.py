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
