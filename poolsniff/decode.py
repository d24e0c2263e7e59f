"""L2-L4 decoding with ``struct``: link layer, IPv4/IPv6, TCP/UDP.

Link types: Ethernet (with 802.1Q/802.1ad/QinQ tags), Linux SLL and SLL2, raw
IPv4/IPv6 (DLT_RAW 12/14/101, LINKTYPE_IPV4/IPV6 228/229), BSD loopback (NULL 0
and LOOP 108). Packets we cannot decode return ``None`` and bump a counter in
``DecodeStats``; nothing here raises on packet content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from poolsniff.model import Segment

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)

LINK_ETHERNET = 1
LINK_NULL = 0
LINK_LOOP = 108
LINK_RAW = (12, 14, 101)
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_SLL = 113
LINK_SLL2 = 276

IPV6_EXT = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH
IPV6_FRAG = 44

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_TCP = struct.Struct("!HHIIBB")


@dataclass
class DecodeStats:
    """Counters for what decode skipped (all are counted, none raise)."""

    packets: int = 0
    decoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def merge(self, other: DecodeStats) -> None:
        self.packets += other.packets
        self.decoded += other.decoded
        for k, v in other.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v


#: link types with an EtherType: (offset of the EtherType, offset of the payload)
_ETHERTYPE_AT = {LINK_ETHERNET: (12, 14), LINK_SLL: (14, 16), LINK_SLL2: (0, 20)}


def link_to_ip(linktype: int, buf: bytes, stats: DecodeStats) -> tuple[int, int] | None:
    """Return (offset of the IP header, IP version hint 4/6/0) for a frame."""
    at = _ETHERTYPE_AT.get(linktype)
    if at is not None:
        etype_off, off = at
        if len(buf) < off:
            stats.skip("link.short")
            return None
        etype = _H.unpack_from(buf, etype_off)[0]
        tags = 0
        while etype in ETH_VLAN:                  # 802.1Q / 802.1ad / QinQ tags
            if len(buf) < off + 4 or tags >= 4:
                stats.skip("link.vlan_short")
                return None
            etype = _H.unpack_from(buf, off + 2)[0]
            off += 4
            tags += 1
        if etype == ETH_IPV4:
            return off, 4
        if etype == ETH_IPV6:
            return off, 6
        stats.skip("link.not_ip")
        return None
    if linktype in LINK_RAW or linktype == LINK_IPV4 or linktype == LINK_IPV6:
        return 0, 0
    if linktype == LINK_NULL or linktype == LINK_LOOP:
        if len(buf) < 4:
            stats.skip("link.short")
            return None
        # NULL is in the capturing host's byte order; LOOP is network order.
        fam_le = int.from_bytes(buf[:4], "little")
        fam_be = int.from_bytes(buf[:4], "big")
        fam = fam_be if linktype == LINK_LOOP else (fam_le if fam_le < 256 else fam_be)
        if fam == 2:
            return 4, 4
        if fam in (24, 28, 30, 10):   # AF_INET6 on BSDs, macOS, Linux
            return 4, 6
        stats.skip("link.not_ip")
        return None
    stats.skip(f"link.unsupported_{linktype}")
    return None


def decode(frame: int, ts: float, linktype: int, buf: bytes, stats: DecodeStats) -> Segment | None:
    """Decode one frame into a TCP/UDP ``Segment``, or count why not."""
    stats.packets += 1
    loc = link_to_ip(linktype, buf, stats)
    if loc is None:
        return None
    off, _hint = loc
    if len(buf) < off + 20:
        stats.skip("ip.short")
        return None
    ver = buf[off] >> 4
    if ver == 4:
        ihl = (buf[off] & 0x0F) * 4
        total = _H.unpack_from(buf, off + 2)[0]
        if ihl < 20 or len(buf) < off + ihl:
            stats.skip("ip.bad_header_length")
            return None
        if 0 < total < ihl:                                # a total shorter than the header
            stats.skip("ip.bad_total_length")
            return None
        end = off + total if total >= ihl else len(buf)   # total 0: TSO capture
        declared = end
        if end > len(buf):
            end = len(buf)                                 # snaplen-truncated packet
        frag = _H.unpack_from(buf, off + 6)[0]
        if frag & 0x3FFF:                                  # MF set or offset > 0
            stats.skip("ip.fragment")
            return None
        proto = buf[off + 9]
        src = buf[off + 12:off + 16]
        dst = buf[off + 16:off + 20]
        l4 = off + ihl
        wirelen = declared - off
    elif ver == 6:
        if len(buf) < off + 40:
            stats.skip("ip.short")
            return None
        plen = _H.unpack_from(buf, off + 4)[0]
        proto = buf[off + 6]
        src = buf[off + 8:off + 24]
        dst = buf[off + 24:off + 40]
        l4 = off + 40
        end = l4 + plen if plen else len(buf)
        declared = end
        if end > len(buf):
            end = len(buf)
        hops = 0
        while proto in IPV6_EXT or proto == IPV6_FRAG:
            if l4 + 8 > end or hops > 8:
                stats.skip("ip.bad_ext_header")
                return None
            if proto == IPV6_FRAG:
                fo = _H.unpack_from(buf, l4 + 2)[0]
                if fo & 0xFFF9:                            # offset > 0 or M flag
                    stats.skip("ip.fragment")
                    return None
                nxt, ln = buf[l4], 8
            elif proto == 51:
                nxt, ln = buf[l4], (buf[l4 + 1] + 2) * 4
            else:
                nxt, ln = buf[l4], (buf[l4 + 1] + 1) * 8
            proto = nxt
            l4 += ln
            hops += 1
        wirelen = declared - off
    else:
        stats.skip("ip.bad_version")
        return None
    if proto == 6:
        if l4 + 20 > end:
            stats.skip("tcp.short")
            return None
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(buf, l4)
        hl = (doff >> 4) * 4
        if hl < 20 or l4 + hl > end:
            stats.skip("tcp.bad_data_offset")
            return None
        stats.decoded += 1
        return Segment(frame, ts, ver, src, dst, 6, sport, dport, flags, seq,
                       buf[l4 + hl:end], wirelen, declared - end)
    if proto == 17:
        if l4 + 8 > end:
            stats.skip("udp.short")
            return None
        sport, dport = _HH.unpack_from(buf, l4)
        stats.decoded += 1
        return Segment(frame, ts, ver, src, dst, 17, sport, dport, 0, 0, buf[l4 + 8:end], wirelen)
    stats.skip("l4.other")
    return None
