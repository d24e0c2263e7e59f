"""DNS over TCP (poolsniff/dnstcp.py): pool names resolved over TCP teach pool endpoints as
UDP answers do, on both paths and in every --jobs part; port 53 is no hiding place for a
Stratum session; the stream reader is bounded and never raises."""

import json
import random
import struct

from conftest import PCAPS
from poolsniff.dnstcp import MAX_MESSAGE, MAX_STREAMS, DnsOverTcp
from poolsniff.model import Segment
from poolsniff.pipeline import pipeline_gc
from poolsniff.scan import _scan, merge_parts, scan_files

NAME = "dns_over_tcp.pcap"


def test_a_pool_learned_over_tcp_marks_the_session(catalogue):
    """The miner's lookup goes over TCP (its answer in two segments), its session is TLS
    without SNI: only the DNS answer says whose address it is."""
    res = scan_files([str(PCAPS / NAME)], catalogue)
    hosts = {h.ip: h.to_dict() for h in res.hosts}
    m = hosts["10.1.0.60"]
    assert m["verdict"] == "mining"
    assert m["pools"] == [{"ip": "203.0.113.60", "port": 443, "domain": "pool.supportxmr.com"}]
    reasons = [e["reason"] for e in m["evidence"]]
    answer = next(e for e in m["evidence"] if e["reason"].startswith("DNS answer pool.supportxmr.com"))
    assert "-> 203.0.113.60" in answer["reason"]
    # the frame that completed the answer: its second segment
    assert answer["pcap_cnt"] == 15
    assert any("learned from DNS" in r for r in reasons)
    # a Stratum session on TCP port 53 is read as one
    s = hosts["10.1.0.61"]
    assert s["verdict"] == "mining" and s["dialects"] == ["xmrig"]
    assert s["shares"]["accepted"] == 3
    # the resolver that asked upstream (two messages in one segment): a lookup, no session
    assert hosts["10.1.0.53"]["verdict"] == "suspect"
    assert res.stats["dns_messages"] == 6


def test_every_part_learns_from_tcp_answers(catalogue):
    """A --jobs part that does not own the DNS connection still learns its answer (the
    session with the pool may be another part's)."""
    path = str(PCAPS / NAME)
    one = scan_files([path], catalogue)
    doc = json.dumps(one.to_dict(), sort_keys=True, default=str)
    for n in (2, 3, 4, 5):
        for fast in (True, False):
            with pipeline_gc():
                parts = [_scan([path], catalogue, None, fast, None, (k, n)) for k in range(n)]
            merged = merge_parts(parts, [path])
            assert json.dumps(merged.to_dict(), sort_keys=True, default=str) == doc, (n, fast)


def _seg(seq, data=b"", flags=0x18, sport=53, dport=40000, missing=0, frame=1):
    return Segment(frame, 1.0, 4, b"\x0a\0\0\x35", b"\x0a\0\0\x01", 6, sport, dport, flags, seq,
                   data, 40 + len(data), missing)


def _msg(n=20, fill=b"m"):
    return struct.pack("!H", n) + (b"\0\x07\x81\x80" + fill * (n - 4))


def test_stream_reader_in_order_retransmitted_overlapping_and_split():
    r = DnsOverTcp()
    a, b = _msg(30, b"a"), _msg(40, b"b")
    assert r.segment(_seg(99, flags=0x12)) == []                 # SYN-ACK: data from 100
    assert r.segment(_seg(100, a[:5])) == []
    assert r.segment(_seg(100, a[:5])) == []                     # retransmitted
    assert r.segment(_seg(103, a[3:] + b[:1])) == [a[2:]]        # overlapping, then complete
    assert r.segment(_seg(100 + len(a) + 1, b[1:])) == [b[2:]]
    # pipelined messages in one segment
    s = 100 + len(a) + len(b)
    assert r.segment(_seg(s, a + b)) == [a[2:], b[2:]]
    # a gap: the stream starts again at the next segment (a message boundary or nothing)
    s += len(a) + len(b)
    assert r.segment(_seg(s + 500, b)) == [b[2:]]
    # FIN ends it; a pure ACK changes nothing
    assert r.segment(_seg(s + 500 + len(b), flags=0x10)) == []
    r.segment(_seg(s + 500 + len(b), flags=0x11))
    assert not r.streams


def test_stream_reader_is_bounded_and_drops_what_is_not_dns():
    r = DnsOverTcp()
    # a length prefix too short or too long for DNS: not a DNS stream (JSON on port 53)
    assert r.segment(_seg(1, b'{"id":1,"method":"login"}\n')) == [] and not r.streams
    assert r.segment(_seg(1, struct.pack("!H", MAX_MESSAGE + 1) + b"x" * 100)) == []
    assert not r.streams
    # a message as long as allowed still comes out
    big = _msg(MAX_MESSAGE)
    assert r.segment(_seg(1, big)) == [big[2:]]
    # many directions: the least recently used are dropped
    for port in range(3 * MAX_STREAMS):
        r.segment(_seg(1, b"\x00\x40" + b"x" * 10, dport=port))
    assert len(r.streams) == MAX_STREAMS
    # snaplen-cut segment: what is held is dropped, the stream goes on after the cut
    r = DnsOverTcp()
    m = _msg(60)
    assert r.segment(_seg(1, m[:20], missing=len(m) - 20)) == []
    assert r.segment(_seg(1 + len(m), m)) == [m[2:]]


def test_stream_reader_never_raises_on_random_segments():
    rng = random.Random(11)
    r = DnsOverTcp()
    for _ in range(20000):
        data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 3, 13, 40])))
        if rng.random() < 0.3:
            data = struct.pack("!H", rng.choice([12, 13, 20, 300])) + data
        r.segment(_seg(rng.randrange(0, 1 << 32), data, flags=rng.randrange(256),
                       dport=rng.randrange(40000, 40050), missing=rng.choice([0, 0, 0, 5])))
    assert len(r.streams) <= MAX_STREAMS
    assert all(len(s.buf) <= MAX_MESSAGE + 2 for s in r.streams.values())
