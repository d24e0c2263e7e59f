"""Alerts of a watch: one eve.json-style ``mining`` line when a host starts mining or
changes what it mines with (a new pool, wallet or coin).

Each session of a mining host carries a link (pool ip, port, domain, wallet or login,
coin). An alert is raised for a link not alerted before; the same link is alerted
again only after ``suppress`` seconds, and only if the host was active since. What
was alerted is kept in the evidence store, so a restart does not repeat alerts.
"""

from __future__ import annotations

import json
import os
import sys
import syslog
from typing import Any, TextIO

from poolsniff.evidence import HostEvidence
from poolsniff.output import envelope, eve_time
from poolsniff.store import AlertKey


class Alerter:
    """Decides which alerts to raise (no I/O: the sink writes them)."""

    def __init__(self, alerted: dict[AlertKey, tuple[float, float]], suppress_s: float) -> None:
        self.alerted = dict(alerted)          # key -> (first alert ts, last alert ts)
        self.suppress_s = suppress_s
        self.dirty: dict[AlertKey, tuple[float, float]] = {}
        self._known: dict[str, dict[str, set[str]]] = {}
        for ip, pool, who, coin in self.alerted:
            self._note(ip, pool, who, coin)

    def _note(self, ip: str, pool: str, who: str, coin: str) -> None:
        k = self._known.setdefault(ip, {"pool": set(), "wallet": set(), "coin": set()})
        k["pool"].add(pool)
        k["wallet"].add(who)
        k["coin"].add(coin)

    def check(self, hosts: list[HostEvidence], now: float) -> list[dict[str, Any]]:
        """Alerts for the hosts that changed in this flush (finished or live evidence)."""
        out: list[dict[str, Any]] = []
        for h in sorted(hosts, key=lambda x: x.ip):
            if h.verdict != "mining":
                continue
            hd: dict[str, Any] | None = None     # the host's record, built once if it alerts
            for link in h.links.sorted():
                pool_ip, port, domain, who, coin = link
                pool = f"{pool_ip}:{port}"
                key = (h.ip, pool, who, coin)
                prev = self.alerted.get(key)
                if prev is not None:
                    if now - prev[1] < self.suppress_s or h.last_seen <= prev[1]:
                        continue
                    change = "still_mining"
                else:
                    known = self._known.get(h.ip)
                    if known is None:
                        change = "new_host"
                    elif pool not in known["pool"]:
                        change = "new_pool"
                    elif who not in known["wallet"]:
                        change = "new_wallet"
                    else:
                        change = "new_coin"
                first = prev[0] if prev else now
                self.alerted[key] = self.dirty[key] = (first, now)
                self._note(*key)
                hd = hd or h.to_dict()
                out.append(self._event(hd, pool_ip, port, domain, who, coin, change, now))
        return out

    @staticmethod
    def _event(hd: dict[str, Any], pool_ip: str, port: int, domain: str | None, who: str,
               coin: str, change: str, now: float) -> dict[str, Any]:
        ev = [dict(e, ts=eve_time(e.get("ts"))) for e in hd["evidence"][:5]]
        return envelope("mining", now, {
            "src_ip": hd["ip"], "dest_ip": pool_ip, "dest_port": port, "proto": "TCP",
            "app_proto": "stratum",
            "alert": {"signature_id": 9100010, "rev": 1, "category": "cryptomining",
                      "severity": 1 if change == "new_host" else 2,
                      "signature": f"POOLSNIFF host mining ({change.replace('_', ' ')})",
                      "action": "allowed"},
            "mining": {"change": change, "pool": {"ip": pool_ip, "port": port, "domain": domain},
                       "wallet_or_login": who or None, "coin": coin or None,
                       "verdict": hd["verdict"], "reasons": hd["reasons"], "dialects": hd["dialects"],
                       "workers": hd["workers"][:10], "shares": hd["shares"],
                       "hashrate": hd["hashrate"], "first_seen": eve_time(hd["first_seen"]),
                       "last_seen": eve_time(hd["last_seen"]), "evidence": ev},
        })

    def take_dirty(self) -> dict[AlertKey, tuple[float, float]]:
        out, self.dirty = self.dirty, {}
        return out


class AlertSink:
    """Where alert lines go: a file (appended, reopened on SIGHUP), ``-`` (stdout) or
    ``syslog`` (facility daemon, tag poolsniff)."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.fh: TextIO | None = None
        if target == "syslog":
            syslog.openlog("poolsniff", syslog.LOG_PID, syslog.LOG_DAEMON)
        elif target not in (None, "-"):
            self.reopen()

    def reopen(self) -> None:
        """(Re)open the alert file, created 0600 (after log rotation: SIGHUP)."""
        if self.target in (None, "-", "syslog"):
            return
        assert self.target is not None
        if self.fh is not None:
            self.fh.close()
        fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.fh = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            line = json.dumps(ev, ensure_ascii=False, default=str)
            if self.target == "syslog":
                syslog.syslog(syslog.LOG_WARNING, line)
            elif self.target == "-":
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            elif self.fh is not None:
                self.fh.write(line + "\n")

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
