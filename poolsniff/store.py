"""The evidence store: SQLite, so a watch that runs for months never loses what it learned.

Layout (schema version :data:`SCHEMA_VERSION`, migrated forward on open):

- ``hosts``: evidence of finished flows, one mergeable host state per IP;
- ``live``: what each run's still-open flows add, replaced at every flush (a
  session that lasts days is visible, and survives a crash, before it ends);
- ``runs``: one row per ``watch`` run with its cumulative counters;
- ``alerted``: the (host, pool, wallet, coin) keys already alerted, so a restart
  does not alert again;
- ``traffic`` / ``live_traffic``: bytes of pool sessions per 5-minute bin (finished,
  and each run's open sessions), for the sweep's mean and peak pool traffic.

Every flush is one transaction in WAL mode with ``synchronous=FULL``: ``kill -9``
at any moment loses at most the flushes not yet committed and never corrupts the
file. Reading the store (``report --db``) merges ``hosts`` with every run's
``live`` rows; opening it for writing first folds the ``live`` rows of runs that
ended without finishing (a crash) into ``hosts``, since those flows are gone.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import orjson

from poolsniff.errors import ConfigError
from poolsniff.evidence import HostEvidence, Traffic, merge_hosts

SCHEMA_VERSION = 2

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    ip TEXT PRIMARY KEY, verdict TEXT NOT NULL, first_seen REAL, last_seen REAL,
    state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS live (
    run INTEGER NOT NULL, ip TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (run, ip));
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, updated REAL NOT NULL, ended REAL,
    source TEXT NOT NULL, stats BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerted (
    ip TEXT NOT NULL, pool TEXT NOT NULL, who TEXT NOT NULL, coin TEXT NOT NULL,
    first_ts REAL NOT NULL, last_ts REAL NOT NULL, PRIMARY KEY (ip, pool, who, coin));
"""

# v2: pool traffic per 5-minute bin (finished sessions; and each run's open sessions)
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS traffic (
    bin INTEGER PRIMARY KEY, toserver INTEGER NOT NULL, toclient INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS live_traffic (
    run INTEGER NOT NULL, bin INTEGER NOT NULL, toserver INTEGER NOT NULL,
    toclient INTEGER NOT NULL, PRIMARY KEY (run, bin));
"""

#: statements that bring a store from version N-1 to N (index N)
MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}

AlertKey = tuple[str, str, str, str]


class StoreError(Exception):
    """The store cannot be written now (disk full, read-only); the caller retries."""


def _dump(h: HostEvidence) -> bytes:
    return orjson.dumps(h.state())


def _load(b: bytes | str) -> HostEvidence:
    return HostEvidence.from_state(orjson.loads(b))


class EvidenceStore:
    """One SQLite evidence store. ``writer=True`` takes the store's lock (one watch at a time)."""

    def __init__(self, path: str, writer: bool = False) -> None:
        self.path = path
        self.run_id: int | None = None
        self._lock_fd: int | None = None
        if writer:
            self._lock()
        elif not os.path.exists(path):
            raise ConfigError(f"{path}: no such evidence store (a watch creates it: "
                              f"'poolsniff watch -i IFACE --db {path}')")
        if writer and not os.path.exists(path):
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise ConfigError(f"{path}: cannot create the evidence store: "
                                  f"{exc.strerror or exc}") from exc
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 30000")
            if writer:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = FULL")
            self._migrate(writer)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a usable evidence store ({exc}); move it aside "
                              "or give another --db") from exc

    # -- opening ------------------------------------------------------------------------
    def _lock(self) -> None:
        lock = self.path + ".lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise ConfigError(f"{lock}: cannot create the store's lock file: "
                              f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"{self.path}: the evidence store is in use by another "
                              "'poolsniff watch'; give each watch its own --db") from None
        self._lock_fd = fd

    def _version(self) -> int:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, writer: bool) -> None:
        v = self._version()
        if v > SCHEMA_VERSION:
            raise ConfigError(f"{self.path}: evidence store schema {v} was written by a newer "
                              f"poolsniff (this one reads up to {SCHEMA_VERSION}); upgrade")
        if v == SCHEMA_VERSION:
            return
        if not writer:
            raise ConfigError(f"{self.path}: evidence store schema {v} is older than "
                              f"{SCHEMA_VERSION}; run 'poolsniff watch --db' once to migrate it")
        with self._tx():
            for n in range(v + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[n].split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
            if et is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")

    def _tx(self) -> EvidenceStore._Tx:
        return EvidenceStore._Tx(self.db)

    # -- writing -----------------------------------------------------------------------
    def begin_run(self, source: str) -> int:
        """Start a run: fold what crashed runs left in ``live``, then register this run."""
        now = time.time()
        with self._tx():
            self._fold_live(self.db.execute("SELECT DISTINCT run FROM live").fetchall())
            self.db.execute("UPDATE runs SET ended = updated WHERE ended IS NULL")
            cur = self.db.execute("INSERT INTO runs (started, updated, source, stats) "
                                  "VALUES (?, ?, ?, ?)", (now, now, source, b"{}"))
        self.run_id = int(cur.lastrowid or 0)
        return self.run_id

    def _fold_live(self, runs: Iterable[tuple[int]]) -> None:
        for (run,) in runs:
            rows = self.db.execute("SELECT ip, state FROM live WHERE run = ?", (run,)).fetchall()
            self._merge_hosts({ip: _load(st) for ip, st in rows})
            self.db.execute("DELETE FROM live WHERE run = ?", (run,))
        for (run,) in self.db.execute("SELECT DISTINCT run FROM live_traffic").fetchall():
            t = Traffic.from_list(self.db.execute(
                "SELECT bin, toserver, toclient FROM live_traffic WHERE run = ?", (run,)).fetchall())
            self._add_traffic(t)
            self.db.execute("DELETE FROM live_traffic WHERE run = ?", (run,))

    def _add_traffic(self, t: Traffic) -> None:
        self.db.executemany(
            "INSERT INTO traffic (bin, toserver, toclient) VALUES (?, ?, ?) ON CONFLICT(bin) DO "
            "UPDATE SET toserver = toserver + excluded.toserver, "
            "toclient = toclient + excluded.toclient", t.to_list())

    def _merge_hosts(self, hosts: dict[str, HostEvidence]) -> None:
        for ip, h in hosts.items():
            row = self.db.execute("SELECT state FROM hosts WHERE ip = ?", (ip,)).fetchone()
            if row is not None:
                merged = _load(row[0])
                merged.merge(h)
                h = merged
            st = h.state()
            self.db.execute(
                "INSERT OR REPLACE INTO hosts (ip, verdict, first_seen, last_seen, state) "
                "VALUES (?, ?, ?, ?, ?)",
                (ip, h.verdict, st["first_seen"], st["last_seen"], orjson.dumps(st)))

    def flush(self, finished: dict[str, HostEvidence], live: dict[str, HostEvidence],
              stats: dict[str, Any], alerted: dict[AlertKey, tuple[float, float]],
              final: bool = False, traffic: Traffic | None = None,
              live_traffic: Traffic | None = None) -> None:
        """One transaction: merge ``finished``, replace this run's ``live`` rows, save the
        run's counters and alert keys. Raises :class:`StoreError` (nothing written) when
        the store cannot be written; the caller keeps the data and retries."""
        if self.run_id is None:
            raise RuntimeError("begin_run() first")
        run = self.run_id
        try:
            with self._tx():
                self._merge_hosts(finished)
                if traffic is not None:
                    self._add_traffic(traffic)
                self.db.execute("DELETE FROM live_traffic WHERE run = ?", (run,))
                if live_traffic is not None:
                    self.db.executemany("INSERT INTO live_traffic VALUES (?, ?, ?, ?)",
                                        [(run, *r) for r in live_traffic.to_list()])
                self.db.execute("DELETE FROM live WHERE run = ?", (run,))
                self.db.executemany("INSERT INTO live (run, ip, state) VALUES (?, ?, ?)",
                                    [(run, ip, _dump(h)) for ip, h in live.items()])
                self.db.execute("UPDATE runs SET updated = ?, stats = ?, ended = ? WHERE id = ?",
                                (time.time(), orjson.dumps(stats),
                                 time.time() if final else None, run))
                self.db.executemany("INSERT OR REPLACE INTO alerted VALUES (?, ?, ?, ?, ?, ?)",
                                    [(*k, v[0], v[1]) for k, v in alerted.items()])
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the evidence store ({exc})") from exc

    # -- reading -----------------------------------------------------------------------
    def hosts(self) -> list[HostEvidence]:
        """Every host: finished evidence merged with the open flows of every run."""
        out: dict[str, HostEvidence] = {}
        for query in ("SELECT state FROM hosts ORDER BY ip", "SELECT state FROM live ORDER BY run, ip"):
            merge_hosts(out, (_load(st) for (st,) in self.db.execute(query)))
        return list(out.values())

    def traffic(self) -> Traffic:
        """Pool traffic of finished sessions plus every run's open sessions."""
        t = Traffic.from_list(self.db.execute("SELECT bin, toserver, toclient FROM traffic")
                              .fetchall())
        t.merge(Traffic.from_list(self.db.execute(
            "SELECT bin, toserver, toclient FROM live_traffic").fetchall()))
        return t

    def run_stats(self) -> list[dict[str, Any]]:
        return [{"id": i, "started": s, "updated": u, "ended": e, "source": src,
                 "stats": orjson.loads(st)}
                for i, s, u, e, src, st in self.db.execute(
                    "SELECT id, started, updated, ended, source, stats FROM runs ORDER BY id")]

    def alerted(self) -> dict[AlertKey, tuple[float, float]]:
        return {(ip, pool, who, coin): (f, la) for ip, pool, who, coin, f, la in
                self.db.execute("SELECT ip, pool, who, coin, first_ts, last_ts FROM alerted")}

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
