"""``poolsniff report``: the institution registry, the sweep summary's numbers (asserted
exactly against the host records), a province-scale store, every format in both
languages, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import PCAPS, PUBLIC, ROOT, install_debian, need

PS = [sys.executable, "-m", "poolsniff"]
ARTIFACTS = ROOT / "tests" / "artifacts"


def ps(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PS, *args], capture_output=True, text=True, **kw)


REGISTRY = """\
institutions:
  - name: 南京某大学
    category: university
    city: 南京
    cidrs: [10.1.0.0/28]
  - name: 苏州某公司
    category: enterprise
    city: 苏州
    cidrs: [10.1.0.16/28]
  - name: 徐州某局            # less specific: only what the /28s leave
    category: government
    city: 徐州
    cidrs: [10.1.0.0/16]
  - name: 某网吧
    category: internet_cafe
    city: 苏州
    cidrs: [10.2.0.0/24]
  - name: 某数据中心
    category: datacenter
    city: 南京
    cidrs: [2001:db8::/32]
    contact: 张三 025-0000
"""


def _most_specific(ip: str, reg: dict) -> dict | None:
    """An independent (linear) look-up to check the registry's prefix tables against."""
    a = ipaddress.ip_address(ip)
    best, best_len = None, -1
    for inst in reg["institutions"]:
        for c in inst["cidrs"]:
            n = ipaddress.ip_network(c)
            if a.version == n.version and a in n and n.prefixlen > best_len:
                best, best_len = inst, n.prefixlen
    return best


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path, dict]:
    d = tmp_path_factory.mktemp("report")
    scan = d / "scan.json"
    r = ps("scan", "--jobs", "2", "-f", "json", "-o", str(scan),
           *sorted(str(p) for p in PCAPS.glob("*.pcap*")))
    assert r.returncode == 0, r.stderr
    reg = d / "reg.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    return scan, reg, json.loads(scan.read_text())


def report_json(*args: str) -> dict:
    r = ps("report", *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_summary_numbers_are_exact(generated):
    scan, reg_path, doc = generated
    reg = yaml.safe_load(REGISTRY)
    rep = report_json("--from", str(scan), "--institutions", str(reg_path))
    s = rep["summary"]
    hosts = doc["hosts"]
    mining = [h for h in hosts if h["verdict"] == "mining"]
    assert s["mining_ips"] == len(mining) == 52
    assert s["suspect_ips"] == sum(h["verdict"] == "suspect" for h in hosts) == 6
    # categories and cities, from the independent look-up
    cats: dict[str, int] = {}
    cities: dict[str, int] = {}
    for h in mining:
        inst = _most_specific(h["ip"], reg)
        cats[inst["category"] if inst else "unregistered"] = \
            cats.get(inst["category"] if inst else "unregistered", 0) + 1
        cities[inst["city"] if inst else "unregistered"] = \
            cities.get(inst["city"] if inst else "unregistered", 0) + 1
    assert s["ips_by_category"] == cats == {"enterprise": 11, "university": 6, "government": 4,
                                            "internet_cafe": 3, "unregistered": 27, "datacenter": 1}
    assert s["ips_by_city"] == cities == {"苏州": 14, "南京": 7, "徐州": 4, "unregistered": 27}
    assert s["institutional_share"] == pytest.approx(21 / 52)
    # hashrate: per algorithm, the sum of the hosts' estimates, inside its interval
    per_algo: dict[str, list[float]] = {}
    for h in mining:
        for r in h["hashrate"]:
            if r["hs"] is not None:
                per_algo.setdefault(r["algorithm"], []).append(r["hs"])
    assert [r["algorithm"] for r in s["hashrate"]] == sorted(per_algo)
    for r in s["hashrate"]:
        total = sum(per_algo[r["algorithm"]])
        assert r["hs"] == pytest.approx(total, rel=1e-9)
        assert r["ci95"][0] <= total <= r["ci95"][1]
        assert r["hosts"] == len(per_algo[r["algorithm"]])
    # energy: hashrate x the cited efficiency x 24 h; algorithms without one say so
    eff = yaml.safe_load((ROOT / "signatures" / "energy" / "efficiency.yaml").read_text())
    units = {"J/TH": 1e-12, "J/MH": 1e-6, "W per kH/s": 1e-3}
    table = {a: e for e in eff["efficiency"] for a in e["algorithms"]}
    for r, en in zip(s["hashrate"], s["energy_kwh_per_day"]):
        assert en["algorithm"] == r["algorithm"]
        e = table.get(r["algorithm"])
        if e is None:
            assert en["kwh"] is None and "no cited efficiency" in en["source"]
        else:
            assert en["kwh"] == pytest.approx(r["hs"] * e["central"] * units[e["unit"]] * 24 / 1000)
            assert en["source"] == e["source"]
    assert {e["algorithm"] for e in s["energy_kwh_per_day"] if e["kwh"] is None} == \
        {"equihash", "kawpow", "kheavyhash", "cn/r"}     # the reference cites none for these
    # traffic: every byte sent to a pool, over the observation window
    start = min(h["first_seen"] for h in hosts)
    end = max(h["last_seen"] for h in hosts)
    to_pools = sum(h["bytes_toserver"] for h in mining)
    tr = s["pool_traffic_mbps"]
    assert tr["bytes_to_pools"] == to_pools
    assert tr["mean"] == pytest.approx(to_pools * 8 / (end - start) / 1e6)
    assert tr["bytes_from_pools"] == sum(h["bytes_toclient"] for h in mining)
    assert 0 < tr["peak_5min"] and tr["peak_5min_start"] in [b[0] for b in doc["traffic"]["bins"]]
    # coins and pools
    coins: dict[str, int] = {}
    for h in mining:
        for c in h["coins"]:
            coins[c] = coins.get(c, 0) + 1
    assert s["coins"] == dict(sorted(coins.items(), key=lambda x: (-x[1], x[0])))
    xmr_cities: dict[str, int] = {}
    for h in mining:
        if "XMR" in h["coins"]:
            inst = _most_specific(h["ip"], reg)
            city = inst["city"] if inst else "unregistered"
            xmr_cities[city] = xmr_cities.get(city, 0) + 1
    assert s["top_cities_by_coin"]["XMR"] == \
        [[c, n] for c, n in sorted(xmr_cities.items(), key=lambda x: (-x[1], x[0]))]
    # institutions: those with mining or suspect IPs, most mining IPs first
    names = [i["name"] for i in rep["institutions"]]
    assert names == ["苏州某公司", "南京某大学", "徐州某局", "某网吧", "某数据中心"]
    by = {i["name"]: i for i in rep["institutions"]}
    # what the /28s leave: a miner behind proxies, a refused proxy request, a DNS resolver,
    # the miners of the DNS-over-TCP capture
    assert by["徐州某局"]["mining_ips"] == ["10.1.0.40", "10.1.0.43", "10.1.0.60", "10.1.0.61"]
    assert by["徐州某局"]["suspect_ips"] == ["10.1.0.45", "10.1.0.53"]
    assert by["徐州某局"]["evidence_level"] == "protocol"
    assert by["南京某大学"]["ips"] == [f"10.1.0.{i}" for i in range(10, 16)]
    assert by["某数据中心"]["ips"] == ["2001:db8::10"] and by["某数据中心"]["contact"]
    for inst in rep["institutions"]:
        mine = [h for h in hosts if h["ip"] in inst["ips"]]
        assert inst["coins"] == sorted({c for h in mine for c in h["coins"]})
        assert inst["category"] == _most_specific(inst["ips"][0], reg)["category"]
    # every host carries its institution (or null)
    for h in rep["hosts"]:
        inst = _most_specific(h["ip"], reg)
        assert (h["institution"] or {}).get("name") == (inst["name"] if inst else None)


def _csum_fold(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def _csum_update(old_sum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 incremental checksum update for 16-bit words replaced in the summed data."""
    x = ~old_sum & 0xFFFF
    for i in range(0, len(old), 2):
        x += (~int.from_bytes(old[i:i + 2], "big")) & 0xFFFF
        x += int.from_bytes(new[i:i + 2], "big")
    return ~_csum_fold(x) & 0xFFFF


def move_addresses(src: Path, dst: Path, old: bytes, new: bytes) -> int:
    """Copy a classic Ethernet/IPv4 pcap, moving addresses under the /16 ``old`` into ``new``
    and updating the IP and TCP/UDP checksums; every other byte (and the frame's padding,
    which tcprewrite folds into the payload) stays as captured."""
    import dpkt
    moved = 0
    with src.open("rb") as fi, dst.open("wb") as fo:
        w = dpkt.pcap.Writer(fo, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in dpkt.pcap.Reader(fi):
            b = bytearray(buf)
            if len(b) >= 34 and b[12:14] == b"\x08\x00":
                ihl = (b[14] & 15) * 4
                for at in (26, 30):
                    if b[at:at + 2] == old:
                        was = bytes(b[at:at + 4])
                        b[at:at + 2] = new
                        now = bytes(b[at:at + 4])
                        b[24:26] = _csum_update(int.from_bytes(b[24:26], "big"), was, now).to_bytes(2, "big")
                        l4 = 14 + ihl
                        ck = {6: l4 + 16, 17: l4 + 6}.get(b[23])
                        if ck is not None and len(b) >= ck + 2 and b[ck:ck + 2] != b"\0\0":
                            b[ck:ck + 2] = _csum_update(int.from_bytes(b[ck:ck + 2], "big"), was,
                                                        now).to_bytes(2, "big")
                        moved += 1
            w.writepkt(bytes(b), ts)
    return moved


def test_public_captures_rewritten_into_registry_blocks(tmp_path, catalogue):
    """Real miners (nDPI's captures), their addresses moved into a campus block, land in
    the campus institution with the same shares and hashrate."""
    from conftest import scan_json
    files = [PUBLIC / "ndpi" / n for n in ("2018-c6b427c-monero.pcap", "2018-c6b427c-zcash.pcap")]
    moved = []
    for f in files:
        out = tmp_path / f.name
        assert move_addresses(f, out, bytes([192, 168]), bytes([202, 119])) > 100
        moved.append(out)
    before, _ = scan_json(files, catalogue)
    assert before and all(ip.startswith("192.168.") for ip in before)
    scan = tmp_path / "moved.json"
    assert ps("scan", "-f", "json", "-o", str(scan), *map(str, moved)).returncode == 0
    reg = tmp_path / "campus.csv"
    reg.write_text("name,category,city,cidr\n南京某大学,university,南京,202.119.0.0/16\n"
                   "南京某大学,university,南京,2001:da8:1000::/36\n", encoding="utf-8")
    rep = report_json("--from", str(scan), "--institutions", str(reg))
    assert rep["summary"]["ips_by_category"] == {"university": len(before)}
    assert rep["institutions"][0]["name"] == "南京某大学"
    assert len(rep["hosts"]) == len(before)
    for h in rep["hosts"]:
        old = before[h["ip"].replace("202.119.", "192.168.", 1)]
        assert h["institution"]["name"] == "南京某大学"
        assert h["shares"] == old["shares"] and h["methods"] == old["methods"]
        assert [r["hs"] for r in h["hashrate"]] == [r["hs"] for r in old["hashrate"]]


def test_province_scale_store(tmp_path):
    """5,000 mining IPs in a store, 100,000 registry prefixes: the report in seconds."""
    from poolsniff.evidence import AlgoRate, HostEvidence, Traffic
    from poolsniff.store import EvidenceStore
    rng = random.Random(7)
    cats = ["government", "university", "enterprise", "soe", "residential", "internet_cafe"]
    cities = ["苏州", "徐州", "南京", "无锡", "常州"]
    blocks = rng.sample(range(1 << 24), 100_000)          # distinct /24s
    rows = ["name,category,city,cidr"]
    inst_of_block = {}
    for i, b in enumerate(blocks):
        inst = i // 4                                   # 4 blocks per institution
        cat, city = cats[inst % len(cats)], cities[inst % len(cities)]
        rows.append(f"单位{inst},{cat},{city},{b >> 16}.{(b >> 8) & 255}.{b & 255}.0/24")
        inst_of_block[b] = (f"单位{inst}", cat, city)
    reg = tmp_path / "province.csv"
    reg.write_text("\n".join(rows) + "\n", encoding="utf-8")
    hosts = {}
    exp_cat: dict[str, int] = {}
    exp_city: dict[str, int] = {}
    exp_inst = set()
    total_hs = 0.0
    traffic = Traffic()
    for b in rng.sample(blocks, 5000):
        ip = f"{b >> 16}.{(b >> 8) & 255}.{b & 255}.{rng.randrange(1, 255)}"
        h = HostEvidence(ip)
        h.raise_verdict("mining", "speaks a mining protocol")
        h.coins.add("ETH")
        h.pools.add(("198.51.100.7", 4444, "eth.f2pool.com"))
        n, exposure = rng.randrange(1, 50), rng.uniform(1e-8, 1e-6)
        h.rates["ethash"] = AlgoRate(n=n, exposure=exposure, window_s=3600.0)
        total_hs += n / exposure
        h.sessions = 1
        h.bytes_toserver = 1000
        h.seen(1633046400.0)
        h.seen(1633046400.0 + 3600)
        traffic.spread(1633046400.0, 1633046400.0 + 3600, 1000, 5000)
        hosts[ip] = h
        name, cat, city = inst_of_block[b]
        exp_cat[cat] = exp_cat.get(cat, 0) + 1
        exp_city[city] = exp_city.get(city, 0) + 1
        exp_inst.add(name)
    db = tmp_path / "province.db"
    store = EvidenceStore(str(db), writer=True)
    store.begin_run("generated")
    store.flush(hosts, {}, {"packets": 0}, {}, True, traffic, None)
    store.close()
    t0 = time.monotonic()
    rep = report_json("--db", str(db), "--institutions", str(reg))
    took = time.monotonic() - t0
    s = rep["summary"]
    assert s["mining_ips"] == 5000
    assert s["ips_by_category"] == dict(sorted(exp_cat.items(), key=lambda x: (-x[1], x[0])))
    assert s["ips_by_city"] == dict(sorted(exp_city.items(), key=lambda x: (-x[1], x[0])))
    assert s["institutions"] == len(exp_inst)
    assert s["hashrate"][0]["hs"] == pytest.approx(total_hs, rel=1e-9)
    assert s["pool_traffic_mbps"]["bytes_to_pools"] == 5_000_000
    assert s["pool_traffic_mbps"]["mean"] == pytest.approx(5_000_000 * 8 / 3600 / 1e6)
    assert took < 60, f"province report took {took:.1f}s"
    print(f"province-scale report: 5000 IPs, 100000 prefixes, {took:.1f}s")


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("fmt", ["table", "md", "html", "json", "csv", "jsonl"])
def test_every_format_in_both_languages(generated, fmt, lang, tmp_path):
    scan, reg, _ = generated
    out = tmp_path / f"r.{fmt}"
    r = ps("report", "--from", str(scan), "--institutions", str(reg), "--lang", lang, "-f", fmt,
           "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    assert "南京某大学" in text or fmt == "jsonl"
    if fmt == "csv":
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")          # BOM: Excel reads UTF-8
        assert ("高校" if lang == "zh" else "University") in text
    if fmt in ("md", "html", "table"):
        assert ("挖矿IP数" if lang == "zh" else "Mining IPs") in text
    if fmt == "json":
        assert json.loads(text)["lang"] == lang


XSS = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def test_html_renders_in_chromium_and_escapes_captured_strings(generated, tmp_path):
    chromium = install_debian("chromium", "chromium")
    need(chromium, "Debian's chromium is not installed")
    if os.geteuid() == 0 and not Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc").exists():
        subprocess.run(["apt-get", "install", "-y", "-q", "fonts-noto-cjk"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
    scan, reg, doc = generated
    hostile = json.loads(json.dumps(doc))
    hostile["hosts"][0]["workers"].insert(0, XSS)
    hostile["hosts"][0]["agents"].append("<script>alert(1)</script>")
    hostile["hosts"][0]["evidence"][0]["reason"] = "login '" + XSS + "'"
    src = tmp_path / "hostile.json"
    src.write_text(json.dumps(hostile), encoding="utf-8")
    page = tmp_path / "report.html"
    r = ps("report", "--from", str(src), "--institutions", str(reg), "--lang", "zh", "-f", "html",
           "-o", str(page))
    assert r.returncode == 0, r.stderr
    html_text = page.read_text(encoding="utf-8")
    assert "<script" not in html_text and "onerror=\"" not in html_text
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=2000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    assert "<title>加密货币挖矿排查报告</title>" in out          # no script changed the title
    assert "pwned" in out and "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in out
    assert "<script" not in out.lower() and "<img" not in out.lower()
    rep = report_json("--from", str(src), "--institutions", str(reg))
    assert f'<b>{rep["summary"]["mining_ips"]}</b>' in out
    assert "南京某大学" in out and "现场核查单" in out
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    if shot.exists():
        shot.unlink()
    r = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2400",
                        page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]


@pytest.mark.parametrize("text, message", [
    ("institutions:\n  - name: A\n    category: univercity\n    cidrs: [10.0.0.0/8]\n",
     "reg.yaml:2: unknown category 'univercity' (did you mean 'university'?)"),
    ("institutions:\n  - name: A\n    category: university\n    cidrs: [10.0.0.1/8]\n",
     "reg.yaml:2: bad CIDR '10.0.0.1/8' for A (host bits set: the network is 10.0.0.0/8)"),
    ("institutions:\n  - name: A\n    category: university\n    cidrs: [10.0.0.0/33]\n",
     "reg.yaml:2: bad CIDR '10.0.0.0/33' for A (prefix length must be 0-32)"),
    ("institutions:\n  - name: A\n    category: university\n    cidr: [10.0.0.0/8]\n",
     "reg.yaml:2: unknown key 'cidr' (did you mean 'cidrs'?)"),
    ("institutions:\n  - name: A\n    category: university\n    cidrs: [10.0.0.0/8]\n"
     "  - name: B\n    category: enterprise\n    cidrs: [10.0.0.0/8]\n",
     "reg.yaml:5: 10.0.0.0/8 is given to both 'A'"),
    ("institutions:\n  - name: A\n    category: [university\n",
     "reg.yaml:4: YAML syntax error"),
    ("name,category,city,cidr\nA,university,南京,10.0.0.0/8,extra\n",
     "reg.csv:2: 5 fields where the header has 4"),
    ("name,category,town,cidr\n", "reg.csv:1: unknown column 'town'"),
])
def test_registry_errors_are_one_line_with_file_and_line(generated, tmp_path, text, message):
    scan, _reg, _ = generated
    name = "reg.csv" if message.startswith("reg.csv") else "reg.yaml"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    r = ps("report", "--from", str(scan), "--institutions", str(path), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_registry_longest_prefix_and_load_speed(tmp_path):
    from poolsniff.registry import Registry
    reg = tmp_path / "r.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    r = Registry.load(str(reg))
    assert r.lookup("10.1.0.10").name == "南京某大学"          # /28 beats /16
    assert r.lookup("10.1.0.200").name == "徐州某局"
    assert r.lookup("2001:db8:1::5").name == "某数据中心"
    assert r.lookup("10.3.0.1") is None and r.lookup("not an ip") is None
    rows = ["name,category,city,cidr"] + [f"i{i},enterprise,南京,{i >> 8 & 255}.{i & 255}.{i % 7}.0/24"
                                          for i in range(100_000)]
    big = tmp_path / "big.csv"
    big.write_text("\n".join(rows) + "\n", encoding="utf-8")
    t0 = time.monotonic()
    r = Registry.load(str(big))
    took = time.monotonic() - t0
    assert r.prefixes == 100_000 and len(r) == 100_000
    for i in (0, 258, 65536 + 258, 99_999):
        assert r.lookup(f"{i >> 8 & 255}.{i & 255}.{i % 7}.77").name == f"i{i}"
    print(f"100000 prefixes loaded in {took:.2f}s")
    assert took < 5     # about 0.7 s on the development machine; generous for a busy CI


def test_geoip_places_unregistered_ips_in_a_city(generated, tmp_path):
    """IPs outside the registry get their city from a MaxMind-format database (written here
    with mmdb-writer, read by MaxMind's own reader)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet
    w = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    w.insert_network(IPSet(["10.3.0.0/24"]), {"city": {"names": {"en": "Wuxi", "zh-CN": "无锡"}},
                                              "country": {"iso_code": "CN"}})
    db = tmp_path / "city.mmdb"
    w.to_db_file(str(db))
    scan, reg, doc = generated
    for lang, city in (("zh", "无锡"), ("en", "Wuxi")):
        r = ps("report", "--from", str(scan), "--institutions", str(reg), "--geoip", str(db),
               "--lang", lang, "-f", "json")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        n = sum(h["ip"].startswith("10.3.0.") and h["verdict"] == "mining" for h in doc["hosts"])
        assert n == 2 and rep["summary"]["ips_by_city"][city] == n
        assert rep["summary"]["ips_by_category"]["unregistered"] == 27    # still unregistered
        assert {h["geoip_city"] for h in rep["hosts"] if h["ip"].startswith("10.3.0.")} == {city}
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    r = ps("report", "--from", str(scan), "--geoip", str(bad))
    assert r.returncode == 2 and "not a MaxMind database" in r.stderr
