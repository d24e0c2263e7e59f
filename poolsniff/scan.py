"""Scanning capture files: the library entry point behind ``poolsniff scan``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from poolsniff import __version__
from poolsniff.batch import feed_block
from poolsniff.evidence import HostEvidence, Traffic, host_order
from poolsniff.pipeline import Scanner, pipeline_gc
from poolsniff.signatures import Catalogue
from poolsniff.sources.pcapfile import CaptureReader


BLOCK = 65536     # records per block / batch (both paths sweep idle flows at the same points)


@dataclass
class ScanResult:
    hosts: list[HostEvidence]
    stats: dict[str, Any]
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": [h.to_dict() for h in self.hosts], "stats": self.stats,
                "traffic": traffic_json(self.traffic), "poolsniff_version": __version__}


def scan_files(paths: Iterable[str], catalogue: Catalogue,
               progress: Callable[[int], None] | None = None, fast: bool = True,
               max_flows: int | None = None) -> ScanResult:
    """Scan captures in order, as one continuous observation (flows span files).

    ``fast`` selects the batch path (numpy header decode, payload only where it
    matters); ``fast=False`` is the plain per-packet path. Both give the same answer.
    """
    with pipeline_gc():
        return _scan(paths, catalogue, progress, fast, max_flows)


def _scan(paths: Iterable[str], catalogue: Catalogue, progress: Callable[[int], None] | None,
          fast: bool, max_flows: int | None) -> ScanResult:
    scanner = Scanner(catalogue, max_flows)
    warnings: list[str] = []
    for path in paths:
        reader = CaptureReader(path, batch_size=BLOCK)
        scanner.begin_file(reader.name)
        chunks: Iterable[Any] = reader.blocks(BLOCK) if fast else reader
        step = functools.partial(feed_block, scanner) if fast else scanner.feed
        for chunk in chunks:
            step(chunk)
            if progress is not None:
                progress(reader.bytes_read)
        scanner.add_anomalies(reader.anomalies, reader.name)
        if reader.unknown_blocks:
            scanner.stats.anomaly("capture.unknown_block")
        warnings.extend(a.detail for a in reader.anomalies)
        scanner.stats.files.append({"name": reader.name, "format": reader.format,
                                    "frames": reader.frames, "truncated": reader.truncated})
    scanner.finish_all()
    stats = scanner.stats.to_dict()
    stats["signatures"] = len(catalogue)
    hosts = scanner.results()
    count_verdicts(stats, hosts)
    return ScanResult(hosts, stats, scanner.anomaly_events, scanner.domain_events, warnings,
                      scanner.traffic)


def traffic_json(t: Traffic) -> dict[str, Any]:
    """The pool-traffic series as JSON: 5-minute bins of [start, bytes to pools, bytes from
    pools]."""
    return {"bin_s": Traffic.BIN_S, "bins": t.to_list()}


def count_verdicts(stats: dict[str, Any], hosts: list[HostEvidence]) -> None:
    stats["hosts_mining"] = sum(1 for h in hosts if h.verdict == "mining")
    stats["hosts_suspect"] = sum(1 for h in hosts if h.verdict == "suspect")


def merge_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, bool) or v is None:
            out[k] = out[k] if v is None else v
        elif isinstance(v, (int, float)) and isinstance(out[k], (int, float)):
            if k == "first_ts":
                out[k] = min(out[k], v)
            elif k == "last_ts":
                out[k] = max(out[k], v)
            elif k == "signatures":
                out[k] = max(out[k], v)
            else:
                out[k] = out[k] + v
        elif isinstance(v, dict):
            out[k] = merge_counts(out[k] or {}, v)
        elif isinstance(v, list):
            out[k] = list(out[k]) + list(v)
    return out


def merge_results(results: Iterable[ScanResult]) -> ScanResult:
    """Merge scans of separate captures: host evidence and counters add up.

    Exact for everything a capture holds on its own. State that crosses captures
    (a pool IP learned from a DNS answer in one file and contacted in another, a
    TCP session split across two files) is only seen by scanning them together.
    """
    hosts: dict[str, HostEvidence] = {}
    stats: dict[str, Any] = {}
    anomalies: list[dict[str, Any]] = []
    domains: list[dict[str, Any]] = []
    warnings: list[str] = []
    traffic = Traffic()
    for r in results:
        traffic.merge(r.traffic)
        for h in r.hosts:
            mine = hosts.get(h.ip)
            if mine is None:
                mine = hosts[h.ip] = HostEvidence(h.ip)
            mine.merge(h)
        stats = merge_counts(stats, r.stats)
        anomalies += r.anomalies
        domains += r.domains
        warnings += r.warnings
    merged = sorted(hosts.values(), key=host_order)
    count_verdicts(stats, merged)
    return ScanResult(merged, stats, anomalies, domains, warnings, traffic)


def _scan_one(args: tuple[str, str | None, int | None]) -> ScanResult:
    """Worker for scan_parallel: one capture, its own process and catalogue."""
    path, sigdir, max_flows = args
    return scan_files([path], Catalogue.load(sigdir), max_flows=max_flows)


def scan_parallel(paths: list[str], sigdir: str | None, jobs: int,
                  max_flows: int | None = None) -> ScanResult:
    """Scan each capture as an independent observation on up to ``jobs`` cores, then merge.

    The merge is done in the order the captures were given, so the answer does not
    depend on ``jobs``. Unlike :func:`scan_files` over several files, a TCP session
    split across two captures counts as two sessions, and a pool address learned from
    DNS in one capture does not carry into another.
    """
    work = [(p, sigdir, max_flows) for p in paths]
    if jobs <= 1 or len(paths) <= 1:
        return merge_results([_scan_one(w) for w in work])
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        return merge_results(list(pool.map(_scan_one, work)))
