"""``poolsniff watch``: the long-running monitor of a mirror port.

source (libpcap or a pcap stream) → the scan pipeline (batch path) → every
``flush_every`` seconds one store transaction (finished evidence merged, open
flows' evidence replaced, counters, alert keys) → alerts for hosts that start
mining or change pool, wallet or coin.

Signals: SIGTERM/SIGINT finish every flow, flush and exit 0; SIGHUP reloads the
signatures and reopens the alert file (log rotation). When the store cannot be
written (disk full, read-only) the evidence stays in memory, an error line is
printed once, and every flush retries; capture goes on.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from poolsniff.alerts import Alerter, AlertSink
from poolsniff.batch import feed_block
from poolsniff.errors import ConfigError
from poolsniff.evidence import HostEvidence, Traffic, merge_hosts
from poolsniff.output import envelope
from poolsniff.pipeline import Scanner, pipeline_gc
from poolsniff.signatures import Catalogue
from poolsniff.sources.live import LiveCapture, StreamCapture
from poolsniff.store import EvidenceStore, StoreError

log = logging.getLogger("poolsniff.watch")


@dataclass
class WatchOptions:
    iface: str | None = None
    read: str | None = None
    bpf: str | None = None
    db: str = "poolsniff.db"
    alerts: str | None = None
    snaplen: int = 65535
    buffer_mb: int = 64
    flush_every: float = 10.0
    suppress: float = 3600.0
    stats_every: float = 60.0
    user: str | None = None
    sigdir: str | None = None
    max_flows: int | None = None
    dedup: bool = True
    memcap: int | None = None       # bytes the flows may hold back (pipeline.STREAM_MEMCAP)
    status: bool = False


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its primary group, no supplementary groups) for good."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"--user {user}: no such user") from None
    if os.getuid() == pw.pw_uid:
        return
    try:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except PermissionError as exc:
        raise ConfigError(f"--user {user}: cannot switch user ({exc.strerror}); only root "
                          "can drop to another user") from exc
    if os.getuid() != pw.pw_uid or os.geteuid() != pw.pw_uid:   # pragma: no cover
        raise ConfigError(f"--user {user}: the switch did not take effect")
    log.info("running as %s (uid %d, group %s)", user, pw.pw_uid, grp.getgrgid(pw.pw_gid).gr_name)


class Watcher:
    def __init__(self, opts: WatchOptions) -> None:
        self.o = opts
        self.cat = Catalogue.load(opts.sigdir)
        self.stop = False
        self.hup = False
        self.pending: dict[str, HostEvidence] = {}
        self.pending_traffic = Traffic()
        self.pending_alerted: dict[Any, tuple[float, float]] = {}
        self.store_error: str | None = None
        self.flushes = 0
        self.failed_flushes = 0
        self.alerts_sent = 0
        self.mining: set[str] = set()

    # -- signals ---------------------------------------------------------------------------
    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop = True

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.hup = True

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        o = self.o
        os.umask(0o077)                      # store, lock and alert files: owner only
        if o.read is not None:
            src: LiveCapture | StreamCapture = StreamCapture(o.read)
        else:
            assert o.iface is not None
            src = LiveCapture(o.iface, o.bpf, o.snaplen, o.buffer_mb)
        if o.user:
            drop_privileges(o.user)          # the capture is open; nothing else needs root
        store = EvidenceStore(o.db, writer=True)
        try:
            with pipeline_gc():
                return self._loop(src, store)
        finally:
            src.close()
            store.close()

    def _loop(self, src: LiveCapture | StreamCapture, store: EvidenceStore) -> int:
        o = self.o
        run = store.begin_run(src.name)
        log.info("watching %s (link type %s); evidence store %s, run %d; flush every %gs",
                 src.name, getattr(src, "linktype", "from the stream"), store.path, run,
                 o.flush_every)
        for h in store.hosts():
            if h.verdict == "mining":
                self.mining.add(h.ip)
        self.alerter = Alerter(store.alerted(), o.suppress)
        self.sink = AlertSink(o.alerts)
        sc = Scanner(self.cat, o.max_flows, dedup=o.dedup, memcap=o.memcap)
        sc.begin_file(src.name)
        self.scanner = sc
        old = {s: signal.signal(s, self._on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        started = time.monotonic()
        next_flush = started + o.flush_every
        next_stats = started + o.stats_every
        next_status = started + 1.0
        last_pkts = 0
        try:
            while not self.stop:
                now = time.monotonic()
                blk = src.read(timeout=min(0.25, max(0.0, next_flush - now)))
                if blk is not None:
                    feed_block(sc, blk)
                elif src.eof:
                    break
                if self.hup:
                    self.hup = False
                    self._reload()
                now = time.monotonic()
                if now >= next_flush:
                    if src.live:
                        sc.expire(time.time())      # a quiet link still ends idle flows
                    self._flush(store, src)
                    next_flush = now + o.flush_every
                if now >= next_stats:
                    self.sink.write([self._stats_event(src)])
                    next_stats = now + o.stats_every
                if o.status and now >= next_status:
                    c = src.counters()
                    sys.stderr.write(f"\r{sc.stats.packets - last_pkts:>9,} pps  "
                                     f"dropped {c['dropped']:,}  flows {len(sc.flows):,}  "
                                     f"mining hosts {len(self.mining):,}   ")
                    sys.stderr.flush()
                    last_pkts = sc.stats.packets
                    next_status = now + 1.0
            sc.add_anomalies(getattr(src, "anomalies", []), src.name)
            sc.finish_all()
            ok = self._flush(store, src, final=True)
            self.sink.write([self._stats_event(src)])
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.sink.close()
            if o.status:
                sys.stderr.write("\n")
        return 0 if ok else 1

    def _reload(self) -> None:
        try:
            cat = Catalogue.load(self.o.sigdir)
        except ConfigError as exc:
            log.error("SIGHUP: signatures not reloaded, keeping the old ones: %s", exc)
        else:
            self.cat = self.scanner.cat = cat
            log.info("SIGHUP: %d signatures reloaded", len(cat))
        try:
            self.sink.reopen()
        except OSError as exc:
            log.error("SIGHUP: cannot reopen %s: %s", self.o.alerts, exc.strerror or exc)

    def _stats(self, src: LiveCapture | StreamCapture) -> dict[str, Any]:
        st = self.scanner.stats.to_dict()
        st["capture"] = src.counters()
        st["flows_open"] = len(self.scanner.flows)
        # what the open flows hold back against --stream-memcap-mb (refusals: the anomaly
        # stream.memcap_drop)
        st["held_bytes"] = self.scanner.budget.used
        st["store"] = {"flushes": self.flushes, "failed_flushes": self.failed_flushes,
                       "pending_hosts": len(self.pending), "error": self.store_error}
        st["alerts"] = self.alerts_sent
        return st

    def _stats_event(self, src: LiveCapture | StreamCapture) -> dict[str, Any]:
        return envelope("stats", time.time(), {"stats": self._stats(src)})

    def _flush(self, store: EvidenceStore, src: LiveCapture | StreamCapture,
               final: bool = False) -> bool:
        sc = self.scanner
        finished, traffic = sc.take_hosts()
        merge_hosts(self.pending, finished.values())
        self.pending_traffic.merge(traffic)
        live, live_traffic = sc.snapshot()
        changed = list(self.pending.values()) + list(live.values())
        events = self.alerter.check(changed, time.time())
        self.pending_alerted.update(self.alerter.take_dirty())
        for h in changed:
            if h.verdict == "mining":
                self.mining.add(h.ip)
        # alerts go out before the commit: a crash in between repeats an alert after the
        # restart rather than losing it
        self.sink.write(events)
        self.alerts_sent += len(events)
        try:
            store.flush(self.pending, live, self._stats(src), self.pending_alerted, final,
                        self.pending_traffic, live_traffic)
        except StoreError as exc:
            self.failed_flushes += 1
            if self.store_error != str(exc):
                log.error("%s; evidence is kept in memory and the flush retried every %gs",
                          exc, self.o.flush_every)
            self.store_error = str(exc)
            return False
        if self.store_error is not None:
            log.warning("%s: evidence store written again after %d failed flushes",
                        store.path, self.failed_flushes)
        self.store_error = None
        self.pending = {}
        self.pending_traffic = Traffic()
        self.pending_alerted = {}
        self.flushes += 1
        return True
