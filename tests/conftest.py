import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
PUBLIC = Path(os.environ.get("POOLSNIFF_PUBLIC_PCAPS", ROOT.parent / "shared" / "pcaps" / "public"))
#: every capture of the suite: the generated ones and the public ones
CAPTURES = sorted([p for p in PCAPS.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz"))]
                  + [p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng")])


def pipe_fed(data: bytes, chunk: int):
    """A pipe a thread writes ``data`` into, ``chunk`` bytes a write, then closes: (the
    read end's descriptor, the thread)."""
    import threading
    rd, wr = os.pipe()

    def feed():
        for i in range(0, len(data), chunk):
            os.write(wr, data[i:i + chunk])
        os.close(wr)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return rd, t


def on_stdin(fd: int, monkeypatch, cls=None):
    """``cls("-")`` (a CaptureReader by default) reading the pipe ``fd`` as stdin."""
    import io
    import types
    from poolsniff.sources.pcapfile import CaptureReader
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(
        buffer=io.BufferedReader(io.FileIO(fd, "rb", closefd=True))))
    return (cls or CaptureReader)("-")


@pytest.fixture(scope="session")
def catalogue():
    from poolsniff.signatures import Catalogue
    return Catalogue.load()


def scan_json(paths, catalogue, fast=True):
    from poolsniff.scan import scan_files
    res = scan_files([str(p) for p in paths], catalogue, fast=fast)
    return {h.ip: h.to_dict() for h in res.hosts}, res.stats


@pytest.fixture(scope="session")
def expected():
    return json.loads((PCAPS / "expected.json").read_text())


def install_debian(tool: str, package: str) -> str | None:
    """``tool``'s path, installing Debian's ``package`` first when it is missing and this
    is root on a Debian machine (what .ci/run's fresh machine needs); None if impossible."""
    import shutil
    import subprocess
    path = shutil.which(tool)
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
        path = shutil.which(tool)
    return path


REQUIRED = os.environ.get("POOLSNIFF_REQUIRE_LIVE") == "1"


def need(ok: object, why: str) -> None:
    """Skip without a prerequisite, except in CI (POOLSNIFF_REQUIRE_LIVE=1), where a skip
    would hide a missing part and fails instead."""
    if not ok:
        if REQUIRED:
            pytest.fail(f"test prerequisite missing: {why}")
        pytest.skip(why)
