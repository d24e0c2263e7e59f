"""DNS over TCP (RFC 7766): the messages of port-53 TCP streams, for pool-name learning.

A resolver retries a truncated answer over TCP, and some forward every query over TCP; a
pool address learned only there would otherwise be missed. Every port-53 TCP segment
comes here (in every --jobs part, as every part sees every UDP DNS answer), beside the
flow table: a Stratum session on port 53 is still a flow like any other.

Each direction is reassembled in order only (DNS answers are a segment or two; a gap or
an out-of-order segment restarts the stream at the next segment) and split on the
two-byte length prefix. Bounded: MAX_STREAMS directions (least recently used dropped),
MAX_MESSAGE bytes a message (a longer length prefix is not DNS: the stream is dropped).
Deterministic in the packets' order, so the batch and per-packet paths, and every part,
read the same messages."""

from __future__ import annotations

from collections import OrderedDict

from poolsniff.model import Segment

MAX_STREAMS = 1024
MAX_MESSAGE = 16 * 1024
_SYN, _FIN, _RST = 0x02, 0x01, 0x04


class _Direction:
    __slots__ = ("next_seq", "buf")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.buf = bytearray()


class DnsOverTcp:
    def __init__(self) -> None:
        self.streams: OrderedDict[tuple[bytes, int, bytes, int], _Direction] = OrderedDict()

    def segment(self, seg: Segment) -> list[bytes]:
        """The DNS messages this segment completes. Only segments with payload, SYN, FIN or
        RST change anything (the batch path hands over no others)."""
        if not (seg.payload or seg.missing or seg.flags & (_SYN | _FIN | _RST)):
            return []
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        streams = self.streams
        st = streams.get(key)
        seq = seg.seq
        if seg.flags & _SYN:
            seq = (seq + 1) & 0xFFFFFFFF            # data in a SYN starts after it
            st = None
        data = seg.payload
        if data and st is not None and st.next_seq != seq:
            d = (seq - st.next_seq) & 0xFFFFFFFF
            d = d - 0x100000000 if d >= 0x80000000 else d
            if d < 0 and len(data) <= -d:
                data = b""                          # a retransmission
            elif d < 0:
                data = data[-d:]                    # overlaps what was read: the new part
                seq = st.next_seq
            else:
                st = None                           # bytes missing: start again here
        if st is None and (seg.flags & _SYN or data):
            st = streams[key] = _Direction(seq)
            if len(streams) > MAX_STREAMS:
                streams.popitem(last=False)
        if st is None:
            return []
        streams.move_to_end(key)
        out: list[bytes] = []
        if data:
            st.buf += data
            st.next_seq = (seq + len(data) + seg.missing) & 0xFFFFFFFF
            buf = st.buf
            while len(buf) >= 2:
                n = (buf[0] << 8) | buf[1]
                if n < 12 or n > MAX_MESSAGE:       # not a DNS message's length
                    del streams[key]
                    return out
                if len(buf) < 2 + n:
                    break
                out.append(bytes(buf[2:2 + n]))
                del buf[:2 + n]
            if seg.missing:
                buf.clear()                         # the capture cut the rest off
        if seg.flags & (_FIN | _RST):
            streams.pop(key, None)
        return out
