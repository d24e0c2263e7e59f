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

import contextlib
import grp
import logging
import os
import pickle
import pwd
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from poolsniff.alerts import Alerter, AlertSink
from poolsniff.batch import feed_block
from poolsniff.errors import CaptureError, ConfigError
from poolsniff.evidence import HostEvidence, Traffic, merge_hosts
from poolsniff.output import envelope
from poolsniff.pipeline import Scanner, Stats, pipeline_gc
from poolsniff.scan import merge_counts
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
    workers: int = 1                # capture processes, each taking a share of the flows


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
        if o.workers > 1:
            return self._run_workers()
        src = _source(o)
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
        run = self._start(store, src.name)
        log.info("watching %s (link type %s); evidence store %s, run %d; flush every %gs",
                 src.name, getattr(src, "linktype", "from the stream"), store.path, run,
                 o.flush_every)
        sc = Scanner(self.cat, o.max_flows, dedup=o.dedup, memcap=o.memcap)
        sc.begin_file(src.name)
        self.scanner = sc
        started = time.monotonic()
        next_flush = started + o.flush_every
        next_stats = started + o.stats_every
        next_status = started + 1.0
        last_pkts = 0
        with self._running():
            while not self.stop:
                if not _read_into(src, sc, next_flush):
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
                    self._status_line(sc.stats.packets - last_pkts, src.counters()["dropped"],
                                      len(sc.flows))
                    last_pkts = sc.stats.packets
                    next_status = now + 1.0
            sc.add_anomalies(getattr(src, "anomalies", []), src.name)
            sc.finish_all()
            ok = self._flush(store, src, final=True)
            self.sink.write([self._stats_event(src)])
        return 0 if ok else 1

    def _start(self, store: EvidenceStore, source: str) -> int:
        """A run of the store begins: what it knows of mining hosts and alerts is taken up,
        the alert sink opened; returns the run's id."""
        run = store.begin_run(source)
        for h in store.hosts():
            if h.verdict == "mining":
                self.mining.add(h.ip)
        self.alerter = Alerter(store.alerted(), self.o.suppress)
        self.sink = AlertSink(self.o.alerts)
        return run

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """SIGTERM/SIGINT stop and SIGHUP reloads while the loop runs; after it, the old
        handlers are back, the alert sink is closed and the status line ended."""
        old = {s: signal.signal(s, self._on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.sink.close()
            if self.o.status:
                sys.stderr.write("\n")

    def _status_line(self, pps: int, dropped: int, flows: int) -> None:
        sys.stderr.write(f"\r{pps:>9,} pps  dropped {dropped:,}  flows {flows:,}  "
                         f"mining hosts {len(self.mining):,}   ")
        sys.stderr.flush()

    def _reload(self) -> None:
        cat = _reload_signatures(self.o.sigdir)
        if cat is not None:
            self.cat = self.scanner.cat = cat
        self._reopen_sink()

    def _reopen_sink(self) -> None:
        try:
            self.sink.reopen()
        except OSError as exc:
            log.error("SIGHUP: cannot reopen %s: %s", self.o.alerts, exc.strerror or exc)

    def _stats(self, src: LiveCapture | StreamCapture) -> dict[str, Any]:
        return self._with_store(_pipeline_stats(self.scanner, src))

    def _with_store(self, st: dict[str, Any]) -> dict[str, Any]:
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
        live, live_traffic = sc.snapshot()
        return self._commit(store, finished.values(), traffic, live, live_traffic,
                            lambda: self._stats(src), final)

    def _commit(self, store: EvidenceStore, finished: Iterable[HostEvidence], traffic: Traffic,
                live: dict[str, HostEvidence], live_traffic: Traffic | None,
                stats: Callable[[], dict[str, Any]], final: bool) -> bool:
        """Finished evidence into what waits for the store, alerts for what changed, then
        one store transaction (``live``: what the open flows would add, replaced each time)."""
        merge_hosts(self.pending, finished)
        self.pending_traffic.merge(traffic)
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
            store.flush(self.pending, live, stats(), self.pending_alerted, final,
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

    # -- several capture processes ---------------------------------------------------------
    def _run_workers(self) -> int:
        """``--workers N``: N spawned processes each capture everything and take a share of
        the flows (as ``scan --jobs`` parts do: every worker learns pool endpoints from
        every DNS answer); this process keeps the store and the alerts, and commits what
        they send after each of their flushes (so alerts are raised once, by one Alerter)."""
        import multiprocessing as mp

        o = self.o
        ctx = mp.get_context("spawn")       # a fresh interpreter: no inherited store handle
        conns: list[Connection] = []
        procs: list[Any] = []
        try:
            for k in range(o.workers):
                rx, tx = ctx.Pipe(duplex=False)
                p = ctx.Process(target=worker_main, args=(k, o, tx, os.getpid()),
                                name=f"poolsniff-worker-{k}")
                p.start()
                tx.close()
                conns.append(rx)
                procs.append(p)
            name = _await_ready(conns, procs)
            if o.user:
                drop_privileges(o.user)      # the workers opened the capture
            store = EvidenceStore(o.db, writer=True)
            try:
                with pipeline_gc():
                    return self._supervise(conns, procs, store, name)
            finally:
                store.close()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():             # pragma: no cover - a worker that hangs
                    p.kill()
                    p.join()

    def _supervise(self, conns: list[Connection], procs: list[Any], store: EvidenceStore,
                   name: str) -> int:
        o = self.o
        n = len(conns)
        run = self._start(store, f"{name} ({n} workers)")
        log.info("watching %s with %d workers; evidence store %s, run %d; flush every %gs",
                 name, n, store.path, run, o.flush_every)
        self.infos: list[dict[str, Any] | None] = [None] * n
        lives: list[tuple[dict[str, HostEvidence], Traffic | None]] = [({}, None)] * n
        running, finished_ok, failed = set(range(n)), set(), []
        told = False
        started = time.monotonic()
        next_stats, next_status, last_pkts = started + o.stats_every, started + 1.0, 0
        ok = True
        with self._running():
            while running:
                if self.stop and not told:
                    for k in running:
                        procs[k].terminate()          # each finishes its flows, sends, exits
                    told = True
                if self.hup:
                    self.hup = False
                    self._reopen_sink()
                    for k in running:
                        try:
                            os.kill(procs[k].pid, signal.SIGHUP)     # they reload signatures
                        except ProcessLookupError:
                            pass                 # exited: its end of the pipe says so next
                finished: list[HostEvidence] = []
                traffic = Traffic()
                got = False
                for c in wait([conns[k] for k in running], timeout=0.25):
                    assert isinstance(c, Connection)
                    k = conns.index(c)
                    try:
                        msg = pickle.loads(c.recv_bytes())
                    except EOFError:
                        running.discard(k)
                        if k not in finished_ok:
                            procs[k].join(timeout=5)
                            failed.append(k)
                            log.error("worker %d stopped without finishing (exit code %s): "
                                      "stopping the others", k, procs[k].exitcode)
                            self.stop = True
                        continue
                    _kind, done, tr, live, live_tr, info, final = msg
                    finished += done
                    traffic.merge(tr)
                    lives[k] = (live, live_tr)
                    self.infos[k] = info
                    got = True
                    if final:
                        finished_ok.add(k)
                if got:
                    ok = self._commit(store, finished, traffic, *_union(lives),
                                      self._workers_stats, False)
                now = time.monotonic()
                if now >= next_stats:
                    self.sink.write([envelope("stats", time.time(), {"stats": self._workers_stats()})])
                    next_stats = now + o.stats_every
                if o.status and now >= next_status:
                    st = self._workers_stats()
                    self._status_line(st["packets"] - last_pkts, st["capture"]["dropped"],
                                      st["flows_open"])
                    last_pkts = st["packets"]
                    next_status = now + 1.0
            ok = self._commit(store, [], Traffic(), *_union(lives), self._workers_stats, True)
            self.sink.write([envelope("stats", time.time(), {"stats": self._workers_stats()})])
        return 0 if ok and not failed else 1

    def _workers_stats(self) -> dict[str, Any]:
        """The workers' counters as one watch's: the pipeline's add up (the lead worker
        counts packets and bytes), libpcap's are per socket: received as the lead's, drops
        added up (a packet one socket dropped is lost to that worker's flows)."""
        infos = [i for i in self.infos if i is not None]
        st: dict[str, Any] = {} if infos else Stats().to_dict()      # (nothing sent yet)
        for i in infos:
            st = merge_counts(st, {k: v for k, v in i.items() if k not in _PER_WORKER})
        caps = [i["capture"] for i in infos]
        lead = self.infos[0]            # worker 0 (the first to send may be another)
        st["capture"] = {"received": lead["capture"]["received"] if lead is not None else 0,
                         "dropped": sum(c["dropped"] for c in caps),
                         "if_dropped": max((c["if_dropped"] for c in caps), default=0),
                         "workers": caps}
        st["flows_open"] = sum(i["flows_open"] for i in infos)
        st["held_bytes"] = sum(i["held_bytes"] for i in infos)
        return self._with_store(st)


_PER_WORKER = ("capture", "flows_open", "held_bytes")     # of _pipeline_stats: not added up


def _read_into(src: LiveCapture | StreamCapture, sc: Scanner, next_flush: float) -> bool:
    """One read of the source (waiting at most until the next flush is due) into the
    scanner; False once the stream has ended."""
    blk = src.read(timeout=min(0.25, max(0.0, next_flush - time.monotonic())))
    if blk is not None:
        feed_block(sc, blk)
        return True
    return not src.eof


def _source(o: WatchOptions) -> LiveCapture | StreamCapture:
    if o.read is not None:
        return StreamCapture(o.read)
    assert o.iface is not None
    return LiveCapture(o.iface, o.bpf, o.snaplen, o.buffer_mb)


def _pipeline_stats(sc: Scanner, src: LiveCapture | StreamCapture) -> dict[str, Any]:
    st = sc.stats.to_dict()
    st["capture"] = src.counters()
    st["flows_open"] = len(sc.flows)
    # what the open flows hold back against --stream-memcap-mb (refusals: the anomaly
    # stream.memcap_drop)
    st["held_bytes"] = sc.budget.used
    return st


def _reload_signatures(sigdir: str | None) -> Catalogue | None:
    try:
        cat = Catalogue.load(sigdir)
    except ConfigError as exc:
        log.error("SIGHUP: signatures not reloaded, keeping the old ones: %s", exc)
        return None
    log.info("SIGHUP: %d signatures reloaded", len(cat))
    return cat


def _union(lives: list[tuple[dict[str, HostEvidence], Traffic | None]]
           ) -> tuple[dict[str, HostEvidence], Traffic]:
    """The workers' latest live evidence as one table, their records left as they are (a
    worker's snapshot is used again until it sends the next one)."""
    out: dict[str, HostEvidence] = {}
    copied: set[str] = set()
    traffic = Traffic()
    for hosts, tr in lives:
        for ip, h in hosts.items():
            mine = out.get(ip)
            if mine is None:
                out[ip] = h
                continue
            if ip not in copied:
                mine = out[ip] = HostEvidence.from_state(mine.state())
                copied.add(ip)
            mine.merge(h)
        if tr is not None:
            traffic.merge(tr)
    return out, traffic


def _await_ready(conns: list[Connection], procs: list[Any], timeout: float = 120.0) -> str:
    """Wait until every worker has its capture open; a worker's error is raised here, as a
    single watch would raise it."""
    name = ""
    deadline = time.monotonic() + timeout
    for k, c in enumerate(conns):
        if not c.poll(max(0.0, deadline - time.monotonic())):
            raise CaptureError(f"worker {k} did not open the capture in {timeout:g}s")
        try:
            kind, *rest = c.recv()
        except EOFError:
            procs[k].join(timeout=5)
            raise CaptureError(f"worker {k} exited while opening the capture "
                               f"(exit code {procs[k].exitcode})") from None
        if kind == "error":
            cls, text = rest
            raise (ConfigError if cls == "config" else CaptureError)(text)
        name = name or rest[0]
    return name


def worker_main(k: int, o: WatchOptions, conn: Connection, parent: int) -> None:
    """Worker k of ``o.workers`` (a spawned process): capture everything, take the flows
    of part k, and at each flush send the parent what a single watch would store: the
    finished hosts and traffic, the open flows' snapshot, the counters."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s poolsniff[%(process)d] %(levelname)s %(message)s")
    flags = {"stop": False, "hup": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: flags.__setitem__("stop", True))
    signal.signal(signal.SIGHUP, lambda *_a: flags.__setitem__("hup", True))
    try:
        src = _source(o)
    except (ConfigError, CaptureError, OSError) as exc:
        conn.send(("error", "config" if isinstance(exc, ConfigError) else "capture",
                   str(exc) if not isinstance(exc, OSError) else
                   f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")))
        return
    try:
        try:
            if o.user:
                drop_privileges(o.user)
            cat = Catalogue.load(o.sigdir)
        except ConfigError as exc:
            conn.send(("error", "config", str(exc)))
            return
        conn.send(("ready", src.name))
        sc = Scanner(cat, o.max_flows, (k, o.workers), o.dedup, o.memcap)
        sc.begin_file(src.name)

        def send(final: bool) -> None:
            done, traffic = sc.take_hosts()
            live, live_traffic = sc.snapshot()
            conn.send_bytes(pickle.dumps(("flush", list(done.values()), traffic, live,
                                          live_traffic, _pipeline_stats(sc, src), final),
                                         protocol=pickle.HIGHEST_PROTOCOL))

        with pipeline_gc():
            next_flush = time.monotonic() + o.flush_every
            while not flags["stop"]:
                if os.getppid() != parent:
                    return                   # the parent is gone: nobody to send to
                if not _read_into(src, sc, next_flush):
                    break
                if flags["hup"]:
                    flags["hup"] = False
                    cat2 = _reload_signatures(o.sigdir)
                    if cat2 is not None:
                        sc.cat = cat2
                now = time.monotonic()
                if now >= next_flush:
                    if src.live:
                        sc.expire(time.time())
                    send(False)
                    next_flush = now + o.flush_every
            sc.add_anomalies(getattr(src, "anomalies", []), src.name)
            sc.finish_all()
            send(True)
    except (BrokenPipeError, EOFError):
        return                               # the parent is gone
    finally:
        src.close()
        conn.close()
