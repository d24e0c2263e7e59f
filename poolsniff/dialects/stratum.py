"""The ``mining.*`` family: Stratum V1 (BTC/SHA-256d, Scrypt), EthereumStratum/1.0.0,
plain Ethash stratum, KawPow, Equihash (ZIP 301), Kaspa, EthereumStratum/2.0.0.

They share method names; the variant is told apart by the subscribe parameters
and the shape of ``mining.notify`` (shared/docs/mining-protocols.md §3.1-3.8).
Difficulty from ``mining.set_difficulty`` / ``mining.set_target`` applies to the
*next* job; each job's work is kept so shares are valued by their own job.
"""

from __future__ import annotations

from typing import Any

from poolsniff.dialects import Session, hex_int, is_hex, str_or_none

NAME = "stratum"

CLIENT_METHODS = {
    "mining.subscribe", "mining.authorize", "mining.submit", "mining.configure",
    "mining.extranonce.subscribe", "mining.suggest_difficulty", "mining.suggest_target",
    "mining.get_transactions", "mining.hello", "mining.hashrate", "mining.capabilities",
    "mining.multi_version", "mining.noop",
}
SERVER_METHODS = {
    "mining.notify", "mining.set_difficulty", "mining.set_target", "mining.set_extranonce",
    "set_extranonce", "mining.set_version_mask", "mining.set", "mining.bye",
}
#: method names that are not mining-specific by themselves (client.* exist elsewhere)
WEAK = {"client.reconnect", "client.show_message", "client.get_version", "mining.ping",
        "mining.noop"}

TWO256 = 1 << 256
ES1 = "EthereumStratum/1.0.0"


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    p = msg.get("params")
    if method in ("mining.hello", "mining.set"):
        return isinstance(p, dict)
    if not isinstance(p, list):
        return method in ("mining.extranonce.subscribe", "mining.noop", "client.get_version") \
            and p is None
    if method == "mining.submit":
        return len(p) >= 3 and all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                   for x in p[:3])
    if method == "mining.notify":
        return len(p) >= 2 and isinstance(p[0], (str, int))
    if method == "mining.set_difficulty":
        return len(p) >= 1 and isinstance(p[0], (int, float)) and not isinstance(p[0], bool) \
            and p[0] > 0
    if method in ("mining.set_target", "mining.suggest_target"):
        return len(p) >= 1 and is_hex(p[0])
    if method == "mining.authorize":
        return len(p) >= 1 and isinstance(p[0], str)
    return True


def _method(s: Session, name: str, d: str, f: int, t: float, dialect: str | None = None) -> None:
    s.set_dialect(dialect or "stratum-v1")
    s.emit("method", f, t, d, s.dialect, name, proof=name not in WEAK)


# -- client -> pool ------------------------------------------------------------------
def subscribe(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m.get("params") or []
    agent = host = port = None
    if len(p) >= 2 and p[1] == ES1:
        s.variant = s.variant or "ethash"
        _method(s, "mining.subscribe", d, f, t, "ethereumstratum-1.0.0")
        agent = str_or_none(p[0])
    else:
        _method(s, "mining.subscribe", d, f, t)
        if len(p) >= 4 and isinstance(p[0], str) and "." in p[0] and "/" not in p[0] \
                and isinstance(p[1], (int, str)) and str(p[1]).isdigit():
            host, port, agent = p[0], p[1], str_or_none(p[2])        # old slush order
        else:
            agent = str_or_none(p[0]) if p else None
            if len(p) >= 4 and isinstance(p[2], str):
                host, port = p[2], p[3]                              # ZIP 301 order
    if agent:
        s.emit("agent", f, t, d, s.dialect, agent=agent)
    if host:
        s.emit("pool_host", f, t, d, s.dialect, host=str(host)[:255],
               port=hex_int(port) if isinstance(port, int) else _int(port))
    s.remember(m.get("id"), "mining.subscribe")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def authorize(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _method(s, "mining.authorize", d, f, t)
    s.emit("login", f, t, d, s.dialect, login=p[0][:512],
           password=str_or_none(p[1], 128) if len(p) > 1 else None)
    s.remember(m.get("id"), "mining.authorize")


def submit(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    _method(s, "mining.submit", d, f, t)
    if isinstance(p[0], str) and p[0]:
        s.emit("login", f, t, d, s.dialect, login=p[0][:512], via="submit")
    s.submitted(m.get("id"), p[1], f, t, d, "mining.submit", "mining.submit")


def plain_client(name: str):  # noqa: ANN201 - small factory
    def h(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
        _method(s, name, d, f, t)
        s.remember(m.get("id"), name)
    return h


def configure(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, "mining.configure", d, f, t)
    p = m.get("params")
    if isinstance(p, list) and len(p) >= 2 and isinstance(p[1], dict):
        sw = str_or_none(p[1].get("info.sw-version"))
        if sw:
            s.emit("agent", f, t, d, s.dialect, agent=sw)
    s.remember(m.get("id"), "mining.configure")


def hello(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    s.variant = s.variant or "ethash"
    _method(s, "mining.hello", d, f, t, "ethereumstratum-2.0.0")
    agent = str_or_none(p.get("agent"))
    if agent:
        s.emit("agent", f, t, d, s.dialect, agent=agent)
    if isinstance(p.get("host"), str):
        s.emit("pool_host", f, t, d, s.dialect, host=p["host"][:255], port=hex_int(p.get("port")))
    s.remember(m.get("id"), "mining.hello")


def hashrate(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, "mining.hashrate", d, f, t, "ethereumstratum-2.0.0")
    p = m.get("params")
    if isinstance(p, list) and p:
        hs = hex_int(p[0])
        if hs is not None:
            s.emit("hashrate_reported", f, t, d, s.dialect, hs=float(hs))


# -- pool -> client ------------------------------------------------------------------
def set_difficulty(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, "mining.set_difficulty", d, f, t)
    diff = float(m["params"][0])
    s.next_diff = diff
    s.emit("difficulty", f, t, d, s.dialect, difficulty=diff)


def set_target(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, "mining.set_target", d, f, t)
    target = hex_int(m["params"][0])
    if target:
        w = TWO256 / (target + 1)
        s.next_diff = None
        s.emit("difficulty", f, t, d, s.dialect, target=m["params"][0][:80], work=w)
        # a target is work per share directly; it applies from the next job
        s.pending_target = w


def notify(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    n = len(p)
    job = p[0]
    raw: float | None = None
    unit = "diff"
    if n == 7 and is_hex(p[3], (64,)):
        s.variant = "kawpow"
        _method(s, "mining.notify", d, f, t, "stratum-kawpow")
        tgt = hex_int(p[3])
        if tgt:
            raw, unit = TWO256 / (tgt + 1), "target"
    elif n >= 8 and p[1] == "04000000":
        s.variant = "equihash"
        _method(s, "mining.notify", d, f, t, "stratum-equihash")
        raw, unit = _target_work(s), "target"
    elif n >= 9:
        s.variant = s.variant if s.variant in ("sha256d", "scrypt") else "sha256d"
        _method(s, "mining.notify", d, f, t, "stratum-v1")
        raw = _diff(s)
    elif n == 4 and isinstance(p[3], bool):
        s.variant = s.variant if s.variant in ("ethash", "kheavyhash") else "ethash"
        _method(s, "mining.notify", d, f, t, "ethereumstratum-1.0.0")
        raw = _diff(s)
    elif n >= 4 and is_hex(p[3]) and is_hex(p[1]):
        s.variant = "ethash"
        _method(s, "mining.notify", d, f, t, "ethash-stratum")
        tgt = hex_int(p[3])
        if tgt:
            raw, unit = TWO256 / (tgt + 1), "target"
    elif n in (2, 3) and (_kaspa_words(p[1]) or is_hex(p[1], (80,))):
        s.variant = "kheavyhash"
        _method(s, "mining.notify", d, f, t, "stratum-kaspa")
        raw = _diff(s)
    else:
        _method(s, "mining.notify", d, f, t)
        raw = _diff(s)
    if raw is not None:
        s.add_job(job, raw, unit, f, t, d, s.dialect or NAME, s.variant)
    else:
        s.emit("job", f, t, d, s.dialect, job_id=str(job)[:128])


def _diff(s: Session) -> float | None:
    if s.next_diff is not None:
        return s.next_diff
    return s.work if s.unit == "diff" else None


def _target_work(s: Session) -> float | None:
    w = s.pending_target
    if w is not None:
        return w
    return s.work if s.unit == "target" else None


def _kaspa_words(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v)


def set_extranonce(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, str(m.get("method")), d, f, t)


def server_plain(name: str):  # noqa: ANN201
    def h(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
        _method(s, name, d, f, t)
    return h


def es2_set(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _method(s, "mining.set", d, f, t, "ethereumstratum-2.0.0")
    tgt = hex_int(m["params"].get("target"))
    if tgt:
        s.pending_target = TWO256 / (tgt + 1)


def reconnect(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    if s.dialect is None:
        return      # client.reconnect alone proves nothing
    _method(s, "client.reconnect", d, f, t)
    p = m.get("params")
    if isinstance(p, list) and p and isinstance(p[0], str) and p[0]:
        s.emit("pool_host", f, t, d, s.dialect, host=p[0][:255],
               port=_int(p[1]) if len(p) > 1 else None, via="client.reconnect")


# -- responses ------------------------------------------------------------------------
def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    res, err = m.get("result"), m.get("error")
    if name == "mining.subscribe":
        if isinstance(res, list):
            if len(res) >= 2 and res[1] == ES1 or (res and isinstance(res[0], list) and res[0]
                                                   and isinstance(res[0], list)
                                                   and ES1 in [x for x in res[0] if isinstance(x, str)]):
                s.set_dialect("ethereumstratum-1.0.0")
            s.emit("method", f, t, d, s.dialect, "subscribe.result", proof=True)
        return
    if name == "mining.authorize":
        s.emit("authorized", f, t, d, s.dialect, ok=res is True)
        return
    if name == "mining.submit":
        s.share_result(extra, res, err, d, f, t)


REQUESTS = {
    "mining.subscribe": subscribe,
    "mining.authorize": authorize,
    "mining.submit": submit,
    "mining.configure": configure,
    "mining.extranonce.subscribe": plain_client("mining.extranonce.subscribe"),
    "mining.suggest_difficulty": plain_client("mining.suggest_difficulty"),
    "mining.suggest_target": plain_client("mining.suggest_target"),
    "mining.get_transactions": plain_client("mining.get_transactions"),
    "mining.capabilities": plain_client("mining.capabilities"),
    "mining.multi_version": plain_client("mining.multi_version"),
    "mining.hello": hello,
    "mining.hashrate": hashrate,
    "mining.noop": plain_client("mining.noop"),
    "mining.set_difficulty": set_difficulty,
    "mining.set_target": set_target,
    "mining.notify": notify,
    "mining.set_extranonce": set_extranonce,
    "set_extranonce": set_extranonce,
    "mining.set_version_mask": server_plain("mining.set_version_mask"),
    "mining.set": es2_set,
    "mining.bye": server_plain("mining.bye"),
    "client.reconnect": reconnect,
}
RESULTS = {"mining.subscribe", "mining.authorize", "mining.submit"}
