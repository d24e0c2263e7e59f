"""Message framing on reassembled byte streams: JSON lines, HTTP/1.x and WebSocket.

Each framer is sans-IO: bytes (with the frame number and time of the segment
that carried them) go in, complete messages come out through a callback. All
buffers are bounded; anything longer than its cap is an anomaly, not memory
growth.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from poolsniff.stream import Budget

MAX_LINE_BYTES = 64 * 1024        # a JSON-RPC line longer than this is hostile
MAX_HTTP_HEADER = 16 * 1024
MAX_HTTP_BODY = 256 * 1024
MAX_WS_MESSAGE = 64 * 1024

#: on_message(payload, frame, ts)
OnMessage = Callable[[bytes, int, float], None]
#: on_anomaly(event, frame, ts)
OnAnomaly = Callable[[str, int, float], None]


def opens_json(data: bytes) -> bool:
    """Does ``data`` begin (after whitespace) with a JSON object? Every JSON dialect does."""
    return data.lstrip()[:1] == b"{"


def parse_json(line: bytes) -> Any:
    """Parse one JSON message; ``None`` when it is not a JSON object.

    orjson rejects invalid UTF-8 and nesting deeper than 1024 with an ordinary
    ``JSONDecodeError`` (never a ``RecursionError``), which is why it is used.
    """
    if len(line) > MAX_LINE_BYTES:
        return None
    s = line.lstrip()
    if not s.startswith(b"{"):
        return None
    try:
        msg = orjson.loads(s)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


class _Holder:
    """What a framer holds between feeds (a partial line or message), accounted in its
    Scanner's Budget (the reassembly memcap shared with the streams)."""

    __slots__ = ("budget", "held", "released")

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget if budget is not None else Budget()
        self.held = 0                   # bytes accounted in the budget
        self.released = False           # dropped with its flow (maybe while it was feeding)

    def _hold(self, n: int) -> bool:
        """Now n bytes are held: account the change; False if the budget refused the growth
        (the caller drops what it holds, which :meth:`_hold` (0) then gives back)."""
        if self.released:
            return True                 # no longer accounted: its flow let it go
        if not self.budget.change(self.held, n):
            return False
        self.held = n
        return True

    def release(self) -> None:
        """The framer is dropped with its flow: what it held goes back to the budget."""
        if self.held:
            self.budget.give(self.held)
            self.held = 0
        self.released = True


class LineFramer(_Holder):
    """Splits a byte stream on LF; tolerates CRLF; re-syncs after gaps."""

    __slots__ = ("buf", "on_line", "on_anomaly", "resync", "max_line", "lines", "oversize")

    def __init__(self, on_line: OnMessage, on_anomaly: OnAnomaly, resync: bool = False,
                 max_line: int = MAX_LINE_BYTES, budget: Budget | None = None) -> None:
        super().__init__(budget)
        self.buf = bytearray()
        self.on_line = on_line
        self.on_anomaly = on_anomaly
        self.resync = resync        # discard up to the next LF (mid-line start)
        self.max_line = max_line
        self.lines = 0
        self.oversize = 0

    def feed(self, data: bytes, frame: int, ts: float, gap: bool = False) -> None:
        if gap:
            self.buf.clear()
            self.resync = True
        start = 0
        if self.resync:
            self.resync = False
            # a stream picked up mid-stream may start on a line boundary: keep a leading '{'
            # (an unparseable line costs nothing); otherwise drop up to the next LF
            if not opens_json(data):
                nl = data.find(b"\n")
                if nl < 0:
                    self.resync = True
                    if self.held:               # the buffer is empty here
                        self._hold(0)
                    return
                start = nl + 1
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            if self.buf:
                self.buf += data[start:nl]
                line = bytes(self.buf)
                self.buf.clear()
            else:
                line = data[start:nl]
            start = nl + 1
            if len(line) > self.max_line:
                self.oversize += 1
                self.on_anomaly("framing.line_too_long", frame, ts)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                self.lines += 1
                if opens_json(line):               # only JSON objects go on
                    self.on_line(line, frame, ts)
        rest = len(data) - start
        if rest:
            if len(self.buf) + rest > self.max_line:
                self.oversize += 1
                self.on_anomaly("framing.line_too_long", frame, ts)
                self.buf.clear()
                self.resync = True
            else:
                self.buf += data[start:]
        if len(self.buf) != self.held and not self._hold(len(self.buf)):
            # no memory left to hold the partial line: dropped, the stream re-syncs at the
            # next newline (counted in the budget)
            self.buf.clear()
            self.resync = True
            self._hold(0)

    def flush(self, frame: int, ts: float) -> None:
        """End of stream: a last line without LF still counts (one message)."""
        if self.buf and not self.resync:
            line = bytes(self.buf).rstrip(b"\r")
            self.buf.clear()
            self._hold(0)
            if opens_json(line):
                self.lines += 1
                self.on_line(line, frame, ts)


class HttpMessage:
    """One HTTP/1.x request or response."""

    __slots__ = ("start", "headers", "body", "frame", "ts")

    def __init__(self, start: str, headers: dict[str, str], body: bytes, frame: int, ts: float):
        self.start = start
        self.headers = headers
        self.body = body
        self.frame = frame
        self.ts = ts

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("HTTP/")


HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ")


def looks_like_http(data: bytes) -> bool:
    return data.startswith(HTTP_METHODS) or data.startswith(b"HTTP/1.")


HEAD_MEMORY_BYTES = 1024      # heads up to this long are remembered (4,096 of them: ~12 MB at most)


def _head(raw: bytes) -> tuple[str, dict[str, str]] | None:
    """An HTTP head: (start line, headers by lowercased name), or None for a bad start line.
    Short heads are remembered: a miner polling getwork or a pool answering it repeats the
    same head byte for byte, all day. The headers dict may be shared between messages: read
    it, never change it."""
    return _head_remembered(raw) if len(raw) <= HEAD_MEMORY_BYTES else _parse_head(raw)


def _parse_head(raw: bytes) -> tuple[str, dict[str, str]] | None:
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0]
    if not (start.startswith("HTTP/") or start.split(" ", 1)[0].isalpha()):
        return None
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return start, headers


_head_remembered = functools.lru_cache(maxsize=4096)(_parse_head)


_HEXDIG = re.compile(rb"[0-9A-Fa-f]+")


def chunk_size(line: bytes) -> int | None:
    """A chunk-size line's size (RFC 9112 7.1: hex digits, then optional ';' extensions, with
    optional blanks around them), or None. Only hex digits: int(x, 16) also takes a sign, and
    a negative size moved the parser back over the bytes it had read, for ever ("-6")."""
    digits = line.split(b";", 1)[0].strip(b" \t")
    return int(digits, 16) if _HEXDIG.fullmatch(digits) else None


_DIGITS = re.compile(r"[0-9]+")


def content_length(value: str | None) -> int | None:
    """A Content-Length value's length (RFC 9110 8.6: 1*DIGIT; a list of one number repeated,
    as a proxy that merged two same headers writes it, is that number); 0 when absent or
    empty; None when invalid (a sign, other characters, different numbers)."""
    if value is None or value == "":
        return 0
    if len(value) <= 18 and value.isdigit() and value.isascii():
        return int(value)               # the common case: digits only, ASCII
    parts = {p.strip(" \t") for p in value.split(",")}
    if len(parts) != 1:
        return None
    digits = parts.pop()
    # ASCII only: the pattern's [0-9] is, and the head was decoded as latin-1
    if not _DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    # int() refuses over 4,300 decimal digits (ValueError); any length that long is too long
    return int(digits) if len(digits) <= 18 else 10 ** 18


class HttpFramer(_Holder):
    """Parses pipelined HTTP/1.x messages (Content-Length or chunked bodies).

    A message that arrives in pieces is parsed as it comes: where the head ends is searched
    only in the new bytes, and a chunked body's chunks are read once each (re-reading the
    message from its start at every segment made a body of 8,000 one-byte chunks, sent one
    a segment, take 40 s)."""

    __slots__ = ("buf", "on_message", "on_anomaly", "dead", "frame", "ts", "upgraded",
                 "scan_from", "pending")

    def __init__(self, on_message: Callable[[HttpMessage], None], on_anomaly: OnAnomaly,
                 budget: Budget | None = None) -> None:
        super().__init__(budget)
        self.buf = bytearray()
        self.on_message = on_message
        self.on_anomaly = on_anomaly
        self.dead = False
        self.frame = 0
        self.ts = 0.0
        self.upgraded = False
        self.scan_from = 0              # the head's end is not before this offset
        # the message whose head is parsed, its body still arriving: [start line, headers,
        # offset of the next unread chunk line (or of the body), chunked, content length,
        # the chunks read so far]
        self.pending: list[Any] | None = None

    def feed(self, data: bytes, frame: int, ts: float, gap: bool = False) -> bytes:
        """Feed bytes; returns bytes left over after a protocol upgrade."""
        if self.dead:
            return b""                  # (its buffer was cleared when it died)
        if gap:
            self.buf.clear()
            self.scan_from = 0
            self.pending = None
        self.buf += data
        self.frame, self.ts = frame, ts
        while self.buf and not self.dead and not self.upgraded:
            if not self._one():
                break
        if len(self.buf) > MAX_HTTP_HEADER + MAX_HTTP_BODY:
            self.on_anomaly("http.message_too_long", frame, ts)
            self.buf.clear()
            self.dead = True
        rest = b""
        if self.upgraded:
            rest = bytes(self.buf)
            self.buf.clear()
        elif self.dead:
            self.buf.clear()            # nothing more is read from it
            self.pending = None
        n = len(self.buf) + (len(self.pending[5]) if self.pending is not None else 0)
        if n != self.held and not self._hold(n):
            self.buf.clear()            # no memory left to hold the message: given up on
            self.pending = None
            self.dead = True
            self._hold(0)
        return rest

    def _one(self) -> bool:
        """Parse what the buffer holds of the next message; True when one was complete."""
        buf = self.buf
        if self.pending is None:
            end = buf.find(b"\r\n\r\n", self.scan_from)
            if end < 0:
                if len(buf) > MAX_HTTP_HEADER:
                    self.on_anomaly("http.header_too_long", self.frame, self.ts)
                    self.dead = True
                self.scan_from = max(0, len(buf) - 3)
                return False
            self.scan_from = 0
            parsed = _head(bytes(buf[:end]))
            if parsed is None:
                self.on_anomaly("http.bad_start_line", self.frame, self.ts)
                self.dead = True
                return False
            start, headers = parsed
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            clen = 0
            if not chunked:
                length = content_length(headers.get("content-length"))
                if length is None:
                    # RFC 9112 6.3: where the message ends is unknown, and so is where the
                    # next one starts (int() took "+5", "1_0" and " 5 " as numbers)
                    self.on_anomaly("http.bad_content_length", self.frame, self.ts)
                    self.dead = True
                    return False
                clen = length
                if clen > MAX_HTTP_BODY:
                    self.on_anomaly("http.body_too_long", self.frame, self.ts)
                    self.dead = True
                    return False
            self.pending = [start, headers, end + 4, chunked, clen, bytearray()]
        start, headers, pos, chunked, clen, out = self.pending
        if chunked:
            while True:
                le = buf.find(b"\r\n", pos)
                if le < 0:
                    self.pending[2] = pos
                    return False
                size = chunk_size(bytes(buf[pos:le]))
                if size is None:
                    self.on_anomaly("http.bad_chunk", self.frame, self.ts)
                    self.dead = True
                    return False
                if size > MAX_HTTP_BODY:
                    self.on_anomaly("http.body_too_long", self.frame, self.ts)
                    self.dead = True
                    return False
                if size == 0:
                    tr = buf.find(b"\r\n", le + 2)
                    if tr < 0:
                        self.pending[2] = pos       # the last chunk's line, read again
                        return False
                    pos = tr + 2
                    break
                if len(buf) < le + 2 + size + 2:
                    self.pending[2] = pos
                    return False
                out += buf[le + 2:le + 2 + size]
                pos = le + 2 + size + 2
            body = bytes(out)
        else:
            if len(buf) < pos + clen:
                return False
            body = bytes(buf[pos:pos + clen])
            pos += clen
        self.pending = None
        del buf[:pos]
        msg = HttpMessage(start, headers, body, self.frame, self.ts)
        if start.startswith("HTTP/1.1 101") or start.startswith("HTTP/1.0 101"):
            self.upgraded = True
        elif (not start.startswith("HTTP/") and "websocket" in headers.get("upgrade", "").lower()):
            self.upgraded = True
        self.on_message(msg)
        return True


class WebSocketFramer(_Holder):
    """RFC 6455 frames: unmasks client frames, joins fragments, emits text/binary messages.

    Messages compressed with permessage-deflate (RFC 7692: RSV1 set on a message's first
    frame; what browsers offer and many servers accept) are inflated with zlib, one
    decompressor per direction kept across messages (context takeover; a sender that
    resets its context between messages decodes alike), the output capped at
    MAX_WS_MESSAGE."""

    __slots__ = ("buf", "on_message", "on_anomaly", "parts", "dead", "compressed", "inflater")

    def __init__(self, on_message: OnMessage, on_anomaly: OnAnomaly,
                 budget: Budget | None = None) -> None:
        super().__init__(budget)
        self.buf = bytearray()
        self.on_message = on_message
        self.on_anomaly = on_anomaly
        self.parts = bytearray()
        self.dead = False
        self.compressed = False         # the message being joined has RSV1 set
        self.inflater: Any = None       # zlib decompressor (raw deflate), made when first needed

    def feed(self, data: bytes, frame: int, ts: float, gap: bool = False) -> None:
        self._feed(data, frame, ts, gap)
        if self.dead:
            self.buf.clear()
            self.parts.clear()
        n = len(self.buf) + len(self.parts)
        if n != self.held and not self._hold(n):
            self.buf.clear()            # no memory left to hold the message: given up on
            self.parts.clear()
            self.dead = True
            self._hold(0)

    def _feed(self, data: bytes, frame: int, ts: float, gap: bool) -> None:
        if self.dead:
            return
        if gap:
            self.on_anomaly("websocket.gap", frame, ts)
            self.dead = True
            return
        self.buf += data
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            fin, opcode, masked, ln = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            pos = 2
            if ln == 126:
                if len(self.buf) < 4:
                    return
                ln = int.from_bytes(self.buf[2:4], "big")
                pos = 4
            elif ln == 127:
                if len(self.buf) < 10:
                    return
                ln = int.from_bytes(self.buf[2:10], "big")
                pos = 10
            if ln > MAX_WS_MESSAGE:
                self.on_anomaly("websocket.frame_too_long", frame, ts)
                self.dead = True
                self.buf.clear()
                return
            key = b""
            if masked:
                if len(self.buf) < pos + 4:
                    return
                key = bytes(self.buf[pos:pos + 4])
                pos += 4
            if len(self.buf) < pos + ln:
                return
            payload = bytes(self.buf[pos:pos + ln])
            del self.buf[:pos + ln]
            if key:
                payload = _unmask(payload, key)
            if opcode >= 8:          # control frames
                continue
            if opcode != 0:          # a message's first frame: RSV1 says it is compressed
                self.compressed = bool(b0 & 0x40)
            self.parts += payload
            if len(self.parts) > MAX_WS_MESSAGE:
                self.on_anomaly("websocket.message_too_long", frame, ts)
                self.parts.clear()
                continue
            if fin:
                msg = bytes(self.parts)
                self.parts.clear()
                if self.compressed:
                    inflated = self._inflate(msg, frame, ts)
                    if inflated is None:
                        return
                    msg = inflated
                self.on_message(msg, frame, ts)

    def _inflate(self, msg: bytes, frame: int, ts: float) -> bytes | None:
        if self.inflater is None:
            self.inflater = zlib.decompressobj(-15)
        d = self.inflater
        try:
            out: bytes = d.decompress(msg + b"\x00\x00\xff\xff", MAX_WS_MESSAGE)
        except zlib.error:
            self.on_anomaly("websocket.bad_deflate", frame, ts)
            self.dead = True            # the shared context is lost with it
            return None
        if d.unconsumed_tail:
            self.on_anomaly("websocket.message_too_long", frame, ts)
            self.dead = True
            return None
        return out


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
