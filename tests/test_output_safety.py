"""Attacker-controlled strings (worker names, agents: the miner writes them) in every output:
no terminal escape reaches the analyst's terminal, no formula reaches a spreadsheet, no
markup breaks a Markdown table or an HTML page, JSON stays valid."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import abuse  # noqa: E402

PS = [sys.executable, "-m", "poolsniff"]
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2", "@SUM(A1)",
           "\x1b[2J\x1b]0;owned\x07hidden", "a|b\nc\r\td", "<script>alert(1)</script>",
           "[bold]markup[/bold]", "` **x** _y_ [l](http://e)"]


@pytest.fixture(scope="module")
def hostile_capture(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    p = d / "hostile.pcap"

    def frames():
        for i, w in enumerate(HOSTILE):
            s = abuse._Session(bytes([10, 66, 0, 1]), 43000 + i)
            yield from abuse._hello(s, json.dumps(w)[1:-1])      # JSON-escaped inside the line
        # a host whose only worker is a formula: it starts its CSV cell
        yield from abuse._hello(abuse._Session(bytes([10, 66, 0, 2]), 44000),
                                json.dumps(HOSTILE[0])[1:-1])
    abuse.write(p, frames())
    scan = d / "scan.json"
    r = subprocess.run([*PS, "scan", "-f", "json", "-o", str(scan), str(p)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(scan.read_text())
    assert set(HOSTILE) <= set(doc["hosts"][0]["workers"])      # they really are in the data
    return p, scan


def run(*args: str) -> str:
    r = subprocess.run([*PS, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_terminal_table_shows_controls_escaped(hostile_capture):
    p, scan = hostile_capture
    for out in (run("scan", str(p)), run("report", "--from", str(scan))):
        assert "\x1b" not in out and "\x07" not in out
    out = run("scan", str(p))               # workers sort by code point: the ESC one first
    assert "\\x1b[2J" in out                      # visible, harmless


def test_csv_has_no_formula_cells(hostile_capture):
    p, scan = hostile_capture
    for text in (run("scan", "-f", "csv", str(p)), run("report", "--from", str(scan), "-f", "csv")):
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        for row in rows:
            for cell in row:
                assert not cell or cell[0] not in "=+-@\t\r\n", cell
        assert any("'=HYPERLINK" in c for row in rows for c in row)


def test_markdown_rows_stay_rows(hostile_capture):
    _p, scan = hostile_capture
    md = run("report", "--from", str(scan), "-f", "md")
    assert "<script>" not in md
    ip_rows = [ln for ln in md.splitlines() if ln.startswith("| 10.66.0.1 |")]
    assert len(ip_rows) == 1
    header = next(ln for ln in md.splitlines() if ln.startswith("| IP |"))
    # unescaped pipes would add cells
    assert ip_rows[0].replace("\\|", "").count("|") == header.count("|")


def test_html_and_json_stay_valid(hostile_capture):
    p, scan = hostile_capture
    page = run("report", "--from", str(scan), "-f", "html")
    assert "<script" not in page and "&lt;script&gt;" in page
    doc = json.loads(run("report", "--from", str(scan), "-f", "json"))
    assert set(HOSTILE) <= set(doc["hosts"][0]["workers"])
    for line in run("scan", "-f", "jsonl", str(p)).splitlines():
        json.loads(line)
