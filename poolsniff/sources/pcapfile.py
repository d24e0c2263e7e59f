"""pcap and pcapng files (plain, gzip-compressed or on stdin) as batches of packets.

The reader works on large blocks of the file and slices records out of them with
``struct``; it never builds a per-packet object beyond one tuple. A damaged or
truncated file is read up to the damage: the reader stops, records one
:class:`~poolsniff.model.Anomaly` saying where, and never raises for the content
of a file. Only a file that is not a capture at all (bad magic) raises
:class:`~poolsniff.errors.CaptureError`.

pcap: classic libpcap files, microsecond (0xa1b2c3d4) and nanosecond
(0xa1b23c4d) resolution, either byte order.
pcapng: section header, interface description (link type, ``if_tsresol``,
``if_tsoffset``), enhanced, simple and obsolete packet blocks; several
interfaces with different link types; several sections; unknown blocks are
skipped (counted).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import select
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from poolsniff import native
from poolsniff.errors import CaptureError
from poolsniff.model import Anomaly, Packet

READ_BLOCK = 1 << 20          # bytes read from the file at a time
LIVE_BLOCK_BYTES = 4 << 20    # a live stream's block: what is ready at once, up to this much
PREAD_MIN = 1 << 20           # a regular file's blocks: the smallest read (the first is 4x)
MAX_RECORD = 256 * 1024       # a record longer than this is damage, not a packet
BATCH = 4096                  # packets per batch handed to the pipeline
BLOCK_BYTES = 24 << 20        # a block's bytes are copied once: at most this much (jumbo/TSO
                              # captures would otherwise make 65,536-record blocks of 4 GB)

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
PCAPNG_BOM_LE, PCAPNG_BOM_BE = b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"   # section byte order
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class RecordBlock:
    """Many records of a capture in one buffer, for the batch path.

    ``offs[i]``: where frame i's bytes start in ``buf``; ``incl[i]`` its captured
    length; ``linktype[i]``, ``ts[i]`` and ``frame[i]`` (1-based frame number).
    """

    buf: bytes
    offs: np.ndarray
    incl: np.ndarray
    ts: np.ndarray
    frame: np.ndarray
    linktype: np.ndarray

    def __len__(self) -> int:
        return len(self.offs)


def block_from_packets(batch: list[Packet]) -> RecordBlock:
    """Pack a list of packet tuples into a :class:`RecordBlock`."""
    lens = np.fromiter((len(p[3]) for p in batch), np.int64, len(batch))
    offs = np.zeros(len(batch), np.int64)
    if len(batch) > 1:
        np.cumsum(lens[:-1], out=offs[1:])
    return RecordBlock(b"".join(p[3] for p in batch), offs, lens,
                       np.fromiter((p[1] for p in batch), np.float64, len(batch)),
                       np.fromiter((p[0] for p in batch), np.int64, len(batch)),
                       np.fromiter((p[2] for p in batch), np.int64, len(batch)))


def join_blocks(blocks: list[RecordBlock]) -> RecordBlock:
    """Consecutive blocks as one (their buffers joined, the offsets moved with them)."""
    shift = np.cumsum([0] + [len(b.buf) for b in blocks[:-1]])
    return RecordBlock(b"".join(b.buf for b in blocks),
                       np.concatenate([b.offs + s for b, s in zip(blocks, shift.tolist())]),
                       np.concatenate([b.incl for b in blocks]),
                       np.concatenate([b.ts for b in blocks]),
                       np.concatenate([b.frame for b in blocks]),
                       np.concatenate([b.linktype for b in blocks]))


def _pcap_header(hdr: bytes) -> tuple[str, float, int, int, int]:
    """(byte order, timestamp scale, snaplen, link type, largest acceptable record)."""
    order, scale = PCAP_MAGIC[hdr[:4]]
    snaplen, linktype = struct.unpack(order + "II", hdr[16:24])
    linktype &= 0x0FFFFFFF  # upper bits carry FCS information
    limit = max(snaplen, 65535) if 0 < snaplen <= MAX_RECORD else MAX_RECORD
    return order, scale, snaplen, linktype, limit


_RAMP = np.arange(16)


def index_records(buf: Any, pos: int, end: int, order: str, limit: int, max_records: int,
                  max_bytes: int) -> tuple[np.ndarray, int]:
    """Positions of consecutive record headers in ``buf`` from ``pos``, and where they end.

    Stops before a record longer than ``limit`` or cut short by ``end``, after
    ``max_records`` records, or once ``max_bytes`` have been passed; the caller tells
    those apart by looking at the returned position. In C when the extension is built."""
    if native.c_engine() is not None:
        rec, new = index_block(buf, pos, end, order, limit, max_records, max_bytes)
        return rec[:, 0], new
    incl_at = struct.Struct(order + "I").unpack_from
    starts: list[int] = []
    append = starts.append
    cap = pos + max_bytes
    while pos + 16 <= end and len(starts) < max_records and pos < cap:
        incl = incl_at(buf, pos + 8)[0]
        if incl > limit or pos + 16 + incl > end:
            break
        append(pos)
        pos += 16 + incl
    return np.asarray(starts, np.int64), pos


def index_block(buf: Any, pos: int, end: int, order: str, limit: int, max_records: int,
                max_bytes: int) -> tuple[np.ndarray, int]:
    """:func:`index_records` with each record's header fields: an n x 4 int64 array
    (position, captured length, timestamp seconds, timestamp fraction), and where it ends.
    The C index reads them in its pass; without it numpy gathers them."""
    fp = native.c_engine()
    if fp is not None:
        raw, new = fp.index_pcap(buf, pos, end, order == ">", limit, max_records, max_bytes)
        return np.frombuffer(raw, np.int64).reshape(-1, 4), new
    starts, new = index_records(buf, pos, end, order, limit, max_records, max_bytes)
    st = np.asarray(starts, np.int64)
    a = np.frombuffer(buf, np.uint8)
    f = a[st[:, None] + _RAMP].view(np.dtype(order + "u4")).reshape(len(st), 4).astype(np.int64)
    return np.column_stack((st, f[:, 2], f[:, 0], f[:, 1])), new


def _block(buf: bytes, rec: np.ndarray, scale: float, linktype: int, frame: int) -> RecordBlock:
    """A RecordBlock from :func:`index_block`'s rows."""
    k = len(rec)
    return RecordBlock(buf, rec[:, 0] + 16, rec[:, 1].copy(),
                       rec[:, 2].astype(np.float64) + rec[:, 3] * scale,
                       np.arange(frame + 1, frame + k + 1, dtype=np.int64),
                       np.full(k, linktype, np.int64))


def open_capture(path: str) -> tuple[io.BufferedIOBase, str]:
    """Open ``path`` (or stdin for ``-``) and undo gzip; returns (stream, display name)."""
    raw: Any
    if path == "-":
        raw = sys.stdin.buffer
        name = "<stdin>"
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the reader
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from exc
        name = path
    stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)
    head = stream.peek(2)[:2]
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=stream, mode="rb"), name
    return stream, name


def captures_in(folder: str) -> tuple[list[str], list[str]]:
    """The capture files under a folder (any depth; told by their first bytes, not their
    names: pcap, pcapng, either gzip-compressed), in the order of their first packet's time
    (rotated captures: ``tcpdump -C`` names its files x, x1, ... x10, which sort wrongly by
    name), then by name with numbers compared as numbers; and the files passed over (not
    captures, or unreadable)."""
    found: list[tuple[float, list[Any], str]] = []
    other: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            ts = _first_ts(path)
            if ts is None:
                other.append(path)
            else:
                found.append((ts, _natural(path), path))
    found.sort(key=lambda x: (x[0], x[1]))
    return [p for _ts, _n, p in found], other


def _first_ts(path: str) -> float | None:
    """The time of a capture file's first packet (inf: it has none), None if it is not a
    capture."""
    try:
        r = CaptureReader(path)             # tells a capture by its first bytes (gunzipped)
    except (OSError, CaptureError, EOFError, zlib.error):
        return None
    try:
        for _frame, ts, _lt, _data in r.packets():
            return ts
        return math.inf
    finally:
        r.close()


def _natural(path: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


class CaptureReader:
    """Iterates over a capture in batches of :data:`~poolsniff.model.Packet` tuples.

    After iteration, ``frames`` holds the number of records read, ``anomalies``
    the damage found (at most one stop per file) and ``truncated`` whether the
    file ended early.
    """

    def __init__(self, path: str, batch_size: int = BATCH) -> None:
        self.path = path
        self.stream, self.name = open_capture(path)
        self.batch_size = batch_size
        self.frames = 0
        self.bytes_read = 0
        self.anomalies: list[Anomaly] = []
        self.truncated = False
        self.unknown_blocks = 0
        self._buf = b""
        self._pos = 0
        self._eof = False
        first = self._peek(4)
        if len(first) < 4:
            if self.path != "-" and len(first) == 0:
                raise CaptureError(f"{self.name}: empty file, not a capture")
            raise CaptureError(f"{self.name}: too short to be a capture ({len(first)} bytes)")
        if first in PCAP_MAGIC:
            self.format = "pcap"
        elif first == PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raise CaptureError(
                f"{self.name}: not a pcap or pcapng file (magic {first.hex()}); "
                "convert it with 'editcap -F pcap' or 'tshark -F pcap -w'"
            )

    # -- buffered access ---------------------------------------------------------
    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available from ``_pos``; False at end of file."""
        have = len(self._buf) - self._pos
        if have >= need or self._eof:
            return have >= need
        parts = [self._buf[self._pos:]] if have else []
        while have < need and not self._eof:
            try:
                # a pipe (stdin) may be a live stream: take what has arrived, do not wait
                # for a full block
                chunk = (self.stream.read1(max(READ_BLOCK, need)) if self.path == "-"
                         else self.stream.read(max(READ_BLOCK, need)))
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # damaged gzip
                self._stop("decode", "capture.read_error", f"read error: {exc}")
                chunk = b""
            if not chunk:
                self._eof = True
                break
            self.bytes_read += len(chunk)
            parts.append(chunk)
            have += len(chunk)
        # one copy of what arrived (joining as it arrives copied the buffer once per read)
        self._buf = b"".join(parts)
        self._pos = 0
        return have >= need

    def _fill_live(self, target: int) -> None:
        """A stream still being written: one read (waiting for data), then more reads while
        the stream has data ready at once, up to ``target`` bytes buffered (a pipe hands
        over 64 KB a read: a block per read was ~90 packets)."""
        have = len(self._buf) - self._pos
        parts = [self._buf[self._pos:]] if have else []
        try:
            fd: int | None = self.stream.fileno()
        except (OSError, AttributeError, ValueError):
            fd = None
        first = True
        while not self._eof and have < target:
            if not first and (fd is None or not select.select([fd], [], [], 0)[0]):
                break
            first = False
            try:
                chunk = self.stream.read1(READ_BLOCK)
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # damaged gzip
                self._stop("decode", "capture.read_error", f"read error: {exc}")
                chunk = b""
            if not chunk:
                self._eof = True
                break
            self.bytes_read += len(chunk)
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0

    def _peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos:self._pos + n]

    def _take(self, n: int) -> bytes | None:
        if not self._fill(n):
            return None
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def _stop(self, kind: str, event: str, detail: str) -> None:
        if not self.truncated:
            self.truncated = True
            self.anomalies.append(Anomaly(kind, event, "capture", self.frames, None,
                                          f"{self.name}: {detail} after frame {self.frames}; "
                                          f"{self.frames} frames scanned"))
        self._eof = True

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass

    # -- iteration ------------------------------------------------------------------
    def packets(self) -> Iterator[Packet]:
        """The capture's packets one by one (a live stream: each as soon as it is read)."""
        try:
            yield from self._pcap() if self.format == "pcap" else self._pcapng()
        finally:
            self.close()

    def __iter__(self) -> Iterator[list[Packet]]:
        batch: list[Packet] = []
        for pkt in self.packets():
            batch.append(pkt)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def blocks(self, max_records: int = 65536, live: bool = False) -> Iterator[RecordBlock]:
        """The capture as :class:`RecordBlock`s: classic pcap is indexed in place
        (one pass over the record headers, the bytes are not copied per packet);
        pcapng is packed from its packets. ``live``: a stream still being written (``watch
        --read -``): each block holds the records that have arrived, never waiting for more."""
        if self.format != "pcap":
            try:
                yield from self._pcapng_blocks(max_records, live)
            finally:
                self.close()
            return
        try:
            regular = None if live else self._regular_fd()
            if regular is not None:
                yield from self._pcap_blocks_pread(*regular, max_records)
            else:
                yield from self._pcap_blocks(max_records, live)
        finally:
            self.close()

    def _regular_fd(self) -> tuple[int, int] | None:
        """(descriptor, size) when the capture is a plain regular file (read with pread)."""
        if self.path == "-" or not isinstance(self.stream, io.BufferedReader):
            return None
        try:
            raw = self.stream.raw
            if not isinstance(raw, io.FileIO) or not os.path.isfile(self.path):
                return None
            fd = raw.fileno()
            size = os.fstat(fd).st_size
            if size < 24:
                return None
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)   # larger read-ahead
            return fd, size
        except (OSError, ValueError, AttributeError):
            return None

    def _pcap_blocks_pread(self, fd: int, size: int, max_records: int) -> Iterator[RecordBlock]:
        """Blocks of a regular file, each read with one pread into a fresh bytes object.

        Each block ends where indexing the whole file from its first record would end it (at
        ``max_records`` records, past BLOCK_BYTES, or at damage): a read that ends inside a
        record is repeated larger. Reading (one copy from the page cache) costs less than
        mapping the file: the mapping's page faults plus the copy a block needs anyway took
        2-2.5x as long."""
        order, scale, snaplen, linktype, limit = _pcap_header(os.pread(fd, 24, 0))
        incl_at = struct.Struct(order + "I").unpack_from
        pos = 24
        frame = 0
        want = 4 * PREAD_MIN            # bytes per read: adapted to the blocks' sizes
        most = BLOCK_BYTES + 16 + limit     # a block never reaches further than this
        while True:
            while True:
                n = min(want, size - pos)
                data = os.pread(fd, n, pos) if n > 0 else b""
                rec, end = index_block(data, 0, len(data), order, limit, max_records,
                                       BLOCK_BYTES)
                damaged = end + 16 <= len(data) and incl_at(data, end + 8)[0] > limit
                full = len(rec) == max_records or end >= BLOCK_BYTES
                if full or damaged or len(data) < n or pos + n >= size or n >= most:
                    break       # the block is complete, or damage or the file's end stops it
                want = min(want * 2, most)      # the read ended inside a record: read more
            if len(rec):
                self.bytes_read = pos + end     # for a progress bar: how far into the file
                yield _block(data, rec, scale, linktype, frame)
                frame += len(rec)
                self.frames = frame
                pos += end
                want = max(PREAD_MIN, min(most, end + end // 4 + (64 << 10)))
                if full:
                    continue
            if damaged:
                self._stop("decode", "capture.bad_record_length",
                           f"record length {incl_at(data, end + 8)[0]} exceeds snaplen {snaplen}")
            elif size - pos > 0:
                self._stop("decode", "capture.truncated_record",
                           "last record cut short" if size - pos >= 16 else "record header cut short")
            return

    def _pcap_blocks(self, max_records: int, live: bool = False) -> Iterator[RecordBlock]:
        hdr = self._take(24)
        if hdr is None:
            self._stop("decode", "capture.truncated_header", "file header truncated")
            return
        order, scale, snaplen, linktype, limit = _pcap_header(hdr)
        incl_at = struct.Struct(order + "I").unpack_from
        frame = 0
        while True:
            if not live:
                self._fill(min(16 << 20, BLOCK_BYTES))
            buf = self._buf
            pos = self._pos
            n = len(buf)
            rec, pos = index_block(buf, pos, n, order, limit, max_records, n - pos + 1)
            if len(rec):
                self._pos = pos
                yield _block(buf, rec, scale, linktype, frame)
                frame += len(rec)
                self.frames = frame
                continue
            # nothing indexable: end of file, a cut-short record or damage
            if pos + 16 <= n:
                incl = incl_at(buf, pos + 8)[0]
                if incl > limit:
                    self._stop("decode", "capture.bad_record_length",
                               f"record length {incl} exceeds snaplen {snaplen}")
                    return
            if self._eof:
                if n - pos > 0:
                    self._stop("decode", "capture.truncated_record",
                               "last record cut short" if n - pos >= 16 else "record header cut short")
                return
            # a record larger than what is buffered (live: what has arrived, waiting for some)
            if live:
                self._fill_live(max(n - pos + 1, LIVE_BLOCK_BYTES))
            else:
                self._fill(n - pos + 16 * 1024 * 1024)

    def _pcap(self) -> Iterator[Packet]:
        hdr = self._take(24)
        if hdr is None:
            self._stop("decode", "capture.truncated_header", "file header truncated")
            return
        order, scale, snaplen, linktype, limit = _pcap_header(hdr)
        rec = struct.Struct(order + "IIII")
        frame = 0
        while True:
            rh = self._take(16)
            if rh is None:
                if len(self._buf) - self._pos > 0:
                    self._stop("decode", "capture.truncated_record", "record header cut short")
                return
            sec, frac, incl, orig = rec.unpack(rh)
            if incl > limit:
                self._stop("decode", "capture.bad_record_length",
                           f"record length {incl} exceeds snaplen {snaplen}")
                return
            data = self._take(incl)
            if data is None:
                self._stop("decode", "capture.truncated_record", "last record cut short")
                return
            frame += 1
            self.frames = frame
            yield (frame, sec + frac * scale, linktype, data)

    def _pcapng(self) -> Iterator[Packet]:
        sec = _Section()
        while True:
            more, pkt = self._pcapng_block(sec)
            if not more:
                return
            if pkt is not None:
                yield pkt

    def _pcapng_blocks(self, max_records: int, live: bool) -> Iterator[RecordBlock]:
        """pcapng as blocks: the C indexer takes the packet blocks of a buffer in one pass;
        what it stops at (a section or interface header, a block the buffer does not yet
        hold whole, damage) goes through :meth:`_pcapng_block`, the per-block reader, which
        decides and words it, and then the indexer goes on."""
        fp = native.c_engine()
        sec = _Section()
        while True:
            if fp is not None:
                if not live:
                    self._fill(min(16 << 20, BLOCK_BYTES))
                buf, pos = self._buf, self._pos
                raw, new, unknown = fp.index_pcapng(buf, pos, len(buf), sec.order == ">",
                                                    len(sec.ifaces), max_records, BLOCK_BYTES,
                                                    MAX_RECORD + 64)
                self.unknown_blocks += unknown
                self._pos = new
                if raw:
                    yield self._ng_block(buf, np.frombuffer(raw, np.int64).reshape(-1, 4), sec)
                    continue
                if new > pos:
                    continue                    # only blocks of unknown types: look further
                if live and not self._eof and not self._ng_whole(sec):
                    # a stream still being written: wait for the block's end, and take what
                    # else is ready with it (a block per pipe read was ~90 packets)
                    self._fill_live(max(len(self._buf) - self._pos + 1, LIVE_BLOCK_BYTES))
                    continue
            more, pkt = self._pcapng_block(sec)
            if not more:
                return
            if pkt is not None:
                yield block_from_packets([pkt])

    def _ng_whole(self, sec: _Section) -> bool:
        """Does the buffer hold the next block whole (or enough of it to see its length is
        damage)?"""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 12:
            return False
        order = sec.order
        if buf[pos:pos + 4] == PCAPNG_SHB:      # a new section: its own byte order
            order = ">" if buf[pos + 8:pos + 12] == PCAPNG_BOM_BE else "<"
        blen = struct.unpack_from(order + "I", buf, pos + 4)[0]
        return blen < 12 or blen > MAX_RECORD + 64 or len(buf) - pos >= blen

    def _ng_block(self, buf: bytes, rec: np.ndarray, sec: _Section) -> RecordBlock:
        """A RecordBlock from index_pcapng's columns: each packet's time is its ticks times
        its interface's scale plus its offset, as the per-block reader computes it (a
        simple packet block has no time: 0.0)."""
        k = len(rec)
        iface = rec[:, 3]
        lts = np.array([f[0] for f in sec.ifaces] or [0], np.int64)
        scale = np.array([f[1] for f in sec.ifaces] or [0.0], np.float64)
        offset = np.array([f[2] for f in sec.ifaces] or [0.0], np.float64)
        at = np.maximum(iface, 0)
        ts = rec[:, 2].view(np.uint64).astype(np.float64) * scale[at] + offset[at]
        simple = iface < 0
        if simple.any():
            ts[simple] = 0.0
        frame = self.frames
        self.frames = frame + k
        return RecordBlock(buf, rec[:, 0].copy(), rec[:, 1].copy(), ts,
                           np.arange(frame + 1, frame + k + 1, dtype=np.int64), lts[at])

    def _pcapng_block(self, sec: _Section) -> tuple[bool, Packet | None]:
        """Read one pcapng block: (False, None) at the end of the capture or at damage
        (reported), else (True, the packet it carries or None)."""
        head = self._take(8)
        if head is None:
            if len(self._buf) - self._pos > 0:
                self._stop("decode", "capture.truncated_block", "block header cut short")
            return False, None
        btype_raw = head[:4]
        if btype_raw == PCAPNG_SHB:
            bom = self._peek(4)
            if bom == PCAPNG_BOM_LE:
                sec.order = "<"
            elif bom == PCAPNG_BOM_BE:
                sec.order = ">"
            else:
                self._stop("decode", "capture.bad_block", "section header has a bad byte-order magic")
                return False, None
            sec.ifaces = []
        order, ifaces = sec.order, sec.ifaces
        btype, blen = struct.unpack(order + "II", head)
        if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
            self._stop("decode", "capture.bad_block_length", f"block length {blen} is invalid")
            return False, None
        body = self._take(blen - 8)
        if body is None:
            self._stop("decode", "capture.truncated_block", "last block cut short")
            return False, None
        body = body[:-4]  # trailing copy of the block length
        if btype == 1:  # interface description
            if len(body) < 8:
                self._stop("decode", "capture.bad_block", "interface block too short")
                return False, None
            linktype = struct.unpack(order + "H", body[:2])[0]
            scale, offset = 1e-6, 0.0
            opts = body[8:]
            i = 0
            while i + 4 <= len(opts):
                code, olen = struct.unpack(order + "HH", opts[i:i + 4])
                val = opts[i + 4:i + 4 + olen]
                if code == 0:
                    break
                if code == 9 and len(val) >= 1:   # if_tsresol (the option may be cut)
                    r = val[0]
                    scale = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
                elif code == 14 and len(val) == 8:    # if_tsoffset, seconds
                    offset = float(struct.unpack(order + "q", val)[0])
                i += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, scale, offset))
        elif btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if len(body) < 20:
                self._stop("decode", "capture.bad_block", "packet block too short")
                return False, None
            if btype == 6:
                iface, hi, lo, incl, _orig = struct.unpack(order + "IIIII", body[:20])
            else:
                iface, _drops, hi, lo, incl, _orig = struct.unpack(order + "HHIIII", body[:20])
            if iface >= len(ifaces):
                self._stop("decode", "capture.bad_block", f"packet names unknown interface {iface}")
                return False, None
            if incl > len(body) - 20:
                self._stop("decode", "capture.bad_record_length",
                           f"captured length {incl} exceeds its block")
                return False, None
            lt, scale, offset = ifaces[iface]
            self.frames += 1
            return True, (self.frames, ((hi << 32) | lo) * scale + offset, lt, body[20:20 + incl])
        elif btype == 3:  # simple packet block: no timestamp
            if not ifaces or len(body) < 4:
                self._stop("decode", "capture.bad_block", "simple packet block without interface")
                return False, None
            orig = struct.unpack(order + "I", body[:4])[0]
            self.frames += 1
            return True, (self.frames, 0.0, ifaces[0][0], body[4:4 + orig])
        elif btype != 0x0A0D0D0A:
            self.unknown_blocks += 1
        return True, None


class _Section:
    """The state of a pcapng section: its byte order and interfaces (link type, timestamp
    scale, timestamp offset)."""

    __slots__ = ("order", "ifaces")

    def __init__(self) -> None:
        self.order = "<"
        self.ifaces: list[tuple[int, float, float]] = []
