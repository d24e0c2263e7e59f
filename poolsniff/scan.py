"""Scanning capture files: the library entry point behind ``poolsniff scan``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from poolsniff import __version__
from poolsniff.batch import feed_block
from poolsniff.evidence import HostEvidence, Traffic, host_order
from poolsniff.pipeline import MAX_ANOMALY_EVENTS, MAX_DOMAIN_EVENTS, MAX_HOSTS, Scanner, pipeline_gc
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
               max_flows: int | None = None, dedup: bool = True,
               memcap: int | None = None) -> ScanResult:
    """Scan captures in order, as one continuous observation (flows span files).

    ``fast`` selects the batch path (numpy header decode, payload only where it
    matters); ``fast=False`` is the plain per-packet path. Both give the same answer.
    ``progress`` is called after each batch with the bytes read so far, over all the captures.
    ``dedup`` drops mirror-port copies of packets (poolsniff.dedup). ``memcap``: bytes the
    flows may hold back, over all of them (pipeline.STREAM_MEMCAP by default).
    """
    with pipeline_gc():
        return _scan(paths, catalogue, progress, fast, max_flows, dedup=dedup, memcap=memcap)


def _scan(paths: Iterable[str], catalogue: Catalogue, progress: Callable[[int], None] | None,
          fast: bool, max_flows: int | None, part: tuple[int, int] | None = None,
          dedup: bool = True, memcap: int | None = None) -> ScanResult:
    scanner = Scanner(catalogue, max_flows, part, dedup, memcap)
    warnings: list[str] = []
    done = 0                    # bytes read of the captures before this one (for progress)
    for path in paths:
        reader = CaptureReader(path, batch_size=BLOCK)
        scanner.begin_file(reader.name)
        chunks: Iterable[Any] = reader.blocks(BLOCK) if fast else reader
        step = functools.partial(feed_block, scanner) if fast else scanner.feed
        for chunk in chunks:
            step(chunk)
            if progress is not None:
                progress(done + reader.bytes_read)
        done += reader.bytes_read
        if not scanner.lead:
            continue            # the capture's own damage and description: the lead reports them
        scanner.add_anomalies(reader.anomalies, reader.name)
        if reader.unknown_blocks:
            scanner.stats.anomaly("capture.unknown_block")
        warnings.extend(a.detail for a in reader.anomalies)
        scanner.stats.files.append({"name": reader.name, "format": reader.format,
                                    "frames": reader.frames, "truncated": reader.truncated})
    scanner.finish_all()
    stats = scanner.stats.to_dict()
    full = stats["anomalies"].get("hosts.table_full")
    if full:
        warnings.append(f"the host table was full ({MAX_HOSTS:,} hosts): {full:,} pieces of "
                        f"evidence of further hosts were not kept (a flood of spoofed sources?)")
    stats["signatures"] = len(catalogue)
    # a part keeps hosts without a verdict: another part's evidence may complete them
    hosts = scanner.results(every=part is not None)
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


_READ: Any = None       # in a worker: shared count of bytes the lead worker has read


def _init_worker(read: Any) -> None:
    global _READ
    _READ = read


def _scan_part(args: tuple[list[str], str | None, int | None, int, int, bool, int | None]
               ) -> ScanResult:
    """Worker for scan_parallel: part k of n of the flows of all the captures."""
    paths, sigdir, max_flows, k, n, dedup, memcap = args
    progress = None
    if k == 0 and _READ is not None:
        shared = _READ

        def progress(read: int) -> None:
            shared.value = read
    with pipeline_gc():
        return _scan(paths, Catalogue.load(sigdir), progress, True, max_flows, (k, n), dedup,
                     memcap)


def scan_parallel(paths: list[str], sigdir: str | None, jobs: int, max_flows: int | None = None,
                  progress: Callable[[int], None] | None = None, dedup: bool = True,
                  memcap: int | None = None) -> ScanResult:
    """:func:`scan_files` on ``jobs`` cores, with the same answer.

    Every worker reads all the captures, in order, and takes the flows (and DNS messages)
    whose 5-tuple hash falls to it; all of them learn pool endpoints from every DNS answer
    and sweep idle flows at the same packets, so the merged evidence and counters are
    exactly one scan's, whether the captures are many or one large file. Each worker has
    its own flow table of ``max_flows``. Events are listed by file and frame. ``progress``
    is called with the bytes the lead worker has read, over all the captures.
    """
    if jobs <= 1:
        return scan_files(paths, Catalogue.load(sigdir), progress=progress, max_flows=max_flows,
                          dedup=dedup, memcap=memcap)
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    read = multiprocessing.get_context().Value("q", 0, lock=False)
    work = [(paths, sigdir, max_flows, k, jobs, dedup, memcap) for k in range(jobs)]
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(read,)) as pool:
        futures = [pool.submit(_scan_part, w) for w in work]
        while True:
            done, pending = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
            if progress is not None:
                progress(read.value)
            if not pending or any(f.exception() is not None for f in done):
                break
        return merge_parts([f.result() for f in futures], paths)


def merge_parts(parts: list[ScanResult], paths: list[str]) -> ScanResult:
    """The scans of the parts of one set of captures, as the one scan they add up to."""
    merged = merge_results(parts)
    merged.hosts = [h for h in merged.hosts if h.verdict != "none"]
    count_verdicts(merged.stats, merged.hosts)
    order = {p: i for i, p in enumerate(paths)}

    def where(e: dict[str, Any]) -> tuple[int, int, float]:
        return (order.get(str(e.get("pcap_filename")), len(order)), e.get("pcap_cnt") or 0,
                e.get("ts") or 0.0)

    merged.anomalies = sorted(merged.anomalies, key=where)[:MAX_ANOMALY_EVENTS]
    merged.domains = sorted(merged.domains, key=where)[:MAX_DOMAIN_EVENTS]
    return merged
