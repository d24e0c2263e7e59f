"""Mirror-port duplicates: the same packet captured twice.

A SPAN session that mirrors both directions of a port, or both ports of a link, hands
the sensor each packet twice (a few microseconds apart; through a router the second
copy has its TTL one lower, other MAC addresses, maybe another VLAN tag; through
ERSPAN or VXLAN another carrier). Counted twice, every packet and byte total of a host
doubles, and with it the pool-bound traffic a report gives.

A TCP segment is a duplicate when an earlier one with the same *key* was captured at
most WINDOW_FRAMES frames and WINDOW_S seconds before it. The key covers what a copy
keeps and a retransmission changes: both endpoints, the IPv4 identification (IPv6
flow label), the IP length, the sequence and acknowledgement numbers, the flags and
the checksum (which sums the payload). It leaves out what a router or the mirror
changes: the link layer, tunnels around the packet, TTL/hop limit, the IP checksum.
A retransmission mostly carries a new identification or new TCP timestamps; one
within WINDOW_S that carries neither is taken for a copy (reassembly would have
discarded its bytes anyway: only the host's packet and byte counters and
stats.retransmitted_bytes differ).

Some segments have no key (never duplicates): a segment without payload (ACK, SYN,
FIN, RST) with IPv4 identification 0 or over IPv6, since a stack's duplicate ACKs,
its resets to a closed port and a SYN-ACK answering each retransmitted SYN are such
identical packets, and real (13% of the packets of the public ndpi ethereum capture
are identical resets, 5 ms apart; ndpi tls_port_80 repeats a SYN-ACK); and UDP,
whose checksum may be 0 or, captured on the sender with checksum offload, a constant
that does not sum the payload (distinct QUIC packets of the public quic-v2 capture
share every other field). DNS over UDP, the one UDP protocol the scanner reads, is
deduplicated by message instead (:class:`DnsCopies`).

The batch path computes keys in C (``_fastpath.parse_headers``, column ``dupkey``) or
numpy; :func:`dup_key` is the reference, from a packet the per-packet decoder decoded.
Both paths mark duplicates with :class:`Dedup`, one block at a time, with the same
answer whatever the block boundaries."""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any

import numpy as np

from poolsniff.hashing import HASH_K1 as K1, HASH_K2 as K2, HASH_K3 as K3, endpoint_hash
from poolsniff.model import Segment

WINDOW_FRAMES = 4096        # a copy comes at most this many frames after its original
WINDOW_S = 0.05             # and at most this long after it

K4, K5 = 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD
_M64 = (1 << 64) - 1
_H = struct.Struct("!H")
_I = struct.Struct("!I")
_TCP_NUMS = struct.Struct("!II")


def dup_key(seg: Segment, buf: bytes, ip: int, l4: int) -> int:
    """The duplicate key (unsigned 64 bits; 0: none) of a decoded packet whose IP header
    starts at ``ip`` and transport header at ``l4`` in ``buf`` (-1: a datagram reassembled
    from fragments, which has no key: its copies are counted twice)."""
    if seg.proto != 6 or ip < 0:
        return 0
    if seg.version == 6:
        ident = _I.unpack_from(buf, ip)[0] & 0xFFFFF
    else:
        ident = _H.unpack_from(buf, ip + 4)[0]
    if not (seg.payload or seg.missing or (ident and seg.version == 4)):
        return 0
    seq, ack = _TCP_NUMS.unpack_from(buf, l4 + 4)
    csum = _H.unpack_from(buf, l4 + 16)[0]
    w1 = (ident << 24) | seg.wirelen
    w2 = (seq << 32) | ack
    w3 = (csum << 8) | seg.flags
    return ((endpoint_hash(seg.src, seg.sport) * K1) ^ (endpoint_hash(seg.dst, seg.dport) * K2)
            ^ (w1 * K3) ^ (w2 * K4) ^ (w3 * K5)) & _M64


def keys_numpy(tcp: np.ndarray, v6: np.ndarray, ea: np.ndarray, eb: np.ndarray,
               ident: np.ndarray, wirelen: np.ndarray, data: np.ndarray, seq: np.ndarray,
               ack: np.ndarray, csum: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """:func:`dup_key` over columns (uint64 arithmetic wraps as the reference masks;
    ``data``: the segment carries payload, captured or not)."""
    u = np.uint64
    w1 = (ident.astype(u) << u(24)) | wirelen.astype(u)
    w2 = (seq.astype(u) << u(32)) | ack.astype(u)
    w3 = (csum.astype(u) << u(8)) | flags.astype(u)
    with np.errstate(over="ignore"):
        key = ((ea.astype(u) * u(K1)) ^ (eb.astype(u) * u(K2)) ^ (w1 * u(K3))
               ^ (w2 * u(K4)) ^ (w3 * u(K5)))
    keyed = tcp & (data | ((ident != 0) & ~v6))
    return np.where(keyed, key, u(0))


class Dedup:
    """Marks duplicates block by block. The packets of the last WINDOW_FRAMES frames are
    kept (frame, time, key) so a copy in the next block still meets its original."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new capture file: its frame numbers start again."""
        self.frames = np.empty(0, np.int64)
        self.ts = np.empty(0, np.float64)
        self.keys = np.empty(0, np.uint64)

    def mark(self, frames: np.ndarray, ts: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Which of a block's records are duplicates (``keys``: 0 where a record has none).
        ``frames`` rise through the block and from block to block."""
        n = len(frames)
        out = np.zeros(n, bool)
        if n == 0:
            return out
        sel = np.flatnonzero(keys)
        old = len(self.frames)
        f = np.concatenate((self.frames, frames[sel]))
        t = np.concatenate((self.ts, ts[sel]))
        k = np.concatenate((self.keys, keys[sel].astype(np.uint64)))
        if len(k) > 1:
            order = np.argsort(k, kind="stable")    # equal keys stay in capture order
            ks = k[order]
            same = np.flatnonzero(ks[1:] == ks[:-1])
            if len(same):
                prev, cur = order[same], order[same + 1]
                dup = (f[cur] - f[prev] <= WINDOW_FRAMES) & (np.abs(t[cur] - t[prev]) <= WINDOW_S)
                cur = cur[dup]
                out[sel[cur[cur >= old] - old]] = True
        keep = f > int(frames[-1]) - WINDOW_FRAMES
        self.frames, self.ts, self.keys = f[keep], t[keep], k[keep]
        return out


class DnsCopies:
    """Mirror-port copies of DNS messages over UDP (UDP packets have no packet key): the
    same message -- endpoints, ports, IPv4 identification and every byte -- again within
    WINDOW_FRAMES frames and WINDOW_S seconds of the last time it was seen is a copy. A
    stub resolver retries a query after a timeout (hundreds of milliseconds at the least);
    a host that sends one mDNS query twice at once sends two IPv4 identifications (nDPI's
    wechat capture); neither is taken for a copy. Holds at most the messages of the last
    WINDOW_FRAMES frames."""

    def __init__(self) -> None:
        self.recent: OrderedDict[tuple[Any, ...], tuple[int, float]] = OrderedDict()

    def reset(self) -> None:
        """A new capture file: its frame numbers start again."""
        self.recent.clear()

    def copy(self, seg: Segment) -> bool:
        recent = self.recent
        key = (seg.src, seg.dst, seg.sport, seg.dport, seg.ident, seg.payload)
        prev = recent.pop(key, None)
        recent[key] = (seg.frame, seg.ts)
        if len(recent) > WINDOW_FRAMES + 1:
            # a frame carries one message at most: what is older than the window goes (an
            # entry outside the window left in place is never taken for a copy's original)
            while next(iter(recent.values()))[0] < seg.frame - WINDOW_FRAMES:
                recent.popitem(last=False)
        return prev is not None and seg.frame - prev[0] <= WINDOW_FRAMES \
            and abs(seg.ts - prev[1]) <= WINDOW_S
