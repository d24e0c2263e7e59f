#!/usr/bin/env python3
"""Wrap every frame of an Ethernet pcap in a tunnel, to measure poolsniff on a mirror feed.

    python3 bench/encap.py benign.pcap benign_vxlan.pcap --kind vxlan
    poolsniff scan benign_vxlan.pcap -f json        # the same hosts as benign.pcap

Kinds: vxlan (UDP 4789), erspan2 (GRE with sequence numbers, ERSPAN type II header), pppoe
and mpls (the IPv4 frames get a PPPoE session header or one MPLS label; others stay as
they are). The outer addresses are 192.0.2.1 -> 192.0.2.2 (documentation range).
"""

from __future__ import annotations

import argparse
import struct

MAC = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"


def _ip4(payload: bytes, proto: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                       bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + payload


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
        out.append(struct.pack("<IIII", s, u, len(new), len(new) - incl + orig) + new)
        n += 1
    with open(a.dst, "wb") as f:
        f.write(b"".join(out))
    print(f"{n} frames -> {a.dst} ({a.kind})")


if __name__ == "__main__":
    main()
