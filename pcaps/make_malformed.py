#!/usr/bin/env python3
"""Generate pcaps/malformed/: one small damaged capture per class of damage, and
pcaps/malformed/expected.json with what `poolsniff scan` must do with each (exit status,
the anomaly or decode skip it counts, whether the miner in it is still found).

Every capture but the empty ones carries a short Stratum session (10.9.0.1 ->
203.0.113.9:3333) so the tests can check the damage is contained: what is intact is still
found. Run: python3 pcaps/make_malformed.py [OUTDIR]
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "malformed"
T0 = 1_700_000_000
CLIENT, POOL = bytes([10, 9, 0, 1]), bytes([203, 0, 113, 9])
LINES = [
    (True, b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.11.1"]}\n'),
    (False, b'{"id":1,"result":[[["mining.notify","1"]],"08000002",4],"error":null}\n'),
    (True, b'{"id":2,"method":"mining.authorize","params":["1BoatSLRHtKNngkdXEeobR76b53LETtpyT.w1","x"]}\n'),
    (False, b'{"id":2,"result":true,"error":null}\n'),
    (False, b'{"id":null,"method":"mining.set_difficulty","params":[1024]}\n'),
    (True, b'{"id":3,"method":"mining.submit","params":["w1","j1","00000000","5f5e1000","1a2b3c4d"]}\n'),
    (False, b'{"id":3,"result":true,"error":null}\n'),
]
expected: dict[str, dict] = {}


def ipv4(src: bytes, dst: bytes, proto: int, l4: bytes, *, ihl: int = 5, total: int | None = None,
         frag: int = 0) -> bytes:
    opts = b"\x01" * ((ihl - 5) * 4) if ihl > 5 else b""
    tl = total if total is not None else 20 + len(opts) + len(l4)
    return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl & 0xFFFF, 1, frag, 64, proto, 0,
                       src, dst) + opts + l4


def tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes, *, off: int = 5) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 1, off << 4, flags, 65535, 0, 0) + payload


def eth(ip: bytes, etype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", etype) + ip


def session(start_seq: int = 1000) -> list[bytes]:
    """The intact Stratum session (handshake and every line), as Ethernet frames."""
    cs, ss = start_seq, 50_000
    frames = [eth(ipv4(CLIENT, POOL, 6, tcp(40001, 3333, cs - 1, 0x02, b""))),
              eth(ipv4(POOL, CLIENT, 6, tcp(3333, 40001, ss - 1, 0x12, b"")))]
    for to_pool, line in LINES:
        if to_pool:
            frames.append(eth(ipv4(CLIENT, POOL, 6, tcp(40001, 3333, cs, 0x18, line))))
            cs += len(line)
        else:
            frames.append(eth(ipv4(POOL, CLIENT, 6, tcp(3333, 40001, ss, 0x18, line))))
            ss += len(line)
    return frames


def pcap_header(linktype: int = 1, snaplen: int = 65535) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def record(i: int, frame: bytes, incl: int | None = None, orig: int | None = None) -> bytes:
    n = len(frame) if incl is None else incl
    return struct.pack("<IIII", T0 + i, 0, n, len(frame) if orig is None else orig) + frame[:n]


def pcap(frames: list[bytes], linktype: int = 1, snaplen: int = 65535) -> bytes:
    return pcap_header(linktype, snaplen) + b"".join(record(i, f) for i, f in enumerate(frames))


def block(btype: int, body: bytes, length: int | None = None) -> bytes:
    pad = body + b"\0" * (-len(body) % 4)
    n = 12 + len(pad) if length is None else length
    return struct.pack("<II", btype, n) + pad + struct.pack("<I", n)


def pcapng(frames: list[bytes], extra: dict[int, bytes] | None = None) -> bytes:
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 65535))
    out = [shb, idb]
    for i, f in enumerate(frames):
        if extra and i in extra:
            out.append(extra[i])
        ts = (T0 + i) * 1_000_000
        out.append(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + f))
    return b"".join(out)


def put(name: str, data: bytes, **exp: object) -> None:
    (OUT / name).write_bytes(data)
    expected[name] = exp


def main() -> None:
    global OUT
    if len(sys.argv) > 1:
        OUT = Path(sys.argv[1])
    OUT.mkdir(exist_ok=True)
    s = session()
    # -- the file itself ---------------------------------------------------------------------
    put("empty.pcap", b"", exit=2, error="empty file, not a capture")
    put("header_only.pcap", pcap_header(), exit=0, frames=0, miner=False)
    put("bad_magic.pcap", b"\xde\xad\xbe\xef" + pcap(s)[4:], exit=2, error="not a pcap or pcapng file")
    put("short_header.pcap", pcap_header()[:10], exit=0, anomaly="capture.truncated_header",
        frames=0, miner=False)
    # -- records -----------------------------------------------------------------------------
    huge = pcap_header(snaplen=1500) + b"".join(record(i, f) for i, f in enumerate(s)) + \
        struct.pack("<IIII", T0 + 99, 0, 0x7FFFFFF0, 0x7FFFFFF0) + b"\0" * 64
    put("record_beyond_snaplen.pcap", huge, exit=0, anomaly="capture.bad_record_length", miner=True,
        frames=len(s))
    beyond = pcap(s) + struct.pack("<IIII", T0 + 99, 0, 4000, 4000) + b"\0" * 100
    put("record_beyond_file.pcap", beyond, exit=0, anomaly="capture.truncated_record", miner=True,
        frames=len(s))
    put("truncated_last_record.pcap", pcap(s)[:-20], exit=0, anomaly="capture.truncated_record",
        miner=True, frames=len(s) - 1)
    put("truncated_record_header.pcap", pcap(s) + b"\x01\x02\x03", exit=0,
        anomaly="capture.truncated_record", miner=True, frames=len(s))
    # snaplen: the submit line is cut in the middle; the session before it is intact
    cut = pcap_header(snaplen=80) + b"".join(
        record(i, f, incl=min(len(f), 80)) for i, f in enumerate(s))
    put("snaplen_cut_mid_line.pcap", cut, exit=0, anomaly="capture.snaplen_truncated", miner=False,
        frames=len(s))
    # -- pcapng blocks -----------------------------------------------------------------------
    put("pcapng_unknown_block.pcapng", pcapng(s, {3: block(0x0BAD0001, b"vendor data")}), exit=0,
        anomaly="capture.unknown_block", miner=True, frames=len(s))
    bad_len = pcapng(s[:4]) + struct.pack("<II", 6, 7) + b"\0" * 40
    put("pcapng_bad_block_length.pcapng", bad_len, exit=0, anomaly="capture.bad_block_length",
        miner=True, frames=4)
    # -- link, IP, TCP headers ---------------------------------------------------------------
    put("unknown_linktype.pcap", pcap(s, linktype=147), exit=0, skipped="link.unsupported_147",
        miner=False, frames=len(s))
    lie_ihl = [eth(ipv4(CLIENT, POOL, 6, tcp(40002, 3333, 5, 0x18, b"{}\n"), ihl=15))[:40]]
    lie_total = [eth(ipv4(CLIENT, POOL, 6, tcp(40003, 3333, 5, 0x18, b"{}\n"), total=10))]
    put("ip_header_length_lies.pcap", pcap(s + lie_ihl), exit=0,
        skipped="ip.bad_header_length", miner=True, frames=len(s) + 1)
    put("ip_total_length_lies.pcap", pcap(s + lie_total), exit=0,
        skipped="ip.bad_total_length", miner=True, frames=len(s) + 1)
    bad_off = [eth(ipv4(CLIENT, POOL, 6, tcp(40004, 3333, 5, 0x18, b"{}\n", off=15)))]
    put("tcp_data_offset_past_packet.pcap", pcap(s + bad_off), exit=0, skipped="tcp.bad_data_offset",
        miner=True, frames=len(s) + 1)
    frag_line = b'{"id":9,"method":"mining.subscribe","params":[]}\n'
    seg = tcp(40005, 3333, 77, 0x18, frag_line)
    frags = [eth(ipv4(CLIENT, POOL, 6, seg[:24], frag=0x2000)),          # MF, offset 0
             eth(ipv4(CLIENT, POOL, 6, seg[24:], frag=3))]               # offset 24 bytes
    put("ipv4_fragments.pcap", pcap(s + frags), exit=0, skipped="ip.fragment", miner=True,
        frames=len(s) + 2)
    # -- TCP reassembly ----------------------------------------------------------------------
    # the authorize line is sent twice at the same sequence number with different bytes
    # (an evasion attempt): the first copy wins and the overlap is counted
    forged = s[:5] + [eth(ipv4(CLIENT, POOL, 6, tcp(40001, 3333, 1000 + len(LINES[0][1]), 0x18,
                                                    LINES[2][1].replace(b"w1", b"XX"))))] + s[5:]
    put("tcp_overlap_different_bytes.pcap", pcap(forged), exit=0,
        anomaly="stream.overlap_different_data", miner=True, frames=len(forged),
        worker="1BoatSLRHtKNngkdXEeobR76b53LETtpyT.w1")
    # -- application layer -------------------------------------------------------------------
    # an HTTP request whose chunk size is negative: int(x, 16) read "-6" as -6 and moved the
    # parser back to the start of its own line, for ever (one packet from any host on the
    # link stopped the sensor)
    web = bytes([198, 51, 100, 7])
    req = b"POST / HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\n"
    http = [eth(ipv4(CLIENT, web, 6, tcp(40002, 80, 7000 - 1, 0x02, b""))),
            eth(ipv4(web, CLIENT, 6, tcp(80, 40002, 9000 - 1, 0x12, b""))),
            eth(ipv4(CLIENT, web, 6, tcp(40002, 80, 7000, 0x18, req)))]
    put("http_negative_chunk_size.pcap", pcap(s + http), exit=0, anomaly="http.bad_chunk",
        miner=True, frames=len(s) + len(http))
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{len(expected)} captures in {OUT}")


if __name__ == "__main__":
    main()
