"""Evidence: what a flow showed (``FlowRecord``) folded into per-host records
(``HostEvidence``) that merge: counts and sums add, times take min/max, sets
unite (capped, with a count of what did not fit), evidence lists keep the
earliest entries. Two scans of two files merge into the answer of one scan of
both, which is what makes long watches, restarts and scale-out correct.
"""

from __future__ import annotations

import base64
import functools
import math
import sys
from array import array
from bisect import bisect_left, insort
from hashlib import blake2b
from collections.abc import Iterable
from typing import Any

from poolsniff.coins import find_wallets
from poolsniff.estimate import SCRYPT_COINS, hashrate_ci, work_factor
from poolsniff.model import TOSERVER, Observation

MAX_SET = 100            # workers, wallets, agents, pools kept per host
MAX_EVIDENCE = 40        # evidence entries kept per host (earliest)
MAX_FLOW_EVIDENCE = 12   # evidence entries kept per flow
VERDICTS = {"none": 0, "suspect": 1, "mining": 2}

#: default coin of an algorithm when nothing else tells
ALGO_COIN = {"sha256d": "BTC", "scrypt": "LTC", "ethash": "ETH", "kawpow": "RVN",
             "equihash": "ZEC", "kheavyhash": "KAS", "cuckoo": "GRIN", "beamhash": "BEAM"}


def algo_coin(algo: str | None) -> str | None:
    if not algo:
        return None
    if algo.startswith(("rx/", "cn")) or algo in ("randomx", "cryptonight"):
        return "XMR" if algo in ("rx/0", "cn", "cn/r", "cn/2", "cn/1", "cn/0", "randomx") else None
    return ALGO_COIN.get(algo)


RECENT_OVERFLOW = 1024   # items past a set's cap remembered as added (a probe host's pools)
SKETCH_K = 4096          # distinct items counted exactly per capped set, estimated beyond


@functools.lru_cache(maxsize=1 << 14)
def stable_hash(x: Any) -> int:
    """A 64-bit hash of an item that is the same in every process (Python's ``hash`` of a
    string is salted per process; a store outlives processes). Remembered: items past a
    set's cap come back again and again (a probe host's pools, a busy host's links)."""
    return int.from_bytes(blake2b(_repr(x).encode("utf-8", "backslashreplace"),
                                  digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=1 << 14)
def _repr(x: Any) -> str:
    """repr, remembered. Equal items share a cache entry, so this relies on what the sets hold:
    each field of an item always has one type (1 and 1.0 never meet in one field)."""
    return repr(x)


_NO_ITEMS: frozenset[Any] = frozenset()


class CappedSet:
    """A set that keeps at most ``cap`` items and counts how many distinct items it saw.

    Both are independent of the order items arrive in and of how the items are split into
    parts that are merged later (flows finish in an order that depends on timing; a watch
    merges flushes; reports merge stores), so a scan, a watch and a merge agree:

    * kept: the ``cap`` smallest items by ``repr``;
    * counted: once more than ``cap`` items arrive, a k-minimum-values sketch of their
      stable hashes (the ``SKETCH_K`` smallest) is kept beside them: up to ``SKETCH_K``
      distinct items the count is exact; beyond, it is the KMV estimate (K-1)/h_K
      (relative standard error about 1/sqrt(K-2), 1.6%). The union of two sketches cut to
      K is the sketch of the union, so merging is exact too.

    ``more`` (distinct items seen but not kept) is derived, never added up, so an item
    seen twice, or kept in one part and dropped in another, is counted once.
    """

    __slots__ = ("items", "cap", "_hashes", "_legacy", "_approx", "_reprs", "_by_repr", "_done")

    def __init__(self, items: Iterable[Any] = (), cap: int = MAX_SET) -> None:
        # a host record has eleven of these, most of them never added to: the shared empty
        # frozenset until the first item (an empty set is 216 bytes)
        self.items: set[Any] | frozenset[Any] = _NO_ITEMS
        self.cap = cap
        self._hashes: array[int] | None = None   # sorted stable hashes, once over the cap
        self._legacy = 0        # counted elsewhere without a sketch (old stores, scan JSON)
        self._approx = False    # _legacy may count items also counted here
        self._reprs: list[str] | None = None      # the kept items' reprs, sorted, once full
        self._by_repr: dict[str, Any] | None = None
        # items past the cap added lately: adding an item again never changes the set (the
        # largest kept repr and the sketch's K-th hash only fall), so they are skipped
        self._done: set[Any] | None = None
        for x in items:
            self.add(x)

    # -- adding ------------------------------------------------------------------------
    def add(self, x: Any) -> None:
        items = self.items
        if x in items:
            return
        if len(items) < self.cap:
            if not isinstance(items, set):
                items = self.items = set()
            items.add(x)
            if self._hashes is not None:
                self._count(stable_hash(x))
            return
        done = self._done
        if done is None:
            done = self._done = set()
        elif x in done:
            return
        elif len(done) >= RECENT_OVERFLOW:
            done.clear()
        done.add(x)
        if self._hashes is None:
            self._hashes = self._hash_list()
        self._count(stable_hash(x))
        self._keep(x)

    def _keep(self, x: Any) -> None:
        """x belongs among the kept if it is smaller than the largest kept (the set is full)."""
        rs, by_repr, items = self._reprs, self._by_repr, self.items
        if rs is None or by_repr is None:
            self._by_repr = by_repr = {repr(y): y for y in items}
            self._reprs = rs = sorted(by_repr)
        assert isinstance(items, set)       # full, so not the shared empty one
        r = _repr(x)
        if r < rs[-1]:
            items.discard(by_repr.pop(rs.pop()))
            insort(rs, r)
            by_repr[r] = x
            items.add(x)

    def _count(self, h: int) -> None:
        hs = self._hashes
        assert hs is not None
        i = bisect_left(hs, h)
        if i < len(hs) and hs[i] == h:
            return
        if len(hs) >= SKETCH_K:
            if i >= SKETCH_K:
                return
            hs.pop()
        hs.insert(i, h)

    # -- counting ----------------------------------------------------------------------
    def distinct(self) -> int:
        """Distinct items seen (exact up to SKETCH_K, then estimated)."""
        hs = self._hashes
        if hs is None:
            n = len(self.items)
        elif len(hs) < SKETCH_K:
            n = len(hs)
        else:
            n = max(SKETCH_K, round((SKETCH_K - 1) * 2.0 ** 64 / (hs[-1] + 1)))
        return n + self._legacy

    @property
    def more(self) -> int:
        """Distinct items seen but not kept."""
        return self.distinct() - len(self.items)

    @property
    def estimated(self) -> bool:
        """True when the count is a sketch estimate (or carries counts without a sketch)."""
        return self._approx or (self._hashes is not None and len(self._hashes) >= SKETCH_K)

    def count_elsewhere(self, n: int, exact: bool = False) -> None:
        """Add n items counted without being seen here (a flow's logins past its own cap; the
        *_more of a host record read back from JSON, ``exact`` when it was). Such items cannot
        be told apart from others, so later merges make the count approximate."""
        if n:
            self._legacy += n
            self._approx = self._approx or not exact

    # -- merging -----------------------------------------------------------------------
    def _hash_list(self) -> array[int]:
        """The sketch; before the set overflowed, the kept items' hashes (all it saw)."""
        if self._hashes is not None:
            return self._hashes
        return array("Q", sorted({stable_hash(y) for y in self.items}))

    def merge(self, other: CappedSet) -> None:
        if (self._legacy and other.items) or (other._legacy and self.items):
            self._approx = True             # items counted without a sketch may overlap
        self._approx = self._approx or other._approx
        self._legacy += other._legacy
        if not other.items and other._hashes is None:
            return
        items = self.items
        if not isinstance(items, set):
            items = self.items = set()
        if self._hashes is None and other._hashes is None \
                and len(items | other.items) <= self.cap:
            items |= other.items
            return
        union = sorted(set(self._hash_list()) | set(other._hash_list()))
        self._hashes = array("Q", union[:SKETCH_K])
        for x in sorted(other.items, key=repr):
            if x in items:
                continue
            if len(items) < self.cap:
                items.add(x)
            else:
                self._keep(x)

    # -- persistence -------------------------------------------------------------------
    def state(self) -> list[Any]:
        """[items, more, sketch]: JSON-able and lossless (sketch: base64 of the hashes)."""
        sketch = None
        if self._hashes is not None:
            hs = array("Q", self._hashes)
            if sys.byteorder == "little":
                hs.byteswap()
            sketch = base64.b64encode(hs.tobytes()).decode("ascii")
        return [sorted(self.items, key=repr), self.more, sketch, self._legacy, self._approx]

    @classmethod
    def from_state(cls, st: list[Any], cap: int) -> CappedSet:
        cs = cls(cap=cap)
        cs.items = {tuple(x) if isinstance(x, list) else x for x in st[0]}
        if len(st) >= 3 and st[2] is not None:
            hs = array("Q")
            hs.frombytes(base64.b64decode(st[2]))
            if sys.byteorder == "little":
                hs.byteswap()
            cs._hashes = hs
        # [items, more] was written before sketches: what was counted beyond the items, as it was
        cs._legacy = st[3] if len(st) >= 4 else (0 if cs._hashes is not None else st[1])
        cs._approx = bool(st[4]) if len(st) >= 5 else cs._legacy > 0
        return cs

    def sorted(self) -> list[Any]:
        return sorted(self.items, key=lambda v: (str(type(v)), v if not isinstance(v, tuple)
                                                 else tuple(str(x) for x in v)))


@functools.lru_cache(maxsize=4096)
def _method_note(dialect: str | None, name: str, toserver: bool) -> str:
    """The evidence text of a method seen, shared by every flow that sees it (one string, not
    one per flow: an open mining flow kept ~1.5 KB of these)."""
    return f"{dialect} {name} ({'client→pool' if toserver else 'pool→client'})"


_UNSET: Any = object()      # a note without a method field (None is a value: the method unknown)


class FlowRecord:
    """Evidence of one flow, folded from the observations of its session."""

    __slots__ = ("file", "proof", "dialects", "methods", "logins", "logins_more", "agents",
                 "worker_fields",
                 "pool_hosts", "submitted", "accepted", "rejected", "stale", "jobs",
                 "difficulties", "difficulty_changes", "reported", "reported_n", "reported_sum",
                 "reject_errors", "evidence", "evidence_total", "algo", "work_raw", "work_unit",
                 "seg_start", "exposure_raw", "n_exposed", "accepted_raw", "first_work_ts",
                 "first_ts", "last_ts")

    def __init__(self, file: str) -> None:
        self.file = file
        self.proof = False
        self.dialects: list[str] = []
        self.methods: dict[str, int] = {}
        self.logins: list[str] = []
        self.logins_more = 0           # logins past MAX_SET (counted, not kept)
        self.agents: list[str] = []
        self.worker_fields: list[str] = []
        self.pool_hosts: list[tuple[str, int | None]] = []
        self.submitted = self.accepted = self.rejected = self.stale = 0
        self.jobs = 0
        self.difficulties: list[tuple[str, Any, float | None]] = []   # (kind, raw, hashes)
        self.difficulty_changes = 0
        self.reported: list[float] = []
        self.reported_n = 0
        self.reported_sum = 0.0
        self.reject_errors: list[tuple[Any, Any]] = []
        self.evidence: list[Note] = []
        self.evidence_total = 0
        self.algo: str | None = None
        # exposure bookkeeping: raw work in force since seg_start
        self.work_raw: float | None = None
        self.work_unit: str | None = None
        self.seg_start = 0.0
        self.exposure_raw: dict[str, float] = {}     # unit -> Σ dt / raw
        self.n_exposed: dict[str, int] = {}          # unit -> accepted shares with work known
        self.accepted_raw: dict[str, float] = {}     # unit -> Σ raw work of accepted shares
        self.first_work_ts: float | None = None
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def note(self, reason: str, frame: int, ts: float, direction: str | None = None,
             method: Any = _UNSET) -> None:
        self.evidence_total += 1
        if len(self.evidence) < MAX_FLOW_EVIDENCE:
            # a tuple, made into a host's evidence entry (a dict) only if the host keeps it
            self.evidence.append((frame, ts, reason, direction, method))

    def fold(self, o: Observation) -> None:
        k = o.kind
        d = o.data
        if self.first_ts is None:
            self.first_ts = o.ts
        self.last_ts = o.ts
        if o.dialect and o.dialect not in self.dialects and k == "method":
            self.dialects.append(o.dialect)
        if k == "method":
            name = o.method or "?"
            n = self.methods.get(name, 0)
            self.methods[name] = n + 1
            if d.get("proof"):
                self.proof = True
            if n < 2 and len(self.methods) < 64:
                self.note(_method_note(o.dialect, name, o.direction == TOSERVER), o.frame, o.ts,
                          o.direction, method=name)
        elif k == "login":
            login = d.get("login")
            if login and login not in self.logins and len(self.logins) >= MAX_SET:
                self.logins_more += 1
            elif login and login not in self.logins:
                self.logins.append(login)
                if d.get("via") != "submit":
                    self.note(f"login '{login[:80]}'", o.frame, o.ts, o.direction)
        elif k == "agent":
            a = d.get("agent")
            if a and a not in self.agents and len(self.agents) < 16:
                self.agents.append(a)
        elif k == "worker_field":
            w = d.get("worker")
            if w and w not in self.worker_fields and len(self.worker_fields) < 16:
                self.worker_fields.append(w)
        elif k == "pool_host":
            host, port = d.get("host"), d.get("port")
            if host and (host, port) not in self.pool_hosts and len(self.pool_hosts) < 16:
                self.pool_hosts.append((str(host), port))
        elif k == "share":
            self.submitted += 1
            if self.submitted == 1:
                self.note("first share submitted", o.frame, o.ts, o.direction, method=o.method)
        elif k == "accepted":
            self.accepted += 1
            if self.accepted == 1:
                self.note("first share accepted by pool", o.frame, o.ts, o.direction)
            if d.get("exposed") and d.get("work") and d.get("unit"):
                u = d["unit"]
                self.n_exposed[u] = self.n_exposed.get(u, 0) + 1
                self.accepted_raw[u] = self.accepted_raw.get(u, 0.0) + float(d["work"])
        elif k == "rejected":
            self.rejected += 1
            if d.get("stale"):
                self.stale += 1
            if len(self.reject_errors) < 16:
                self.reject_errors.append((d.get("code"), d.get("error")))
        elif k == "work":
            self._close_segment(o.ts)
            self.work_raw, self.work_unit = float(d["raw"]), d["unit"]
            self.seg_start = o.ts
            if self.first_work_ts is None:
                self.first_work_ts = o.ts
            if d.get("algorithm"):
                self.algo = d["algorithm"]
        elif k == "difficulty":
            self.difficulty_changes += 1
            item: tuple[str, Any, float | None]
            if "difficulty" in d:
                item = ("difficulty", float(d["difficulty"]), None)
            else:
                item = ("target", str(d.get("target")), float(d["work"]) if d.get("work") else None)
            if item not in self.difficulties and len(self.difficulties) < 32:
                self.difficulties.append(item)
        elif k == "job":
            self.jobs += 1
        elif k == "hashrate_reported":
            hs = float(d["hs"])
            self.reported_n += 1
            self.reported_sum += hs
            self.reported.append(hs)
            if len(self.reported) > 2:
                self.reported[:] = [min(self.reported), max(self.reported)]

    def _close_segment(self, ts: float) -> None:
        if self.work_raw and self.work_unit and ts > self.seg_start:
            u = self.work_unit
            self.exposure_raw[u] = self.exposure_raw.get(u, 0.0) + (ts - self.seg_start) / self.work_raw
        self.seg_start = ts

    def finish(self, end_ts: float) -> None:
        """Close the exposure at the flow's last packet."""
        self._close_segment(end_ts)

    def copy(self) -> FlowRecord:
        """An independent copy (a live flow's record, accounted without disturbing it): its
        lists and dicts copied, the rest shared. A watch copies every open flow's record at
        each flush, so the copy is spelled out (a loop over the slots took 2.5x as long);
        tests/test_units.py checks that it covers every slot."""
        out = FlowRecord.__new__(FlowRecord)
        out.file = self.file
        out.proof = self.proof
        out.dialects = self.dialects[:]
        out.methods = self.methods.copy()
        out.logins = self.logins[:]
        out.logins_more = self.logins_more
        out.agents = self.agents[:]
        out.worker_fields = self.worker_fields[:]
        out.pool_hosts = self.pool_hosts[:]
        out.submitted = self.submitted
        out.accepted = self.accepted
        out.rejected = self.rejected
        out.stale = self.stale
        out.jobs = self.jobs
        out.difficulties = self.difficulties[:]
        out.difficulty_changes = self.difficulty_changes
        out.reported = self.reported[:]
        out.reported_n = self.reported_n
        out.reported_sum = self.reported_sum
        out.reject_errors = self.reject_errors[:]
        out.evidence = self.evidence[:]
        out.evidence_total = self.evidence_total
        out.algo = self.algo
        out.work_raw = self.work_raw
        out.work_unit = self.work_unit
        out.seg_start = self.seg_start
        out.exposure_raw = self.exposure_raw.copy()
        out.n_exposed = self.n_exposed.copy()
        out.accepted_raw = self.accepted_raw.copy()
        out.first_work_ts = self.first_work_ts
        out.first_ts = self.first_ts
        out.last_ts = self.last_ts
        return out


class ExactSum:
    """A sum of floats kept exactly, as non-overlapping partials (Shewchuk's algorithm, the one
    ``math.fsum`` uses, kept open so terms can keep arriving and sums can merge). Its value is
    the correctly rounded total whatever order the terms came in, so parts merged in any order
    (--jobs workers, watch flushes, stores) equal one pass over everything, to the last bit."""

    __slots__ = ("partials", "special")

    def __init__(self, x: float | list[float] = 0.0) -> None:
        self.partials: list[float] = []
        self.special = 0.0          # inf and nan terms (they have no exact partials)
        for v in x if isinstance(x, list) else (x,):
            self.add(v)

    def add(self, x: float) -> None:
        x = float(x)
        if not math.isfinite(x):
            self.special += x
            return
        partials = self.partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def merge(self, other: ExactSum) -> None:
        for v in other.partials:
            self.add(v)
        self.special += other.special

    def __float__(self) -> float:
        return math.fsum(self.partials) + self.special

    def state(self) -> list[float] | float:
        return float(self) if self.special else list(self.partials)


_RATE_SUMS = ("exposure", "work", "window_s", "reported_sum")


class AlgoRate:
    """Mergeable hashrate accumulator for one algorithm (its float sums are exact, so merging
    in any order gives the same answer)."""

    __slots__ = ("n", "reported_n", "reported_min", "reported_max", "_sums")

    def __init__(self, n: int = 0, exposure: float | list[float] = 0.0, work: float | list[float] = 0.0,
                 window_s: float | list[float] = 0.0, reported_n: int = 0,
                 reported_sum: float | list[float] = 0.0, reported_min: float | None = math.inf,
                 reported_max: float = 0.0) -> None:
        self.n = n                      # accepted shares submitted while work was known
        self.reported_n = reported_n
        self.reported_min = math.inf if reported_min is None else reported_min
        self.reported_max = reported_max
        self._sums = {k: ExactSum(v) for k, v in zip(_RATE_SUMS, (exposure, work, window_s, reported_sum))}

    def add(self, name: str, x: float) -> None:
        """Add to one of the sums: exposure (seconds per hash), work (hashes of the accepted
        shares), window_s (seconds with a job of known work in force), reported_sum (H/s the
        miner reported)."""
        self._sums[name].add(x)

    exposure = property(lambda self: self.total("exposure"))
    work = property(lambda self: self.total("work"))
    window_s = property(lambda self: self.total("window_s"))
    reported_sum = property(lambda self: self.total("reported_sum"))

    def total(self, name: str) -> float:
        """The correctly rounded value of one of the sums."""
        return float(self._sums[name])

    def merge(self, o: AlgoRate) -> None:
        self.n += o.n
        for k in _RATE_SUMS:
            self._sums[k].merge(o._sums[k])
        self.reported_n += o.reported_n
        self.reported_min = min(self.reported_min, o.reported_min)
        self.reported_max = max(self.reported_max, o.reported_max)

    def state(self) -> dict[str, Any]:
        """JSON-able and lossless (the sums as their partials)."""
        return {"n": self.n, "reported_n": self.reported_n,
                "reported_min": None if self.reported_min == math.inf else self.reported_min,
                "reported_max": self.reported_max, **{k: self._sums[k].state() for k in _RATE_SUMS}}


_SETS = ("reasons", "dialects", "coins", "pools", "workers", "wallets", "agents", "signatures",
         "domains", "difficulty", "links")
_COUNTS = ("difficulty_changes", "jobs", "submitted", "accepted", "rejected", "stale",
           "bytes_toserver", "bytes_toclient", "pkts_toserver", "pkts_toclient", "sessions")


class HostEvidence:
    """Everything known about one IP that mines (or looks like it)."""

    # slots: a scanner may hold MAX_HOSTS of these (a table of 200,000 suspects from forged
    # lookups); with its sets' empty items shared, an empty record is ~1.6 KB, not ~6 KB
    __slots__ = ("ip", "verdict", *_SETS, "methods", "difficulty_changes", "jobs", "submitted",
                 "accepted", "rejected", "stale", "rates", "bytes_toserver", "bytes_toclient",
                 "pkts_toserver", "pkts_toclient", "sessions", "first_seen", "last_seen",
                 "evidence", "evidence_total")

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.verdict = "none"
        self.reasons: CappedSet = CappedSet(cap=16)
        self.dialects: CappedSet = CappedSet(cap=16)
        self.coins: CappedSet = CappedSet(cap=16)
        self.pools: CappedSet = CappedSet()        # (ip, port, domain)
        self.workers: CappedSet = CappedSet()
        self.wallets: CappedSet = CappedSet()      # (address, coin, checksum)
        self.agents: CappedSet = CappedSet(cap=32)
        self.signatures: CappedSet = CappedSet(cap=32)
        self.domains: CappedSet = CappedSet(cap=32)   # pool names looked up / contacted
        # (pool ip, port, domain, wallet or login, coin) of each session: what alerts key on
        self.links: CappedSet = CappedSet()
        self.methods: dict[str, int] = {}
        self.difficulty: CappedSet = CappedSet(cap=32)   # (algorithm, kind, raw, hashes/share)
        self.difficulty_changes = 0
        self.jobs = 0
        self.submitted = self.accepted = self.rejected = self.stale = 0
        self.rates: dict[str, AlgoRate] = {}
        self.bytes_toserver = self.bytes_toclient = 0
        self.pkts_toserver = self.pkts_toclient = 0
        self.sessions = 0
        self.first_seen = math.inf
        self.last_seen = -math.inf
        self.evidence: list[dict[str, Any]] = []
        self.evidence_total = 0

    # -- building ----------------------------------------------------------------------
    def raise_verdict(self, verdict: str, reason: str) -> None:
        if VERDICTS[verdict] > VERDICTS[self.verdict]:
            self.verdict = verdict
        self.reasons.add(reason)

    def seen(self, ts: float) -> None:
        if ts < self.first_seen:
            self.first_seen = ts
        if ts > self.last_seen:
            self.last_seen = ts

    def add_evidence(self, items: list[dict[str, Any]], total: int | None = None) -> None:
        """Keep the earliest MAX_EVIDENCE entries (by time, file, frame); count them all."""
        self.evidence_total += len(items) if total is None else total
        ev = self.evidence
        if len(ev) >= MAX_EVIDENCE:
            worst = _ev_key(ev[-1])
            items = [e for e in items if _ev_key(e) < worst]
        if not items:
            return
        ev.extend(items)
        ev.sort(key=_ev_key)
        del ev[MAX_EVIDENCE:]

    def add_flow(self, rec: FlowRecord, pool: tuple[str, int, str | None], bytes_ts: int,
                 bytes_tc: int, pkts_ts: int, pkts_tc: int, first: float, last: float,
                 flow_info: dict[str, Any], pool_coins: tuple[str, ...] = ()) -> None:
        self.sessions += 1
        self.pools.add(pool)
        self.bytes_toserver += bytes_ts
        self.bytes_toclient += bytes_tc
        self.pkts_toserver += pkts_ts
        self.pkts_toclient += pkts_tc
        self.seen(first)
        self.seen(last)
        for dl in rec.dialects:
            self.dialects.add(dl)
        for m, n in rec.methods.items():
            self.methods[m] = self.methods.get(m, 0) + n
        flow_coins: set[str] = set()
        who = ""            # the session's first wallet (or its login if it names none)
        for login in rec.logins:
            self.workers.add(login)
            for w in find_wallets(login):
                self.wallets.add((w.address, w.coin, w.checksum))
                flow_coins.add(w.coin)
                who = who or w.address
            who = who or login
        if rec.logins_more:
            self.workers.count_elsewhere(rec.logins_more)
        for a in rec.agents:
            self.agents.add(a)
        self.submitted += rec.submitted
        self.accepted += rec.accepted
        self.rejected += rec.rejected
        self.stale += rec.stale
        algo = resolve_algorithm(rec.algo, flow_coins | set(pool_coins))
        coin = resolve_coin(algo, flow_coins, pool_coins)
        if coin:
            self.coins.add(coin)
        self.links.add((*pool, who, coin or ""))
        self.jobs += rec.jobs
        self.difficulty_changes += rec.difficulty_changes
        for kind, raw, hashes in rec.difficulties:
            if kind == "difficulty" and algo:
                f = work_factor(algo, "diff")
                hashes = None if f is None else raw * f
            self.difficulty.add((algo or "", kind, raw, hashes))
        for unit, raw_exp in rec.exposure_raw.items():
            if not algo:
                continue
            f = work_factor(algo, unit)
            if f is None:
                continue
            r = self.rates.setdefault(algo, AlgoRate())
            r.add("exposure", raw_exp / f)
            r.n += rec.n_exposed.get(unit, 0)
            r.add("work", rec.accepted_raw.get(unit, 0.0) * f)
        if algo and rec.first_work_ts is not None and rec.exposure_raw:
            self.rates.setdefault(algo, AlgoRate()).add("window_s", max(0.0, last - rec.first_work_ts))
        if rec.reported_n:
            r = self.rates.setdefault(algo or "ethash", AlgoRate())
            r.reported_n += rec.reported_n
            r.add("reported_sum", rec.reported_sum)
            r.reported_min = min(r.reported_min, min(rec.reported))
            r.reported_max = max(r.reported_max, max(rec.reported))
        ev = rec.evidence
        if len(self.evidence) >= MAX_EVIDENCE and ev:
            # most sessions come after the host's kept evidence: drop them before making entries
            worst = _ev_key(self.evidence[-1])
            if "ts" not in flow_info:
                wts = worst[0]          # a later note sorts after the worst kept: no key needed
                ev = [t for t in ev if t[1] <= wts]
            ev = [t for t in ev if _note_key(t, flow_info) < worst]
        self.add_evidence([_note_entry(t, flow_info) for t in ev], rec.evidence_total)

    # -- merging -----------------------------------------------------------------------
    def merge(self, o: HostEvidence) -> None:
        if VERDICTS[o.verdict] > VERDICTS[self.verdict]:
            self.verdict = o.verdict
        self.jobs += o.jobs
        self.difficulty_changes += o.difficulty_changes
        for name in _SETS:
            getattr(self, name).merge(getattr(o, name))
        for m, n in o.methods.items():
            self.methods[m] = self.methods.get(m, 0) + n
        self.submitted += o.submitted
        self.accepted += o.accepted
        self.rejected += o.rejected
        self.stale += o.stale
        for a, r in o.rates.items():
            self.rates.setdefault(a, AlgoRate()).merge(r)
        self.bytes_toserver += o.bytes_toserver
        self.bytes_toclient += o.bytes_toclient
        self.pkts_toserver += o.pkts_toserver
        self.pkts_toclient += o.pkts_toclient
        self.sessions += o.sessions
        self.first_seen = min(self.first_seen, o.first_seen)
        self.last_seen = max(self.last_seen, o.last_seen)
        self.add_evidence(list(o.evidence), o.evidence_total)

    # -- persistence ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to merge this record later, as JSON-able data (lossless)."""
        return {
            "ip": self.ip, "verdict": self.verdict,
            "sets": {n: getattr(self, n).state() for n in _SETS},
            "methods": self.methods,
            "counts": {n: getattr(self, n) for n in _COUNTS},
            "rates": {a: r.state() for a, r in self.rates.items()},
            "first_seen": None if self.first_seen == math.inf else self.first_seen,
            "last_seen": None if self.last_seen == -math.inf else self.last_seen,
            "evidence": self.evidence, "evidence_total": self.evidence_total,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> HostEvidence:
        h = cls(st["ip"])
        h.verdict = st["verdict"]
        for n, cst in st["sets"].items():
            setattr(h, n, CappedSet.from_state(cst, getattr(h, n).cap))
        h.methods = dict(st["methods"])
        for n, v in st["counts"].items():
            setattr(h, n, v)
        for a, r in st["rates"].items():
            h.rates[a] = AlgoRate(**r)
        h.first_seen = math.inf if st["first_seen"] is None else st["first_seen"]
        h.last_seen = -math.inf if st["last_seen"] is None else st["last_seen"]
        h.evidence = list(st["evidence"])
        h.evidence_total = st["evidence_total"]
        return h

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostEvidence:
        """A host record back from ``to_dict()`` (or ``scan --format json``): everything a
        report merges (the per-session links of alerts are not in it)."""
        h = cls(d["ip"])
        h.verdict = d["verdict"]
        for name in ("reasons", "dialects", "coins", "agents", "signatures", "domains"):
            getattr(h, name).items = set(d.get(name) or ())
        h.workers.items = set(d.get("workers") or ())
        exact = not d.get("more_estimated", True)
        h.workers.count_elsewhere(d.get("workers_more", 0), exact)
        h.pools.items = {(p["ip"], p["port"], p["domain"]) for p in d.get("pools") or ()}
        h.pools.count_elsewhere(d.get("pools_more", 0), exact)
        h.wallets.items = {(w["address"], w["coin"], w["checksum"]) for w in d.get("wallets") or ()}
        h.difficulty.items = {(x["algorithm"] or "", x["kind"], x["value"], x["hashes_per_share"])
                              for x in d.get("difficulty") or ()}
        h.methods = dict(d.get("methods") or {})
        h.difficulty_changes = d.get("difficulty_changes", 0)
        h.jobs = d.get("jobs", 0)
        sh = d.get("shares") or {}
        h.submitted, h.accepted = sh.get("submitted", 0), sh.get("accepted", 0)
        h.rejected, h.stale = sh.get("rejected", 0), sh.get("stale", 0)
        for n in ("sessions", "bytes_toserver", "bytes_toclient", "pkts_toserver", "pkts_toclient"):
            setattr(h, n, d.get(n, 0))
        h.first_seen = math.inf if d.get("first_seen") is None else d["first_seen"]
        h.last_seen = -math.inf if d.get("last_seen") is None else d["last_seen"]
        h.evidence = [{k: v for k, v in e.items() if k not in ("ts_iso", "community_id")}
                      for e in d.get("evidence") or ()]
        h.evidence_total = d.get("evidence_total", len(h.evidence))
        for e in d.get("hashrate") or ():
            rep = e.get("reported") or {}
            h.rates[e["algorithm"]] = AlgoRate(
                n=e.get("shares", 0), exposure=e.get("exposure_s_per_hash") or 0.0,
                work=e.get("work_hashes") or 0.0, window_s=e.get("window_s") or 0.0,
                reported_n=rep.get("count", 0),
                reported_sum=rep.get("sum_hs", rep.get("mean_hs", 0.0) * rep.get("count", 0)),
                reported_min=rep.get("min_hs", math.inf), reported_max=rep.get("max_hs", 0.0))
        return h

    # -- output --------------------------------------------------------------------------
    def hashrate(self) -> list[dict[str, Any]]:
        out = []
        for algo in sorted(self.rates):
            r = self.rates[algo]
            entry: dict[str, Any] = {"algorithm": algo, "hs": None, "ci95": None,
                                     "shares": r.n, "window_s": r.window_s,
                                     # the sums behind the estimate, so reports can merge it
                                     "exposure_s_per_hash": r.exposure, "work_hashes": r.work}
            if r.exposure > 0:
                est, lo, hi = hashrate_ci(r.n, r.exposure)
                entry.update(hs=est, ci95=[lo, hi],
                             hs_from_work=(r.work / r.window_s) if r.window_s > 0 else None)
            if r.reported_n:
                entry["reported"] = {"mean_hs": r.reported_sum / r.reported_n,
                                     "min_hs": r.reported_min, "max_hs": r.reported_max,
                                     "count": r.reported_n, "sum_hs": r.reported_sum}
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "verdict": self.verdict,
            "reasons": self.reasons.sorted(),
            "dialects": self.dialects.sorted(),
            "coins": self.coins.sorted(),
            "pools": [{"ip": p[0], "port": p[1], "domain": p[2]} for p in self.pools.sorted()],
            "pools_more": self.pools.more,
            "workers": self.workers.sorted(),
            "workers_more": self.workers.more,
            # true when a *_more count is a sketch estimate (more than SKETCH_K distinct items)
            "more_estimated": self.pools.estimated or self.workers.estimated,
            "wallets": [{"address": w[0], "coin": w[1], "checksum": w[2]}
                        for w in self.wallets.sorted()],
            "agents": self.agents.sorted(),
            "signatures": self.signatures.sorted(),
            "domains": self.domains.sorted(),
            "methods": dict(sorted(self.methods.items())),
            "difficulty": [{"algorithm": a or None, "kind": k, "value": v, "hashes_per_share": w}
                           for a, k, v, w in self.difficulty.sorted()],
            "difficulty_changes": self.difficulty_changes,
            "jobs": self.jobs,
            "shares": {"submitted": self.submitted, "accepted": self.accepted,
                       "rejected": self.rejected, "stale": self.stale},
            "hashrate": self.hashrate(),
            "sessions": self.sessions,
            "bytes_toserver": self.bytes_toserver,
            "bytes_toclient": self.bytes_toclient,
            "pkts_toserver": self.pkts_toserver,
            "pkts_toclient": self.pkts_toclient,
            "first_seen": self.first_seen if self.first_seen != math.inf else None,
            "last_seen": self.last_seen if self.last_seen != -math.inf else None,
            "evidence": self.evidence,
            "evidence_total": self.evidence_total,
        }


class Traffic:
    """Bytes of pool sessions per 5-minute bin, both directions: what gives a sweep its
    mean and peak pool traffic. A session's bytes are spread evenly over its duration (a
    mining session is a steady trickle of jobs and shares); the sums are exact. Mergeable:
    bins add."""

    BIN_S = 300
    MAX_SPREAD = 8640          # bins one session is spread over (30 days: its last 30 days)
    MAX_BINS = 105_120         # bins kept (a year); a capture's timestamps are not trusted

    def __init__(self) -> None:
        self.bins: dict[int, list[int]] = {}     # bin start (epoch s) -> [to pools, from pools]
        self.dropped = 0                          # bytes of bins past MAX_BINS (not kept)

    def __len__(self) -> int:
        return len(self.bins)

    def add(self, k: int, toserver: int, toclient: int) -> bool:
        """Add bytes to the bin starting at ``k``; False (and counted) when the series is full."""
        cell = self.bins.get(k)
        if cell is None:
            if len(self.bins) >= self.MAX_BINS:
                self.dropped += toserver + toclient
                return False
            cell = self.bins[k] = [0, 0]
        cell[0] += toserver
        cell[1] += toclient
        return True

    def spread(self, first: float, last: float, toserver: int, toclient: int) -> None:
        b = self.BIN_S
        if not (math.isfinite(first) and math.isfinite(last)):
            return
        first = max(first, last - self.MAX_SPREAD * b)
        start = int(first // b) * b
        end = int(last // b) * b
        if end <= start or last <= first:
            self.add(start, toserver, toclient)
            return
        span = last - first
        given = [0, 0]
        t = start
        while t <= end:
            lo, hi = max(first, t), min(last, t + b)
            if t == end:               # the remainder: the sums stay exact
                a, c = toserver - given[0], toclient - given[1]
            else:
                a, c = int(toserver * (hi - lo) / span), int(toclient * (hi - lo) / span)
            if not self.add(t, a, c):
                self.dropped += toserver + toclient - given[0] - given[1] - a - c
                return
            given[0] += a
            given[1] += c
            t += b

    def merge(self, o: Traffic) -> None:
        self.dropped += o.dropped
        for k, (a, c) in o.bins.items():
            self.add(k, a, c)

    def to_list(self) -> list[list[int]]:
        return [[k, a, c] for k, (a, c) in sorted(self.bins.items())]

    @classmethod
    def from_list(cls, rows: list[list[int]]) -> Traffic:
        t = cls()
        for k, a, c in rows:
            t.add(int(k), int(a), int(c))
        return t


def merge_hosts(into: dict[str, HostEvidence], hosts: Iterable[HostEvidence]) -> None:
    """Merge host records into a table by IP (the table takes the records it had no IP for)."""
    for h in hosts:
        mine = into.get(h.ip)
        if mine is None:
            into[h.ip] = h
        else:
            mine.merge(h)


def host_order(h: HostEvidence) -> tuple[int, str]:
    """Report order: mining hosts first, then suspects; by address within each."""
    return -VERDICTS[h.verdict], h.ip


def _ev_key(e: dict[str, Any]) -> tuple[Any, ...]:
    """The order evidence is kept in."""
    return (e.get("ts", 0.0), str(e.get("pcap_filename", "")), e.get("pcap_cnt", 0),
            e.get("reason", ""))


Note = tuple[int, float, str, "str | None", Any]   # frame, ts, reason, direction, method (or _UNSET)


def _note_entry(t: Note, info: dict[str, Any]) -> dict[str, Any]:
    """A flow's evidence note as a host's evidence entry, with the flow's tuple (``info``)."""
    frame, ts, reason, direction, method = t
    e: dict[str, Any] = {"pcap_cnt": frame, "ts": ts, "reason": reason}
    if direction:
        e["dir"] = direction
    if method is not _UNSET:
        e["method"] = method
    e.update(info)
    return e


def _note_key(t: Note, info: dict[str, Any]) -> tuple[Any, ...]:
    """_ev_key of _note_entry(t, info), without making the entry."""
    frame, ts, reason = t[0], t[1], t[2]
    if "ts" in info or "pcap_cnt" in info or "reason" in info:
        return _ev_key(_note_entry(t, info))
    return (ts, str(info.get("pcap_filename", "")), frame, reason)


def resolve_algorithm(algo: str | None, coins: set[str]) -> str | None:
    """The session's algorithm, with Scrypt told apart from SHA-256d by the coin."""
    if algo == "sha256d" and coins & SCRYPT_COINS and "BTC" not in coins:
        return "scrypt"
    return algo


def resolve_coin(algo: str | None, wallet_coins: set[str], pool_coins: tuple[str, ...]) -> str | None:
    """Coin: the wallet's format, narrowed by the pool's coins; else the algorithm's default."""
    pc = set(pool_coins)
    for c in sorted(wallet_coins):
        if c == "ETH" and pc and "ETH" not in pc and pc & {"ETC", "ETHW", "BSC"}:
            return sorted(pc & {"ETC", "ETHW"})[0] if pc & {"ETC", "ETHW"} else c
        return c
    default = algo_coin(algo)
    if default and (not pc or default in pc):
        return default
    if len(pc) == 1:
        return next(iter(pc))
    return default
