"""The watch daemon without a network: ``watch --read`` on captures and pipes, the
SQLite store (merge across restarts, schema, lossless state), alerts, SIGHUP,
a full disk, and its error messages. Live capture is in test_watch_live.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PCAPS, PUBLIC, ROOT

PS = [sys.executable, "-m", "poolsniff"]
NOWHERE = ("pcap_filename", "pcap_cnt")


def ps(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PS, *args], capture_output=True, text=True, **kw)


def report(db: Path) -> dict:
    r = ps("report", "--db", str(db), "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def scanned(paths: list[str], catalogue) -> list[dict]:
    from poolsniff.scan import scan_files
    return [h.to_dict() for h in scan_files(paths, catalogue).hosts]


def strip(hosts: list[dict], drop: tuple[str, ...] = ()) -> list[dict]:
    """Host records without what the JSON writer adds (ISO times, community IDs), so a
    report read back from JSON compares with HostEvidence.to_dict()."""
    out = []
    for h in hosts:
        h = {k: v for k, v in h.items()
             if not k.endswith("_iso") and k not in ("institution", "evidence_level", "geoip_city")}
        h["evidence"] = [{k: v for k, v in e.items() if k not in ("ts_iso", "community_id", *drop)}
                         for e in h["evidence"]]
        out.append(h)
    return out


def _miners(n: int = 3) -> list[str]:
    truth = json.loads((PUBLIC / "truth.json").read_text())
    return [str(PUBLIC / k) for k, v in sorted(truth.items()) if v.get("miners")][:n]


def test_traffic_spreads_a_session_evenly_and_exactly():
    from poolsniff.evidence import Traffic
    t = Traffic()
    t.spread(1000.0, 1000.0 + 900, 9001, 3)        # 1000 s is 100 s into the bin at 900
    assert t.to_list() == [[900, 2000, 0], [1200, 3000, 1], [1500, 3000, 1], [1800, 1001, 1]]
    t.spread(5.0, 5.0, 10, 20)                      # one instant: one bin
    assert t.bins[0] == [10, 20]
    u = Traffic.from_list(t.to_list())
    u.merge(t)
    assert u.bins[900] == [4000, 0]


def test_state_round_trip_is_lossless(catalogue):
    """What the store keeps of a host gives back the same record, on every public capture."""
    from poolsniff.evidence import HostEvidence
    from poolsniff.scan import merge_results, scan_files
    files = sorted(str(p) for p in PUBLIC.rglob("*.pcap*")) + sorted(str(p) for p in PCAPS.glob("*.pcap*"))
    res = merge_results([scan_files([f], catalogue) for f in files])
    assert len(res.hosts) > 20
    for h in res.hosts:
        back = HostEvidence.from_state(json.loads(json.dumps(h.state())))
        assert back.to_dict() == h.to_dict()
        assert back.links.items == h.links.items
        # and the scan's JSON record is enough for a report to merge it again
        via_json = HostEvidence.from_dict(json.loads(json.dumps(h.to_dict())))
        assert via_json.to_dict() == h.to_dict()


def test_watch_read_equals_scan(tmp_path, catalogue):
    """Reading a capture file, a watch stores exactly the host records a scan prints."""
    files = [str(PCAPS / "xmrig_compact.pcap")] + _miners(4)
    db = tmp_path / "w.db"
    for f in files:          # one run per file, restarting on the same store
        r = ps("watch", "--read", f, "--db", str(db), "--flush-every", "0.2s")
        assert r.returncode == 0, r.stderr
    from poolsniff.scan import merge_results, scan_files
    expected = merge_results([scan_files([f], catalogue) for f in files])
    got = report(db)
    assert strip(got["hosts"]) == strip([h.to_dict() for h in expected.hosts])
    assert got["stats"]["packets"] == expected.stats["packets"]
    assert got["traffic"]["bins"] == expected.traffic.to_list()
    # every byte of every pool session is in the traffic series, once
    assert sum(b[1] for b in got["traffic"]["bins"]) == \
        sum(h["bytes_toserver"] for h in got["hosts"] if h["verdict"] == "mining")
    assert len(got["stats"]["runs"]) == len(files)
    assert oct(db.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("magics", [(b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), (b"\x0a\x0d\x0d\x0a",)],
                         ids=["pcap", "pcapng"])
def test_watch_on_a_pipe_equals_scan(tmp_path, catalogue, magics):
    """tcpdump -w - | poolsniff watch --read - (dumpcap -w - for pcapng): the largest capture
    of a real miner in each format through a pipe (read in blocks of what has arrived)
    stores the host records a scan prints."""
    from poolsniff.scan import scan_files
    big = max((Path(p) for p in _miners(1000) if Path(p).read_bytes()[:4] in magics),
              key=lambda p: p.stat().st_size)
    db = tmp_path / "pipe.db"
    r = subprocess.run([*PS, "watch", "--read", "-", "--db", str(db), "--no-status"],
                       input=big.read_bytes(), capture_output=True)
    assert r.returncode == 0, r.stderr
    expected = scan_files([str(big)], catalogue)
    got = report(db)
    # the same frames; only the evidence's file name differs (<stdin>)
    assert expected.hosts and strip(got["hosts"], ("pcap_filename",)) == \
        strip([h.to_dict() for h in expected.hosts], ("pcap_filename",))
    assert got["stats"]["packets"] == expected.stats["packets"]


def test_report_merges_the_stores_of_several_sensors(tmp_path, catalogue):
    """Two sensors, two stores (here: two watches each reading one part of a miner's day,
    the same host in both): report --db a --db b gives the hosts, counters and traffic of
    the two scans merged, lists each store's runs, and refuses a store named twice."""
    from poolsniff.scan import merge_results, scan_files
    files = [str(PCAPS / "merge_part1.pcap"), str(PCAPS / "merge_part2.pcap"),
             str(PCAPS / "xmrig_compact.pcap")]
    dbs = [tmp_path / "link1.db", tmp_path / "link2.db"]
    for f, db in ((files[0], dbs[0]), (files[1], dbs[1]), (files[2], dbs[1])):
        r = ps("watch", "--read", f, "--db", str(db), "--flush-every", "0.2s")
        assert r.returncode == 0, r.stderr
    expected = merge_results([scan_files([f], catalogue) for f in files])
    r = ps("report", "--db", str(dbs[0]), "--db", str(dbs[1]), "-f", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert strip(got["hosts"]) == strip([h.to_dict() for h in expected.hosts])
    shared = {h["ip"] for h in got["hosts"] if h["sessions"] > 1}
    assert shared, "the two parts were to share a host"
    assert got["stats"]["packets"] == expected.stats["packets"]
    assert got["traffic"]["bins"] == expected.traffic.to_list()
    assert [r["store"] for r in got["stats"]["runs"]] == [str(dbs[0])] + [str(dbs[1])] * 2
    assert got["sources"]["db"] == [str(d) for d in dbs]
    twice = ps("report", "--db", str(dbs[0]), "--db", str(tmp_path / "." / "link1.db"))
    assert twice.returncode == 2 and "given twice" in twice.stderr \
        and len(twice.stderr.strip().splitlines()) == 1, twice.stderr


WORKER_CAPTURES = ["nesfit-di-cryptomining/cgminer.s0.pcapng", "zeek-cryptomining/bitcoin-mining.pcap",
                   "ndpi/2018-c6b427c-ethereum.pcap"]


@pytest.mark.parametrize("workers", [2, 3])
def test_watch_workers_store_what_one_watch_stores_and_alert_once(tmp_path, catalogue, workers):
    """--workers N: each worker takes a share of the flows, learning pool names from every
    DNS answer; the parent merges and stores. A probing miner's sessions (17 pools, looked
    up in DNS), a Bitcoin miner's 13 sessions: hosts, counters, traffic and alerts are
    those of a one-process watch, and the hosts were split between the workers."""
    import ipaddress

    from poolsniff.hashing import flow_hash, part_of
    from poolsniff.scan import merge_results, scan_files
    files = [str(PUBLIC / f) for f in WORKER_CAPTURES] + [str(PCAPS / "xmrig_compact.pcap")]
    expected = merge_results([scan_files([f], catalogue) for f in files])
    got_alerts = []
    for n, db in ((1, tmp_path / "one.db"), (workers, tmp_path / "many.db")):
        alerts = tmp_path / f"alerts{n}.json"
        for f in files:
            r = ps("watch", "--read", f, "--db", str(db), "--flush-every", "0.1s", "--workers",
                   str(n), "--alerts", str(alerts))
            assert r.returncode == 0, r.stderr
        mining = [a for a in alert_lines(alerts) if a["event_type"] == "mining"]
        # what changed (new pool, new wallet) depends on which sessions end before which
        # flush, in one process too; each link alerts once, each host once as new
        got_alerts.append((sorted(str((a["src_ip"], a["dest_ip"], a["dest_port"],
                                       a["mining"]["wallet_or_login"], a["mining"]["coin"]))
                                  for a in mining),
                           sorted(a["src_ip"] for a in mining if a["mining"]["change"] == "new_host")))
    got = report(tmp_path / "many.db")
    assert strip(got["hosts"]) == strip([h.to_dict() for h in expected.hosts])
    assert strip(report(tmp_path / "one.db")["hosts"]) == strip(got["hosts"])
    for k in ("packets", "bytes", "flows", "flows_mining", "lines", "dns_messages"):
        assert got["stats"][k] == expected.stats[k], k
    assert got["traffic"]["bins"] == expected.traffic.to_list()
    assert got_alerts[0] == got_alerts[1] and len(got_alerts[1][0]) >= 4
    assert got_alerts[1][1] == sorted({h["ip"] for h in got["hosts"] if h["verdict"] == "mining"})
    from poolsniff.store import EvidenceStore
    store = EvidenceStore(str(tmp_path / "many.db"))
    runs = store.run_stats()
    store.close()
    assert [len(r["stats"]["capture"]["workers"]) for r in runs] == [workers] * len(files)
    assert all(r["source"].endswith(f"({workers} workers)") and r["ended"] for r in runs)
    # some host's sessions fell to more than one worker
    split = 0
    for h in got["hosts"]:
        parts = {part_of(flow_hash(ipaddress.ip_address(e["src_ip"]).packed, e["src_port"],
                                   ipaddress.ip_address(e["dest_ip"]).packed, e["dest_port"]),
                         workers)
                 for e in h["evidence"] if "src_port" in e}
        split += len(parts) > 1
    assert split


def test_watch_workers_errors_are_one_line(tmp_path):
    r = ps("watch", "--read", "/nonexistent.pcap", "--workers", "2", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "cannot open" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "Error" in ln or "error" in ln]) == 1, r.stderr
    r = ps("watch", "--read", "-", "--workers", "2", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "standard input" in r.stderr


def test_report_table_and_jsonl_from_store(tmp_path):
    db = tmp_path / "w.db"
    assert ps("watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", str(db)).returncode == 0
    t = ps("report", "--db", str(db))
    assert t.returncode == 0 and "10.1.0.10" in t.stdout, t.stdout + t.stderr
    j = ps("report", "--db", str(db), "-f", "jsonl")
    kinds = [json.loads(x)["event_type"] for x in j.stdout.splitlines()]
    assert "mining" in kinds and kinds[-1] == "stats"


class PipeWatch:
    """``poolsniff watch --read -`` fed by the test through a pipe, like tcpdump -w -."""

    def __init__(self, tmp: Path, db: Path, alerts: Path, *extra: str) -> None:
        self.err = tmp / "watch.err"
        self.p = subprocess.Popen([*PS, "watch", "--read", "-", "--db", str(db), "--alerts",
                                   str(alerts), "--flush-every", "0.3s", *extra],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=self.err.open("w"))
        self.header_sent = False

    def send(self, capture: Path) -> None:
        data = capture.read_bytes()
        assert self.p.stdin is not None
        self.p.stdin.write(data if not self.header_sent else data[24:])
        self.p.stdin.flush()
        self.header_sent = True

    def close(self) -> int:
        assert self.p.stdin is not None
        self.p.stdin.close()
        return self.p.wait(timeout=60)


def wait_for(cond, timeout: float = 20, what: str = "") -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alert_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_alerts_new_host_new_pool_and_sighup_reopens(tmp_path):
    """A host alerts once when first seen mining and again on a new pool; SIGHUP after
    a log rotation makes the watch write to a fresh file."""
    alerts = tmp_path / "alerts.json"
    w = PipeWatch(tmp_path, tmp_path / "w.db", alerts)
    w.send(PCAPS / "stratum_btc_compact.pcap")
    mining = lambda p: [a for a in alert_lines(p) if a["event_type"] == "mining"]  # noqa: E731
    wait_for(lambda: mining(alerts), what="the first alert")
    first = mining(alerts)
    assert [(a["src_ip"], a["mining"]["change"]) for a in first] == [("10.1.0.10", "new_host")]
    assert first[0]["mining"]["evidence"], "an alert carries its evidence"
    assert first[0]["alert"]["signature"].startswith("POOLSNIFF host mining")
    # rotate: rename, SIGHUP, more traffic: the new alerts go to a new file
    rotated = tmp_path / "alerts.json.1"
    alerts.rename(rotated)
    w.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    w.send(PCAPS / "xmrig_compact.pcap")
    wait_for(lambda: mining(alerts), what="an alert in the reopened file")
    assert [(a["src_ip"], a["mining"]["change"]) for a in mining(alerts)] == \
        [("10.1.0.15", "new_host")]
    # the same host and pool again: no new alert (deduplicated)
    w.send(PCAPS / "stratum_btc_compact.pcap")
    time.sleep(1.0)
    assert w.close() == 0, w.err.read_text()
    assert len(mining(rotated)) == 1 and len(mining(alerts)) == 1
    assert "SIGHUP: " in w.err.read_text()
    assert oct(alerts.stat().st_mode & 0o777) == "0o600"


def test_restart_does_not_alert_again(tmp_path):
    db, alerts = tmp_path / "w.db", tmp_path / "a.json"
    for _ in range(2):
        r = ps("watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", str(db), "--alerts",
               str(alerts))
        assert r.returncode == 0, r.stderr
    assert [a["src_ip"] for a in alert_lines(alerts) if a["event_type"] == "mining"] == \
        ["10.1.0.10"]


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MB filesystem (tmpfs) to fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_disk_full_keeps_capturing_and_retries(tmp_path, small_fs, catalogue):
    db = small_fs / "w.db"
    w = PipeWatch(tmp_path, db, tmp_path / "alerts.json")
    w.send(PCAPS / "stratum_btc_compact.pcap")
    wait_for(lambda: db.exists() and report(db)["hosts"], what="the first flush")
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:          # fill the filesystem to the last block
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    w.send(PCAPS / "xmrig_compact.pcap")
    wait_for(lambda: "cannot write the evidence store" in w.err.read_text(), what="the error")
    time.sleep(1.0)
    assert w.p.poll() is None, "the watch must keep running on a full disk"
    err = w.err.read_text()
    assert err.count("cannot write the evidence store") == 1, err     # said once, not per flush
    filler.unlink()
    wait_for(lambda: "written again" in w.err.read_text(), what="the retried flush")
    assert w.close() == 0, w.err.read_text()
    expected = scanned([str(PCAPS / "stratum_btc_compact.pcap"), str(PCAPS / "xmrig_compact.pcap")],
                       catalogue)
    # (one stream from a pipe: evidence names <stdin> and counts frames on from the first file)
    assert strip(report(db)["hosts"], NOWHERE) == strip(expected, NOWHERE)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_watches_cannot_share_a_store(tmp_path):
    db = tmp_path / "w.db"
    w = PipeWatch(tmp_path, db, tmp_path / "a.json")
    w.send(PCAPS / "stratum_btc_compact.pcap")
    wait_for(lambda: db.exists(), what="the store")
    time.sleep(0.3)
    r = ps("watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", str(db))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"Error: {db}: the evidence store is in use by another 'poolsniff watch'; give each "
        "watch its own --db"]
    assert w.close() == 0


def test_store_from_a_newer_poolsniff_is_refused(tmp_path):
    db = tmp_path / "w.db"
    assert ps("watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", str(db)).returncode == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    for args in (["report", "--db", str(db)],
                 ["watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", str(db)]):
        r = ps(*args)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "newer poolsniff" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["watch"], "give exactly one of -i IFACE"),
    (["watch", "-i", "eth0", "--read", "x.pcap"], "give exactly one of -i IFACE"),
    (["watch", "--read", "x.pcap", "--flush-every", "soon"], "is not a duration"),
    (["report", "--db", "/nonexistent/ev.db"], "no such evidence store"),
    (["watch", "--read", "/nonexistent.pcap"], "cannot open"),
    (["watch", "--read", str(PCAPS / "stratum_btc_compact.pcap"), "--db", "/proc/ev.db"],
     "cannot create the store's lock file"),
])
def test_usage_errors_are_one_line_exit_2(args, message, tmp_path):
    r = ps(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 or (lines[0].startswith("Usage:") and "Error:" in lines[-1]), r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_watch_memcap_refuses_and_reports_what_is_held(tmp_path):
    """--stream-memcap-mb reaches the watch's scanner: fake miners holding bytes past a hole
    are refused past 1 MB (counted), and the stats event says what is still held (nothing,
    once the watch has finished its flows)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import abuse
    cap = tmp_path / "held.pcap"
    abuse.write(cap, abuse.held(12))
    r = ps("watch", "--read", str(cap), "--db", str(tmp_path / "w.db"), "--alerts", "-",
           "--stream-memcap-mb", "1", "--no-status")
    assert r.returncode == 0, r.stderr
    stats = [json.loads(x)["stats"] for x in r.stdout.splitlines()
             if json.loads(x)["event_type"] == "stats"]
    assert stats[-1]["held_bytes"] == 0
    assert stats[-1]["anomalies"]["stream.memcap_drop"] > 0
    assert len([x for x in r.stdout.splitlines() if json.loads(x)["event_type"] == "mining"]) == 12
