"""Generated captures: the exact host record for every dialect and transport variant."""

import pytest
from scipy.stats import chi2

from conftest import PCAPS, scan_json

NAMES = ["stratum_btc_compact.pcap", "stratum_btc_spaced_crlf_qinq.pcap", "stratum_btc_gz.pcap.gz",
         "ethstratum_ipv6.pcap", "ethproxy_sll.pcap", "kawpow.pcapng", "equihash_ns.pcap",
         "kaspa_vlan.pcap", "xmrig_compact.pcap", "xmrig_midstream_reordered.pcap", "grin.pcap",
         "getwork_http.pcap", "coinhive_websocket.pcap"]


@pytest.mark.parametrize("name", NAMES)
def test_host_record(name, expected, catalogue):
    exp = expected[name]
    hosts, stats = scan_json([PCAPS / name], catalogue)
    assert set(hosts) == {exp["client"]}
    h = hosts[exp["client"]]
    assert h["verdict"] == "mining"
    assert h["dialects"] == [exp["dialect"]]
    assert h["coins"] == [exp["coin"]]
    assert [(p["ip"], p["port"]) for p in h["pools"]] == [(exp["pool_ip"], exp["pool_port"])]
    if exp.get("domain"):
        assert h["pools"][0]["domain"] == exp["domain"]
    if exp["worker"]:
        assert exp["worker"] in h["workers"]
    if exp["wallet"]:
        assert [w["address"] for w in h["wallets"]] == [exp["wallet"]]
        assert h["wallets"][0]["coin"] == exp["coin"]
    assert h["agents"] == ([exp["agent"]] if exp["agent"] else [])
    assert h["shares"]["submitted"] == exp["submitted"]
    assert h["shares"]["accepted"] == exp["accepted"]
    assert h["shares"]["rejected"] == exp["rejected"]
    assert stats["anomalies"] == {}
    if exp["work"] is None:
        assert all(r["hs"] is None for r in h["hashrate"])
        return
    (r,) = h["hashrate"]
    assert r["algorithm"] == exp["algorithm"]
    n, window, work = exp["n"], exp["window"], exp["work"]
    # the textbook estimate for constant difficulty: N * W / T, with Garwood's exact interval
    assert r["shares"] == n
    assert r["hs"] == pytest.approx(n * work / window, rel=1e-6)  # pcap timestamps are rounded to µs
    assert r["ci95"][0] == pytest.approx(chi2.ppf(0.025, 2 * n) / 2 * work / window, rel=1e-6)  # pcap timestamps are rounded to µs
    assert r["ci95"][1] == pytest.approx(chi2.ppf(0.975, 2 * n + 2) / 2 * work / window, rel=1e-6)  # pcap timestamps are rounded to µs
    if exp.get("reported"):
        lo, hi = exp["reported"]
        assert r["reported"]["min_hs"] == lo and r["reported"]["max_hs"] == hi


def test_dns_and_sni(expected, catalogue):
    exp = expected["dns_tls_sni.pcap"]
    hosts, _ = scan_json([PCAPS / "dns_tls_sni.pcap"], catalogue)
    miner = hosts[exp["client"]]
    assert miner["verdict"] == "mining"
    assert miner["pools"] == [{"ip": exp["pool_ip"], "port": 443, "domain": exp["domain"]}]
    assert miner["coins"] == ["XMR"] and "supportxmr" in miner["signatures"]
    # the resolver that forwarded the lookup and the web-site visitor are only suspects
    for ip in exp["suspects"]:
        assert hosts[ip]["verdict"] == "suspect"
    reasons = " ".join(e["reason"] for e in miner["evidence"])
    assert "TLS ClientHello SNI pool.supportxmr.com" in reasons and "DNS answer" in reasons


def test_benign_jsonrpc_is_not_mining(catalogue):
    hosts, stats = scan_json([PCAPS / "benign_jsonrpc.pcap"], catalogue)
    assert hosts == {}
    assert stats["json_messages"] >= 5


def test_evidence_points_to_frames(catalogue):
    hosts, _ = scan_json([PCAPS / "xmrig_compact.pcap"], catalogue)
    ev = hosts["10.1.0.15"]["evidence"]
    first = ev[0]
    assert first["pcap_cnt"] == 4 and first["dir"] == "toserver" and "login" in first["reason"]
    assert all(e["pcap_filename"].endswith("xmrig_compact.pcap") for e in ev)
