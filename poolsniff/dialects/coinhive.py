"""Browser mining over WebSocket, CoinHive style (§3.12): JSON messages keyed by
``type`` (``auth``, ``authed``, ``job``, ``submit``, ``hash_accepted``, ``error``,
``banned``) inside WebSocket text frames, no LF framing. The job target follows
XMRig's little-endian convention.
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, str_or_none
from poolsniff.dialects.cryptonote import target_work

NAME = "coinhive-ws"
CLIENT_TYPES = {"auth", "submit"}
SERVER_TYPES = {"authed", "job", "hash_accepted", "banned"}
CLIENT_METHODS: set[str] = set()
SERVER_METHODS: set[str] = set()


def shape_ok(kind: str, msg: dict[str, Any]) -> bool:
    p = msg.get("params")
    if not isinstance(p, dict):
        return False
    if kind == "auth":
        return "site_key" in p
    if kind == "job":
        return isinstance(p.get("blob"), str) and "job_id" in p
    if kind == "submit":
        return "job_id" in p and "nonce" in p
    if kind in ("authed", "hash_accepted"):
        return "hashes" in p or "token" in p
    return kind == "banned"


def _m(s: Session, kind: str, d: str, f: int, t: float) -> None:
    s.set_dialect(NAME)
    s.emit("method", f, t, d, s.dialect, kind, proof=True)


def handle_type(s: Session, kind: str, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _m(s, kind, d, f, t)
    if kind == "auth":
        key = str_or_none(p.get("site_key"), 128)
        user = str_or_none(p.get("user"), 128)
        s.emit("login", f, t, d, s.dialect, login=f"site_key:{key}" + (f".{user}" if user else ""))
    elif kind == "job":
        w = target_work(str(p.get("target", "")))
        algo = p.get("algo") if isinstance(p.get("algo"), str) else ("cn" if t < 1575072000 else None)
        if w and algo:
            s.add_job(p.get("job_id"), w, "target", f, t, d, NAME, algo[:32])
        else:
            s.emit("job", f, t, d, s.dialect, job_id=str(p.get("job_id"))[:128])
    elif kind == "submit":
        s.submitted("coinhive", p.get("job_id"), f, t, d, "submit", "coinhive.submit")
    elif kind == "hash_accepted":
        # CoinHive answers without ids: the oldest outstanding submit is the one accepted
        req = s.recall("coinhive")
        s.share_result(req[1] if req else {}, True, None, d, f, t)


def is_type_message(m: dict[str, Any]) -> str | None:
    kind = m.get("type")
    if isinstance(kind, str) and (kind in CLIENT_TYPES or kind in SERVER_TYPES) \
            and shape_ok(kind, m):
        return kind
    return None


REQUESTS: dict[str, Any] = {}
RESULTS: set[str] = set()
