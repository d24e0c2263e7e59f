#!/usr/bin/env python3
"""Many hosts running the same sessions: a capture's packets repeated N times, interleaved.

The benchmark capture (../shared/bench/make_bench_pcap.py) is what the issue measures, but its
mix is unusual: the public corpus is mostly mining captures, and 60% of its flows are a probing
miner's short sessions. This builder gives the other shapes a link carries, from any classic
Ethernet pcap: copy k of the input starts k * --spacing-ms after copy 0 (so the copies overlap,
as concurrent sessions do), and every private IPv4 address of copy k (10/8, 172.16/12,
192.168/16: the clients in the public captures) becomes 10.(k >> 8).(k & 255).(its last
byte), so each copy is a distinct client talking to the same servers. Checksums are not
recomputed (neither poolsniff nor ndpiReader checks them). Deterministic.

    python3 bench/make_sessions_pcap.py ../shared/pcaps/public/benign/ndpi__443-git.pcap \\
        --copies 20000 --out /tmp/https.pcap        # 20,000 short HTTPS sessions
"""
import argparse
import heapq
import struct
import sys

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1


def read_records(path):
    """[(time in us from the first packet, frame bytes)] of a classic Ethernet pcap."""
    with open(path, "rb") as f:
        d = f.read()
    if len(d) < 24:
        sys.exit(f"{path}: not a pcap file")
    for endian in "<>":
        magic = struct.unpack(endian + "I", d[:4])[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            break
    else:
        sys.exit(f"{path}: not a classic pcap (convert pcapng with editcap -F pcap)")
    nanos = magic == PCAP_MAGIC_NS
    if struct.unpack(endian + "I", d[20:24])[0] & 0xFFFF != LINKTYPE_ETHERNET:
        sys.exit(f"{path}: not Ethernet")
    hdr = struct.Struct(endian + "IIII")
    out, off = [], 24
    while off + 16 <= len(d):
        sec, frac, incl, _orig = hdr.unpack_from(d, off)
        if off + 16 + incl > len(d):
            break
        out.append((sec * 1_000_000 + (frac // 1000 if nanos else frac), d[off + 16:off + 16 + incl]))
        off += 16 + incl
    if not out:
        sys.exit(f"{path}: no packets")
    t0 = out[0][0]
    return [(max(0, t - t0), b) for t, b in out]


def private(a):
    return a[0] == 10 or (a[0] == 172 and 16 <= a[1] < 32) or (a[0] == 192 and a[1] == 168)


def ipv4_at(frame):
    """Offset of the IPv4 header of an Ethernet frame (after up to two VLAN tags), or None."""
    off = 12
    for _ in range(3):
        if off + 2 > len(frame):
            return None
        et = struct.unpack_from("!H", frame, off)[0]
        if et in (0x8100, 0x88A8):
            off += 4
            continue
        return off + 2 if et == 0x0800 and off + 22 <= len(frame) else None
    return None


def rewrite(frame, k):
    ip = ipv4_at(frame)
    if ip is None:
        return frame
    b = bytearray(frame)
    for at in (ip + 12, ip + 16):
        if private(b[at:at + 4]):
            b[at:at + 4] = bytes((10, (k >> 8) & 0xFF, k & 0xFF, b[at + 3]))
    return bytes(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--copies", type=int, default=20_000)
    ap.add_argument("--spacing-ms", type=float, default=2.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not 0 < args.copies <= 65536:
        sys.exit("--copies: 1 to 65536 (each copy's clients get a distinct 10.x.y.0/24)")
    recs = read_records(args.capture)
    step = int(args.spacing_ms * 1000)
    base = 1_600_000_000 * 1_000_000
    def copy(k):
        return ((k * step + t, k, i) for i, (t, _b) in enumerate(recs))

    # the copies merged by time; each copy's own packets keep their order
    streams = [copy(k) for k in range(args.copies)]
    n = 0
    with open(args.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET))
        for t, k, i in heapq.merge(*streams):
            frame = rewrite(recs[i][1], k)
            ts = base + t
            out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
            out.write(frame)
            n += 1
    print(f"{args.out}: {n} packets, {args.copies} copies of {args.capture} ({len(recs)} packets each)")


if __name__ == "__main__":
    main()
