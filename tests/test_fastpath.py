"""The batch fast path gives exactly the plain per-packet path's answer, on every capture."""

import json

import pytest

from conftest import PCAPS, PUBLIC
from poolsniff.scan import scan_files

CAPTURES = sorted([p for p in PCAPS.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz"))]
                  + [p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng")])


def _doc(path, catalogue, fast):
    res = scan_files([str(path)], catalogue, fast=fast)
    doc = json.loads(json.dumps(res.to_dict(), default=str))
    return doc, res.anomalies, res.domains


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_equals_plain(path, catalogue):
    fast, fast_anom, fast_dom = _doc(path, catalogue, True)
    plain, plain_anom, plain_dom = _doc(path, catalogue, False)
    assert fast["hosts"] == plain["hosts"]
    assert fast["stats"] == plain["stats"]
    assert fast_dom == plain_dom
    assert sorted(map(repr, fast_anom)) == sorted(map(repr, plain_anom))


def test_suite_covers_both_paths():
    assert len(CAPTURES) > 100
