"""The small vocabulary every stage shares.

Stages talk only through these types: a source yields batches of ``Packet``
tuples, ``decode`` turns a packet into a ``Segment``, detectors return
``Observation`` objects, and anything hostile or broken becomes an ``Anomaly``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: (frame number in the capture, timestamp in seconds, link type, frame bytes)
Packet = tuple[int, float, int, bytes]

TOSERVER = "toserver"
TOCLIENT = "toclient"


@dataclass(slots=True)
class Segment:
    """A decoded IPv4/IPv6 TCP or UDP packet."""

    frame: int
    ts: float
    version: int          # 4 or 6
    src: bytes            # packed address
    dst: bytes
    proto: int            # 6 TCP, 17 UDP
    sport: int
    dport: int
    flags: int            # TCP flags (0 for UDP)
    seq: int              # TCP sequence number (0 for UDP)
    payload: bytes
    wirelen: int          # bytes of the IP packet on the wire (header included)
    missing: int = 0      # payload bytes the capture cut off (snaplen), still on the wire
    ident: int = -1       # a UDP packet's IPv4 identification (-1: not kept; IPv6 has none)


@dataclass(slots=True)
class Anomaly:
    """Something malformed or hostile, counted and reported, never raised.

    ``type`` follows Suricata's anomaly event: decode, stream or applayer.
    """

    type: str
    event: str
    layer: str
    frame: int
    ts: float | None
    detail: str = ""


@dataclass(slots=True)
class Observation:
    """One fact a detector saw on a flow, with the packet that proves it."""

    kind: str             # method | share | accepted | rejected | job | login | agent | ...
    frame: int
    ts: float
    direction: str        # TOSERVER or TOCLIENT
    dialect: str | None = None
    method: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
