"""Every capture of shared/pcaps/public checked against its truth.json."""

import json

import pytest

from conftest import PUBLIC, scan_json

TRUTH = json.loads((PUBLIC / "truth.json").read_text()) if (PUBLIC / "truth.json").exists() else {}
if not TRUTH:
    pytest.fail(f"public corpus not found at {PUBLIC} (set POOLSNIFF_PUBLIC_PCAPS)", pytrace=False)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_capture_matches_truth(name, catalogue):
    truth = TRUTH[name]
    hosts, stats = scan_json([PUBLIC / name], catalogue)
    mining = {ip for ip, h in hosts.items() if h["verdict"] == "mining"}
    if truth["mining"]:
        expected = {m["ip"] for m in truth["miners"]}
        assert expected <= mining, f"missed miners {expected - mining}"
        for m in truth["miners"]:
            h = hosts[m["ip"]]
            if m.get("coin") in ("BTC", "ETH", "XMR", "ZEC"):
                assert m["coin"] in h["coins"] or not h["coins"] and m.get("activity") == "mid-session"
            for w in m.get("workers", []):
                if not w.startswith(("http-basic:", "url:")) and m.get("pool") != "many":
                    assert w in h["workers"]
            for e in h["evidence"]:
                assert e["pcap_cnt"] >= 0 and "reason" in e
    else:
        assert not mining, f"false positive on benign capture: {mining}"
    assert stats["packets"] > 0


def _host(name, ip, catalogue):
    hosts, _ = scan_json([PUBLIC / name], catalogue)
    return hosts[ip]


@pytest.mark.parametrize("name,ip", [
    ("ndpi/mining.pcapng", "192.168.2.92"),                       # XMR, 30 shares
    ("ndpi/mining.pcapng", "192.168.2.148"),                      # ZEC, 46 shares
    ("ndpi/2018-c6b427c-ethereum.pcap", "192.168.2.92"),          # ETH, 10 shares
    ("takeshi-cryptominingdetector/miner-e52b224.pcap", "10.0.0.101"),
    ("nesfit-di-cryptomining/zec-eu.suprnova.cc.pcapng", "147.229.13.222"),
])
def test_hashrate_agrees_with_accepted_work(name, ip, catalogue):
    """Within ±15% of Σ W_i / T implied by the accepted shares (vardiff included)."""
    h = _host(name, ip, catalogue)
    rates = [r for r in h["hashrate"] if r["hs"]]
    assert rates
    for r in rates:
        assert r["hs_from_work"] == pytest.approx(r["hs"], rel=0.15)
        lo, hi = r["ci95"]
        assert lo < r["hs"] < hi


@pytest.mark.parametrize("name,ip", [
    ("ndpi/2018-c6b427c-ethereum.pcap", "192.168.2.92"),
    ("nesfit-di-cryptomining/eth-eu1.nanopool.org.pcapng", "147.229.13.222"),
])
def test_interval_contains_miner_reported_rate(name, ip, catalogue):
    h = _host(name, ip, catalogue)
    (r,) = [r for r in h["hashrate"] if r.get("reported")]
    lo, hi = r["ci95"]
    assert lo <= r["reported"]["mean_hs"] <= hi


def test_interval_width_follows_share_count(catalogue):
    few = _host("nesfit-di-cryptomining/eth-eu1.nanopool.org.pcapng", "147.229.13.222", catalogue)
    many = _host("ndpi/mining.pcapng", "192.168.2.148", catalogue)
    (f,) = [r for r in few["hashrate"] if r["hs"]]
    (m,) = [r for r in many["hashrate"] if r["hs"]]
    assert f["ci95"][1] / f["hs"] > 3 * (m["ci95"][1] / m["hs"])
