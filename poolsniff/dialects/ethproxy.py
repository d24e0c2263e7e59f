"""eth-proxy ("stratum1", Claymore/PhoenixMiner/ethminer/T-Rex) and Ethereum getwork.

``eth_submitLogin``, ``eth_getWork``, ``eth_submitWork``, ``eth_submitHashrate``;
jobs come as ``eth_getWork`` results or are pushed as unsolicited results
(``{"id":0,"result":[header, seed, boundary(, block)]}``). The same methods over
HTTP (solo mining against a node, legacy pools) are routed here by the HTTP
framer. Work per share is ``2^256 / boundary`` (§3.3).
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, hex_int, is_hex, str_or_none

NAME = "eth-proxy"
CLIENT_METHODS = {"eth_submitLogin", "eth_getWork", "eth_submitWork", "eth_submitHashrate",
                  "eth_login"}
SERVER_METHODS: set[str] = set()
TWO256 = 1 << 256


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    p = msg.get("params")
    if method in ("eth_submitLogin", "eth_login"):
        return isinstance(p, list) and len(p) >= 1 and isinstance(p[0], str)
    if method == "eth_getWork":
        return p is None or isinstance(p, list)
    if method == "eth_submitWork":
        return isinstance(p, list) and len(p) >= 3 and all(is_hex(x) for x in p[:3])
    if method == "eth_submitHashrate":
        return isinstance(p, list) and len(p) >= 1 and is_hex(p[0])
    return False


def _m(s: Session, name: str, d: str, f: int, t: float) -> None:
    s.set_dialect(NAME)
    s.variant = s.variant or "ethash"
    s.emit("method", f, t, d, s.dialect, name, proof=True)


def submit_login(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _m(s, "eth_submitLogin", d, f, t)
    s.emit("login", f, t, d, s.dialect, login=p[0][:512],
           password=str_or_none(p[1], 128) if len(p) > 1 else None)
    worker = str_or_none(m.get("worker"), 128)
    if worker:
        s.emit("worker_field", f, t, d, s.dialect, worker=worker)
    s.remember(m.get("id"), "eth_submitLogin")


def get_work(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "eth_getWork", d, f, t)
    s.remember(m.get("id"), "eth_getWork")


def submit_work(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _m(s, "eth_submitWork", d, f, t)
    worker = str_or_none(m.get("worker"), 128)
    if worker:
        s.emit("worker_field", f, t, d, s.dialect, worker=worker)
    s.submitted(m.get("id"), str(p[1]).lower(), f, t, d, "eth_submitWork", "eth_submitWork")


def submit_hashrate(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "eth_submitHashrate", d, f, t)
    hs = hex_int(m["params"][0])
    if hs is not None:
        s.emit("hashrate_reported", f, t, d, s.dialect, hs=float(hs))
    s.remember(m.get("id"), "eth_submitHashrate")


def _job(s: Session, res: list[Any], d: str, f: int, t: float) -> bool:
    if len(res) < 3 or not (is_hex(res[0], (64,)) and is_hex(res[2])):
        return False
    boundary = hex_int(res[2])
    if not boundary:
        return False
    s.set_dialect(NAME)
    s.variant = s.variant or "ethash"
    s.emit("method", f, t, d, s.dialect, "eth_getWork.result", proof=True)
    s.add_job(str(res[0]).lower(), TWO256 / (boundary + 1), "target", f, t, d, NAME, "ethash")
    return True


def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    res = m.get("result")
    if name == "eth_getWork":
        if isinstance(res, list):
            _job(s, res, d, f, t)
    elif name == "eth_submitWork":
        s.share_result(extra, res, m.get("error"), d, f, t)
    elif name in ("eth_submitLogin", "eth_login"):
        s.emit("authorized", f, t, d, s.dialect, ok=res is True)


def on_orphan_result(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> bool:
    res = m.get("result")
    return isinstance(res, list) and _job(s, res, d, f, t)


REQUESTS = {
    "eth_submitLogin": submit_login,
    "eth_login": submit_login,
    "eth_getWork": get_work,
    "eth_submitWork": submit_work,
    "eth_submitHashrate": submit_hashrate,
}
RESULTS = {"eth_submitLogin", "eth_login", "eth_getWork", "eth_submitWork", "eth_submitHashrate"}
