"""Scanning capture files: the library entry point behind ``poolsniff scan``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from poolsniff import __version__
from poolsniff.evidence import HostEvidence
from poolsniff.pipeline import Scanner
from poolsniff.signatures import Catalogue
from poolsniff.sources.pcapfile import CaptureReader


@dataclass
class ScanResult:
    hosts: list[HostEvidence]
    stats: dict[str, Any]
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": [h.to_dict() for h in self.hosts], "stats": self.stats,
                "poolsniff_version": __version__}


def scan_files(paths: Iterable[str], catalogue: Catalogue,
               progress: Callable[[int], None] | None = None) -> ScanResult:
    """Scan captures in order, as one continuous observation (flows span files)."""
    scanner = Scanner(catalogue)
    warnings: list[str] = []
    for path in paths:
        reader = CaptureReader(path)
        scanner.begin_file(reader.name)
        for batch in reader:
            scanner.feed(batch)
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
    stats["hosts_mining"] = sum(1 for h in hosts if h.verdict == "mining")
    stats["hosts_suspect"] = sum(1 for h in hosts if h.verdict == "suspect")
    return ScanResult(hosts, stats, scanner.anomaly_events, scanner.domain_events, warnings)
