"""The batch fast path: headers of a whole block of records decoded in one pass.

For the common case (Ethernet with up to two VLAN tags, or raw IP; IPv4, or IPv6
without extension headers; TCP or UDP; not a fragment) every header field of a block is read with vectorised
gathers, packets are grouped by 5-tuple, flows are created once per group and
packet/byte counters are added in bulk. Python touches a packet only when it
matters: a SYN, a DNS message, or payload of a flow that is still undecided or
is mining. Everything else (IPv6 extension headers, other link types, odd headers) takes the
per-packet decoder, in order. Both paths share the per-packet handlers of
:class:`~poolsniff.pipeline.Scanner`, so they give the same answer; a test
checks it on every capture of the suite.

The header pass and the pcap record index run in C (``poolsniff/_fastpath.c``, built by
``pip install``) when the extension is there, else with numpy gathers; both compute the
same columns (tests/test_fastpath_c.py); see :mod:`poolsniff.native`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from poolsniff import native
from poolsniff.decode import UDP_GENEVE, UDP_GTPU, UDP_VXLAN
from poolsniff.dedup import keys_numpy
from poolsniff.hashing import HASH_K1, HASH_K2, HASH_K3, endpoint_hash, flow_hash
from poolsniff.model import Segment
from poolsniff.pipeline import TH_ACK, TH_FIN, TH_RST, TH_SYN, Flow, Stats, flow_key, gc_between_batches
from poolsniff.sources.pcapfile import RecordBlock

if TYPE_CHECKING:
    from poolsniff.pipeline import Scanner

_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
_UDP_TUNNEL_PORTS = np.array([UDP_VXLAN, UDP_GENEVE, UDP_GTPU])
_K1 = np.uint64(HASH_K1)
_K2 = np.uint64(HASH_K2)
_K3 = np.uint64(HASH_K3)


def _fold(a: np.ndarray, at: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """Addresses folded to 64 bits: IPv4 as is, IPv6 as its high half XOR its low half."""
    w0 = _be32(a, at).astype(np.uint64)
    hi = (w0 << np.uint64(32)) | _be32(a, at + 4).astype(np.uint64)
    lo = (_be32(a, at + 8).astype(np.uint64) << np.uint64(32)) | _be32(a, at + 12).astype(np.uint64)
    return np.where(v6, hi ^ lo, w0)


def _count(st: Stats, blk: RecordBlock, common: np.ndarray, lead: bool) -> None:
    """The block's packet counters (the per-packet path counts its own; of --jobs parts, the
    lead counts them) and its time span (every part)."""
    if lead:
        st.packets += len(blk)
        st.bytes += int(blk.incl.sum())
        st.decode.packets += len(common)
        st.decode.decoded += len(common)
    if len(common):
        tsc = blk.ts[common]
        st.saw(float(tsc.min()), float(tsc.max()))


def _feed_plain(sc: Scanner, blk: RecordBlock) -> None:
    buf = blk.buf
    ends = (blk.offs + blk.incl).tolist()
    sc.feed([(f, t, lt, buf[o:e]) for f, t, lt, o, e in
             zip(blk.frame.tolist(), blk.ts.tolist(), blk.linktype.tolist(), blk.offs.tolist(), ends)])


def _u8(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Bytes at i; an index past the buffer reads its last byte. Only packets that the
    length masks reject ever read there, so clamping each index (never a header's base)
    keeps every accepted field exact."""
    return a[np.minimum(i, len(a) - 1)]


def _be16(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    return (_u8(a, i).astype(np.int64) << 8) | _u8(a, i + 1)


def _be32(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    return (_be16(a, i) << 16) | _be16(a, i + 2)


HEADER_COLUMNS = ("ok", "v6", "is_tcp", "alen", "src_at", "dst_at", "sport", "dport", "pstart",
                  "plen", "missing", "wirelen", "flags", "seq", "ea", "h", "dupkey")


class Headers:
    """L2-L4 fields of every record of a block, one int64 array per field (``ea``, ``h``:
    uint64). ``ok`` marks the records the batch path takes (Ethernet with up to two VLAN
    tags or raw IP; IPv4 unfragmented or IPv6 without extension headers; TCP or UDP with a
    whole header); every other field is 0 where ``ok`` is 0, and the TCP-only fields
    (``missing``, ``flags``, ``seq``) are 0 for UDP.

    ``src_at``/``dst_at``/``pstart`` are positions in the block's buffer, ``plen`` the payload
    captured, ``missing`` the TCP payload the snap length cut off, ``wirelen`` the IP length,
    ``ea`` the sender's endpoint hash (:func:`~poolsniff.hashing.endpoint_hash`) and ``h``
    the 5-tuple's hash (:func:`~poolsniff.hashing.flow_hash`, the same both ways), ``dupkey``
    the packet's duplicate key (:func:`~poolsniff.dedup.dup_key`; uint64)."""

    __slots__ = HEADER_COLUMNS

    ok: np.ndarray
    v6: np.ndarray
    is_tcp: np.ndarray
    alen: np.ndarray
    src_at: np.ndarray
    dst_at: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    pstart: np.ndarray
    plen: np.ndarray
    missing: np.ndarray
    wirelen: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    ea: np.ndarray
    h: np.ndarray
    dupkey: np.ndarray

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        for k in HEADER_COLUMNS:
            setattr(self, k, cols[k])


def headers_c(blk: RecordBlock) -> Headers:
    """The header pass in C (poolsniff/_fastpath.c): one loop over the records."""
    fp = native.fastpath
    assert fp is not None
    n = len(blk)
    raw = fp.parse_headers(blk.buf, np.ascontiguousarray(blk.offs, np.int64),
                           np.ascontiguousarray(blk.incl, np.int64),
                           np.ascontiguousarray(blk.linktype, np.int64))
    m = np.frombuffer(raw, np.int64).reshape(len(HEADER_COLUMNS), n)
    cols = dict(zip(HEADER_COLUMNS, m))
    cols["ok"] = cols["ok"].astype(bool)
    cols["v6"] = cols["v6"].astype(bool)
    cols["is_tcp"] = cols["is_tcp"].astype(bool)
    cols["ea"] = cols["ea"].view(np.uint64)
    cols["h"] = cols["h"].view(np.uint64)
    cols["dupkey"] = cols["dupkey"].view(np.uint64)
    return Headers(cols)


def headers_numpy(blk: RecordBlock) -> Headers:
    """The same header pass with numpy gathers (used where the C extension is not built)."""
    a = np.frombuffer(blk.buf, np.uint8)
    if not len(a):                  # only empty records: give the gathers one byte to read
        a = np.zeros(1, np.uint8)
    base = blk.offs
    incl = blk.incl
    lt = blk.linktype
    cap_end = base + incl
    # -- link layer -------------------------------------------------------------------------
    eth = lt == 1
    raw = (lt == 101) | (lt == 12) | (lt == 14) | (lt == 228) | (lt == 229)
    ip = np.where(eth, base + 14, base)
    et = np.where(eth & (incl >= 14), _be16(a, base + 12), 0)
    for _ in range(2):                                   # up to two VLAN tags (QinQ)
        tagged = eth & np.isin(et, _VLAN) & (ip + 4 <= cap_end)
        et = np.where(tagged, _be16(a, ip + 2), et)
        ip = np.where(tagged, ip + 4, ip)
    vb = _u8(a, ip)
    ver = vb >> 4
    v4 = ((eth & (et == 0x0800)) | (raw & (ver == 4))) & (ver == 4) & (ip + 20 <= cap_end)
    v6 = ((eth & (et == 0x86DD)) | (raw & (ver == 6))) & (ver == 6) & (ip + 40 <= cap_end)
    # -- IPv4 -------------------------------------------------------------------------------
    ihl = (vb & 15).astype(np.int64) * 4
    tot = _be16(a, ip + 2)
    v4 &= (ihl >= 20) & (ip + ihl <= cap_end) & ((_be16(a, ip + 6) & 0x3FFF) == 0) \
        & ((tot == 0) | (tot >= ihl))      # a lying total length: the per-packet decoder counts it
    # -- IPv6 (no extension headers; those take the per-packet decoder) ---------------------
    plen6 = _be16(a, ip + 4)
    proto = np.where(v6, _u8(a, ip + 6), _u8(a, ip + 9))
    ok = (v4 | v6) & ((proto == 6) | (proto == 17))
    declared = np.where(v6, np.where(plen6 > 0, ip + 40 + plen6, cap_end),
                        np.where(tot >= ihl, ip + tot, cap_end))
    end = np.minimum(declared, cap_end)
    l4 = ip + np.where(v6, 40, ihl)
    is_tcp = proto == 6
    doff = (_u8(a, l4 + 12) >> 4).astype(np.int64) * 4
    ok &= np.where(is_tcp, (l4 + 20 <= end) & (doff >= 20) & (l4 + doff <= end), l4 + 8 <= end)
    # tunnels (VXLAN, Geneve, GTP-U) are opened by the per-packet decoder
    ok &= is_tcp | ~(np.isin(_be16(a, l4 + 2), _UDP_TUNNEL_PORTS) | (_be16(a, l4) == UDP_GTPU))
    v6 &= ok
    is_tcp &= ok
    src_at = np.where(v6, ip + 8, ip + 12)
    dst_at = np.where(v6, ip + 24, ip + 16)
    sport = _be16(a, l4)
    dport = _be16(a, l4 + 2)
    pstart = l4 + np.where(is_tcp, doff, 8)
    # the 5-tuple hash, the same for both directions
    ea = (_fold(a, src_at, v6) * _K3) ^ sport.astype(np.uint64)
    eb = (_fold(a, dst_at, v6) * _K3) ^ dport.astype(np.uint64)
    h = (np.minimum(ea, eb) * _K1) ^ (np.maximum(ea, eb) * _K2)
    zero = np.int64(0)
    cols = {
        "ok": ok, "v6": v6, "is_tcp": is_tcp,
        "alen": np.where(ok, np.where(v6, 16, 4), zero), "src_at": np.where(ok, src_at, zero),
        "dst_at": np.where(ok, dst_at, zero), "sport": np.where(ok, sport, zero),
        "dport": np.where(ok, dport, zero), "pstart": np.where(ok, pstart, zero),
        "plen": np.where(ok, np.maximum(end - pstart, 0), zero),
        "missing": np.where(is_tcp, declared - end, zero), "wirelen": np.where(ok, declared - ip, zero),
        "flags": np.where(is_tcp, _u8(a, l4 + 13), 0).astype(np.int64),
        "seq": np.where(is_tcp, _be32(a, l4 + 4), zero),
        "ea": np.where(ok, ea, np.uint64(0)), "h": np.where(ok, h, np.uint64(0)),
        "dupkey": np.where(is_tcp, keys_numpy(
            is_tcp, v6, ea, eb, np.where(v6, _be32(a, ip) & 0xFFFFF, _be16(a, ip + 4)),
            declared - ip, (end > pstart) | (declared > end), _be32(a, l4 + 4), _be32(a, l4 + 8),
            _be16(a, l4 + 16), _u8(a, l4 + 13).astype(np.int64)), np.uint64(0)),
    }
    return Headers(cols)


def headers(blk: RecordBlock) -> Headers:
    return headers_c(blk) if native.c_engine() is not None else headers_numpy(blk)


class _Groups:
    """The block's TCP packets grouped by 5-tuple. Arrays over packets are indexed like
    ``tcp`` (record indices); arrays and lists over groups by group id (ids follow the
    5-tuple hash; ``order`` lists them by first packet)."""

    __slots__ = ("tcp", "gid", "first", "order", "n", "pos", "flows", "keys", "slow", "flip",
                 "active", "side")

    def __init__(self, tcp: np.ndarray, gid: np.ndarray, first: np.ndarray) -> None:
        self.tcp = tcp
        self.gid = gid
        self.first = first                  # each group's first packet (position in tcp)
        self.order = np.argsort(first, kind="stable")
        self.n = len(first)
        self.pos = np.arange(len(tcp))
        self.flows: list[Flow | None] = [None] * self.n     # None: the per-packet handlers decide
        self.keys: list[tuple[Any, ...] | None] = [None] * self.n
        self.slow: list[int] = []           # groups that take the per-packet handlers
        self.flip = np.zeros(self.n, np.int64)   # 1: the group's first packet is from side 1
        self.active = np.zeros(self.n, bool)     # its flow is not decided 'other'
        self.side = np.empty(0, np.int64)


def feed_block(sc: Scanner, blk: RecordBlock) -> None:
    """Feed one block of records: header pass, grouping by 5-tuple, flows resolved once per
    group, counters and closing in bulk, then the packets Python must see, in order."""
    n = len(blk)
    if n == 0:
        return
    gc_between_batches()
    hd = headers(blk)
    common = np.flatnonzero(hd.ok)
    fallback = np.flatnonzero(~hd.ok)
    dns, others_dns, tcp = _split(sc, hd, common)
    groups = None
    if len(tcp):
        _uniq, first, gid = np.unique(hd.h[tcp], return_index=True, return_inverse=True)
        if len(sc.flows) + len(first) > sc.max_flows and (
                len(tcp) < 2 * len(first) or not _evictions_known(sc, blk, hd, tcp[first])):
            # the flow table may overflow inside this block, and either which flows are evicted
            # would depend on the exact packet order, or the block is mostly one-packet flows (a
            # scan or flood: cheaper packet by packet than as groups, 1 M SYNs 8.7 s against
            # 11-13 s): this block takes the per-packet path
            _feed_plain(sc, blk)
            return
    # the records the C/numpy pass cannot take, decoded now: their duplicate keys join the
    # block's, and _dispatch hands them on in capture order
    buf = blk.buf
    ends = blk.offs + blk.incl
    rebuilt: list[int] = []
    slow = dict(zip(fallback.tolist(), sc.decode_all(
        [(int(blk.frame[i]), float(blk.ts[i]), int(blk.linktype[i]), buf[int(blk.offs[i]):int(ends[i])])
         for i in fallback.tolist()], rebuilt)))
    counted = common                    # the records the decoder did not count
    regroup = False                     # the records to split and group are not those above
    taken = _take_reassembled(sc, blk, hd, fallback[rebuilt], slow,
                              len(first) if len(tcp) else 0) if rebuilt else None
    if taken is not None:
        # TCP datagrams reassembled from IP fragments join the block as records of their
        # own (their flows stay on the bulk path: a mirror whose full-size frames are all
        # fragmented on its way took 4x as long with them on the per-packet handlers)
        blk, hd, done = taken
        for i in done.tolist():
            del slow[i]
        fallback = np.setdiff1d(fallback, done, assume_unique=True)
        common = np.flatnonzero(hd.ok)
        regroup = True
    dup = _duplicates(sc, blk, hd, slow)
    live = common
    if dup is not None and dup[common].any():
        # mirror-port copies: decoded and counted as such, never handed on
        if sc.lead:
            sc.stats.duplicates += int(np.count_nonzero(dup[common]))
        live = common[~dup[common]]
        regroup = True
    if regroup:
        dns, others_dns, tcp = _split(sc, hd, live)
        if len(tcp):
            _uniq, first, gid = np.unique(hd.h[tcp], return_index=True, return_inverse=True)
    if len(tcp):
        groups = _Groups(tcp, gid, first)
    _count(sc.stats, blk, counted, sc.lead)
    interesting = [fallback, dns, others_dns]
    tcp_want = np.empty(0, np.int64)
    if groups is not None:
        mixed = {flow_key(d[0].src, d[0].sport, d[0].dst, d[0].dport)
                 for d in slow.values() if d is not None and d[0].proto == 6}
        _resolve(sc, blk, hd, groups, mixed)
        tcp_want = _bulk(sc, blk, hd, groups)
        interesting.append(tcp_want)
    # 0 tcp, 1 fallback, 2 dns, 3 another part's dns, 4 DNS over TCP only (the flow path
    # does not want the packet; dtcp: every part's port-53 TCP segments that carry something)
    kind = np.zeros(n, np.int8)
    kind[fallback] = 1
    kind[dns] = 2
    kind[others_dns] = 3
    dtcp = _dns_over_tcp(hd, live)
    if len(dtcp):
        only = np.setdiff1d(dtcp, tcp_want, assume_unique=True)
        kind[only] = 4
        interesting.append(only)
    _dispatch(sc, blk, hd, np.sort(np.concatenate(interesting)), kind, groups, slow, dup, dtcp)
    if groups is not None:
        _reorder(sc, groups)
    sc.end_batch(n)


def _take_reassembled(sc: Scanner, blk: RecordBlock, hd: Headers, at: np.ndarray,
                      slow: dict[int, tuple[Segment, int] | None], n_groups: int
                      ) -> tuple[RecordBlock, Headers, np.ndarray] | None:
    """The records (``at``) whose decoded segment is a TCP datagram reassembled from
    fragments, as records the header pass could have taken: their columns from the decoded
    segment (addresses and payload appended to the block's buffer; no duplicate key, as the
    decoder gives them none). None when there are none, or when the flow table could fill
    inside the block (which flows are evicted would then depend on the packet order: the
    segments stay with the per-packet handlers, as the block's size check decided)."""
    segs = [(i, slow[i][0]) for i in at.tolist()             # type: ignore[index]
            if slow[i] is not None and slow[i][0].proto == 6]  # type: ignore[index]
    if not segs:
        return None
    if len(sc.flows) + n_groups + len(segs) > sc.max_flows:
        return None
    parts: list[bytes] = [blk.buf]
    at_ = len(blk.buf)
    sa, da, ps = [], [], []
    for _i, seg in segs:                    # addresses and payload, after the block's bytes
        sa.append(at_)
        da.append(at_ + len(seg.src))
        ps.append(at_ + 2 * len(seg.src))
        parts += (seg.src, seg.dst, seg.payload)
        at_ += 2 * len(seg.src) + len(seg.payload)
    cols = {k: getattr(hd, k).copy() for k in HEADER_COLUMNS}
    rows = np.array([i for i, _seg in segs], np.int64)
    for k, vals in (
            ("ok", [True] * len(segs)), ("v6", [seg.version == 6 for _i, seg in segs]),
            ("is_tcp", [True] * len(segs)), ("alen", [len(seg.src) for _i, seg in segs]),
            ("src_at", sa), ("dst_at", da), ("sport", [seg.sport for _i, seg in segs]),
            ("dport", [seg.dport for _i, seg in segs]), ("pstart", ps),
            ("plen", [len(seg.payload) for _i, seg in segs]),
            ("missing", [seg.missing for _i, seg in segs]),
            ("wirelen", [seg.wirelen for _i, seg in segs]), ("flags", [seg.flags for _i, seg in segs]),
            ("seq", [seg.seq for _i, seg in segs]),
            ("ea", [endpoint_hash(seg.src, seg.sport) for _i, seg in segs]),
            ("h", [flow_hash(seg.src, seg.sport, seg.dst, seg.dport) for _i, seg in segs]),
            ("dupkey", [0] * len(segs))):
        cols[k][rows] = np.array(vals, dtype=cols[k].dtype)
    ts = blk.ts[rows]
    sc.stats.saw(float(ts.min()), float(ts.max()))     # as handing the segments on would
    return (RecordBlock(b"".join(parts), blk.offs, blk.incl, blk.ts, blk.frame, blk.linktype),
            Headers(cols), rows)


def _dns_over_tcp(hd: Headers, live: np.ndarray) -> np.ndarray:
    """The block's port-53 TCP segments with payload, SYN, FIN or RST (of every part)."""
    t = live[hd.is_tcp[live]]
    t = t[(hd.sport[t] == 53) | (hd.dport[t] == 53)]
    if not len(t):
        return t
    return t[(hd.plen[t] > 0) | (hd.missing[t] > 0) | ((hd.flags[t] & (TH_SYN | TH_FIN | TH_RST)) != 0)]


def _duplicates(sc: Scanner, blk: RecordBlock, hd: Headers,
                slow: dict[int, tuple[Segment, int] | None]) -> np.ndarray | None:
    """Which records are copies of an earlier one (None without dedup)."""
    if sc.dedup is None:
        return None
    keys = hd.dupkey
    if slow:
        keys = keys.copy()
        for i, d in slow.items():
            if d is not None:
                keys[i] = d[1]
    return sc.dedup.mark(blk.frame, blk.ts, keys)


def _evictions_known(sc: Scanner, blk: RecordBlock, hd: Headers, firsts: np.ndarray) -> bool:
    """Will the block's new flows evict the same flows in the batch path as packet by packet?

    Packet by packet, each new flow past the cap evicts the table's front (least recently
    active) flow that is not mining (Scanner._evict); a flow the block touches moves to the
    back at its first packet and may turn mining. When the first E non-mining flows at the
    front (E: how far the block's new flows can take the table past its cap) are all
    untouched by the block, both paths evict exactly those, in that order, whatever the
    packets' order; otherwise the caller falls back to the per-packet path."""
    flows = sc.flows
    buf = blk.buf
    touched = set()
    new = 0
    for sa, da, ln, sp, dp in zip(hd.src_at[firsts].tolist(), hd.dst_at[firsts].tolist(),
                                  hd.alen[firsts].tolist(), hd.sport[firsts].tolist(),
                                  hd.dport[firsts].tolist()):
        key = flow_key(buf[sa:sa + ln], sp, buf[da:da + ln], dp)
        if key in flows:
            touched.add(key)
        else:
            new += 1
    need = len(flows) + new - sc.max_flows
    if need <= 0:
        return True
    for key, f in flows.items():
        if f.state == "mining":
            continue
        if key in touched:
            return False
        need -= 1
        if need == 0:
            return True
    return False            # the block's own new flows would be evicted


def _split(sc: Scanner, hd: Headers, common: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(DNS messages, DNS messages another --jobs part owns, TCP packets) of the block; of UDP
    only DNS matters."""
    sport, dport = hd.sport, hd.dport
    udp = common[~hd.is_tcp[common]]
    dns = udp[(sport[udp] == 53) | (dport[udp] == 53) | (sport[udp] == 5353)]
    tcp = common[hd.is_tcp[common]]
    others_dns = dns[:0]
    if sc.part is not None:
        # a --jobs part: the flows and DNS messages of the others are not ours (their DNS
        # answers still teach us pool endpoints)
        k, parts = sc.part
        mine = ((hd.h >> np.uint64(32)) % np.uint64(parts)) == np.uint64(k)     # hashing.part_of
        tcp = tcp[mine[tcp]]
        others_dns = dns[~mine[dns]]
        dns = dns[mine[dns]]
    return dns, others_dns, tcp


def _resolve(sc: Scanner, blk: RecordBlock, hd: Headers, gr: _Groups,
             mixed: set[tuple[Any, ...]]) -> None:
    """Each group's flow, found or created in the order of the groups' first packets; groups
    whose packets may split into two sessions, or that open with a reset, are left to the
    per-packet handlers."""
    tcp, gid, pos = gr.tcp, gr.gid, gr.pos
    ftcp = hd.flags[tcp]
    # a new connection (a SYN without ACK) after a FIN or RST of the same 5-tuple may start
    # a new flow: such groups take the per-packet path, which splits them exactly
    pure_syn = (ftcp & (TH_SYN | TH_ACK)) == TH_SYN
    last_syn = np.full(gr.n, -1, np.int64)
    np.maximum.at(last_syn, gid[pure_syn], pos[pure_syn])
    shut = (ftcp & (TH_FIN | TH_RST)) != 0
    first_shut = np.full(gr.n, len(tcp), np.int64)
    np.minimum.at(first_shut, gid[shut], pos[shut])
    reopen = (last_syn > first_shut).tolist()
    has_syn = (last_syn >= 0).tolist()
    flows = sc.flows
    st = sc.stats
    buf = blk.buf
    fi = tcp[gr.first[gr.order]]            # each group's first packet, groups in creation order
    for g, sa, da, ln, sp, dp, fl0, fr0, ts0 in zip(
            gr.order.tolist(), hd.src_at[fi].tolist(), hd.dst_at[fi].tolist(), hd.alen[fi].tolist(),
            hd.sport[fi].tolist(), hd.dport[fi].tolist(), hd.flags[fi].tolist(),
            blk.frame[fi].tolist(), blk.ts[fi].tolist()):
        s_ip = buf[sa:sa + ln]
        d_ip = buf[da:da + ln]
        key = flow_key(s_ip, sp, d_ip, dp)
        flow = flows.get(key)
        gr.keys[g] = key
        if key in mixed:
            # the flow also has packets only the per-packet decoder takes in this block
            # (IP fragments, IPv6 extension headers): all of its packets take the per-packet
            # handlers, in capture order, or the group's bulk counters and the fallback
            # packets would update the flow out of order
            gr.slow.append(g)
            continue
        if flow is not None and flow.closed and fl0 & (TH_SYN | TH_ACK) == TH_SYN and not reopen[g]:
            # a new connection on a closed 5-tuple (port reuse, a reconnecting miner, a looped
            # replay) that opens the group: the old flow ends here, as at Scanner._tcp's SYN
            del flows[key]
            sc._finish(flow)
            flow = None
        if reopen[g] or (flow is not None and has_syn[g] and flow.closed):
            gr.slow.append(g)
            continue
        if flow is None:
            if fl0 & TH_RST:
                gr.slow.append(g)              # the per-packet path decides (rare)
                continue
            seg = Segment(fr0, ts0, 6 if ln == 16 else 4, s_ip, d_ip, 6, sp, dp, fl0, 0, b"", 0)
            flow = Flow(key, seg, sc.file)
            flows[key] = flow
            st.flows += 1
            if len(flows) > sc.max_flows:
                sc._evict()
            sc._new_flow(flow, seg)
        elif sp != flow.ports[0] or s_ip != flow.ips[0]:
            gr.flip[g] = 1
        gr.flows[g] = flow
        gr.active[g] = flow.state != "other"
    # a packet is from its flow's side 0 when it comes from the endpoint that sent the
    # group's first packet, unless that one came from side 1
    ea = hd.ea[tcp]
    gr.side = (ea != ea[gr.first][gid]).astype(np.int64) ^ gr.flip[gid]


def _bulk(sc: Scanner, blk: RecordBlock, hd: Headers, gr: _Groups) -> np.ndarray:
    """Counters, last activity, latest payload and closing of each flow, added per group as the
    per-packet path adds them packet by packet; returns the TCP packets Python must still see
    (SYNs, payload of flows not decided 'other', everything of the slow groups)."""
    tcp, gid, side, pos = gr.tcp, gr.gid, gr.side, gr.pos
    plen, missing = hd.plen[tcp], hd.missing[tcp]
    ftcp = hd.flags[tcp]
    slow = np.zeros(gr.n, bool)
    if gr.slow:
        slow[gr.slow] = True
    fast = ~slow[gid]
    # counters, per (group, side)
    ti = tcp[fast]
    gi = gid[fast]
    cell = gi * 2 + side[fast]
    pk = np.bincount(cell, minlength=2 * gr.n)
    by = np.bincount(cell, weights=hd.wirelen[ti], minlength=2 * gr.n).astype(np.int64)
    lastpos = np.full(gr.n, -1, np.int64)
    np.maximum.at(lastpos, gi, pos[fast])
    data_ts = np.full(gr.n, -np.inf)
    has_data = ((plen > 0) | (missing > 0))[fast]
    np.maximum.at(data_ts, gi[has_data], blk.ts[ti][has_data])
    live = np.flatnonzero(lastpos >= 0)
    for g, p0, p1, b0, b1, lts, dts in zip(
            live.tolist(), pk[2 * live].tolist(), pk[2 * live + 1].tolist(), by[2 * live].tolist(),
            by[2 * live + 1].tolist(), blk.ts[tcp[lastpos[live]]].tolist(), data_ts[live].tolist()):
        f = gr.flows[g]
        assert f is not None                # fast groups all have their flow
        n = f.counts
        n[0] += p0
        n[1] += p1
        n[2] += b0
        n[3] += b1
        f.last_ts = lts
        if dts > f.data_ts:
            f.data_ts = dts
    # closing: FIN per side, RST, as a union over the block with the latest time
    fshut = ((ftcp & (TH_FIN | TH_RST)) != 0) & fast
    if fshut.any():
        fl = ftcp[fshut]
        bits = np.where(fl & TH_FIN, np.left_shift(1, side[fshut]), 0) | np.where(fl & TH_RST, 4, 0)
        close_bits = np.zeros(gr.n, np.int64)
        close_ts = np.full(gr.n, -np.inf)
        np.bitwise_or.at(close_bits, gid[fshut], bits)
        np.maximum.at(close_ts, gid[fshut], blk.ts[tcp[fshut]])
        for g in np.flatnonzero(close_bits).tolist():
            f = gr.flows[g]
            assert f is not None
            sc._closing(f, int(close_bits[g]), float(close_ts[g]))
    want = ((ftcp & TH_SYN) != 0) | (gr.active[gid] & ((plen > 0) | (missing > 0)))
    want |= slow[gid]
    want &= ~_early_syns(sc, hd, gr, ftcp, fast & ((ftcp & TH_SYN) != 0) & (plen == 0) & (missing == 0),
                         want)
    quiet = int(np.count_nonzero(fast & ~want & (missing > 0)))
    if quiet:
        sc.stats.anomaly("capture.snaplen_truncated", quiet)
    return tcp[want]


def _early_syns(sc: Scanner, hd: Headers, gr: _Groups, ftcp: np.ndarray, syn_only: np.ndarray,
                want: np.ndarray) -> np.ndarray:
    """SYNs without payload (``syn_only``, of fast groups) that come before every other packet
    Python must see of their flow in this block: booked once per flow and side by
    Scanner._syn with the side's first and last sequence numbers, which leaves the flow as
    the per-packet path leaves it (the block's first SYN names the client unless it is
    known; each side's last SYN sets its ISN, its first starts a stream that has no start
    yet). Returns the packets handled (positions in ``gr.tcp``)."""
    tcp, gid, side, pos = gr.tcp, gr.gid, gr.side, gr.pos
    rest = want & ~syn_only
    first_rest = np.full(gr.n, len(tcp), np.int64)
    np.minimum.at(first_rest, gid[rest], pos[rest])
    early = syn_only & (pos < first_rest[gid])
    at = np.flatnonzero(early)
    if not len(at):
        return early
    g_at = gid[at]
    groups, first = np.unique(g_at, return_index=True)
    cell = g_at * 2 + side[at]
    seq = hd.seq[tcp[at]]
    cells, c_first = np.unique(cell, return_index=True)
    c_last = len(cell) - 1 - np.unique(cell[::-1], return_index=True)[1]
    isn_first = np.full(2 * gr.n, -1, np.int64)
    isn_last = np.full(2 * gr.n, -1, np.int64)
    isn_first[cells] = seq[c_first]
    isn_last[cells] = seq[c_last]
    flows = gr.flows
    syn = sc._syn
    for g, s0, f0, a0, z0, a1, z1 in zip(
            groups.tolist(), side[at[first]].tolist(), ftcp[at[first]].tolist(),
            isn_first[2 * groups].tolist(), isn_last[2 * groups].tolist(),
            isn_first[2 * groups + 1].tolist(), isn_last[2 * groups + 1].tolist()):
        f = flows[g]
        assert f is not None            # fast groups all have their flow
        a, z = (a0, a1), (z0, z1)
        syn(f, s0, f0, a[s0], z[s0])    # the side of the block's first SYN (it names the client)
        if a[1 - s0] >= 0:
            syn(f, 1 - s0, f0, a[1 - s0], z[1 - s0])
    return early


def _dispatch(sc: Scanner, blk: RecordBlock, hd: Headers, todo: np.ndarray, kind: np.ndarray,
              gr: _Groups | None, slow: dict[int, tuple[Segment, int] | None],
              dup: np.ndarray | None, dtcp: np.ndarray) -> None:
    """The packets Python must see, in capture order, to the Scanner's per-packet handlers
    (``slow``: the records only the per-packet decoder takes, decoded; ``dtcp``: port-53
    TCP segments for DNS over TCP, before their flow's handling)."""
    n = len(blk)
    src_at, dst_at, alen, sport, dport = hd.src_at, hd.dst_at, hd.alen, hd.sport, hd.dport
    wirelen = hd.wirelen
    pos_in_tcp = np.full(n, -1, np.int64)
    if gr is not None:
        pos_in_tcp[gr.tcp] = gr.pos
        slow_set = set(gr.slow)
        group_flow = gr.flows
    else:
        slow_set = set()
        group_flow = []
    buf = blk.buf
    # one conversion per column for the selected packets (numpy scalars are slow in a loop)
    tp = pos_in_tcp[todo]
    if gr is not None:
        g_of = np.where(tp >= 0, gr.gid[np.maximum(tp, 0)], -1)
        s_of = np.where(tp >= 0, gr.side[np.maximum(tp, 0)], 0)
    else:
        g_of = np.full(len(todo), -1, np.int64)
        s_of = np.zeros(len(todo), np.int64)
    ps_of = hd.pstart[todo]
    pe_of = ps_of + hd.plen[todo]
    cols = zip(todo.tolist(), kind[todo].tolist(), blk.frame[todo].tolist(), blk.ts[todo].tolist(),
               g_of.tolist(), s_of.tolist(), hd.flags[todo].tolist(), hd.seq[todo].tolist(),
               ps_of.tolist(), pe_of.tolist(), hd.missing[todo].tolist())
    st = sc.stats
    tcp_packet = sc._tcp_packet
    syn = sc._syn
    dset = set(dtcp.tolist())

    def segment(i: int, frame: int, ts: float, proto: int, fl: int, sq: int, ps: int, pe: int,
                miss: int) -> Segment:
        """Record i as the per-packet decoder's Segment, from the parsed columns."""
        sa, da, ln = int(src_at[i]), int(dst_at[i]), int(alen[i])
        # a UDP packet's IPv4 identification sits 8 bytes before its source address
        ident = (buf[sa - 8] << 8 | buf[sa - 7]) if proto == 17 and ln == 4 else -1
        return Segment(frame, ts, 6 if ln == 16 else 4, buf[sa:sa + ln], buf[da:da + ln], proto,
                       int(sport[i]), int(dport[i]), fl, sq, buf[ps:pe], int(wirelen[i]), miss,
                       ident)

    for i, k, frame, ts, g, sd, fl, sq, ps, pe, miss in cols:
        if dset and i in dset:              # DNS over TCP (4: nothing else to do)
            seg = segment(i, frame, ts, 6, fl, sq, ps, pe, miss)
            sc.dns_tcp(seg, sc.owns(seg))
            if k == 4:
                continue
        if k == 1:                          # not the common case: the per-packet decoder's
            d = slow[i]
            if d is not None:
                sc.segment(d, dup is not None and bool(dup[i]))
            continue
        if k >= 2:                          # DNS (3: another part's, to learn endpoints from)
            sc._dns(segment(i, frame, ts, 17, 0, 0, ps, pe, 0), learn_only=k == 3)
            continue
        if g in slow_set:                   # the per-packet handler, from the parsed columns
            sc._tcp(segment(i, frame, ts, 6, fl, sq, ps, pe, miss))
            continue
        flow = group_flow[g]
        assert flow is not None
        if pe == ps and not miss:          # a SYN without payload: handshake bookkeeping only
            if fl & TH_SYN:
                syn(flow, sd, fl, sq)
            continue
        if flow.state == "other" and not fl & TH_SYN:
            if miss:
                st.anomaly("capture.snaplen_truncated")
            continue
        tcp_packet(flow, sd, fl, sq, buf[ps:pe], miss, frame, ts)


def _reorder(sc: Scanner, gr: _Groups) -> None:
    """Keep the flow table in last-activity order, as the per-packet path does (groups that
    took the per-packet handlers included: by each group's last packet)."""
    last_any = np.full(gr.n, -1, np.int64)
    np.maximum.at(last_any, gr.gid, gr.pos)
    table = sc.flows
    for g in np.argsort(last_any, kind="stable").tolist():
        key = gr.keys[g]
        if key is not None and key in table:
            table.move_to_end(key)
