"""Every configuration mistake is one line naming the file (and line, where there is one)
and the fix, with exit status 2: YAML syntax, wrong types, unknown keys with a
suggestion, overlapping prefixes, missing and unreadable files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import PCAPS, need

PS = [sys.executable, "-m", "poolsniff"]
POOL = ("version: 1\npools:\n  - id: a\n    name: A\n    coins: [BTC]\n"
        "    source: https://example.org\n    stratum: [a.example.org]\n")

SIGNATURE_CASES = [
    (POOL.replace("coins: [BTC]", "coins: [BTC"), "x.yaml:6: YAML syntax error"),
    (POOL.replace("coins: [BTC]", "coins: 5"), "x.yaml:3: pool 'a': coins must be a list"),
    (POOL + "    stratm: [b.example.org]\n",
     "x.yaml:3: unknown key 'stratm' (did you mean 'stratum'?)"),
    (POOL.replace("pools:", "pool:"), "x.yaml:1: expected a mapping with a 'pools' list"),
    (POOL + POOL.split("pools:\n")[1], "x.yaml:8: duplicate pool id 'a'"),
    (POOL.replace("a.example.org]", "a.*.example.org]"), "wildcard only allowed in the leftmost"),
]


@pytest.mark.parametrize("text, message", SIGNATURE_CASES)
def test_signature_errors(tmp_path, text, message):
    (tmp_path / "x.yaml").write_text(text, encoding="utf-8")
    for cmd in (["signatures", "check", "--signatures", str(tmp_path)],
                ["scan", "--signatures", str(tmp_path), str(PCAPS / "xmrig_compact.pcap")]):
        r = subprocess.run([*PS, *cmd], capture_output=True, text=True)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr


@pytest.mark.parametrize("args, message", [
    (["scan", "--signatures", "/nonexistent", "x.pcap"], "/nonexistent: signature directory not found"),
    (["scan", "/nonexistent.pcap"], "/nonexistent.pcap: no such capture file"),
    (["report", "--from", "/nonexistent.json"], "/nonexistent.json: cannot read"),
    (["report", "--from", "{scan}", "--institutions", "/nonexistent.yaml"],
     "/nonexistent.yaml: no such institution registry"),
    (["report", "--from", "{scan}", "--institutions", "{tmp}"],
     "is a directory, not an institution registry"),
    (["report", "--from", "{scan}", "--institutions", "{reg_types}"],
     "reg.yaml:2: institution has no 'cidrs' list"),
    (["report", "--from", "{scan}", "--institutions", "{reg_name}"], "reg2.yaml:2: institution has no name"),
    (["report", "--from", "{scan}", "--efficiency", "{bad_eff}"],
     "eff.yaml:1: cannot read the efficiency table: expected the node content"),
    (["report", "--from", "{scan}", "--since", "yesterday"], "is not a time"),
    (["watch", "--read", str(PCAPS / "xmrig_compact.pcap"), "--db", "/nonexistent/dir/ev.db"],
     "/nonexistent/dir/ev.db.lock: cannot create the store's lock file"),
    (["watch", "--read", str(PCAPS / "xmrig_compact.pcap"), "--user", "no-such-user-x",
      "--db", "{tmp}/w.db"], "--user no-such-user-x: no such user"),
])
def test_file_and_option_errors(tmp_path, args, message):
    scan = tmp_path / "scan.json"
    subprocess.run([*PS, "scan", "-f", "json", "-o", str(scan), str(PCAPS / "xmrig_compact.pcap")],
                   check=True)
    (tmp_path / "reg.yaml").write_text("institutions:\n  - name: A\n    category: university\n"
                                      "    cidrs: 5\n", encoding="utf-8")
    (tmp_path / "reg2.yaml").write_text("institutions:\n  - category: university\n"
                                       "    cidrs: [10.0.0.0/8]\n", encoding="utf-8")
    (tmp_path / "eff.yaml").write_text("efficiency: [", encoding="utf-8")
    subs = {"{scan}": str(scan), "{tmp}": str(tmp_path), "{reg_types}": str(tmp_path / "reg.yaml"),
            "{reg_name}": str(tmp_path / "reg2.yaml"), "{bad_eff}": str(tmp_path / "eff.yaml")}
    argv = [subs.get(a, a.replace("{tmp}", str(tmp_path))) for a in args]
    r = subprocess.run([*PS, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert message in lines[-1], r.stderr
    assert len(lines) == 1 or lines[0].startswith("Usage:"), r.stderr


def test_unreadable_files(tmp_path):
    """Root without CAP_DAC_OVERRIDE obeys file modes, as an ordinary user does."""
    need(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    cap = tmp_path / "c.pcap"
    cap.write_bytes((PCAPS / "xmrig_compact.pcap").read_bytes())
    reg = tmp_path / "reg.yaml"
    reg.write_text("institutions: []\n")
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    (sigs / "x.yaml").write_text(POOL)
    for f in (cap, reg, sigs / "x.yaml"):
        f.chmod(0)
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"]
    scan = tmp_path / "s.json"
    subprocess.run([*PS, "scan", "-f", "json", "-o", str(scan), str(PCAPS / "xmrig_compact.pcap")],
                   check=True)
    for args, message in ((["scan", str(cap)], "c.pcap: cannot open: Permission denied"),
                          (["report", "--from", str(scan), "--institutions", str(reg)],
                           "reg.yaml: cannot read"),
                          (["signatures", "check", "--signatures", str(sigs)], "x.yaml: cannot read")):
        r = subprocess.run([*drop, *PS, *args], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr
