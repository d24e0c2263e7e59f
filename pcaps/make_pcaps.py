#!/usr/bin/env python3
"""Generate the small test captures in pcaps/ (run: python pcaps/make_pcaps.py).

Every capture is one scripted mining session (or a benign one) with known
difficulty and share times, written with scapy in the link type and format the
test needs: Ethernet, 802.1Q/QinQ, Linux SLL, IPv6, pcapng, gzip; compact and
spaced JSON; sessions caught mid-stream; segments split and reordered.

``pcaps/expected.json`` records, per capture, the facts the generator put in
(client, pool, worker, shares, work per share, the window) so that tests can
compute the textbook hashrate independently of poolsniff.

Wallets are the invented example addresses of shared/docs/mining-protocols.md
(valid checksums, owned by nobody).
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.l2 import GRE
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000.0          # 2023-11-14: after RandomX, so XMR jobs without 'algo' are rx/0

BTC_ADDR = "18ZaVcAT9uahY1jsgF4MQSE7TiZrCjgR3v"
ETH_ADDR = "0x5baee261f53b26152d263ba83b037cd4962e4348"
XMR_ADDR = ("41fdNBJcyH9Ei1sB4mBPHwV3hCbee9xFphnt6aqmazMsHk8UTCQkSRNjBjxq1FZzxt5MFjeGeWh2CTGKx"
            "U2Ap877KJPhBZL")
RVN_ADDR = "RJJ534EVz4QjFJL9ZdRCvwZRgLULPkBtkH"
ZEC_ADDR = "t1T5CwnNPR4Yyx7fdckjv1hG4Df7rnRP48m"
KAS_ADDR = "kaspa:qzcd29ee8ez7xwkvsu9n232vl093g3q0z0t0yqklczmnfk8j8pswxt9aqg5yl"


@dataclass
class Msg:
    t: float
    to_server: bool
    data: bytes


@dataclass
class Flow:
    client: str
    server: str
    cport: int
    sport: int
    msgs: list[Msg] = field(default_factory=list)
    handshake: bool = True
    segment: int = 0               # split payloads into segments of this size (0: one per msg)
    reorder: bool = False          # swap each pair of client segments
    start_midline: int = 0         # drop this many bytes at the start of each direction
    v6: bool = False
    spaced: bool = False           # cgminer-style '{"id": 1, "method": ...}'
    crlf: bool = False

    def __post_init__(self) -> None:
        for k, v in VARIANT.items():
            if k in ("spaced", "crlf", "segment", "reorder") and not getattr(self, k):
                setattr(self, k, v)

    def c(self, t: float, obj: dict | str, spaced: bool = False, crlf: bool = False) -> None:
        self.msgs.append(Msg(t, True, _line(obj, spaced or self.spaced, crlf or self.crlf)))

    def s(self, t: float, obj: dict | str, spaced: bool = False, crlf: bool = False) -> None:
        self.msgs.append(Msg(t, False, _line(obj, spaced or self.spaced, crlf or self.crlf)))


#: options every Flow of the capture being written takes (see main(): spaced, reordered...)
VARIANT: dict[str, object] = {}


def _line(obj: dict | str, spaced: bool, crlf: bool) -> bytes:
    if isinstance(obj, str):
        text = obj
    elif spaced:
        text = json.dumps(obj, separators=(", ", ": "))
    else:
        text = json.dumps(obj, separators=(",", ":"))
    return (text + ("\r\n" if crlf else "\n")).encode()


def _ip(f: Flow, to_server: bool):  # noqa: ANN202
    src, dst = (f.client, f.server) if to_server else (f.server, f.client)
    return IPv6(src=src, dst=dst) if f.v6 else IP(src=src, dst=dst)


def tcp_packets(f: Flow) -> list:
    """Scapy packets (IP and up) with timestamps for a scripted TCP flow."""
    pkts = []
    cseq, sseq = 1000, 50000
    t_first = f.msgs[0].t - 0.01 if f.msgs else T0
    if f.handshake:
        for flags, to_s, seq, ack in (("S", True, cseq, 0), ("SA", False, sseq, cseq + 1),
                                      ("A", True, cseq + 1, sseq + 1)):
            p = _ip(f, to_s) / TCP(sport=f.cport if to_s else f.sport,
                                   dport=f.sport if to_s else f.cport, flags=flags, seq=seq, ack=ack)
            p.time = t_first
            pkts.append(p)
        cseq += 1
        sseq += 1
    skip = {True: f.start_midline, False: f.start_midline}
    pending_swap = None
    for m in f.msgs:
        data = m.data
        if skip[m.to_server]:
            cut = min(skip[m.to_server], len(data))
            data = data[cut:]
            skip[m.to_server] -= cut
            if m.to_server:
                cseq += cut
            else:
                sseq += cut
            if not data:
                continue
        size = f.segment or len(data)
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        for ch in chunks:
            seq = cseq if m.to_server else sseq
            ack = sseq if m.to_server else cseq
            p = _ip(f, m.to_server) / TCP(sport=f.cport if m.to_server else f.sport,
                                          dport=f.sport if m.to_server else f.cport, flags="PA",
                                          seq=seq, ack=ack) / Raw(ch)
            p.time = m.t
            if m.to_server:
                cseq += len(ch)
            else:
                sseq += len(ch)
            if f.reorder and m.to_server:
                if pending_swap is None:
                    pending_swap = p
                    continue
                pkts.extend([p, pending_swap])     # later segment first, then the earlier one
                pending_swap = None
                continue
            pkts.append(p)
    if pending_swap is not None:
        pkts.append(pending_swap)
    if f.reorder and f.msgs:
        # one retransmission of the first client segment for good measure
        first = next(p for p in pkts if p.haslayer(Raw) and p[TCP].sport == f.cport)
        dup = first.copy()
        dup.time = f.msgs[-1].t
        if not f.v6:
            dup[IP].id = first[IP].id + 1     # a stack sends a retransmission with a new IP ID
        pkts.append(dup)
    pkts.sort(key=lambda p: float(p.time))
    return pkts


def write(name: str, pkts: list, link: str = "ether", fmt: str = "pcap", nsec: bool = False,
          vlan: tuple[int, ...] = ()) -> None:
    framed = []
    for p in pkts:
        if link == "ether":
            l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            if len(vlan) == 2:
                l2 = l2 / Dot1AD(vlan=vlan[0]) / Dot1Q(vlan=vlan[1])
            elif vlan:
                l2 = l2 / Dot1Q(vlan=vlan[0])
            q = l2 / p
        elif link == "sll":
            q = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00",
                            proto=0x86DD if p.haslayer(IPv6) else 0x0800) / p
        else:
            q = p
        q.time = p.time
        framed.append(q)
    path = HERE / name
    if fmt == "pcapng":
        w = PcapNgWriter(str(path))
    else:
        lt = {"ether": 1, "sll": 113, "raw": 101}[link]
        w = PcapWriter(str(path), linktype=lt, nano=nsec, sync=True)
    for q in framed:
        w.write(q)
    w.close()


# ---------------------------------------------------------------------------------- sessions
EXPECTED: dict[str, dict] = {}


def shares(f: Flow, first: float, n: int, every: float, mk_submit, mk_ok, reject_at: int | None = None,
           reject=None) -> list[float]:  # noqa: ANN001
    """Append n submits (id 100+i) and their answers; returns accepted share times."""
    acc = []
    for i in range(n):
        t = first + i * every
        f.c(t, mk_submit(100 + i, i))
        if reject_at is not None and i == reject_at:
            f.s(t + 0.05, reject(100 + i))
        else:
            f.s(t + 0.05, mk_ok(100 + i))
            acc.append(t)
    return acc


def expect(name: str, **kw) -> None:  # noqa: ANN003
    EXPECTED[name] = kw


def stratum_btc(name: str, spaced: bool, crlf: bool, vlan: tuple[int, ...], gz: bool = False) -> None:
    f = Flow("10.1.0.10", "203.0.113.10", 50001, 3333, spaced=spaced, crlf=crlf)
    t = T0
    f.c(t, {"id": 1, "method": "mining.configure", "params": [["version-rolling"],
            {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}]}, spaced, crlf)
    f.s(t + 0.1, {"id": 1, "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
                  "error": None}, spaced, crlf)
    f.c(t + 0.2, {"id": 2, "method": "mining.subscribe", "params": ["bmminer/2.0.0"]}, spaced, crlf)
    f.s(t + 0.3, {"id": 2, "result": [[["mining.set_difficulty", "b4b6693b72a50c71"],
                                       ["mining.notify", "ae6812eb4cd7735a"]], "08000002", 4],
                  "error": None}, spaced, crlf)
    f.c(t + 0.4, {"id": 3, "method": "mining.authorize", "params": [f"{BTC_ADDR}.rack07", "x"]},
        spaced, crlf)
    f.s(t + 0.5, {"id": 3, "result": True, "error": None}, spaced, crlf)
    f.s(t + 0.6, {"id": None, "method": "mining.set_difficulty", "params": [65536]}, spaced, crlf)
    job_t = t + 0.7
    f.s(job_t, {"id": None, "method": "mining.notify", "params": [
        "1a2b3c4d", "00" * 32, "01" * 60, "02" * 40, ["03" * 32, "04" * 32], "20000000", "17034219",
        "6650f1a2", True]}, spaced, crlf)
    acc = shares(f, job_t + 5, 12, 10.0,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [
                     f"{BTC_ADDR}.rack07", "1a2b3c4d", f"{k:08x}", "6650f1a2", "9f3e2a11", "00a4e000"]},
                 lambda i: {"id": i, "result": True, "error": None},
                 reject_at=6, reject=lambda i: {"id": i, "result": None,
                                                "error": [23, "Low difficulty share", None]})
    end = f.msgs[-1].t
    write(name, tcp_packets(f), vlan=vlan)
    if gz:
        raw = (HERE / name).read_bytes()
        (HERE / name).unlink()
        name = name + ".gz"
        (HERE / name).write_bytes(gzip.compress(raw, mtime=0))
    expect(name, client="10.1.0.10", pool_ip="203.0.113.10", pool_port=3333, dialect="stratum-v1",
           coin="BTC", algorithm="sha256d", worker=f"{BTC_ADDR}.rack07", wallet=BTC_ADDR,
           agent="bmminer/2.0.0", submitted=12, accepted=11, rejected=1,
           work=65536 * 2 ** 48 / 0xFFFF, window=end - job_t, n=len(acc))


def ethstratum(name: str) -> None:
    f = Flow("2001:db8::10", "2001:db8:ffff::20", 50002, 4444, v6=True)
    t = T0
    f.c(t, {"id": 1, "method": "mining.subscribe", "params": ["PhoenixMiner/5.5c", "EthereumStratum/1.0.0"]})
    f.s(t + 0.1, {"id": 1, "result": [["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f",
                                       "EthereumStratum/1.0.0"], "a2eea0"], "error": None})
    f.c(t + 0.2, {"id": 2, "method": "mining.extranonce.subscribe", "params": []})
    f.c(t + 0.3, {"id": 3, "method": "mining.authorize", "params": [f"{ETH_ADDR}.rig01", "x"]})
    f.s(t + 0.4, {"id": 3, "result": True, "error": None})
    f.s(t + 0.5, {"id": None, "method": "mining.set_difficulty", "params": [4.0]})
    job_t = t + 0.6
    f.s(job_t, {"id": None, "method": "mining.notify", "params": ["bf0488aa", "aa" * 32, "bb" * 32, True]})
    acc = shares(f, job_t + 3, 25, 4.0,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [f"{ETH_ADDR}.rig01", "bf0488aa", f"cfae7df7{k:02x}"]},
                 lambda i: {"id": i, "result": True, "error": None})
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="2001:db8::10", pool_ip="2001:db8:ffff::20", pool_port=4444,
           dialect="ethereumstratum-1.0.0", coin="ETH", algorithm="ethash", worker=f"{ETH_ADDR}.rig01",
           wallet=ETH_ADDR, agent="PhoenixMiner/5.5c", submitted=25, accepted=25, rejected=0,
           work=4.0 * 2 ** 48 / 0xFFFF, window=end - job_t, n=len(acc))


def ethproxy(name: str) -> None:
    f = Flow("10.1.0.11", "203.0.113.11", 50003, 8008)
    t = T0
    boundary = "0x00000000dbe6fecebdedd5beb573440e5a884d1b2fbf06fcce912adcb8d8422e"
    header = "0x" + "ab" * 32
    f.c(t, {"id": 1, "jsonrpc": "2.0", "method": "eth_submitLogin", "worker": "eth1.0",
            "params": [f"{ETH_ADDR}.rig02", "x"]})
    f.s(t + 0.1, {"id": 1, "jsonrpc": "2.0", "result": True})
    f.c(t + 0.2, {"id": 5, "jsonrpc": "2.0", "method": "eth_getWork", "params": []})
    job_t = t + 0.3
    f.s(job_t, {"id": 5, "jsonrpc": "2.0", "result": [header, "0x" + "cd" * 32, boundary, "0xe4b2c1"]})
    f.s(job_t + 20, {"id": 0, "jsonrpc": "2.0", "result": ["0x" + "ac" * 32, "0x" + "cd" * 32, boundary]})
    acc = shares(f, job_t + 30, 8, 30.0,
                 lambda i, k: {"id": i, "jsonrpc": "2.0", "method": "eth_submitWork", "worker": "rig02",
                               "params": [f"0x{k:016x}", "0x" + "ac" * 32, "0x" + "ef" * 32]},
                 lambda i: {"id": i, "jsonrpc": "2.0", "result": True})
    for k in range(4):
        f.c(job_t + 60 * k + 1, {"id": 9, "jsonrpc": "2.0", "method": "eth_submitHashrate", "worker": "rig02",
                                 "params": [hex(30_000_000 + k), "0x" + "59" * 32]})
    f.msgs.sort(key=lambda m: m.t)
    end = f.msgs[-1].t
    write(name, tcp_packets(f), link="sll")
    expect(name, client="10.1.0.11", pool_ip="203.0.113.11", pool_port=8008, dialect="eth-proxy",
           coin="ETH", algorithm="ethash", worker=f"{ETH_ADDR}.rig02", wallet=ETH_ADDR, agent=None,
           submitted=8, accepted=8, rejected=0, work=2 ** 256 / (int(boundary, 16) + 1),
           window=end - job_t, n=len(acc), reported=[30_000_000, 30_000_003])


def kawpow(name: str) -> None:
    f = Flow("10.1.0.12", "203.0.113.12", 50004, 4505)
    t = T0
    target = "00000009fff60000000000000000000000000000000000000000000000000000"
    f.c(t, {"id": 1, "method": "mining.subscribe", "params": ["GMiner/2.09", None, "rvn.pool.example", "4505"]})
    f.s(t + 0.1, {"id": 1, "result": [None, "64290b"], "error": None})
    f.c(t + 0.2, {"id": 2, "method": "mining.authorize", "params": [f"{RVN_ADDR}.rig01", "x"]})
    f.s(t + 0.3, {"id": 2, "result": True, "error": None})
    f.s(t + 0.4, {"id": None, "method": "mining.set_target", "params": [target]})
    job_t = t + 0.5
    f.s(job_t, {"id": None, "method": "mining.notify", "params": ["5a3f", "aa" * 32, "bb" * 32, target, True, 3412345, "1b06d58a"]})
    acc = shares(f, job_t + 2, 30, 2.0,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [f"{RVN_ADDR}.rig01", "5a3f", f"0x{k:016x}", "0x" + "aa" * 32, "0x" + "cc" * 32]},
                 lambda i: {"id": i, "result": True, "error": None})
    end = f.msgs[-1].t
    write(name, tcp_packets(f), fmt="pcapng")
    expect(name, client="10.1.0.12", pool_ip="203.0.113.12", pool_port=4505, dialect="stratum-kawpow",
           coin="RVN", algorithm="kawpow", worker=f"{RVN_ADDR}.rig01", wallet=RVN_ADDR, agent="GMiner/2.09",
           submitted=30, accepted=30, rejected=0, work=2 ** 256 / (int(target, 16) + 1),
           window=end - job_t, n=len(acc))


def equihash(name: str) -> None:
    f = Flow("10.1.0.13", "203.0.113.13", 50005, 3357)
    t = T0
    target = "0007ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    f.c(t, {"id": 1, "method": "mining.subscribe", "params": ["MagicBean/1.0.0", None, "zec.pool.example", 3357]})
    f.s(t + 0.1, {"id": 1, "result": ["8c4a1b2e", "ef001234"], "error": None})
    f.c(t + 0.2, {"id": 2, "method": "mining.authorize", "params": [f"{ZEC_ADDR}.rig01", "x"]})
    f.s(t + 0.3, {"id": 2, "result": True, "error": None})
    f.s(t + 0.4, {"id": None, "method": "mining.set_target", "params": [target]})
    job_t = t + 0.5
    f.s(job_t, {"id": None, "method": "mining.notify", "params": ["3a1", "04000000", "aa" * 32, "bb" * 32, "00" * 32, "5a1b2c3d", "1d00ffff", True]})
    acc = shares(f, job_t + 5, 15, 8.0,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [f"{ZEC_ADDR}.rig01", "3a1", "5a1b2c3d", f"{k:056x}", "fd4005" + "ab" * 40]},
                 lambda i: {"id": i, "result": True, "error": None},
                 reject_at=14, reject=lambda i: {"id": i, "result": None, "error": [21, "Stale job", None]})
    end = f.msgs[-1].t
    write(name, tcp_packets(f), nsec=True)
    expect(name, client="10.1.0.13", pool_ip="203.0.113.13", pool_port=3357, dialect="stratum-equihash",
           coin="ZEC", algorithm="equihash", worker=f"{ZEC_ADDR}.rig01", wallet=ZEC_ADDR, agent="MagicBean/1.0.0",
           submitted=15, accepted=14, rejected=1, work=2 ** 256 / (int(target, 16) + 1),
           window=end - job_t, n=len(acc), domain="zec.pool.example")


def kaspa(name: str) -> None:
    f = Flow("10.1.0.14", "203.0.113.14", 50006, 5555)
    t = T0
    f.c(t, {"id": 1, "method": "mining.subscribe", "params": ["IceRiverMiner-v1.1", "EthereumStratum/1.0.0"]})
    f.s(t + 0.1, {"id": 1, "result": [True, "EthereumStratum/1.0.0"], "error": None})
    f.c(t + 0.2, {"id": 2, "method": "mining.authorize", "params": [f"{KAS_ADDR}.ks0-01", ""]})
    f.s(t + 0.3, {"id": 2, "result": True, "error": None})
    f.s(t + 0.4, {"id": None, "method": "mining.set_extranonce", "params": ["0001"]})
    f.s(t + 0.5, {"id": None, "method": "mining.set_difficulty", "params": [4096]})
    job_t = t + 0.6
    f.s(job_t, {"id": None, "method": "mining.notify", "params": ["17", [1234567890123456789, 987654321987654321, 111111111111111111, 222222222222222222], 1716200000000]})
    acc = shares(f, job_t + 1, 40, 1.5,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [f"{KAS_ADDR}.ks0-01", "17", f"0x0001{k:012x}"]},
                 lambda i: {"id": i, "result": True, "error": None})
    end = f.msgs[-1].t
    write(name, tcp_packets(f), vlan=(100,))
    expect(name, client="10.1.0.14", pool_ip="203.0.113.14", pool_port=5555, dialect="stratum-kaspa",
           coin="KAS", algorithm="kheavyhash", worker=f"{KAS_ADDR}.ks0-01", wallet=KAS_ADDR,
           agent="IceRiverMiner-v1.1", submitted=40, accepted=40, rejected=0, work=4096 * 2.0 ** 32,
           window=end - job_t, n=len(acc))


def xmrig_session(f: Flow, login: bool = True, n: int = 20) -> tuple[float, list[float]]:
    t = T0
    if login:
        f.c(t, {"id": 1, "jsonrpc": "2.0", "method": "login", "params": {
            "login": XMR_ADDR, "pass": "rig01", "agent": "XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.1",
            "rigid": "rig01", "algo": ["rx/0", "cn/r"]}})
        job_t = t + 0.1
        f.s(job_t, {"id": 1, "jsonrpc": "2.0", "error": None, "result": {
            "id": "1be0b7b6", "job": {"blob": "0707" + "ab" * 74, "job_id": "q7PLUPL25UV0", "target": "b88d0600",
                                      "id": "1be0b7b6", "algo": "rx/0", "height": 3123456, "seed_hash": "cd" * 32},
            "extensions": ["algo", "nicehash", "connect", "tls", "keepalive"], "status": "OK"}})
    else:
        job_t = t + 0.1
        f.s(job_t, {"jsonrpc": "2.0", "method": "job", "params": {
            "blob": "0707" + "ab" * 74, "job_id": "q7PLUPL25UV0", "target": "b88d0600", "id": "1be0b7b6",
            "algo": "rx/0", "height": 3123457, "seed_hash": "cd" * 32}})
    acc = shares(f, job_t + 5, n, 6.0,
                 lambda i, k: {"id": i, "jsonrpc": "2.0", "method": "submit", "params": {
                     "id": "1be0b7b6", "job_id": "q7PLUPL25UV0", "nonce": f"{k:08x}", "result": "ee" * 32, "algo": "rx/0"}},
                 lambda i: {"id": i, "jsonrpc": "2.0", "error": None, "result": {"status": "OK"}})
    f.c(acc[-1] + 3, {"id": 900, "jsonrpc": "2.0", "method": "keepalived", "params": {"id": "1be0b7b6"}})
    f.s(acc[-1] + 3.1, {"id": 900, "jsonrpc": "2.0", "error": None, "result": {"status": "KEEPALIVED"}})
    return job_t, acc


def xmrig(name: str) -> None:
    f = Flow("10.1.0.15", "203.0.113.15", 50007, 3333)
    job_t, acc = xmrig_session(f)
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.15", pool_ip="203.0.113.15", pool_port=3333, dialect="xmrig", coin="XMR",
           algorithm="rx/0", worker=XMR_ADDR, wallet=XMR_ADDR,
           agent="XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.1", submitted=20, accepted=20,
           rejected=0, work=0xFFFFFFFFFFFFFFFF / (0xFFFFFFFFFFFFFFFF // (0xFFFFFFFF // 0x00068DB8)),
           window=end - job_t, n=len(acc))


def xmrig_fast_open(name: str) -> None:
    """TCP Fast Open: the login rides in the SYN (its data starts at ISN + 1)."""
    f = Flow("10.1.0.18", "203.0.113.18", 50010, 3333)
    job_t, acc = xmrig_session(f, n=5)
    end = f.msgs[-1].t
    pkts = tcp_packets(f)
    syn, login = pkts[0], next(p for p in pkts if p.haslayer(Raw))
    tfo = syn.copy()
    tfo[TCP].remove_payload()
    tfo = tfo / Raw(bytes(login[Raw].load))
    tfo.time = syn.time
    pkts = [tfo] + [p for p in pkts[1:] if p is not login]
    write(name, pkts)
    expect(name, client="10.1.0.18", pool_ip="203.0.113.18", pool_port=3333, dialect="xmrig", coin="XMR",
           algorithm="rx/0", worker=XMR_ADDR, wallet=XMR_ADDR,
           agent="XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.1", submitted=5, accepted=5,
           rejected=0, work=0xFFFFFFFFFFFFFFFF / (0xFFFFFFFFFFFFFFFF // (0xFFFFFFFF // 0x00068DB8)),
           window=end - job_t, n=len(acc))


def xmrig_midstream(name: str) -> None:
    """No SYN, no login; the capture starts in the middle of a pushed job line; segmented and reordered."""
    f = Flow("10.1.0.16", "203.0.113.16", 50008, 14444, handshake=False, segment=37, reorder=True)
    # a partial line first (the tail of an earlier message), then the session proper
    f.msgs.append(Msg(T0 - 1, False, b'eight":3123455,"seed_hash":"cc"}}\n'))
    job_t, acc = xmrig_session(f, login=False, n=16)
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.16", pool_ip="203.0.113.16", pool_port=14444, dialect="xmrig", coin="XMR",
           algorithm="rx/0", worker=None, wallet=None, agent=None, submitted=16, accepted=16, rejected=0,
           work=0xFFFFFFFFFFFFFFFF / (0xFFFFFFFFFFFFFFFF // (0xFFFFFFFF // 0x00068DB8)),
           window=end - job_t, n=len(acc), midstream=True)


def grin(name: str) -> None:
    f = Flow("10.1.0.17", "203.0.113.17", 50009, 3416)
    t = T0
    f.c(t, {"id": "0", "jsonrpc": "2.0", "method": "login", "params": {"login": "grinuser.rig1", "pass": "x", "agent": "grin-miner"}})
    f.s(t + 0.1, {"id": "0", "jsonrpc": "2.0", "result": "ok", "error": None})
    f.c(t + 0.2, {"id": "1", "jsonrpc": "2.0", "method": "getjobtemplate", "params": None})
    f.s(t + 0.3, {"id": "1", "jsonrpc": "2.0", "result": {"difficulty": 4, "height": 1000, "job_id": 7, "pre_pow": "00" * 100}, "error": None})
    for k in range(3):
        f.c(t + 10 + k, {"id": str(10 + k), "jsonrpc": "2.0", "method": "submit", "params": {"edge_bits": 31, "height": 1000, "job_id": 7, "nonce": 1000 + k, "pow": list(range(42))}})
        f.s(t + 10.1 + k, {"id": str(10 + k), "jsonrpc": "2.0", "result": "ok", "error": None})
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.17", pool_ip="203.0.113.17", pool_port=3416, dialect="grin", coin="GRIN",
           algorithm="cuckoo", worker="grinuser.rig1", wallet=None, agent="grin-miner", submitted=3,
           accepted=3, rejected=0, work=None, window=None, n=None)


BEAM_KEY = "1b9e2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e.rig7"


def beam_session(f: Flow, login: bool = True, n: int = 6) -> None:
    """Beam's stratum (BeamMW/beam pow/stratum.h), with NiceHash's additions (nonceprefix,
    height): every field beside "method", answers as "result" messages with a code."""
    t = T0
    if login:
        f.c(t, {"method": "login", "api_key": BEAM_KEY, "id": "login", "jsonrpc": "2.0"})
        f.s(t + 0.1, {"id": "login", "code": 0, "description": "Login successful",
                      "nonceprefix": "ab4e3a", "forkheight": 321321, "jsonrpc": "2.0",
                      "method": "result"})
    f.s(t + 0.2, {"method": "job", "id": "212", "input": "5c" * 32, "difficulty": 3441671469,
                  "nonceprefix": "ab4e3a", "height": 1200000, "jsonrpc": "2.0"})
    for k in range(n):
        ts = t + 5 + 7 * k
        f.c(ts, {"method": "solution", "id": "212", "nonce": f"ab4e3a{k:010x}", "output": "9d" * 104,
                 "jsonrpc": "2.0"})
        code, desc = (3, "expired") if k == n - 1 else (1, "accepted")
        f.s(ts + 0.1, {"id": "212", "code": code, "description": desc, "jsonrpc": "2.0",
                       "method": "result"})
    f.s(t + 5 + 7 * n, {"method": "cancel", "id": "212", "jsonrpc": "2.0"})


def beam(name: str) -> None:
    f = Flow("10.1.0.26", "203.0.113.26", 50026, 3334)
    beam_session(f)
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.26", pool_ip="203.0.113.26", pool_port=3334, dialect="beam", coin="BEAM",
           algorithm="beamhash", worker=BEAM_KEY, wallet=None, agent=None, submitted=6, accepted=5,
           rejected=1, stale=1, work=None, window=None, n=None, difficulty=[3441671469])


def beam_midstream(name: str) -> None:
    """No SYN, no login: the capture starts inside a line, then jobs, solutions, results."""
    f = Flow("10.1.0.27", "203.0.113.27", 50027, 3334, handshake=False, segment=31, reorder=True)
    f.msgs.append(Msg(T0 - 1, False, b'ption":"accepted","jsonrpc":"2.0","method":"result"}\n'))
    beam_session(f, login=False, n=4)
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.27", pool_ip="203.0.113.27", pool_port=3334, dialect="beam", coin="BEAM",
           algorithm="beamhash", worker=None, wallet=None, agent=None, submitted=4, accepted=3,
           rejected=1, stale=1, work=None, window=None, n=None, difficulty=[3441671469],
           midstream=True)


def http_getwork(name: str) -> None:
    f = Flow("10.1.0.18", "203.0.113.18", 50010, 8332)
    body = json.dumps({"id": 1, "method": "getwork", "params": []}).encode()
    req = (b"POST / HTTP/1.1\r\nHost: 203.0.113.18:8332\r\nAuthorization: Basic cmlnMTp4\r\n"
           b"User-Agent: cgminer/4.10.0\r\nX-Mining-Extensions: longpoll midstate rollntime\r\n"
           b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    res_body = json.dumps({"id": 1, "error": None, "result": {
        "data": "00" * 128, "target": "ff" * 28 + "00000000", "midstate": "00" * 32, "hash1": "00" * 64}}).encode()
    res = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(res_body)).encode() + b"\r\n\r\n" + res_body)
    f.msgs += [Msg(T0, True, req), Msg(T0 + 0.1, False, res)]
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.18", pool_ip="203.0.113.18", pool_port=8332, dialect="getwork-http",
           coin="BTC", algorithm="sha256d", worker="http-basic:rig1:x", wallet=None, agent="cgminer/4.10.0",
           submitted=0, accepted=0, rejected=0, work=None, window=None, n=None)


def ws_frame(payload: bytes, mask: bool, first: int = 0x81) -> bytes:
    head = bytes([first])
    n = len(payload)
    ln = bytes([n | (0x80 if mask else 0)]) if n < 126 else bytes([126 | (0x80 if mask else 0)]) + struct.pack("!H", n)
    if not mask:
        return head + ln + payload
    key = b"\x11\x22\x33\x44"
    return head + ln + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def coinhive_ws(name: str, deflate: bool = False) -> None:
    """A browser miner over WebSocket. ``deflate``: the browser offers permessage-deflate (as
    browsers do), the server takes it, and every message is compressed with context takeover
    in each direction (RFC 7692); the job is sent in two frames."""
    f = Flow("10.1.0.19", "203.0.113.19", 50021 if deflate else 50011, 8080)
    t = T0
    ext = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else b""
    f.msgs.append(Msg(t, True, b"GET /proxy HTTP/1.1\r\nHost: ws001.example-webminer.test\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              b"Sec-WebSocket-Version: 13\r\n" + ext + b"\r\n"))
    f.msgs.append(Msg(t + 0.1, False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      + (b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b"") + b"\r\n"))
    j = lambda o: json.dumps(o, separators=(",", ":")).encode()  # noqa: E731
    comp = {True: zlib.compressobj(wbits=-15), False: zlib.compressobj(wbits=-15)}

    def ws(obj: dict, client: bool, split: bool = False) -> bytes:
        data = j(obj)
        if not deflate:
            return ws_frame(data, client)
        c = comp[client]
        z = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(b"\x00\x00\xff\xff")
        z = z[:-4]
        if split:               # RSV1 on the first frame only; a continuation frame ends it
            h = len(z) // 2
            return ws_frame(z[:h], client, first=0x42) + ws_frame(z[h:], client, first=0x80)
        return ws_frame(z, client, first=0xC1)
    f.msgs.append(Msg(t + 0.2, True, ws({"type": "auth", "params": {"site_key": "SITEKEY123", "type": "anonymous", "user": None, "goal": 0}}, True)))
    f.msgs.append(Msg(t + 0.3, False, ws({"type": "authed", "params": {"token": "", "hashes": 0}}, False)))
    job_t = t + 0.4
    f.msgs.append(Msg(job_t, False, ws({"type": "job", "params": {"blob": "07" * 76, "job_id": "j1", "target": "285c8f02", "id": "x", "algo": "cn/r"}}, False, split=True)))
    acc = []
    for k in range(6):
        ts = job_t + 10 + 10 * k
        f.msgs.append(Msg(ts, True, ws({"type": "submit", "params": {"job_id": "j1", "nonce": f"{k:08x}", "result": "aa" * 32}}, True)))
        f.msgs.append(Msg(ts + 0.1, False, ws({"type": "hash_accepted", "params": {"hashes": k + 1}}, False)))
        acc.append(ts)
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.19", pool_ip="203.0.113.19", pool_port=8080, dialect="coinhive-ws", coin="XMR",
           algorithm="cn/r", worker="site_key:SITEKEY123", wallet=None, agent=None, submitted=6, accepted=6,
           rejected=0, work=0xFFFFFFFFFFFFFFFF / (0xFFFFFFFFFFFFFFFF // (0xFFFFFFFF // 0x028F5C28)),
           window=end - job_t, n=len(acc))


def eth_ws(name: str) -> None:
    """Ethash over WebSocket, JSON-RPC 2.0 (CyberChainXyz/stratum-jsonrpc2-ws): eth_subscribe
    "newWork", jobs as eth_subscription notifications, eth_submitWork with a job id."""
    f = Flow("10.1.0.28", "203.0.113.28", 50028, 8443)
    t = T0
    f.msgs.append(Msg(t, True, b"GET /ws HTTP/1.1\r\nHost: pool.example-ws.test:8443\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              b"Sec-WebSocket-Version: 13\r\n\r\n"))
    f.msgs.append(Msg(t + 0.1, False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))

    def ws(ts: float, obj: dict, client: bool) -> None:
        f.msgs.append(Msg(ts, client, ws_frame(_line(obj, f.spaced, False).rstrip(b"\n"), client)))
    ws(t + 0.2, {"id": 1, "jsonrpc": "2.0", "method": "eth_subscribe",
                 "params": ["newWork", ETH_ADDR + ".rig3", "x", "cyberminer/1.0"]}, True)
    ws(t + 0.3, {"jsonrpc": "2.0", "id": 1, "result": "0xcd0c3e8af590364c09d0fa6a1210faf5"}, False)
    job_t = t + 0.4
    ws(job_t, {"jsonrpc": "2.0", "method": "eth_subscription", "params": {
        "subscription": "0xcd0c3e8af590364c09d0fa6a1210faf5",
        "result": ["4orr4", "0x" + "d9" * 32, "0x" + "00" * 32, "0x00008000" + "00" * 28, "0x4d", "86a3"]}}, False)
    acc = []
    for k in range(8):
        ts = job_t + 3 + 4 * k
        ws(ts, {"id": 10 + k, "jsonrpc": "2.0", "method": "eth_submitWork",
                "params": ["4orr4", f"0x{k:016x}", "0x" + "d9" * 32]}, True)
        ws(ts + 0.1, {"jsonrpc": "2.0", "id": 10 + k, "result": True}, False)
        acc.append(ts)
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.28", pool_ip="203.0.113.28", pool_port=8443, dialect="stratum-jsonrpc2.0-ws",
           coin="ETH", algorithm="ethash", worker=ETH_ADDR + ".rig3", wallet=ETH_ADDR, agent="cyberminer/1.0",
           submitted=8, accepted=8, rejected=0, work=(1 << 256) / ((0x8000 << 224) + 1),
           window=end - job_t, n=len(acc))


def dns_tls(name: str) -> None:
    """A DNS lookup of a pool's stratum host, then a TLS session with SNI to it; a resolver that
    only forwards the lookup; a host that only visits the pool's web site."""
    pkts = []
    def dns(t, client, server, q, ans, sport=40000):  # noqa: ANN001, ANN202
        qp = IP(src=client, dst=server) / UDP(sport=sport, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname=q))
        qp.time = t
        rr = None
        for n, typ, val in ans:
            r = DNSRR(rrname=n, type=typ, rdata=val, ttl=60)
            rr = r if rr is None else rr / r
        rp = IP(src=server, dst=client) / UDP(sport=53, dport=sport) / DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=q), an=rr, ancount=len(ans))
        rp.time = t + 0.01
        return [qp, rp]
    # the miner 10.1.0.20 asks the resolver 10.1.0.53; the resolver asks upstream 198.51.100.53
    pkts += dns(T0, "10.1.0.53", "198.51.100.53", "pool.supportxmr.com", [("pool.supportxmr.com", "CNAME", "lb.supportxmr.com"), ("lb.supportxmr.com", "A", "203.0.113.20")], 40001)
    pkts += dns(T0 + 0.02, "10.1.0.20", "10.1.0.53", "pool.supportxmr.com", [("pool.supportxmr.com", "CNAME", "lb.supportxmr.com"), ("lb.supportxmr.com", "A", "203.0.113.20")])
    pkts += dns(T0 + 0.03, "10.1.0.21", "10.1.0.53", "www.supportxmr.com", [("www.supportxmr.com", "A", "203.0.113.80")], 40002)
    hello = _client_hello("pool.supportxmr.com")
    f = Flow("10.1.0.20", "203.0.113.20", 50012, 443)
    f.msgs += [Msg(T0 + 1, True, hello), Msg(T0 + 1.1, False, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")]
    for k in range(5):
        f.msgs.append(Msg(T0 + 10 + 30 * k, True, b"\x17\x03\x03\x00\x40" + b"\x99" * 64))
    pkts += tcp_packets(f)
    w = Flow("10.1.0.21", "203.0.113.80", 50013, 443)
    w.msgs += [Msg(T0 + 2, True, _client_hello("www.supportxmr.com"))]
    pkts += tcp_packets(w)
    pkts.sort(key=lambda p: float(p.time))
    write(name, pkts)
    expect(name, client="10.1.0.20", pool_ip="203.0.113.20", pool_port=443, dialect="tls", coin="XMR",
           domain="pool.supportxmr.com", suspects=["10.1.0.21", "10.1.0.53"])


def dns_over_tcp(name: str) -> None:
    """Pool names resolved over TCP (RFC 7766): the miner 10.1.0.60 asks the resolver over
    TCP, its answer split over two segments, then holds a TLS session without SNI with the
    address learned (only the DNS answer tells it is a pool's); the resolver's own upstream
    query over TCP carries two pipelined messages in one segment; a Stratum session on TCP
    port 53 is still a mining session."""
    def msg(q, ans=(), resp=False, ident=7):  # noqa: ANN001, ANN202
        rr = None
        for n, typ, val in ans:
            r = DNSRR(rrname=n, type=typ, rdata=val, ttl=60)
            rr = r if rr is None else rr / r
        d = DNS(id=ident, qr=int(resp), rd=1, ra=int(resp), qd=DNSQR(qname=q), an=rr, ancount=len(ans))
        b = bytes(d)
        return struct.pack("!H", len(b)) + b
    chain = [("pool.supportxmr.com", "CNAME", "lb.supportxmr.com"), ("lb.supportxmr.com", "A", "203.0.113.60")]
    pkts = []
    up = Flow("10.1.0.53", "198.51.100.53", 40053, 53)
    up.msgs += [Msg(T0 - 0.05, True, msg("pool.supportxmr.com") + msg("www.example.org", ident=8)),
                Msg(T0 - 0.04, False, msg("pool.supportxmr.com", chain, True)
                    + msg("www.example.org", [("www.example.org", "A", "192.0.2.80")], True, ident=8))]
    pkts += tcp_packets(up)
    c = Flow("10.1.0.60", "10.1.0.53", 40060, 53)
    answer = msg("pool.supportxmr.com", chain, True)
    c.msgs += [Msg(T0, True, msg("pool.supportxmr.com")), Msg(T0 + 0.01, False, answer[:9]),
               Msg(T0 + 0.011, False, answer[9:])]
    pkts += tcp_packets(c)
    f = Flow("10.1.0.60", "203.0.113.60", 50060, 443)
    f.msgs += [Msg(T0 + 1, True, _client_hello(None)), Msg(T0 + 1.1, False, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")]
    for k in range(5):
        f.msgs.append(Msg(T0 + 10 + 30 * k, True, b"\x17\x03\x03\x00\x40" + b"\x99" * 64))
    pkts += tcp_packets(f)
    m = Flow("10.1.0.61", "203.0.113.61", 50061, 53)
    xmrig_session(m, n=3)
    pkts += tcp_packets(m)
    pkts.sort(key=lambda p: float(p.time))
    write(name, pkts)


def _client_hello(sni: str | None) -> bytes:
    if sni is None:
        exts = b""                      # no server_name extension
    else:
        name = sni.encode()
        exts = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = (b"\x03\x03" + b"\x01" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _certificate(names: list[str]) -> bytes:
    """A self-signed certificate for ``names`` (CN the first, SAN all), DER. Ed25519 signs
    deterministically and the key, serial and dates are fixed: the same bytes every run."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    t0 = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(4242)
            .not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .sign(key, None))
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


def _server_flight(cert: bytes | None, tls13: bool = False) -> bytes:
    """A server's first TLS flight: ServerHello (TLS 1.3: supported_versions 0x0304, then
    ChangeCipherSpec and encrypted records), Certificate and ServerHelloDone (TLS 1.2)."""
    exts = struct.pack("!HHH", 43, 2, 0x0304) if tls13 else b""
    hello = (b"\x03\x03" + b"\x02" * 32 + b"\x00" + b"\x13\x01" + b"\x00"
             + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + len(hello).to_bytes(3, "big") + hello
    if tls13:
        return (b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
                + b"\x17\x03\x03\x02\x00" + b"\x5a" * 512)
    assert cert is not None
    certs = len(cert).to_bytes(3, "big") + cert
    body = len(certs).to_bytes(3, "big") + certs
    hs += b"\x0b" + len(body).to_bytes(3, "big") + body + b"\x0e\x00\x00\x00"
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def tls_certificate(name: str) -> None:
    """TLS sessions whose client sends no SNI (as XMRig does by default): in TLS 1.2 the
    server's certificate names the pool (10.1.0.29, on a pool's stratum TLS port); a TLS 1.3
    server's certificate is encrypted (10.1.0.31); a certificate of no pool (10.1.0.32);
    a certificate that is not one (10.1.0.33: an anomaly, no host)."""
    pkts = []
    cases = [("10.1.0.29", "203.0.113.29", 9000, _server_flight(_certificate(["*.supportxmr.com", "supportxmr.com"]))),
             ("10.1.0.31", "203.0.113.31", 9000, _server_flight(None, tls13=True)),
             ("10.1.0.32", "203.0.113.32", 443, _server_flight(_certificate(["www.example.org"]))),
             ("10.1.0.33", "203.0.113.33", 443, _server_flight(b"\x30\x82\x01\x00" + b"\xee" * 256))]
    for i, (client, server, port, flight) in enumerate(cases):
        f = Flow(client, server, 50029 + i, port, segment=700)
        t = T0 + i
        f.msgs += [Msg(t, True, _client_hello(None)), Msg(t + 0.05, False, flight)]
        for k in range(4):
            f.msgs.append(Msg(t + 5 + 20 * k, True, b"\x17\x03\x03\x00\x40" + b"\x99" * 64))
            f.msgs.append(Msg(t + 5.1 + 20 * k, False, b"\x17\x03\x03\x00\x30" + b"\x98" * 48))
        pkts += tcp_packets(f)
    pkts.sort(key=lambda p: float(p.time))
    write(name, pkts)
    expect(name, client="10.1.0.29", pool_ip="203.0.113.29", pool_port=9000, dialect="tls", coin="XMR",
           domain="*.supportxmr.com", not_hosts=["10.1.0.31", "10.1.0.32", "10.1.0.33"],
           anomaly="tls.bad_certificate")


def benign_jsonrpc(name: str) -> None:
    """Ordinary JSON-RPC (an 'echo' service, a node RPC, a 'login' with other fields): no mining."""
    f = Flow("10.1.0.30", "203.0.113.30", 50014, 8080)
    f.c(T0, {"jsonrpc": "2.0", "method": "echo", "params": ["hello"], "id": 1})
    f.s(T0 + 0.1, {"jsonrpc": "2.0", "result": ["hello"], "id": 1})
    f.c(T0 + 0.2, {"jsonrpc": "2.0", "method": "login", "params": {"user": "alice", "password": "x"}, "id": 2})
    f.s(T0 + 0.3, {"jsonrpc": "2.0", "result": {"status": "OK"}, "id": 2})
    f.c(T0 + 0.35, {"jsonrpc": "2.0", "method": "login", "params": {"login": "bob", "pass": "hunter2"}, "id": 5})
    f.s(T0 + 0.36, {"jsonrpc": "2.0", "result": {"id": "sess1", "status": "OK"}, "id": 5})
    f.c(T0 + 0.4, {"jsonrpc": "2.0", "method": "submit", "params": {"form": "a"}, "id": 3})
    f.c(T0 + 0.5, {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": [], "id": 4})
    f.s(T0 + 0.6, {"jsonrpc": "2.0", "result": "0x10", "id": 4})
    f.c(T0 + 0.7, '{"text": "mining.subscribe mining.authorize pool.supportxmr.com"}')
    write(name, tcp_packets(f))
    expect(name, benign=True)


def _socks5_open(host: str, port: int, user: str | None = None, reply: int = 0) -> tuple[list[bytes], list[bytes]]:
    """(client messages, proxy messages) of a SOCKS5 opening (RFC 1928, RFC 1929 auth)."""
    name = host.encode()
    c = [bytes([5, 2, 0, 2]) if user else bytes([5, 1, 0])]
    s = [bytes([5, 2 if user else 0])]
    if user:
        c.append(bytes([1, len(user)]) + user.encode() + bytes([4]) + b"pass")
        s.append(bytes([1, 0]))
    c.append(bytes([5, 1, 0, 3, len(name)]) + name + struct.pack("!H", port))
    s.append(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))
    return c, s


def proxied_xmrig(name: str, kind: str) -> None:
    """An XMRig session opened through a proxy (SOCKS5 with user/password, SOCKS4a, HTTP
    CONNECT): the pool's name is only in the proxy request; the login rides in the same
    segment as the request (optimistic data) for SOCKS4a."""
    f = Flow("10.1.0.40", "10.1.0.5", 50040, {"socks5": 1080, "socks4a": 1080, "connect": 3128}[kind])
    t = T0 - 1
    host = "pool.supportxmr.com"
    if kind == "socks5":
        c, s = _socks5_open(host, 3333, user="rig7")
        for i, (a, b) in enumerate(zip(c, s)):
            f.msgs += [Msg(t + 0.1 * i, True, a), Msg(t + 0.1 * i + 0.05, False, b)]
    elif kind == "socks4a":
        f.msgs.append(Msg(t, True, b"\x04\x01" + struct.pack("!H", 3333) + b"\x00\x00\x00\x01rig7\x00"
                          + host.encode() + b"\x00"))
    else:
        f.msgs.append(Msg(t, True, f"CONNECT {host}:3333 HTTP/1.1\r\nHost: {host}:3333\r\n"
                          f"Proxy-Connection: keep-alive\r\n\r\n".encode()))
        f.msgs.append(Msg(t + 0.05, False, b"HTTP/1.1 200 Connection established\r\n\r\n"))
    job_t, acc = xmrig_session(f)
    if kind == "socks4a":
        # the login goes with the request; the proxy's grant comes before the pool's answer
        login = f.msgs[1]
        f.msgs[0] = Msg(t, True, f.msgs[0].data + login.data)
        f.msgs[1] = Msg(t + 0.05, False, b"\x00\x5a" + struct.pack("!H", 3333) + b"\xcb\x00\x71\x0f")
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.40", pool_ip="10.1.0.5", pool_port=f.sport, domain=host, dialect="xmrig",
           coin="XMR", algorithm="rx/0", worker=XMR_ADDR, wallet=XMR_ADDR,
           agent="XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.1", submitted=20, accepted=20,
           rejected=0, work=0xFFFFFFFFFFFFFFFF / (0xFFFFFFFFFFFFFFFF // (0xFFFFFFFF // 0x00068DB8)),
           window=end - job_t, n=len(acc), tunnel=kind)


def proxied_other(name: str) -> None:
    """Through proxies, without a mining protocol in view: TLS to a pool's stratum host named
    only in an HTTP CONNECT (mining: the endpoint); TLS to an ordinary site over SOCKS5 (no
    verdict); a SOCKS5 request for a pool that the proxy refuses (suspect)."""
    pkts = []
    a = Flow("10.1.0.43", "10.1.0.6", 50043, 3128)
    a.msgs += [Msg(T0, True, b"CONNECT pool.supportxmr.com:443 HTTP/1.1\r\nHost: pool.supportxmr.com:443\r\n\r\n"),
               Msg(T0 + 0.05, False, b"HTTP/1.0 200 OK\r\n\r\n"),
               Msg(T0 + 0.1, True, _client_hello("")),
               Msg(T0 + 0.2, False, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")]
    for k in range(4):
        a.msgs.append(Msg(T0 + 5 + 20 * k, True, b"\x17\x03\x03\x00\x40" + b"\x99" * 64))
    pkts += tcp_packets(a)
    b = Flow("10.1.0.44", "10.1.0.6", 50044, 1080, segment=3)
    c, s = _socks5_open("www.example.com", 443)
    for i, (x, y) in enumerate(zip(c, s)):
        b.msgs += [Msg(T0 + 1 + 0.1 * i, True, x), Msg(T0 + 1 + 0.1 * i + 0.05, False, y)]
    b.msgs.append(Msg(T0 + 1.5, True, _client_hello("www.example.com")))
    pkts += tcp_packets(b)
    r = Flow("10.1.0.45", "10.1.0.6", 50045, 1080)
    c, s = _socks5_open("xmr-eu1.nanopool.org", 14433, reply=2)
    for i, (x, y) in enumerate(zip(c, s)):
        r.msgs += [Msg(T0 + 2 + 0.1 * i, True, x), Msg(T0 + 2 + 0.1 * i + 0.05, False, y)]
    pkts += tcp_packets(r)
    pkts.sort(key=lambda p: float(p.time))
    write(name, pkts)
    expect(name, mining={"10.1.0.43": "pool.supportxmr.com"}, suspects=["10.1.0.45"],
           clean=["10.1.0.44"])


# ---------------------------------------------------------------------------------- tunnels
#: how each miner of tunnels_xmrig.pcap reaches the mirror: (name, wrap(ip packet) -> frame).
#: Outer tunnel endpoints are 192.0.2.x / 2001:db8:ffff::x; they must never become hosts.
def _eth():  # noqa: ANN202
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _outer4(p, proto_layer):  # noqa: ANN001, ANN202
    return _eth() / IP(src="192.0.2.1", dst="192.0.2.2") \
        / proto_layer / p


TUNNELS = [
    ("pppoe", lambda p: _eth() / PPPoE(sessionid=0x2a) / PPP(proto=0x0057 if p.haslayer(IPv6) else 0x0021) / p),
    ("mpls", lambda p: _eth() / MPLS(label=100, s=0) / MPLS(label=200, s=1) / p),
    ("vlan_mpls", lambda p: _eth() / Dot1Q(vlan=7) / MPLS(label=300, s=1) / p),
    ("eompls", lambda p: _eth() / MPLS(label=400, s=1) / Raw(b"\x00\x00\x00\x07") / _eth() / p),
    ("gre_ip", lambda p: _outer4(p, GRE(proto=0x0800))),
    ("gre_teb_key", lambda p: _outer4(_eth() / p, GRE(key_present=1, key=77, proto=0x6558))),
    ("erspan1", lambda p: _outer4(_eth() / p, GRE(proto=0x88BE))),
    ("erspan2", lambda p: _outer4(_eth() / Dot1Q(vlan=12) / p,
                                  GRE(seqnum_present=1, seqence_number=9) / ERSPAN_II(session_id=5, vlan=12))),
    ("erspan3", lambda p: _outer4(_eth() / p, GRE(seqnum_present=1, seqence_number=9, proto=0x22EB)
                                  / ERSPAN_III(session_id=6, o=1) / ERSPAN_PlatformSpecific())),
    ("vxlan", lambda p: _outer4(_eth() / p, UDP(sport=51111, dport=4789) / VXLAN(vni=5001))),
    ("geneve", lambda p: _outer4(_eth() / p, UDP(sport=51112, dport=6081) / GENEVE(vni=6001, proto=0x6558))),
    ("gtpu", lambda p: _outer4(p, UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0x1234, E=1, next_ex=0x85)
                               / GTPPDUSessionContainer(type=1, QFI=5))),
    ("ipip", lambda p: _outer4(p, Raw(b""))),
    ("gre_over_v6", lambda p: _eth() / IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2") / GRE(proto=0x0800) / p),
    ("vxlan_in_gre", lambda p: _outer4(IP(src="192.0.2.11", dst="192.0.2.12")
                                       / UDP(sport=51113, dport=4789) / VXLAN(vni=7) / _eth() / p,
                                       GRE(proto=0x0800))),
]


def tunnels_xmrig(name: str) -> None:
    """The same XMRig session behind every tunnel a mirror port or carrier link delivers traffic
    in (PPPoE, MPLS, EoMPLS, GRE, ERSPAN I/II/III, VXLAN, Geneve, GTP-U, IP-in-IP, GRE over
    IPv6, VXLAN inside GRE), half of them segmented and reordered; a pool lookup inside VXLAN;
    and datagrams that only look like tunnels (to be counted, not crash)."""
    frames = []
    miners = {}
    for k, (kind, wrap) in enumerate(TUNNELS):
        client, pool = f"10.4.0.{10 + k}", f"203.0.113.{120 + k}"
        f = Flow(client, pool, 50100 + k, 3333, segment=41 if k % 2 else 0, reorder=bool(k % 2))
        xmrig_session(f, n=3)
        for q in tcp_packets(f):
            if kind == "ipip":
                fr = _eth() / IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / q
            else:
                fr = wrap(q)
            fr.time = q.time
            frames.append(fr)
        miners[client] = {"tunnel": kind, "pool": f"{pool}:3333", "client_port": 50100 + k}
    # a pool lookup, inside VXLAN: the asking host is a suspect
    qp = IP(src="10.4.0.90", dst="10.4.0.53") / UDP(sport=40090, dport=53) / DNS(id=9, rd=1, qd=DNSQR(qname="pool.supportxmr.com"))
    dq = _outer4(_eth() / qp, UDP(sport=51114, dport=4789) / VXLAN(vni=5001))
    dq.time = T0 + 0.5
    # look-alikes: a datagram to the VXLAN port without the I flag (an ordinary datagram), a
    # PPTP GRE packet (version 1: skipped), a GTP-U echo (signalling: skipped)
    odd = [_outer4(Raw(b"\x00" * 16), UDP(sport=40000, dport=4789)),
           _eth() / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / Raw(b"\x30\x01\x88\x0b" + b"\x00" * 12),
           _outer4(Raw(b"\x32\x01\x00\x04\x00\x00\x00\x00\x00\x01\x00\x00"), UDP(sport=2152, dport=2152))]
    for i, o in enumerate(odd):
        o.time = T0 + 0.6 + i * 0.01
    frames += [dq] + odd
    frames.sort(key=lambda p: float(p.time))
    w = PcapWriter(str(HERE / name), linktype=1, sync=True)
    for fr in frames:
        w.write(fr)
    w.close()
    expect(name, miners=miners, suspects=["10.4.0.90"], dialect="xmrig", submitted=3,
           outer=["192.0.2.1", "192.0.2.2", "192.0.2.11", "192.0.2.12", "2001:db8:ffff::1",
                  "2001:db8:ffff::2"])


# ---------------------------------------------------------------------------------- fragments
def fragments_xmrig(name: str) -> None:
    """Mining whose datagrams arrive in IP fragments: an XMRig session whose large packets
    are IPv4 fragments (every other datagram's fragments in reverse order, some first
    fragments sent twice as a mirror port would), the same over IPv6 (Fragment header), and
    one mirrored through ERSPAN whose outer GRE packets are fragmented on the mirror's path
    (full-size frames plus the tunnel's bytes exceed the path MTU); a pool lookup's DNS
    answer in fragments (the question is not captured: the answer alone names the asker);
    a datagram whose last fragment never comes, and one whose fragments disagree."""
    from scapy.layers.inet import fragment
    from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6
    frames = []

    def v4_fragments(q, ident, fragsize, k):  # noqa: ANN001, ANN202
        q[IP].id = ident
        parts = fragment(q, fragsize=fragsize)
        if k % 2:
            parts = parts[::-1]
        if k % 3 == 0:
            parts = [parts[0], parts[0].copy()] + parts[1:]
        return parts

    miners = {}
    f4 = Flow("10.6.0.10", "203.0.113.150", 50200, 3333)
    xmrig_session(f4, n=4)
    for k, q in enumerate(tcp_packets(f4)):
        for p in v4_fragments(q, 1000 + k, 96, k) if len(q) > 120 else [q]:
            frames.append(_at(_eth() / p, q.time))
    miners["10.6.0.10"] = "203.0.113.150:3333"
    f6 = Flow("3fff:5::10", "3fff:5::150", 50201, 3333, v6=True)
    xmrig_session(f6, n=4)
    for k, q in enumerate(tcp_packets(f6)):
        if len(q) > 140:
            head = IPv6(src=q[IPv6].src, dst=q[IPv6].dst)
            parts = fragment6(head / IPv6ExtHdrFragment(id=2000 + k) / q[IPv6].payload, 128)
            parts = parts[::-1] if k % 2 else parts
        else:
            parts = [q]
        for p in parts:
            frames.append(_at(_eth() / p, q.time))
    miners["3fff:5::10"] = "[3fff:5::150]:3333"
    fe = Flow("10.6.0.30", "203.0.113.151", 50202, 3333)
    xmrig_session(fe, n=4)
    for k, q in enumerate(tcp_packets(fe)):
        outer = IP(src="192.0.2.21", dst="192.0.2.22") / GRE(seqnum_present=1, seqence_number=k) \
            / ERSPAN_II(session_id=8, vlan=0) / _eth() / q
        for p in v4_fragments(outer, 3000 + k, 128, k) if len(outer) > 150 else [outer]:
            frames.append(_at(_eth() / p, q.time))
    miners["10.6.0.30"] = "203.0.113.151:3333"
    # the answer to a pool lookup, in three fragments (the question went unseen)
    ans = IP(src="10.6.0.53", dst="10.6.0.40", id=4000) / UDP(sport=53, dport=40040) / DNS(
        id=40, qr=1, rd=1, ra=1, qd=DNSQR(qname="pool.supportxmr.com"),
        an=DNSRR(rrname="pool.supportxmr.com", type="A", rdata="203.0.113.152", ttl=60))
    for p in fragment(ans, fragsize=32):
        frames.append(_at(_eth() / p, T0 + 0.2))
    # a datagram whose last fragment never comes; one whose two first fragments disagree
    line = b'{"id":1,"jsonrpc":"2.0","method":"eth_blockNumber","params":[]}\n' * 3
    lost = IP(src="10.6.0.50", dst="10.6.0.51", id=5000) / TCP(sport=40050, dport=8545, flags="PA") / Raw(line)
    for p in fragment(lost, fragsize=64)[:-1]:
        frames.append(_at(_eth() / p, T0 + 0.3))
    odd = IP(src="10.6.0.50", dst="10.6.0.51", id=5001) / TCP(sport=40051, dport=8545, flags="PA") / Raw(line)
    parts = fragment(odd, fragsize=64)
    forged = parts[0].copy()
    forged[Raw].load = forged[Raw].load[:-8] + b"XXXXXXXX"
    for p in [parts[0], forged] + parts[1:]:
        frames.append(_at(_eth() / p, T0 + 0.4))
    frames.sort(key=lambda p: float(p.time))      # stable: fragments keep their order
    w = PcapWriter(str(HERE / name), linktype=1, sync=True)
    for fr in frames:
        w.write(fr)
    w.close()
    expect(name, miners=miners, suspects=["10.6.0.40"], clean=["10.6.0.50"], dialect="xmrig",
           submitted=4, outer=["192.0.2.21", "192.0.2.22"],
           skipped=["ip.fragment"], anomalies=["ip.datagram_incomplete", "ip.fragment_overlap_different"])


def _at(p, t: float):  # noqa: ANN001, ANN202
    """The packet with its capture time set."""
    p.time = t
    return p


# ---------------------------------------------------------------------------------- raw writers
def _frame(p, link: str) -> bytes:  # noqa: ANN001
    """Bytes of one frame in a link type scapy does not write for us."""
    ip = bytes(p)
    v6 = p.haslayer(IPv6)
    if link == "sll2":
        return struct.pack("!HHIHBB8s", 0x86DD if v6 else 0x0800, 0, 1, 1, 0, 6,
                           b"\x02\x00\x00\x00\x00\x01\x00\x00") + ip
    if link == "null":           # BSD loopback: address family in the capturing host's order (LE here)
        return struct.pack("<I", 30 if v6 else 2) + ip
    if link == "raw":
        return ip
    proto = 0x0057 if v6 else 0x0021
    if link == "chdlc":          # Cisco HDLC: address, control, EtherType
        return struct.pack("!BBH", 0x0F, 0x00, 0x86DD if v6 else 0x0800) + ip
    if link == "chdlc_mpls":     # Cisco HDLC carrying an MPLS label stack (a carrier's WAN link)
        return struct.pack("!BBH", 0x0F, 0x00, 0x8847) + struct.pack("!II", 16 << 12, (17 << 12) | 0x100 | 64) + ip
    if link == "ppp":            # PPP in HDLC-like framing (ff 03)
        return struct.pack("!BBH", 0xFF, 0x03, proto) + ip
    if link == "ppp_pfc":        # PPP, address/control and protocol field compressed
        return bytes([proto]) + ip
    if link == "ppp_ether":      # PPPoE session header without Ethernet (LINKTYPE_PPP_ETHER)
        return struct.pack("!BBHHH", 0x11, 0x00, 0x0101, len(ip) + 2, proto) + ip
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p)


def write_pcap_raw(name: str, pkts: list, link: str, linktype: int, snaplen: int = 65535) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for p in pkts:
        full = _frame(p, link)
        data = full[:snaplen]
        t = float(p.time)
        out.append(struct.pack("<IIII", int(t), round((t - int(t)) * 1e6), len(data), len(full)) + data)
    (HERE / name).write_bytes(b"".join(out))


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng_multi(name: str, parts: list[tuple[list, str, int, int]]) -> None:
    """One pcapng, one interface per part: (packets, link, linktype, tsresol exponent)."""
    blocks = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for _pkts, _link, lt, res in parts:
        opts = struct.pack("<HHB3x", 9, 1, res) + struct.pack("<HH", 0, 0)
        blocks.append(_block(1, struct.pack("<HHI", lt, 0, 65535) + opts))
    events = []
    for i, (pkts, link, _lt, res) in enumerate(parts):
        for p in pkts:
            events.append((float(p.time), i, _frame(p, link), res))
    events.sort(key=lambda e: e[0])
    for t, i, data, res in events:
        ticks = round(t * 10 ** res)
        blocks.append(_block(6, struct.pack("<IIIII", i, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                            len(data)) + data))
    (HERE / name).write_bytes(b"".join(blocks))


def multi_interface(name: str) -> None:
    """A pcapng with two interfaces of different link types and timestamp resolutions."""
    a = Flow("10.2.0.10", "203.0.113.40", 51001, 3333)
    ja, acc_a = xmrig_session(a, n=10)
    b = Flow("10.2.0.11", "203.0.113.41", 51002, 8008)
    boundary = "0x00000000dbe6fecebdedd5beb573440e5a884d1b2fbf06fcce912adcb8d8422e"
    b.c(T0, {"id": 1, "jsonrpc": "2.0", "method": "eth_submitLogin", "params": [ETH_ADDR, "x"]})
    b.s(T0 + 0.1, {"id": 1, "jsonrpc": "2.0", "result": True})
    b.s(T0 + 0.2, {"id": 0, "jsonrpc": "2.0", "result": ["0x" + "ab" * 32, "0x" + "cd" * 32, boundary]})
    write_pcapng_multi(name, [(tcp_packets(a), "ether", 1, 6), (tcp_packets(b), "sll2", 276, 9)])
    expect(name, hosts={"10.2.0.10": {"dialect": "xmrig", "coin": "XMR", "accepted": 10},
                        "10.2.0.11": {"dialect": "eth-proxy", "coin": "ETH", "accepted": 0}})


def wan_links(name: str) -> None:
    """One miner per WAN/access link type a router or BRAS capture has: Cisco HDLC (plain and
    with MPLS), PPP with and without address/control and protocol compression, PPP in
    HDLC-like framing, PPPoE without Ethernet (IPv6 inside)."""
    kinds = [("chdlc", 104), ("chdlc_mpls", 104), ("ppp", 9), ("ppp_pfc", 9), ("ppp", 50),
             ("ppp_ether", 51)]
    parts, miners = [], {}
    for k, (link, lt) in enumerate(kinds):
        v6 = link == "ppp_ether"
        # 3fff::/20: the IPv6 documentation prefix of RFC 9637 (2001:db8::/32 is a test
        # registry's data centre)
        client = f"3fff:5::{10 + k:x}" if v6 else f"10.5.0.{10 + k}"
        pool = f"3fff:6::{20 + k:x}" if v6 else f"203.0.113.{150 + k}"
        f = Flow(client, pool, 50200 + k, 3333, v6=v6, segment=53 if k % 2 else 0, reorder=bool(k % 2))
        xmrig_session(f, n=3)
        parts.append((tcp_packets(f), link, lt, 6))
        miners[client] = {"link": f"{link}/{lt}", "pool": f"{pool}:3333" if not v6 else f"[{pool}]:3333"}
    write_pcapng_multi(name, parts)
    expect(name, miners=miners, dialect="xmrig", submitted=3)


def loopback_and_raw() -> None:
    f = Flow("127.0.0.1", "127.0.0.2", 51003, 3333)
    job_t, acc = xmrig_session(f, n=5)
    write_pcap_raw("xmrig_null_loopback.pcap", tcp_packets(f), "null", 0)
    expect("xmrig_null_loopback.pcap", hosts={"127.0.0.1": {"dialect": "xmrig", "coin": "XMR", "accepted": 5}})
    g = Flow("10.2.0.12", "203.0.113.42", 51004, 3333)
    xmrig_session(g, n=4)
    write_pcap_raw("xmrig_raw_ip.pcap", tcp_packets(g), "raw", 101)
    expect("xmrig_raw_ip.pcap", hosts={"10.2.0.12": {"dialect": "xmrig", "coin": "XMR", "accepted": 4}})


def snaplen_cut(name: str) -> None:
    """A SPAN sensor's capture with a 256-byte snaplen: long lines (notify) are cut off."""
    f = Flow("10.1.0.23", "203.0.113.23", 50016, 3333)
    t = T0
    f.c(t, {"id": 2, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]})
    f.s(t + 0.1, {"id": 2, "result": [[["mining.notify", "ae6812eb"]], "08000002", 4], "error": None})
    f.c(t + 0.2, {"id": 3, "method": "mining.authorize", "params": [f"{BTC_ADDR}.cut", "x"]})
    f.s(t + 0.3, {"id": 3, "result": True, "error": None})
    f.s(t + 0.4, {"id": None, "method": "mining.set_difficulty", "params": [1024]})
    f.s(t + 0.5, {"id": None, "method": "mining.notify", "params": [
        "1a2b3c4d", "00" * 32, "01" * 60, "02" * 40, ["03" * 32], "20000000", "17034219", "6650f1a2", True]})
    shares(f, t + 2, 7, 5.0,
           lambda i, k: {"id": i, "method": "mining.submit", "params": [f"{BTC_ADDR}.cut", "1a2b3c4d", f"{k:08x}", "6650f1a2", "9f3e2a11"]},
           lambda i: {"id": i, "result": True, "error": None})
    write_pcap_raw(name, tcp_packets(f), "ether", 1, snaplen=256)
    expect(name, hosts={"10.1.0.23": {"dialect": "stratum-v1", "coin": "BTC", "accepted": 7}})


def stratum_v2_shape(name: str) -> None:
    """An encrypted Stratum V2 session: only the Noise handshake shape shows (a suspect sign)."""
    import hashlib
    rnd = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(16))
    f = Flow("10.1.0.24", "203.0.113.24", 50017, 34254)
    f.msgs += [Msg(T0, True, rnd[:64]), Msg(T0 + 0.1, False, rnd[64:64 + 234])]
    for k in range(6):
        f.msgs.append(Msg(T0 + 10 + 15 * k, True, rnd[300:362]))      # 62-byte share records
    write(name, tcp_packets(f))
    expect(name, suspects=["10.1.0.24"], reason="Stratum V2 handshake shape")


def stratum_btc_midstream(name: str) -> None:
    """Picked up mid-session, like zeek's bitcoin-mining-in-progress: no SYN, no subscribe or
    authorize, the pool speaks first; a new difficulty and job arrive, then shares."""
    f = Flow("10.1.0.22", "203.0.113.22", 50015, 3333, handshake=False)
    f.msgs.append(Msg(T0 - 0.5, False, b'0000000000000000","17034219","6650f1a0",false]}\n'))
    f.s(T0, {"id": None, "method": "mining.set_difficulty", "params": [8192]})
    job_t = T0 + 0.1
    f.s(job_t, {"id": None, "method": "mining.notify", "params": [
        "1a2b3c4e", "00" * 32, "01" * 60, "02" * 40, [], "20000000", "17034219", "6650f1a2", True]})
    acc = shares(f, job_t + 3, 10, 6.0,
                 lambda i, k: {"id": i, "method": "mining.submit", "params": [
                     "poolaccount.worker7", "1a2b3c4e", f"{k:08x}", "6650f1a2", "9f3e2a11"]},
                 lambda i: {"id": i, "result": True, "error": None})
    end = f.msgs[-1].t
    write(name, tcp_packets(f))
    expect(name, client="10.1.0.22", pool_ip="203.0.113.22", pool_port=3333, dialect="stratum-v1",
           coin="BTC", algorithm="sha256d", worker="poolaccount.worker7", wallet=None, agent=None,
           submitted=10, accepted=10, rejected=0, work=8192 * 2 ** 48 / 0xFFFF, window=end - job_t,
           n=len(acc), midstream=True)


def merge_parts() -> None:
    """One host seen in two captures an hour apart: XMR first, then ETC over eth-proxy."""
    a = Flow("10.3.0.10", "203.0.113.50", 52001, 3333)
    xmrig_session(a, n=12)
    write("merge_part1.pcap", tcp_packets(a))
    b = Flow("10.3.0.10", "203.0.113.51", 52002, 8008)
    t = T0 + 3600
    boundary = "0x00000000dbe6fecebdedd5beb573440e5a884d1b2fbf06fcce912adcb8d8422e"
    b.c(t, {"id": 1, "jsonrpc": "2.0", "method": "eth_submitLogin", "worker": "eth1.0", "params": [f"{ETH_ADDR}.r2", "x"]})
    b.s(t + 0.1, {"id": 1, "jsonrpc": "2.0", "result": True})
    b.s(t + 0.2, {"id": 0, "jsonrpc": "2.0", "result": ["0x" + "ab" * 32, "0x" + "cd" * 32, boundary]})
    shares(b, t + 5, 6, 20.0,
           lambda i, k: {"id": i, "jsonrpc": "2.0", "method": "eth_submitWork", "params": [f"0x{k:016x}", "0x" + "ab" * 32, "0x" + "ef" * 32]},
           lambda i: {"id": i, "jsonrpc": "2.0", "result": True})
    c = Flow("10.3.0.11", "203.0.113.50", 52003, 3333)
    xmrig_session(c, n=3)
    write("merge_part2.pcap", tcp_packets(b) + tcp_packets(c))
    expect("merge_part1.pcap", merge_with="merge_part2.pcap")


DIALECT_SCENARIOS = [
    (ethstratum, "ethstratum_ipv6.pcap"),
    (ethproxy, "ethproxy_sll.pcap"),
    (kawpow, "kawpow.pcapng"),
    (equihash, "equihash_ns.pcap"),
    (kaspa, "kaspa_vlan.pcap"),
    (xmrig, "xmrig_compact.pcap"),
    (grin, "grin.pcap"),
    (beam, "beam.pcap"),
    (http_getwork, "getwork_http.pcap"),
    (coinhive_ws, "coinhive_websocket.pcap"),
    (eth_ws, "eth_websocket.pcap"),
]

#: every dialect is also written in these variants (file name suffix, Flow options)
VARIANTS = [
    ("", {}),
    ("_spaced", {"spaced": True, "crlf": True}),
    ("_reordered", {"segment": 29, "reorder": True}),
]


def main() -> None:
    os.chdir(HERE)
    for old in list(HERE.glob("*.pcap")) + list(HERE.glob("*.pcapng")) + list(HERE.glob("*.gz")):
        old.unlink()
    stratum_btc("stratum_btc_compact.pcap", spaced=False, crlf=False, vlan=())
    stratum_btc("stratum_btc_spaced_crlf_qinq.pcap", spaced=True, crlf=True, vlan=(10, 20))
    stratum_btc("stratum_btc_gz.pcap", spaced=False, crlf=False, vlan=(), gz=True)
    VARIANT.update(segment=23, reorder=True)
    stratum_btc("stratum_btc_reordered.pcap", spaced=False, crlf=False, vlan=())
    VARIANT.clear()
    for suffix, opts in VARIANTS:
        VARIANT.clear()
        VARIANT.update(opts)
        for fn, name in DIALECT_SCENARIOS:
            stem, dot, ext = name.partition(".")
            fn(f"{stem}{suffix}.{ext}")
    VARIANT.clear()
    stratum_btc_midstream("stratum_btc_midstream.pcap")
    xmrig_midstream("xmrig_midstream_reordered.pcap")
    beam_midstream("beam_midstream_reordered.pcap")
    xmrig_fast_open("xmrig_fast_open.pcap")
    coinhive_ws("coinhive_websocket_deflate.pcap", deflate=True)
    multi_interface("multi_interface.pcapng")
    loopback_and_raw()
    merge_parts()
    snaplen_cut("stratum_btc_snaplen256.pcap")
    stratum_v2_shape("stratum_v2_shape.pcap")
    dns_tls("dns_tls_sni.pcap")
    dns_over_tcp("dns_over_tcp.pcap")
    tls_certificate("tls_certificate.pcap")
    benign_jsonrpc("benign_jsonrpc.pcap")
    proxied_xmrig("socks5_xmrig.pcap", "socks5")
    proxied_xmrig("socks4a_xmrig.pcap", "socks4a")
    proxied_xmrig("http_connect_xmrig.pcap", "connect")
    VARIANT.update(segment=23, reorder=True)
    proxied_xmrig("socks5_xmrig_reordered.pcap", "socks5")
    VARIANT.clear()
    proxied_other("proxies_other.pcap")
    tunnels_xmrig("tunnels_xmrig.pcap")
    fragments_xmrig("fragments_xmrig.pcap")
    wan_links("wan_links.pcapng")
    (HERE / "expected.json").write_text(json.dumps(EXPECTED, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(EXPECTED)} captures to {HERE}")


if __name__ == "__main__":
    main()
