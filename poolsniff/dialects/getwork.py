"""Legacy Bitcoin HTTP mining: ``getwork``, ``getblocktemplate`` (BIP 22/23),
``submitblock``, as JSON-RPC in HTTP bodies (``X-Mining-Extensions`` headers are
recorded by the flow layer). Ethereum ``eth_getWork`` over HTTP goes to
:mod:`poolsniff.dialects.ethproxy`.

getwork's ``target`` is a 256-bit little-endian hex string: ``W = 2^256/target``.
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, is_hex

NAME = "getwork-http"
CLIENT_METHODS = {"getwork", "getblocktemplate", "submitblock"}
SERVER_METHODS: set[str] = set()
TWO256 = 1 << 256


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    p = msg.get("params", [])
    if method == "getwork":
        return p is None or (isinstance(p, list) and len(p) <= 1)
    if method == "getblocktemplate":
        return p is None or (isinstance(p, list) and len(p) <= 2
                             and all(isinstance(x, dict) for x in p))
    if method == "submitblock":
        return isinstance(p, list) and len(p) >= 1 and is_hex(p[0])
    return False


def _m(s: Session, name: str, d: str, f: int, t: float) -> None:
    s.set_dialect("getblocktemplate-http" if name == "getblocktemplate" else NAME)
    s.variant = s.variant or "sha256d"
    s.emit("method", f, t, d, s.dialect, name, proof=True)


def getwork(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "getwork", d, f, t)
    p = m.get("params") or []
    if p:   # getwork with data = a solution submission
        s.submitted(m.get("id"), None, f, t, d, "getwork", "getwork.submit")
    else:
        s.remember(m.get("id"), "getwork")


def getblocktemplate(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "getblocktemplate", d, f, t)
    s.remember(m.get("id"), "getblocktemplate")


def submitblock(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "submitblock", d, f, t)
    s.submitted(m.get("id"), None, f, t, d, "submitblock", "submitblock", work=None)


def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    res = m.get("result")
    if name == "getwork" and isinstance(res, dict) and is_hex(res.get("target"), (64,)):
        tgt = int.from_bytes(bytes.fromhex(res["target"]), "little")
        if tgt:
            s.add_job("getwork", TWO256 / (tgt + 1), "target", f, t, d, NAME, "sha256d")
    elif name in ("getwork.submit", "submitblock"):
        # submitblock answers null on success (BIP 22); getwork answers true
        ok = res is True or (name == "submitblock" and res is None and m.get("error") is None)
        s.share_result(extra, True if ok else None, None if ok else (m.get("error") or "rejected"),
                       d, f, t)


REQUESTS = {"getwork": getwork, "getblocktemplate": getblocktemplate,
            "submitblock": submitblock}
RESULTS = {"getwork", "getwork.submit", "getblocktemplate", "submitblock"}
