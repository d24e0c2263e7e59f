"""Short hypothesis properties (CI budget): hostile bytes never raise and stay bounded.

The long fuzz run belongs to issue 6; these keep every parser honest on every commit.
"""

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolsniff import dialects
from poolsniff.decode import DecodeStats, decode
from poolsniff.framing import MAX_LINE_BYTES, HttpFramer, LineFramer, WebSocketFramer, parse_json
from poolsniff.protocols import client_hello_sni, parse_dns
from poolsniff.stream import MAX_OOO_BYTES, HalfStream

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.binary(max_size=2000), max_size=20))
def test_line_framer_bounded(chunks):
    fr = LineFramer(lambda *a: None, lambda *a: None)
    for i, c in enumerate(chunks):
        fr.feed(c, i, 0.0, gap=(i % 7 == 3))
        assert len(fr.buf) <= MAX_LINE_BYTES


@FAST
@given(st.binary(max_size=4000))
def test_http_and_websocket_never_raise(data):
    HttpFramer(lambda m: None, lambda *a: None).feed(data, 1, 0.0)
    WebSocketFramer(lambda *a: None, lambda *a: None).feed(data, 1, 0.0)


@FAST
@given(st.binary(max_size=600))
def test_dns_and_tls_never_raise(data):
    parse_dns(data)
    client_hello_sni(b"\x16\x03\x01" + data)


@FAST
@given(st.integers(0, 300), st.binary(max_size=200))
def test_decode_never_raises(linktype, data):
    decode(1, 0.0, linktype, data, DecodeStats())


@FAST
@given(st.lists(st.tuples(st.integers(0, 2 ** 32 - 1), st.binary(min_size=1, max_size=3000)), max_size=60))
def test_stream_bounded(segments):
    hs = HalfStream(lambda *a: None)
    for seq, data in segments:
        hs.segment(seq, data, 1, 0.0)
        assert hs.ooo_bytes <= MAX_OOO_BYTES + 3000
    hs.flush()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=80),
                           lambda kids: st.lists(kids, max_size=8) | st.dictionaries(st.text(max_size=12), kids, max_size=8),
                           max_leaves=40)
methods = st.sampled_from(sorted(dialects.REQUESTS) + ["auth", "job", "submit", "hash_accepted", "x"])


@FAST
@given(st.lists(st.tuples(methods, json_values, json_values, st.booleans()), max_size=30))
def test_dialects_never_raise(msgs):
    s = dialects.Session()
    for method, params, mid, to_server in msgs:
        for msg in ({"id": mid if not isinstance(mid, (list, dict)) else 1, "method": method, "params": params},
                    {"type": method, "params": params},
                    {"id": 1, "result": params, "error": mid}):
            dialects.sender_role(msg)
            dialects.handle(s, msg, "toserver" if to_server else "toclient", 1, 0.0)
            parse_json(json.dumps(msg).encode())
    assert len(s.pending) <= dialects.MAX_PENDING and len(s.jobs) <= dialects.MAX_JOBS


@FAST
@given(st.binary(max_size=3000))
def test_pcap_reader_never_raises(tmp_path_factory, body):
    from poolsniff.sources.pcapfile import CaptureReader
    d = tmp_path_factory.mktemp("fz")
    for head in (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
                 struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)):
        p = d / "f.pcap"
        p.write_bytes(head + body)
        r = CaptureReader(str(p))
        for _batch in r:
            pass
        assert len(r.anomalies) <= 1


def _alarm(seconds):
    """Fail (instead of hanging the suite) if the body takes longer than ``seconds``."""
    import signal

    def boom(*_a):
        raise TimeoutError("hung")
    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


def test_negative_chunk_size_does_not_hang():
    """int(x, 16) takes a sign: a chunk size of -6 moved the parser back to the start of its
    own line, for ever. Now it is a bad chunk, and the framer gives up on the stream."""
    import signal
    events = []
    _alarm(5)
    try:
        for size in (b"-6", b"-1a", b"+5", b"5_0", b"0x5", b" ", b"\xd9\xa3"):
            fr = HttpFramer(lambda m: None, lambda e, f, t: events.append(e))
            fr.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + size
                    + b"\r\nhello\r\n0\r\n\r\n", 1, 0.0)
            assert fr.dead and events[-1] == "http.bad_chunk", size
    finally:
        signal.alarm(0)


def test_chunk_sizes():
    from poolsniff.framing import chunk_size
    assert [chunk_size(x) for x in (b"5", b"1A", b"a;name=v", b"5 ;x", b"0", b"00ff")] == \
        [5, 26, 10, 5, 0, 255]
    assert {chunk_size(x) for x in (b"-6", b"+5", b"5_0", b"0x5", b"", b"; x", b"5 5")} == {None}


def test_content_lengths():
    """RFC 9110 8.6: 1*DIGIT, or the same number repeated in a list; int() also took a sign,
    underscores and blanks inside, and raised on over 4,300 digits."""
    from poolsniff.framing import MAX_HTTP_BODY, content_length
    assert [content_length(x) for x in (None, "", "5", "0", "007", " 12 ", "5, 5", "5,5,5")] == \
        [0, 0, 5, 0, 7, 12, 5, 5]
    assert {content_length(x) for x in ("+5", "-1", "1_0", "5 5", "5,6", "5,,5", "0x5", "٥",
                                        "5a", ",", "1e3")} == {None}
    assert content_length("9" * 5000) > MAX_HTTP_BODY
    assert content_length("0" * 5000 + "42") == 42


def test_a_bad_content_length_ends_the_stream_and_says_so():
    """Where a message with an invalid length ends is unknown, so is where the next begins
    (RFC 9112 6.3): the framer gives up, with an anomaly, instead of reading the body as
    the next message's head. A valid length still frames the body, a too long one is said."""
    for value, event, bodies in ((b"+5", "http.bad_content_length", []),
                                 (b"5, 6", "http.bad_content_length", []),
                                 (b"9" * 5000, "http.body_too_long", []),
                                 (b"5, 5", None, [b"hello"]),
                                 (b"05", None, [b"hello"])):
        events, got = [], []
        fr = HttpFramer(lambda m: got.append(m.body), lambda e, f, t: events.append(e))
        fr.feed(b"POST / HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\nhello"
                + b"GET / HTTP/1.1\r\n\r\n", 1, 0.0)
        assert got[:1] == bodies and events == ([event] if event else []), value
        assert fr.dead == (event is not None) and (fr.dead or len(got) == 2)


@FAST
@given(st.lists(st.text("0123456789abcdefABCDEF-+_ ;x", max_size=6), max_size=6),
       st.binary(max_size=40))
def test_chunked_bodies_end(sizes, filler):
    """Any chunk-size lines, any bytes between them: the framer returns, within a second."""
    import signal
    body = b"".join(s.encode() + b"\r\n" + filler + b"\r\n" for s in sizes)
    _alarm(2)
    try:
        HttpFramer(lambda m: None, lambda *a: None).feed(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body, 1, 0.0)
    finally:
        signal.alarm(0)


def test_hex_numbers_are_hex_digits_only():
    """A sign, blanks, underscores or another script's digits are not hex on the wire ("-0x2"
    as a job boundary made its work per share negative)."""
    from poolsniff.dialects import hex_int, is_hex
    bad = ["-1", "0x-1", "-0x2", "+ff", " ff", "ff ", "f_f", "ff\n", "\u0663", "0x", ""]
    assert [hex_int(v) for v in bad] == [None] * len(bad)
    assert not any(is_hex(v) for v in bad)
    assert [hex_int(v) for v in ("0xff", "FF", "0X0a", "00")] == [255, 255, 10, 0]
    assert is_hex("0x" + "ab" * 32, (64,)) and not is_hex("ab" * 32, (63,))


@st.composite
def http_streams(draw):
    """Pipelined HTTP/1.1 messages, Content-Length or chunked (sometimes a bad chunk line)."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        body = draw(st.binary(max_size=60))
        head = draw(st.sampled_from([b"POST / HTTP/1.1", b"HTTP/1.1 200 OK"]))
        if draw(st.booleans()):
            cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
            parts = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)]) if b > a]
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
            if draw(st.integers(0, 9)) == 0:
                chunks += b"-4\r\n"                 # a bad chunk: the framer gives up here
            out += head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        else:
            out += head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    return out


@FAST
@given(http_streams(), st.lists(st.integers(1, 40), max_size=30))
def test_http_split_anywhere_parses_as_whole(stream, steps):
    """Fed in pieces (as segments arrive), the framer gives the messages and anomalies it
    gives for the stream fed at once: parsing as bytes come changes nothing but the cost."""
    def run(pieces):
        msgs, events = [], []
        fr = HttpFramer(lambda m: msgs.append((m.start, m.headers, m.body)),
                        lambda e, f, t: events.append(e))
        for p in pieces:
            fr.feed(p, 1, 0.0)
        return msgs, events, fr.dead
    pieces, at = [], 0
    for k in steps:
        pieces.append(stream[at:at + k])
        at += k
    pieces.append(stream[at:])
    assert run(pieces) == run([stream])


def test_a_chunked_body_a_chunk_at_a_time_is_read_once(monkeypatch):
    """8,000 one-byte chunks, one a segment: each chunk line is read once (re-reading the
    message from its start at every segment read 32 million, 40 s of CPU for one flow)."""
    from poolsniff import framing
    reads = []
    real = framing.chunk_size
    monkeypatch.setattr(framing, "chunk_size", lambda line: reads.append(1) or real(line))
    got = []
    fr = HttpFramer(lambda m: got.append(m), lambda *a: None)
    fr.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1, 0.0)
    for _ in range(8000):
        fr.feed(b"1\r\nX\r\n", 1, 0.0)
    fr.feed(b"0\r\n\r\n", 1, 0.0)
    assert [m.body for m in got] == [b"X" * 8000]
    assert len(reads) == 8001
