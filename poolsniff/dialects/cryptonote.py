"""CryptoNote / XMRig stratum (Monero RandomX, CryptoNight...): ``login``, ``job``,
``submit``, ``keepalived`` (§3.6). xmr-stak's variant (``hashcount``) too.

The job target is little-endian: 4 bytes → ``W ≈ 2^32 / t32`` (XMRig's exact
conversion), 8 bytes → ``(2^64-1) / t64``. Grin's lookalike ``login``/``job``/
``submit`` messages are handed to :mod:`poolsniff.dialects.grin`, Beam's ``login`` and
``job`` (fields beside ``method``, no ``params``) to :mod:`poolsniff.dialects.beam`.
"""

from __future__ import annotations

from typing import Any

from poolsniff.coins import find_wallets
from poolsniff.dialects import Session, is_hex, str_or_none
from poolsniff.dialects import beam, grin

NAME = "xmrig"
CLIENT_METHODS = {"login", "submit", "keepalived"}
SERVER_METHODS = {"job"}
RANDOMX_SINCE = 1575072000.0      # 2019-11-30: Monero switched from CryptoNight to RandomX
U64 = 0xFFFFFFFFFFFFFFFF


def shape_ok(method: str, msg: dict[str, Any]) -> bool:
    if (method == "login" and beam.is_login(msg)) or (method == "job" and beam.is_job(msg)):
        return True
    p = msg.get("params")
    if not isinstance(p, dict):
        return False
    if method == "login":
        return isinstance(p.get("login"), str) and ("pass" in p or "agent" in p)
    if method == "job":
        return (isinstance(p.get("blob"), str) and "job_id" in p and is_hex(p.get("target"))) \
            or grin.is_job(p)
    if method == "submit":
        return ("job_id" in p and is_hex(p.get("nonce")) and is_hex(p.get("result"), (64,))) \
            or grin.is_submit(p)
    if method == "keepalived":
        return "id" in p
    return False


def target_work(target: str) -> float | None:
    """Hashes per share for an XMRig-style little-endian target (XMRig Job::setTarget)."""
    try:
        raw = bytes.fromhex(target)
    except ValueError:
        return None
    if len(raw) == 4:
        t32 = int.from_bytes(raw, "little")
        if t32 == 0:
            return None
        t64 = U64 // (0xFFFFFFFF // t32)
    elif len(raw) == 8:
        t64 = int.from_bytes(raw, "little")
    else:
        return None
    return U64 / t64 if t64 else None


def _m(s: Session, name: str, d: str, f: int, t: float, proof: bool = True) -> None:
    s.set_dialect(NAME)
    s.emit("method", f, t, d, s.dialect, name, proof=proof)


def login(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    if beam.is_login(m):
        beam.login(s, m, d, f, t)
        return
    p = m["params"]
    # {"login", "pass"} alone is any web API's login; a miner sends an agent, its algorithms,
    # a rig id or a wallet. Without those, the pool's job in the reply is the proof.
    miner_like = bool(p.get("agent") or isinstance(p.get("algo"), list) or p.get("rigid")
                      or find_wallets(p["login"][:512]))
    _m(s, "login", d, f, t, proof=miner_like)
    s.emit("login", f, t, d, s.dialect, login=p["login"][:512],
           password=str_or_none(p.get("pass"), 128), rigid=str_or_none(p.get("rigid"), 128))
    agent = str_or_none(p.get("agent"))
    if agent:
        s.emit("agent", f, t, d, s.dialect, agent=agent)
    algos = p.get("algo")
    if isinstance(algos, list) and algos and isinstance(algos[0], str):
        s.algo = s.algo or algos[0][:32]
    s.remember(m.get("id"), "login")


def _algo(s: Session, job: dict[str, Any], ts: float) -> str:
    a = job.get("algo")
    if isinstance(a, str) and a:
        return a[:32]
    if s.algo:
        return s.algo
    return "rx/0" if ts >= RANDOMX_SINCE else "cn"


def _job(s: Session, job: dict[str, Any], d: str, f: int, t: float) -> None:
    if grin.is_job(job):
        grin.job(s, job, d, f, t)
        return
    _m(s, "job", d, f, t)
    w = target_work(str(job.get("target", "")))
    algo = _algo(s, job, t)
    if w:
        s.emit("difficulty", f, t, d, s.dialect, target=str(job["target"])[:16], work=w)
        s.add_job(job.get("job_id"), w, "target", f, t, d, NAME, algo)
    else:
        s.emit("job", f, t, d, s.dialect, job_id=str(job.get("job_id"))[:128])


def job(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    if beam.is_job(m):
        beam.job(s, m, d, f, t)
        return
    _job(s, m["params"], d, f, t)


def submit(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    p = m["params"]
    if grin.is_submit(p):
        grin.submit(s, m, d, f, t)
        return
    _m(s, "submit", d, f, t)
    s.submitted(m.get("id"), p.get("job_id"), f, t, d, "submit", "submit")


def keepalived(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> None:
    _m(s, "keepalived", d, f, t)
    s.remember(m.get("id"), "keepalived")


def on_result(s: Session, name: str, extra: dict[str, Any], m: dict[str, Any], d: str,
              f: int, t: float) -> None:
    res = m.get("result")
    if name == "login":
        if isinstance(res, dict) and isinstance(res.get("job"), dict):
            s.emit("authorized", f, t, d, s.dialect, ok=True)
            _job(s, res["job"], d, f, t)
        elif res == "ok":
            s.emit("authorized", f, t, d, s.dialect, ok=True)
        else:
            s.emit("authorized", f, t, d, s.dialect, ok=False)
    elif name == "submit":
        s.share_result(extra, res, m.get("error"), d, f, t)


def on_orphan_result(s: Session, m: dict[str, Any], d: str, f: int, t: float) -> bool:
    res = m.get("result")
    if isinstance(res, dict) and isinstance(res.get("job"), dict) \
            and isinstance(res["job"].get("blob"), str):
        _job(s, res["job"], d, f, t)
        return True
    return False


REQUESTS = {"login": login, "job": job, "submit": submit, "keepalived": keepalived}
RESULTS = {"login", "submit", "keepalived"}
