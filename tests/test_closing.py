"""TCP flows end when they close (FIN both ways, or RST) and stay silent CLOSED_LINGER_S,
not only after the idle timeout: a new connection on the same 5-tuple is a new session,
a spoofed RST in a live session is not an end, and a flood of short connections does not
keep the flow table full. The batch and the per-packet path agree on all of it."""

from __future__ import annotations

import struct

import pytest

from poolsniff import pipeline
from poolsniff.scan import scan_files

CLIENT, POOL = bytes([10, 9, 0, 1]), bytes([203, 0, 113, 90])
T0 = 1_700_000_000
FIN, SYN, RST, PSH_ACK, ACK = 0x01, 0x02, 0x04, 0x18, 0x10
LOGIN = (b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4' + b"A" * 94
         + b'","pass":"x","agent":"XMRig/6.21.0"}}\n')
JOB = (b'{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"a1","job":{"blob":"' + b"07" * 76
       + b'","job_id":"j1","target":"b88d0600","algo":"rx/0"},"status":"OK"}}\n')


def submit(i: int) -> bytes:
    return (b'{"id":%d,"jsonrpc":"2.0","method":"submit","params":{"id":"a1","job_id":"j1",'
            b'"nonce":"%08x","result":"%s"}}\n' % (10 + i, i, b"ee" * 32))


def ok(i: int) -> bytes:
    return b'{"id":%d,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}\n' % (10 + i)


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int,
          payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst) + tcp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


class Conn:
    """One scripted TCP connection; packets as (time, frame)."""

    def __init__(self, t: float, cport: int = 40001, sport: int = 3333,
                 client: bytes = CLIENT, pool: bytes = POOL) -> None:
        self.t, self.cport, self.sport, self.client, self.pool = t, cport, sport, client, pool
        self.cs, self.ss = 1000, 50_000
        self.pkts: list[tuple[float, bytes]] = []
        self.c(SYN, b"", 0)
        self.s(SYN | ACK, b"", 0)

    def c(self, flags: int, data: bytes = b"", dt: float = 0.1) -> Conn:
        """The client sends."""
        return self._send(True, flags, data, dt)

    def s(self, flags: int, data: bytes = b"", dt: float = 0.1) -> Conn:
        """The pool sends."""
        return self._send(False, flags, data, dt)

    def _send(self, client: bool, flags: int, data: bytes, dt: float) -> Conn:
        self.t += dt
        src, dst, sport, dport = ((self.client, self.pool, self.cport, self.sport) if client
                                  else (self.pool, self.client, self.sport, self.cport))
        seq = self.cs if client else self.ss
        self.pkts.append((self.t, frame(src, dst, sport, dport, seq, flags, data)))
        step = len(data) + (1 if flags & (SYN | FIN) else 0)
        if client:
            self.cs += step
        else:
            self.ss += step
        return self

    def mine(self, shares: int, every: float = 5.0) -> Conn:
        self.c(PSH_ACK, LOGIN).s(PSH_ACK, JOB)
        for i in range(shares):
            self.c(PSH_ACK, submit(i), every).s(PSH_ACK, ok(i))
        return self

    def close(self) -> Conn:
        return self.c(FIN | ACK).s(FIN | ACK).c(ACK)


def write(path, pkts: list[tuple[float, bytes]]) -> str:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for t, f in sorted(pkts, key=lambda p: p[0]):
        sec = int(t)
        out.append(struct.pack("<IIII", sec, int(round((t - sec) * 1e6)), len(f), len(f)) + f)
    path.write_bytes(b"".join(out))
    return str(path)


def scan_both(paths, catalogue):
    """Host records and stats from the batch path, checked against the per-packet path."""
    fast = scan_files(paths, catalogue, fast=True)
    plain = scan_files(paths, catalogue, fast=False)
    hf = {h.ip: h.to_dict() for h in fast.hosts}
    assert hf == {h.ip: h.to_dict() for h in plain.hosts}
    assert fast.stats == plain.stats
    return hf, fast.stats


def test_a_new_connection_on_a_closed_five_tuple_is_a_new_session(tmp_path, catalogue):
    """A miner reconnects from the same source port (the same sequence numbers, as a
    replayed session has): before, the second session's bytes looked like retransmissions
    of the first and its shares were lost."""
    a = Conn(T0).mine(3).close()
    b = Conn(T0 + 120).mine(4).close()
    hosts, stats = scan_both([write(tmp_path / "reuse.pcap", a.pkts + b.pkts)], catalogue)
    h = hosts["10.9.0.1"]
    assert h["sessions"] == 2 and stats["flows"] == 2
    assert h["shares"]["submitted"] == 7 and h["shares"]["accepted"] == 7


def test_a_spoofed_reset_does_not_end_a_live_session(tmp_path, catalogue):
    """An RST injected in the middle (a middlebox, an attacker) while the session goes on:
    payload after the reset reopens the flow, even after a long pause."""
    c = Conn(T0).mine(2)
    c.s(RST, b"", 1.0)
    c.c(PSH_ACK, submit(7), 30.0).s(PSH_ACK, ok(7))       # silent far longer than the linger
    c.c(PSH_ACK, submit(8), 45.0).s(PSH_ACK, ok(8)).close()
    hosts, stats = scan_both([write(tmp_path / "rst.pcap", c.pkts)], catalogue)
    h = hosts["10.9.0.1"]
    assert h["sessions"] == 1 and stats["flows"] == 1
    assert h["shares"]["accepted"] == 4


def test_closed_connections_leave_the_flow_table(tmp_path, catalogue, monkeypatch):
    """Thousands of short closed connections (a miner probing pools, a port scan answered by
    RST): the flow table holds only the last few seconds of them, not 15 minutes' worth."""
    monkeypatch.setattr(pipeline, "SWEEP_EVERY", 2_000)
    pkts: list[tuple[float, bytes]] = []
    n = 16_000                       # ~80,000 packets: more than one block of the scan
    for i in range(n):
        pool = bytes([198, 51, 100 + i // 250 % 100, i % 250 + 1])
        c = Conn(T0 + i * 0.5, cport=20_000 + i, pool=pool)
        if i % 2:
            c.c(PSH_ACK, LOGIN).s(PSH_ACK, JOB).close()
        else:
            c.s(RST | ACK)
        pkts += c.pkts
    path = write(tmp_path / "probe.pcap", pkts)
    seen: list[int] = []
    real_sweep = pipeline.Scanner._sweep

    def sweep(self, now):
        real_sweep(self, now)
        seen.append(len(self.flows))

    monkeypatch.setattr(pipeline.Scanner, "_sweep", sweep)
    hosts, stats = scan_both([path], catalogue)
    assert stats["flows"] == n
    # connections arrive every 0.5 s and end within a second: after each sweep only those of
    # the last CLOSED_LINGER_S (plus one sweep interval) are left
    assert len(seen) >= 2 and max(seen) <= 2 * pipeline.CLOSED_LINGER_S / 0.5
    assert hosts["10.9.0.1"]["sessions"] == n // 2


@pytest.mark.parametrize("data_after", [False, True])
def test_fin_one_way_is_not_a_close(tmp_path, catalogue, data_after):
    """A half-close (the client's FIN) with the pool still talking stays open until the
    idle timeout; the same bytes with both FINs end it."""
    c = Conn(T0).mine(1)
    c.c(FIN | ACK)
    if data_after:
        c.s(PSH_ACK, ok(5), 20.0)
    later = Conn(T0 + 200).mine(1).close()             # the same 5-tuple again
    hosts, stats = scan_both([write(tmp_path / "half.pcap", c.pkts + later.pkts)], catalogue)
    # a half-closed flow is not finished early, so the second connection's packets join it
    assert stats["flows"] == 1


def test_pipeline_gc_collects_cycles_between_batches(catalogue, monkeypatch):
    """Automatic GC is off inside pipeline_gc; the collection between batches still frees
    cyclic garbage, so memory stays bounded (by about GC_YOUNG objects) however many
    batches run."""
    import gc

    monkeypatch.setattr(pipeline, "GC_YOUNG", 200_000)     # the mechanism, with a smaller bound

    class Node:
        def __init__(self):
            self.me = self

    with pipeline.pipeline_gc():
        assert not gc.isenabled()
        sc = pipeline.Scanner(catalogue)
        base = len(gc.get_objects())
        peak = 0
        for _ in range(40):
            for _ in range(20_000):
                Node()                  # cyclic garbage, as a bug in flow teardown would leave
            peak = max(peak, len(gc.get_objects()) - base)
            sc.feed([])                 # a batch boundary
        assert peak < 250_000, peak     # 800,000 cycles made, never more than a few batches alive
    assert gc.isenabled()


def test_a_gracefully_closed_flow_gives_up_its_reassembly_state(tmp_path, catalogue, monkeypatch):
    """FIN both ways and 2 s of silence: the flow's reassembly, framing and job tables are
    dropped at the next sweep (what the flow said is already folded into its record) while
    the flow lingers to absorb a retransmitted FIN. A flow closed by RST keeps its state (a
    forged reset must not cut a session). Either way the evidence is what it is without this."""
    from poolsniff.batch import feed_block
    from poolsniff.sources.pcapfile import block_from_packets
    monkeypatch.setattr(pipeline, "SWEEP_EVERY", 1)        # sweep at every batch
    graceful = Conn(T0).mine(3).close()                    # closes at ~T0+16.4
    graceful.c(FIN | ACK, dt=0.5)                          # a straggler: absorbed by the linger
    reset = Conn(T0 + 5, cport=40002).mine(2).c(RST)       # reset at ~T0+16.1
    tick = Conn(T0 + 19, cport=40003).mine(1)              # keeps time moving past T0+20
    pkts = sorted(graceful.pkts + reset.pkts + tick.pkts, key=lambda p: p[0])
    sc = pipeline.Scanner(catalogue)
    sc.begin_file("x")
    for i, (t, f) in enumerate(pkts):
        feed_block(sc, block_from_packets([(i + 1, t, 1, f)]))
        if t > T0 + 21:
            break
    flows = {f.ports[0] if f.ports[1] == 3333 else f.ports[1]: f for f in sc.flows.values()}
    assert flows[40001].wound and flows[40001].streams is None      # closed, lingering, light
    assert not flows[40002].wound and flows[40002].streams is not None
    assert flows[40001].session is not None and not flows[40001].session.jobs
    path = write(tmp_path / "closing.pcap", pkts)
    hosts, stats = scan_both([path], catalogue)
    monkeypatch.setattr(pipeline, "WIND_DOWN_S", 1e9)       # never wind down: the same evidence
    assert scan_both([path], catalogue) == (hosts, stats)
    [h] = hosts.values()
    assert h["sessions"] == 3 and h["shares"]["accepted"] == 6
