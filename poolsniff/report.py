"""Report inputs: a watch's evidence store or saved scan results, as one ScanResult."""

from __future__ import annotations

import json
import os
from typing import Any

from poolsniff.errors import ConfigError
from poolsniff.evidence import HostEvidence, Traffic, host_order
from poolsniff.scan import ScanResult, count_verdicts, merge_counts, merge_results
from poolsniff.store import EvidenceStore


def from_store(path: str, every: bool = False) -> ScanResult:
    """The store as a scan result: the same host records ``scan`` gives, with the
    counters of every run added up (``stats.runs`` lists the runs, each with its store).
    ``every``: records without a verdict too (another store's evidence may merge with
    them)."""
    store = EvidenceStore(path)
    try:
        hosts = sorted((h for h in store.hosts() if every or h.verdict != "none"), key=host_order)
        runs = store.run_stats()
        traffic = store.traffic()
    finally:
        store.close()
    stats: dict[str, Any] = {}
    for r in runs:
        stats = merge_counts(stats, r["stats"])
    stats.pop("store", None)
    stats["runs"] = [{"store": path, **{k: r[k] for k in ("id", "source", "started", "updated",
                                                           "ended")}}
                     for r in runs]
    count_verdicts(stats, hosts)
    return ScanResult(hosts, stats, traffic=traffic)


def from_json(path: str) -> ScanResult:
    """A result saved with ``scan --format json`` (or ``report --format json``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"not a JSON scan result ({exc})", path, line,
                          "save one with 'poolsniff scan --format json -o FILE'") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("hosts"), list):
        raise ConfigError("not a scan result: no 'hosts' list", path, None,
                          "save one with 'poolsniff scan --format json -o FILE'")
    try:
        hosts = [HostEvidence.from_dict(h) for h in doc["hosts"]]
        tr = doc.get("traffic") or {}
        traffic = Traffic.from_list(tr.get("bins") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"malformed host record ({type(exc).__name__}: {exc})", path) from exc
    return ScanResult(hosts, dict(doc.get("stats") or {}), traffic=traffic)


def load(dbs: tuple[str, ...], froms: tuple[str, ...]) -> ScanResult:
    """Every input merged (hosts merge, counters and traffic add): the stores of several
    sensors or links, saved scans."""
    seen: dict[str, str] = {}
    for p in dbs + froms:
        key = os.path.realpath(p)
        if key in seen:
            raise ConfigError(f"given twice (as {seen[key]!r} too): its evidence would count "
                              "twice", p, None, "name each store and scan result once")
        seen[key] = p
    if not dbs and not froms:
        raise ConfigError("nothing to report: give --db STORE and/or --from SCAN.json")
    if len(dbs) + len(froms) == 1:
        return from_store(dbs[0]) if dbs else from_json(froms[0])
    merged = merge_results([from_store(d, every=True) for d in dbs] + [from_json(f) for f in froms])
    merged.hosts = [h for h in merged.hosts if h.verdict != "none"]
    count_verdicts(merged.stats, merged.hosts)
    return merged
