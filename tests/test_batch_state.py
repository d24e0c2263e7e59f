"""The batch path leaves every flow in the state the per-packet path leaves it in.

Whole-scan comparisons (tests/test_fastpath.py) only see what reaches a report; a flow's
client side, initial sequence numbers, stream starts and close bits can differ without
changing a host record on the suite's captures. Here hostile packet sequences on a few
5-tuples (SYNs and SYN-ACKs in any order, retransmitted with other sequence numbers, data
before the handshake, FIN and RST anywhere, overlapping segments) are fed in blocks of any
size through both paths, and the flow tables are compared field by field after every
block, then the final host records.
"""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_closing import CLIENT, JOB, LOGIN, POOL, T0, frame, ok, submit, write
from poolsniff.batch import feed_block
from poolsniff.pipeline import Scanner, pipeline_gc
from poolsniff.sources.pcapfile import CaptureReader

FLAGS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x19, 0x01]
PAYLOADS = [b"", LOGIN, JOB, submit(1), ok(1), LOGIN[:40], LOGIN[40:], b"\x16\x03\x01\x00\x05hello",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
PORTS = [(40001, 3333), (40002, 3333), (40001, 443)]

packets = st.lists(st.tuples(st.integers(0, len(PORTS) - 1), st.booleans(),
                             st.sampled_from(FLAGS), st.integers(0, 4),
                             st.integers(0, len(PAYLOADS) - 1)), min_size=1, max_size=40)


def _capture(tmp_path, spec) -> str:
    pkts = []
    for i, (conn, from_client, flags, seq_step, pay) in enumerate(spec):
        cport, sport = PORTS[conn]
        src, dst, a, b = (CLIENT, POOL, cport, sport) if from_client else (POOL, CLIENT, sport, cport)
        base = 1000 if from_client else 50_000
        seq = base + [0, 1, 41, 200, 0xFFFFFFF0 - base][seq_step]
        pkts.append((T0 + i * 0.5, frame(src, dst, a, b, seq & 0xFFFFFFFF, flags, PAYLOADS[pay])))
    return write(tmp_path / "h.pcap", pkts)


def _flows(sc: Scanner) -> list[tuple]:
    out = []
    for key, f in sc.flows.items():
        streams = None if f.streams is None else [(s.next_seq, sorted(s.ooo), s.ooo_bytes, s.gaps,
                                                   s.retrans_bytes, s.midstream) for s in f.streams]
        out.append((key, f.client, f.syn_seen, f.isn, f.midstream, f.counts, f.state,
                    f.app, f.fin, f.last_ts, f.data_ts, f.close_ts, f.inspected, streams))
    return out


def _run(path: str, block: int, catalogue, fast: bool):
    sc = Scanner(catalogue)
    sc.begin_file(path)
    states = []
    reader = CaptureReader(path, batch_size=block)
    with pipeline_gc():
        for chunk in (reader.blocks(block) if fast else reader):
            feed_block(sc, chunk) if fast else sc.feed(chunk)
            states.append(_flows(sc))
        sc.finish_all()
    return states, [h.to_dict() for h in sc.results(every=True)], sc.stats.to_dict()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=packets, block=st.integers(1, 12))
def test_flow_state_equal_after_every_block(tmp_path, catalogue, spec, block):
    path = _capture(tmp_path, spec)
    assert _run(path, block, catalogue, True) == _run(path, block, catalogue, False)


@pytest.mark.parametrize("spec,blocks,client,isn", [
    # data first (no handshake seen), then the pool's SYN-ACK and a retransmitted SYN in a
    # later block: the streams exist already, so the SYNs start the side that has no start
    ([(0, True, 0x18, 1, 1), (0, True, 0x18, 2, 5), (0, False, 0x12, 0, 0),
      (0, True, 0x02, 0, 0), (0, False, 0x18, 1, 2), (0, True, 0x02, 3, 0)], (1, 2, 3, 6), 0,
     [1200, 50_000]),
    # SYN-ACKs and SYNs retransmitted with other numbers, all before any data in one block:
    # the last of each side is its ISN; a SYN-ACK came first, so the other side is the client
    ([(0, False, 0x12, 0, 0), (0, False, 0x12, 2, 0), (0, True, 0x02, 0, 0),
      (0, True, 0x02, 3, 0), (0, True, 0x18, 1, 1), (0, False, 0x18, 1, 2)], (1, 4, 5, 6), 1,
     [50_041, 1200]),
], ids=["syn_after_data", "retransmitted_syns"])
def test_syns_in_any_block_give_the_per_packet_client_and_isns(tmp_path, catalogue, spec, blocks,
                                                                client, isn):
    path = _capture(tmp_path, spec)
    for block in blocks:
        fast = _run(path, block, catalogue, True)
        assert fast == _run(path, block, catalogue, False)
    flow = fast[0][-1][0]
    assert flow[1] == client and flow[2] is True and flow[3] == isn


def _snapshot_of_every_flow(sc: Scanner):
    """Scanner.snapshot without its shortcut: every open flow accounted (the reference)."""
    finished, traffic = sc.hosts, sc.traffic
    sc.hosts, sc.traffic = {}, type(traffic)()
    try:
        for flow in sc.flows.values():
            endpoint, client = sc._resolve(flow)
            sc._account(flow, flow.record.copy() if flow.record is not None else None, endpoint,
                        client)
        return sc.hosts, sc.traffic
    finally:
        sc.hosts, sc.traffic = finished, traffic


def test_snapshot_skips_only_flows_that_add_nothing(catalogue):
    """A watch's flush accounts the open flows; the flows it skips (no proof, no pool
    endpoint, no sign, neither address a pool learned from DNS) add nothing: the snapshot
    equals accounting every open flow, at every block of every capture of the suite."""
    from conftest import CAPTURES
    checked = 0
    for path in CAPTURES:
        sc = Scanner(catalogue)
        sc.begin_file(str(path))
        with pipeline_gc():
            for blk in CaptureReader(str(path)).blocks(40):
                feed_block(sc, blk)
                hosts, traffic = sc.snapshot()
                ref, ref_traffic = _snapshot_of_every_flow(sc)
                assert {k: h.to_dict() for k, h in hosts.items()} == \
                    {k: h.to_dict() for k, h in ref.items()}, path.name
                assert traffic.to_list() == ref_traffic.to_list(), path.name
                checked += bool(ref)
    assert checked > 100
