"""Pool signatures: the versioned YAML catalogue in ``signatures/``, validated on load.

Every entry names a pool (or a browser-miner service or a miner's dev-fee
pool), the coins it serves, the host names of its stratum endpoints and of its
web site, the ports it publishes and a ``source`` (where the host names were
published). Host patterns are exact names or ``*.suffix`` / ``ws*.suffix``
wildcards on the leftmost label. A mistake in a file is a :class:`ConfigError`
naming the file and line.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poolsniff.errors import ConfigError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "signatures"
PACKAGED_DIR = Path(__file__).resolve().parent / "_signatures"

KINDS = ("pool", "webminer", "devfee", "proxy")
POOL_KEYS = {"id", "name", "rev", "kind", "coins", "stratum", "web", "ports", "source",
             "country", "status", "notes"}
HOST_KEYS = {"host", "coins", "ports", "tls"}
_HOST_RX = re.compile(r"^(?:[a-z0-9*](?:[a-z0-9*-]{0,61}[a-z0-9*])?\.)+[a-z0-9-]{2,63}$")


@dataclass(frozen=True, slots=True)
class PoolHost:
    pattern: str
    coins: tuple[str, ...]
    ports: tuple[int, ...]
    role: str                # "stratum" or "web"


@dataclass(slots=True)
class Pool:
    id: str
    name: str
    rev: int
    kind: str
    coins: tuple[str, ...]
    source: str
    country: str | None
    status: str
    file: str
    line: int
    hosts: list[PoolHost] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Match:
    """A host name that matched a signature."""

    pool: Pool
    host: PoolHost
    name: str

    @property
    def role(self) -> str:
        return self.host.role

    @property
    def coins(self) -> tuple[str, ...]:
        return self.host.coins or self.pool.coins


MATCH_MEMORY = 1 << 16     # host names whose answer is remembered (least recently asked go first)

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when available: 10x faster


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that remembers the line of every mapping (as ``__line__``)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _unknown(key: Any, allowed: set[str], path: str, line: int) -> ConfigError:
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
    return ConfigError(f"unknown key '{key}'", path, line, hint)


class Catalogue:
    """All signatures, indexed for host-name look-ups."""

    def __init__(self) -> None:
        self.pools: dict[str, Pool] = {}
        self.files: list[str] = []
        self._exact: dict[str, tuple[Pool, PoolHost]] = {}
        self._wild: dict[str, list[tuple[str, Pool, PoolHost]]] = {}
        # names looked up lately (a link's DNS asks for the same names all day); forgotten
        # whenever the index changes
        self._remembered = functools.lru_cache(maxsize=MATCH_MEMORY)(self._match)

    def __len__(self) -> int:
        return len(self.pools)

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> Catalogue:
        d = Path(directory) if directory else (DEFAULT_DIR if DEFAULT_DIR.is_dir() else PACKAGED_DIR)
        if not d.is_dir():
            raise ConfigError("signature directory not found", str(d), None,
                              "pass --signatures DIR pointing at poolsniff's signatures/")
        files = sorted(p for p in d.glob("*.yaml") if p.is_file())
        if not files:
            raise ConfigError("no *.yaml signature files", str(d), None,
                              "pass --signatures DIR pointing at poolsniff's signatures/")
        cat = cls()
        for f in files:
            cat._load_file(f)
        return cat

    def _load_file(self, path: Path) -> None:
        p = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", p) from exc
        try:
            doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise ConfigError(f"YAML syntax error: {exc.problem}", p, line,
                              "check indentation and quoting") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc}", p) from exc
        self.files.append(p)
        if doc is None:
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("pools"), list):
            raise ConfigError("expected a mapping with a 'pools' list", p, 1)
        for key in doc:
            if key not in ("version", "pools", "__line__", "efficiency"):
                raise _unknown(key, {"version", "pools"}, p, doc["__line__"])
        for entry in doc["pools"]:
            self._add_pool(entry, p)

    def _add_pool(self, e: Any, path: str) -> None:
        if not isinstance(e, dict):
            raise ConfigError("each pool must be a mapping", path, None)
        line = e.get("__line__", 0)
        for key in e:
            if key != "__line__" and key not in POOL_KEYS:
                raise _unknown(key, POOL_KEYS, path, line)
        for req in ("id", "name", "coins", "source"):
            if req not in e:
                raise ConfigError(f"pool entry lacks '{req}'", path, line,
                                  "every entry needs id, name, coins and source")
        pid = e["id"]
        if not isinstance(pid, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", pid):
            raise ConfigError(f"bad pool id {pid!r}", path, line, "use lower-case letters, digits, - _ .")
        if pid in self.pools:
            other = self.pools[pid]
            raise ConfigError(f"duplicate pool id '{pid}'", path, line,
                              f"first defined at {other.file}:{other.line}")
        src = e["source"]
        if not isinstance(src, str) or not src.startswith(("http://", "https://", "doc:")):
            raise ConfigError(f"pool '{pid}': source must be a URL", path, line,
                              "say where the host names were published")
        kind = e.get("kind", "pool")
        if kind not in KINDS:
            raise ConfigError(f"pool '{pid}': unknown kind '{kind}'", path, line,
                              f"one of {', '.join(KINDS)}")
        coins = _str_list(e["coins"], "coins", pid, path, line)
        ports = _int_list(e.get("ports", []), pid, path, line)
        pool = Pool(pid, str(e["name"]), int(e.get("rev", 1)), kind, tuple(c.upper() for c in coins),
                    src, e.get("country"), str(e.get("status", "active")), path, line)
        for role in ("stratum", "web"):
            for h in e.get(role, []) or []:
                if isinstance(h, str):
                    host = PoolHost(h.lower(), (), tuple(ports), role)
                elif isinstance(h, dict):
                    hl = int(h.get("__line__") or line)
                    for key in h:
                        if key != "__line__" and key not in HOST_KEYS:
                            raise _unknown(key, HOST_KEYS, path, hl)
                    if not isinstance(h.get("host"), str):
                        raise ConfigError(f"pool '{pid}': host entry lacks 'host'", path, hl)
                    host = PoolHost(h["host"].lower(),
                                    tuple(c.upper() for c in _str_list(h.get("coins", []), "coins", pid, path, hl)),
                                    tuple(_int_list(h.get("ports", ports), pid, path, hl)), role)
                else:
                    raise ConfigError(f"pool '{pid}': {role} entries are host names", path, line)
                if not _HOST_RX.match(host.pattern):
                    raise ConfigError(f"pool '{pid}': bad host name '{host.pattern}'", path, line)
                self._index(pool, host, path, line)
                pool.hosts.append(host)
        if not pool.hosts:
            raise ConfigError(f"pool '{pid}' lists no stratum or web host", path, line)
        self.pools[pid] = pool

    def _index(self, pool: Pool, host: PoolHost, path: str, line: int) -> None:
        self._remembered.cache_clear()
        pat = host.pattern
        if "*" not in pat:
            prev = self._exact.get(pat)
            if prev is not None:
                raise ConfigError(f"host '{pat}' is listed twice", path, line,
                                  f"already in pool '{prev[0].id}' ({prev[0].file}:{prev[0].line})")
            self._exact[pat] = (pool, host)
            return
        first, _, suffix = pat.partition(".")
        if "*" in suffix:
            raise ConfigError(f"wildcard only allowed in the leftmost label: '{pat}'", path, line)
        self._wild.setdefault(suffix, []).append((first, pool, host))

    # -- look-ups ------------------------------------------------------------------------
    def match(self, name: str) -> Match | None:
        """Match a host name (DNS, SNI, HTTP Host, subscribe host) against the catalogue."""
        return self._remembered(name)

    def match_certificate(self, name: str, port: int) -> Match | None:
        """Match a name a TLS server's certificate is for. A wildcard name (``*.pool.com``)
        matches a signature's own wildcard host, else the domain itself. A web host's
        match is taken for the pool's stratum host whose ports include ``port``: a client
        that sent no SNI (not a browser) on a pool's stratum port is a miner."""
        n = name.lower().rstrip(".")
        hit: Match | None = None
        if n.startswith("*."):
            for first, pool, host in self._wild.get(n[2:], ()):
                if first == "*":
                    hit = Match(pool, host, n)
                    break
            else:
                hit = self.match(n[2:])
        else:
            hit = self.match(n)
        if hit is None:
            return None
        if hit.role != "stratum":
            for h in hit.pool.hosts:
                if h.role == "stratum" and port in h.ports:
                    return Match(hit.pool, h, n)
        return Match(hit.pool, hit.host, n)

    def _match(self, name: str) -> Match | None:
        if not name or len(name) > 253:
            return None
        n = name.lower().rstrip(".")
        hit = self._exact.get(n)
        if hit is not None:
            return Match(hit[0], hit[1], n)
        labels = n.split(".")
        for i in range(1, len(labels) - 1):
            suffix = ".".join(labels[i:])
            cands = self._wild.get(suffix)
            if not cands:
                continue
            head = ".".join(labels[:i])
            for first, pool, host in cands:
                if first == "*" or ("." not in head and fnmatch.fnmatchcase(head, first)):
                    return Match(pool, host, n)
        return None

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for p in self.pools.values():
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        return {"pools": len(self.pools), "hosts": sum(len(p.hosts) for p in self.pools.values()),
                "kinds": kinds, "files": self.files}


def _str_list(v: Any, what: str, pid: str, path: str, line: int) -> list[str]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"pool '{pid}': {what} must be a list of strings", path, line)
    return v


def _int_list(v: Any, pid: str, path: str, line: int) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, int) and 0 < x < 65536 for x in v):
        raise ConfigError(f"pool '{pid}': ports must be a list of port numbers", path, line)
    return v
