"""Proxy handshakes at the start of a TCP connection: SOCKS5 (RFC 1928, with RFC 1929
user/password), SOCKS4 and SOCKS4a, and HTTP CONNECT (RFC 9110 §9.3.6).

A miner told to use a proxy (``xmrig --proxy``, a corporate HTTP proxy, a SOCKS hop on
the LAN) opens its pool session inside one of these: the pool's host name is in the
client's request, and after the proxy's success reply the rest of each direction is the
pool session itself, to be recognised like any other stream. This module only parses the
opening (sans-IO, bounded, never raises); the pipeline decides what the names mean.
"""

from __future__ import annotations

import socket
import struct

MAX_HANDSHAKE = 4096        # bytes buffered per direction before the tunnel opens

SOCKS5 = "SOCKS5"
SOCKS4 = "SOCKS4"
CONNECT = "HTTP CONNECT"

MORE, OPEN, FAIL = "more", "open", "fail"


def proxy_kind(data: bytes) -> str | None:
    """The proxy protocol a client's first bytes open, if any."""
    if len(data) >= 3 and data[0] == 5 and 1 <= data[1] <= 8 \
            and all(m in (0, 1, 2) for m in data[2:2 + data[1]]):
        return SOCKS5                       # greeting: version, methods offered
    if len(data) >= 9 and data[0] == 4 and data[1] == 1:
        return SOCKS4                       # CONNECT request
    if data[:8] == b"CONNECT ":
        return CONNECT
    return None


class ProxyHandshake:
    """Both directions of a proxy's opening, buffered until the tunnel is open or fails.

    ``feed(from_client, data, frame, ts)`` returns MORE, OPEN or FAIL. Once OPEN, ``host``
    and ``port`` are the destination the client asked for, ``request_frame`` the frame
    that carried the request, and ``rest`` the bytes after the handshake on each side
    (with the frame and time of the segment that carried them), client side first.
    """

    __slots__ = ("kind", "buf", "at", "host", "port", "request_frame", "method", "rest", "held")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.buf = [b"", b""]               # server, client (indexed by from_client)
        self.at: list[tuple[int, float]] = [(0, 0.0), (0, 0.0)]    # last segment per side
        self.host: str | None = None
        self.port = 0
        self.request_frame = 0
        self.method: int | None = None      # SOCKS5: the authentication the server chose
        self.rest: list[tuple[bool, bytes, int, float]] = []
        self.held = 0                       # of buffered(), what the owner has accounted for

    def buffered(self) -> int:
        """Bytes held for the opening so far (both sides)."""
        return len(self.buf[0]) + len(self.buf[1])

    def feed(self, from_client: bool, data: bytes, frame: int, ts: float) -> str:
        i = int(from_client)
        self.buf[i] += data
        self.at[i] = (frame, ts)
        if len(self.buf[i]) > MAX_HANDSHAKE:
            return FAIL
        if self.kind == SOCKS5:
            return self._socks5()
        if self.kind == SOCKS4:
            return self._socks4()
        return self._connect()

    # -- SOCKS5 ------------------------------------------------------------------------
    def _socks5(self) -> str:
        c, s = self.buf[1], self.buf[0]
        # client: greeting [5, n, methods]; server: [5, method]
        if len(c) < 2 or len(c) < 2 + c[1]:
            return MORE
        cp = 2 + c[1]
        if len(s) < 2:
            return MORE
        if s[0] != 5 or s[1] not in (0, 2) or s[1] not in c[2:cp]:
            return FAIL                     # 0xFF: no acceptable method
        sp = 2
        self.method = s[1]
        if s[1] == 2:                       # RFC 1929: [1, ulen, user, plen, pass] -> [1, status]
            if len(c) < cp + 2 or len(c) < cp + 2 + c[cp + 1] + 1:
                return MORE
            pl = cp + 2 + c[cp + 1]
            if len(c) < pl + 1 + c[pl]:
                return MORE
            if c[cp] != 1:
                return FAIL
            cp = pl + 1 + c[pl]
            if len(s) < 4:
                return MORE
            if s[3] != 0:
                return FAIL
            sp = 4
        # client request [5, 1 (CONNECT), 0, atyp, addr, port]
        if len(c) < cp + 4:
            return MORE
        if c[cp] != 5 or c[cp + 1] != 1:
            return FAIL
        dest = _socks5_address(c, cp + 3)
        if dest is None:
            return FAIL
        host, port, end = dest
        if end is None:
            return MORE
        self._asked(host, port)
        # server reply [5, status, 0, atyp, addr, port]
        if len(s) < sp + 4:
            return MORE
        reply = _socks5_address(s, sp + 3)
        if s[sp] != 5 or s[sp + 1] != 0 or reply is None:
            return FAIL
        if reply[2] is None:
            return MORE
        return self._open(end, reply[2])

    # -- SOCKS4 / 4a -------------------------------------------------------------------
    def _socks4(self) -> str:
        c, s = self.buf[1], self.buf[0]
        user_end = c.find(b"\x00", 8)
        if user_end < 0:
            return MORE
        port = struct.unpack_from("!H", c, 2)[0]
        ip = c[4:8]
        end = user_end + 1
        if ip[:3] == b"\x00\x00\x00" and ip[3] != 0:        # 4a: the name follows the user id
            name_end = c.find(b"\x00", end)
            if name_end < 0:
                return MORE
            host = c[end:name_end].decode("ascii", "replace")
            end = name_end + 1
        else:
            host = socket.inet_ntop(socket.AF_INET, ip)
        self._asked(host, port)
        if len(s) < 8:
            return MORE
        if s[0] != 0 or s[1] != 0x5A:
            return FAIL                     # 0x5B-0x5D: rejected
        return self._open(end, 8)

    # -- HTTP CONNECT ------------------------------------------------------------------
    def _connect(self) -> str:
        c, s = self.buf[1], self.buf[0]
        cend = c.find(b"\r\n\r\n")
        if cend < 0:
            return MORE
        parts = c[:c.find(b"\r\n")].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return FAIL
        target = parts[1].decode("ascii", "replace")
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit():
            return FAIL
        self._asked(host.strip("[]"), int(port))
        send = s.find(b"\r\n\r\n")
        if send < 0:
            return MORE
        status = s[:s.find(b"\r\n")].split(b" ")
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].startswith(b"2"):
            return FAIL
        return self._open(cend + 4, send + 4)

    def _asked(self, host: str | None, port: int) -> None:
        if self.host is None:
            self.host, self.port = host, port
            self.request_frame = self.at[1][0]

    def _open(self, client_end: int, server_end: int) -> str:
        for from_client, end in ((True, client_end), (False, server_end)):
            rest = self.buf[int(from_client)][end:]
            if rest:
                frame, ts = self.at[int(from_client)]
                self.rest.append((from_client, rest, frame, ts))
        self.buf = [b"", b""]
        return OPEN


def _socks5_address(b: bytes, at: int) -> tuple[str | None, int, int | None] | None:
    """(host, port, end) of a SOCKS5 address at ``at`` (the ATYP byte); end None: more bytes
    needed; None: not an address type."""
    if len(b) <= at:
        return (None, 0, None)
    atyp = b[at]
    if atyp == 1:
        n, start = 4, at + 1
    elif atyp == 4:
        n, start = 16, at + 1
    elif atyp == 3:
        if len(b) <= at + 1:
            return (None, 0, None)
        n, start = b[at + 1], at + 2
    else:
        return None
    end = start + n + 2
    if len(b) < end:
        return (None, 0, None)
    raw = b[start:start + n]
    port = struct.unpack_from("!H", b, start + n)[0]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, raw)
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, raw)
    else:
        host = raw.decode("ascii", "replace")
    return host, port, end
