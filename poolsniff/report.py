"""Reports over stored evidence (a watch's store) and over saved scan results."""

from __future__ import annotations

from typing import Any

from poolsniff.evidence import host_order
from poolsniff.scan import ScanResult, count_verdicts, merge_counts
from poolsniff.store import EvidenceStore


def from_store(path: str) -> ScanResult:
    """The store as a scan result: the same host records ``scan`` gives, with the
    counters of every run added up (``stats.runs`` lists the runs)."""
    store = EvidenceStore(path)
    try:
        hosts = sorted((h for h in store.hosts() if h.verdict != "none"), key=host_order)
        runs = store.run_stats()
        traffic = store.traffic()
    finally:
        store.close()
    stats: dict[str, Any] = {}
    for r in runs:
        stats = merge_counts(stats, r["stats"])
    stats.pop("store", None)
    stats["runs"] = [{k: r[k] for k in ("id", "source", "started", "updated", "ended")}
                     for r in runs]
    count_verdicts(stats, hosts)
    return ScanResult(hosts, stats, traffic=traffic)
