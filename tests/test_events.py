"""Every eve-style event poolsniff writes validates against the shipped schema."""

import json
from pathlib import Path

import jsonschema
import pytest

import poolsniff
from conftest import PCAPS, PUBLIC
from poolsniff.output import events
from poolsniff.scan import scan_files

SCHEMA = json.loads((Path(poolsniff.__file__).parent / "schema" / "event.schema.json").read_text())


@pytest.mark.parametrize("paths", [
    [PCAPS / "dns_tls_sni.pcap"],
    [PCAPS / "coinhive_websocket_reordered.pcap", PCAPS / "stratum_btc_midstream.pcap"],
    [PUBLIC / "zeek-cryptomining" / "coinhive.pcap"],
    [PUBLIC / "benign" / "suricata-verify__pgsql-5000-query-results.pcap"],   # truncated: anomaly
])
def test_events_validate(paths, catalogue):
    res = scan_files([str(p) for p in paths], catalogue)
    evs = events(res)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for ev in evs:
        errors = list(validator.iter_errors(json.loads(json.dumps(ev))))
        assert not errors, (ev["event_type"], errors[0].message)
    assert evs[-1]["event_type"] == "stats"
