"""IP fragment reassembly (IPv4 and IPv6), bounded.

Fragmented datagrams reach a sensor more often than one would think: a tunnel that mirrors
full-size frames (ERSPAN, GRE, VXLAN) across a 1500-byte path fragments its outer packets,
large DNS answers come in fragments, and some links have a small MTU. Without reassembly
every such packet is lost to the flow it belongs to (the bytes of a mining session, a pool
lookup's answer).

A datagram is keyed as the standards key it: IPv4 by (source, destination, protocol,
identification) (RFC 791), IPv6 by (source, destination, identification) (RFC 8200). Its
fragments are kept until they cover it from offset 0 to the end the last fragment gives;
overlaps keep the first copy (as most IDS default policies, and as TCP reassembly here
does): an overlap with the same bytes (a mirror-port copy) costs nothing, one with other
bytes is counted (``ip.fragment_overlap_different``, the Teardrop family of evasions).

Bounded: a datagram incomplete FRAG_TIMEOUT_S (capture time) after its first fragment is
dropped, as is the oldest one when MAX_DATAGRAMS are held or MAX_HELD_BYTES are held in all;
a datagram that would exceed 65,535 bytes or needs more than MAX_PARTS fragments is dropped
on the spot. Each dropped datagram is counted (``ip.datagram_incomplete``,
``ip.datagram_too_big``, ``ip.datagram_too_many_fragments``). These are events of datagrams,
not of packets: the scanner reports them among its anomalies; each fragment that does not
complete a datagram is a packet skipped as ``ip.fragment``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Protocol

FRAG_TIMEOUT_S = 30.0           # Linux's ipfrag_time
MAX_DATAGRAMS = 4096
MAX_HELD_BYTES = 16 << 20
MAX_PARTS = 128
MAX_PAYLOAD = 65535             # the most an IPv4 total length or IPv6 payload length can say


class Counter(Protocol):
    def event(self, what: str) -> None: ...


class _Datagram:
    __slots__ = ("first_ts", "parts", "end", "held", "info")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.parts: list[tuple[int, bytes]] = []     # (offset, bytes), in arrival order
        self.end: int | None = None                  # known once the last fragment arrives
        self.held = 0
        self.info: Any = None                        # what the offset-0 fragment said


class Defragmenter:
    """Reassembles fragmented datagrams; :meth:`add` gives the payload once it is whole."""

    def __init__(self) -> None:
        self.held: OrderedDict[tuple[Any, ...], _Datagram] = OrderedDict()
        self.held_bytes = 0
        self.reassembled = 0
        self.next_expiry = -math.inf        # no datagram held: nothing to expire

    def add(self, key: tuple[Any, ...], ts: float, offset: int, more: bool, data: bytes,
            info: Any, stats: Counter) -> tuple[bytes, Any] | None:
        """One fragment (``offset`` in bytes into the datagram's payload; ``more``: more
        fragments follow; ``info``: kept from the offset-0 fragment, e.g. IPv6's next
        header). Returns (payload, info) when the datagram is complete, else None."""
        if ts > self.next_expiry:
            self._expire(ts, stats)
        d = self.held.get(key)
        if d is None:
            d = self.held[key] = _Datagram(ts)
            if len(self.held) == 1:
                self.next_expiry = ts + FRAG_TIMEOUT_S
        stop = offset + len(data)
        if stop > MAX_PAYLOAD or (not more and d.end is not None and d.end != stop):
            self._drop(key, stats, "ip.datagram_too_big" if stop > MAX_PAYLOAD
                       else "ip.fragment_overlap_different")
            return None
        if len(d.parts) >= MAX_PARTS:
            self._drop(key, stats, "ip.datagram_too_many_fragments")
            return None
        for o, b in d.parts:                # the first copy wins; other bytes are counted
            lo, hi = max(o, offset), min(o + len(b), stop)
            if lo < hi and b[lo - o:hi - o] != data[lo - offset:hi - offset]:
                stats.event("ip.fragment_overlap_different")
                break
        d.parts.append((offset, data))
        d.held += len(data)
        self.held_bytes += len(data)
        if offset == 0:
            d.info = info
        if not more:
            d.end = stop
        while len(self.held) > MAX_DATAGRAMS or self.held_bytes > MAX_HELD_BYTES:
            self._drop(next(iter(self.held)), stats, "ip.datagram_incomplete")
        end = d.end
        if end is None or key not in self.held:
            return None
        parts = sorted(d.parts, key=_offset)
        reach = 0
        for o, b in parts:                  # the common case: fragments that tile the datagram
            if o != reach:
                break
            reach += len(b)
        else:
            if reach == end:
                return self._done(key, d, b"".join([b for _o, b in parts]))
        if not _covers(parts, end):
            return None
        out = bytearray(end)
        for o, b in reversed(d.parts):      # later copies first, so the first copy wins
            if o < end:
                out[o:o + len(b)] = b[:end - o]
        return self._done(key, d, bytes(out))

    def _done(self, key: tuple[Any, ...], d: _Datagram, payload: bytes) -> tuple[bytes, Any]:
        del self.held[key]
        self.held_bytes -= d.held
        self.reassembled += 1
        return payload, d.info

    def _drop(self, key: tuple[Any, ...], stats: Counter, why: str) -> None:
        d = self.held.pop(key)
        self.held_bytes -= d.held
        stats.event(why)

    def _expire(self, now: float, stats: Counter) -> None:
        """Drop the datagrams held since before ``now - FRAG_TIMEOUT_S``, from the first held
        on, and note when the first left falls due: ``add`` looks again only after that
        (a datagram completed in between may have been the first: the next look comes no
        later than the timeout after it, and with time that never runs backwards exactly
        when the first left falls due)."""
        held = self.held
        while held:
            key, d = next(iter(held.items()))
            if now - d.first_ts <= FRAG_TIMEOUT_S:
                self.next_expiry = d.first_ts + FRAG_TIMEOUT_S
                return
            self._drop(key, stats, "ip.datagram_incomplete")
        self.next_expiry = -math.inf

    def flush(self, stats: Counter) -> None:
        """The end of the capture: what is still held never completed."""
        while self.held:
            self._drop(next(iter(self.held)), stats, "ip.datagram_incomplete")


def _offset(part: tuple[int, bytes]) -> int:
    return part[0]


def _covers(parts: list[tuple[int, bytes]], end: int) -> bool:
    """Do the parts (sorted by offset) cover [0, end)?"""
    reach = 0
    for o, b in parts:
        if o > reach:
            return False
        reach = max(reach, o + len(b))
        if reach >= end:
            return True
    return reach >= end
