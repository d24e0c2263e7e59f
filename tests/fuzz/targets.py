"""Fuzz targets: one function per parser, ``target(data: bytes) -> None``.

A target must never raise, except the errors that are poolsniff's clean answer to bad
input (``CaptureError`` for something that is not a capture, ``ConfigError`` for a bad
configuration file): those become one line and exit status 2 for the user. Used by the
long atheris run (``tests/fuzz/run_fuzz.py``) and by the short hypothesis properties in
``tests/test_fuzz_targets.py`` that CI runs on every commit.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path
from typing import Callable

from poolsniff import defrag, dialects, native
from poolsniff.batch import feed_block, headers_c
from poolsniff.dedup import dup_key
from poolsniff.decode import DecodeStats, decode
from poolsniff.defrag import Defragmenter
from poolsniff.errors import CaptureError, ConfigError
from poolsniff.framing import (MAX_HTTP_HEADER, MAX_LINE_BYTES, HttpFramer, LineFramer,
                               WebSocketFramer, parse_json)
from poolsniff.model import Segment
from poolsniff.pipeline import Scanner
from poolsniff.protocols import certificate_names, client_hello_sni, parse_dns, server_certificate
from poolsniff.signatures import Catalogue
from poolsniff.sources.pcapfile import CaptureReader, block_from_packets
from poolsniff.stream import MAX_OOO_BYTES, Budget, HalfStream
from poolsniff.tunnel import CONNECT, MAX_HANDSHAKE, SOCKS4, SOCKS5, ProxyHandshake

_TMP = Path(tempfile.mkdtemp(prefix="poolsniff-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                             else None))
_CAT: Catalogue | None = None
LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9, 50, 147, 104, 51)


def catalogue() -> Catalogue:
    global _CAT
    if _CAT is None:
        _CAT = Catalogue.load()
    return _CAT


# -- captures ------------------------------------------------------------------------------
def _reader(data: bytes) -> CaptureReader | None:
    """A reader over ``data`` written as a file, or None when it is not a capture."""
    p = _TMP / "in.cap"
    p.write_bytes(data)
    try:
        return CaptureReader(str(p), batch_size=64)
    except CaptureError:
        return None


def capture_reader(data: bytes) -> None:
    """Any bytes as a capture file, read by both read paths (blocks and packets): the same
    packets (frame, time, link type, bytes) and the same damage reported."""
    seen = []
    for blocks in (True, False):
        r = _reader(data)
        if r is None:
            return
        got = []
        if blocks:
            for blk in r.blocks(256):
                assert (blk.offs >= 0).all() and (blk.offs + blk.incl <= len(blk.buf)).all()
                got += [(f, t, lt, bytes(blk.buf[o:o + n])) for f, t, lt, o, n in zip(
                    blk.frame.tolist(), blk.ts.tolist(), blk.linktype.tolist(),
                    blk.offs.tolist(), blk.incl.tolist())]
        else:
            got = [p for batch in r for p in batch]
        assert len(got) == r.frames and len(r.anomalies) <= 1
        seen.append((got, [(a.event, a.frame) for a in r.anomalies], r.unknown_blocks))
    assert seen[0] == seen[1]


def capture(data: bytes) -> None:
    """Any bytes as a capture file: both read paths, then the whole pipeline."""
    for fast in (True, False):
        r = _reader(data)
        if r is None:
            return
        sc = Scanner(catalogue(), max_flows=1000)
        sc.begin_file("fuzz")
        if fast:
            for blk in r.blocks(256):
                feed_block(sc, blk)
        else:
            for batch in r:
                sc.feed(batch)
        sc.finish_all()
        assert len(r.anomalies) <= 1
        for h in sc.results():
            h.to_dict()


def decode_frame(data: bytes) -> None:
    """The reference decoder never raises; what the C header pass takes of the frame
    (tunnels included) is what the reference makes of it."""
    lt = LINKTYPES[data[0] % len(LINKTYPES)] if data else 1
    frame = data[1:]
    ds = DecodeStats()
    seg = decode(1, 0.0, lt, frame, ds)
    key = dup_key(seg, frame, ds.ip_at, ds.l4_at) if seg is not None else 0
    if native.c_engine() is None:
        return
    hd = headers_c(block_from_packets([(1, 0.0, lt, frame)]))
    if not hd.ok[0]:
        return
    assert seg is not None, "the C header pass takes a frame the decoder does not"
    buf = frame
    ln, sa, da, ps = int(hd.alen[0]), int(hd.src_at[0]), int(hd.dst_at[0]), int(hd.pstart[0])
    got = (6 if ln == 16 else 4, buf[sa:sa + ln], buf[da:da + ln], 6 if hd.is_tcp[0] else 17,
           int(hd.sport[0]), int(hd.dport[0]), int(hd.flags[0]), int(hd.seq[0]),
           buf[ps:ps + int(hd.plen[0])], int(hd.wirelen[0]), int(hd.missing[0]))
    ref = (seg.version, seg.src, seg.dst, seg.proto, seg.sport, seg.dport, seg.flags, seg.seq,
           seg.payload, seg.wirelen, seg.missing)
    assert got == ref, (got, ref)
    assert int(hd.dupkey[0]) == key, "the duplicate keys differ"


def fragments_frames(data: bytes) -> list[bytes]:
    """``data`` as Ethernet frames, each a 2-byte length and then its bytes."""
    out, i = [], 0
    while i + 2 <= len(data) and len(out) < 2000:
        n = int.from_bytes(data[i:i + 2], "big")
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def ip_fragments(data: bytes) -> None:
    """Frames decoded in turn with one defragmenter (as a scanner decodes them): nothing
    raises, the held state stays within its bounds and adds up."""
    ds = DecodeStats()
    frags = Defragmenter()
    for n, frame in enumerate(fragments_frames(data), 1):
        decode(n, n * 0.5, 1, frame, ds, frags)
        assert len(frags.held) <= defrag.MAX_DATAGRAMS
        assert frags.held_bytes == sum(d.held for d in frags.held.values()) <= defrag.MAX_HELD_BYTES
    frags.flush(ds)
    assert not frags.held and frags.held_bytes == 0


# -- streams -------------------------------------------------------------------------------
def _chunks(data: bytes) -> list[bytes]:
    return data.split(b"\xff")


def line_framer(data: bytes) -> None:
    lines: list[bytes] = []
    fr = LineFramer(lambda line, f, t: lines.append(line), lambda *a: None, max_line=4096)
    for i, c in enumerate(_chunks(data)):
        fr.feed(c, i, 0.0, gap=(len(c) % 11 == 3))
        assert len(fr.buf) <= 4096
    assert all(len(x) <= 4096 for x in lines)


def tcp_stream(data: bytes) -> None:
    """Segments at any sequence numbers: held bytes stay bounded, and the memcap's account
    (a small cap, so it refuses) is what the stream holds, all given back at the end."""
    budget = Budget(4096)
    hs = HalfStream(lambda *a: None, budget)
    for c in _chunks(data):
        if len(c) < 4:
            continue
        seq = struct.unpack(">I", c[:4])[0]
        hs.segment(seq, c[4:], 1, 0.0, missing=(c[0] & 3) * 100 if c[0] & 4 else 0)
        assert hs.ooo_bytes <= MAX_OOO_BYTES + len(c)
        assert budget.used == hs.ooo_bytes <= 4096
    hs.flush()
    hs.release()
    assert budget.used == 0


def http_websocket(data: bytes) -> None:
    """Bytes in pieces through the HTTP and WebSocket framers: the HTTP messages are those of
    the same bytes fed at once (it parses as bytes come), and what both hold is what their
    memcap account says (a small cap, so it refuses), all of it given back at release."""
    budget = Budget(8192)
    got: list[tuple[str, bytes]] = []
    h = HttpFramer(lambda m: got.append((m.start, m.body)), lambda *a: None, budget)
    w = WebSocketFramer(lambda *a: None, lambda *a: None, budget)
    pieces = _chunks(data)
    for i, c in enumerate(pieces):
        h.feed(c, i, 0.0)
        w.feed(c, i, 0.0)
        assert budget.used == h.held + w.held <= 8192
    h.release()
    w.release()
    assert budget.used == 0
    whole: list[tuple[str, bytes]] = []
    HttpFramer(lambda m: whole.append((m.start, m.body)), lambda *a: None).feed(b"".join(pieces), 0, 0.0)
    if not h.dead and not h.upgraded and len(b"".join(pieces)) <= MAX_HTTP_HEADER:
        assert got == whole


# -- messages ------------------------------------------------------------------------------
def json_dialects(data: bytes) -> None:
    """Lines of (often) JSON through every dialect, both directions, one session."""
    s = dialects.Session()
    for i, line in enumerate(data.split(b"\n")):
        if len(line) > MAX_LINE_BYTES:
            continue
        msg = parse_json(line)
        if isinstance(msg, dict):
            dialects.sender_role(msg)
            dialects.handle(s, msg, "toserver" if i % 2 == 0 else "toclient", i, float(i))
    assert len(s.pending) <= dialects.MAX_PENDING and len(s.jobs) <= dialects.MAX_JOBS


def proxy(data: bytes) -> None:
    """A proxy's opening, the chunks alternating between client and proxy, for each kind:
    never raises, buffers stay bounded, an open tunnel names a host."""
    for kind in (SOCKS5, SOCKS4, CONNECT):
        p = ProxyHandshake(kind)
        state = "more"
        for i, c in enumerate(_chunks(data)):
            state = p.feed(i % 2 == 0, c, i, float(i))
            assert all(len(b) <= MAX_HANDSHAKE + len(c) for b in p.buf)
            if state != "more":
                break
        if state == "open":
            assert p.host is not None and 0 <= p.port <= 65535


def dns(data: bytes) -> None:
    parse_dns(data)


def tls_client_hello(data: bytes) -> None:
    """The ClientHello reader, and the server flight and certificate readers (no SNI)."""
    client_hello_sni(data)
    client_hello_sni(b"\x16\x03\x01" + data)
    for flight in (data, b"\x16\x03\x03" + data):
        done, der = server_certificate(flight)
        assert isinstance(done, bool)
        if der is not None:
            names = certificate_names(der)
            assert names is None or all(isinstance(n, str) and len(n) <= 255 for n in names)
    certificate_names(data)


def pipeline(data: bytes) -> None:
    """Payload bytes as the two directions of one TCP session through the whole scanner,
    then every output format (the attacker writes the strings the report shows)."""
    from poolsniff.output import render
    from poolsniff.scan import ScanResult, count_verdicts

    sc = Scanner(catalogue(), max_flows=100, memcap=16384)
    sc.begin_file("fuzz")
    a, b = b"\x0a\x00\x00\x01", b"\xcb\x00\x71\x01"
    seqs = [1000, 5000]
    sc._tcp(Segment(1, 1.0, 4, a, b, 6, 40000, 3333, 0x02, 999, b"", 60))
    sc._tcp(Segment(2, 1.1, 4, b, a, 6, 3333, 40000, 0x12, 4999, b"", 60))
    for i, c in enumerate(_chunks(data)):
        side = i % 2
        src, dst = (a, b) if side == 0 else (b, a)
        sp, dp = (40000, 3333) if side == 0 else (3333, 40000)
        sc._tcp(Segment(3 + i, 1.2 + i, 4, src, dst, 6, sp, dp, 0x18, seqs[side], c, 40 + len(c)))
        seqs[side] = (seqs[side] + len(c)) & 0xFFFFFFFF
    sc.finish_all()
    assert sc.budget.used == 0            # every byte held was given back
    res = ScanResult(sc.results(), sc.stats.to_dict())
    count_verdicts(res.stats, res.hosts)
    for fmt in ("json", "jsonl", "csv", "table"):
        render(res, fmt, io.StringIO())


# -- configuration -------------------------------------------------------------------------
def signatures_yaml(data: bytes) -> None:
    d = _TMP / "sig"
    d.mkdir(exist_ok=True)
    (d / "pools.yaml").write_bytes(data)
    try:
        Catalogue.load(str(d))
    except ConfigError:
        pass


def registry(data: bytes) -> None:
    from poolsniff.registry import Registry
    for name in ("reg.yaml", "reg.csv"):
        p = _TMP / name
        p.write_bytes(data)
        try:
            r = Registry.load(str(p))
        except ConfigError:
            continue
        r.lookup("10.1.2.3")
        r.lookup("2001:db8::1")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "capture_pcap": capture_reader, "capture_pcapng": capture_reader,
    "scan_pcap": capture, "decode": decode_frame, "ip_fragments": ip_fragments,
    "line_framer": line_framer, "tcp_stream": tcp_stream, "http_websocket": http_websocket,
    "json_dialects": json_dialects, "dns": dns, "tls_client_hello": tls_client_hello,
    "proxy": proxy,
    "pipeline": pipeline, "signatures_yaml": signatures_yaml, "registry": registry,
}
