"""Wallet addresses in login strings, and the coin their format implies.

Patterns follow ``shared/docs/mining-protocols.md`` section 5. Base58Check and
bech32 checksums are verified (with the ``base58`` and ``bech32`` packages);
Monero and Kaspa addresses are matched by format only (``checksum: False``).
ETH-style addresses are ambiguous (ETH, ETC, BSC...): the pool or algorithm
breaks the tie.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import base58
import bech32

B58 = r"[1-9A-HJ-NP-Za-km-z]"
B32 = r"[02-9ac-hj-np-z]"

# (coin, regex, check) ; check in {"b58", "bech32:<hrp>", None}
_PATTERNS: list[tuple[str, str, str | None]] = [
    ("XMR", rf"4[1-9AB]{B58}{{93}}", None),
    ("XMR", rf"8{B58}{{94}}", None),
    ("XMR", rf"4{B58}{{105}}", None),
    ("KAS", r"kaspa:[qp][qpzry9x8gf2tvdw0s3jn54khce6mua7l]{60,62}", None),
    ("ETH", r"0x[0-9a-fA-F]{40}", None),
    ("BTC", rf"bc1(?:q{B32}{{38}}|q{B32}{{58}}|p{B32}{{58}})", "bech32:bc"),
    ("LTC", rf"ltc1(?:q{B32}{{38}}|q{B32}{{58}}|p{B32}{{58}})", "bech32:ltc"),
    ("ZEC", rf"zs1{B32}{{75}}", None),
    ("ZEC", rf"t[13]{B58}{{33}}", "b58"),
    ("BTC", rf"1{B58}{{25,33}}", "b58"),
    ("BTC", rf"3{B58}{{33}}", "b58"),
    ("LTC", rf"[LM]{B58}{{33}}", "b58"),
    ("DOGE", rf"D{B58}{{33}}", "b58"),
    ("RVN", rf"R{B58}{{33}}", "b58"),
]
_COMPILED = [(c, re.compile(rf"(?<![0-9A-Za-z])(?:{rx})(?![0-9A-Za-z])"), chk)
             for c, rx, chk in _PATTERNS]

#: base58check version bytes that confirm the coin of a base58 address
_B58_VERSIONS = {
    "BTC": {0x00, 0x05},
    "LTC": {0x30, 0x32, 0x05},
    "DOGE": {0x1E, 0x16},
    "RVN": {0x3C, 0x7A},
}


@dataclass(frozen=True, slots=True)
class Wallet:
    address: str
    coin: str
    checksum: bool        # True when a checksum was verified


def _check(addr: str, coin: str, chk: str | None) -> bool | None:
    """True: checksum verified; False: not checkable; None: checksum failed."""
    if chk is None:
        return False
    if chk == "b58":
        try:
            raw = base58.b58decode_check(addr)
        except ValueError:
            return None
        if coin == "ZEC":
            return True if len(raw) == 22 and raw[:2] in (b"\x1c\xb8", b"\x1c\xbd") else None
        return True if raw and raw[0] in _B58_VERSIONS.get(coin, {raw[0]}) else None
    hrp = chk.split(":", 1)[1]
    ver, prog = bech32.decode(hrp, addr)
    return True if ver is not None and prog is not None else None


def find_wallets(text: str) -> list[Wallet]:
    """Addresses in a login/worker string (first match per span wins)."""
    if not text or len(text) > 1024:
        return []
    return list(_find_wallets(text))


@functools.lru_cache(maxsize=4096)
def _find_wallets(text: str) -> tuple[Wallet, ...]:
    """find_wallets, remembered: a miner logs in with the same string on every session (a
    checksum check is a base58 decode or a bech32 decode, and ~20 patterns are tried)."""
    out: list[Wallet] = []
    taken: list[tuple[int, int]] = []
    for coin, rx, chk in _COMPILED:
        for m in rx.finditer(text):
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            ok = _check(m.group(0), coin, chk)
            if ok is None:
                continue
            taken.append((s, e))
            out.append(Wallet(m.group(0), coin, ok))
    return tuple(out)


def split_login(login: str) -> tuple[str, str | None]:
    """``account.worker`` → (account, worker); strips ``+diff``, ``#…`` and ``;…`` options."""
    base = re.split(r"[+#;]", login, maxsplit=1)[0]
    if base.startswith("kaspa:"):
        rest = base[6:]
        acct, sep, worker = rest.partition(".")
        return "kaspa:" + acct, (worker or None) if sep else None
    acct, sep, worker = base.partition(".")
    if not sep:
        acct, sep, worker = base.partition("/")
    return acct, (worker or None) if sep else None
