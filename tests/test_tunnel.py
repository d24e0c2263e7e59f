"""Proxy openings (poolsniff/tunnel.py): any split of the bytes into segments gives the same
answer, hostile bytes never raise, and the buffers are bounded."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from poolsniff.tunnel import CONNECT, FAIL, MAX_HANDSHAKE, MORE, OPEN, SOCKS4, SOCKS5, ProxyHandshake, proxy_kind

LOGIN = b'{"id":1,"method":"login","params":{"login":"x"}}\n'
JOB = b'{"id":1,"result":{"job":{}}}\n'


def socks5(host: bytes, auth: bool) -> tuple[bytes, bytes]:
    c = bytes([5, 2, 0, 2]) if auth else bytes([5, 1, 0])
    s = bytes([5, 2 if auth else 0])
    if auth:
        c += b"\x01\x03bob\x02pw"
        s += b"\x01\x00"
    c += bytes([5, 1, 0, 3, len(host)]) + host + struct.pack("!H", 3333)
    s += b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x00"       # bound to an IPv6 address
    return c, s


OPENINGS = {
    SOCKS5: socks5(b"pool.supportxmr.com", True),
    SOCKS4: (b"\x04\x01\x0d\x05\x00\x00\x00\x07u\x00pool.supportxmr.com\x00", b"\x00\x5a\x00\x00\x00\x00\x00\x00"),
    CONNECT: (b"CONNECT pool.supportxmr.com:3333 HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"),
}


def _run(kind: str, client: bytes, server: bytes, cuts_c: list[int], cuts_s: list[int], order: list[bool]):
    """Feed both sides in chunks (cut points), interleaved as ``order`` says (the server only
    after the client's opening is on its way, as on the wire)."""
    def chunks(b: bytes, cuts: list[int]) -> list[bytes]:
        pts = sorted({0, len(b), *[c % (len(b) + 1) for c in cuts]})
        return [b[a:z] for a, z in zip(pts, pts[1:]) if z > a]
    cq, sq = chunks(client, cuts_c), chunks(server, cuts_s)
    p = ProxyHandshake(kind)
    st_ = MORE
    frame = 0
    while (cq or sq) and st_ == MORE:
        take_client = bool(cq) and (not sq or order[frame % len(order)])
        data = (cq if take_client else sq).pop(0)
        frame += 1
        st_ = p.feed(take_client, data, frame, float(frame))
    rest = {fc: b"".join(r for c, r, _, _ in p.rest if c == fc) for fc in (True, False)}
    return st_, p.host, p.port, rest[True] + b"".join(cq), rest[False] + b"".join(sq)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(OPENINGS)), cuts_c=st.lists(st.integers(0, 200), max_size=12),
       cuts_s=st.lists(st.integers(0, 200), max_size=6), order=st.lists(st.booleans(), min_size=1, max_size=8))
def test_any_segmentation_opens_the_same_tunnel(kind, cuts_c, cuts_s, order):
    client, server = OPENINGS[kind]
    assert proxy_kind(client) == kind
    got = _run(kind, client + LOGIN, server + JOB, cuts_c, cuts_s, order)
    assert got == (OPEN, "pool.supportxmr.com", 3333, LOGIN, JOB)


@settings(max_examples=500, deadline=None)
@given(kind=st.sampled_from(sorted(OPENINGS)), c=st.binary(max_size=300), s=st.binary(max_size=300),
       flip=st.integers(0, 299))
def test_hostile_bytes_never_raise(kind, c, s, flip):
    client, server = OPENINGS[kind]
    for cb, sb in ((c, s), (client[:flip] + c, server), (client, server[:flip % (len(server) + 1)] + s)):
        p = ProxyHandshake(kind)
        for fc, data in ((True, cb), (False, sb)):
            assert p.feed(fc, data, 1, 1.0) in (MORE, OPEN, FAIL)


def test_refusals_and_floods_fail():
    c, s = OPENINGS[SOCKS5]
    refused = s[:4] + b"\x05\x05" + s[6:]                      # reply 5: connection refused
    p = ProxyHandshake(SOCKS5)
    p.feed(True, c, 1, 0.0)
    assert p.feed(False, refused, 2, 0.0) == FAIL and p.host == "pool.supportxmr.com"
    p = ProxyHandshake(SOCKS5)
    assert p.feed(True, c, 1, 0.0) == MORE
    assert p.feed(False, b"\x05\xff", 2, 0.0) == FAIL             # no acceptable method
    p = ProxyHandshake(CONNECT)
    p.feed(True, OPENINGS[CONNECT][0], 1, 0.0)
    assert p.feed(False, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 2, 0.0) == FAIL
    p = ProxyHandshake(CONNECT)
    assert p.feed(True, b"CONNECT " + b"a" * (MAX_HANDSHAKE + 1), 1, 0.0) == FAIL
    assert proxy_kind(b"\x05\x01\x07") is None and proxy_kind(b'{"id":1}') is None
