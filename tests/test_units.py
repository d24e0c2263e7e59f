"""Small sans-IO units: framing, coins, estimator, signatures."""

import pytest
from scipy.stats import chi2

from poolsniff.coins import find_wallets, split_login
from poolsniff.estimate import hashrate_ci
from poolsniff.framing import LineFramer, parse_json


def test_line_framer_split_and_merge():
    got = []
    fr = LineFramer(lambda b, f, t: got.append((b, f)), lambda *a: None)
    fr.feed(b'{"a":1}\n{"b"', 1, 0.0)
    fr.feed(b':2}\r\n{"c":3}\n', 2, 0.0)
    assert got == [(b'{"a":1}', 1), (b'{"b":2}', 2), (b'{"c":3}', 2)]


def test_line_framer_caps_long_lines():
    events = []
    fr = LineFramer(lambda *a: None, lambda e, f, t: events.append(e), max_line=100)
    for _ in range(50):
        fr.feed(b"x" * 64, 1, 0.0)
    assert events and len(fr.buf) <= 100


@pytest.mark.parametrize("raw", [b"[" * 10000 + b"]" * 10000, b'{"a":"\xff\xfe"}', b"{" * 5000, b""])
def test_parse_json_hostile(raw):
    assert parse_json(raw) is None


def test_wallets_and_checksums():
    w = find_wallets("18ZaVcAT9uahY1jsgF4MQSE7TiZrCjgR3v.rack07")
    assert [(x.coin, x.checksum) for x in w] == [("BTC", True)]
    assert find_wallets("18ZaVcAT9uahY1jsgF4MQSE7TiZrCjgR3w.rack07") == []   # bad checksum
    assert find_wallets("t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4")[0].coin == "ZEC"
    assert split_login("wallet+1000.rig#x") == ("wallet", None)
    assert split_login("acct.worker1") == ("acct", "worker1")


def test_garwood_matches_definition():
    est, lo, hi = hashrate_ci(10, 2.0)
    assert est == 5.0
    assert lo == pytest.approx(chi2.ppf(0.025, 20) / 4)
    assert hi == pytest.approx(chi2.ppf(0.975, 22) / 4)
    _, lo0, hi0 = hashrate_ci(0, 1.0)
    assert lo0 == 0 and hi0 == pytest.approx(3.6889, rel=1e-3)


def test_cut_segment_after_held_midstream_segments_keeps_them():
    """No SYN seen: segments are held to pick the start. A snaplen-cut segment that follows
    must not drop what is held before it."""
    from poolsniff.stream import HalfStream
    got = []
    hs = HalfStream(lambda data, frame, ts, gap: got.append((data, gap)))
    hs.segment(100, b"a" * 10, 1, 0.0)                 # held (mid-stream start not chosen yet)
    hs.segment(110, b"b" * 5, 2, 0.0, missing=5)       # cut by the capture's snaplen
    hs.segment(120, b"c" * 3, 3, 0.0)
    hs.flush()
    assert b"".join(d for d, _ in got) == b"a" * 10 + b"b" * 5 + b"c" * 3
    assert [gap for d, gap in got if d == b"c" * 3] == [False]
    assert any(gap and d == b"" for d, gap in got)     # the framer is told bytes are missing


def test_eve_time_is_suricatas_form():
    """eve_time spells out strftime('%Y-%m-%dT%H:%M:%S.%f%z') for speed: the same text for any
    pcap timestamp (microsecond rounding included)."""
    import random
    from datetime import datetime, timezone

    from poolsniff.output import eve_time
    rng = random.Random(7)
    stamps = [0.0, 1.5, 1633760021.532140, 2 ** 32 - 1 + 0.9999995, 1e9 + 0.0000005]
    stamps += [rng.uniform(0, 2 ** 32) for _ in range(20000)]
    for ts in stamps:
        assert eve_time(ts) == datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    assert eve_time(None) is None


def test_json_output_survives_what_orjson_refuses():
    from poolsniff.output import dumps
    import json
    doc = {"big": 1 << 70, "k": [1.5, None]}
    assert json.loads(dumps(doc, indent=True)) == doc
    assert json.loads(dumps({1: "a"})) == {"1": "a"}


def test_http_heads_remembered_only_when_short_and_parsed_alike():
    """Repeated short heads (a miner polling getwork) are parsed once; long ones are never
    remembered (hostile 16 KB heads must not fill memory); either way the same answer."""
    from poolsniff import framing
    framing._head_remembered.cache_clear()
    short = b"POST / HTTP/1.1\r\nHost: Pool.Example:8332\r\nContent-Type: application/json\r\nX-A:b:c"
    long = short + b"\r\nX-Pad: " + b"p" * framing.HEAD_MEMORY_BYTES
    for raw in (short, short, long, long, b"\x00bad start\r\nA: b"):
        assert framing._head(raw) == framing._parse_head(raw)
    info = framing._head_remembered.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 2, 2)     # short twice, bad once
    start, headers = framing._head(short)
    assert start == "POST / HTTP/1.1" and headers == {"host": "Pool.Example:8332",
                                                      "content-type": "application/json", "x-a": "b:c"}
    assert framing._head(b"\x00bad start\r\nA: b") is None


def test_malloc_tuning_is_taken_on_glibc_and_harmless_elsewhere():
    import platform

    from poolsniff.pipeline import pipeline_gc, tune_malloc
    with pipeline_gc():
        pass
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")


def test_flow_record_copy_covers_every_slot():
    """FlowRecord.copy is spelled out field by field: every slot is copied, containers are new
    objects with the same content, nothing else is shared that could be changed."""
    from poolsniff.evidence import FlowRecord
    rec = FlowRecord("f.pcap")
    for i, name in enumerate(FlowRecord.__slots__):
        v = getattr(rec, name)
        if isinstance(v, list):
            v.append(("x", i))
        elif isinstance(v, dict):
            v[f"k{i}"] = i
        else:
            setattr(rec, name, f"v{i}")
    out = rec.copy()
    for name in FlowRecord.__slots__:
        a, b = getattr(rec, name), getattr(out, name)
        assert a == b, name
        if isinstance(a, (list, dict)):
            assert a is not b, name


def test_keepalive_probe_is_neither_data_nor_an_overlap():
    """Windows (and XMRig's libuv keep-alive there) probes an idle session with one garbage
    byte at next_seq - 1: not delivered, not a retransmission, not an overlap anomaly. A
    real overlap that rewrites delivered bytes is still counted."""
    from poolsniff.stream import HalfStream
    got = []
    hs = HalfStream(lambda data, frame, ts, gap: got.append(data))
    hs.syn(999)
    hs.segment(1000, b'{"id":1}\n', 1, 0.0)
    hs.segment(1008, b"\x00", 2, 60.0)                # keep-alive: the byte below next_seq
    hs.segment(1009, b'{"id":2}\n', 3, 61.0)
    assert b"".join(got) == b'{"id":1}\n{"id":2}\n'
    assert (hs.overlap_diff, hs.retrans_bytes) == (0, 0)
    hs.segment(1016, b"X\n", 4, 62.0)                 # rewrites delivered bytes: counted
    assert hs.overlap_diff == 1 and hs.retrans_bytes == 2


def test_websocket_deflate_bombs_and_garbage_are_anomalies_not_memory():
    """permessage-deflate: a message that inflates past MAX_WS_MESSAGE (a deflate bomb) and
    bytes that are not deflate are counted anomalies and end the stream; nothing larger
    than the cap is ever made."""
    import zlib

    from poolsniff.framing import MAX_WS_MESSAGE, WebSocketFramer

    def frame(payload: bytes) -> bytes:         # server frame, RSV1 + FIN + text, unmasked
        n = len(payload)
        ln = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
        return bytes([0xC1]) + ln + payload

    def run(data: bytes) -> tuple[list[bytes], list[str]]:
        got: list[bytes] = []
        bad: list[str] = []
        ws = WebSocketFramer(lambda m, f, t: got.append(m), lambda e, f, t: bad.append(e))
        ws.feed(data, 1, 0.0)
        ws.feed(frame(b"\x02\x00"), 2, 0.0)      # nothing more once dead
        return got, bad

    c = zlib.compressobj(wbits=-15)
    ok = c.compress(b'{"type":"job"}') + c.flush(zlib.Z_SYNC_FLUSH)
    assert run(frame(ok[:-4]))[0][0] == b'{"type":"job"}'
    c = zlib.compressobj(wbits=-15)
    bomb = (c.compress(b"0" * (50 * MAX_WS_MESSAGE)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(bomb) < 10_000
    got, bad = run(frame(bomb))
    assert got == [] and bad == ["websocket.message_too_long"]
    got, bad = run(frame(b"\xff\xff\xff\xff not deflate"))
    assert got == [] and bad == ["websocket.bad_deflate"]


def test_catalogue_remembers_answers_and_forgets_them_when_the_index_changes():
    """Look-ups are remembered (a link's DNS asks for the same names all day), with the
    answer the index gives, and forgotten when an entry is added."""
    from poolsniff.signatures import Catalogue
    cat = Catalogue.load()
    names = ["pool.supportxmr.com", "POOL.SUPPORTXMR.COM.", "www.example.com", "", "x" * 300]
    first = [cat.match(n) for n in names]
    assert [cat.match(n) for n in names] == first == [cat._match(n) for n in names]
    assert first[0] is not None and first[2] is None
    assert cat._remembered.cache_info().hits == len(names)
    import dataclasses
    pool, host = next(iter(cat._exact.values()))
    cat._index(pool, dataclasses.replace(host, pattern="new-host.example.test"), "test", 1)
    assert cat._remembered.cache_info().currsize == 0
    assert cat.match("new-host.example.test") is not None
