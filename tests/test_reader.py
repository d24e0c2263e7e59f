"""Blocks of a regular pcap file (read with pread, repeated larger when a read ends inside a
record) end exactly where indexing the whole file ends them, and damage stops the reader at
the same record with the same anomaly as the per-packet reader.

The read sizes are shrunk (PREAD_MIN, BLOCK_BYTES) so that small captures exercise every
branch: reads that end inside a record header or body, blocks cut by record count or by
bytes, a record too long, a file cut short.
"""

import struct

import numpy as np
import pytest

from conftest import CAPTURES, on_stdin, pipe_fed
from poolsniff.sources import pcapfile
from poolsniff.sources.pcapfile import CaptureReader, index_records

PCAP_FILES = [p for p in CAPTURES if p.suffix == ".pcap"]


def _reference(data: bytes, max_records: int, block_bytes: int) -> list[list[bytes]]:
    """The blocks that indexing the whole file in memory gives: each block's records."""
    order, _scale, _snap, _lt, limit = pcapfile._pcap_header(data[:24])
    out, pos = [], 24
    while True:
        starts, new = index_records(data, pos, len(data), order, limit, max_records, block_bytes)
        if not len(starts):
            return out
        out.append([data[s + 16:s + 16 + struct.unpack_from(order + "I", data, s + 8)[0]]
                    for s in starts.tolist()])
        pos = new
        if len(starts) < max_records and pos - int(starts[0]) < block_bytes:
            return out


def _blocks(path, max_records: int) -> tuple[list[list[bytes]], CaptureReader]:
    r = CaptureReader(str(path))
    got = [[bytes(b.buf[o:o + n]) for o, n in zip(b.offs.tolist(), b.incl.tolist())]
           for b in r.blocks(max_records)]
    return got, r


@pytest.mark.parametrize("max_records,block_bytes,pread_min", [
    (7, 1 << 20, 64), (50, 3000, 100), (4096, 5000, 16), (3, 200, 1), (65536, 24 << 20, 1 << 20)])
def test_blocks_end_where_the_whole_file_index_ends_them(max_records, block_bytes, pread_min,
                                                         monkeypatch):
    monkeypatch.setattr(pcapfile, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(pcapfile, "PREAD_MIN", pread_min)
    for path in PCAP_FILES:
        data = path.read_bytes()
        if data[:4] not in pcapfile.PCAP_MAGIC:
            continue
        got, r = _blocks(path, max_records)
        assert got == _reference(data, max_records, block_bytes), path.name
        assert r.frames == sum(map(len, got))
        assert r.bytes_read <= len(data)


def _damaged_copies(tmp_path, data: bytes):
    """The capture cut inside a record header, inside a record, and with a lying length."""
    order = pcapfile._pcap_header(data[:24])[0]
    starts, _ = index_records(data, 24, len(data), order, 1 << 18, 1 << 30, 1 << 40)
    mid = int(starts[len(starts) // 2])
    yield "cut_header", data[:mid + 7]
    yield "cut_body", data[:mid + 16 + 3]
    bad = bytearray(data)
    struct.pack_into(order + "I", bad, mid + 8, 0x7FFFFFFF)
    yield "bad_length", bytes(bad)


@pytest.mark.parametrize("pread_min", [1, 64, 1 << 20])
def test_damage_stops_the_block_reader_like_the_packet_reader(tmp_path, pread_min, monkeypatch):
    monkeypatch.setattr(pcapfile, "PREAD_MIN", pread_min)
    src = max((p for p in PCAP_FILES if p.read_bytes()[:4] in pcapfile.PCAP_MAGIC),
              key=lambda p: p.stat().st_size)
    for name, data in _damaged_copies(tmp_path, src.read_bytes()):
        f = tmp_path / f"{name}.pcap"
        f.write_bytes(data)
        got, r = _blocks(f, 50)
        plain = CaptureReader(str(f))
        frames = [p for batch in plain for p in batch]
        assert sum(map(len, got)) == len(frames) == r.frames, name
        assert [p[3] for p in frames] == [x for blk in got for x in blk], name
        assert r.truncated and plain.truncated, name
        assert [a.event for a in r.anomalies] == [a.event for a in plain.anomalies], name


def test_a_live_stream_gives_what_has_arrived_without_waiting(monkeypatch):
    """watch --read -: each block holds the complete records that have arrived; a record
    cut between two writes waits for its end, never for a full block's worth of bytes."""
    import os
    import threading
    data = next(p for p in CAPTURES if p.name == "xmrig_compact.pcap").read_bytes()
    order, _scale, _snap, _lt, limit = pcapfile._pcap_header(data[:24])
    starts, _ = index_records(data, 24, len(data), order, limit, 1 << 20, len(data))
    cut = int(starts[5]) + 20                      # inside the sixth record
    rd, wr = os.pipe()
    os.write(wr, data[:int(starts[2])])           # the header and two records
    r = on_stdin(rd, monkeypatch)
    it = r.blocks(65536, live=True)
    got = []

    def take():
        got.append(len(next(it)))
    for what, expect in ((data[:0], [2]), (data[int(starts[2]):cut], [2, 3])):
        os.write(wr, what)
        t = threading.Thread(target=take, daemon=True)
        t.start()
        t.join(5)
        assert got == expect, "the complete records that arrived, with the pipe still open"
    os.write(wr, data[cut:])
    os.close(wr)
    rest = sum(len(b) for b in it)
    assert 5 + rest == len(starts) and not r.truncated


def test_a_stream_read_live_gives_the_file_s_records(monkeypatch):
    """Every capture through a pipe, read live, gives the records of the file."""
    for path in PCAP_FILES[:20]:
        rd, t = pipe_fed(path.read_bytes(), 7000)
        r = on_stdin(rd, monkeypatch)
        live = [bytes(b.buf[o:o + n]) for b in r.blocks(65536, live=True)
                for o, n in zip(b.offs.tolist(), b.incl.tolist())]
        t.join()
        whole = [bytes(b.buf[o:o + n]) for b in CaptureReader(str(path)).blocks()
                 for o, n in zip(b.offs.tolist(), b.incl.tolist())]
        assert live == whole, path.name


def test_stream_capture_joins_the_blocks_that_queued_up(monkeypatch):
    """watch --read -: blocks that queued up while the last was processed come as one (the
    same records, frames, times and link types in order), at most max_records at a time."""
    import time

    from poolsniff.sources.live import StreamCapture
    path = max(PCAP_FILES, key=lambda p: p.stat().st_size)
    monkeypatch.setattr(pcapfile, "LIVE_BLOCK_BYTES", 3000)
    rd, t = pipe_fed(path.read_bytes(), 3000)      # small writes: many small blocks
    src = on_stdin(rd, monkeypatch, StreamCapture)
    time.sleep(0.5)                                 # let the reader queue up its blocks

    def rows(blocks):
        return [(int(f), float(ts), int(lt), bytes(b.buf[o:o + n])) for b in blocks
                for f, ts, lt, o, n in zip(b.frame.tolist(), b.ts.tolist(), b.linktype.tolist(),
                                           b.offs.tolist(), b.incl.tolist())]
    got = []
    while not src.eof:
        blk = src.read(1.0, max_records=40)
        if blk is not None:
            got.append(blk)
    t.join(10)
    whole = list(CaptureReader(str(path)).blocks())
    assert rows(got) == rows(whole)
    sizes = [len(b) for b in got]
    assert max(sizes) >= 40 and len(got) < sum(sizes) / 10, sizes
    assert all(n < 40 + 200 for n in sizes)        # stops once max_records is reached



def test_the_c_index_reads_the_record_fields_numpy_reads(monkeypatch):
    """index_block in C (one pass: position, captured length, seconds, fraction) gives what
    the numpy gather gives, for every classic pcap of the suite, both byte orders, and the
    blocks made from it carry the per-packet reader's times and lengths."""
    from poolsniff import native
    if native.c_engine() is None:
        pytest.skip("the C extension is not built")
    for path in PCAP_FILES:
        data = path.read_bytes()
        if data[:4] not in pcapfile.PCAP_MAGIC:
            continue
        order, _scale, _snap, _lt, limit = pcapfile._pcap_header(data[:24])
        c, end_c = pcapfile.index_block(data, 24, len(data), order, limit, 1 << 20, 1 << 40)
        with monkeypatch.context() as m:
            m.setattr(native, "ENGINE", "numpy")
            n, end_n = pcapfile.index_block(data, 24, len(data), order, limit, 1 << 20, 1 << 40)
        assert end_c == end_n and np.array_equal(c, n), path.name
        got = [(int(f), float(t), bytes(b.buf[o:o + k])) for b in CaptureReader(str(path)).blocks()
               for f, t, o, k in zip(b.frame.tolist(), b.ts.tolist(), b.offs.tolist(), b.incl.tolist())]
        assert got == [(p[0], p[1], p[3]) for p in CaptureReader(str(path)).packets()], path.name
