"""source → decode → flow table → detectors → evidence. The one place that knows the order.

A ``Scanner`` takes batches of packets (from a file or a live source), keeps the
flow table, hands payload to the mining detectors only while a flow is still
undecided (its first ``INSPECT_PKTS`` payload packets) or already known to be
mining, and folds what the detectors saw into per-host evidence. Decided
non-mining flows cost a counter update.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import functools
import gc
import heapq
import itertools
import math
import socket
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from poolsniff import dialects
from poolsniff.decode import DecodeStats, add_counts, decode
from poolsniff.defrag import Defragmenter
from poolsniff.dedup import Dedup, DnsCopies, dup_key
from poolsniff.dnstcp import DnsOverTcp
from poolsniff.evidence import FlowRecord, HostEvidence, Traffic, host_order
from poolsniff.framing import (HttpFramer, HttpMessage, LineFramer, WebSocketFramer,
                               looks_like_http, opens_json, parse_json)
from poolsniff.hashing import flow_hash, part_of
from poolsniff.model import TOCLIENT, TOSERVER, Anomaly, Packet, Segment
from poolsniff.protocols import (certificate_names, client_hello_sni, looks_like_tls, parse_dns,
                                 resolve_chain, server_certificate)
from poolsniff.signatures import Catalogue, Match
from poolsniff.stream import Budget, HalfStream
from poolsniff.tunnel import FAIL, MORE, ProxyHandshake, proxy_kind

INSPECT_PKTS = 24           # payload packets an undecided flow is inspected for
INSPECT_BYTES = 128 * 1024  # payload bytes an undecided flow is inspected for
MAX_FLOWS = 200_000         # flow table cap (oldest flows are finished first)
STREAM_MEMCAP = 256 << 20   # bytes held back over all flows: reassembly, framing, TLS (stream.Budget)
FLOW_IDLE_S = 900.0         # a flow silent this long (capture time) is finished
CLOSED_LINGER_S = 10.0      # a TCP flow closed (FIN both ways, or RST) and silent this long too
WIND_DOWN_S = 2.0           # closed by FIN both ways and silent this long: reassembly state dropped
WOUND = 8                   # Flow.fin bit: its reassembly state was dropped (1, 2: FIN per side; 4: RST)
MAX_ENDPOINTS = 100_000     # pool endpoints learned from DNS
MAX_HOSTS = 200_000         # host records a scanner holds (a watch: between two flushes)
MAX_ANOMALY_EVENTS = 1000   # anomaly events kept for output (all are counted)
MAX_DOMAIN_EVENTS = 10_000  # pool-domain events kept for output
SWEEP_EVERY = 50_000        # packets between idle sweeps

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10

# container allocations between collections, inside pipeline_gc. A watch holds every flow for
# CLOSED_LINGER_S after its close, so at each young collection most of what the last ~second
# allocated is still alive and walked (~40 ms for a churning link's flows): the fewer such
# collections the better, and they find next to nothing (13 objects in 43 collections of a
# live run), since finished flows break their own cycles
GC_YOUNG = 2_000_000
GC_MIDDLE = 10              # young collections per middle-generation collection
GC_OLD = 50                 # middle-generation collections per full collection


@contextlib.contextmanager
def pipeline_gc() -> Iterator[None]:
    """Cyclic garbage collection for a flow table (scan and watch): only between batches.

    Inside, CPython's automatic collector is off and :func:`gc_between_batches` (called by
    the Scanner before each batch) collects instead, on the same generational schedule.
    Automatic collections fire in the middle of a batch, where they re-walk the batch's
    temporaries (lists of 65,536 packet fields): that was 2.2-2.5 s of a 16 s benchmark
    scan (194 young collections of ~12 ms). Between batches only what survived is walked.
    Finished flows break their own cycles, so collections find little; they run so that
    whatever cycles do form are freed."""
    was = gc.isenabled()
    gc.disable()
    tune_malloc()
    try:
        yield
    finally:
        if was:
            gc.enable()


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3     # glibc's mallopt parameters


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep a batch's buffers (arrays and lists of 65,536 packets, a 16-24 MB block) in the
    heap (glibc only; elsewhere nothing happens). With glibc's defaults such buffers are
    mapped and unmapped each batch, and every page of them faulted in afresh: a tenth of
    the benchmark's system time and ~5% of its CPU. The heap keeps up to 64 MB free
    (RSS +2 MB on the benchmark slice). True when glibc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, 32 << 20),
                                                (_M_TRIM_THRESHOLD, 64 << 20),
                                                (_M_TOP_PAD, 16 << 20)))


def gc_between_batches() -> None:
    """The collection automatic GC would have run by now, if any (inside pipeline_gc only)."""
    if gc.isenabled():
        return
    young, middle, old = gc.get_count()
    if young < GC_YOUNG:
        return
    if middle + 1 < GC_MIDDLE:
        gc.collect(0)
    elif old + 1 < GC_OLD:
        gc.collect(1)
    else:
        gc.collect(2)


@functools.lru_cache(maxsize=1 << 16)
def ip_str(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b)


@dataclass
class Stats:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    flows_inspected: int = 0
    flows_mining: int = 0
    flows_evicted: int = 0
    stream_gaps: int = 0            # TCP bytes that never arrived and were skipped
    retransmitted_bytes: int = 0
    dns_messages: int = 0
    tls_client_hellos: int = 0
    lines: int = 0
    json_messages: int = 0
    duplicates: int = 0             # mirror-port copies of a packet, not counted (dedup.py)
    anomalies: dict[str, int] = field(default_factory=dict)
    decode: DecodeStats = field(default_factory=DecodeStats)
    files: list[dict[str, Any]] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None

    def anomaly(self, event: str, n: int = 1) -> None:
        self.anomalies[event] = self.anomalies.get(event, 0) + n

    def saw(self, lo: float, hi: float) -> None:
        """Widen the capture's time span to [lo, hi]."""
        self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets, "bytes": self.bytes, "flows": self.flows,
            "flows_inspected": self.flows_inspected, "flows_mining": self.flows_mining,
            "flows_evicted": self.flows_evicted, "stream_gaps": self.stream_gaps,
            "retransmitted_bytes": self.retransmitted_bytes, "dns_messages": self.dns_messages,
            "tls_client_hellos": self.tls_client_hellos, "lines": self.lines,
            "json_messages": self.json_messages, "duplicates": self.duplicates,
            "decoded": self.decode.decoded, "reassembled": self.decode.reassembled,
            "skipped": dict(sorted(self.decode.skipped.items())),
            "anomalies": dict(sorted(add_counts(dict(self.anomalies), self.decode.events).items())),
            "files": self.files,
            "first_ts": self.first_ts, "last_ts": self.last_ts,
        }


def flow_key(src: bytes, sport: int, dst: bytes, dport: int) -> tuple[Any, ...]:
    """A TCP flow's key in the flow table: its two endpoints, the lesser first."""
    a, b = (src, sport), (dst, dport)
    return (a, b) if a < b else (b, a)


class Flow:
    """One TCP or UDP conversation; side 0 is the endpoint seen first."""

    __slots__ = ("key", "ips", "ports", "proto", "first_ts", "last_ts", "counts",
                 "client", "syn_seen", "state", "app", "streams", "framers", "session",
                 "record", "inspected", "tls_buf", "endpoint", "sni", "file", "http_host",
                 "midstream", "payload_bytes", "first_frame", "isn", "sign", "sign_frame",
                 "fin", "close_ts", "data_ts", "proxy", "tunnel", "queued", "cert")

    def __init__(self, key: tuple[Any, ...], seg: Segment, file: str) -> None:
        self.key = key
        self.ips = (seg.src, seg.dst)
        self.ports = (seg.sport, seg.dport)
        self.proto = seg.proto
        self.first_ts = self.last_ts = seg.ts
        self.first_frame = seg.frame
        self.sign: str | None = None          # a weaker sign of mining (suspect), with its reason
        self.sign_frame = 0
        self.isn: list[int | None] | None = None     # initial sequence numbers, once a SYN is seen
        self.counts = [0, 0, 0, 0]            # packets from side 0, side 1; bytes from side 0, 1
        self.client: int | None = None       # 0 or 1 once known
        self.syn_seen = False
        self.state = "undecided"              # undecided | mining | other
        self.app: str | None = None          # json | http | tls | sv2? (WebSocket: per side)
        self.streams: list[HalfStream] | None = None
        self.framers: list[Any] | None = None        # per-side framers, once payload is inspected
        self.session: dialects.Session | None = None
        self.record: FlowRecord | None = None
        self.inspected = 0
        self.payload_bytes = 0
        self.tls_buf = b""
        self.endpoint: Match | None = None   # the server side is a known pool endpoint
        self.sni: str | None = None
        self.cert: str | None = None          # the server certificate's name that named a pool
        self.http_host: str | None = None
        self.file = file
        self.midstream = False
        # closing: FIN bits per side (1, 2), RST (4), WOUND (8); when the last FIN/RST and the last
        # payload were seen. Payload after the close reopens the flow (a spoofed RST).
        self.fin = 0
        self.close_ts = -math.inf
        self.queued = False                   # it has an entry in Scanner.closing
        self.data_ts = -math.inf
        self.proxy: ProxyHandshake | None = None     # a proxy's opening, until the tunnel opens
        self.tunnel: tuple[str, str, int, int] | None = None   # (kind, host, port, frame)

    @property
    def wound(self) -> bool:
        """Reassembly state given up after a graceful close (Scanner._wind_down_closed)."""
        return bool(self.fin & WOUND)

    @property
    def closed(self) -> bool:
        return bool(self.fin & 4 or self.fin & 3 == 3) and self.data_ts <= self.close_ts

    def silent_before(self, t: float) -> bool:
        """No packet and no FIN/RST since before t."""
        return self.last_ts < t and self.close_ts < t

    def side(self, seg: Segment) -> int:
        return 0 if seg.src == self.ips[0] and seg.sport == self.ports[0] else 1


class Scanner:
    """Feeds packets through the pipeline and accumulates host evidence."""

    def __init__(self, catalogue: Catalogue, max_flows: int | None = None,
                 part: tuple[int, int] | None = None, dedup: bool = True,
                 memcap: int | None = None) -> None:
        self.cat = catalogue
        # what every flow's reassembly, framers and TLS buffer hold back, against one cap
        self.budget = Budget(memcap or STREAM_MEMCAP)
        # dedup: drop mirror-port copies of packets (every part drops the same ones)
        self.dedup = Dedup() if dedup else None
        self.dns_copies = DnsCopies() if dedup else None
        self._dns_streams = DnsOverTcp()     # port-53 TCP, read for DNS messages (dnstcp.py)
        self.frags = Defragmenter()          # IP fragments, until their datagram is whole
        self.max_flows = max_flows or MAX_FLOWS
        # part (k, n): this scanner is worker k of n over the same packets (--jobs). It owns the
        # flows whose flow_hash is k mod n and the DNS messages likewise; it still learns pool
        # endpoints from every DNS answer and sees every timestamp, so its sweeps and lookups
        # are those of a single scanner. Worker 0 (the lead) counts the packets, bytes, decode
        # results and capture damage; the workers' evidence and counters then add up to exactly
        # what one scanner finds (scan.scan_parallel merges them).
        if part is not None and not 0 <= part[0] < part[1]:
            raise ValueError(f"part {part}: want (k, n) with 0 <= k < n")
        self.part = part
        self.lead = part is None or part[0] == 0
        self._uncounted = DecodeStats()     # a part's decode results (the lead counts them)
        self.flows: OrderedDict[tuple[Any, ...], Flow] = OrderedDict()
        self.hosts: dict[str, HostEvidence] = {}
        # pool endpoints learned from DNS: packed address -> (signature, when first learned)
        self.endpoints: OrderedDict[bytes, tuple[Match, float]] = OrderedDict()
        self.stats = Stats()
        self.anomaly_events: list[dict[str, Any]] = []
        self.domain_events: list[dict[str, Any]] = []
        self.traffic = Traffic()       # bytes of pool sessions per 5-minute bin
        # (close time, tie-break, flow) of each FIN/RST seen: flows that may end early
        self.closing: list[tuple[float, int, Flow]] = []
        # flows closed by FIN both ways that may still hold reassembly state (_wind_down_closed)
        self.winding: list[Flow] = []
        self._tick = itertools.count()
        self.file = ""
        self._since_sweep = 0
        # bound once: each flow's callbacks are partials of these (see _deliverer)
        self._on_app = self._app
        self._on_json = self._json
        self._on_http = self._http
        self._on_framing_anomaly = self._framing_anomaly
        self._on_http_anomaly = self._http_anomaly
        self._on_websocket_anomaly = self._websocket_anomaly

    # -- feeding -------------------------------------------------------------------------
    def begin_file(self, name: str) -> None:
        self.file = name
        if self.dedup is not None:
            self.dedup.reset()
        if self.dns_copies is not None:
            self.dns_copies.reset()

    def feed(self, batch: list[Packet]) -> None:
        """The per-packet path: every packet decoded and dispatched on its own (decoded all
        first, so the batch's duplicates are marked at once, as the batch path marks them)."""
        gc_between_batches()
        if self.lead:
            st = self.stats
            st.packets += len(batch)
            st.bytes += sum(len(p[3]) for p in batch)
        segs = self.decode_all(batch)
        dup = self.duplicates(batch, segs)
        for seg, d in zip(segs, dup):
            if seg is not None:
                self.segment(seg, d)
        self.end_batch(len(batch))

    def decode_all(self, batch: list[Packet], rebuilt: list[int] | None = None
                   ) -> list[tuple[Segment, int] | None]:
        """Each packet decoded (the decoder's counters: the lead's), with its duplicate key
        (0 without dedup); packet and byte counters are the caller's. ``rebuilt``, if given,
        receives the positions whose segment is a datagram reassembled from fragments."""
        ds = self.stats.decode if self.lead else self._uncounted
        keyed = self.dedup is not None
        out: list[tuple[Segment, int] | None] = []
        frags = self.frags
        for frame, ts, linktype, buf in batch:
            seg = decode(frame, ts, linktype, buf, ds, frags)
            if seg is not None and rebuilt is not None and ds.ip_at < 0:
                rebuilt.append(len(out))
            out.append(None if seg is None else
                       (seg, dup_key(seg, buf, ds.ip_at, ds.l4_at) if keyed else 0))
        return out

    def duplicates(self, batch: list[Packet], segs: list[tuple[Segment, int] | None]) -> list[bool]:
        """Which packets of a decoded batch are mirror-port copies (dedup.Dedup)."""
        if self.dedup is None or not batch:
            return [False] * len(batch)
        dup = self.dedup.mark(np.array([p[0] for p in batch], np.int64),
                              np.array([p[1] for p in batch], np.float64),
                              np.array([0 if s is None else s[1] for s in segs], np.uint64))
        return dup.tolist()

    def segment(self, decoded: tuple[Segment, int], dup: bool) -> None:
        """Hand on one decoded packet (a duplicate only widens the capture's time span)."""
        seg = decoded[0]
        self.stats.saw(seg.ts, seg.ts)
        if dup:
            if self.lead:
                self.stats.duplicates += 1
            return
        mine = self.owns(seg)
        if seg.proto == 17:
            if seg.sport == 53 or seg.dport == 53 or seg.sport == 5353:
                self._dns(seg, learn_only=not mine)
            return
        if seg.sport == 53 or seg.dport == 53:
            self.dns_tcp(seg, mine)
        if mine:
            self._tcp(seg)

    def dns_tcp(self, seg: Segment, mine: bool) -> None:
        """A port-53 TCP segment: the DNS messages it completes (every part reads them, the
        owner of the flow reports them, as for UDP; the segment still goes to its flow)."""
        for msg in self._dns_streams.segment(seg):
            self._dns(Segment(seg.frame, seg.ts, seg.version, seg.src, seg.dst, 6, seg.sport,
                              seg.dport, 0, 0, msg, 0), learn_only=not mine)

    def owns(self, seg: Segment) -> bool:
        """Whether this scanner handles the segment's flow (always, unless it is a --jobs part)."""
        if self.part is None:
            return True
        return part_of(flow_hash(seg.src, seg.sport, seg.dst, seg.dport), self.part[1]) == self.part[0]

    def end_batch(self, n: int) -> None:
        """After n packets: finish idle flows every SWEEP_EVERY packets."""
        self._count_refused()
        self._since_sweep += n
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            self._sweep(self.stats.last_ts or 0.0)

    def _count_refused(self) -> None:
        """What the memcap refused to hold since the last call, as anomalies."""
        if self.budget.refused:
            self.stats.anomaly("stream.memcap_drop", self.budget.refused)
            self.budget.refused = 0

    def add_anomalies(self, items: list[Anomaly], file: str) -> None:
        for a in items:
            self._anomaly(a.event, a.frame, a.ts, a.type, a.layer, file=file, detail=a.detail)

    def _anomaly(self, event: str, frame: int, ts: float | None, typ: str, layer: str,
                 file: str | None = None, flow: Flow | None = None, detail: str = "") -> None:
        self.stats.anomaly(event)
        if len(self.anomaly_events) < MAX_ANOMALY_EVENTS:
            ev: dict[str, Any] = {"ts": ts, "pcap_filename": file or self.file, "pcap_cnt": frame,
                                  "anomaly": {"type": typ, "event": event, "layer": layer}}
            if detail:
                ev["anomaly"]["detail"] = detail
            if flow is not None:
                ev.update(self._tuple(flow))
            self.anomaly_events.append(ev)

    # -- DNS -----------------------------------------------------------------------------
    def _dns(self, seg: Segment, learn_only: bool = False) -> None:
        """A DNS message: a lookup of a pool name is a sign on the client; the addresses in the
        answer become pool endpoints. ``learn_only``: another --jobs part owns the message and
        reports it; this one only learns the endpoints."""
        if seg.proto == 17 and self.dns_copies is not None and self.dns_copies.copy(seg):
            if not learn_only:
                self.stats.duplicates += 1      # a mirror-port copy (every part drops it)
            return
        res = parse_dns(seg.payload)
        if res is None:
            return
        if not learn_only:
            self.stats.dns_messages += 1
        is_resp, qnames, answers = res
        if not qnames:
            return
        client = seg.dst if is_resp else seg.src
        for q in qnames:
            names, ips = resolve_chain(q, answers) if is_resp else ([q], [])
            hit = None
            for n in names:
                hit = self.cat.match(n)
                if hit:
                    break
            if hit is None:
                continue
            if not learn_only:
                self._dns_evidence(seg, q, names, ips, hit, is_resp, client)
            for ip in ips:
                addr = _packed(ip)
                prev = self.endpoints.get(addr)
                # keep when this IP was first learned for this pool: a session counts only
                # if the answer was seen before the session's last packet
                learned = prev[1] if prev is not None and prev[0].pool is hit.pool else seg.ts
                self.endpoints[addr] = (hit, learned)
                self.endpoints.move_to_end(addr)
                if len(self.endpoints) > MAX_ENDPOINTS:
                    self.endpoints.popitem(last=False)

    def _dns_evidence(self, seg: Segment, q: str, names: list[str], ips: list[str], hit: Match,
                      is_resp: bool, client: bytes) -> None:
        """What a DNS lookup of a pool name says about the client, and its event."""
        host = self._host(ip_str(client))
        if host is not None:
            host.raise_verdict("suspect", f"dns lookup of pool name {q}")
            host.signatures.add(hit.pool.id)
            host.domains.add(q)
            host.seen(seg.ts)
            reason = (f"DNS {'answer' if is_resp else 'query'} {q}"
                      + (f" -> {', '.join(ips[:4])}" if ips else "")
                      + f" (signature {hit.pool.id} {hit.role} host {hit.host.pattern})")
            host.add_evidence([{"pcap_filename": self.file, "pcap_cnt": seg.frame, "ts": seg.ts,
                                "reason": reason}])
        if len(self.domain_events) < MAX_DOMAIN_EVENTS:
            self.domain_events.append({
                "ts": seg.ts, "pcap_filename": self.file, "pcap_cnt": seg.frame,
                "src_ip": ip_str(client), "dest_ip": ip_str(seg.src if is_resp else seg.dst),
                "pool_domain": {"name": q, "seen_in": "dns", "answers": ips[:16],
                                "chain": names[1:], "signature_id": hit.pool.id,
                                "rev": hit.pool.rev, "role": hit.role,
                                "source": hit.pool.source}})

    # -- TCP -----------------------------------------------------------------------------
    def _tcp(self, seg: Segment) -> None:
        key = flow_key(seg.src, seg.sport, seg.dst, seg.dport)
        flow = self.flows.get(key)
        if flow is not None and seg.flags & (TH_SYN | TH_ACK) == TH_SYN and flow.closed:
            # a new connection on a closed 5-tuple (port reuse, a reconnecting miner)
            del self.flows[key]
            self._finish(flow)
            flow = None
        if flow is None:
            if seg.flags & TH_RST:
                return
            flow = Flow(key, seg, self.file)
            self.flows[key] = flow
            self.stats.flows += 1
            if len(self.flows) > self.max_flows:
                self._evict()
            self._new_flow(flow, seg)
        else:
            self.flows.move_to_end(key)
        side = flow.side(seg)
        flow.last_ts = seg.ts
        flow.counts[side] += 1
        flow.counts[2 + side] += seg.wirelen
        if seg.payload or seg.missing:
            if seg.ts > flow.data_ts:
                flow.data_ts = seg.ts
        if seg.flags & (TH_FIN | TH_RST):
            self._closing(flow, (1 << side if seg.flags & TH_FIN else 0)
                          | (4 if seg.flags & TH_RST else 0), seg.ts)
        self._tcp_packet(flow, side, seg.flags, seg.seq, seg.payload, seg.missing, seg.frame, seg.ts)

    def _tcp_packet(self, flow: Flow, side: int, flags: int, seq: int, payload: bytes, missing: int,
                    frame: int, ts: float) -> None:
        """Everything a TCP packet does beyond the counters (shared by the batch path)."""
        if flags & TH_SYN:
            self._syn(flow, side, flags, seq)
            # the SYN takes a sequence number of its own: data it carries (TCP Fast Open)
            # starts at ISN + 1
            seq = (seq + 1) & 0xFFFFFFFF
        if missing:
            self.stats.anomaly("capture.snaplen_truncated")
        if flow.state == "other" or not (payload or missing):
            return
        if flow.state == "undecided":
            flow.inspected += 1
            flow.payload_bytes += len(payload)
            if flow.inspected > INSPECT_PKTS or flow.payload_bytes > INSPECT_BYTES:
                self._give_up(flow)
                return
        if flow.streams is None:
            if flow.wound:
                return          # bytes after both FINs and a 2 s silence: not a session's any more
            self.stats.flows_inspected += 1
            flow.streams = [HalfStream(self._deliverer(flow, 0), self.budget),
                            HalfStream(self._deliverer(flow, 1), self.budget)]
            if flow.isn is not None:
                for i in (0, 1):
                    isn = flow.isn[i]
                    if isn is not None:
                        flow.streams[i].syn(isn)
        flow.streams[1 - side].release_held()
        if flow.streams is None:          # what was held decided the flow (TLS, give-up)
            return
        flow.streams[side].segment(seq, payload, frame, ts, missing)

    def _closing(self, flow: Flow, bits: int, ts: float) -> None:
        """A FIN (bit 1 << side) or RST (bit 4) seen at ts: the flow may end before its idle
        timeout (the batch path calls this once per flow and block, with the block's bits and
        latest time: the same state as packet by packet)."""
        flow.fin |= bits
        if ts > flow.close_ts:
            flow.close_ts = ts
        if not flow.queued:
            # one entry a flow: its key is only when to look again (the sweep re-queues a flow
            # closed later than its entry says); an entry per FIN or RST grew with a flood of
            # them on one flow, packet by packet (40,000 entries for 40,000 FINs)
            heapq.heappush(self.closing, (flow.close_ts, next(self._tick), flow))
            flow.queued = True
        if flow.fin & 3 == 3:
            self.winding.append(flow)       # looked at by the next sweep (_wind_down_closed)

    @staticmethod
    def _syn(flow: Flow, side: int, flags: int, seq: int, last_seq: int | None = None) -> None:
        """A SYN: who the client is, and where each direction's byte stream starts. The batch
        path books a side's SYNs of one block at once: ``seq`` of the first (it starts the
        stream), ``last_seq`` of the last (the ISN)."""
        flow.syn_seen = True
        if flow.client is None:
            flow.client = side if not flags & TH_ACK else 1 - side
        if flow.isn is None:
            flow.isn = [None, None]
        flow.isn[side] = seq if last_seq is None else last_seq
        if flow.streams is not None:
            flow.streams[side].syn(seq)

    @staticmethod
    def _new_flow(flow: Flow, seg: Segment) -> None:
        if not seg.flags & TH_SYN:
            flow.midstream = True

    def _give_up(self, flow: Flow) -> None:
        flow.state = "other"
        self._release(flow)

    def _release(self, flow: Flow) -> None:
        if flow.streams is not None:
            for s in flow.streams:
                self.stats.stream_gaps += s.gaps
                self.stats.retransmitted_bytes += s.retrans_bytes
                if s.overlap_diff:
                    self.stats.anomaly("stream.overlap_different_data", s.overlap_diff)
                s.release()
        flow.streams = None
        if flow.framers is not None:
            self._drop_framers(flow)
        if flow.tls_buf:
            self.budget.give(len(flow.tls_buf))
            flow.tls_buf = b""
        if flow.proxy is not None:
            self.budget.give(flow.proxy.held)
            flow.proxy = None

    @staticmethod
    def _drop_framers(flow: Flow) -> None:
        """The flow's framers go, and what they held back with them."""
        if flow.framers is not None:
            for fr in flow.framers:
                if fr is not None:
                    fr.release()
            flow.framers = None

    def _deliverer(self, flow: Flow, side: int) -> Callable[[bytes, int, float, bool], None]:
        return functools.partial(self._on_app, flow, side)

    # A flow's callbacks are partials of bound methods made once per Scanner (each partial of
    # a fresh bound method, or lambda with its closure cells, was two to four more objects
    # per flow for the garbage collector to walk: 30% of the tracked objects of a watch).
    def _framing_anomaly(self, flow: Flow, event: str, frame: int, ts: float) -> None:
        self._anomaly(event, frame, ts, "stream", "framing", flow=flow)

    def _http_anomaly(self, flow: Flow, event: str, frame: int, ts: float) -> None:
        self._anomaly(event, frame, ts, "applayer", "http", flow=flow)

    def _websocket_anomaly(self, flow: Flow, event: str, frame: int, ts: float) -> None:
        self._anomaly(event, frame, ts, "applayer", "websocket", flow=flow)

    # -- application layer -----------------------------------------------------------------
    def _app(self, flow: Flow, side: int, data: bytes, frame: int, ts: float, gap: bool) -> None:
        if flow.state == "other":
            return
        if flow.app is None:
            if not data:
                return          # nothing captured yet to tell the protocol by
            kind = proxy_kind(data) if flow.syn_seen and not gap and side == flow.client \
                and flow.tunnel is None else None
            if kind is not None:
                flow.app = "proxy"          # SOCKS or HTTP CONNECT: the session is inside
                flow.proxy = ProxyHandshake(kind)
            elif looks_like_tls(data):
                flow.app = "tls"
            elif looks_like_http(data):
                flow.app = "http"
            elif flow.syn_seen and not gap and side == flow.client and _sv2_act1(data):
                flow.app = "sv2?"           # wait for the pool's answer to the handshake
                flow.sign_frame = frame
                return
            elif flow.syn_seen and not gap and not opens_json(data):
                # the stream's first bytes are known: every JSON mining dialect opens with a
                # JSON object (or TLS, or HTTP); anything else is another protocol
                self._give_up(flow)
                return
            else:
                flow.app = "json"
        if flow.app == "tls":
            self._tls(flow, side, data, frame, ts)
            return
        if flow.app == "tls-cert":
            self._tls_certificate(flow, side, data, frame, ts, gap)
            return
        if flow.app == "proxy":
            self._proxy(flow, side, data, frame, ts, gap)
            return
        if flow.app == "sv2?":
            if side != flow.client and len(data) == SV2_ACT2_BYTES and _random_looking(data):
                flow.sign = (f"Stratum V2 handshake shape: {SV2_ACT1_BYTES}-byte client key "
                             f"(frame {flow.sign_frame}), {SV2_ACT2_BYTES}-byte reply (frame {frame})")
            self._give_up(flow)     # encrypted from here on
            return
        if flow.framers is None:
            flow.framers = [None, None]
        fr = flow.framers[side]
        if fr is None:
            if flow.app == "http":
                fr = HttpFramer(functools.partial(self._on_http, flow, side),
                                functools.partial(self._on_http_anomaly, flow), self.budget)
            else:
                fr = LineFramer(functools.partial(self._on_json, flow, side),
                                functools.partial(self._on_framing_anomaly, flow), resync=gap,
                                budget=self.budget)
                gap = False
            flow.framers[side] = fr
        if isinstance(fr, HttpFramer):
            rest = fr.feed(data, frame, ts, gap)
            if fr.upgraded:
                # this side switched protocols (client: Upgrade request; server: 101 response)
                ws = WebSocketFramer(functools.partial(self._on_json, flow, side),
                                     functools.partial(self._on_websocket_anomaly, flow),
                                     self.budget)
                fr.release()
                flow.framers[side] = ws
                if rest:
                    ws.feed(rest, frame, ts)
        else:
            fr.feed(data, frame, ts, gap)

    def _proxy(self, flow: Flow, side: int, data: bytes, frame: int, ts: float, gap: bool) -> None:
        """A proxy's opening: once the proxy says the tunnel is open, what follows on each side
        is a stream of its own (recognised as any other), and the destination the client
        asked for is the pool's name (matched against the catalogue)."""
        p = flow.proxy
        st = FAIL if p is None or gap else p.feed(side == flow.client, data, frame, ts)
        if st == MORE:
            assert p is not None
            n = p.buffered()
            if not self.budget.change(p.held, n):
                self._give_up(flow)         # no memory left to hold the opening
                return
            p.held = n
            return
        if p is not None:
            self.budget.give(p.held)
        flow.proxy = None
        if p is None:
            self._give_up(flow)
            return
        c = flow.client if flow.client is not None else side
        proxy = f"{ip_str(flow.ips[1 - c])}:{flow.ports[1 - c]}"
        hit = self.cat.match(p.host) if p.host else None
        if st == FAIL or p.host is None:
            if hit is not None:
                # the proxy refused (or the opening broke off): asking for a pool is still a sign
                self._suspect(flow, c, f"asked a {p.kind} proxy for pool host {p.host}",
                              f"{p.kind} request for {p.host}:{p.port} through proxy {proxy}, "
                              f"not opened (signature {hit.pool.id})", p.request_frame)
            self._give_up(flow)
            return
        flow.tunnel = (p.kind, p.host, p.port, p.request_frame)
        flow.app = None
        self._drop_framers(flow)
        flow.inspected = flow.payload_bytes = 0     # the session inside: a stream of its own
        self._record(flow).note(
            f"{p.kind} tunnel to {p.host}:{p.port} through proxy {proxy}"
            + (f" (signature {hit.pool.id} {hit.role} host {hit.host.pattern})" if hit else ""),
            p.request_frame, ts, TOSERVER)
        if hit is not None:
            if flow.endpoint is None:
                flow.endpoint = hit
            self._domain_event(flow, p.host, "proxy.connect", hit, p.request_frame, ts)
        for from_client, rest, fr, t in p.rest:
            self._app(flow, c if from_client else 1 - c, rest, fr, t, False)

    def _tls(self, flow: Flow, side: int, data: bytes, frame: int, ts: float) -> None:
        if flow.client is None:
            flow.client = side
        if side != flow.client:
            return
        if not self.budget.take(len(data)):
            self._give_up(flow)     # no memory left to hold the rest of its ClientHello
            return
        flow.tls_buf += data
        done, sni, alpn = client_hello_sni(flow.tls_buf)
        if not done:
            return
        self.budget.give(len(flow.tls_buf))
        flow.tls_buf = b""
        self.stats.tls_client_hellos += 1
        if sni:
            flow.sni = sni
            hit = self.cat.match(sni)
            if hit is not None:
                flow.endpoint = hit
                rec = self._record(flow)
                rec.note(f"TLS ClientHello SNI {sni} (signature {hit.pool.id} {hit.role} host "
                         f"{hit.host.pattern})", frame, ts, TOSERVER)
                self._domain_event(flow, sni, "tls.sni", hit, frame, ts)
        elif flow.endpoint is None:
            # a client that names no server is not a browser (XMRig sends no SNI): in TLS 1.2
            # the server's certificate, in clear, may name the pool
            flow.app = "tls-cert"
            return
        self._tls_decided(flow)

    def _tls_decided(self, flow: Flow) -> None:
        # encrypted from here on: the verdict rests on the endpoint, inspection stops
        flow.state = "mining" if flow.endpoint is not None and flow.endpoint.role == "stratum" \
            else "other"
        self._release(flow)

    def _tls_certificate(self, flow: Flow, side: int, data: bytes, frame: int, ts: float,
                         gap: bool) -> None:
        """The server's first flight of a TLS session without SNI: its certificate's names
        (TLS 1.2 and earlier; a TLS 1.3 certificate is encrypted) matched against the
        catalogue."""
        if side == flow.client:
            return
        if gap or not self.budget.take(len(data)):
            self._tls_decided(flow)         # the flight is lost, or no memory to hold it
            return
        flow.tls_buf += data
        done, der = server_certificate(flow.tls_buf)
        if not done:
            return
        names = certificate_names(der) if der is not None else []
        if names is None:
            self._anomaly("tls.bad_certificate", frame, ts, "applayer", "tls", flow=flow)
        c = flow.client if flow.client is not None else 1 - side
        for name in names or ():
            hit = self.cat.match_certificate(name, flow.ports[1 - c])
            if hit is None:
                continue
            flow.endpoint = hit
            flow.cert = name
            self._record(flow).note(
                f"TLS server certificate for {name}, no SNI from the client (signature "
                f"{hit.pool.id} {hit.role} host {hit.host.pattern})", frame, ts, TOCLIENT)
            self._domain_event(flow, name, "tls.certificate", hit, frame, ts)
            break
        self._tls_decided(flow)

    def _http(self, flow: Flow, side: int, msg: HttpMessage) -> None:
        if flow.state == "other":
            return
        if msg.is_request:
            if flow.client is None:
                flow.client = side
            host = msg.headers.get("host", "").split(":")[0].lower()
            if host and flow.http_host is None:
                flow.http_host = host
                hit = self.cat.match(host)
                if hit is not None:
                    if flow.endpoint is None:
                        flow.endpoint = hit
                    self._record(flow).note(f"HTTP Host {host} (signature {hit.pool.id})",
                                            msg.frame, msg.ts, TOSERVER)
                    self._domain_event(flow, host, "http.host", hit, msg.frame, msg.ts)
            ext = msg.headers.get("x-mining-extensions")
            if ext:
                self._record(flow).note(f"X-Mining-Extensions: {ext[:80]}", msg.frame, msg.ts,
                                        TOSERVER)
        if msg.body:
            before = self._session(flow).mining_frames
            self._json(flow, side, msg.body, msg.frame, msg.ts)
            s = self._session(flow)
            if msg.is_request and s.mining_frames > before:
                auth = msg.headers.get("authorization", "")
                target = msg.start.split(" ")[1] if " " in msg.start else ""
                login = None
                if auth.lower().startswith("basic "):
                    try:
                        login = "http-basic:" + base64.b64decode(auth[6:].strip()).decode("utf-8", "replace")
                    except ValueError:
                        login = None
                elif "?" in target:
                    login = "url:" + target[:256]
                if login:
                    s.emit("login", msg.frame, msg.ts, TOSERVER, s.dialect, login=login)
                    self._drain(flow)
                ua = msg.headers.get("user-agent")
                if ua:
                    s.emit("agent", msg.frame, msg.ts, TOSERVER, s.dialect, agent=ua[:200])
                    self._drain(flow)
        if msg.is_request and flow.state == "undecided" and flow.endpoint is None \
                and not opens_json(msg.body) \
                and "websocket" not in msg.headers.get("upgrade", "").lower():
            # HTTP mining is JSON-RPC in a request body (getwork, getblocktemplate,
            # eth_getWork) or a WebSocket: an ordinary request decides the flow
            self._give_up(flow)

    def _session(self, flow: Flow) -> dialects.Session:
        if flow.session is None:
            flow.session = dialects.Session()
        return flow.session

    def _record(self, flow: Flow) -> FlowRecord:
        if flow.record is None:
            flow.record = FlowRecord(flow.file)
        return flow.record

    def _json(self, flow: Flow, side: int, line: bytes, frame: int, ts: float) -> None:
        self.stats.lines += 1
        msg = parse_json(line)
        if msg is None:
            return
        self.stats.json_messages += 1
        s = self._session(flow)
        if not s.direction_proven:
            role = dialects.sender_role(msg)
            if role is not None:
                flow.client = side if role == "client" else 1 - side
                s.direction_proven = True
        if flow.client is None:
            flow.client = self._guess_client(flow)
        direction = TOSERVER if side == flow.client else TOCLIENT
        n = len(s.out)
        try:
            dialects.handle(s, msg, direction, frame, ts)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                ZeroDivisionError) as exc:
            self._anomaly("applayer.dialect_error", frame, ts, "applayer", "stratum", flow=flow,
                          detail=f"{type(exc).__name__}: {str(exc)[:80]}")
            return
        if len(s.out) > n:
            s.mining_frames += 1
        self._drain(flow)

    def _drain(self, flow: Flow) -> None:
        s = flow.session
        if s is None or not s.out:
            return
        rec = self._record(flow)
        for o in s.out:
            rec.fold(o)
        s.out.clear()
        if rec.proof and flow.state != "mining":
            flow.state = "mining"
            self.stats.flows_mining += 1

    @staticmethod
    def _guess_client(flow: Flow) -> int:
        """No SYN and no message that proves it: the ephemeral (higher) port is the client."""
        p0, p1 = flow.ports
        if p0 >= 1024 and p1 < 1024:
            return 0
        if p1 >= 1024 and p0 < 1024:
            return 1
        return 0 if p0 > p1 else 1

    def _domain_event(self, flow: Flow, name: str, where: str, hit: Match, frame: int,
                      ts: float) -> None:
        if len(self.domain_events) >= MAX_DOMAIN_EVENTS:
            return
        ev = {"ts": ts, "pcap_filename": flow.file, "pcap_cnt": frame,
              "pool_domain": {"name": name, "seen_in": where, "signature_id": hit.pool.id,
                              "rev": hit.pool.rev, "role": hit.role, "source": hit.pool.source}}
        ev.update(self._tuple(flow))
        self.domain_events.append(ev)

    def _tuple(self, flow: Flow, c: int | None = None) -> dict[str, Any]:
        if c is None:
            c = flow.client if flow.client is not None else self._guess_client(flow)
        return {"src_ip": ip_str(flow.ips[c]), "src_port": flow.ports[c],
                "dest_ip": ip_str(flow.ips[1 - c]), "dest_port": flow.ports[1 - c],
                "proto": "TCP" if flow.proto == 6 else "UDP"}

    # -- finishing flows -----------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        """Finish flows idle for FLOW_IDLE_S (the table is in last-activity order), and TCP
        flows closed and silent for CLOSED_LINGER_S."""
        flows = self.flows
        # closed flows: a FIN/RST left the flow an entry in the heap, keyed by a close time no
        # later than its latest; the ones due are finished in a canonical order (the same in
        # the batch and per-packet paths)
        limit = now - CLOSED_LINGER_S
        heap = self.closing
        due: list[Flow] = []            # (a flow has one entry in the heap: no repeats)
        while heap and heap[0][0] < limit:
            _, _, f = heapq.heappop(heap)
            f.queued = False
            if flows.get(f.key) is not f or not f.closed:
                continue                # finished already, or reopened (a later close pushes again)
            if f.silent_before(limit):
                due.append(f)
            else:
                heapq.heappush(heap, (max(f.last_ts, f.close_ts), next(self._tick), f))
                f.queued = True
        for f in _canonical(due):
            del flows[f.key]
            self._finish(f)
        self._wind_down_closed(now)
        while flows:
            key, f = next(iter(flows.items()))
            if now - f.last_ts <= FLOW_IDLE_S:
                break
            del flows[key]
            self._finish(f)

    def _wind_down_closed(self, now: float) -> None:
        """Flows closed by FIN both ways (no RST: a forged reset must not cut a session) and
        silent for WIND_DOWN_S: deliver what their reassembly holds, then drop that state and
        their session's job and request tables. The flow itself lingers CLOSED_LINGER_S to
        absorb stragglers (a retransmitted FIN, the last ACK) before it is finished. At 125 kpps
        most of the watch's open flows are such closed flows, each with its reassembly and
        framing state. Flows are handled in a canonical order (batch == per-packet)."""
        limit = now - WIND_DOWN_S
        ready: dict[int, Flow] = {}
        later: dict[int, Flow] = {}
        for f in self.winding:
            if f.streams is None or self.flows.get(f.key) is not f or f.fin & 3 != 3 or not f.closed:
                continue                # done, finished, or reopened (a later FIN adds it again)
            if f.silent_before(limit):
                ready[id(f)] = f
            else:
                later[id(f)] = f
        self.winding = list(later.values())
        for f in _canonical(ready.values()):
            self._flush_app(f)
            if f.session is not None:
                f.session.jobs.clear()
                f.session.pending.clear()
            self._release(f)
            f.fin |= WOUND

    def expire(self, now: float) -> None:
        """Finish flows idle since before ``now - FLOW_IDLE_S`` (a live capture's wall clock:
        a link that went quiet still ends its flows)."""
        self._sweep(now)

    def _evict(self) -> None:
        # finish the oldest non-mining flow first; a mining flow only if none is left
        for k, f in self.flows.items():
            if f.state != "mining":
                self.flows.pop(k)
                self.stats.flows_evicted += 1
                self._finish(f)
                return
        k, f = self.flows.popitem(last=False)
        self.stats.flows_evicted += 1
        self._finish(f)

    def finish_all(self) -> None:
        self.frags.flush(self.stats.decode if self.lead else self._uncounted)
        self.closing.clear()
        self.winding.clear()
        while self.flows:
            _, f = self.flows.popitem(last=False)
            self._finish(f)
        self._count_refused()

    def _flush_app(self, flow: Flow) -> None:
        """Deliver what reassembly holds back and a last line without its newline."""
        if flow.streams is not None and flow.state != "other":
            for st in flow.streams:
                st.flush()
            for fr in flow.framers or ():
                if isinstance(fr, LineFramer):
                    fr.flush(0, flow.last_ts)

    def _finish(self, flow: Flow) -> None:
        self._flush_app(flow)
        self._release(flow)        # break flow <-> callback cycles: refcounting frees them
        endpoint, client = self._resolve(flow)
        flow.endpoint, flow.client = endpoint, client
        self._account(flow, flow.record, endpoint, client)

    def _resolve(self, flow: Flow) -> tuple[Match | None, int]:
        """The flow's pool endpoint and client side, as known at its last packet."""
        endpoint, client = flow.endpoint, flow.client
        if endpoint is None and self.endpoints:
            # a pool endpoint learned from DNS before the flow's last packet (looked up here,
            # not at flow creation, so the answer does not depend on processing order)
            for side in (0, 1):
                hit = self.endpoints.get(flow.ips[1 - side])
                if hit is not None and hit[1] <= flow.last_ts and flow.ports[1 - side] != 53:
                    endpoint = hit[0]
                    if client is None:
                        client = side
                    break
        return endpoint, client if client is not None else self._guess_client(flow)

    def snapshot(self) -> tuple[dict[str, HostEvidence], Traffic]:
        """What the flows still open would add to the hosts (and to the pool traffic) if
        they ended now.

        Nothing is changed: each live flow is accounted from a copy of its record into
        a separate host table. A watch stores this beside the finished evidence, so a
        session that lasts days shows up (and survives a crash) before it ends.
        """
        finished, finished_traffic = self.hosts, self.traffic
        self.hosts, self.traffic = {}, Traffic()
        try:
            endpoints = self.endpoints
            for flow in self.flows.values():
                if flow.endpoint is None and flow.sign is None and flow.state != "mining" \
                        and (flow.record is None or not flow.record.proof) \
                        and flow.ips[0] not in endpoints and flow.ips[1] not in endpoints:
                    continue        # nothing this flow could add (_account would return at once)
                endpoint, client = self._resolve(flow)
                rec = flow.record.copy() if flow.record is not None else None
                self._account(flow, rec, endpoint, client)
            return self.hosts, self.traffic
        finally:
            self.hosts = finished
            self.traffic = finished_traffic

    def take_hosts(self) -> tuple[dict[str, HostEvidence], Traffic]:
        """The evidence and pool traffic of flows finished since the last call (the caller
        now owns them)."""
        out, self.hosts = self.hosts, {}
        traffic, self.traffic = self.traffic, Traffic()
        return out, traffic

    def _account(self, flow: Flow, rec: FlowRecord | None, endpoint: Match | None, c: int) -> None:
        """Add a flow's evidence to its client's host record (reads the flow, never changes it)."""
        if endpoint is not None and endpoint.role == "stratum" and endpoint.host.ports:
            # the port the pool listens on (through a proxy: the one the client asked for)
            dport = flow.tunnel[2] if flow.tunnel is not None else flow.ports[1 - c]
            if dport not in endpoint.host.ports and dport in (80, 443):
                # a host that serves both the pool and its web site: HTTP(S) to it is the site
                endpoint = Match(endpoint.pool, dataclasses.replace(endpoint.host, role="web"),
                                 endpoint.name)
        mining = flow.state == "mining" or (rec is not None and rec.proof)
        if not mining and endpoint is None:
            if flow.sign is not None:
                self._suspect(flow, c, "Stratum V2 handshake shape", flow.sign, flow.sign_frame)
            return
        if endpoint is not None and not mining and flow.counts[c] == 0:
            return
        client_ip = ip_str(flow.ips[c])
        server_ip = ip_str(flow.ips[1 - c])
        port = flow.ports[1 - c]
        if rec is None:
            rec = FlowRecord(flow.file)
        rec.finish(flow.last_ts)
        if flow.session is not None:
            if rec.algo is None:
                rec.algo = flow.session.algo or flow.session.variant
            if flow.session.dialect:
                rec.dialects = [flow.session.dialect]
        host = self._host(client_ip)
        if host is None:            # the host table is full: the pool traffic still counts
            if mining or endpoint is None or endpoint.role == "stratum":
                n = flow.counts
                self.traffic.spread(flow.first_ts, flow.last_ts, n[2 + c], n[3 - c])
            return
        if endpoint is not None and endpoint.role != "stratum" and not mining:
            # a visit to a pool's web site: a sign, not a session with a pool
            host.signatures.add(endpoint.pool.id)
            host.domains.add(endpoint.name)
            where = _learned_from(flow)
            self._suspect(flow, c,
                          f"contacted pool web site {endpoint.name} ({endpoint.pool.id})",
                          f"session with pool web site {server_ip}:{port} = {endpoint.name} "
                          f"(learned from {where}; signature {endpoint.pool.id})", flow.first_frame)
            return
        if endpoint is not None and not rec.proof and (flow.sni or flow.cert):
            rec.dialects.append("tls")
        domain = endpoint.name if endpoint is not None else \
            flow.sni or flow.http_host or (flow.tunnel[1] if flow.tunnel else None)
        if domain and _is_ip(domain):
            domain = None
        sig = endpoint
        if sig is None:
            for h, _p in rec.pool_hosts:
                sig = self.cat.match(h) if h else None
                if sig is not None:
                    break
        if domain is None:
            for h, _p in rec.pool_hosts:
                if h and not _is_ip(h):
                    domain = h
                    break
        if mining:
            host.raise_verdict("mining", "speaks a mining protocol" if rec.proof else
                               "session with a pool endpoint")
        if endpoint is not None and endpoint.role == "stratum":
            host.raise_verdict("mining", f"session with pool endpoint {endpoint.name} "
                               f"({endpoint.pool.id})")
        if sig is not None:
            host.signatures.add(sig.pool.id)
            host.domains.add(sig.name)
        if endpoint is not None and not rec.proof:
            where = _learned_from(flow)
            rec.note(f"TCP session with {endpoint.role} endpoint {server_ip}:{port} "
                     f"= {endpoint.name} (learned from {where}; signature {endpoint.pool.id})",
                     flow.first_frame, flow.first_ts, TOSERVER)
        ts_side = c
        info = self._tuple(flow, c)
        info["pcap_filename"] = flow.file
        n = flow.counts
        self.traffic.spread(flow.first_ts, flow.last_ts, n[2 + ts_side], n[3 - ts_side])
        host.add_flow(rec, (server_ip, port, domain), n[2 + ts_side], n[3 - ts_side],
                      n[ts_side], n[1 - ts_side], flow.first_ts, flow.last_ts,
                      info, sig.coins if sig is not None else ())
        if flow.midstream:
            host.reasons.add("session picked up mid-stream")
        if flow.tunnel is not None:
            host.reasons.add(f"reached the pool through a {flow.tunnel[0]} proxy")

    def _suspect(self, flow: Flow, c: int, verdict_reason: str, evidence: str, frame: int) -> None:
        """A weaker sign of mining on a flow: the host is 'suspect', with the frame that shows it."""
        host = self._host(ip_str(flow.ips[c]))
        if host is None:
            return
        host.raise_verdict("suspect", verdict_reason)
        host.seen(flow.first_ts)
        host.add_evidence([{"pcap_filename": flow.file, "pcap_cnt": frame, "ts": flow.first_ts,
                            "reason": evidence, **self._tuple(flow, c)}])

    def _host(self, ip: str) -> HostEvidence | None:
        """The host's record, made when first needed; None when MAX_HOSTS records are held
        already (then what it would have added is counted as the anomaly hosts.table_full).
        One spoofed DNS query for a pool name per source address makes one (~3 KB with its
        evidence entry: 100,000 more forged sources, 306 MB more peak); a scan's evidence of
        real miners is thousands of records."""
        h = self.hosts.get(ip)
        if h is None:
            if len(self.hosts) >= MAX_HOSTS:
                self.stats.anomaly("hosts.table_full")
                return None
            h = self.hosts[ip] = HostEvidence(ip)
        return h

    # -- results -------------------------------------------------------------------------
    def results(self, every: bool = False) -> list[HostEvidence]:
        """The hosts with a verdict (``every``: all hosts with evidence), in report order."""
        return sorted((h for h in self.hosts.values() if every or h.verdict != "none"), key=host_order)


SV2_ACT1_BYTES = 64     # Noise NX act 1: the client's ElligatorSwift ephemeral key (§3.10)
SV2_ACT2_BYTES = 234    # act 2: key 64 + encrypted static key 64+16 + signature 74+16


def _random_looking(data: bytes) -> bool:
    """High-entropy bytes (keys, ciphertext): most byte values distinct."""
    return len(set(data)) >= len(data) * 5 // 8


def _sv2_act1(data: bytes) -> bool:
    return len(data) == SV2_ACT1_BYTES and _random_looking(data)


def _learned_from(flow: Flow) -> str:
    """Where a flow's pool endpoint was named."""
    if flow.sni:
        return "TLS SNI"
    if flow.cert:
        return "TLS certificate"
    if flow.http_host:
        return "HTTP Host"
    if flow.tunnel is not None and flow.endpoint is not None \
            and flow.endpoint.name == flow.tunnel[1].lower().rstrip("."):
        return f"{flow.tunnel[0]} request"
    return "DNS"


def _canonical(flows: Iterable[Flow]) -> list[Flow]:
    """Flows in an order that does not depend on how packets were batched: by last packet,
    then 5-tuple (flows finished or wound down at one sweep are handled in this order)."""
    return sorted(flows, key=lambda f: (f.last_ts, f.key))


def _packed(ip: str) -> bytes:
    """An address from a DNS answer, packed as flows carry theirs."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def _is_ip(text: str) -> bool:
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, text)
            return True
        except (OSError, ValueError):      # ValueError: a NUL inside a hostile name
            continue
    return False
