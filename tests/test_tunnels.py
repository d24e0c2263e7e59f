"""Traffic inside tunnels and access-network encapsulations: the mining session inside is
found as if it were on the wire (PPPoE, MPLS, EoMPLS, GRE, ERSPAN I/II/III, VXLAN, Geneve,
GTP-U, IP-in-IP, GRE over IPv6, VXLAN inside GRE; WAN link types Cisco HDLC and PPP), the
tunnel endpoints are never hosts, and look-alikes and damaged headers are counted, never
raised.

The captures are written with scapy's own encoders (pcaps/make_pcaps.py: tunnels_xmrig), so
the decoder is checked against another implementation's reading of each header."""

import importlib.util
import ipaddress
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import PCAPS, PUBLIC, ROOT, scan_json
from test_fastpath_c import _c_is_the_reference, _same_headers, needs_c
from poolsniff import batch, native
from poolsniff.decode import DecodeStats, decode
from poolsniff.scan import scan_files
from poolsniff.sources.pcapfile import CaptureReader, block_from_packets

NAME = "tunnels_xmrig.pcap"


@pytest.fixture(scope="module")
def scanned(catalogue):
    return scan_json([PCAPS / NAME], catalogue)


def _frames() -> list[tuple[int, float, int, bytes]]:
    out = []
    for blk in CaptureReader(str(PCAPS / NAME)).blocks(4096):
        for f, t, o, n, lt in zip(blk.frame.tolist(), blk.ts.tolist(), blk.offs.tolist(),
                                  blk.incl.tolist(), blk.linktype.tolist()):
            out.append((f, t, lt, blk.buf[o:o + n]))
    return out


def test_every_tunnelled_miner_is_found_with_its_session(expected, scanned):
    exp = expected[NAME]
    hosts, _stats = scanned
    assert len(exp["miners"]) == 15
    records = {}
    for ip, m in exp["miners"].items():
        h = hosts.get(ip)
        assert h is not None, f"{m['tunnel']}: miner {ip} not found"
        assert h["verdict"] == "mining", m["tunnel"]
        assert h["dialects"] == [exp["dialect"]], m["tunnel"]
        assert [f"{p['ip']}:{p['port']}" for p in h["pools"]] == [m["pool"]], m["tunnel"]
        assert h["shares"] == {"submitted": 3, "accepted": 3, "rejected": 0, "stale": 0}, m["tunnel"]
        assert h["wallets"] and h["coins"] == ["XMR"], m["tunnel"]
        assert all(e["src_port"] == m["client_port"] for e in h["evidence"] if "src_port" in e)
        records[m["tunnel"]] = h
    # the same script in every tunnel: what was learned about the session is the same
    # (bytes are the inner packets' bytes: those sent unsegmented count the same)
    def same(h):
        return (h["methods"], h["difficulty"], h["jobs"], [r["hs"] for r in h["hashrate"]])
    first = same(next(iter(records.values())))
    assert all(same(h) == first for h in records.values())
    flat = [h for k, h in enumerate(records.values()) if k % 2 == 0]
    assert len({(h["bytes_toserver"], h["bytes_toclient"], h["pkts_toserver"]) for h in flat}) == 1


def test_tunnel_endpoints_are_not_hosts_and_lookups_inside_count(expected, scanned):
    exp = expected[NAME]
    hosts, stats = scanned
    assert not set(exp["outer"]) & set(hosts)
    assert set(hosts) == set(exp["miners"]) | set(exp["suspects"])
    (s,) = exp["suspects"]
    assert hosts[s]["verdict"] == "suspect"
    assert any("pool.supportxmr.com" in e["reason"] for e in hosts[s]["evidence"])
    # PPTP's GRE (version 1) and a GTP-U echo are skipped and counted; a datagram to the
    # VXLAN port without a VXLAN header is an ordinary datagram
    assert stats["skipped"] == {"tunnel.gre_unsupported": 1, "tunnel.gtpu_signalling": 1}
    assert stats["decoded"] == stats["packets"] - 2


def test_evidence_names_the_tunnelled_frame(expected, scanned):
    """A finding must be defensible: the frame number in the evidence is the frame (tunnel
    and all) that carried the message."""
    hosts, _ = scanned
    frames = {f: (t, lt, buf) for f, t, lt, buf in _frames()}
    checked = 0
    for k, (ip, m) in enumerate(expected[NAME]["miners"].items()):
        for e in hosts[ip]["evidence"]:
            if e.get("method") != "submit":
                continue
            t, lt, buf = frames[e["pcap_cnt"]]
            seg = decode(e["pcap_cnt"], t, lt, buf, DecodeStats())
            assert seg is not None and t == e["ts"], m["tunnel"]
            assert (ipaddress.ip_address(seg.src), seg.sport) == (ipaddress.ip_address(ip), m["client_port"])
            # the segment that completed the submit line (segmented sessions: its last piece)
            assert b"\n" in seg.payload, m["tunnel"]
            if k % 2 == 0:
                assert b'"method":"submit"' in seg.payload, m["tunnel"]
            checked += 1
    assert checked >= 15


def test_fast_path_opens_the_tunnels_itself(catalogue):
    """The C header pass opens every tunnel of the capture (a link delivered in ERSPAN or
    VXLAN is all tunnels: the per-packet decoder would be several times slower), with the
    reference decoder's columns; without the extension they go to that decoder. Both
    paths give the same answer (the suite's fast == plain tests cover the capture too)."""
    fast = scan_files([str(PCAPS / NAME)], catalogue)
    plain = scan_files([str(PCAPS / NAME)], catalogue, fast=False)
    assert [h.to_dict() for h in fast.hosts] == [h.to_dict() for h in plain.hosts]
    assert fast.stats == plain.stats
    if native.c_engine() is None:
        pytest.skip("C extension not built")
    blk = next(CaptureReader(str(PCAPS / NAME)).blocks(100_000))
    c = batch.headers_c(blk)
    # all but the three look-alikes (the ordinary datagram to the VXLAN port is taken)
    assert int(c.ok.sum()) == len(blk) - 2
    assert _c_is_the_reference(blk, c, np.flatnonzero(c.ok)) == len(blk) - 2
    assert not batch.headers_numpy(blk).ok.any()


def _damaged(rng: random.Random, buf: bytes) -> bytes:
    b = bytearray(buf)
    for _ in range(rng.randrange(1, 4)):
        what = rng.randrange(3)
        if what == 0 and b:
            del b[rng.randrange(len(b)):]
        elif b:
            at = rng.randrange(min(len(b), 120))
            b[at] = rng.randrange(256)
    return bytes(b)


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_damaged_tunnel_headers_are_counted_not_raised(seed):
    """Cut or flipped bytes anywhere in the first 120 bytes (the outer and inner headers):
    every frame is decoded or counted as skipped, and what the C header pass takes of them
    is what the reference decoder makes of them."""
    rng = random.Random(seed)
    frames = _frames()
    pkts = []
    for f, t, lt, buf in frames * 3:
        pkts.append((f, t, lt, _damaged(rng, buf)))
    st = DecodeStats()
    for f, t, lt, buf in pkts:
        decode(f, t, lt, buf, st)
    assert st.packets == len(pkts) == st.decoded + sum(st.skipped.values())
    _same_headers(block_from_packets(pkts))


def _crafted() -> list[bytes]:
    """Edge cases the capture does not hold: lengths that disagree between carrier and
    payload (padding after the outer packet, an inner IPv6 of length 0, a carrier cut by
    the snaplen), tunnels nested past the limit, extension chains, unusual GRE flags."""
    from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    t4 = IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=40000, dport=3333, flags="PA", seq=7) / Raw(b'{"id":1}\n')
    t6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40001, dport=3333, flags="PA") / Raw(b"x" * 20)
    out = []
    g6 = bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x86DD) / t6)
    out.append(g6 + b"\0" * 12)                                  # padding after the carrier
    z = bytearray(g6)
    z[14 + 20 + 4 + 4:14 + 20 + 4 + 6] = b"\0\0"                  # inner IPv6 payload length 0
    out += [bytes(z), bytes(z) + b"\0" * 9]
    full = bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=4789) / VXLAN(vni=1) / eth / t4)
    out += [full[:k] for k in (60, 80, 100, 110, len(full) - 3)]    # the snaplen cuts anywhere
    nest = t4
    for _ in range(6):                                           # IP-in-IP six deep
        nest = IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / nest
        out.append(bytes(eth / nest))
    for flags in (dict(chksum_present=1), dict(key_present=1, seqnum_present=1, chksum_present=1),
                  dict(routing_present=1), dict(recursion_control=1), dict(version=1)):
        out.append(bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x0800, **flags) / t4))
    for n_ext in (1, 2, 3):
        gtp = GTP_U_Header(teid=1, E=1, next_ex=0x85) / GTPPDUSessionContainer(type=1, QFI=1, NextExtHdr=0x85 if n_ext > 1 else 0)
        for k in range(1, n_ext):
            gtp = gtp / GTPPDUSessionContainer(type=1, QFI=k, NextExtHdr=0x85 if k + 1 < n_ext else 0)
        out.append(bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=2152, dport=2152) / gtp / t4))
    out.append(bytes(eth / MPLS(s=0) / MPLS(s=0) / MPLS(s=1) / t6))
    out.append(bytes(eth / MPLS(s=1) / Raw(b"\0\0\0\0") / eth / MPLS(s=1) / t4))   # EoMPLS in EoMPLS
    out.append(bytes(eth / MPLS(s=1) / Raw(b"\0\0\0\0") / eth)[:40])
    return out


def test_crafted_edges_decode_like_the_reference():
    pkts = [(i + 1, 1.0 + i, 1, b) for i, b in enumerate(_crafted())]
    st = DecodeStats()
    segs = [decode(f, t, lt, b, st) for f, t, lt, b in pkts]
    assert st.packets == len(pkts) == st.decoded + sum(st.skipped.values())
    # what the reference makes of them (the cases are meant to land on both sides)
    assert st.skipped.get("tunnel.too_deep") == 2 and st.skipped.get("tunnel.gre_unsupported") == 3
    assert st.skipped.get("link.mpls_deep") == 1
    assert sum(s is not None and s.missing > 0 for s in segs) >= 2
    assert any(s is not None and s.version == 6 and s.wirelen == 40 + 40 for s in segs)
    if native.c_engine() is not None:
        blk = block_from_packets(pkts)
        c = batch.headers_c(blk)
        assert int(c.ok.sum()) >= st.decoded - 3
        _same_headers(blk)
        _c_is_the_reference(blk, c, np.flatnonzero(c.ok))


def test_wan_and_access_link_types(expected, catalogue):
    """Router and BRAS captures: Cisco HDLC (with MPLS too), PPP with and without
    address/control and protocol compression, PPP in HDLC-like framing, PPPoE without
    Ethernet; the C header pass takes them all, as the reference decoder reads them."""
    name = "wan_links.pcapng"
    exp = expected[name]
    hosts, stats = scan_json([PCAPS / name], catalogue)
    assert set(hosts) == set(exp["miners"])
    for ip, m in exp["miners"].items():
        h = hosts[ip]
        assert h["verdict"] == "mining" and h["dialects"] == [exp["dialect"]], m["link"]
        assert h["shares"]["accepted"] == 3, m["link"]
        p = h["pools"][0]
        assert (f"[{p['ip']}]:{p['port']}" if ":" in p["ip"] else f"{p['ip']}:{p['port']}") == m["pool"]
    assert stats["skipped"] == {} and stats["decoded"] == stats["packets"]
    if native.c_engine() is not None:
        n = 0
        for blk in CaptureReader(str(PCAPS / name)).blocks(4096):
            c = batch.headers_c(blk)
            assert c.ok.all()
            n += _c_is_the_reference(blk, c, np.flatnonzero(c.ok))
        assert n == stats["packets"]


def test_ppp_headers_that_are_not_a_session_of_ip():
    """PPPoE discovery codes, another version/type, LCP and a cut header are skipped by both
    the decoder and the C header pass; PPP with and without compression is read alike."""
    from scapy.layers.inet import IP, TCP
    ip = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=1, dport=3333, flags="S"))
    hdr = lambda ver, code, proto: struct.pack("!BBHHH", ver, code, 1, len(ip) + 2, proto)  # noqa: E731
    recs = [(51, hdr(0x11, 0, 0x21) + ip), (51, hdr(0x11, 0x09, 0x21) + ip),
            (51, hdr(0x12, 0, 0x21) + ip), (51, hdr(0x11, 0, 0xC021) + ip), (51, hdr(0x11, 0, 0x21)[:7]),
            (9, b"\xff\x03\x00\x21" + ip), (9, b"\x21" + ip), (9, b"\x00\x21" + ip), (50, b"\xff\x03\xc0\x21" + ip),
            (9, b"\xff\x03"), (104, b"\x0f\x00\x08\x00" + ip), (104, b"\x8f\x00\x80\x35" + ip)]
    pkts = [(i + 1, 1.0, lt, b) for i, (lt, b) in enumerate(recs)]
    st = DecodeStats()
    got = [decode(f, t, lt, b, st) is not None for f, t, lt, b in pkts]
    assert got == [True, False, False, False, False, True, True, True, False, False, True, False]
    if native.c_engine() is not None:
        blk = block_from_packets(pkts)
        c = batch.headers_c(blk)
        assert c.ok.tolist() == got
        _c_is_the_reference(blk, c, np.flatnonzero(c.ok))


def _wrapped(src: Path, dst: Path, kind: str) -> bool:
    """``src`` with every frame wrapped by bench/encap.py's ``wrap`` (False: not a classic
    little-endian Ethernet pcap, which that tool does not take)."""
    spec = importlib.util.spec_from_file_location("encap", ROOT / "bench" / "encap.py")
    assert spec is not None and spec.loader is not None
    encap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(encap)
    d = src.read_bytes()
    if len(d) < 24 or d[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", d, 20)[0] != 1:
        return False
    out, off, n = [d[:24]], 24, 0
    while off + 16 <= len(d):
        s, u, incl, orig = struct.unpack_from("<IIII", d, off)
        if off + 16 + incl > len(d):
            break
        fr = d[off + 16:off + 16 + incl]
        off += 16 + incl
        new = encap.wrap(fr, kind, n)
        out.append(struct.pack("<IIII", s, u, len(new), len(new) - incl + orig) + new)
        n += 1
    dst.write_bytes(b"".join(out))
    return True


KINDS = ("vxlan", "erspan2", "pppoe", "mpls")


def test_real_captures_in_tunnels_give_the_same_hosts(tmp_path, catalogue):
    """Every public capture of real traffic (and every generated Ethernet one), wrapped as a
    mirror port or access link would deliver it, gives the host records of the bare capture
    (only the file name in the evidence differs)."""
    files = [p for p in sorted(PUBLIC.rglob("*.pcap")) + sorted(PCAPS.glob("*.pcap"))]
    done = 0
    for i, src in enumerate(files):
        kind = KINDS[i % len(KINDS)]
        dst = tmp_path / f"{kind}-{src.name}"
        if not _wrapped(src, dst, kind):
            continue
        bare = scan_files([str(src)], catalogue)
        a = json.dumps([h.to_dict() for h in bare.hosts], sort_keys=True).replace(str(src), "F")
        # the batch path (C header pass) and the reference decoder, packet by packet
        for fast in (True, False):
            wrapped = scan_files([str(dst)], catalogue, fast=fast)
            b = json.dumps([h.to_dict() for h in wrapped.hosts], sort_keys=True).replace(str(dst), "F")
            assert a == b, f"{src.name} in {kind} (fast={fast})"
            for k in ("packets", "decoded", "flows", "json_messages", "dns_messages"):
                assert bare.stats[k] == wrapped.stats[k], (src.name, kind, fast, k)
        if native.c_engine() is not None:
            # the C header pass opens the tunnel wherever it takes the bare frame
            for x, y in zip(CaptureReader(str(src)).blocks(1 << 20), CaptureReader(str(dst)).blocks(1 << 20)):
                assert (batch.headers_c(x).ok == batch.headers_c(y).ok).all(), (src.name, kind)
        done += 1
        dst.unlink()
    assert done >= 40, done
    print(f"{done} captures wrapped")


def test_table_says_what_was_not_decoded(catalogue):
    """A feed the decoder cannot open shows up in the human summary, not only in JSON stats."""
    import io
    from poolsniff.output import render
    buf = io.StringIO()
    render(scan_files([str(PCAPS / NAME)], catalogue), "table", buf)
    assert ("444 packets (2 not decoded: tunnel.gre_unsupported 1, tunnel.gtpu_signalling 1), "
            "15 flows") in buf.getvalue()
