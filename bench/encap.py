#!/usr/bin/env python3
"""Wrap every frame of an Ethernet pcap in a tunnel, to measure poolsniff on a mirror feed.

    python3 bench/encap.py benign.pcap benign_vxlan.pcap --kind vxlan
    poolsniff scan benign_vxlan.pcap -f json        # the same hosts as benign.pcap

Kinds: vxlan (UDP 4789), erspan2 (GRE with sequence numbers, ERSPAN type II header), pppoe
and mpls (the IPv4 frames get a PPPoE session header or one MPLS label; others stay as
they are). The outer addresses are 192.0.2.1 -> 192.0.2.2 (documentation range).
``--mtu N`` fragments each outer IPv4 packet longer than N bytes, as a mirror's path with
that MTU does (a full-size frame plus the tunnel's bytes exceeds 1500):

    python3 bench/encap.py benign.pcap benign_erspan_1500.pcap --kind erspan2 --mtu 1500
"""

from __future__ import annotations

import argparse
import struct

MAC = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"


def _ip4(payload: bytes, proto: int, ident: int = 0, frag: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                       bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + payload


def fragments(frame: bytes, mtu: int, ident: int) -> list[bytes]:
    """An outer IPv4 packet (Ethernet, untagged) longer than ``mtu`` as its fragments."""
    if frame[12:14] != b"\x08\x00" or len(frame) - 14 <= mtu:
        return [frame]
    proto, payload = frame[14 + 9], frame[14 + 20:]
    step = (mtu - 20) // 8 * 8
    out = []
    for at in range(0, len(payload), step):
        more = 0x2000 if at + step < len(payload) else 0
        out.append(frame[:14] + _ip4(payload[at:at + step], proto, ident, more | at // 8))
    return out


def wrap(fr: bytes, kind: str, n: int) -> bytes:
    if kind == "vxlan":
        udp = struct.pack("!HHHH", 51000, 4789, 16 + len(fr), 0) + b"\x08\0\0\0\0\x13\x89\0" + fr
        return MAC + b"\x08\x00" + _ip4(udp, 17)
    if kind == "erspan2":
        gre = struct.pack("!HHI", 0x1000, 0x88BE, n & 0xFFFFFFFF) + struct.pack("!II", 0x10000005, 0) + fr
        return MAC + b"\x08\x00" + _ip4(gre, 47)
    if fr[12:14] != b"\x08\x00":
        return fr
    if kind == "mpls":
        return MAC + b"\x88\x47" + struct.pack("!I", (100 << 12) | 0x100 | 64) + fr[14:]
    return MAC + b"\x88\x64" + struct.pack("!BBHHH", 0x11, 0, 42, len(fr) - 14 + 2, 0x21) + fr[14:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--kind", choices=("vxlan", "erspan2", "pppoe", "mpls"), default="vxlan")
    ap.add_argument("--mtu", type=int, default=0, help="fragment outer IPv4 packets longer than this")
    a = ap.parse_args()
    with open(a.src, "rb") as f:
        d = f.read()
    if struct.unpack_from("<I", d)[0] != 0xA1B2C3D4 or struct.unpack_from("<I", d, 20)[0] != 1:
        raise SystemExit(f"{a.src}: not a little-endian microsecond Ethernet pcap")
    out = [d[:24]]
    off, n = 24, 0
    while off + 16 <= len(d):
        s, u, incl, orig = struct.unpack_from("<IIII", d, off)
        fr = d[off + 16:off + 16 + incl]
        off += 16 + incl
        new = wrap(fr, a.kind, n)
        for part in fragments(new, a.mtu, n & 0xFFFF) if a.mtu else [new]:
            out.append(struct.pack("<IIII", s, u, len(part), len(part) - incl + orig if part is new
                                   else len(part)) + part)
        n += 1
    with open(a.dst, "wb") as f:
        f.write(b"".join(out))
    print(f"{n} frames -> {a.dst} ({a.kind})")


if __name__ == "__main__":
    main()
