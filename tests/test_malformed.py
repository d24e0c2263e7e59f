"""Damaged captures (pcaps/make_malformed.py): each class of damage ends in the documented
exit status and the right counted anomaly or decode skip, and what is intact is still found.
Then: no traceback reaches a user for any capture, registry or signature file of the suite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import PCAPS, PUBLIC, ROOT

MAL = PCAPS / "malformed"
EXPECTED = json.loads((MAL / "expected.json").read_text())
PS = [sys.executable, "-m", "poolsniff"]


def test_corpus_is_current(tmp_path):
    """The committed corpus is what the generator writes."""
    out = subprocess.run([sys.executable, str(PCAPS / "make_malformed.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in MAL.iterdir())
    for name in made:
        assert (tmp_path / name).read_bytes() == (MAL / name).read_bytes(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_damage_is_contained(name):
    exp = EXPECTED[name]
    for fast in ("", "--jobs=2"):          # the batch path, and worker processes
        args = [*PS, "scan", "-f", "json", str(MAL / name)] + ([fast] if fast else [])
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)   # a hang fails
        assert "Traceback" not in r.stderr
        assert r.returncode == exp["exit"], r.stderr
        if exp["exit"] == 2:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and exp["error"] in lines[0]
            continue
        doc = json.loads(r.stdout)
        st = doc["stats"]
        if "anomaly" in exp:
            assert st["anomalies"].get(exp["anomaly"], 0) >= 1, st["anomalies"]
        if "skipped" in exp:
            assert st["skipped"].get(exp["skipped"], 0) >= 1, st["skipped"]
        if "frames" in exp:
            assert st["files"][0]["frames"] == exp["frames"]
        miners = [h for h in doc["hosts"] if h["verdict"] == "mining"]
        assert bool(miners) == exp["miner"], doc["hosts"]
        if exp.get("worker"):
            # the forged retransmission did not replace what was delivered first
            assert exp["worker"] in miners[0]["workers"]
            assert not any("XX" in w for w in miners[0]["workers"])


def test_fast_and_plain_paths_agree_on_damage(catalogue):
    from poolsniff.scan import scan_files
    for name, exp in sorted(EXPECTED.items()):
        if exp["exit"] != 0:
            continue
        a = scan_files([str(MAL / name)], catalogue, fast=True)
        b = scan_files([str(MAL / name)], catalogue, fast=False)
        assert [h.to_dict() for h in a.hosts] == [h.to_dict() for h in b.hosts], name
        assert a.stats["skipped"] == b.stats["skipped"], name
        assert a.stats["anomalies"] == b.stats["anomalies"], name


def test_no_traceback_for_any_input_of_the_suite(tmp_path):
    """Every capture the suite holds (generated, damaged, public) and every config-like
    file, given to every command that reads it: an answer or a one-line error, never a
    traceback."""
    captures = sorted(PCAPS.glob("*.pcap*")) + sorted(MAL.glob("*.pcap*")) + \
        sorted(PUBLIC.rglob("*.pcap*"))
    # scan them all in one process (fast) and each damaged one alone
    r = subprocess.run([*PS, "scan", "-f", "jsonl", "-o", str(tmp_path / "all.jsonl"),
                        *[str(c) for c in captures if c.stat().st_size > 0
                          and not c.name.startswith(("bad_magic", "empty"))]],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    for line in (tmp_path / "all.jsonl").read_text().splitlines():
        json.loads(line)
    # non-capture files where a capture, registry, signature directory or store is expected
    junk = [PCAPS / "expected.json", ROOT / "README.md", ROOT / "signatures" / "pools.yaml"]
    for f in junk:
        for args in (["scan", str(f)], ["report", "--from", str(f)],
                     ["report", "--from", str(tmp_path / "none.json"), "--institutions", str(f)],
                     ["report", "--db", str(f)], ["signatures", "check", "--signatures", str(f.parent)],
                     ["watch", "--read", str(f), "--db", str(tmp_path / "w.db")]):
            r = subprocess.run([*PS, *args], capture_output=True, text=True, cwd=tmp_path)
            assert "Traceback" not in r.stderr, (args, r.stderr[-2000:])
            assert r.returncode in (0, 2), (args, r.returncode, r.stderr)
            if r.returncode == 2:
                assert len(r.stderr.strip().splitlines()) == 1 or r.stderr.startswith("Usage:"), \
                    (args, r.stderr)
