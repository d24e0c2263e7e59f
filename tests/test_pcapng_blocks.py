"""pcapng read in blocks (the C indexer, with the per-block reader for what it stops at)
gives exactly the packets the per-block reader gives alone: the same frames, times, link
types and bytes, the same damage reported at the same frame, the same count of unknown
blocks -- on every pcapng of the test suite and the public corpus, and on captures built
here to reach what those do not: big-endian sections, several sections and interfaces,
simple and obsolete packet blocks, timestamp resolutions and offsets, unknown blocks, and
each kind of damage, read from a file with buffers small enough that blocks are cut at
every place, and through a pipe as `watch --read -` reads it.
"""

import struct

import pytest

from conftest import CAPTURES, PCAPS, on_stdin, pipe_fed
from poolsniff import native
from poolsniff.sources import pcapfile
from poolsniff.sources.pcapfile import CaptureReader

pytestmark = pytest.mark.skipif(native.c_engine() is None, reason="the C extension is not built")

PCAPNG = [p for p in CAPTURES if p.read_bytes()[:4] == pcapfile.PCAPNG_SHB] + \
    sorted((PCAPS / "malformed").glob("*.pcapng"))


def _frames(path) -> list[bytes]:
    """The packets of a classic pcap as bytes."""
    return [p[3] for batch in CaptureReader(str(path)) for p in batch]


PAYLOADS = _frames(PCAPS / "xmrig_compact.pcap")


# -- building pcapng -----------------------------------------------------------------------
def _block(o: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def _shb(o: str) -> bytes:
    return _block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _opt(o: str, code: int, val: bytes) -> bytes:
    return struct.pack(o + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def _idb(o: str, linktype: int = 1, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += _opt(o, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(o, 14, struct.pack(o + "q", tsoffset))
    if opts:
        opts += _opt(o, 0, b"")
    return _block(o, 1, struct.pack(o + "HHI", linktype, 0, 0) + opts)


def _epb(o: str, iface: int, ticks: int, data: bytes, caplen: int | None = None) -> bytes:
    cap = len(data) if caplen is None else caplen
    return _block(o, 6, struct.pack(o + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, cap,
                                    len(data)) + data)


def _pb(o: str, iface: int, ticks: int, data: bytes) -> bytes:
    return _block(o, 2, struct.pack(o + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                    len(data), len(data)) + data)


def _spb(o: str, data: bytes, orig: int | None = None) -> bytes:
    return _block(o, 3, struct.pack(o + "I", len(data) if orig is None else orig) + data)


def _varied(o: str) -> bytes:
    """Two sections; interfaces with micro-, nano- and 2^-20-second clocks and an offset;
    enhanced, obsolete and simple packet blocks (one cut by the capture); blocks of unknown
    types between them."""
    t = 1_600_000_000_123_457
    out = [_shb(o), _block(o, 0x0BAD, b"vendor"), _idb(o, 1, None, 7200), _idb(o, 1, 9, 3600),
           _idb(o, 1, 0x94)]
    for i, data in enumerate(PAYLOADS):
        k = i % 7
        if k == 0:
            out.append(_epb(o, 0, t + i * 1013, data))
        elif k == 1:
            out.append(_epb(o, 1, (t + i) * 1000 + 999, data))
        elif k == 2:
            out.append(_epb(o, 2, (1_600_000_000 << 20) + i * 4099, data))
        elif k == 3:
            out.append(_pb(o, 1, t * 1000 + i, data))
        elif k == 4:
            out.append(_spb(o, data))
        elif k == 5:
            out.append(_block(o, 5, struct.pack(o + "III", 0, 0, 0)))     # statistics
            out.append(_epb(o, 0, t + i, data))
        else:
            out.append(_spb(o, data[:40], orig=len(data)))
    out += [_shb(o), _idb(o, 1, 3)]
    out += [_epb(o, 0, 1_700_000_000_000 + i, d) for i, d in enumerate(PAYLOADS[:20])]
    return b"".join(out)


def _built(tmp_path) -> list:
    files = []
    for name, data in (("little", _varied("<")), ("big", _varied(">")),
                       ("mixed", _varied("<") + _varied(">"))):
        f = tmp_path / f"{name}.pcapng"
        f.write_bytes(data)
        files.append(f)
    base = _varied("<")
    starts = _block_starts(base)
    mid = starts[len(starts) // 2]
    o = "<"
    for name, data in (
            ("cut_header", base[:mid + 5]),
            ("cut_body", base[:mid + 30]),
            ("bad_length", base[:mid + 4] + struct.pack(o + "I", 13) + base[mid + 8:]),
            ("huge_length", base[:mid + 4] + struct.pack(o + "I", 1 << 30) + base[mid + 8:]),
            ("unknown_iface", base[:mid] + _epb(o, 9, 1, PAYLOADS[0]) + base[mid:]),
            ("caplen_past_block", base[:mid] + _epb(o, 0, 1, PAYLOADS[0], caplen=5000) + base[mid:]),
            # into the padding is allowed, one byte past it is not
            ("caplen_into_padding", base[:mid] + _epb(o, 0, 1, b"x" * 41, caplen=44) + base[mid:]),
            ("caplen_past_padding", base[:mid] + _epb(o, 0, 1, b"x" * 41, caplen=45) + base[mid:]),
            ("short_packet_block", base[:mid] + _block(o, 6, b"\0" * 12) + base[mid:]),
            ("spb_before_idb", _shb(o) + _spb(o, PAYLOADS[0]) + base),
            ("bad_byte_order", base[:mid] + _block(o, 0x0A0D0D0A, b"\1\2\3\4" + b"\0" * 12))):
        f = tmp_path / f"{name}.pcapng"
        f.write_bytes(data)
        files.append(f)
    return files


def _block_starts(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        out.append(pos)
        pos += struct.unpack_from("<I", data, pos + 4)[0]
    return out


# -- the comparison --------------------------------------------------------------------------
def _per_block(path) -> tuple[list, CaptureReader]:
    r = CaptureReader(str(path))
    return list(r.packets()), r


def _as_blocks(r: CaptureReader, live: bool = False) -> list:
    return [(int(f), float(t), int(lt), bytes(b.buf[o:o + n]))
            for b in r.blocks(4096, live)
            for f, t, lt, o, n in zip(b.frame.tolist(), b.ts.tolist(), b.linktype.tolist(),
                                      b.offs.tolist(), b.incl.tolist())]


def _same(path, got: list, r: CaptureReader) -> None:
    want, ref = _per_block(path)
    assert got == want, path.name
    assert (r.frames, r.truncated, r.unknown_blocks) == (ref.frames, ref.truncated, ref.unknown_blocks), path.name
    assert [(a.event, a.frame, a.detail) for a in r.anomalies] == \
        [(a.event, a.frame, a.detail) for a in ref.anomalies], path.name


@pytest.mark.parametrize("read_block,block_bytes", [(1 << 20, 24 << 20), (100, 300), (4096, 1000)])
def test_blocks_give_the_per_block_reader_s_packets(tmp_path, read_block, block_bytes, monkeypatch):
    files = PCAPNG + _built(tmp_path)
    monkeypatch.setattr(pcapfile, "READ_BLOCK", read_block)
    monkeypatch.setattr(pcapfile, "BLOCK_BYTES", block_bytes)
    for path in files:
        r = CaptureReader(str(path))
        _same(path, _as_blocks(r), r)


def test_the_indexer_takes_the_packet_blocks(tmp_path, monkeypatch):
    """The C indexer, not the per-block reader, takes the packets (a few go through the
    reader where a block is cut by the buffer's end)."""
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(_varied("<") + _varied(">"))
    calls = []
    real = CaptureReader._pcapng_block

    def counted(self, sec):
        calls.append(1)
        return real(self, sec)
    monkeypatch.setattr(CaptureReader, "_pcapng_block", counted)
    r = CaptureReader(str(path))
    n = len(_as_blocks(r))
    assert n == r.frames > 2 * len(PAYLOADS)
    # 4 sections (header + 3 or 1 interfaces: 12 blocks) and the end of the file
    assert len(calls) == 13


def test_a_pcapng_stream_read_live_gives_the_file_s_packets(tmp_path, monkeypatch):
    for path in PCAPNG[:8] + _built(tmp_path)[:3]:
        rd, t = pipe_fed(path.read_bytes(), 5000)
        r = on_stdin(rd, monkeypatch)
        got = _as_blocks(r, live=True)
        t.join(5)
        _same(path, got, r)
