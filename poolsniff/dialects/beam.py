"""Beam's stratum (BeamHash; Beam's own node, NiceHash, the pools): ``login`` with an
``api_key``, ``job`` with a 32-byte ``input`` and a packed ``difficulty``, ``solution``
with ``nonce`` and ``output``, ``cancel``, and the pool's answers as ``result`` messages
with a ``code`` (1 accepted, 2 rejected, 3 expired; negative: an error). Every field
sits beside ``method``; there are no ``params`` (BeamMW/beam ``pow/stratum.h`` and
``pow/stratum.cpp``; mining-protocols.md §3.9).

``login`` and ``job`` share their names with XMRig's dialect, which hands messages of
Beam's shape over. Beam packs a difficulty into 8 bits of order and 24 of mantissa
(``core/difficulty.cpp``), but what the pools send is not settled in the reference
(§3.9, §6.2: NiceHash's example would unpack to about 2^181), so sessions report
their shares and the difficulty as sent, and no hashrate.
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, is_hex, str_or_none

NAME = "beam"
ALGORITHM = "beamhash"
CLIENT_METHODS = {"solution"}
SERVER_METHODS = {"result", "cancel"}
ACCEPTED, REJECTED, EXPIRED = 1, 2, 3


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_login(m: dict[str, Any]) -> bool:
    return isinstance(m.get("api_key"), str) and "params" not in m


def is_job(m: dict[str, Any]) -> bool:
    return is_hex(m.get("input"), (64,)) and _int(m.get("difficulty")) and "params" not in m


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    if "params" in msg:
        return False
    if method == "solution":
        return is_hex(msg.get("nonce")) and is_hex(msg.get("output")) \
            and len(str(msg.get("output"))) >= 32
    if method == "result":
        return _int(msg.get("code")) and isinstance(msg.get("description"), str)
    if method == "cancel":
        return "id" in msg and msg.get("jsonrpc") == "2.0"
    return False


def _m(s: Session, name: str, d: str, f: int, t: float, proof: bool = True) -> None:
    s.set_dialect(NAME)
    s.variant = s.algo = ALGORITHM
    s.emit("method", f, t, d, s.dialect, name, proof=proof)


def login(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    # an api_key alone is any web API's login: the pool's job, or a share, proves the session
    _m(s, "login", d, f, t, proof=False)
    s.emit("login", f, t, d, s.dialect, login=m["api_key"][:512], password=None, rigid=None)
    s.remember(m.get("id"), "beam.login")


def job(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "job", d, f, t)
    s.emit("difficulty", f, t, d, s.dialect, difficulty=float(m["difficulty"]))
    s.emit("job", f, t, d, s.dialect, job_id=str(m.get("id"))[:128])


def solution(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "solution", d, f, t)
    s.submitted(m.get("id"), m.get("id"), f, t, d, "solution", "beam.solution", work=None)


def result(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    req = s.recall(m.get("id"))
    code = m["code"]
    if req is None:
        _m(s, "result", d, f, t, proof=False)        # its request not seen (mid-stream)
        return
    name, extra = req
    _m(s, "result", d, f, t, proof=name == "beam.solution")     # a login's answer proves nothing
    if name == "beam.login":
        s.emit("authorized", f, t, d, s.dialect, ok=code >= 0)
    elif name == "beam.solution":
        desc = str_or_none(m.get("description"), 200)
        s.share_result(extra, code == ACCEPTED, None if code == ACCEPTED else [code, desc],
                       d, f, t, stale_codes=(EXPIRED,))


def cancel(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "cancel", d, f, t, proof=False)


def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    """Beam answers with ``result`` messages (handled above), not JSON-RPC results."""


REQUESTS = {"solution": solution, "result": result, "cancel": cancel}
RESULTS: set[str] = set()
