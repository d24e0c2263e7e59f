"""TCP byte-stream reassembly for one direction of a flow.

Good enough for line-delimited JSON: in-order delivery by sequence number,
retransmissions and overlaps trimmed (first copy wins, as in most IDS default
policies), out-of-order segments held back within a bounded buffer, and a gap
that never fills is skipped (the consumer is told, so it can re-synchronise on
the next newline). Sessions picked up mid-stream start at the first segment seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

MAX_OOO_BYTES = 256 * 1024     # held-back out-of-order bytes per direction
MAX_OOO_SEGMENTS = 256
MAX_WINDOW = 16 * 1024 * 1024  # a segment further ahead than this is not ours
MIDSTREAM_HOLD = 4             # segments held before choosing where a mid-stream flow starts

#: deliver(data, frame, ts, gap_before)
Deliver = Callable[[bytes, int, float, bool], None]


def _seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (signed)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


TAIL = 64    # delivered bytes kept per direction to check retransmissions against


class Budget:
    """The bytes one Scanner holds back, over all its flows (segments waiting for a hole to
    fill, partial lines and messages in the framers, an unfinished TLS ClientHello), against
    a cap: the reassembly memcap. Each flow's own holdings are bounded, but a flow cap's worth
    of flows each holding its bound is tens of GB; at the cap, what would be held is refused
    (and counted) instead. Suricata's stream.reassembly.memcap is the same knob."""

    __slots__ = ("cap", "used", "refused")

    def __init__(self, cap: float = math.inf) -> None:
        self.cap = cap
        self.used = 0
        self.refused = 0          # times something was not held for want of budget

    def take(self, n: int) -> bool:
        """Account n more bytes held, if the cap allows (else count a refusal)."""
        if self.used + n > self.cap:
            self.refused += 1
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n

    def change(self, held: int, n: int) -> bool:
        """A holding of ``held`` bytes is now ``n``: account the difference; False (a refusal
        counted, nothing changed) when the growth does not fit."""
        if n > held:
            return self.take(n - held)
        self.used -= held - n
        return True


class HalfStream:
    """Reassembles one direction; calls ``deliver`` with contiguous bytes."""

    __slots__ = ("next_seq", "ooo", "ooo_bytes", "deliver", "gaps", "retrans_bytes", "overlap_diff", "last",
                 "midstream", "budget")

    def __init__(self, deliver: Deliver, budget: Budget | None = None) -> None:
        self.budget = budget if budget is not None else Budget()
        self.next_seq: int | None = None
        self.ooo: dict[int, tuple[bytes, int, float]] = {}
        self.ooo_bytes = 0
        self.deliver = deliver
        self.gaps = 0
        self.retrans_bytes = 0
        self.overlap_diff = 0          # retransmitted bytes that differ from what was delivered
        self.last = b""                # the last segment delivered (to compare overlaps with)
        self.midstream = False

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) & 0xFFFFFFFF

    def segment(self, seq: int, data: bytes, frame: int, ts: float, missing: int = 0) -> None:
        """Add a segment; ``missing`` bytes after ``data`` were cut off by the capture."""
        if seq == self.next_seq and data and not missing and not self.ooo:
            # the common case, in order with nothing held back: what the d == 0 case below
            # does, without its calls (nothing the delivery does reads next_seq)
            self.last = data[-TAIL:] if len(data) > TAIL else data
            self.next_seq = (seq + len(data)) & 0xFFFFFFFF
            self.deliver(data, frame, ts, False)
            return
        if missing > 0:
            self.truncated(seq, data, frame, ts, missing)
            return
        if not data:
            return
        if self.next_seq is None:
            # picked up mid-stream: hold the first segments, then start at the lowest
            # sequence number among them (they may have arrived out of order)
            self.midstream = True
            if not self._hold(seq, data, frame, ts):
                return
            if len(self.ooo) >= MIDSTREAM_HOLD:
                self._start_midstream()
            return
        d = _seq_diff(seq, self.next_seq)
        if d == -1 and len(data) == 1:
            # a TCP keep-alive (RFC 1122 4.2.3.6: one byte of garbage, or none, one below the
            # next sequence number; Windows sends the byte): not data, not a retransmission,
            # and its byte differing from what was delivered is no evasion attempt
            return
        if d < 0:
            skip = -d
            if self.last:
                # what it repeats must be what was delivered (first copy wins; a different
                # copy is an evasion attempt or corruption, counted). Only the last TAIL
                # delivered bytes are kept: what overlaps them is compared.
                last = self.last
                if skip <= len(data):               # it reaches next_seq, as last does
                    k = min(skip, len(last))
                    region, ref = data[skip - k:skip], last[len(last) - k:]
                elif skip <= len(last):             # old bytes, all inside the kept tail
                    at = len(last) - skip
                    region, ref = data, last[at:at + len(data)]
                else:
                    region = ref = b""
                if region != ref:
                    self.overlap_diff += 1
            if skip >= len(data):
                self.retrans_bytes += len(data)
                return
            self.retrans_bytes += skip
            data = data[skip:]
            seq = self.next_seq
            d = 0
        if d == 0:
            self._emit(data, frame, ts, False)
            self.next_seq = (seq + len(data)) & 0xFFFFFFFF
            self._drain()
            return
        if d > MAX_WINDOW:
            return
        old = self.ooo.get(seq)
        if old is not None and old[0][:len(data)] != data[:len(old[0])]:
            self.overlap_diff += 1
        if old is not None and len(old[0]) >= len(data):
            self.retrans_bytes += len(data)
            return
        if not self.budget.take(len(data)):
            return                  # no memory left to hold it: as if it never arrived
        if old is not None:                 # replaced in place (the dict's order is read)
            self.ooo_bytes -= len(old[0])
            self.budget.give(len(old[0]))
        self.ooo[seq] = (data, frame, ts)
        self.ooo_bytes += len(data)
        if self.ooo_bytes > MAX_OOO_BYTES or len(self.ooo) > MAX_OOO_SEGMENTS:
            self._skip_gap()

    def truncated(self, seq: int, data: bytes, frame: int, ts: float, missing: int) -> None:
        """A snaplen-cut segment: deliver what was captured, then skip what was not."""
        self.release_held()
        if self.next_seq is None:
            self.next_seq = seq
            self.midstream = True
        d = _seq_diff(seq, self.next_seq)
        if d < 0:                                  # overlaps what we have: keep the new part
            skip = -d
            if skip >= len(data) + missing:
                return
            cut = min(skip, len(data))
            data, missing, seq = data[cut:], missing - (skip - cut), self.next_seq
            d = 0
        gap = d > 0
        if gap:
            # bytes before this segment never arrived: give up on them (and on what is held)
            self.flush()
            self.gaps += 1
        if data:
            self._emit(data, frame, ts, gap)
        self.gaps += 1
        self.next_seq = (seq + len(data) + missing) & 0xFFFFFFFF
        self._emit(b"", frame, ts, True)           # tell the framer bytes are missing
        self._drain()

    def release_held(self) -> None:
        """The other direction spoke: stop holding mid-stream segments (keeps request order)."""
        if self.next_seq is None and self.ooo:
            self._start_midstream()

    def _hold(self, seq: int, data: bytes, frame: int, ts: float) -> bool:
        """Hold a segment back (False: the budget refused it)."""
        if not self.budget.take(len(data)):
            return False
        self.ooo[seq] = (data, frame, ts)
        self.ooo_bytes += len(data)
        return True

    def _take(self, seq: int) -> tuple[bytes, int, float]:
        """A held segment, no longer held."""
        item = self.ooo.pop(seq)
        self.ooo_bytes -= len(item[0])
        self.budget.give(len(item[0]))
        return item

    def _start_midstream(self) -> None:
        ref = next(iter(self.ooo))
        first = min(self.ooo, key=lambda s: _seq_diff(s, ref))
        data, frame, ts = self._take(first)
        self._emit(data, frame, ts, True)
        self.next_seq = (first + len(data)) & 0xFFFFFFFF
        self._drain()

    def _emit(self, data: bytes, frame: int, ts: float, gap: bool) -> None:
        if data:
            self.last = data[-TAIL:] if len(data) > TAIL else data
        self.deliver(data, frame, ts, gap)

    def _drain(self) -> None:
        while self.ooo:
            nxt = self.next_seq
            hit = self._take(nxt) if nxt is not None and nxt in self.ooo else None
            if hit is None:
                # an overlapping held-back segment that starts before next_seq
                best = None
                for s in self.ooo:
                    d = _seq_diff(s, nxt)  # type: ignore[arg-type]
                    if d < 0:
                        best = s
                        break
                if best is None:
                    return
                data, frame, ts = self._take(best)
                skip = -_seq_diff(best, nxt)  # type: ignore[arg-type]
                if skip < len(data):
                    self._emit(data[skip:], frame, ts, False)
                    self.next_seq = (nxt + len(data) - skip) & 0xFFFFFFFF  # type: ignore[operator]
                continue
            data, frame, ts = hit
            self._emit(data, frame, ts, False)
            self.next_seq = (nxt + len(data)) & 0xFFFFFFFF  # type: ignore[operator]

    def _skip_gap(self) -> None:
        """Give up on missing bytes: jump to the earliest held-back segment."""
        if not self.ooo or self.next_seq is None:
            return
        base = self.next_seq
        first = min(self.ooo, key=lambda s: _seq_diff(s, base))
        data, frame, ts = self._take(first)
        self.gaps += 1
        self._emit(data, frame, ts, True)
        self.next_seq = (first + len(data)) & 0xFFFFFFFF
        self._drain()

    def flush(self) -> None:
        """End of capture or flow: deliver what is held back, skipping holes."""
        if self.next_seq is None and self.ooo:
            self._start_midstream()
        while self.ooo:
            self._skip_gap()

    def release(self) -> None:
        if self.ooo_bytes:
            self.budget.give(self.ooo_bytes)
        self.ooo.clear()
        self.ooo_bytes = 0
