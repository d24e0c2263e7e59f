"""The batch fast path gives exactly the plain per-packet path's answer, on every capture."""

import json

import pytest

from conftest import PCAPS, PUBLIC
from poolsniff.scan import scan_files

CAPTURES = sorted([p for p in PCAPS.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz"))]
                  + [p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng")])


def _doc(path, catalogue, fast):
    res = scan_files([str(path)], catalogue, fast=fast)
    doc = json.loads(json.dumps(res.to_dict(), default=str))
    return doc, res.anomalies, res.domains


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_equals_plain(path, catalogue):
    fast, fast_anom, fast_dom = _doc(path, catalogue, True)
    plain, plain_anom, plain_dom = _doc(path, catalogue, False)
    assert fast["hosts"] == plain["hosts"]
    assert fast["stats"] == plain["stats"]
    assert fast_dom == plain_dom
    assert sorted(map(repr, fast_anom)) == sorted(map(repr, plain_anom))


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
