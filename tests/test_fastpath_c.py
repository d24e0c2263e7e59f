"""The C loops (poolsniff/_fastpath.c) compute exactly what the numpy fallback computes.

Header columns are compared on every record of every capture of the suite, and on
damaged records (random cuts, flipped header bytes, lying lengths, odd link types) that
hostile traffic produces; the record index is compared on intact and damaged files.
"""

import os
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CAPTURES, PCAPS
from poolsniff import batch, native
from poolsniff.decode import DecodeStats, decode
from poolsniff.dedup import dup_key
from poolsniff.scan import scan_files
from poolsniff.sources.pcapfile import CaptureReader, RecordBlock, block_from_packets, index_records


needs_c = pytest.mark.skipif(native.fastpath is None and not os.environ.get("POOLSNIFF_REQUIRE_NATIVE"),
                             reason="C extension not built (no compiler at install time)")


def test_extension_built_where_required():
    """CI installs with a compiler: there the extension must exist, or every C test would skip."""
    if os.environ.get("POOLSNIFF_REQUIRE_NATIVE"):
        assert native.fastpath is not None, "poolsniff._fastpath was not built by pip install"
        assert native.ENGINE == "c"


def _same_headers(blk: RecordBlock) -> None:
    """Where the numpy pass takes a record, C takes it with the same columns; C also takes
    tunnelled and encapsulated records (numpy leaves those to the per-packet decoder): every
    record C takes is what the reference decoder (decode.py) makes of it."""
    c = batch.headers_c(blk)
    p = batch.headers_numpy(blk)
    both = p.ok
    assert not (p.ok & ~c.ok).any(), f"numpy takes record {int(np.flatnonzero(p.ok & ~c.ok)[0])}, C not"
    for name in batch.HEADER_COLUMNS:
        a, b = getattr(c, name), getattr(p, name)
        assert a.dtype.kind == b.dtype.kind, name
        bad = np.flatnonzero((a != b) & both)
        assert not len(bad), (f"{name}: record {int(bad[0])}: C {a[bad[0]]} numpy {b[bad[0]]} "
                              f"({len(bad)} records differ)")
        # what neither takes carries zeros in every column
        assert not (a[~c.ok] != 0).any() and not (b[~p.ok] != 0).any(), name
    _c_is_the_reference(blk, c, np.flatnonzero(c.ok & ~p.ok))


def _c_is_the_reference(blk: RecordBlock, c: batch.Headers, rows: np.ndarray) -> int:
    """The C columns of ``rows`` against decode.decode() of the same records."""
    buf = blk.buf
    for i in rows.tolist():
        o, n = int(blk.offs[i]), int(blk.incl[i])
        ds = DecodeStats()
        seg = decode(int(blk.frame[i]), float(blk.ts[i]), int(blk.linktype[i]), buf[o:o + n], ds)
        assert seg is not None, f"record {i}: C takes it, the decoder does not"
        assert int(c.dupkey[i]) == dup_key(seg, buf[o:o + n], ds.ip_at, ds.l4_at), f"record {i}: key"
        ln, sa, da = int(c.alen[i]), int(c.src_at[i]), int(c.dst_at[i])
        ps, pl = int(c.pstart[i]), int(c.plen[i])
        got = (6 if ln == 16 else 4, buf[sa:sa + ln], buf[da:da + ln], 6 if c.is_tcp[i] else 17,
               int(c.sport[i]), int(c.dport[i]), int(c.flags[i]), int(c.seq[i]), buf[ps:ps + pl],
               int(c.wirelen[i]), int(c.missing[i]))
        ref = (seg.version, seg.src, seg.dst, seg.proto, seg.sport, seg.dport, seg.flags, seg.seq,
               seg.payload, seg.wirelen, seg.missing)
        assert got == ref, f"record {i}: C {got} decoder {ref}"
    return len(rows)


@needs_c
def test_headers_equal_on_every_capture():
    records = 0
    taken = 0
    for path in CAPTURES:
        for blk in CaptureReader(str(path)).blocks(4096):
            _same_headers(blk)
            records += len(blk)
            taken += int(batch.headers_c(blk).ok.sum())
    assert records > 50_000 and taken > 0.9 * records


@needs_c
def test_c_takes_every_record_the_decoder_decodes():
    """The header pass is only an acceleration if it takes the records: on every capture of
    the suite (generated and public, every link type and tunnel they hold) each record the
    reference decoder decodes is taken by C, not handed back to the per-packet decoder (a
    header pass that silently declined a link type would pass every equality test and run
    several times slower)."""
    from poolsniff.decode import DecodeStats, decode
    declined = []
    for path in CAPTURES:
        for blk in CaptureReader(str(path)).blocks(65536):
            c = batch.headers_c(blk)
            for i in np.flatnonzero(~c.ok).tolist():
                o, n = int(blk.offs[i]), int(blk.incl[i])
                if decode(1, 0.0, int(blk.linktype[i]), blk.buf[o:o + n], DecodeStats()) is not None:
                    declined.append((path.name, int(blk.frame[i]), int(blk.linktype[i])))
    assert not declined, declined[:10]


def _packets() -> list[bytes]:
    out = []
    for path in CAPTURES[:60]:
        for blk in CaptureReader(str(path)).blocks(4096):
            for o, n in zip(blk.offs.tolist(), blk.incl.tolist()):
                out.append(blk.buf[o:o + n])
            break
    return out


PACKETS = _packets()


def _damage(rng: random.Random, pkt: bytes) -> bytes:
    b = bytearray(pkt)
    for _ in range(rng.randrange(0, 4)):
        if not b:
            break
        what = rng.randrange(4)
        if what == 0:                                  # cut anywhere
            del b[rng.randrange(len(b) + 1):]
        elif what == 1 and b:                          # a byte of the first 80 (the headers)
            b[rng.randrange(min(len(b), 80))] = rng.randrange(256)
        elif what == 2 and len(b) > 20:                # a lying length field (IPv4 total / IPv6 payload)
            at = rng.choice((16, 18, 20, 14 + 4))
            if at + 2 <= len(b):
                b[at:at + 2] = struct.pack("!H", rng.randrange(65536))
        else:                                          # the header-length nibbles
            at = rng.choice((14, 14 + 20 + 12, 14 + 40 + 12))
            if at < len(b):
                b[at] = rng.randrange(256)
    return bytes(b)


@needs_c
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300))
def test_headers_equal_on_damaged_records(seed, n):
    rng = random.Random(seed)
    linktypes = (1, 1, 1, 101, 12, 14, 228, 229, 113, 276, 0, 104, 9, 50, 51)
    batch_ = [(i + 1, 1.0 + i, rng.choice(linktypes), _damage(rng, rng.choice(PACKETS))) for i in range(n)]
    _same_headers(block_from_packets(batch_))


@needs_c
def test_headers_of_empty_and_tiny_records():
    for sizes in ([0], [0, 0, 1], [1, 13, 14, 15, 33, 34, 53, 54]):
        pkts = [(i + 1, 0.0, 1, b"\x45" * s) for i, s in enumerate(sizes)]
        _same_headers(block_from_packets(pkts))


def _index_both(buf: bytes, order: str, limit: int, max_records: int, max_bytes: int):
    saved = native.ENGINE
    try:
        got = []
        for engine in ("c", "numpy"):
            native.ENGINE = engine
            starts, pos = index_records(buf, 24, len(buf), order, limit, max_records, max_bytes)
            got.append((starts.tolist(), pos))
    finally:
        native.ENGINE = saved
    return got


@needs_c
@pytest.mark.parametrize("path", [p for p in CAPTURES if p.suffix == ".pcap"][:40], ids=lambda p: p.name)
def test_index_equal(path):
    buf = path.read_bytes()
    order = "<" if buf[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    for max_records, max_bytes in ((65536, 32 << 20), (7, 32 << 20), (65536, 3000)):
        c, p = _index_both(buf, order, 262144, max_records, max_bytes)
        assert c == p
        # a file cut anywhere: the same records, stopping at the same place
        cut = buf[:len(buf) * 2 // 3 + 5]
        assert _index_both(cut, order, 262144, max_records, max_bytes)[0] == \
            _index_both(cut, order, 262144, max_records, max_bytes)[1]


@needs_c
@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=600), limit=st.integers(0, 300), big=st.booleans())
def test_index_equal_on_garbage(data, limit, big):
    buf = b"\0" * 24 + data
    c, p = _index_both(buf, ">" if big else "<", limit, 1000, 1 << 20)
    assert c == p


@needs_c
def test_extension_rejects_bad_arguments():
    fp = native.fastpath
    with pytest.raises(ValueError):
        fp.parse_headers(b"", np.zeros(2, np.int64), np.zeros(1, np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        fp.index_pcap(b"", -1, 0, False, 1, 1, 1)
    # offsets past the buffer are not taken (and not read)
    blk = RecordBlock(b"x" * 10, np.array([5, 50, -3], np.int64), np.array([100, 10, 4], np.int64),
                      np.zeros(3), np.arange(3, dtype=np.int64), np.ones(3, np.int64))
    assert batch.headers_c(blk).ok.tolist() == [False, False, False]


@needs_c
@pytest.mark.parametrize("name", ["xmrig_compact.pcap", "xmrig_midstream_reordered.pcap",
                                  "stratum_btc_spaced_crlf_qinq.pcap", "ethstratum_ipv6.pcap",
                                  "kawpow.pcapng", "stratum_btc_snaplen256.pcap"])
def test_scan_same_with_either_engine(name, catalogue, monkeypatch):
    path = PCAPS / name
    docs = []
    for engine in ("c", "numpy"):
        monkeypatch.setattr(native, "ENGINE", engine)
        docs.append(scan_files([str(path)], catalogue).to_dict())
    assert docs[0]["hosts"] == docs[1]["hosts"] and docs[0]["stats"] == docs[1]["stats"]
    assert docs[0]["hosts"], "each of these captures has a miner"


def test_endpoint_hash_is_the_hash_the_columns_carry():
    """``ea`` is endpoint_hash(source address, source port) and ``h`` flow_hash of the 5-tuple,
    for TCP and UDP, IPv4 and IPv6, either engine."""
    from poolsniff.hashing import endpoint_hash, flow_hash
    for name in ("ethstratum_ipv6.pcap", "dns_tls_sni.pcap"):
        blk = next(CaptureReader(str(PCAPS / name)).blocks(4096))
        for hd in (batch.headers_numpy(blk),) + ((batch.headers_c(blk),) if native.fastpath else ()):
            ok = np.flatnonzero(hd.ok)
            assert len(ok)
            for i in ok[:80].tolist():
                src = blk.buf[int(hd.src_at[i]):int(hd.src_at[i]) + int(hd.alen[i])]
                dst = blk.buf[int(hd.dst_at[i]):int(hd.dst_at[i]) + int(hd.alen[i])]
                assert int(hd.ea[i]) == endpoint_hash(src, int(hd.sport[i]))
                assert int(hd.h[i]) == flow_hash(src, int(hd.sport[i]), dst, int(hd.dport[i]))


# -- DNS -------------------------------------------------------------------------------
def _dns_payloads() -> list[bytes]:
    """Every UDP port-53/5353 payload of every capture of the suite."""
    out = []
    for path in CAPTURES:
        for blk in CaptureReader(str(path)).blocks(4096):
            hd = batch.headers_c(blk) if native.fastpath is not None else batch.headers_numpy(blk)
            udp = np.flatnonzero(hd.ok & ~hd.is_tcp & ((hd.sport == 53) | (hd.dport == 53)
                                                      | (hd.sport == 5353) | (hd.dport == 5353)))
            for i in udp.tolist():
                ps = int(hd.pstart[i])
                out.append(blk.buf[ps:ps + int(hd.plen[i])])
    return out


DNS_PAYLOADS = _dns_payloads()


def _crafted_dns() -> list[bytes]:
    hdr = struct.pack("!HHHHHH", 7, 0x8180, 1, 3, 0, 0)
    q = b"\x04Pool\x0aSupportXMR\x03com\x00\x00\x01\x00\x01"
    cname = b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x05\x02lb\xc0\x11"
    a = b"\xc0\x31\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xcb\x00\x71\x14"
    aaaa = b"\xc0\x31\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10" + bytes(range(16))
    good = hdr + q + cname + a + aaaa
    return [
        good,
        hdr[:6] + b"\x00\x02" + hdr[8:] + q + cname + a,                 # count lower than present
        hdr + b"\x03\xff\xfe\x80\x00\x00\x01\x00\x01",                      # bytes past ASCII in a label
        hdr + b"\xc0\x0c\x00\x01\x00\x01",                                  # a pointer to itself
        hdr + b"\xc0\x12\x00\x01\x00\x01\x03abc\x00",                        # a pointer forward
        hdr + b"\x40abc\x00\x00\x01\x00\x01",                               # label type 0x40
        hdr + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",           # a name past 255
        hdr + q + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x01\x00",   # an empty CNAME target
        hdr + q + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x05\x01\x02\x03\x04\x05",  # A of 5
        struct.pack("!HHHHHH", 1, 0x0100, 1, 200, 0, 0) + q + a * 200,     # past 64 answers
        struct.pack("!HHHHHH", 1, 0x2800, 1, 0, 0, 0) + q,                  # opcode UPDATE
        good[:11], good[:12], good[:20], good[:-3],
    ]


@needs_c
def test_dns_equal_on_the_suites_messages_and_crafted_ones():
    from poolsniff.protocols import parse_dns_py
    fp = native.fastpath
    assert fp is not None
    msgs = DNS_PAYLOADS + _crafted_dns()
    assert len(DNS_PAYLOADS) > 200
    for m in msgs:
        assert fp.parse_dns(m) == parse_dns_py(m), m
    assert sum(fp.parse_dns(m) is not None for m in msgs) > 200
    c = fp.parse_dns(_crafted_dns()[0])
    assert c == (True, ["pool.supportxmr.com"], [("pool.supportxmr.com", 5, "lb.supportxmr.com"),
                                                 ("lb.supportxmr.com", 1, "203.0.113.20"),
                                                 ("lb.supportxmr.com", 28, "1:203:405:607:809:a0b:c0d:e0f")])


@needs_c
@settings(max_examples=500, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8))
def test_dns_equal_on_damaged_messages(seed, n):
    from poolsniff.protocols import parse_dns_py
    rng = random.Random(seed)
    msgs = DNS_PAYLOADS + _crafted_dns()
    m = bytearray(rng.choice(msgs))
    for _ in range(n):
        if not m:
            break
        what = rng.randrange(3)
        if what == 0:
            m[rng.randrange(len(m))] = rng.randrange(256)
        elif what == 1:
            del m[rng.randrange(len(m)):]
        else:
            m[rng.randrange(len(m))] = rng.choice([0xC0, 0x3F, 0x40, 0x80, 0x00, 0xFF])
    assert native.fastpath.parse_dns(bytes(m)) == parse_dns_py(bytes(m))


@needs_c
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_dns_equal_on_garbage(data):
    from poolsniff.protocols import parse_dns_py
    for m in (data, struct.pack("!HHHHHH", 1, 0x8180, 1, 2, 0, 0) + data):
        assert native.fastpath.parse_dns(m) == parse_dns_py(m)
