"""The batch fast path gives exactly the plain per-packet path's answer, on every capture."""

import json
import sys

import pytest

from conftest import CAPTURES, PCAPS
from poolsniff.scan import scan_files



def _doc(path, catalogue, fast):
    res = scan_files([str(path)], catalogue, fast=fast)
    doc = json.loads(json.dumps(res.to_dict(), default=str))
    return doc, res.anomalies, res.domains


def _fast_is_plain(path, catalogue, name=""):
    """Hosts, stats, domain events and anomalies of both paths over one capture."""
    fast, fast_anom, fast_dom = _doc(path, catalogue, True)
    plain, plain_anom, plain_dom = _doc(path, catalogue, False)
    assert fast["hosts"] == plain["hosts"], name
    assert fast["stats"] == plain["stats"], name
    assert fast_dom == plain_dom, name
    assert sorted(map(repr, fast_anom)) == sorted(map(repr, plain_anom)), name


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_equals_plain(path, catalogue):
    _fast_is_plain(path, catalogue)


def test_suite_covers_both_paths():
    assert len(CAPTURES) > 100


def test_minimal_packet_at_the_end_of_a_block(tmp_path, catalogue):
    """A bare 40-byte TCP packet ending the buffer: its header must be read exactly."""
    import socket
    import struct
    data = (PCAPS / "xmrig_raw_ip.pcap").read_bytes()
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     socket.inet_aton("203.0.113.42"), socket.inet_aton("10.2.0.12"))
    # FIN+ACK; the ACK number ends in 0x50 so a header read one byte early still looks valid
    tcp = struct.pack("!HHIIBBHHH", 3333, 51004, 99999, 0x50, 0x50, 0x11, 512, 0, 0)
    rec = struct.pack("<IIII", 1_700_000_100, 0, 40, 40) + ip + tcp
    path = tmp_path / "tail.pcap"
    path.write_bytes(data + rec)
    fast, _, _ = _doc(path, catalogue, True)
    plain, _, _ = _doc(path, catalogue, False)
    assert fast == plain
    assert fast["stats"]["flows"] == 1           # the FIN belongs to the miner's flow


def test_flow_cap_overflow_inside_a_block(tmp_path, catalogue):
    """A miner's session followed, in the same block, by more new flows than --max-flows allows:
    the batch path must not evict the miner's flow before its login is read."""
    import struct
    miner = (PCAPS / "xmrig_compact.pcap").read_bytes()      # header + 47 records
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    recs = [miner]
    for i in range(5000):
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, 0x0A100000 + i, 0xCB007101)
        tcp = struct.pack("!HHIIBBHHH", 1024 + i, 443, i, 0, 0x50, 0x02, 1024, 0, 0)
        pkt = eth + ip + tcp
        recs.append(struct.pack("<IIII", 1_700_000_500, i, len(pkt), len(pkt)) + pkt)
    path = tmp_path / "miner_then_flood.pcap"
    path.write_bytes(b"".join(recs))
    docs = []
    for fast in (True, False):
        res = scan_files([str(path)], catalogue, fast=fast, max_flows=1000)
        docs.append(json.loads(json.dumps(res.to_dict(), default=str)))
    assert docs[0] == docs[1]
    assert docs[0]["stats"]["flows_evicted"] >= 4000
    assert [h["ip"] for h in docs[0]["hosts"]] == ["10.1.0.15"]
    assert docs[0]["hosts"][0]["shares"]["accepted"] == 20


@pytest.mark.parametrize("block", [5, 61])
def test_fast_equals_plain_in_small_blocks(block, catalogue, monkeypatch):
    """Blocks of a few records: a flow's handshake, data and close fall into different blocks
    (SYNs after a flow's data, retransmitted SYNs, streams started in an earlier block), so
    the per-block bookkeeping (counters, closing, SYNs done per flow) meets the states the
    per-packet path meets packet by packet."""
    from poolsniff import scan
    monkeypatch.setattr(scan, "BLOCK", block)
    for path in CAPTURES:
        _fast_is_plain(path, catalogue, path.name)


@pytest.mark.parametrize("max_flows", [4, 16])
def test_fast_equals_plain_past_the_flow_cap(max_flows, catalogue, monkeypatch):
    """Every capture through a flow table far too small, in blocks of 61 records: the batch
    path keeps blocks whose evictions it can tell in advance (the front flows it would
    evict are untouched by the block) and hands the others to the per-packet path; either
    way the answer is the per-packet path's."""
    from poolsniff import batch, scan
    monkeypatch.setattr(scan, "BLOCK", 61)
    told = {True: 0, False: 0}
    real = batch._evictions_known

    def known(*a):
        r = real(*a)
        told[r] += 1
        return r
    monkeypatch.setattr(batch, "_evictions_known", known)
    evicted = 0
    for path in CAPTURES:
        docs = []
        for fast in (True, False):
            res = scan_files([str(path)], catalogue, fast=fast, max_flows=max_flows)
            docs.append((json.loads(json.dumps(res.to_dict(), default=str)), res.domains,
                         sorted(map(repr, res.anomalies))))
        assert docs[0] == docs[1], path.name
        evicted += docs[0][0]["stats"]["flows_evicted"]
    assert evicted > 1000
    # overflowing blocks kept in the batch path, and ones handed back (both branches taken)
    assert told[True] > 50 and told[False] > 50, told


def _replayed_twice(src, dst, syns_again=True):
    """``src``'s packets, then the same packets again 3 s after the last one (a looped
    replay, or clients reusing their ports: every 5-tuple comes back within
    CLOSED_LINGER_S of its close); without the second copy's SYNs (the capture missed
    them) unless ``syns_again``. None when the capture mixes link types."""
    import dpkt

    from poolsniff.decode import DecodeStats, decode
    from poolsniff.sources.pcapfile import CaptureReader
    r = CaptureReader(str(src))
    pkts = list(r.packets())
    r.close()
    if not pkts or len({p[2] for p in pkts}) != 1:
        return None
    shift = max(p[1] for p in pkts) - min(p[1] for p in pkts) + 3.0
    with open(dst, "wb") as fo:
        w = dpkt.pcap.Writer(fo, snaplen=262144, linktype=pkts[0][2], nano=True)
        for off in (0.0, shift):
            for frame, ts, lt, buf in pkts:
                if off and not syns_again:
                    seg = decode(frame, ts, lt, buf, DecodeStats())
                    if seg is not None and seg.proto == 6 and seg.flags & 0x12 == 0x02:
                        continue
                w.writepkt(buf, ts + off)
    return dst


@pytest.mark.parametrize("block,syns", [(61, True), (1000, True), (61, False)])
def test_fast_equals_plain_on_reused_5_tuples(block, syns, tmp_path, catalogue, monkeypatch):
    """Every capture played twice in a row: each connection's SYN comes back on a closed flow
    that is still in the table. The batch path ends the old flow and opens the new one
    itself when the SYN opens the block's packets of that 5-tuple (as Scanner._tcp does
    at the SYN); other cases go packet by packet. Same answer either way, both taken.
    Without the second SYNs (a SYN-ACK or data first) the old flow goes on, as it does
    packet by packet."""
    from poolsniff import batch, pipeline, scan
    monkeypatch.setattr(scan, "BLOCK", block)
    taken = {"batch": 0}
    finish = pipeline.Scanner._finish

    def counted(self, flow):
        if sys._getframe(1).f_code is batch._resolve.__code__:
            taken["batch"] += 1
        return finish(self, flow)
    monkeypatch.setattr(pipeline.Scanner, "_finish", counted)
    done = 0
    for path in CAPTURES:
        twice = _replayed_twice(path, tmp_path / "twice.pcap", syns)
        if twice is None:
            continue
        _fast_is_plain(twice, catalogue, path.name)
        done += 1
    assert done > 80
    if syns:
        assert taken["batch"] > 1000, taken
