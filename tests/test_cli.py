"""The command-line contract: formats, exit statuses, one-line errors."""

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import PCAPS
from poolsniff.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["scan", "--help"], ["signatures", "--help"]])
def test_help(args):
    r = run(*args)
    assert r.exit_code == 0 and "Usage:" in r.output


def test_json_contract():
    r = run("scan", "--format", "json", str(PCAPS / "xmrig_compact.pcap"))
    assert r.exit_code == 0
    doc = json.loads(r.output)
    (h,) = doc["hosts"]
    for key in ("ip", "verdict", "dialects", "coins", "pools", "workers", "wallets", "agents", "shares",
                "hashrate", "bytes_toserver", "bytes_toclient", "first_seen", "last_seen", "evidence"):
        assert key in h
    assert set(h["shares"]) >= {"submitted", "accepted", "rejected"}
    assert set(h["hashrate"][0]) >= {"algorithm", "hs", "ci95", "shares"}
    assert {"pcap_cnt", "ts", "reason"} <= set(h["evidence"][0])
    assert "packets" in doc["stats"]


def test_jsonl_events():
    r = run("scan", "-f", "jsonl", str(PCAPS / "dns_tls_sni.pcap"))
    events = [json.loads(line) for line in r.output.splitlines()]
    kinds = {e["event_type"] for e in events}
    assert {"mining", "pool_domain", "stats"} <= kinds
    for e in events:
        assert e["timestamp"].endswith("+0000")
    mining = [e for e in events if e["event_type"] == "mining" and e["mining"]["verdict"] == "mining"]
    assert mining[0]["src_ip"] == "10.1.0.20" and mining[0]["alert"]["signature_id"] == 9100001


def test_csv_and_table():
    r = run("scan", "-f", "csv", str(PCAPS / "stratum_btc_compact.pcap"))
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("10.1.0.10,mining,BTC")
    r = run("scan", str(PCAPS / "stratum_btc_compact.pcap"))
    assert r.exit_code == 0 and "10.1.0.10" in r.output and "mining" in r.output


def test_missing_file_is_exit_2():
    r = run("scan", "/nonexistent.pcap")
    assert r.exit_code == 2 and "no such capture file" in r.output


def test_not_a_capture_is_exit_2(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"hello world, not a pcap")
    r = run("scan", str(bad))
    assert r.exit_code == 2 and "not a pcap or pcapng file" in r.output


def test_truncated_capture_scans_up_to_damage(tmp_path):
    data = (PCAPS / "xmrig_compact.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-30])
    r = subprocess.run([sys.executable, "-m", "poolsniff", "scan", "-f", "json", str(cut)],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert "truncated" not in r.stdout[:0]
    assert "last record cut short after frame" in r.stderr and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["hosts"][0]["verdict"] == "mining"
    assert doc["stats"]["anomalies"] == {"capture.truncated_record": 1}


def test_stdin(tmp_path):
    data = (PCAPS / "kawpow.pcapng").read_bytes()
    r = subprocess.run([sys.executable, "-m", "poolsniff", "scan", "-f", "json", "-"], input=data,
                       capture_output=True)
    assert r.returncode == 0
    assert json.loads(r.stdout)["hosts"][0]["ip"] == "10.1.0.12"


def test_bad_signatures_are_exit_2_with_file_and_line(tmp_path):
    (tmp_path / "x.yaml").write_text("version: 1\npools:\n  - id: a\n    name: A\n    coins: [BTC]\n"
                                     "    source: https://example.org\n    stratum: [a.example.org]\n"
                                     "    hosst: [b.example.org]\n")
    r = run("signatures", "check", "--signatures", str(tmp_path))
    assert r.exit_code == 2
    assert "x.yaml:3: unknown key 'hosst'" in r.output


def test_catalogue_size():
    r = run("signatures", "check")
    assert r.exit_code == 0
    n = int(r.output.split()[1])
    assert n >= 150


def test_jobs_gives_the_same_answer(tmp_path):
    caps = [str(PCAPS / n) for n in ("merge_part1.pcap", "merge_part2.pcap", "xmrig_compact.pcap",
                                     "kawpow.pcapng", "dns_tls_sni.pcap")]
    outs = []
    for jobs in ("1", "2", "3", "0"):
        out = tmp_path / f"j{jobs}.json"
        r = run("scan", "--jobs", jobs, "-f", "json", "-o", str(out), *caps)
        assert r.exit_code == 0
        doc = json.loads(out.read_text())
        outs.append((doc["hosts"], {k: v for k, v in doc["stats"].items() if k != "files"}))
    assert outs[0] == outs[1] == outs[2] == outs[3]
    hosts = {h["ip"]: h for h in outs[0][0]}
    assert hosts["10.3.0.10"]["shares"]["accepted"] == 18      # merged across two captures


def test_jobs_with_stdin_is_a_usage_error():
    r = run("scan", "--jobs", "2", "-")
    assert r.exit_code == 2 and "--jobs" in r.output


def test_scan_writes_the_report_document(tmp_path):
    """scan -f md / -f html: the report command's document straight from a capture (the
    same as 'scan -f json' then 'report --from' without a registry), in either language."""
    cap = str(PCAPS / "dns_over_tcp.pcap")
    md = run("scan", "-f", "md", cap)
    assert md.exit_code == 0
    assert "| Mining IPs | 2 |" in md.output and "| Suspect IPs | 1 |" in md.output
    for ip in ("10.1.0.60", "10.1.0.61", "10.1.0.53"):
        assert ip in md.output
    saved = tmp_path / "scan.json"
    assert run("scan", "-f", "json", "-o", str(saved), cap).exit_code == 0
    assert run("report", "--from", str(saved), "-f", "md").output == md.output
    page = tmp_path / "scan.html"
    r = run("scan", "-f", "html", "--lang", "zh", "-o", str(page), cap)
    assert r.exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert "10.1.0.60" in text and "pool.supportxmr.com" in text and "挖矿" in text


def test_a_directory_is_its_captures_in_time_order(tmp_path):
    """A directory (rotated captures, other files beside them) scans as its capture files in
    the order of their first packets, whatever their names; a gzip that is not a capture and
    a text file are passed over with a warning."""
    import gzip
    import shutil
    d = tmp_path / "mirror"
    (d / "a").mkdir(parents=True)
    # named so that name order (a/x2, x10.gz) is the wrong order: x10 holds the earlier packets
    shutil.copy(PCAPS / "merge_part2.pcap", d / "a" / "x2")
    with gzip.open(d / "x10.gz", "wb") as f:
        f.write((PCAPS / "merge_part1.pcap").read_bytes())
    (d / "notes.txt").write_text("not a capture\n")
    with gzip.open(d / "log.gz", "wb") as f:
        f.write(b"not a capture either\n")
    r = CliRunner().invoke(cli, ["scan", "-f", "json", str(d)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out, warn = r.stdout, r.stderr
    doc = json.loads(out)
    assert [f["name"] for f in doc["stats"]["files"]] == [str(d / "x10.gz"), str(d / "a" / "x2")]
    assert "2 files that are not captures passed over" in warn
    ordered = json.loads(run("scan", "-f", "json", str(PCAPS / "merge_part1.pcap"),
                             str(PCAPS / "merge_part2.pcap")).output)
    strip = lambda hs: [{k: v for k, v in h.items() if k != "evidence"} for h in hs]  # noqa: E731
    assert strip(doc["hosts"]) == strip(ordered["hosts"]) and doc["hosts"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("scan", str(empty))
    assert r.exit_code == 2 and "no pcap or pcapng file in it" in r.output


def test_watch_read_of_a_directory_is_a_one_line_usage_error(tmp_path):
    r = run("watch", "--read", str(tmp_path), "--db", str(tmp_path / "w.db"))
    assert r.exit_code == 2 and "a directory; watch --read takes one capture or '-'" in r.output
    assert "poolsniff scan" in r.output and not (tmp_path / "w.db").exists()


@pytest.mark.parametrize("captures", [["xmrig_compact.pcap", "ethproxy_sll.pcap", "kawpow.pcapng"],
                                      ["benign_jsonrpc.pcap"]])
def test_json_written_host_by_host_is_one_documents_dump(catalogue, captures):
    """write_json streams the hosts one at a time: its text is exactly the indented dump of
    the whole document (several hosts; none)."""
    from poolsniff import __version__
    from poolsniff.output import _host_json, dumps, write_json
    from poolsniff.scan import scan_files, traffic_json
    res = scan_files([str(PCAPS / c) for c in captures], catalogue)
    assert len(res.hosts) == (0 if len(captures) == 1 else 3)
    doc = {"hosts": [_host_json(h.to_dict()) for h in res.hosts], "stats": res.stats,
           "traffic": traffic_json(res.traffic), "poolsniff_version": __version__}
    fh = io.StringIO()
    write_json(res, fh)
    assert fh.getvalue() == dumps(doc, indent=True) + "\n"
