"""Evidence is mergeable: scans of two captures merge into the answer of one scan of both."""

import json
import math

import pytest

from conftest import PCAPS
from poolsniff.scan import merge_results, scan_files


def _norm(hosts):
    return {h.ip: json.loads(json.dumps(h.to_dict())) for h in hosts}


def _close(a, b):
    """Equal, with floats compared to 1e-9 relative (sums may be added in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("a,b", [
    ("merge_part1.pcap", "merge_part2.pcap"),
    ("xmrig_compact.pcap", "kawpow.pcapng"),
    ("multi_interface.pcapng", "equihash_ns.pcap"),
])
def test_merge_equals_joint_scan(a, b, catalogue):
    pa, pb = str(PCAPS / a), str(PCAPS / b)
    joint = scan_files([pa, pb], catalogue)
    merged = merge_results([scan_files([pa], catalogue), scan_files([pb], catalogue)])
    assert _close(_norm(merged.hosts), _norm(joint.hosts))
    for key in ("packets", "flows", "flows_mining", "json_messages", "hosts_mining"):
        assert merged.stats[key] == joint.stats[key]


def test_merged_host_keeps_both_coins_and_rates(catalogue):
    merged = merge_results([scan_files([str(PCAPS / "merge_part1.pcap")], catalogue),
                            scan_files([str(PCAPS / "merge_part2.pcap")], catalogue)])
    h = {x.ip: x.to_dict() for x in merged.hosts}["10.3.0.10"]
    assert h["coins"] == ["ETH", "XMR"]
    assert [r["algorithm"] for r in h["hashrate"]] == ["ethash", "rx/0"]   # never one sum
    assert h["shares"]["accepted"] == 18 and h["sessions"] == 2
    assert h["first_seen"] < h["last_seen"] - 3000


def test_capped_sets_keep_the_same_items_whatever_the_order_or_split():
    """Flows finish in an order that depends on timing, and partial results merge: the
    items a capped set keeps must not depend on either."""
    import random

    from poolsniff.evidence import CappedSet
    items = [f"worker{i}" for i in range(40)] + [("203.0.113.9", p, None) for p in range(30)]
    kept = None
    rng = random.Random(5)
    for _ in range(20):
        order = items[:]
        rng.shuffle(order)
        one = CappedSet(cap=10)
        for x in order:
            one.add(x)
        a, b = CappedSet(cap=10), CappedSet(cap=10)
        cut = rng.randrange(len(order))
        for x in order[:cut]:
            a.add(x)
        for x in order[cut:]:
            b.add(x)
        a.merge(b)
        assert one.items == a.items
        kept = kept or one.items
        assert one.items == kept == set(sorted(items, key=repr)[:10])
        assert one.more == a.more == len(items) - 10      # distinct items, counted once


def test_empty_capped_sets_share_nothing_a_caller_can_change():
    """A set never added to holds the one shared empty frozenset (a host record has eleven
    sets, most of them empty); the first add, a merge or a stored state gives it its own."""
    from poolsniff.evidence import SKETCH_K, CappedSet
    a, b, c = CappedSet(cap=3), CappedSet(cap=3), CappedSet(cap=3)
    assert a.items is b.items and not a.items and a.more == 0
    a.merge(b)                                  # empty into empty: still nothing
    assert not a.items and a.state() == b.state()
    a.add("x")
    assert a.items == {"x"} and not b.items and not c.items
    c.merge(a)                                  # into an empty one: a set of its own
    c.add("y")
    assert c.items == {"x", "y"} and a.items == {"x"}
    full = CappedSet(["p", "q", "r", "s", "t"], cap=3)      # past the cap: a sketch
    d = CappedSet(cap=3)
    d.merge(full)
    assert d.items == full.items == {"p", "q", "r"} and d.more == full.more == 2
    full.merge(CappedSet(cap=3))                # nothing into a sketched one changes nothing
    assert full.items == {"p", "q", "r"} and full.more == 2
    e = CappedSet.from_state(CappedSet(cap=3).state(), 3)
    e.add("z")
    assert e.items == {"z"} and not CappedSet().items
    big = CappedSet(cap=2)
    for i in range(SKETCH_K + 10):
        big.add(i)
    assert big.items == {0, 1} and big.estimated


def test_a_host_record_is_small_until_it_holds_something():
    """A scanner holds up to MAX_HOSTS records (forged lookups each make a suspect): an
    empty-ish record was ~6.5 KB (1.4 GB at the cap), it is now about a third of that."""
    import tracemalloc

    from poolsniff.evidence import HostEvidence
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        hosts = [HostEvidence(f"10.1.{i // 256}.{i % 256}") for i in range(2_000)]
        for h in hosts:
            h.raise_verdict("suspect", "looked up a pool domain")
            h.domains.add("stratum.example")
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_host = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(hosts)
    assert per_host < 2_500, per_host


def test_capped_set_counts_distinct_items_the_same_whatever_the_order_split_or_repeats():
    """`more` is derived from a mergeable sketch, not added up: items that repeat, or that
    one part kept and another dropped, are counted once, and a round trip through the
    stored state changes nothing. Past SKETCH_K distinct items the count is an estimate,
    still the same in every order."""
    import random

    from poolsniff.evidence import SKETCH_K, CappedSet
    rng = random.Random(11)
    for n_distinct in (150, 1700, 3 * SKETCH_K):
        items = [("198.51.100.7", 3333 + i % 50, f"pool{i}.example") for i in range(n_distinct)]
        stream = items + rng.sample(items, n_distinct // 2)        # repeats
        results = set()
        for _ in range(4):
            rng.shuffle(stream)
            parts = [CappedSet(cap=100) for _ in range(3)]
            for x in stream:
                parts[rng.randrange(3)].add(x)
            rng.shuffle(parts)
            total = CappedSet.from_state(parts[0].state(), 100)     # through the store's form
            for p in parts[1:]:
                total.merge(CappedSet.from_state(p.state(), 100))
            one = CappedSet(cap=100)
            for x in stream:
                one.add(x)
            assert (one.more, one.items) == (total.more, total.items)
            results.add((total.more, frozenset(total.items)))
        assert len(results) == 1
        (more, kept), = results
        assert kept == set(sorted(items, key=repr)[:100])
        if n_distinct <= SKETCH_K:
            assert more == n_distinct - 100 and not one.estimated
        else:
            assert abs(more + 100 - n_distinct) < 0.05 * n_distinct and one.estimated


def test_capped_set_skips_items_added_again_without_changing_anything(monkeypatch):
    """Past the cap a set remembers the items it was given lately and skips them when they
    come again (a probe host's pools, a busy host's links): adding an item twice changes
    nothing, merges in between included. The state is the same as without that memory,
    with the memory cleared when full (a small RECENT_OVERFLOW) and with sketches full."""
    import random

    from poolsniff import evidence
    from poolsniff.evidence import CappedSet

    class Forgetful(CappedSet):
        def add(self, x):
            self._done = None
            super().add(x)

    monkeypatch.setattr(evidence, "SKETCH_K", 64)
    monkeypatch.setattr(evidence, "RECENT_OVERFLOW", 16)
    rng = random.Random(3)
    for n in (30, 200, 2000):
        items = [("192.0.2.%d" % (i % 250), 3000 + i, None) for i in range(n)]
        stream = [rng.choice(items) for _ in range(3 * n)]
        a, b = CappedSet(cap=10), Forgetful(cap=10)
        for i, x in enumerate(stream):
            a.add(x)
            b.add(x)
            if i % 97 == 0:             # merges in between: the kept items and sketch change
                other = [rng.choice(items) for _ in range(20)]
                a.merge(CappedSet(other, cap=10))
                b.merge(CappedSet(other, cap=10))
        assert a.state() == b.state() and a.items == b.items and a._done


def test_capped_set_reads_stores_written_before_sketches():
    """A host record stored by an earlier version ([items, more]) keeps its count."""
    from poolsniff.evidence import CappedSet
    old = CappedSet.from_state([["a", "b"], 7], 2)
    assert old.items == {"a", "b"} and old.more == 7 and old.estimated
