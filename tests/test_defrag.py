"""IP fragment reassembly: a session whose datagrams come in fragments (IPv4, IPv6, and the
outer packets of an ERSPAN mirror) is read as if they had not been fragmented; a pool lookup
answered in fragments names its asker; what never completes or disagrees is counted, held
state is bounded, and nothing raises.

pcaps/fragments_xmrig.pcap is written with scapy's own fragmenters (``fragment``,
``fragment6``), so the reassembly is checked against another implementation's cutting."""

import random
import struct

import pytest

from conftest import PCAPS, scan_json
from poolsniff import defrag
from poolsniff.decode import DecodeStats, decode
from poolsniff.defrag import Defragmenter
from poolsniff.sources.pcapfile import CaptureReader

NAME = "fragments_xmrig.pcap"
XMR = ("41fdNBJcyH9Ei1sB4mBPHwV3hCbee9xFphnt6aqmazMsHk8UTCQkSRNjBjxq1FZzxt5MFjeGeWh2CTGKx"
       "U2Ap877KJPhBZL")


@pytest.fixture(scope="module")
def scanned(catalogue):
    return scan_json([PCAPS / NAME], catalogue)


def test_fragmented_sessions_are_read_whole(expected, scanned):
    """The login (the wallet, the agent) and the job (the target: the hashrate) came in
    fragments; they are read, over IPv4, IPv6 and an ERSPAN mirror fragmented outside."""
    exp = expected[NAME]
    hosts, stats = scanned
    for ip, pool in exp["miners"].items():
        h = hosts.get(ip)
        assert h is not None and h["verdict"] == "mining", ip
        assert h["shares"] == {"submitted": 4, "accepted": 4, "rejected": 0, "stale": 0}, ip
        assert [w["address"] for w in h["wallets"]] == [XMR], ip
        assert [r["algorithm"] for r in h["hashrate"]] == ["rx/0"] and h["hashrate"][0]["hs"], ip
        assert any("login" in e["reason"] for e in h["evidence"]), ip
        assert h["dialects"] == [exp["dialect"]], ip
        pool_ip = pool.rsplit(":", 1)[0].strip("[]")
        assert [p["ip"] for p in h["pools"]] == [pool_ip], ip
    for ip in exp["outer"] + exp["clean"]:
        assert ip not in hosts, ip
    for why in exp["skipped"]:
        assert stats["skipped"].get(why), why
    for what in exp["anomalies"]:                   # what happened to datagrams
        assert stats["anomalies"].get(what) and what not in stats["skipped"], what
    assert stats["reassembled"] == 26


def test_the_evidence_names_the_fragment_that_completed_the_datagram(scanned):
    """A login note's frame is the frame whose arrival made the login readable (the last
    of its fragments to arrive), and the DNS answer's is the answer's last fragment."""
    hosts, _stats = scanned
    frames = {}
    for blk in CaptureReader(str(PCAPS / NAME)).blocks():
        for f, o, n in zip(blk.frame.tolist(), blk.offs.tolist(), blk.incl.tolist()):
            frames[f] = blk.buf[o:o + n]
    login = next(e for e in hosts["10.6.0.10"]["evidence"] if "login" in e["reason"])
    first = frames[login["pcap_cnt"]]
    assert struct.unpack_from("!H", first, 14 + 6)[0] & 0x3FFF, "a fragment"
    dns = hosts["10.6.0.40"]["evidence"][0]
    last = frames[dns["pcap_cnt"]]
    assert struct.unpack_from("!H", last, 14 + 6)[0] & 0x1FFF and \
        not struct.unpack_from("!H", last, 14 + 6)[0] & 0x2000, "the answer's last fragment"


def test_without_a_defragmenter_a_fragment_is_skipped():
    """decode() alone is stateless: a fragment is counted, as before."""
    ds = DecodeStats()
    fragments = 0
    for blk in CaptureReader(str(PCAPS / NAME)).blocks():
        for f, t, lt, o, n in zip(blk.frame.tolist(), blk.ts.tolist(), blk.linktype.tolist(),
                                  blk.offs.tolist(), blk.incl.tolist()):
            b = blk.buf[o:o + n]
            decode(f, t, lt, b, ds)
            if b[12:14] == b"\x08\x00":
                fragments += bool(struct.unpack_from("!H", b, 20)[0] & 0x3FFF)
            elif b[12:14] == b"\x86\xdd" and b[20] == 44:
                fragments += bool(struct.unpack_from("!H", b, 56)[0] & 0xFFF9)
    assert fragments > 80
    assert ds.skipped["ip.fragment"] == fragments and "ip.datagram_incomplete" not in ds.skipped


# -- the reassembler on its own ----------------------------------------------------------------
class Counts(dict):
    def event(self, what: str) -> None:
        self[what] = self.get(what, 0) + 1


def _cut(data: bytes, size: int) -> list[tuple[int, bool, bytes]]:
    out = [(i, i + size < len(data), data[i:i + size]) for i in range(0, len(data), size)]
    return out


def _feed(d: Defragmenter, key, parts, ts=0.0, c=None):  # noqa: ANN001
    c = Counts() if c is None else c
    got = [d.add(key, ts, o, m, b, "info" if o == 0 else "other", c) for o, m, b in parts]
    return got, c


@pytest.mark.parametrize("order", ["in", "reversed", "shuffled"])
def test_any_order_gives_the_datagram_once(order):
    data = bytes(range(256)) * 5
    parts = _cut(data, 64)
    if order == "reversed":
        parts = parts[::-1]
    elif order == "shuffled":
        random.Random(3).shuffle(parts)
    d = Defragmenter()
    got, c = _feed(d, ("k",), parts)
    assert [g for g in got if g is not None] == [(data, "info")] and got[-1] is not None
    assert not c and not d.held and d.held_bytes == 0 and d.reassembled == 1


def test_a_copy_costs_nothing_and_other_bytes_lose_to_the_first():
    data = b"A" * 200
    d = Defragmenter()
    parts = _cut(data, 64)
    got, c = _feed(d, ("k",), [parts[0], parts[0]] + parts[1:])
    assert got[-1] == (data, "info") and not c
    forged = (64, True, b"B" * 64)
    got, c = _feed(d, ("k2",), [parts[0], parts[1], forged] + parts[2:])
    assert got[-1] == (data, "info") and c == {"ip.fragment_overlap_different": 1}
    # a fragment overlapping the end of one fragment with other bytes, then overlapped by
    # the next: each byte is the first copy's
    got, c = _feed(d, ("k3",), [parts[0], (32, True, b"C" * 64)] + parts[1:])
    assert got[-1] == (data[:64] + b"C" * 32 + data[96:], "info")
    assert c == {"ip.fragment_overlap_different": 2}


def test_what_never_completes_is_counted_and_let_go():
    d = Defragmenter()
    c = Counts()
    _feed(d, ("a",), _cut(b"x" * 300, 64)[:-1], ts=0.0, c=c)
    _feed(d, ("b",), _cut(b"y" * 300, 64)[1:], ts=10.0, c=c)
    assert len(d.held) == 2 and d.held_bytes == 256 + 236
    _feed(d, ("c",), [(0, True, b"z" * 8)], ts=10.0 + defrag.FRAG_TIMEOUT_S - 5, c=c)
    assert c == {"ip.datagram_incomplete": 1} and set(d.held) == {("b",), ("c",)}   # a timed out
    d.flush(c)
    assert c == {"ip.datagram_incomplete": 3} and not d.held and d.held_bytes == 0


def test_bounds(monkeypatch):
    monkeypatch.setattr(defrag, "MAX_DATAGRAMS", 10)
    monkeypatch.setattr(defrag, "MAX_HELD_BYTES", 5000)
    d = Defragmenter()
    c = Counts()
    for i in range(100):                 # a flood of first fragments
        d.add(("f", i), 0.0, 0, True, b"q" * 64, None, c)
        assert len(d.held) <= 10
    assert c["ip.datagram_incomplete"] == 90
    for i in range(200):                 # held bytes
        d.add(("g", i), 0.0, 0, True, b"q" * 1000, None, c)
        assert d.held_bytes <= 5000
    c.clear()
    d.add(("big",), 0.0, 65528, False, b"q" * 16, None, c)
    assert c == {"ip.datagram_too_big": 1} and ("big",) not in d.held
    c.clear()
    d = Defragmenter()
    for i in range(defrag.MAX_PARTS + 1):
        d.add(("many",), 0.0, 8 * i, True, b"q" * 8, None, c)
    assert c == {"ip.datagram_too_many_fragments": 1} and ("many",) not in d.held
    c.clear()
    d.add(("two_ends",), 0.0, 8, False, b"q" * 8, None, c)
    d.add(("two_ends",), 0.0, 16, False, b"q" * 8, None, c)      # a second, other end
    assert c == {"ip.fragment_overlap_different": 1} and ("two_ends",) not in d.held


def test_random_fragments_never_raise_and_stay_bounded():
    rnd = random.Random(11)
    d = Defragmenter()
    c = Counts()
    for i in range(20000):
        key = (rnd.randrange(50),)
        off = rnd.randrange(0, 70000)
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
        out = d.add(key, i * 0.01, off, rnd.random() < 0.8, data, None, c)
        assert out is None or isinstance(out[0], bytes)
        assert len(d.held) <= defrag.MAX_DATAGRAMS and d.held_bytes <= defrag.MAX_HELD_BYTES
    assert d.held_bytes == sum(x.held for x in d.held.values())


def test_a_datagram_longer_than_an_ipv4_packet_can_be_is_dropped_and_counted():
    """Fragments that add up to more than an IPv4 total length can say (with its header)."""
    def frag(off: int, more: bool, data: bytes) -> bytes:
        hdr = bytearray(60)                                  # a 60-byte header (options)
        hdr[0], hdr[8], hdr[9] = 0x4F, 64, 17
        struct.pack_into("!HHH", hdr, 2, 60 + len(data), 7, off // 8 | (0x2000 if more else 0))
        hdr[12:20] = bytes([10, 0, 0, 1, 10, 0, 0, 2])
        return b"\x02" * 12 + b"\x08\x00" + bytes(hdr) + data
    ds, frags = DecodeStats(), Defragmenter()
    data = b"x" * 65520                                      # fits the reassembler, not IPv4
    got = [decode(1, 0.0, 1, frag(i, i + 8000 < len(data), data[i:i + 8000]), ds, frags)
           for i in range(0, len(data), 8000)]
    assert got == [None] * 9 and ds.skipped == {"ip.fragment": 9}
    assert ds.events == {"ip.datagram_too_big": 1} and ds.reassembled == 0
    assert not frags.held


def test_the_batch_path_takes_reassembled_datagrams_as_records(catalogue, monkeypatch):
    """A reassembled TCP datagram joins its block as a record the bulk path takes (its flow
    stays off the per-packet handlers), with the same answer as packet by packet."""
    from poolsniff import batch
    taken = []
    real = batch._take_reassembled

    def counted(*a):  # noqa: ANN002, ANN202
        out = real(*a)
        taken.append(0 if out is None else len(out[2]))
        return out
    monkeypatch.setattr(batch, "_take_reassembled", counted)
    fast = scan_json([PCAPS / NAME], catalogue)
    assert sum(taken) == 25            # the 26 reassembled but the DNS answer (UDP)
    assert fast == scan_json([PCAPS / NAME], catalogue, fast=False)


def test_a_capture_of_fragments_alone_spans_the_completing_fragment(tmp_path, catalogue):
    """The time span of a capture holding only the two fragments of one TCP segment is the
    completing fragment's time, on both paths (the first fragment alone decodes to nothing)."""
    import dpkt
    tcp = struct.pack("!HHIIBBHHH", 40000, 3333, 1, 0, 0x50, 0x18, 512, 0, 0) + b'{"id":1}\n' * 8
    def frag(off: int, more: bool, data: bytes) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), 99, off // 8 | (0x2000 if more else 0),
                         64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        return b"\x02" * 12 + b"\x08\x00" + ip + data
    f = tmp_path / "two.pcap"
    with open(f, "wb") as fo:
        w = dpkt.pcap.Writer(fo)
        w.writepkt(frag(0, True, tcp[:48]), 10.0)
        w.writepkt(frag(48, False, tcp[48:]), 10.5)
    from poolsniff.scan import scan_files
    for fast in (True, False):
        st = scan_files([str(f)], catalogue, fast=fast).stats
        assert (st["first_ts"], st["last_ts"], st["reassembled"], st["flows"]) == (10.5, 10.5, 1, 1)
