"""Grin-style stratum (Cuckoo): ``login``, ``getjobtemplate``, ``job`` with
``pre_pow``, ``submit`` with a 42-int ``pow``, ``status``, ``keepalive`` (§3.9).

``login``/``job``/``submit`` share their names with XMRig's dialect; the XMRig
module hands over messages of Grin's shape. Difficulty-to-work for Cuckoo is not
settled in the reference (§3.9), so Grin sessions report shares and difficulty
but no hashrate.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from poolsniff.dialects import Session

NAME = "grin"
CLIENT_METHODS = {"getjobtemplate"}
SERVER_METHODS: set[str] = set()


def is_job(p: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(p, dict) and isinstance(p.get("pre_pow"), str) and "job_id" in p


def is_submit(p: Any) -> bool:
    return isinstance(p, dict) and isinstance(p.get("pow"), list) and "nonce" in p


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    return True


def _m(s: Session, name: str, d: str, f: int, t: float) -> None:
    s.set_dialect(NAME)
    s.variant = "cuckoo"
    s.emit("method", f, t, d, s.dialect, name, proof=True)


def job(s: Session, p: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "job", d, f, t)
    diff = p.get("difficulty")
    if isinstance(diff, (int, float)) and not isinstance(diff, bool):
        s.emit("difficulty", f, t, d, s.dialect, difficulty=float(diff))
    s.emit("job", f, t, d, s.dialect, job_id=str(p.get("job_id"))[:128])


def submit(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "submit", d, f, t)
    p = m["params"]
    s.submitted(m.get("id"), p.get("job_id"), f, t, d, "submit", "grin.submit", work=None)


def getjobtemplate(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "getjobtemplate", d, f, t)
    s.remember(m.get("id"), "getjobtemplate")


def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    res = m.get("result")
    if name == "getjobtemplate" and is_job(res):
        job(s, res, d, f, t)
    elif name == "grin.submit":
        s.share_result(extra, res, m.get("error"), d, f, t)


REQUESTS = {"getjobtemplate": getjobtemplate}
RESULTS = {"getjobtemplate", "grin.submit"}
