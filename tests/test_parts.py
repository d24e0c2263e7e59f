"""--jobs: N workers, each taking the flows whose 5-tuple hash falls to it, merge into exactly
the answer of one scanner — on every capture of the suite, by either path, and end to end."""

import json

import pytest

from conftest import CAPTURES, PCAPS
from poolsniff.pipeline import pipeline_gc
from poolsniff.scan import _scan, merge_parts, scan_files, scan_parallel



def _norm(result):
    doc = json.loads(json.dumps(result.to_dict(), default=str))
    events = sorted(json.dumps(e, sort_keys=True, default=str) for e in result.anomalies + result.domains)
    return doc["hosts"], doc["stats"], doc["traffic"], events


def _parts(paths, catalogue, n, fast=True):
    with pipeline_gc():
        parts = [_scan(paths, catalogue, None, fast, None, (k, n)) for k in range(n)]
    return merge_parts(parts, paths)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_parts_merge_into_one_scan(path, catalogue):
    one = _norm(scan_files([str(path)], catalogue))
    for n in (2, 3):
        assert _norm(_parts([str(path)], catalogue, n)) == one, n


def test_parts_by_the_per_packet_path(catalogue):
    paths = [str(PCAPS / n) for n in ("merge_part1.pcap", "merge_part2.pcap", "dns_tls_sni.pcap",
                                      "xmrig_midstream_reordered.pcap", "getwork_http.pcap")]
    one = _norm(scan_files(paths, catalogue, fast=False))
    assert _norm(_parts(paths, catalogue, 3, fast=False)) == one
    assert _norm(_parts(paths, catalogue, 2, fast=True)) == one


def test_parts_share_what_dns_teaches(catalogue):
    """A pool address learned from a DNS answer one worker owns counts for a session another
    worker owns: the answer must not be lost to the split."""
    path = str(PCAPS / "dns_tls_sni.pcap")
    one = scan_files([path], catalogue)
    assert any("learned from DNS" in e["reason"] for h in one.hosts for e in h.evidence) or one.hosts
    for n in (2, 3, 5):
        assert _norm(_parts([path], catalogue, n)) == _norm(one)


def test_scan_parallel_is_scan_files(catalogue):
    """Through worker processes: several captures as one observation, one large file split."""
    paths = [str(PCAPS / n) for n in ("merge_part1.pcap", "merge_part2.pcap", "xmrig_compact.pcap",
                                      "kawpow.pcapng", "dns_tls_sni.pcap")]
    one = _norm(scan_files(paths, catalogue))
    assert _norm(scan_parallel(paths, None, 2)) == one
    big = max(CAPTURES, key=lambda p: p.stat().st_size)
    assert _norm(scan_parallel([str(big)], None, 3)) == _norm(scan_files([str(big)], catalogue))


def test_parts_share_the_work_of_copied_sessions(tmp_path, catalogue):
    """Flows go to workers by the hash's high bits: by its low bits (h % n) every copy of a
    session whose addresses differ only above the lowest bits fell to the same worker (40
    ethminer hosts: 97% of the messages to one of two workers, --jobs 2 no faster)."""
    import subprocess
    import sys

    from conftest import PUBLIC, ROOT
    out = tmp_path / "miners.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_sessions_pcap.py"),
                    str(PUBLIC / "ndpi" / "2018-c6b427c-ethereum.pcap"), "--copies", "40",
                    "--out", str(out)], check=True, capture_output=True)
    for n in (2, 3, 4):
        with pipeline_gc():
            parts = [_scan([str(out)], catalogue, None, True, None, (k, n)) for k in range(n)]
        msgs = [p.stats["json_messages"] for p in parts]
        assert min(msgs) > 0.5 * sum(msgs) / n, (n, msgs)
        assert _norm(merge_parts(parts, [str(out)])) == _norm(scan_files([str(out)], catalogue))


def test_a_part_must_be_one_of_n(catalogue):
    from poolsniff.pipeline import Scanner
    with pytest.raises(ValueError):
        Scanner(catalogue, part=(2, 2))


def test_progress_advances_through_a_file(catalogue, monkeypatch):
    """The progress bar's feed: bytes read so far, rising block by block to the file's size
    (the mapped-file reader reported the whole size at once), for one core and for --jobs."""
    import os

    from poolsniff.sources import pcapfile
    monkeypatch.setattr(pcapfile, "BLOCK_BYTES", 20_000)
    big = max((p for p in CAPTURES if p.suffix == ".pcap"), key=lambda p: p.stat().st_size)
    size = os.path.getsize(big)
    seen = []
    scan_files([str(big)], catalogue, progress=seen.append)
    assert len(set(seen)) >= 5 and seen == sorted(seen) and seen[0] < size / 2
    assert size - 64 <= seen[-1] <= size          # this capture ends in a cut-short record
    seen2 = []
    scan_parallel([str(big)], None, 2, progress=seen2.append)
    assert seen2 == sorted(seen2) and seen2[-1] == seen[-1]
    # several captures, a small one first: the count runs on over all of them
    small = str(PCAPS / "xmrig_compact.pcap")
    seen3 = []
    scan_files([small, str(big)], catalogue, progress=seen3.append)
    assert seen3 == sorted(seen3) and seen3[-1] == os.path.getsize(small) + seen[-1]


def test_parts_drop_the_same_mirror_copies(tmp_path, catalogue):
    """Every worker marks duplicates over all the packets (not only its own flows), so a
    mirrored feed split among workers counts each copy once, as one scanner does; by both
    paths, and with dedup off."""
    from test_dedup import _doubled, _routed
    paths = []
    for n in ("xmrig_compact.pcap", "dns_tls_sni.pcap", "getwork_http.pcap"):
        paths.append(str(_doubled(PCAPS / n, tmp_path / f"span-{n}", lambda fr, i: _routed(fr))))
    for fast in (True, False):
        one = _norm(scan_files(paths, catalogue, fast=fast))
        assert one[1]["duplicates"] > 50
        assert _norm(_parts(paths, catalogue, 3, fast=fast)) == one
    with pipeline_gc():
        parts = [_scan(paths, catalogue, None, True, None, (k, 2), dedup=False) for k in range(2)]
    assert _norm(merge_parts(parts, paths)) == _norm(scan_files(paths, catalogue, dedup=False))
