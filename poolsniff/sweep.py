"""The sweep report: host evidence + an institution registry → the numbers a provincial
sweep publishes (mining IPs, IPs per category and city, hashrate and energy per
algorithm, pool traffic, top pools and coins) and a table per institution.

Pure computation: no I/O but the efficiency table, no packets. Hashrates of different
algorithms are never added; energies are (per algorithm, then in total), each with the
efficiency figure and source used.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from poolsniff.errors import ConfigError
from poolsniff.estimate import sum_rate_ci
from poolsniff.evidence import VERDICTS, HostEvidence, Traffic
from poolsniff.registry import CATEGORIES, INSTITUTIONAL, Institution, Registry
from poolsniff.signatures import DEFAULT_DIR, PACKAGED_DIR

UNIT_J = {"J/TH": 1e-12, "J/GH": 1e-9, "J/MH": 1e-6, "J/kH": 1e-3, "J/H": 1.0,
          "W per kH/s": 1e-3}
UNREGISTERED = "unregistered"


@dataclass
class Efficiency:
    algorithms: tuple[str, ...]
    unit: str
    central: float
    low: float
    high: float
    basis: str
    source: str

    def j_per_hash(self, v: float) -> float:
        return v * UNIT_J[self.unit]


def load_efficiency(path: str | None = None) -> dict[str, Efficiency]:
    """The cited efficiency table (``signatures/energy/efficiency.yaml``), by algorithm."""
    if path is None:
        base = DEFAULT_DIR if DEFAULT_DIR.is_dir() else PACKAGED_DIR
        path = str(base / "energy" / "efficiency.yaml")
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the efficiency table: {exc.strerror or exc}", path) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("cannot read the efficiency table: "
                          f"{getattr(exc, 'problem', None) or str(exc).splitlines()[0]}", path,
                          mark.line + 1 if mark else None) from exc
    if not isinstance(doc, dict):
        raise ConfigError("the efficiency table must be a mapping with an 'efficiency' list",
                          path, 1)
    out: dict[str, Efficiency] = {}
    for i, e in enumerate(doc.get("efficiency") or []):
        try:
            eff = Efficiency(tuple(e["algorithms"]), e["unit"], float(e["central"]),
                             float(e["range"][0]), float(e["range"][1]), e["basis"], e["source"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"efficiency entry {i + 1} is incomplete ({exc})", path, None,
                              "each needs algorithms, unit, central, range, basis, source") from exc
        if eff.unit not in UNIT_J:
            raise ConfigError(f"unknown unit '{eff.unit}'", path, None,
                              f"one of {', '.join(UNIT_J)}")
        for a in eff.algorithms:
            out[a] = eff
    return out


def evidence_level(h: HostEvidence) -> str:
    """protocol: mining messages seen; endpoint: a session with a pool's stratum endpoint
    (named by DNS, SNI or HTTP), not decoded; suspect: a weaker sign."""
    if h.verdict != "mining":
        return "suspect"
    return "protocol" if "speaks a mining protocol" in h.reasons.items else "endpoint"


def _pool_name(p: tuple[str, int, str | None]) -> str:
    return f"{p[2]}:{p[1]}" if p[2] else f"{p[0]}:{p[1]}"


def _hashrate(hosts: list[HostEvidence]) -> list[dict[str, Any]]:
    by: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for h in hosts:
        for algo, r in h.rates.items():
            if r.exposure > 0:
                by[algo].append((r.n, r.exposure))
    out = []
    for algo in sorted(by):
        ns = [n for n, _e in by[algo]]
        es = [e for _n, e in by[algo]]
        hs, lo, hi = sum_rate_ci(ns, es)
        out.append({"algorithm": algo, "hs": hs, "ci95": [lo, hi], "shares": sum(ns),
                    "hosts": len(ns)})
    return out


def _energy(hashrate: list[dict[str, Any]], eff: dict[str, Efficiency]) -> list[dict[str, Any]]:
    out = []
    for r in hashrate:
        e = eff.get(r["algorithm"])
        if e is None:
            out.append({"algorithm": r["algorithm"], "kwh": None, "kwh_range": None,
                        "efficiency": None, "source": "no cited efficiency for this algorithm"})
            continue
        day = 24 / 1000
        out.append({
            "algorithm": r["algorithm"],
            "kwh": r["hs"] * e.j_per_hash(e.central) * day,
            "kwh_range": [r["hs"] * e.j_per_hash(e.low) * day, r["hs"] * e.j_per_hash(e.high) * day],
            "kwh_ci95": [r["ci95"][0] * e.j_per_hash(e.central) * day,
                         r["ci95"][1] * e.j_per_hash(e.central) * day],
            "efficiency": f"{e.central:g} {e.unit}",
            "efficiency_range": f"{e.low:g}-{e.high:g} {e.unit}",
            "basis": e.basis, "source": e.source})
    return out


def _traffic(t: Traffic, start: float | None, end: float | None) -> dict[str, Any]:
    """Pool traffic in Mbps over [start, end]: the mean, and the busiest 5-minute bin (its
    rate over the part of the bin inside the window, so a short capture's peak is not
    diluted by minutes nobody watched). ``mean``/``peak_5min`` count bytes sent to pools
    (pool-bound egress); the other direction and both are given apart."""
    b = Traffic.BIN_S
    empty = {"mean": 0.0, "peak_5min": 0.0, "peak_5min_start": None, "from_pools_mean": 0.0,
             "both_mean": 0.0, "bytes_to_pools": 0, "bytes_from_pools": 0, "window_s": 0.0,
             "direction": "to pools", "bin_s": b}
    if start is None or end is None:
        return empty
    span = max(end - start, 1e-6)
    bins = [(k, a, c) for k, (a, c) in sorted(t.bins.items()) if k + b > start and k <= end]
    if not bins:
        return dict(empty, window_s=span)
    up = sum(a for _k, a, _c in bins)
    down = sum(c for _k, _a, c in bins)
    best, best_k = 0.0, None
    for k, a, _c in bins:
        cover = max(min(k + b, end) - max(k, start), 1e-6)
        rate = a * 8 / min(cover, b) / 1e6
        if rate > best:
            best, best_k = rate, k
    return {"mean": up * 8 / span / 1e6, "peak_5min": best, "peak_5min_start": best_k,
            "from_pools_mean": down * 8 / span / 1e6, "both_mean": (up + down) * 8 / span / 1e6,
            "bytes_to_pools": up, "bytes_from_pools": down, "window_s": span,
            "direction": "to pools", "bin_s": b}


class GeoIP:
    """City of an address from a MaxMind-format database (GeoLite2/GeoIP2 City, or any
    mmdb with ``city.names``), for IPs the registry does not hold."""

    def __init__(self, path: str, lang: str = "en") -> None:
        try:
            import maxminddb
        except ImportError as exc:
            raise ConfigError("--geoip needs the maxminddb package", path, None,
                              "pip install 'poolsniff[geoip]'") from exc
        try:
            self.reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(f"not a MaxMind database ({exc})", path, None,
                              "give a GeoLite2-City.mmdb or similar") from exc
        self.langs = ("zh-CN", "en") if lang == "zh" else ("en", "zh-CN")

    def city(self, ip: str) -> str | None:
        try:
            rec = self.reader.get(ip)
        except ValueError:
            return None
        if not isinstance(rec, dict):
            return None
        city = rec.get("city")
        names = city.get("names") if isinstance(city, dict) else None
        if not isinstance(names, dict):
            return None
        for lang in self.langs:
            if names.get(lang):
                return str(names[lang])
        return None


def build(hosts: list[HostEvidence], traffic: Traffic, registry: Registry | None,
          since: float | None = None, until: float | None = None,
          efficiency: dict[str, Efficiency] | None = None,
          geoip: GeoIP | None = None) -> dict[str, Any]:
    """The report as data (the JSON contract): ``summary``, ``institutions``, ``hosts``.
    IPs outside the registry are placed in a city by ``geoip`` when given."""
    eff = efficiency if efficiency is not None else load_efficiency()
    sel = [h for h in hosts if h.verdict != "none"
           and (since is None or h.last_seen >= since) and (until is None or h.first_seen <= until)]
    sel.sort(key=lambda h: (-VERDICTS[h.verdict], h.ip))
    inst_of: dict[str, Institution | None] = {
        h.ip: registry.lookup(h.ip) if registry is not None else None for h in sel}
    geo_city: dict[str, str | None] = {
        h.ip: geoip.city(h.ip) if geoip is not None and inst_of[h.ip] is None else None
        for h in sel}
    mining = [h for h in sel if h.verdict == "mining"]
    by_cat: Counter[str] = Counter()
    by_city: Counter[str] = Counter()
    city_coin: dict[str, Counter[str]] = defaultdict(Counter)
    pools: Counter[str] = Counter()
    coins: Counter[str] = Counter()
    for h in mining:
        inst = inst_of[h.ip]
        by_cat[inst.category if inst else UNREGISTERED] += 1
        city = (inst.city if inst else geo_city[h.ip]) or UNREGISTERED
        by_city[city] += 1
        for c in h.coins.items:
            coins[c] += 1
            city_coin[c][city] += 1
        for p in {_pool_name(p) for p in h.pools.items}:
            pools[p] += 1
    hashrate = _hashrate(mining)
    energy = _energy(hashrate, eff)
    first = min((h.first_seen for h in sel), default=None)
    last = max((h.last_seen for h in sel), default=None)
    start = since if since is not None else first
    end = until if until is not None else last
    institutional = sum(by_cat[c] for c in INSTITUTIONAL)
    summary = {
        "window": {"start": start, "end": end,
                   "seconds": (end - start) if start is not None and end is not None else 0.0},
        "mining_ips": len(mining),
        "suspect_ips": sum(1 for h in sel if h.verdict == "suspect"),
        "ips_by_category": dict(sorted(by_cat.items(), key=lambda x: (-x[1], x[0]))),
        "ips_by_city": dict(sorted(by_city.items(), key=lambda x: (-x[1], x[0]))),
        "institutional_share": institutional / len(mining) if mining else 0.0,
        "institutional_categories": list(INSTITUTIONAL),
        "hashrate": hashrate,
        "energy_kwh_per_day": energy,
        "energy_total_kwh_per_day": sum(e["kwh"] for e in energy if e["kwh"] is not None),
        "pool_traffic_mbps": _traffic(traffic, start, end),
        "top_cities_by_coin": {c: [[city, n] for city, n in
                                   sorted(cc.items(), key=lambda x: (-x[1], x[0]))[:5]]
                               for c, cc in sorted(city_coin.items(), key=lambda x: -sum(x[1].values()))},
        "top_pools": [{"pool": p, "mining_ips": n} for p, n in
                      sorted(pools.items(), key=lambda x: (-x[1], x[0]))[:10]],
        "coins": dict(sorted(coins.items(), key=lambda x: (-x[1], x[0]))),
        "sessions": sum(h.sessions for h in mining),
    }
    # -- per institution ---------------------------------------------------------------
    groups: dict[str, list[HostEvidence]] = defaultdict(list)
    insts: dict[str, Institution] = {}
    for h in sel:
        inst = inst_of[h.ip]
        if inst is not None:
            groups[inst.name].append(h)
            insts[inst.name] = inst
    rows = []
    for name, hs in groups.items():
        inst = insts[name]
        mh = [h for h in hs if h.verdict == "mining"]
        hr = _hashrate(mh)
        en = _energy(hr, eff)
        levels = Counter(evidence_level(h) for h in hs)
        rows.append({
            "name": name, "category": inst.category, "city": inst.city,
            "region": inst.region, "parent": inst.parent, "contact": inst.contact,
            "ips": [h.ip for h in hs],
            "mining_ips": [h.ip for h in mh],
            "suspect_ips": [h.ip for h in hs if h.verdict == "suspect"],
            "coins": sorted({c for h in hs for c in h.coins.items}),
            "pools": sorted({_pool_name(p) for h in hs for p in h.pools.items}),
            "wallets": sorted({w[0] for h in hs for w in h.wallets.items}),
            "hashrate": hr,
            "energy_kwh_per_day": sum(e["kwh"] for e in en if e["kwh"] is not None),
            "first_seen": min(h.first_seen for h in hs),
            "last_seen": max(h.last_seen for h in hs),
            "evidence_level": ("protocol" if levels["protocol"] else
                               "endpoint" if levels["endpoint"] else "suspect"),
            "shares_accepted": sum(h.accepted for h in hs),
        })
    rank = {"protocol": 0, "endpoint": 1, "suspect": 2}
    rows.sort(key=lambda r: (-len(r["mining_ips"]), rank[r["evidence_level"]],
                             -r["energy_kwh_per_day"], -len(r["ips"]), r["name"]))
    summary["institutions"] = len(rows)
    host_rows = []
    for h in sel:
        d = h.to_dict()
        inst = inst_of[h.ip]
        d["institution"] = inst.to_dict() if inst is not None else None
        d["geoip_city"] = geo_city[h.ip]
        d["evidence_level"] = evidence_level(h)
        host_rows.append(d)
    return {"summary": summary, "institutions": rows, "hosts": host_rows,
            "categories": {k: {"en": v[0], "zh": v[1]} for k, v in CATEGORIES.items()}}

