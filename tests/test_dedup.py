"""Mirror-port duplicates (poolsniff/dedup.py): a SPAN that hands the sensor each packet
twice must not double what a host sent, and nothing that is not a copy may be dropped."""

import importlib.util
import json
import random
import struct

import numpy as np
import pytest

from conftest import CAPTURES, PCAPS, ROOT
from poolsniff import dedup
from poolsniff.decode import DecodeStats, decode
from poolsniff.dedup import WINDOW_FRAMES, WINDOW_S, Dedup, dup_key
from poolsniff.scan import scan_files
from poolsniff.sources.pcapfile import CaptureReader


def _encap():
    spec = importlib.util.spec_from_file_location("encap", ROOT / "bench" / "encap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _routed(fr: bytes) -> bytes:
    """The copy a SPAN on the far side of a router sees: other MAC addresses, the TTL one
    lower, the IPv4 header checksum made anew."""
    if fr[12:14] != b"\x08\x00":
        return fr
    ip = bytearray(fr[14:])
    ihl = (ip[0] & 15) * 4
    ip[8] -= 1
    ip[10:12] = b"\0\0"
    s = sum(struct.unpack(f"!{ihl // 2}H", bytes(ip[:ihl])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip[10:12] = struct.pack("!H", ~s & 0xFFFF)
    return b"\x02\x00\x00\x00\x00\x09\x02\x00\x00\x00\x00\x08" + fr[12:14] + bytes(ip)


def _doubled(src, dst, copy=lambda fr, n: fr, gap=30e-6):
    """Every packet of ``src`` followed ``gap`` seconds later by ``copy`` of it (a classic
    pcap, microseconds, the source's link type). None when the capture mixes link types."""
    import dpkt
    r = CaptureReader(str(src))
    pkts = list(r.packets())
    r.close()
    if not pkts or len({p[2] for p in pkts}) != 1:
        return None
    with open(dst, "wb") as fo:
        w = dpkt.pcap.Writer(fo, snaplen=262144, linktype=pkts[0][2], nano=True)
        for n, (_f, ts, _lt, buf) in enumerate(pkts):
            w.writepkt(buf, ts)
            w.writepkt(copy(buf, n), ts + gap)
    return dst


def _keyed(path):
    """How many of a capture's packets dedup can drop: TCP segments with a duplicate key,
    and DNS messages over UDP (deduplicated by message)."""
    n = 0
    for frame, ts, lt, buf in CaptureReader(str(path)).packets():
        ds = DecodeStats()
        seg = decode(frame, ts, lt, buf, ds)
        if seg is None:
            continue
        if seg.proto == 17:
            n += seg.sport == 53 or seg.dport == 53 or seg.sport == 5353
        else:
            n += dup_key(seg, buf, ds.ip_at, ds.l4_at) != 0
    return n


COUNTS = ("bytes_toserver", "bytes_toclient", "pkts_toserver", "pkts_toclient", "sessions")
SAME = ("verdict", "methods", "shares", "difficulty", "jobs", "workers", "wallets", "pools",
        "dialects", "coins", "reasons")


@pytest.mark.parametrize("how", ["identical", "routed", "erspan"])
def test_span_copies_are_counted_once(how, tmp_path, catalogue):
    """A miner's capture with every packet mirrored twice, 30 us apart (the same frame;
    through a router; the second copy delivered over ERSPAN): the host's record, counters
    included, is the single feed's, and every copy is counted as one."""
    src = PCAPS / "xmrig_compact.pcap"
    copy = {"identical": lambda fr, n: fr, "routed": lambda fr, n: _routed(fr),
            "erspan": lambda fr, n: _encap().wrap(fr, "erspan2", n)}[how]
    dup = _doubled(src, tmp_path / "dup.pcap", copy)
    one = scan_files([str(src)], catalogue)
    for fast in (True, False):
        two = scan_files([str(dup)], catalogue, fast=fast)
        (a,), (b,) = [h.to_dict() for h in one.hosts], [h.to_dict() for h in two.hosts]
        for k in SAME + COUNTS:
            assert a[k] == b[k], (how, fast, k)
        assert a["hashrate"] == b["hashrate"]
        assert two.stats["duplicates"] == one.stats["packets"] == _keyed(src)
        assert two.stats["packets"] == 2 * one.stats["packets"]
        assert two.stats["retransmitted_bytes"] == one.stats["retransmitted_bytes"]
    import io

    from poolsniff.output import render
    out = io.StringIO()
    render(two, "table", out)
    n = one.stats["packets"]
    assert f"{2 * n} packets ({n:,} mirror-port copies counted once)" in out.getvalue()
    # without dedup every copy counts (what the feed looked like before)
    raw = scan_files([str(dup)], catalogue, dedup=False)
    (c,) = [h.to_dict() for h in raw.hosts]
    assert c["pkts_toserver"] == 2 * a["pkts_toserver"] and raw.stats["duplicates"] == 0


@pytest.mark.parametrize("how", ["identical", "routed"])
def test_dns_copies_are_counted_once(how, tmp_path, catalogue):
    """Pool lookups mirrored twice (UDP: no packet key; deduplicated by message): the
    suspects' evidence and the DNS counters are the single feed's, on both paths."""
    src = PCAPS / "dns_tls_sni.pcap"
    dup = _doubled(src, tmp_path / "dup.pcap", {"identical": lambda fr, n: fr,
                                                 "routed": lambda fr, n: _routed(fr)}[how])
    one = scan_files([str(src)], catalogue)
    dns = sum(1 for p in CaptureReader(str(src)).packets()
              if (s := decode(*p, DecodeStats())) is not None and s.proto == 17)
    assert one.stats["dns_messages"] == dns > 0
    def same(res):      # the records but where the evidence is (another file, other frames)
        out = [h.to_dict() for h in res.hosts]
        for h in out:
            h["evidence"] = [(e["ts"], e["reason"]) for e in h["evidence"]]
        return out
    for fast in (True, False):
        two = scan_files([str(dup)], catalogue, fast=fast)
        assert same(two) == same(one), (how, fast)
        assert two.stats["dns_messages"] == dns
        assert two.stats["duplicates"] == _keyed(src) >= dns
    raw = scan_files([str(dup)], catalogue, dedup=False)
    assert raw.stats["dns_messages"] == 2 * dns


def test_a_dns_message_sent_twice_is_not_a_copy(tmp_path, catalogue):
    """The same query sent twice at once (two IPv4 identifications, as a host with two
    sockets sends an mDNS query), or again after a resolver's timeout: both are read."""
    import dpkt
    (q,) = [p for p in CaptureReader(str(PCAPS / "dns_tls_sni.pcap")).packets()
            if (s := decode(*p, DecodeStats())) is not None and s.proto == 17
            and s.dport == 53][:1]
    again = bytearray(q[3])
    struct.pack_into("!H", again, 14 + 4, struct.unpack_from("!H", again, 14 + 4)[0] ^ 0x55)
    f = tmp_path / "twice.pcap"
    with open(f, "wb") as fo:
        w = dpkt.pcap.Writer(fo, linktype=q[2])
        w.writepkt(q[3], q[1])
        w.writepkt(bytes(again), q[1] + 0.0003)          # another identification, at once
        w.writepkt(q[3], q[1] + 2 * WINDOW_S)              # the same bytes, a timeout later
    for fast in (True, False):
        res = scan_files([str(f)], catalogue, fast=fast)
        assert res.stats["dns_messages"] == 3 and res.stats["duplicates"] == 0


def test_every_capture_mirrored_twice(tmp_path, catalogue, monkeypatch):
    """Every capture of the suite with each packet twice, in blocks of 61 records (copies
    fall into the next block): the batch path and the per-packet path agree, and every
    packet that has a key loses its copy, nothing else."""
    from poolsniff import scan
    monkeypatch.setattr(scan, "BLOCK", 61)
    done = 0
    for path in CAPTURES:
        dup = _doubled(path, tmp_path / "dup.pcap")
        if dup is None:
            continue
        docs = []
        for fast in (True, False):
            res = scan_files([str(dup)], catalogue, fast=fast)
            docs.append((json.loads(json.dumps(res.to_dict(), default=str)), res.domains,
                         sorted(map(repr, res.anomalies))))
        assert docs[0] == docs[1], path.name
        single = scan_files([str(path)], catalogue).stats["duplicates"]
        assert docs[0][0]["stats"]["duplicates"] == _keyed(path) + single, path.name
        done += 1
    assert done > 80


def test_what_dedup_drops_in_real_captures_are_copies():
    """In the captures of the suite as they are, every packet taken for a duplicate has an
    earlier packet in the window that is byte for byte the same IP packet but for the TTL
    (hop limit) and header checksum: dedup finds copies, never look-alikes."""
    found = 0
    for path in CAPTURES:
        rows = []
        for frame, ts, lt, buf in CaptureReader(str(path)).packets():
            ds = DecodeStats()
            seg = decode(frame, ts, lt, buf, ds)
            if seg is not None:
                rows.append((frame, ts, dup_key(seg, buf, ds.ip_at, ds.l4_at), buf[ds.ip_at:]))
        if not rows:
            continue
        d = Dedup()
        marks = d.mark(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                       np.array([r[2] for r in rows], np.uint64))

        def bare(p):
            return p[:8] + p[9:10] + p[12:] if p[0] >> 4 == 4 else p[:7] + p[8:]
        for i in np.flatnonzero(marks).tolist():
            f, t, _k, p = rows[i]
            assert any(bare(q) == bare(p) for g, u, _k2, q in rows[:i]
                       if f - g <= WINDOW_FRAMES and abs(t - u) <= WINDOW_S), (path.name, f)
            found += 1
    assert found >= 2            # the ndpi kafka capture holds two frames captured twice


def _segment(proto=6, ident=7, flags=0x18, seq=1000, ack=2000, payload=b"x" * 10, v6=False):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    ip = IPv6(src="2001:db8::1", dst="2001:db8::2", fl=ident) if v6 else \
        IP(src="10.0.0.1", dst="10.0.0.2", id=ident)
    l4 = TCP(sport=40000, dport=3333, flags=flags, seq=seq, ack=ack) if proto == 6 else \
        UDP(sport=40000, dport=53)
    buf = bytes(Ether() / ip / l4 / payload)
    ds = DecodeStats()
    seg = decode(1, 1.0, 1, buf, ds)
    return dup_key(seg, buf, ds.ip_at, ds.l4_at)


def test_what_has_a_key():
    """Data segments have a key; a retransmission with a new IP identification has another;
    segments without payload only with a nonzero IPv4 identification (a stack's duplicate
    ACKs, resets and SYN-ACK repeats are identical and real); UDP never."""
    assert _segment() != 0
    assert _segment(ident=8) != _segment()                        # retransmitted: new IP ID
    assert _segment(payload=b"y" * 10) != _segment()              # other data, other checksum
    assert _segment(ack=2001) != _segment()
    assert _segment(v6=True) != 0 and _segment(v6=True, ident=5) != _segment(v6=True)
    assert _segment(flags=0x10, payload=b"") != 0                  # pure ACK with an IP ID
    assert _segment(flags=0x10, payload=b"", ident=0) == 0         # ... without: no key
    assert _segment(flags=0x04, payload=b"", ident=0) == 0         # reset
    assert _segment(flags=0x12, payload=b"", ident=0) == 0         # SYN-ACK
    assert _segment(flags=0x10, payload=b"", v6=True) == 0
    assert _segment(proto=17) == 0


def _reference(frames, ts, keys):
    """The rule itself: a copy of any earlier packet with the same key, at most
    WINDOW_FRAMES frames and WINDOW_S seconds before it."""
    out = []
    for i in range(len(frames)):
        out.append(bool(keys[i]) and any(
            keys[j] == keys[i] and frames[i] - frames[j] <= WINDOW_FRAMES
            and abs(ts[i] - ts[j]) <= WINDOW_S for j in range(i)))
    return out


def test_the_window_is_the_same_whatever_the_blocks():
    """Marks over random blocks equal the rule applied packet by packet, edges included."""
    rng = random.Random(5)
    n = 3000
    frames = np.cumsum([rng.choice([1, 1, 1, 2, 700]) for _ in range(n)]).astype(np.int64)
    ts = np.cumsum([rng.choice([0.0, 1e-5, 0.01, 0.02, WINDOW_S]) for _ in range(n)])
    keys = np.array([rng.choice([0, 1, 2, 3, 4, 2 ** 64 - 1]) for _ in range(n)], np.uint64)
    want = _reference(frames.tolist(), ts.tolist(), keys.tolist())
    assert 100 < sum(want) < n - 100
    for _ in range(5):
        d = Dedup()
        got = []
        at = 0
        while at < n:
            k = rng.choice([1, 2, 7, 61, 500])
            got += d.mark(frames[at:at + k], ts[at:at + k], keys[at:at + k]).tolist()
            at += k
        assert got == want
    # the edges: exactly WINDOW_FRAMES apart is a copy, one frame more is not
    for gap, is_copy in ((WINDOW_FRAMES, True), (WINDOW_FRAMES + 1, False)):
        d = Dedup()
        d.mark(np.array([10]), np.array([0.0]), np.array([9], np.uint64))
        assert d.mark(np.array([10 + gap]), np.array([0.0]), np.array([9], np.uint64)).tolist() == [is_copy]
    d = Dedup()
    d.mark(np.array([1]), np.array([0.0]), np.array([9], np.uint64))
    assert d.mark(np.array([2]), np.array([WINDOW_S * 1.01]), np.array([9], np.uint64)).tolist() == [False]
    # a clock that steps back: a packet a second "before" its look-alike is no copy of it
    d = Dedup()
    d.mark(np.array([1]), np.array([5.0]), np.array([9], np.uint64))
    assert d.mark(np.array([2]), np.array([4.0]), np.array([9], np.uint64)).tolist() == [False]
    # a new file: its frame numbers start again, nothing carries over
    d.reset()
    assert d.mark(np.array([1]), np.array([0.0]), np.array([9], np.uint64)).tolist() == [False]
    assert len(d.frames) == 1 and dedup.WINDOW_FRAMES == WINDOW_FRAMES
