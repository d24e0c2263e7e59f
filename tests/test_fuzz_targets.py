"""The fuzz targets of tests/fuzz/targets.py on a short hypothesis budget (every commit);
tests/fuzz/run_fuzz.py runs the same targets under atheris for a million inputs each.
Inputs are random bytes and mutations (bit flips, cuts, splices) of real seeds."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PCAPS, ROOT

sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
from run_fuzz import _deflated_ws_seed, fragment_seed  # noqa: E402
from targets import TARGETS  # noqa: E402

def _tunnel_frames() -> list[bytes]:
    from poolsniff.sources.pcapfile import CaptureReader
    blk = next(CaptureReader(str(PCAPS / "tunnels_xmrig.pcap")).blocks(4096))
    return [blk.buf[o:o + n] for o, n in zip(blk.offs.tolist()[::5], blk.incl.tolist()[::5])]


SEEDS = {
    "capture_pcap": [p.read_bytes() for p in sorted(PCAPS.glob("*.pcap"))[:6]],
    "capture_pcapng": [p.read_bytes() for p in sorted(PCAPS.glob("*.pcapng"))[:4]],
    "scan_pcap": [(PCAPS / "xmrig_compact.pcap").read_bytes()],
    "json_dialects": [b'{"id":1,"method":"mining.subscribe","params":["x"]}\n{"id":1,"result":'
                      b'[[["mining.notify","1"]],"08000002",4]}\n'],
    "registry": [b"institutions:\n  - name: A\n    category: university\n    cidrs: [10.0.0.0/8]\n",
                 b"name,category,city,cidr\nA,enterprise,B,10.1.0.0/16\n"],
    "signatures_yaml": [(ROOT / "signatures" / "pools.yaml").read_bytes()[:1500]],
    # chunks split at 0xff, client and proxy in turn: SOCKS5 with auth, SOCKS4a, CONNECT
    "proxy": [b"\x05\x02\x00\x02\xff\x05\x02\xff\x01\x01u\x01p\xff\x01\x00\xff\x05\x01\x00\x03\x04pool"
              b"\x0d\x05\xff\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff{\"id\":1}\n",
              b"\x04\x01\x0d\x05\x00\x00\x00\x01u\x00pool.example\x00\xff\x00\x5a\x00\x00\x00\x00\x00\x00",
              b"CONNECT pool.example:3333 HTTP/1.1\r\n\r\n\xffHTTP/1.1 200 OK\r\n\r\n"],
    # an upgrade, then permessage-deflate messages (RSV1, context takeover, one split)
    "http_websocket": [_deflated_ws_seed()],
    # a link-type byte (1: Ethernet), then a frame: tunnelled ones (C header pass == decoder)
    "decode": [b"\x01" + f for f in _tunnel_frames()],
    # frames with IPv4/IPv6 fragments (and an ERSPAN mirror fragmented outside), in turn
    "ip_fragments": [fragment_seed()],
    # the same openings as a TCP session through the whole scanner (chunks alternate sides)
    "pipeline": [b"CONNECT pool.supportxmr.com:3333 HTTP/1.1\r\n\r\n\xffHTTP/1.1 200 OK\r\n\r\n\xff"
                 b'{"id":1,"method":"login","params":{"login":"x","agent":"XMRig/6"}}\n\xff'
                 b'{"id":1,"result":{"job":{"blob":"00","job_id":"1","target":"b88d0600"}}}\n'],
}


@st.composite
def mutated(draw, target: str):
    seeds = SEEDS.get(target)
    if not seeds or draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=3000))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 3))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            data[i:i + 4] = draw(st.binary(min_size=4, max_size=4))
        elif op == 2:
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=64))
    return bytes(data)


BUDGET = {"capture_pcap": 40, "capture_pcapng": 40, "scan_pcap": 15, "pipeline": 25}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_never_raises(target):
    fn = TARGETS[target]

    @settings(max_examples=BUDGET.get(target, 150), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(target))
    def run(data):
        fn(data)

    run()
