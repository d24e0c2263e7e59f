"""Generated captures: the exact host record for every dialect and transport variant."""

import json

import pytest
from scipy.stats import chi2

from conftest import PCAPS, scan_json

EXPECTED = json.loads((PCAPS / "expected.json").read_text())
NAMES = sorted(n for n, e in EXPECTED.items() if "client" in e and "dialect" in e and e["dialect"] != "tls")
MULTI = sorted(n for n, e in EXPECTED.items() if "hosts" in e)


def test_every_dialect_in_every_variant():
    dialects = {EXPECTED[n]["dialect"] for n in NAMES}
    assert dialects >= {"stratum-v1", "ethereumstratum-1.0.0", "eth-proxy", "stratum-kawpow",
                        "stratum-equihash", "stratum-kaspa", "xmrig", "grin", "beam",
                        "getwork-http", "coinhive-ws", "stratum-jsonrpc2.0-ws"}
    for d in dialects - {"stratum-v1"}:
        variants = [n for n in NAMES if EXPECTED[n]["dialect"] == d]
        assert any("_spaced" in n for n in variants) and any("_reordered" in n for n in variants), d


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
    if "stale" in exp:
        assert h["shares"]["stale"] == exp["stale"]
    assert stats["anomalies"] == {}
    if exp.get("difficulty"):
        assert [d["value"] for d in h["difficulty"]] == exp["difficulty"]
    if exp["work"] is None:
        assert all(r["hs"] is None for r in h["hashrate"])
        # no hashes per share where the reference does not settle them (Grin, Beam: §6.2)
        assert all(d["hashes_per_share"] is None for d in h["difficulty"]), h["difficulty"]
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


@pytest.mark.parametrize("name", MULTI)
def test_link_types_and_interfaces(name, catalogue):
    hosts, stats = scan_json([PCAPS / name], catalogue)
    exp = EXPECTED[name]["hosts"]
    assert set(hosts) == set(exp)
    for ip, e in exp.items():
        assert hosts[ip]["verdict"] == "mining"
        assert hosts[ip]["dialects"] == [e["dialect"]]
        assert hosts[ip]["coins"] == [e["coin"]]
        assert hosts[ip]["shares"]["accepted"] == e["accepted"]
        # µs and ns interfaces both give the generator's clock (2023-11-14T22:13:20Z onwards)
        assert 1_700_000_000 - 1 <= hosts[ip]["first_seen"] < 1_700_000_000 + 600
    assert stats["skipped"] == {}


def test_snaplen_cut_capture_keeps_shares(catalogue):
    """256-byte snaplen: the notify is cut, the stream skips the lost bytes and goes on."""
    hosts, stats = scan_json([PCAPS / "stratum_btc_snaplen256.pcap"], catalogue)
    h = hosts["10.1.0.23"]
    assert h["shares"] == {"submitted": 7, "accepted": 7, "rejected": 0, "stale": 0}
    assert h["hashrate"] == []          # the job (and so its work) was cut off: no estimate
    assert stats["anomalies"]["capture.snaplen_truncated"] >= 1
    assert h["bytes_toclient"] > 1000   # bytes on the wire, not the captured ones


def test_stratum_v2_handshake_shape_is_a_suspect_sign(catalogue):
    hosts, _ = scan_json([PCAPS / "stratum_v2_shape.pcap"], catalogue)
    h = hosts["10.1.0.24"]
    assert h["verdict"] == "suspect"
    assert "Stratum V2 handshake shape" in h["reasons"]
    assert "64-byte client key (frame 4), 234-byte reply (frame 5)" in h["evidence"][0]["reason"]


@pytest.mark.parametrize("reply_len,expect_sign", [(234, True), (233, False), (300, False)])
def test_stratum_v2_shape_needs_the_exact_reply(catalogue, reply_len, expect_sign):
    import hashlib

    from poolsniff.model import Segment
    from poolsniff.pipeline import Scanner
    key = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(12))
    c, s_ = b"\x0a\x00\x00\x01", b"\xcb\x00\x71\x09"
    sc = Scanner(catalogue)
    sc.begin_file("mem")
    sc._tcp(Segment(1, 1.0, 4, c, s_, 6, 40000, 3336, 0x02, 100, b"", 40))
    sc._tcp(Segment(2, 1.0, 4, s_, c, 6, 3336, 40000, 0x12, 500, b"", 40))
    sc._tcp(Segment(3, 1.1, 4, c, s_, 6, 40000, 3336, 0x18, 101, key[:64], 104))
    sc._tcp(Segment(4, 1.2, 4, s_, c, 6, 3336, 40000, 0x18, 501, key[64:64 + reply_len], 40 + reply_len))
    sc.finish_all()
    got = {h.ip: h.to_dict() for h in sc.results()}
    assert ("10.0.0.1" in got and "Stratum V2 handshake shape" in got["10.0.0.1"]["reasons"]) == expect_sign


def test_stream_counters_report_what_reassembly_skipped(catalogue):
    """The mid-stream capture holds one retransmitted 37-byte segment and no hole."""
    _, stats = scan_json([PCAPS / "xmrig_midstream_reordered.pcap"], catalogue)
    assert stats["retransmitted_bytes"] == 37 and stats["stream_gaps"] == 0
    _, cut = scan_json([PCAPS / "stratum_btc_snaplen256.pcap"], catalogue)
    assert cut["stream_gaps"] >= 1


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e.get("tunnel")])
def test_session_through_a_proxy_names_the_pool_and_the_proxy(name, expected, catalogue):
    """SOCKS5 (with user/password), SOCKS4a (login sent with the request) and HTTP CONNECT:
    the pool's name comes from the proxy request, the session inside is read like any other
    (test_host_record checks its numbers), and the evidence says which proxy carried it."""
    exp = expected[name]
    hosts, _ = scan_json([PCAPS / name], catalogue)
    h = hosts[exp["client"]]
    kind = {"socks5": "SOCKS5", "socks4a": "SOCKS4", "connect": "HTTP CONNECT"}[exp["tunnel"]]
    assert f"reached the pool through a {kind} proxy" in h["reasons"]
    reasons = [e["reason"] for e in h["evidence"]]
    assert any(r.startswith(f"{kind} tunnel to {exp['domain']}:3333 through proxy "
                            f"{exp['pool_ip']}:{exp['pool_port']} (signature supportxmr")
               for r in reasons), reasons
    assert "supportxmr" in h["signatures"]


def test_proxies_without_a_mining_protocol(expected, catalogue):
    """TLS to a pool host named only in an HTTP CONNECT is a session with the pool; TLS to an
    ordinary site through SOCKS5 is nothing; a SOCKS5 request for a pool that the proxy
    refuses makes the host a suspect, with the frame of the request."""
    exp = expected["proxies_other.pcap"]
    hosts, _ = scan_json([PCAPS / "proxies_other.pcap"], catalogue)
    for ip, domain in exp["mining"].items():
        assert hosts[ip]["verdict"] == "mining"
        assert [p["domain"] for p in hosts[ip]["pools"]] == [domain]
        assert any("learned from HTTP CONNECT request" in e["reason"] for e in hosts[ip]["evidence"])
    for ip in exp["suspects"]:
        assert hosts[ip]["verdict"] == "suspect"
        (ev,) = hosts[ip]["evidence"]
        assert "request for xmr-eu1.nanopool.org:14433" in ev["reason"] and ev["pcap_cnt"] > 0
    assert not set(exp["clean"]) & set(hosts)


def test_beam_shapes_alone_do_not_make_a_miner():
    """Beam's login (an api_key beside the method) and its 'result' answers are shapes a web
    API could send: they are evidence only with a job or a solution, which are Beam's own
    (a 32-byte input with a packed difficulty; a nonce with a solution's output)."""
    from poolsniff.dialects import Session, handle, sender_role
    from poolsniff.model import TOCLIENT, TOSERVER
    s = Session()
    handle(s, {"method": "login", "api_key": "k-123", "id": 1, "jsonrpc": "2.0"}, TOSERVER, 1, 0.0)
    handle(s, {"method": "result", "id": 1, "code": 0, "description": "ok", "jsonrpc": "2.0"},
           TOCLIENT, 2, 0.1)
    handle(s, {"method": "result", "id": 9, "code": 1, "description": "x", "jsonrpc": "2.0"},
           TOCLIENT, 3, 0.2)
    assert not any(o.data.get("proof") for o in s.out), s.out
    assert sender_role({"method": "job", "id": "1", "input": "ab" * 32, "difficulty": 5}) == "server"
    assert sender_role({"method": "solution", "id": "1", "nonce": "00ff", "output": "ab" * 104}) \
        == "client"
    handle(s, {"method": "job", "id": "7", "input": "ab" * 32, "difficulty": 5, "jsonrpc": "2.0"},
           TOCLIENT, 4, 0.3)
    assert any(o.data.get("proof") for o in s.out) and s.dialect == "beam"
    # not Beam's: a job without the 32-byte input, a solution with params, a result without code
    for msg in ({"method": "job", "id": "7", "input": "ab", "difficulty": 5},
                {"method": "solution", "params": {"nonce": "00"}, "id": 3},
                {"method": "result", "id": 3, "description": "done"}):
        assert sender_role(msg) is None, msg


def test_an_ethereum_nodes_subscriptions_are_not_mining():
    """eth_subscribe is an Ethereum node's API too (newHeads, logs, newPendingTransactions):
    only the 'newWork' subscription, and notifications that carry a job, are a miner's."""
    from poolsniff.dialects import Session, handle, sender_role
    from poolsniff.model import TOCLIENT, TOSERVER
    s = Session()
    handle(s, {"id": 1, "jsonrpc": "2.0", "method": "eth_subscribe", "params": ["newHeads"]},
           TOSERVER, 1, 0.0)
    handle(s, {"id": 2, "jsonrpc": "2.0", "method": "eth_subscribe",
               "params": ["logs", {"address": "0x8320fe7702b96808f7bbc0d4a888ed1468216cfd"}]},
           TOSERVER, 2, 0.1)
    handle(s, {"jsonrpc": "2.0", "method": "eth_subscription", "params": {
        "subscription": "0x9ce59a13059e417087c02d3236a0b1cc",
        "result": {"number": "0x1b4", "hash": "0x" + "ab" * 32, "parentHash": "0x" + "cd" * 32}}},
           TOCLIENT, 3, 0.2)
    assert s.out == [] and s.dialect is None
    assert sender_role({"id": 1, "method": "eth_subscribe", "params": ["newHeads"]}) is None
    assert sender_role({"id": 1, "method": "eth_subscribe", "params": ["newWork", "u", "p", "a"]}) \
        == "client"


def test_a_tls_server_certificate_names_the_pool_when_the_client_names_none(expected, catalogue):
    """No SNI (XMRig's default): the TLS 1.2 server's certificate, in clear, names the pool;
    a TLS 1.3 certificate is encrypted, a certificate of no pool names nothing, and bytes
    that are no certificate are an anomaly; none of those three makes a host."""
    exp = expected["tls_certificate.pcap"]
    hosts, stats = scan_json([PCAPS / "tls_certificate.pcap"], catalogue)
    assert set(hosts) == {exp["client"]}
    h = hosts[exp["client"]]
    assert h["verdict"] == "mining" and h["coins"] == ["XMR"] and h["dialects"] == ["tls"]
    assert h["pools"] == [{"ip": exp["pool_ip"], "port": exp["pool_port"], "domain": exp["domain"]}]
    reasons = [e["reason"] for e in h["evidence"]]
    assert any(r.startswith("TLS server certificate for *.supportxmr.com, no SNI") for r in reasons)
    assert any("learned from TLS certificate" in r for r in reasons)
    assert stats["anomalies"] == {exp["anomaly"]: 1}


def test_certificate_parsing_never_raises():
    """The server flight and certificate parsers on cut and damaged input: bounded, no
    exception, None where nothing can be read."""
    import random

    from poolsniff.protocols import MAX_SERVER_FLIGHT, certificate_names, server_certificate
    data = (PCAPS / "tls_certificate.pcap").read_bytes()
    rng = random.Random(4)
    for _ in range(3000):
        n = rng.randrange(0, 400)
        blob = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:
            blob = b"\x16\x03\x03" + blob
        done, der = server_certificate(blob)
        assert isinstance(done, bool)
        if der is not None:
            certificate_names(der)
        assert certificate_names(blob) is None or isinstance(certificate_names(blob), list)
    assert server_certificate(b"\x16\x03\x03\x40\x00" + b"\x00" * 100)[0] is False
    assert server_certificate(b"\x16\x03\x03\xff\xff" + b"\x0b" * MAX_SERVER_FLIGHT)[0] is True
    assert len(data) > 0


def test_a_certificate_with_a_der_quirk_still_names_its_subject():
    """Certificates in use carry DER quirks pyca/cryptography refuses in one part (a
    BasicConstraints that encodes its default, as a CA's certificate in Zeek's
    missing-intermediate trace does): every extension is then unreadable, but the
    subject's name is still read (before, the whole certificate was an anomaly)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtensionOID, NameOID

    from poolsniff.protocols import certificate_names
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pool.SupportXMR.com")])
    t0 = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(7).not_valid_before(t0)
            .not_valid_after(t0 + datetime.timedelta(days=10))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS,
                                                      b"\x30\x03\x01\x01\x00"), True)
            .sign(key, None))
    der = cert.public_bytes(Encoding.DER)
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(der).extensions      # the quirk, as the library sees it
    assert certificate_names(der) == ["pool.supportxmr.com"]
    assert certificate_names(der[:40]) is None and certificate_names(b"") is None
