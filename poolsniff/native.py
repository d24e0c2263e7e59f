"""The optional C extension (poolsniff/_fastpath.c) and whether to use it.

``ENGINE`` is "c" when the extension was built at install time, else "numpy" (the same
work, done with numpy and Python, more slowly). ``POOLSNIFF_ENGINE=numpy`` forces the
fallback, to compare the two or to rule the extension out when chasing a problem.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

fastpath: ModuleType | None
try:
    fastpath = importlib.import_module("poolsniff._fastpath")
except ImportError:             # not built (no C compiler at install time)
    fastpath = None

ENGINE = "c" if fastpath is not None and os.environ.get("POOLSNIFF_ENGINE", "c") != "numpy" else "numpy"


def c_engine() -> ModuleType | None:
    """The extension module when it is to be used, else None."""
    return fastpath if ENGINE == "c" else None
