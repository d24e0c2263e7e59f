"""The flow hash: the batch path groups packets by it, --jobs splits flows among workers
by it, the duplicate key (dedup.py) builds on it. The C extension and numpy compute the
same values (tests/test_fastpath_c.py)."""

from __future__ import annotations

HASH_K1, HASH_K2, HASH_K3 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_M64 = (1 << 64) - 1


def endpoint_hash(ip: bytes, port: int) -> int:
    """64 bits of an (address, port): the address folded to 64 bits (IPv6: high half XOR low
    half), times a constant, XOR the port. The C extension and numpy compute the same."""
    x = int.from_bytes(ip, "big")
    fold = x if len(ip) == 4 else (x >> 64) ^ (x & _M64)
    return ((fold * HASH_K3) & _M64) ^ port


def flow_hash(src: bytes, sport: int, dst: bytes, dport: int) -> int:
    """64 bits of a 5-tuple's two endpoints, the same in both directions."""
    a, b = endpoint_hash(src, sport), endpoint_hash(dst, dport)
    lo, hi = min(a, b), max(a, b)
    return ((lo * HASH_K1) & _M64) ^ ((hi * HASH_K2) & _M64)


def part_of(h: int, parts: int) -> int:
    """Which of ``parts`` workers (--jobs, watch --workers) takes the flow of hash ``h``: by
    its high 32 bits. A product carries a factor's low bits only upwards, so the low bits
    of ``h`` are the parity of the addresses' and ports' low bits alone: by ``h % 2``,
    copies of a session that differ in an address's second byte all fell to one worker
    (2,000 ethminer hosts: 97% of the messages to one of two)."""
    return (h >> 32) % parts
