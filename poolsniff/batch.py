"""The batch fast path: headers of a whole block of records decoded with numpy.

For the common case (Ethernet with up to two VLAN tags, or raw IP; IPv4; TCP or
UDP; not a fragment) every header field of a block is read with vectorised
gathers, packets are grouped by 5-tuple, flows are created once per group and
packet/byte counters are added in bulk. Python touches a packet only when it
matters: a SYN, a DNS message, or payload of a flow that is still undecided or
is mining. Everything else (IPv6, other link types, odd headers) takes the
per-packet decoder, in order. Both paths share the per-packet handlers of
:class:`~poolsniff.pipeline.Scanner`, so they give the same answer; a test
checks it on every capture of the suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from poolsniff.decode import decode
from poolsniff.model import Segment
from poolsniff.pipeline import SWEEP_EVERY, TH_RST, TH_SYN, Flow
from poolsniff.sources.pcapfile import RecordBlock

if TYPE_CHECKING:
    from poolsniff.pipeline import Scanner

_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _be16(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    return (a[i].astype(np.int64) << 8) | a[i + 1]


def _be32(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    return (_be16(a, i) << 16) | _be16(a, i + 2)


def feed_block(sc: Scanner, blk: RecordBlock) -> None:
    n = len(blk)
    if n == 0:
        return
    st = sc.stats
    st.packets += n
    st.bytes += int(blk.incl.sum())
    a = np.frombuffer(blk.buf, np.uint8)
    last = len(a) - 1
    base = blk.offs
    incl = blk.incl
    lt = blk.linktype
    cap_end = base + incl
    # -- link layer -------------------------------------------------------------------------
    eth = lt == 1
    raw = (lt == 101) | (lt == 12) | (lt == 14) | (lt == 228)
    ip = np.where(eth, base + 14, base)
    et = np.where(eth & (incl >= 14), _be16(a, np.minimum(base + 12, last - 1)), 0)
    for _ in range(2):                                   # up to two VLAN tags (QinQ)
        tagged = eth & np.isin(et, _VLAN) & (ip + 4 <= cap_end)
        et = np.where(tagged, _be16(a, np.minimum(ip + 2, last - 1)), et)
        ip = np.where(tagged, ip + 4, ip)
    ipc = np.minimum(ip, last - 20)
    ok = ((eth & (et == 0x0800)) | raw) & (ip + 20 <= cap_end)
    # -- IPv4 -------------------------------------------------------------------------------
    vb = a[ipc]
    ok &= (vb >> 4) == 4
    ihl = (vb & 15).astype(np.int64) * 4
    tot = _be16(a, ipc + 2)
    ok &= (ihl >= 20) & (ip + ihl <= cap_end)
    ok &= (_be16(a, ipc + 6) & 0x3FFF) == 0
    proto = a[ipc + 9]
    ok &= (proto == 6) | (proto == 17)
    declared = np.where(tot >= ihl, ip + tot, cap_end)
    end = np.minimum(declared, cap_end)
    l4 = ip + ihl
    l4c = np.minimum(l4, last - 20)
    is_tcp = proto == 6
    doff = (a[l4c + 12] >> 4).astype(np.int64) * 4
    ok &= np.where(is_tcp, (l4 + 20 <= end) & (doff >= 20) & (l4 + doff <= end), l4 + 8 <= end)
    common = np.flatnonzero(ok)
    fallback = np.flatnonzero(~ok)
    if len(common):
        st.decode.packets += len(common)
        st.decode.decoded += len(common)
        tsc = blk.ts[common]
        lo_ts, hi_ts = float(tsc.min()), float(tsc.max())
        st.first_ts = lo_ts if st.first_ts is None else min(st.first_ts, lo_ts)
        st.last_ts = hi_ts if st.last_ts is None else max(st.last_ts, hi_ts)
    src = _be32(a, ipc + 12)
    dst = _be32(a, ipc + 16)
    sport = _be16(a, l4c)
    dport = _be16(a, l4c + 2)
    pstart = l4 + np.where(is_tcp, doff, 8)
    plen = np.maximum(end - pstart, 0)
    missing = np.where(is_tcp, declared - end, 0)
    wirelen = declared - ip
    flags = np.where(is_tcp, a[l4c + 13], 0).astype(np.int64)

    # -- UDP: only DNS matters -----------------------------------------------------------------
    udp = common[~is_tcp[common]]
    dns = udp[(sport[udp] == 53) | (dport[udp] == 53) | (sport[udp] == 5353)]
    tcp = common[is_tcp[common]]

    # -- TCP: group by 5-tuple ---------------------------------------------------------------------
    interesting: list[np.ndarray] = [fallback, dns]
    group_flow: list[Flow | None] = []
    slow_groups: list[int] = []
    gid = np.empty(0, np.int64)
    side = np.empty(0, np.int64)
    lastpos = np.empty(0, np.int64)
    if len(tcp):
        ea = (src[tcp].astype(np.uint64) << np.uint64(16)) | sport[tcp].astype(np.uint64)
        eb = (dst[tcp].astype(np.uint64) << np.uint64(16)) | dport[tcp].astype(np.uint64)
        lo = np.minimum(ea, eb)
        hi = np.maximum(ea, eb)
        h = (lo * _K1) ^ (hi * _K2)
        uniq, first, gid = np.unique(h, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        ng = len(uniq)
        flows = sc.flows
        group_flow = [None] * ng
        side0 = np.zeros(ng, np.uint64)
        active = np.zeros(ng, bool)
        buf = blk.buf
        for g in order.tolist():
            i = int(tcp[first[g]])
            s_ip = buf[int(ip[i]) + 12:int(ip[i]) + 16]
            d_ip = buf[int(ip[i]) + 16:int(ip[i]) + 20]
            ka = (s_ip, int(sport[i]))
            kb = (d_ip, int(dport[i]))
            key = (ka, kb) if ka < kb else (kb, ka)
            flow = flows.get(key)
            if flow is None:
                if flags[i] & TH_RST:
                    slow_groups.append(g)          # the per-packet path decides (rare)
                    continue
                seg = Segment(int(blk.frame[i]), float(blk.ts[i]), 4, s_ip, d_ip, 6,
                              int(sport[i]), int(dport[i]), int(flags[i]), 0, b"", 0)
                flow = Flow(key, seg, sc.file)
                flows[key] = flow
                st.flows += 1
                if len(flows) > sc.max_flows:
                    sc._evict()
                sc._new_flow(flow, seg)
            group_flow[g] = flow
            side0[g] = (int.from_bytes(flow.ips[0], "big") << 16) | flow.ports[0]
            active[g] = flow.state != "other"
        slow = np.zeros(ng, bool)
        if slow_groups:
            slow[slow_groups] = True
        side = (ea != side0[gid]).astype(np.int64)
        fast = ~slow[gid]
        # counters in bulk, per (group, side)
        ti = tcp[fast]
        gi = gid[fast]
        cell = gi * 2 + side[fast]
        pk = np.bincount(cell, minlength=2 * ng)
        by = np.bincount(cell, weights=wirelen[ti], minlength=2 * ng)
        lastpos = np.full(ng, -1, np.int64)
        np.maximum.at(lastpos, gi, np.arange(len(tcp))[fast])
        for g in np.flatnonzero(lastpos >= 0).tolist():
            f = group_flow[g]
            f.pkts[0] += int(pk[2 * g])
            f.pkts[1] += int(pk[2 * g + 1])
            f.nbytes[0] += int(by[2 * g])
            f.nbytes[1] += int(by[2 * g + 1])
            f.last_ts = float(blk.ts[tcp[lastpos[g]]])
        # what Python must see: SYNs, and payload of flows not yet decided as 'other'
        want = ((flags[tcp] & TH_SYN) != 0) | (active[gid] & ((plen[tcp] > 0) | (missing[tcp] > 0)))
        want |= slow[gid]
        quiet = tcp[fast & ~want & (missing[tcp] > 0)]
        if len(quiet):
            st.anomalies["capture.snaplen_truncated"] = \
                st.anomalies.get("capture.snaplen_truncated", 0) + len(quiet)
        interesting.append(tcp[want])
        pos_in_tcp = np.full(n, -1, np.int64)
        pos_in_tcp[tcp] = np.arange(len(tcp))
    else:
        pos_in_tcp = np.full(n, -1, np.int64)

    todo = np.sort(np.concatenate(interesting))
    kind = np.zeros(n, np.int8)          # 0 tcp, 1 fallback, 2 dns
    kind[fallback] = 1
    kind[dns] = 2
    slow_set = set(slow_groups)
    buf = blk.buf
    # one conversion per column for the selected packets (numpy scalars are slow in a loop)
    seq = _be32(a, np.minimum(l4[todo] + 4, last - 3))
    tp = pos_in_tcp[todo]
    g_of = np.where(tp >= 0, gid[np.maximum(tp, 0)] if len(gid) else 0, -1)
    s_of = np.where(tp >= 0, side[np.maximum(tp, 0)] if len(side) else 0, 0)
    ps_of = pstart[todo]
    pe_of = ps_of + plen[todo]
    cols = zip(todo.tolist(), kind[todo].tolist(), blk.frame[todo].tolist(), blk.ts[todo].tolist(),
               g_of.tolist(), s_of.tolist(), flags[todo].tolist(), seq.tolist(), ps_of.tolist(),
               pe_of.tolist(), missing[todo].tolist())
    tcp_packet = sc._tcp_packet
    syn = sc._syn
    for i, k, frame, ts, g, sd, fl, sq, ps, pe, miss in cols:
        if k == 1:
            seg = decode(frame, ts, int(lt[i]), buf[int(base[i]):int(cap_end[i])], st.decode)
            if seg is None:
                continue
            st.first_ts = seg.ts if st.first_ts is None else min(st.first_ts, seg.ts)
            st.last_ts = seg.ts if st.last_ts is None else max(st.last_ts, seg.ts)
            if seg.proto == 17:
                if seg.sport == 53 or seg.dport == 53 or seg.sport == 5353:
                    sc._dns(seg)
                continue
            sc._tcp(seg)
            continue
        if k == 2:
            ipi = int(ip[i])
            sc._dns(Segment(frame, ts, 4, buf[ipi + 12:ipi + 16], buf[ipi + 16:ipi + 20], 17,
                            int(sport[i]), int(dport[i]), 0, 0, buf[ps:pe], int(wirelen[i])))
            continue
        if g in slow_set:
            seg = decode(frame, ts, int(lt[i]), buf[int(base[i]):int(cap_end[i])], _NULL_STATS)
            if seg is not None:
                sc._tcp(seg)
            continue
        flow = group_flow[g]
        if pe == ps and not miss:          # a SYN without payload: handshake bookkeeping only
            if fl & TH_SYN:
                syn(flow, sd, fl, sq)
            continue
        if flow.state == "other" and not fl & TH_SYN:
            if miss:
                st.anomaly("capture.snaplen_truncated")
            continue
        tcp_packet(flow, sd, fl, sq, buf[ps:pe], miss, frame, ts)
    # keep the flow table in last-activity order, as the per-packet path does
    if len(tcp):
        for g in np.argsort(lastpos, kind="stable").tolist():
            f = group_flow[g]
            if lastpos[g] >= 0 and f is not None and sc.flows.get(f.key) is f:
                sc.flows.move_to_end(f.key)
    sc._since_sweep += n
    if sc._since_sweep >= SWEEP_EVERY:
        sc._since_sweep = 0
        sc._sweep(st.last_ts or 0.0)


class _NullStats:
    """Decode statistics for packets already counted by the batch."""

    packets = decoded = 0

    def skip(self, why: str) -> None:
        pass


_NULL_STATS = _NullStats()
