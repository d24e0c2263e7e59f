"""eth-proxy ("stratum1", Claymore/PhoenixMiner/ethminer/T-Rex) and Ethereum getwork.

``eth_submitLogin``, ``eth_getWork``, ``eth_submitWork``, ``eth_submitHashrate``;
jobs come as ``eth_getWork`` results or are pushed as unsolicited results
(``{"id":0,"result":[header, seed, boundary(, block)]}``). The same methods over
HTTP (solo mining against a node, legacy pools) are routed here by the HTTP
framer. Work per share is ``2^256 / boundary`` (§3.3).

Its JSON-RPC 2.0 relative for WebSocket pools (§3.12; CyberChainXyz/stratum-jsonrpc2-ws):
``eth_subscribe ["newWork", user, pass, agent]``, jobs as ``eth_subscription``
notifications ``[job id, pow hash, seed hash, boundary, block, extranonce]`` and
``eth_submitWork [job id, nonce, pow hash]``. Only the ``newWork`` subscription is a
miner's: an Ethereum node's ``eth_subscribe`` (newHeads, logs) is not looked at.
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, hex_int, is_hex, str_or_none

NAME = "eth-proxy"
WS_NAME = "stratum-jsonrpc2.0-ws"
CLIENT_METHODS = {"eth_submitLogin", "eth_getWork", "eth_submitWork", "eth_submitHashrate",
                  "eth_login", "eth_subscribe"}
SERVER_METHODS = {"eth_subscription"}
TWO256 = 1 << 256


def _ws_job(r: Any) -> bool:
    """[job id, pow hash, seed hash, boundary, ...] of an eth_subscription notification."""
    return isinstance(r, list) and len(r) >= 4 and isinstance(r[0], (str, int)) \
        and is_hex(r[1], (64,)) and is_hex(r[2], (64,)) and is_hex(r[3])


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    p = msg.get("params")
    if method in ("eth_submitLogin", "eth_login"):
        return isinstance(p, list) and len(p) >= 1 and isinstance(p[0], str)
    if method == "eth_getWork":
        return p is None or isinstance(p, list)
    if method == "eth_submitWork":      # [nonce, header, mix] or [job id, nonce, pow hash]
        return isinstance(p, list) and len(p) >= 3 and isinstance(p[0], str) \
            and is_hex(p[1]) and is_hex(p[2])
    if method == "eth_submitHashrate":
        return isinstance(p, list) and len(p) >= 1 and is_hex(p[0])
    if method == "eth_subscribe":
        return isinstance(p, list) and len(p) >= 2 and p[0] == "newWork" and isinstance(p[1], str)
    if method == "eth_subscription":
        return isinstance(p, dict) and _ws_job(p.get("result"))
    return False


def _m(s: Session, name: str, d: str, f: int, t: float, dialect: str = NAME) -> None:
    s.set_dialect(dialect)
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
    # getwork's jobs are known by their header, the WebSocket pools' by their job id
    job = str(p[1]).lower() if is_hex(p[1], (64,)) else str(p[0])
    s.submitted(m.get("id"), job, f, t, d, "eth_submitWork", "eth_submitWork")


def subscribe_new_work(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _m(s, "eth_subscribe", d, f, t, WS_NAME)
    s.emit("login", f, t, d, s.dialect, login=p[1][:512],
           password=str_or_none(p[2], 128) if len(p) > 2 else None)
    agent = str_or_none(p[3]) if len(p) > 3 else None
    if agent:
        s.emit("agent", f, t, d, s.dialect, agent=agent)
    s.remember(m.get("id"), "eth_subscribe")


def subscription(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    r = m["params"]["result"]
    _m(s, "eth_subscription", d, f, t, WS_NAME)
    boundary = hex_int(r[3])
    if boundary:
        s.add_job(str(r[0]), TWO256 / (boundary + 1), "target", f, t, d, WS_NAME, "ethash")
    else:
        s.emit("job", f, t, d, s.dialect, job_id=str(r[0])[:128])


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
    elif name == "eth_subscribe":       # the subscription's id, or an error
        s.emit("authorized", f, t, d, s.dialect, ok=isinstance(res, str) and bool(res))


def on_orphan_result(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> bool:
    res = m.get("result")
    return isinstance(res, list) and _job(s, res, d, f, t)


REQUESTS = {
    "eth_submitLogin": submit_login,
    "eth_login": submit_login,
    "eth_getWork": get_work,
    "eth_submitWork": submit_work,
    "eth_submitHashrate": submit_hashrate,
    "eth_subscribe": subscribe_new_work,
    "eth_subscription": subscription,
}
RESULTS = {"eth_submitLogin", "eth_login", "eth_getWork", "eth_submitWork", "eth_submitHashrate",
           "eth_subscribe"}
