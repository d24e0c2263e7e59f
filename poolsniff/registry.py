"""The institution registry: which CIDR blocks belong to which institution.

YAML (``institutions: [{name, category, city, cidrs, region?, parent?, contact?}]``) or
CSV (one row per block: ``name,category,city,cidr[,region,parent,contact]``; several rows
of one name are one institution). Every error is one line naming the file and line:
a bad CIDR, an unknown category or key (with a suggestion), the same prefix given to two
institutions.

Look-up is longest-prefix match over a hash table per prefix length (at most 33 probes
for IPv4, 129 for IPv6, usually a handful): 100,000 prefixes load in well under a second
and a million look-ups take about a second.
"""

from __future__ import annotations

import csv
import difflib
import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poolsniff.errors import ConfigError
from poolsniff.signatures import _LineLoader

#: category key -> (English label, Chinese label)
CATEGORIES: dict[str, tuple[str, str]] = {
    "government": ("Government", "党政机关"),
    "university": ("University", "高校"),
    "research": ("Research institute", "科研院所"),
    "soe": ("State-owned enterprise", "国有企业"),
    "enterprise": ("Enterprise", "企业"),
    "hospital": ("Hospital", "医院"),
    "internet_cafe": ("Internet café", "网吧"),
    "datacenter": ("Data centre", "数据中心"),
    "residential": ("Residential broadband", "家庭宽带"),
    "other": ("Other", "其他"),
}
#: the categories the 2021 sweeps counted as "government bodies, universities and enterprises"
INSTITUTIONAL = ("government", "university", "research", "soe", "enterprise", "hospital")
KEYS = {"name", "category", "city", "cidrs", "region", "parent", "contact"}


@dataclass
class Institution:
    name: str
    category: str
    city: str | None = None
    region: str | None = None
    parent: str | None = None
    contact: str | None = None
    cidrs: list[str] = field(default_factory=list)
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "city": self.city,
                "region": self.region, "parent": self.parent, "contact": self.contact}


def _suggest(value: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(value), sorted(allowed), n=1)
    return f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"


class Registry:
    def __init__(self) -> None:
        self.institutions: list[Institution] = []
        # per family: {prefix length: {network >> (bits - length): institution index}}
        self._tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        self._where: dict[tuple[int, int, int], tuple[str, int]] = {}
        self.prefixes = 0

    def __len__(self) -> int:
        return len(self.institutions)

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, *paths: str) -> Registry:
        reg = cls()
        for p in paths:
            path = Path(p)
            if path.is_dir():
                raise ConfigError("is a directory, not an institution registry", p, None,
                                  "give a YAML or CSV file with --institutions")
            if not path.is_file():
                raise ConfigError("no such institution registry", p, None,
                                  "give a YAML or CSV file with --institutions")
            if path.suffix.lower() == ".csv":
                reg._load_csv(path)
            else:
                reg._load_yaml(path)
        for fam in (4, 6):
            reg._lengths[fam] = sorted(reg._tables[fam], reverse=True)
        return reg

    def _load_yaml(self, path: Path) -> None:
        p = str(path)
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", p) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", p, None,
                              "save the registry as UTF-8") from exc
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise ConfigError(f"YAML syntax error: {exc.problem}", p, line,
                              "check indentation and quoting") from exc
        except yaml.YAMLError as exc:        # e.g. control characters (ReaderError)
            raise ConfigError(f"not a YAML text: {str(exc).splitlines()[0]}", p, None,
                              "save the registry as UTF-8 text") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("institutions"), list):
            raise ConfigError("expected a mapping with an 'institutions' list", p, 1,
                              "see the README for the registry format")
        for key in doc:
            if key not in ("institutions", "version", "__line__"):
                raise ConfigError(f"unknown key '{key}'", p, doc["__line__"],
                                  _suggest(key, {"institutions", "version"}))
        for e in doc["institutions"]:
            if not isinstance(e, dict):
                raise ConfigError("each institution must be a mapping (name, category, city, "
                                  "cidrs)", p, None)
            line = e.get("__line__", 0)
            for key in e:
                if key != "__line__" and key not in KEYS:
                    raise ConfigError(f"unknown key '{key}'", p, line, _suggest(key, KEYS))
            cidrs = e.get("cidrs")
            if isinstance(cidrs, str):
                cidrs = cidrs.replace(",", " ").split()
            if not isinstance(cidrs, list) or not cidrs:
                raise ConfigError("institution has no 'cidrs' list", p, line,
                                  "e.g. cidrs: [202.119.0.0/16]")
            self._add(p, line, e.get("name"), e.get("category"), e.get("city"), e.get("region"),
                      e.get("parent"), e.get("contact"), [str(c) for c in cidrs])

    def _load_csv(self, path: Path) -> None:
        p = str(path)
        try:
            fh = path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", p) from exc
        try:
            with fh:
                self._read_csv(fh, p)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", p, None,
                              "save the file as UTF-8 (Excel: CSV UTF-8)") from None
        except csv.Error as exc:
            raise ConfigError(f"CSV error: {exc}", p, None, "check quoting") from None

    def _read_csv(self, fh: Any, p: str) -> None:
        rows = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(rows)]
        except StopIteration:
            raise ConfigError("empty CSV file", p, 1) from None
        cols = {"name", "category", "city", "cidr", "region", "parent", "contact"}
        for h in header:
            if h not in cols:
                raise ConfigError(f"unknown column '{h}'", p, 1, _suggest(h, cols))
        for need in ("name", "category", "cidr"):
            if need not in header:
                raise ConfigError(f"missing column '{need}'", p, 1,
                                  "columns: name,category,city,cidr[,region,parent,contact]")
        by_name: dict[str, int] = {}
        for i, row in enumerate(rows, start=2):
            if not row or not any(x.strip() for x in row):
                continue
            if len(row) != len(header):
                raise ConfigError(f"{len(row)} fields where the header has {len(header)}",
                                  p, i, "quote names that contain commas")
            r = {h: v.strip() or None for h, v in zip(header, row)}
            known = by_name.get(r["name"] or "")
            if known is not None:          # another block of the same institution
                self._add_cidr(self.institutions[known], known, r["cidr"] or "", p, i)
                continue
            inst = self._add(p, i, r["name"], r["category"], r.get("city"), r.get("region"),
                             r.get("parent"), r.get("contact"), [r["cidr"] or ""])
            by_name[inst.name] = len(self.institutions) - 1

    def _add(self, path: str, line: int, name: Any, category: Any, city: Any, region: Any,
             parent: Any, contact: Any, cidrs: list[str]) -> Institution:
        if not name or not isinstance(name, str):
            raise ConfigError("institution has no name", path, line)
        if category not in CATEGORIES:
            raise ConfigError(f"unknown category '{category}'", path, line,
                              _suggest(str(category), CATEGORIES))
        inst = Institution(name, category, _opt(city), _opt(region), _opt(parent), _opt(contact),
                           [], line)
        self.institutions.append(inst)
        idx = len(self.institutions) - 1
        for c in cidrs:
            self._add_cidr(inst, idx, c, path, line)
        return inst

    def _add_cidr(self, inst: Institution, idx: int, text: str, path: str, line: int) -> None:
        parsed = _parse_cidr(text)
        if isinstance(parsed, str):
            raise ConfigError(f"bad CIDR '{text}' for {inst.name}", path, line, parsed)
        fam, x, plen = parsed
        bits = 32 if fam == 4 else 128
        key = x >> (bits - plen)
        net = f"{text.strip().split('/')[0]}/{plen}"
        table = self._tables[fam].setdefault(plen, {})
        prev = table.get(key)
        if prev is not None and prev != idx:
            other = self.institutions[prev]
            w = self._where[(fam, plen, key)]
            raise ConfigError(f"{net} is given to both '{other.name}' ({w[0]}:{w[1]}) and "
                              f"'{inst.name}'", path, line,
                              "a prefix belongs to one institution; give a more specific "
                              "prefix to one of them")
        if prev is None:
            table[key] = idx
            self._where[(fam, plen, key)] = (path, line)
            inst.cidrs.append(net)
            self.prefixes += 1

    # -- look-up -------------------------------------------------------------------------
    def lookup(self, ip: str) -> Institution | None:
        """The institution of the most specific prefix holding ``ip``, or None."""
        fam, x = _parse_ip(ip)
        if not fam:
            return None
        bits = 32 if fam == 4 else 128
        tables = self._tables[fam]
        for plen in self._lengths[fam]:
            idx = tables[plen].get(x >> (bits - plen))
            if idx is not None:
                return self.institutions[idx]
        return None


def _parse_ip(text: str) -> tuple[int, int]:
    """(4 or 6, address as an integer), or (0, 0) when ``text`` is not an address."""
    for fam, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        try:
            return fam, int.from_bytes(socket.inet_pton(af, text), "big")
        except (OSError, ValueError):          # ValueError: an embedded NUL
            continue
    return 0, 0


def _parse_cidr(text: str) -> tuple[int, int, int] | str:
    """(family, network as an integer, prefix length), or why ``text`` is not a CIDR."""
    addr, slash, plen_s = text.strip().partition("/")
    fam, x = _parse_ip(addr)
    if not fam:
        return "write it as 202.119.0.0/16 or 2001:da8::/32"
    bits = 32 if fam == 4 else 128
    if not slash:
        plen = bits
    elif plen_s.isdigit() and int(plen_s) <= bits:
        plen = int(plen_s)
    else:
        return f"prefix length must be 0-{bits}"
    if x & ((1 << (bits - plen)) - 1):
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        return f"host bits set: the network is {net}"
    return fam, x, plen


def _opt(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
