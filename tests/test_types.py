"""The package type-checks (mypy, settings in pyproject.toml): annotations stay true as the code
changes, which the C extension's fallback, the --jobs merge and the evidence sums rely on."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "poolsniff"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
