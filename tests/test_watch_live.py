"""``poolsniff watch`` on a real interface: captures replayed with tcpreplay into a veth
pair that lives in a network namespace made for the test (the traffic cannot leave
the machine), captured by libpcap, stored in SQLite, compared with ``scan``.

Needs root (namespaces, capture) and tcpreplay; the fixture installs tcpreplay from
Debian when it can. Without them the tests skip, unless POOLSNIFF_REQUIRE_LIVE=1
(set by .ci/run), where a skip would hide a missing part and is a failure instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PCAPS, PUBLIC, install_debian, need

FLUSH = 0.5           # seconds between store flushes in these tests
PPS = 20000           # replay rate (the watch keeps up with far more; see bench/)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tcpreplay() -> str:
    path = install_debian("tcpreplay", "tcpreplay")
    need(path, "tcpreplay is not installed (apt-get install tcpreplay)")
    return str(path)


@pytest.fixture(scope="session")
def netns() -> str:
    import shutil
    need(os.geteuid() == 0, "needs root for a network namespace and packet capture")
    need(shutil.which("ip"), "needs iproute2 ('ip')")
    name = f"poolsniff{os.getpid()}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for dev in ("va", "vb"):
            # jumbo MTU: captures taken with segmentation offload hold frames over 1500 bytes
            run("ip", "-n", name, "link", "set", dev, "mtu", "65535")
            run("ip", "-n", name, "link", "set", dev, "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def _linktypes_ok(path: Path) -> bool:
    """Ethernet only (tcpreplay sends frames as they are), not gzip."""
    from poolsniff.sources.pcapfile import CaptureReader
    if path.suffix == ".gz":
        return False
    r = CaptureReader(str(path))
    lts = {lt for batch in r for (_f, _t, lt, _d) in batch}
    return lts == {1} and not r.truncated


@pytest.fixture(scope="session")
def rounds(catalogue) -> list[list[str]]:
    """The replayable captures (Ethernet, complete, no snaplen cuts), in rounds whose
    captures share no 5-tuple. A replay compresses time: two captures reusing a
    5-tuple would be one flow live, two flows in a scan. Each round is compared
    with a scan of the same files as one observation."""
    from poolsniff.decode import DecodeStats, decode
    from poolsniff.scan import scan_files
    from poolsniff.sources.pcapfile import CaptureReader

    files = sorted(PCAPS.glob("*.pcap*")) + sorted(PUBLIC.rglob("*.pcap*"))
    out: list[tuple[set, list[str]]] = []
    for p in files:
        if not _linktypes_ok(p):
            continue
        if scan_files([str(p)], catalogue).stats["anomalies"].get("capture.snaplen_truncated"):
            continue     # the replayed frame would be shorter than its IP header says
        tuples = set()
        for batch in CaptureReader(str(p)):
            for f, ts, lt, data in batch:
                s = decode(f, ts, lt, data, DecodeStats())
                if s is not None:
                    a, b = (s.src, s.sport), (s.dst, s.dport)
                    tuples.add((s.proto, min(a, b), max(a, b)))
        for seen, group in out:
            if not tuples & seen:
                seen |= tuples
                group.append(str(p))
                break
        else:
            out.append((tuples, [str(p)]))
    groups = [g for _s, g in out]
    assert sum(len(g) for g in groups) >= 60, "the replayable corpus shrank"
    return groups


class Watch:
    """A ``poolsniff watch -i vb`` inside the namespace."""

    def __init__(self, ns: str, tmp: Path, db: Path, tag: str, *extra: str) -> None:
        self.err = tmp / f"watch-{tag}.err"
        self.alerts = tmp / f"alerts-{tag}.json"
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "poolsniff", "watch", "-i", "vb",
               "--db", str(db), "--alerts", str(self.alerts), "--flush-every", f"{FLUSH}s",
               "--stats-every", "0.5s", "--no-status", *extra]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        deadline = time.time() + 30
        while "watching live:vb" not in self.err.read_text():
            assert self.p.poll() is None, f"watch exited: {self.err.read_text()}"
            assert time.time() < deadline, "watch did not start"
            time.sleep(0.05)

    def events(self, kind: str) -> list[dict]:
        if not self.alerts.exists():
            return []
        out = []
        text = self.alerts.read_text()
        # the watch may be writing a line right now: only complete lines are events
        for line in text[:text.rfind("\n") + 1].splitlines():
            ev = json.loads(line)
            if ev["event_type"] == kind:
                out.append(ev)
        return out

    def stat(self, *path: str) -> int:
        st = self.events("stats")
        if not st:
            return 0
        v = st[-1]["stats"]
        for k in path:
            v = v[k]
        return int(v)

    def wait_received(self, n: int, timeout: float = 30) -> None:
        """Until the pipeline has processed ``n`` packets (not only libpcap received them)
        and the store has been written twice since."""
        deadline = time.time() + timeout
        while self.stat("packets") < n:
            assert self.p.poll() is None, self.err.read_text()
            assert time.time() < deadline, f"processed {self.stat('packets')} of {n} packets"
            time.sleep(0.1)
        flushed = self.stat("store", "flushes")
        while self.stat("store", "flushes") < flushed + 2:
            assert self.p.poll() is None, self.err.read_text()
            assert time.time() < deadline, "no flush after the replay"
            time.sleep(0.1)

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=60)


def replay(ns: str, files: list[str], pps: int = PPS) -> int:
    r = run("ip", "netns", "exec", ns, "tcpreplay", "-i", "va", "--pps", str(pps), *files)
    sent = int(re.search(r"Successful packets:\s+(\d+)", r.stdout).group(1))
    failed = int(re.search(r"Failed packets:\s+(\d+)", r.stdout).group(1))
    assert failed == 0, r.stdout
    return sent


def report(db: Path) -> dict[str, dict]:
    r = run(sys.executable, "-m", "poolsniff", "report", "--db", str(db), "--format", "json")
    return {h["ip"]: h for h in json.loads(r.stdout)["hosts"]}


#: host fields a replay preserves (times, frame numbers and file names change with it;
#: hashrate depends on the replay's timing; a Monero job that does not name its algorithm
#: is CryptoNight before 2019-11-30 and RandomX after, and a replay happens today)
SAME = ("verdict", "reasons", "dialects", "coins", "pools", "pools_more", "workers",
        "workers_more", "wallets", "agents", "signatures", "domains", "methods",
        "difficulty_changes", "jobs", "shares", "sessions", "bytes_toserver", "bytes_toclient",
        "pkts_toserver", "pkts_toclient", "evidence_total")


def _era(algo: str | None) -> str | None:
    return "cryptonote" if algo and (algo == "cn" or algo.startswith(("cn/", "rx/"))) else algo


def _unframed(reason: str) -> str:
    return re.sub(r"frame \d+", "frame N", reason)


def assert_same_hosts(scanned: dict[str, dict], watched: dict[str, dict], skip=()) -> None:
    assert sorted(set(scanned) - set(skip)) == sorted(set(watched) - set(skip))
    for ip, a in scanned.items():
        if ip in skip:
            continue
        b = watched[ip]
        for k in SAME:
            assert a[k] == b[k], (ip, k, a[k], b[k])
        assert sorted(repr((_era(d["algorithm"]), d["kind"], d["value"], d["hashes_per_share"]))
                      for d in a["difficulty"]) == \
               sorted(repr((_era(d["algorithm"]), d["kind"], d["value"], d["hashes_per_share"]))
                      for d in b["difficulty"]), ip
        # (a job whose packets share one capture timestamp has no exposure in the file, a
        # little when replayed: an entry with no shares may appear)
        assert sorted((_era(r["algorithm"]), r["shares"]) for r in a["hashrate"] if r["shares"]) \
            == sorted((_era(r["algorithm"]), r["shares"]) for r in b["hashrate"] if r["shares"]), ip
        if a["evidence_total"] <= len(a["evidence"]):     # every entry kept: same reasons
            assert sorted(_unframed(e["reason"]) for e in a["evidence"]) == \
                   sorted(_unframed(e["reason"]) for e in b["evidence"]), ip


# -- tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 3])
def test_watch_finds_what_scan_finds(netns, tcpreplay, rounds, catalogue, tmp_path, workers):
    """Each round replayed into the interface gives the scan's host records, with one
    capture process and with three (each libpcap socket sees every packet, each worker
    takes a third of the flows). Without dedup on either side: a replay compresses time,
    and a retransmission seconds after its original in a capture (same IPv6 flow label,
    no TCP timestamps) comes within dedup's 50 ms live (test_watch_counts_span_copies_once
    has dedup live)."""
    from poolsniff.scan import scan_files
    mining = 0
    for i, files in enumerate(rounds):
        db = tmp_path / f"round{i}.db"
        w = Watch(netns, tmp_path, db, f"r{i}", "--no-dedup", "--workers", str(workers))
        sent = replay(netns, files)
        w.wait_received(sent)
        assert w.stop() == 0, w.err.read_text()
        final = w.events("stats")[-1]["stats"]
        assert final["packets"] >= sent
        assert final["capture"]["dropped"] == 0, final["capture"]
        assert len(final["capture"].get("workers", [None])) == workers
        scanned = {h.ip: h.to_dict() for h in scan_files(files, catalogue, dedup=False).hosts}
        watched = report(db)
        assert_same_hosts(scanned, watched)
        mining += sum(h["verdict"] == "mining" for h in watched.values())
        # every mining host raised an alert (first time seen: new_host)
        alerted = {e["src_ip"] for e in w.events("mining") if e["mining"]["change"] == "new_host"}
        assert alerted == {ip for ip, h in watched.items() if h["verdict"] == "mining"}
        assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert mining >= 30


def test_watch_counts_span_copies_once(netns, tcpreplay, catalogue, tmp_path):
    """A miner's session mirrored twice (each frame followed by a routed copy: TTL one
    lower, other MACs) replayed into the interface: the watch stores the counters of the
    single session and counts every copy as a duplicate."""
    from test_dedup import _doubled, _routed
    from poolsniff.scan import scan_files
    src = PCAPS / "xmrig_compact.pcap"
    dup = _doubled(src, tmp_path / "span.pcap", lambda fr, n: _routed(fr))
    db = tmp_path / "span.db"
    w = Watch(netns, tmp_path, db, "span")
    sent = replay(netns, [str(dup)])
    w.wait_received(sent)
    assert w.stop() == 0, w.err.read_text()
    final = w.events("stats")[-1]["stats"]
    single = scan_files([str(src)], catalogue)
    assert final["duplicates"] == single.stats["packets"] == sent // 2
    (one,) = [h.to_dict() for h in single.hosts]
    watched = report(db)
    assert_same_hosts({one["ip"]: one}, watched)


def test_kill9_mid_replay_loses_at_most_one_flush(netns, tcpreplay, rounds, catalogue, tmp_path):
    from poolsniff.scan import merge_results, scan_files
    assert len(rounds) >= 3
    r1, r2, c = rounds[0], rounds[1], rounds[2]
    db = tmp_path / "kill.db"
    w1 = Watch(netns, tmp_path, db, "k1")
    w1.wait_received(replay(netns, r1))
    time.sleep(3 * FLUSH)                          # round 1 is flushed
    # replay the third round slowly and kill the watch in the middle of it
    c_ips = {h.ip for h in scan_files(c, catalogue).hosts}
    rp = subprocess.Popen(["ip", "netns", "exec", netns, "tcpreplay", "-i", "va", "--pps", "500",
                           *c], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill once a host of this round has been alerted and flushed a few times since
    deadline = time.time() + 60
    while not any(e["src_ip"] in c_ips for e in w1.events("mining")):
        assert time.time() < deadline and rp.poll() is None, "no host of round 3 was alerted"
        time.sleep(0.1)
    time.sleep(4 * FLUSH)
    killed_at = time.time()
    w1.p.send_signal(signal.SIGKILL)
    w1.p.wait(timeout=30)
    rp.kill()
    rp.wait()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    # restart on the same store, replay round 2, stop cleanly
    w2 = Watch(netns, tmp_path, db, "k2")
    w2.wait_received(replay(netns, r2))
    assert w2.stop() == 0, w2.err.read_text()
    for w in (w1, w2):         # what a capture dropped cannot be compared
        dropped = [e["stats"]["capture"]["dropped"] for e in w.events("stats")]
        assert not any(dropped), f"libpcap dropped packets: {dropped}"
    watched = report(db)
    s1, s2 = scan_files(r1, catalogue), scan_files(r2, catalogue)
    sc = scan_files(c, catalogue)
    expected = {h.ip: h.to_dict() for h in merge_results([s1, s2]).hosts}
    c_hosts = {h.ip: h.to_dict() for h in sc.hosts}
    # hosts of the interrupted round: only what it sent before the kill is there
    partial = set(c_hosts)
    assert_same_hosts(expected, {ip: h for ip, h in watched.items() if ip not in partial
                                 or ip in expected}, skip=partial)
    # ... and nothing alerted more than one flush before the kill is lost
    early = {e["src_ip"] for e in w1.events("mining")
             if e["src_ip"] in partial and
             time.mktime(time.strptime(e["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
             < killed_at - FLUSH - 1}
    assert early, "the kill came before any host of the interrupted round was alerted"
    for ip in early:
        assert watched[ip]["verdict"] == "mining", ip
        assert watched[ip]["shares"]["submitted"] <= c_hosts[ip]["shares"]["submitted"] + \
            expected.get(ip, {}).get("shares", {}).get("submitted", 0)
    # the crashed run's open flows were folded in at the restart; the store is sound
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs = con.execute("SELECT id, ended FROM runs ORDER BY id").fetchall()
    assert len(runs) == 2 and all(e is not None for _i, e in runs)
    assert con.execute("SELECT count(*) FROM live").fetchone()[0] == 0


def _children(pid: int, workers: bool = True) -> list[int]:
    """The process's children (workers: only the spawned workers, not multiprocessing's
    resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    if workers:
        kids = [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_a_dead_worker_stops_the_watch_a_dead_watch_its_workers(
        netns, tcpreplay, rounds, catalogue, tmp_path):
    """--workers 2: a worker killed with SIGKILL stops the watch (exit 1, one error line
    naming it), the other worker finishes its flows, and nothing flushed before is lost;
    the watch itself killed with SIGKILL takes its workers with it."""
    from poolsniff.scan import scan_files
    db = tmp_path / "workers.db"
    w = Watch(netns, tmp_path, db, "wk", "--no-dedup", "--workers", "2")
    kids = _children(w.p.pid)
    assert len(kids) == 2, kids
    w.wait_received(replay(netns, rounds[0]))
    os.kill(kids[1], signal.SIGKILL)
    assert w.p.wait(timeout=60) == 1, w.err.read_text()
    errors = [ln for ln in w.err.read_text().splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "worker 1 stopped without finishing" in errors[0], errors
    assert not any(_alive(k) for k in kids)
    scanned = {h.ip: h.to_dict() for h in scan_files(rounds[0], catalogue, dedup=False).hosts}
    assert_same_hosts(scanned, report(db))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    w2 = Watch(netns, tmp_path, db, "wk2", "--workers", "2")
    kids = _children(w2.p.pid, workers=False)
    assert len(kids) >= 2, kids
    w2.p.send_signal(signal.SIGKILL)
    w2.p.wait(timeout=30)
    deadline = time.time() + 15
    while any(_alive(k) for k in kids):
        assert time.time() < deadline, "workers outlived their watch"
        time.sleep(0.1)
    assert_same_hosts(scanned, report(db))


def test_workers_sighup_reloads_signatures_and_reopens_alerts(netns, tcpreplay, tmp_path):
    """SIGHUP to a watch with workers: each worker reloads the signatures, the watch reopens
    the alert file (log rotation), and the next alert goes to the new file."""
    db = tmp_path / "hup.db"
    w = Watch(netns, tmp_path, db, "hup", "--workers", "2")
    w.wait_received(replay(netns, [str(PCAPS / "stratum_btc_compact.pcap")]))
    assert [e["src_ip"] for e in w.events("mining")] == ["10.1.0.10"]
    rotated = tmp_path / "rotated.json"
    w.alerts.rename(rotated)
    w.p.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while w.err.read_text().count("signatures reloaded") < 2:
        assert time.time() < deadline, w.err.read_text()
        time.sleep(0.1)
    sent = replay(netns, [str(PCAPS / "xmrig_compact.pcap")])
    deadline = time.time() + 30
    while not w.events("mining"):
        assert time.time() < deadline and sent, "no alert in the reopened file"
        time.sleep(0.1)
    assert [e["src_ip"] for e in w.events("mining")] == ["10.1.0.15"]
    assert w.stop() == 0, w.err.read_text()


def test_missing_interface_is_one_line_exit_2(tmp_path):
    r = run(sys.executable, "-m", "poolsniff", "watch", "-i", "nosuch0", "--db",
            str(tmp_path / "x.db"), check=False)
    need(os.geteuid() == 0, "as non-root the error is the permission one")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["Error: nosuch0: no such interface (list them with "
                                             "'ip link')"]


def test_no_capture_permission_is_one_line_exit_2(tmp_path):
    """Without CAP_NET_RAW (removed from the bounding set, as for an unprivileged user)."""
    import shutil
    need(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    r = run("setpriv", "--bounding-set", "-net_raw,-net_admin", sys.executable, "-m", "poolsniff",
            "watch", "-i", "lo", "--db", str(tmp_path / "x.db"), check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "lo: no permission to capture" in lines[0], r.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_drops_root_after_opening_the_interface(netns, workers):
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="poolsniff-user-", dir="/tmp"))   # reachable by nobody
    os.chown(d, 65534, 65534)
    db = d / "ev.db"
    w = Watch(netns, d, db, "user", "--user", "nobody", "--workers", str(workers))
    try:
        pids = [w.p.pid] + (_children(w.p.pid) if workers > 1 else [])
        assert len(pids) == 1 + (workers if workers > 1 else 0)
        for pid in pids:            # the watch and every capture process
            status = Path(f"/proc/{pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
            assert set(uids) == {"65534"}, (pid, uids)
        time.sleep(2 * FLUSH)
    finally:
        assert w.stop() == 0, w.err.read_text()
    st = db.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (65534, "0o600")
    assert oct(w.alerts.stat().st_mode & 0o777) == "0o600"
    shutil.rmtree(d)
