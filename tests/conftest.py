import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
PUBLIC = Path(os.environ.get("POOLSNIFF_PUBLIC_PCAPS", ROOT.parent / "shared" / "pcaps" / "public"))


@pytest.fixture(scope="session")
def catalogue():
    from poolsniff.signatures import Catalogue
    return Catalogue.load()


def scan_json(paths, catalogue):
    from poolsniff.scan import scan_files
    res = scan_files([str(p) for p in paths], catalogue)
    return {h.ip: h.to_dict() for h in res.hosts}, res.stats


@pytest.fixture(scope="session")
def expected():
    return json.loads((PCAPS / "expected.json").read_text())
