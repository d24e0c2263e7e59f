"""Rendering scan results: rich table, JSON, eve.json-style JSON lines, CSV.

Reports never parse packets; they read :class:`~poolsniff.scan.ScanResult`.
Attacker-controlled strings (workers, agents) are escaped for each format:
rich markup is escaped in tables, CSV cells that could start a formula are
prefixed with a quote.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import socket
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from poolsniff import __version__
from poolsniff.estimate import human_rate
from poolsniff.scan import ScanResult, traffic_json

SENSOR = socket.gethostname()


_CID = None


@functools.lru_cache(maxsize=65536)
def _cid(proto: str, src: str, dst: str, sport: int, dport: int) -> str | None:
    global _CID
    from communityid import CommunityID, FlowTuple
    if _CID is None:
        _CID = CommunityID()
    try:
        return _CID.calc(FlowTuple(6 if proto == "TCP" else 17, src, dst, sport, dport))
    except Exception:  # noqa: BLE001 - an id is a convenience, never a failure
        return None


def community_id(ev: dict[str, Any]) -> str | None:
    """Community ID (as Suricata and Zeek compute it) of an evidence entry's 5-tuple."""
    if not all(k in ev for k in ("src_ip", "dest_ip", "src_port", "dest_port")):
        return None
    return _cid(ev.get("proto", "TCP"), ev["src_ip"], ev["dest_ip"], ev["src_port"], ev["dest_port"])


def eve_time(ts: float | None) -> str | None:
    """Suricata's timestamp form: 2021-10-09T06:13:41.532140+0000."""
    if ts is None:
        return None
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    # strftime("%Y-%m-%dT%H:%M:%S.%f%z"), spelled out: three times faster (one per evidence entry)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f".{d.microsecond:06d}+0000")


def _host_json(h: dict[str, Any]) -> dict[str, Any]:
    out = dict(h)
    out["first_seen_iso"] = eve_time(h["first_seen"])
    out["last_seen_iso"] = eve_time(h["last_seen"])
    out["evidence"] = [dict(e, ts_iso=eve_time(e.get("ts")), community_id=community_id(e))
                       for e in h["evidence"]]
    return out


def dumps(doc: Any, indent: bool = False) -> str:
    """JSON text of doc, via orjson: with thousands of hosts the standard library's indenting
    encoder (pure Python) took longer than the scan itself (1.3 s against orjson's 0.09 s
    for 6,000 hosts). Values orjson refuses (an integer past 64 bits, a lone surrogate in a
    string) fall back to the standard encoder, so output never fails for them."""
    try:
        return orjson.dumps(doc, default=str,
                            option=orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
                            ).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, ensure_ascii=False, default=str, indent=2 if indent else None)


def write_json(res: ScanResult, fh: TextIO) -> None:
    """The scan as one JSON document: the text one indented dump of the whole document gives,
    written a host at a time (a sweep's thousands of host records were all held as dicts, then
    as one string: +38 MB of peak memory per 1,000 hosts)."""
    fh.write('{\n  "hosts": ')
    if res.hosts:
        fh.write("[\n")
        for i, h in enumerate(res.hosts):
            if i:
                fh.write(",\n")
            fh.write(_nested(dumps(_host_json(h.to_dict()), indent=True), "    ", first=True))
        fh.write("\n  ]")
    else:
        fh.write("[]")
    for key, value in (("stats", res.stats), ("traffic", traffic_json(res.traffic)),
                       ("poolsniff_version", __version__)):
        fh.write(f',\n  "{key}": ' + _nested(dumps(value, indent=True), "  ", first=False))
    fh.write("\n}\n")


def _nested(text: str, pad: str, first: bool) -> str:
    """Indented JSON text moved one level in (JSON strings hold no raw newlines); its first
    line too when it starts a line of its own."""
    return (pad if first else "") + text.replace("\n", "\n" + pad)


def envelope(event_type: str, ts: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    ev: dict[str, Any] = {"timestamp": eve_time(ts), "event_type": event_type}
    ev.update(extra)
    ev["sensor"] = SENSOR
    ev["poolsniff_version"] = __version__
    return ev


def events(res: ScanResult) -> list[dict[str, Any]]:
    """eve.json-style records: one ``mining`` per host, ``pool_domain``, ``anomaly``, ``stats``."""
    out: list[dict[str, Any]] = []
    for d in res.domains:
        ts = d.pop("ts", None) if "ts" in d else None
        out.append(envelope("pool_domain", ts, d))
    for h in res.hosts:
        hd = h.to_dict()
        first = hd["evidence"][0] if hd["evidence"] else {}
        pools = hd["pools"]
        extra: dict[str, Any] = {
            "src_ip": hd["ip"],
            "dest_ip": pools[0]["ip"] if pools else None,
            "dest_port": pools[0]["port"] if pools else None,
            "proto": "TCP",
            "app_proto": "stratum",
        }
        if first.get("pcap_filename"):
            extra["pcap_filename"] = first["pcap_filename"]
            extra["pcap_cnt"] = first.get("pcap_cnt")
        cid = community_id(first)
        if cid:
            extra["community_id"] = cid
        extra["mining"] = {
            "verdict": hd["verdict"], "reasons": hd["reasons"], "dialects": hd["dialects"],
            "coins": hd["coins"], "pools": pools, "workers": hd["workers"],
            "wallets": hd["wallets"], "agents": hd["agents"], "signatures": hd["signatures"],
            "shares": hd["shares"], "hashrate": hd["hashrate"],
            "bytes_toserver": hd["bytes_toserver"], "bytes_toclient": hd["bytes_toclient"],
            "first_seen": eve_time(hd["first_seen"]), "last_seen": eve_time(hd["last_seen"]),
            "evidence": [dict(e, ts=eve_time(e.get("ts"))) for e in hd["evidence"]],
            "evidence_total": hd["evidence_total"],
        }
        extra["alert"] = {"signature_id": 9100001 if hd["verdict"] == "mining" else 9100002,
                          "rev": 1,
                          "signature": f"POOLSNIFF cryptocurrency mining ({hd['verdict']})",
                          "category": "cryptomining",
                          "severity": 2 if hd["verdict"] == "mining" else 3}
        out.append(envelope("mining", hd["first_seen"], extra))
    for a in res.anomalies:
        a = dict(a)
        ts = a.pop("ts", None)
        out.append(envelope("anomaly", ts, a))
    out.append(envelope("stats", res.stats.get("last_ts"), {"stats": res.stats}))
    return out


def write_jsonl(res: ScanResult, fh: TextIO) -> None:
    for ev in events(res):
        fh.write(dumps(ev))
        fh.write("\n")


CSV_FIELDS = ["ip", "verdict", "coins", "dialects", "pools", "workers", "wallets", "agents",
              "shares_submitted", "shares_accepted", "shares_rejected", "hashrate",
              "bytes_toserver", "bytes_toclient", "first_seen", "last_seen", "first_evidence"]


def csv_safe(v: str) -> str:
    """Neutralise spreadsheet formulas in attacker-controlled text."""
    if v and v[0] in "=+-@\t\r\n":
        return "'" + v
    return v


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def visible_controls(v: str) -> str:
    """Control characters shown as \\xNN: ESC sequences in attacker-controlled text could
    recolour, hide or retitle the analyst's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", v)


def term_safe(v: str) -> str:
    """Attacker-controlled text for a rich table with markup: controls visible, markup escaped."""
    from rich.markup import escape
    return escape(visible_controls(v))


def _rates(hd: dict[str, Any]) -> str:
    parts = []
    for r in hd["hashrate"]:
        if r["hs"] is None:
            continue
        lo, hi = r["ci95"]
        parts.append(f"{r['algorithm']} {human_rate(r['hs'], r['algorithm'])} "
                     f"[{human_rate(lo, r['algorithm'])}-{human_rate(hi, r['algorithm'])}]")
    return "; ".join(parts)


def write_csv(res: ScanResult, fh: TextIO) -> None:
    w = csv.writer(fh)
    w.writerow(CSV_FIELDS)
    for h in res.hosts:
        hd = h.to_dict()
        ev = hd["evidence"][0] if hd["evidence"] else {}
        row = [hd["ip"], hd["verdict"], " ".join(hd["coins"]), " ".join(hd["dialects"]),
               " ".join(f"{p['ip']}:{p['port']}" + (f"({p['domain']})" if p["domain"] else "")
                        for p in hd["pools"]),
               " ".join(hd["workers"]), " ".join(x["address"] for x in hd["wallets"]),
               " | ".join(hd["agents"]), hd["shares"]["submitted"], hd["shares"]["accepted"],
               hd["shares"]["rejected"], _rates(hd), hd["bytes_toserver"], hd["bytes_toclient"],
               eve_time(hd["first_seen"]), eve_time(hd["last_seen"]),
               f"{ev.get('pcap_filename', '')}#{ev.get('pcap_cnt', '')} {ev.get('reason', '')}"]
        w.writerow([csv_safe(x) if isinstance(x, str) else x for x in row])


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def write_table(res: ScanResult, fh: TextIO, color: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=fh, force_terminal=color, width=200 if not color else None,
                      no_color=not color, highlight=False)
    table = Table(title=f"poolsniff: {res.stats['hosts_mining']} mining, "
                        f"{res.stats['hosts_suspect']} suspect host(s)")
    for col in ("host", "verdict", "coin", "pool", "workers", "shares acc/sub", "hashrate (95% CI)",
                "to pool / from pool", "first evidence"):
        table.add_column(col, overflow="fold")
    for h in res.hosts:
        hd = h.to_dict()
        pools = ", ".join(f"{p['domain'] or p['ip']}:{p['port']}" for p in hd["pools"][:3])
        if len(hd["pools"]) > 3:
            pools += f" (+{len(hd['pools']) - 3})"
        workers = ", ".join(w[:64] for w in hd["workers"][:2])
        if len(hd["workers"]) > 2:
            workers += f" (+{len(hd['workers']) - 2})"
        ev = hd["evidence"][0] if hd["evidence"] else {}
        table.add_row(term_safe(hd["ip"]), hd["verdict"], term_safe(",".join(hd["coins"])),
                      term_safe(pools), term_safe(workers),
                      f"{hd['shares']['accepted']}/{hd['shares']['submitted']}",
                      term_safe(_rates(hd) or "-"),
                      f"{_size(hd['bytes_toserver'])} / {_size(hd['bytes_toclient'])}",
                      term_safe(f"#{ev.get('pcap_cnt', '')} {ev.get('reason', '')}"[:60]))
    console.print(table)
    s = res.stats
    skipped = s.get("skipped") or {}
    why = ""
    if skipped:
        # what was not decoded, and why (an empty table over an unsupported link type or
        # tunnel says so here, not only in the JSON stats)
        top = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        why = (f" ({sum(skipped.values()):,} not decoded: "
               + ", ".join(f"{k} {v:,}" for k, v in top) + (", ..." if len(skipped) > 3 else "") + ")")
    if s.get("reassembled"):
        why += f" ({s['reassembled']:,} IP datagrams reassembled from their fragments)"
    if s.get("duplicates"):
        why += f" ({s['duplicates']:,} mirror-port copies counted once)"
    console.print(f"{s['packets']} packets{why}, {s['flows']} flows, {s['flows_mining']} mining flows, "
                  f"{sum(s['anomalies'].values())} anomalies", highlight=False)


def render(res: ScanResult, fmt: str, fh: TextIO, color: bool = False, lang: str = "en") -> None:
    if fmt in ("md", "html"):
        write_document(res, fmt, fh, lang)
    elif fmt == "json":
        write_json(res, fh)
    elif fmt == "jsonl":
        write_jsonl(res, fh)
    elif fmt == "csv":
        write_csv(res, fh)
    else:
        write_table(res, fh, color)


def write_document(res: ScanResult, fmt: str, fh: TextIO, lang: str = "en") -> None:
    """A scan as the report command renders it (Markdown or one HTML page): the sweep
    summary, and every IP with its evidence; without an institution registry every IP is
    'not in the registry' ('poolsniff report --from SCAN.json --institutions ...' adds it)."""
    from poolsniff import report_render as rr
    from poolsniff.sweep import build, load_efficiency
    rep = build(res.hosts, res.traffic, None, None, None, load_efficiency(None), None)
    rep["stats"] = res.stats
    rep["traffic"] = traffic_json(res.traffic)
    if fmt == "md":
        rr.write_md(rep, fh, lang)
    else:
        rr.write_html(rep, fh, lang, rep["traffic"]["bins"])
