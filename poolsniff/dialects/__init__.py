"""Mining dialects: one module per wire dialect, all sans-IO.

Each dialect module exports ``NAME``, ``REQUESTS`` (method name -> handler for
a request or notification) and optionally ``on_orphan_result`` (a response whose
request we did not see: pushed jobs, sessions caught mid-stream). Handlers take
``(session, msg, direction, frame, ts)`` and append observations to
``session.out``; they never print and never raise on message content.

Adding a dialect is adding a module to :data:`DIALECTS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from poolsniff.model import TOCLIENT, TOSERVER, Observation

#: how specific a dialect name is; a session keeps the most specific one seen
_RANK = {"stratum-v1": 0, "ethereumstratum-1.0.0": 1, "xmrig": 1}

MAX_PENDING = 256      # outstanding request ids remembered per session
MAX_SAME_ID = 16        # requests pending under one id (ids repeat: some miners send id 0)
MAX_JOBS = 64          # job id -> work map entries per session

Handler = Callable[["Session", dict[str, Any], str, int, float], None]


class Session:
    """Mining-session state of one flow (what the dialect handlers share)."""

    __slots__ = ("dialect", "variant", "pending", "jobs", "next_diff", "out",
                 "client_is_a", "direction_proven", "algo", "unit", "work",
                 "mining_frames", "pending_target")

    def __init__(self) -> None:
        self.dialect: str | None = None
        self.variant: str | None = None          # sha256d, ethash, kawpow, equihash, kheavyhash...
        # requests awaiting their result, per id, oldest first (a list: a deque is 600 bytes,
        # and most ids have one request pending)
        # plain dicts (insertion-ordered; an OrderedDict is twice the size, and every flow
        # with a session has two)
        self.pending: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
        self.jobs: dict[str, tuple[float, str]] = {}  # job -> (raw, unit)
        self.next_diff: float | None = None
        self.out: list[Observation] = []
        self.client_is_a: bool | None = None
        self.direction_proven = False
        self.algo: str | None = None
        self.unit: str | None = None             # "diff" (difficulty) or "target" (hashes)
        self.work: float | None = None           # raw work of the job in force
        self.mining_frames = 0
        self.pending_target: float | None = None   # ZIP 301 / KawPow set_target, next job

    # -- helpers for handlers -----------------------------------------------------
    def emit(self, kind: str, frame: int, ts: float, direction: str, dialect: str | None,
             method: str | None = None, **data: Any) -> None:
        self.out.append(Observation(kind, frame, ts, direction, dialect, method, data))

    def set_dialect(self, name: str) -> None:
        """Keep the most specific dialect seen (a variant's notify refines 'stratum-v1')."""
        if self.dialect is None or _RANK.get(name, 2) > _RANK.get(self.dialect, 2):
            self.dialect = name

    def remember(self, msg_id: Any, method: str, **extra: Any) -> None:
        if msg_id is None or not isinstance(msg_id, (int, str)) or isinstance(msg_id, bool):
            return
        q = self.pending.get(msg_id)
        if q is None:
            if len(self.pending) >= MAX_PENDING:
                del self.pending[next(iter(self.pending))]        # the oldest
            q = self.pending[msg_id] = []
        elif len(q) >= MAX_SAME_ID:
            del q[0]                    # as a bounded queue drops its oldest
        q.append((method, extra))

    def recall(self, msg_id: Any) -> tuple[str, dict[str, Any]] | None:
        if not isinstance(msg_id, (int, str)) or isinstance(msg_id, bool):
            return None
        q = self.pending.get(msg_id)
        if not q:
            return None
        item = q.pop(0)
        if not q:
            del self.pending[msg_id]
        return item

    def add_job(self, job_id: Any, raw: float, unit: str, frame: int, ts: float,
                direction: str, dialect: str, algo: str | None) -> None:
        """A job with known work arrived: it is the job in force from now on."""
        key = str(job_id)[:128]
        if len(self.jobs) >= MAX_JOBS:
            del self.jobs[next(iter(self.jobs))]          # the oldest
        self.jobs[key] = (raw, unit)
        if algo:
            self.algo = algo
        if raw != self.work or unit != self.unit:
            self.work, self.unit = raw, unit
            self.emit("work", frame, ts, direction, dialect, raw=raw, unit=unit,
                      algorithm=self.algo)
        self.emit("job", frame, ts, direction, dialect, job_id=key)

    def submitted(self, msg_id: Any, job_id: Any, frame: int, ts: float, direction: str,
                  method: str, remember_as: str, work: tuple[float, str] | None | bool = True) -> None:
        """A share went to the pool: count it, valued by its job, and wait for the answer.

        ``work=True`` looks the job's work up; ``None`` means the dialect carries none.
        """
        if work is True:
            work = self.job_work(job_id)
        w = work if isinstance(work, tuple) else None
        self.emit("share", frame, ts, direction, self.dialect, method,
                  job_id=None if job_id is None else str(job_id)[:128],
                  work=w[0] if w else None, unit=w[1] if w else None)
        self.remember(msg_id, remember_as, work=w, exposed=w is not None and self.work is not None)

    def share_result(self, extra: dict[str, Any], res: Any, err: Any, direction: str, frame: int,
                     ts: float, stale_codes: tuple[int, ...] = (21, -32503)) -> None:
        """The pool's answer to a share: accepted, or rejected with its code (stale noted:
        the dialect's codes for a share of a job gone by, or the word)."""
        w, unit = extra.get("work") or (None, None)
        exposed = bool(extra.get("exposed"))
        ok = (res is True and err in (None, False)) \
            or (isinstance(res, dict) and str(res.get("status", "")).upper() == "OK") \
            or (isinstance(res, str) and err is None and (res == "ok" or res.startswith("blockfound")))
        if ok:
            self.emit("accepted", frame, ts, direction, self.dialect, work=w, unit=unit,
                      exposed=exposed)
            return
        code, text = _error(err)
        self.emit("rejected", frame, ts, direction, self.dialect, code=code, error=text,
                  stale=code in stale_codes or "stale" in (text or "").lower(),
                  work=w, unit=unit, exposed=exposed)

    def job_work(self, job_id: Any) -> tuple[float, str] | None:
        hit = self.jobs.get(str(job_id)[:128])
        if hit is not None:
            return hit
        if self.work is not None and self.unit is not None:
            return self.work, self.unit
        return None


def _error(err: Any) -> tuple[int | None, str | None]:
    """(code, message) from a V1 error array or a JSON-RPC 2.0 error object."""
    if isinstance(err, list) and err:
        code = err[0] if isinstance(err[0], int) and not isinstance(err[0], bool) else None
        return code, str_or_none(err[1], 200) if len(err) > 1 else None
    if isinstance(err, dict):
        c = err.get("code")
        return (c if isinstance(c, int) and not isinstance(c, bool) else None), \
            str_or_none(err.get("message"), 200)
    return None, str_or_none(err, 200)


def str_or_none(v: Any, limit: int = 512) -> str | None:
    if isinstance(v, str):
        return v[:limit]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


#: hex digits, ASCII only: int(s, 16) also takes a sign, blanks, underscores and other
#: scripts' digits ("-0x2" as a job's boundary made its work per share negative)
_HEX = re.compile(r"[0-9A-Fa-f]+")


def hex_int(v: Any) -> int | None:
    """Numbers on the wire arrive as JSON numbers or hex strings, with or without 0x; never
    negative."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    if isinstance(v, str) and 0 < len(v) <= 130:
        s = v[2:] if v[:2] in ("0x", "0X") else v
        return int(s, 16) if _HEX.fullmatch(s) else None
    return None


def is_hex(v: Any, lengths: tuple[int, ...] | None = None) -> bool:
    """A string of hex digits (0x optional; of one of ``lengths`` digits, if given)."""
    if not isinstance(v, str):
        return False
    s = v[2:] if v[:2] in ("0x", "0X") else v
    if lengths is not None and len(s) not in lengths:
        return False
    return len(s) <= 4096 and _HEX.fullmatch(s) is not None


def other(direction: str) -> str:
    return TOCLIENT if direction == TOSERVER else TOSERVER


from poolsniff.dialects import (  # noqa: E402  (the registry needs Session above)
    beam,
    coinhive,
    cryptonote,
    ethproxy,
    getwork,
    grin,
    stratum,
)

#: dialect modules in the order orphan results are offered to them
DIALECTS = (stratum, ethproxy, cryptonote, grin, beam, getwork, coinhive)

#: method -> (module, handler); client methods prove the sender is the miner
REQUESTS: dict[str, tuple[Any, Handler]] = {}
#: remembered request name -> module whose ``on_result`` reads the response
RESULT_OWNERS: dict[str, Any] = {}
CLIENT_METHODS: set[str] = set()
SERVER_METHODS: set[str] = set()
for _mod in DIALECTS:
    for _m, _h in _mod.REQUESTS.items():
        REQUESTS.setdefault(_m, (_mod, _h))
    for _r in _mod.RESULTS:
        RESULT_OWNERS.setdefault(_r, _mod)
    CLIENT_METHODS.update(getattr(_mod, "CLIENT_METHODS", ()))
    SERVER_METHODS.update(getattr(_mod, "SERVER_METHODS", ()))


def sender_role(msg: dict[str, Any]) -> str | None:
    """'client' or 'server' when the message itself proves who sent it."""
    method = msg.get("method")
    if isinstance(method, str):
        if method in CLIENT_METHODS and _valid(msg, method):
            return "client"
        if method in SERVER_METHODS and _valid(msg, method):
            return "server"
        return None
    kind = coinhive.is_type_message(msg)
    if kind is not None:
        return "client" if kind in coinhive.CLIENT_TYPES else "server"
    return None


def _valid(msg: dict[str, Any], method: str) -> bool:
    entry = REQUESTS.get(method)
    if entry is None:
        return False
    check = getattr(entry[0], "shape_ok", None)
    return bool(check is None or check(method, msg))


def handle(session: Session, msg: dict[str, Any], direction: str, frame: int, ts: float) -> None:
    """Route one JSON message to its dialect; observations land in ``session.out``."""
    method = msg.get("method")
    if isinstance(method, str):
        entry = REQUESTS.get(method)
        if entry is None:
            return
        mod, handler = entry
        check = getattr(mod, "shape_ok", None)
        if check is not None and not check(method, msg):
            return
        handler(session, msg, direction, frame, ts)
        return
    kind = coinhive.is_type_message(msg)
    if kind is not None:
        coinhive.handle_type(session, kind, msg, direction, frame, ts)
        return
    if "result" in msg or "error" in msg:
        req = session.recall(msg.get("id"))
        if req is not None:
            name, extra = req
            owner = RESULT_OWNERS.get(name)
            if owner is not None:
                owner.on_result(session, name, extra, msg, direction, frame, ts)
                return
        for mod in DIALECTS:
            orphan = getattr(mod, "on_orphan_result", None)
            if orphan is not None and orphan(session, msg, direction, frame, ts):
                return
