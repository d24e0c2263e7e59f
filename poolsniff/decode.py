"""L2-L4 decoding with ``struct``: link layer, IPv4/IPv6, TCP/UDP.

Link types: Ethernet (with 802.1Q/802.1ad/QinQ tags, MPLS label stacks, PPPoE
sessions), Linux SLL and SLL2, raw IPv4/IPv6 (DLT_RAW 12/14/101, LINKTYPE_IPV4/IPV6
228/229), BSD loopback (NULL 0 and LOOP 108), Cisco HDLC (104), PPP (9, 50) and PPPoE
without Ethernet (51). Tunnels are opened to the packet inside:
GRE (with Ethernet, IP, or ERSPAN types I/II/III mirror traffic inside), VXLAN, Geneve,
GTP-U, IP-in-IP and IPv6-in-IPv4; flows are the inner packets' flows. Packets we cannot
decode return ``None`` and bump a counter in ``DecodeStats``; nothing here raises on
packet content.

This module is the reference decoder: the batch path's header pass (C, or numpy without
a compiler) takes the common shapes itself and hands every other record here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from poolsniff.defrag import Defragmenter
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
LINK_C_HDLC = 104               # Cisco HDLC (router and WAN captures): an EtherType at 2
LINK_PPP = (9, 50)              # PPP, PPP in HDLC-like framing
LINK_PPP_ETHER = 51             # a PPPoE session header, then PPP

IPV6_EXT = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH
IPV6_FRAG = 44

_H = struct.Struct("!H")
_I = struct.Struct("!I")
_HH = struct.Struct("!HH")
_TCP = struct.Struct("!HHIIBB")


@dataclass
class DecodeStats:
    """Counters for what decode skipped (all are counted, none raise)."""

    packets: int = 0
    decoded: int = 0
    reassembled: int = 0            # datagrams rebuilt from IP fragments
    skipped: dict[str, int] = field(default_factory=dict)
    # what happened to datagrams rather than packets (IP reassembly): reported as anomalies
    events: dict[str, int] = field(default_factory=dict)
    # where the IP and transport headers of the last packet decoded start (what the
    # duplicate key reads, poolsniff.dedup.dup_key); -1 for a reassembled datagram
    ip_at: int = 0
    l4_at: int = 0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def event(self, what: str) -> None:
        self.events[what] = self.events.get(what, 0) + 1

    def merge(self, other: DecodeStats) -> None:
        self.packets += other.packets
        self.decoded += other.decoded
        self.reassembled += other.reassembled
        add_counts(self.skipped, other.skipped)
        add_counts(self.events, other.events)


def add_counts(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add the counts of ``more`` into ``into`` (returned)."""
    for k, v in more.items():
        into[k] = into.get(k, 0) + v
    return into


#: link types with an EtherType: (offset of the EtherType, offset of the payload)
_ETHERTYPE_AT = {LINK_ETHERNET: (12, 14), LINK_SLL: (14, 16), LINK_SLL2: (0, 20),
                 LINK_C_HDLC: (2, 4)}

ETH_MPLS = (0x8847, 0x8848)         # MPLS unicast / multicast label stacks
ETH_PPPOE = 0x8864                  # PPPoE session stage (broadband access networks)
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
MAX_MPLS_LABELS = 8
MAX_VLAN_TAGS = 4

# Tunnels opened to reach the packet inside (mirror ports deliver traffic in them: ERSPAN and
# VXLAN remote mirroring; GTP-U and GRE on carrier links). A packet inside more than
# MAX_ENCAP tunnels is skipped (counted).
MAX_ENCAP = 4
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
GRE_TEB = 0x6558                    # transparent Ethernet bridging (Ethernet inside)
GRE_ERSPAN_2 = 0x88BE               # ERSPAN type I (no sequence number) and II
GRE_ERSPAN_3 = 0x22EB
UDP_VXLAN = 4789
UDP_GENEVE = 6081
UDP_GTPU = 2152
#: what a tunnel header says comes next: Ethernet or an IP header
INNER_ETHER = 1
INNER_IP = 2


def ether_to_ip(buf: bytes, etype_off: int, off: int, end: int, stats: DecodeStats,
                nested: bool = False) -> int | None:
    """The offset of the IP header after an EtherType at ``etype_off`` (payload at ``off``):
    802.1Q/802.1ad tags, an MPLS label stack and a PPPoE session header are passed over
    (``nested``: inside Ethernet over MPLS already, where another label stack is refused)."""
    if end < off:
        stats.skip("link.short")
        return None
    etype = _H.unpack_from(buf, etype_off)[0]
    tags = 0
    while etype in ETH_VLAN:                  # 802.1Q / 802.1ad / QinQ tags
        if end < off + 4 or tags >= MAX_VLAN_TAGS:
            stats.skip("link.vlan_short")
            return None
        etype = _H.unpack_from(buf, off + 2)[0]
        off += 4
        tags += 1
    if etype == ETH_PPPOE:
        return _pppoe(buf, off, end, stats)
    if etype in ETH_MPLS:
        if nested:
            stats.skip("link.mpls_deep")
            return None
        for _ in range(MAX_MPLS_LABELS):
            if end < off + 4:
                stats.skip("link.mpls_short")
                return None
            bottom = buf[off + 2] & 1
            off += 4
            if bottom:
                break
        else:
            stats.skip("link.mpls_deep")
            return None
        if end < off + 1:
            stats.skip("link.mpls_short")
            return None
        nib = buf[off] >> 4
        if nib in (4, 6):
            return off
        if nib == 0 and end >= off + 4 + 14:
            # a pseudowire control word, then an Ethernet frame (Ethernet over MPLS)
            return ether_to_ip(buf, off + 4 + 12, off + 4 + 14, end, stats, nested=True)
        stats.skip("link.mpls_unknown_payload")
        return None
    if etype == ETH_IPV4 or etype == ETH_IPV6:
        return off
    stats.skip("link.not_ip")
    return None


def _pppoe(buf: bytes, off: int, end: int, stats: DecodeStats) -> int | None:
    """A PPPoE session header at ``off`` (RFC 2516), then a PPP protocol number."""
    if end < off + 8 or buf[off] != 0x11 or buf[off + 1] != 0:
        stats.skip("link.pppoe_bad")
        return None
    ppp = _H.unpack_from(buf, off + 6)[0]
    if ppp not in (PPP_IPV4, PPP_IPV6):
        stats.skip("link.not_ip")          # LCP, IPCP, ...: the session's control traffic
        return None
    return off + 8


def _ppp(buf: bytes, stats: DecodeStats) -> int | None:
    """PPP (RFC 1661/1662): an optional ff 03 address and control, then the protocol in two
    bytes, or in one when it was compressed (an odd first byte)."""
    off = 2 if buf[:2] == b"\xff\x03" else 0
    if len(buf) < off + 1:
        stats.skip("link.short")
        return None
    if buf[off] & 1:
        proto, off = buf[off], off + 1
    elif len(buf) >= off + 2:
        proto, off = _H.unpack_from(buf, off)[0], off + 2
    else:
        stats.skip("link.short")
        return None
    if proto not in (PPP_IPV4, PPP_IPV6):
        stats.skip("link.not_ip")
        return None
    return off


def link_to_ip(linktype: int, buf: bytes, stats: DecodeStats) -> int | None:
    """The offset of a frame's IP header (its version nibble tells IPv4 from IPv6)."""
    at = _ETHERTYPE_AT.get(linktype)
    if at is not None:
        etype_off, off = at
        if len(buf) < off:
            stats.skip("link.short")
            return None
        return ether_to_ip(buf, etype_off, off, len(buf), stats)
    if linktype in LINK_RAW or linktype == LINK_IPV4 or linktype == LINK_IPV6:
        return 0
    if linktype in LINK_PPP:
        return _ppp(buf, stats)
    if linktype == LINK_PPP_ETHER:
        return _pppoe(buf, 0, len(buf), stats)
    if linktype == LINK_NULL or linktype == LINK_LOOP:
        if len(buf) < 4:
            stats.skip("link.short")
            return None
        # NULL is in the capturing host's byte order; LOOP is network order.
        fam_le = int.from_bytes(buf[:4], "little")
        fam_be = int.from_bytes(buf[:4], "big")
        fam = fam_be if linktype == LINK_LOOP else (fam_le if fam_le < 256 else fam_be)
        if fam == 2 or fam in (24, 28, 30, 10):    # AF_INET; AF_INET6 on BSDs, macOS, Linux
            return 4
        stats.skip("link.not_ip")
        return None
    stats.skip(f"link.unsupported_{linktype}")
    return None


def decode(frame: int, ts: float, linktype: int, buf: bytes, stats: DecodeStats,
           frags: Defragmenter | None = None) -> Segment | None:
    """Decode one frame into a TCP/UDP ``Segment`` (of the innermost packet, when tunnels
    carry it), or count why not. With ``frags`` (the scanner's, which lives as long as the
    capture) IP fragments are held there, and the fragment that completes a datagram
    decodes as the whole datagram; without, a fragment is counted and skipped."""
    stats.packets += 1
    off = link_to_ip(linktype, buf, stats)
    if off is None:
        return None
    bound = len(buf)                        # an inner packet ends where its carrier does
    frame_bytes = buf
    for _depth in range(MAX_ENCAP + 1):
        seg_or_inner = _ip(frame, ts, buf, off, bound, stats, frags)
        if not isinstance(seg_or_inner, tuple):
            if seg_or_inner is not None and buf is not frame_bytes:
                stats.ip_at = stats.l4_at = -1      # a reassembled datagram: not in the frame
            return seg_or_inner
        buf, off, bound = seg_or_inner
    stats.skip("tunnel.too_deep")
    return None


def _ip(frame: int, ts: float, buf: bytes, off: int, bound: int, stats: DecodeStats,
        frags: Defragmenter | None = None) -> Segment | tuple[bytes, int, int] | None:
    """The IP packet at ``off`` (captured bytes end at ``bound``): a Segment, None (counted),
    or (buffer, offset, bound) of the IP packet to decode next: the one a tunnel in it
    carries, or the whole datagram this fragment completes (a buffer of its own)."""
    if bound < off + 20:
        stats.skip("ip.short")
        return None
    ver = buf[off] >> 4
    if ver == 4:
        ihl = (buf[off] & 0x0F) * 4
        total = _H.unpack_from(buf, off + 2)[0]
        if ihl < 20 or bound < off + ihl:
            stats.skip("ip.bad_header_length")
            return None
        if 0 < total < ihl:                                # a total shorter than the header
            stats.skip("ip.bad_total_length")
            return None
        end = off + total if total >= ihl else bound      # total 0: TSO capture
        declared = end
        if end > bound:
            end = bound                                    # snaplen-truncated packet
        frag = _H.unpack_from(buf, off + 6)[0]
        proto = buf[off + 9]
        src = buf[off + 12:off + 16]
        dst = buf[off + 16:off + 20]
        if frag & 0x3FFF:                                  # MF set or offset > 0
            whole = _fragment(frags, stats, declared > bound, 0xFFFF - ihl,
                              (4, src, dst, proto, _H.unpack_from(buf, off + 4)[0]), ts,
                              (frag & 0x1FFF) * 8, bool(frag & 0x2000), buf[off + ihl:end], None)
            if whole is None:
                return None
            # the datagram as one packet: this header, its length and fragment fields mended
            hdr = bytearray(buf[off:off + ihl])
            _H.pack_into(hdr, 2, ihl + len(whole[0]))
            _H.pack_into(hdr, 6, frag & 0x4000)
            packet = bytes(hdr) + whole[0]
            return packet, 0, len(packet)
        l4 = off + ihl
        wirelen = declared - off
    elif ver == 6:
        if bound < off + 40:
            stats.skip("ip.short")
            return None
        plen = _H.unpack_from(buf, off + 4)[0]
        proto = buf[off + 6]
        src = buf[off + 8:off + 24]
        dst = buf[off + 24:off + 40]
        l4 = off + 40
        end = l4 + plen if plen else bound
        declared = end
        if end > bound:
            end = bound
        hops = 0
        while proto in IPV6_EXT or proto == IPV6_FRAG:
            if l4 + 8 > end or hops > 8:
                stats.skip("ip.bad_ext_header")
                return None
            if proto == IPV6_FRAG:
                fo = _H.unpack_from(buf, l4 + 2)[0]
                if fo & 0xFFF9:                            # offset > 0 or M flag
                    whole = _fragment(frags, stats, declared > bound, 0xFFFF,
                                      (6, src, dst, _I.unpack_from(buf, l4 + 4)[0]), ts,
                                      fo & 0xFFF8, bool(fo & 1), buf[l4 + 8:end], buf[l4])
                    if whole is None:
                        return None
                    # the datagram as one packet: this fixed header, the fragmentable part's
                    # first header next (the extension headers before it are not needed)
                    hdr = bytearray(buf[off:off + 40])
                    _H.pack_into(hdr, 4, len(whole[0]))
                    hdr[6] = whole[1]
                    packet = bytes(hdr) + whole[0]
                    return packet, 0, len(packet)
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
        stats.ip_at, stats.l4_at = off, l4
        return Segment(frame, ts, ver, src, dst, 6, sport, dport, flags, seq,
                       buf[l4 + hl:end], wirelen, declared - end)
    if proto == 17:
        if l4 + 8 > end:
            stats.skip("udp.short")
            return None
        sport, dport = _HH.unpack_from(buf, l4)
        if dport in _UDP_TUNNELS or sport == UDP_GTPU:
            inner = _udp_tunnel(buf, sport, dport, l4 + 8, end, stats)
            if inner != NOT_A_TUNNEL:
                return None if inner is None else (buf, inner, end)
        stats.decoded += 1
        stats.ip_at, stats.l4_at = off, l4
        return Segment(frame, ts, ver, src, dst, 17, sport, dport, 0, 0, buf[l4 + 8:end], wirelen,
                       0, _H.unpack_from(buf, off + 4)[0] if ver == 4 else -1)
    if proto == IPPROTO_IPIP or proto == IPPROTO_IPV6:
        return buf, l4, end
    if proto == IPPROTO_GRE:
        inner = _gre(buf, l4, end, stats)
        return None if inner is None else (buf, inner, end)
    stats.skip("l4.other")
    return None


def _fragment(frags: Defragmenter | None, stats: DecodeStats, truncated: bool, room: int,
              key: tuple[Any, ...], ts: float, offset: int, more: bool, data: bytes,
              info: Any) -> tuple[bytes, Any] | None:
    """An IP fragment: held in ``frags`` until its datagram is whole; then (payload, what its
    first fragment said), when the payload fits the ``room`` its IP header leaves. None
    otherwise, counted: the fragment skipped (``ip.fragment``; one the capture cut short,
    which cannot complete anything, ``ip.fragment_truncated``), a datagram too long an event."""
    if frags is None or truncated:
        stats.skip("ip.fragment_truncated" if frags is not None else "ip.fragment")
        return None
    whole = frags.add(key, ts, offset, more, data, info, stats)
    if whole is not None and len(whole[0]) > room:
        stats.event("ip.datagram_too_big")
        whole = None
    if whole is None:
        stats.skip("ip.fragment")
        return None
    stats.reassembled += 1
    return whole


_UDP_TUNNELS = (UDP_VXLAN, UDP_GENEVE, UDP_GTPU)
NOT_A_TUNNEL = -1


def _udp_tunnel(buf: bytes, sport: int, dport: int, at: int, end: int,
                stats: DecodeStats) -> int | None:
    """The inner IP header's offset of a VXLAN, Geneve or GTP-U payload at ``at``; None
    when it is that tunnel but cannot be opened (counted); NOT_A_TUNNEL when it is not a
    tunnel header at all (the datagram is then an ordinary one on that port)."""
    if dport == UDP_VXLAN:
        if end < at + 8 or not buf[at] & 0x08:             # the I flag: a VNI follows
            return NOT_A_TUNNEL
        return _inner(buf, INNER_ETHER, at + 8, end, stats, "vxlan")
    if dport == UDP_GENEVE:
        if end < at + 8 or buf[at] >> 6 != 0:              # version 0
            return NOT_A_TUNNEL
        start = at + 8 + (buf[at] & 0x3F) * 4
        ptype = _H.unpack_from(buf, at + 2)[0]
        if ptype == GRE_TEB:
            return _inner(buf, INNER_ETHER, start, end, stats, "geneve")
        if ptype in (ETH_IPV4, ETH_IPV6):
            return _inner(buf, INNER_IP, start, end, stats, "geneve")
        stats.skip("tunnel.geneve_unsupported")
        return None
    # GTP-U (3GPP TS 29.281): version 1, protocol type GTP, message G-PDU carries user IP
    if end < at + 8 or buf[at] >> 5 != 1 or not buf[at] & 0x10:
        return NOT_A_TUNNEL
    if buf[at + 1] != 0xFF:
        stats.skip("tunnel.gtpu_signalling")               # echo, error indication, end marker
        return None
    start = at + 8
    if buf[at] & 0x07:                                     # E, S or PN: 4 more bytes
        if end < start + 4:
            stats.skip("tunnel.gtpu_short")
            return None
        nxt = buf[start + 3]
        start += 4
        hops = 0
        while nxt:                                         # extension headers, 4-byte units
            if end < start + 4 or buf[start] == 0 or hops >= 8:
                stats.skip("tunnel.gtpu_short")
                return None
            start += buf[start] * 4
            if end < start:
                stats.skip("tunnel.gtpu_short")
                return None
            nxt = buf[start - 1]
            hops += 1
    return _inner(buf, INNER_IP, start, end, stats, "gtpu")


def _gre(buf: bytes, at: int, end: int, stats: DecodeStats) -> int | None:
    """The inner IP header's offset of a GRE packet at ``at`` (RFC 2784/2890; ERSPAN types I,
    II and III inside), or None (counted)."""
    if end < at + 4:
        stats.skip("tunnel.gre_short")
        return None
    flags, ptype = _HH.unpack_from(buf, at)
    if flags & 0x4007 or flags & 0x0F00:
        stats.skip("tunnel.gre_unsupported")               # source routing, PPTP's version 1
        return None
    start = at + 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    if ptype in (ETH_IPV4, ETH_IPV6):
        return _inner(buf, INNER_IP, start, end, stats, "gre")
    if ptype == GRE_TEB:
        return _inner(buf, INNER_ETHER, start, end, stats, "gre")
    if ptype == GRE_ERSPAN_2:
        # type I has no sequence number and no ERSPAN header; type II has both (8 bytes)
        return _inner(buf, INNER_ETHER, start + (8 if flags & 0x1000 else 0), end, stats, "erspan")
    if ptype == GRE_ERSPAN_3:
        if end < start + 12:
            stats.skip("tunnel.erspan_short")
            return None
        if (buf[start + 10] >> 2) & 0x1F != 0:             # frame type: only Ethernet
            stats.skip("tunnel.erspan_unsupported")
            return None
        extra = 8 if buf[start + 11] & 1 else 0            # O: a platform-specific subheader
        return _inner(buf, INNER_ETHER, start + 12 + extra, end, stats, "erspan")
    stats.skip("tunnel.gre_unsupported")
    return None


def _inner(buf: bytes, kind: int, at: int, end: int, stats: DecodeStats, name: str) -> int | None:
    """Where the IP header of a tunnel's payload at ``at`` starts (Ethernet passed over)."""
    if kind == INNER_ETHER:
        if end < at + 14:
            stats.skip(f"tunnel.{name}_short")
            return None
        return ether_to_ip(buf, at + 12, at + 14, end, stats)
    if end < at + 1 or buf[at] >> 4 not in (4, 6):
        stats.skip(f"tunnel.{name}_not_ip")
        return None
    return at
