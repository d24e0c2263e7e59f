"""Exceptions and exit statuses (every exit code poolsniff uses is named here)."""

from __future__ import annotations

EXIT_OK = 0          # the scan completed, whether or not miners were found
EXIT_FAILURE = 1     # a runtime failure (disk full, store locked)
EXIT_USAGE = 2       # bad usage, configuration or environment


class PoolsniffError(Exception):
    """Base class of poolsniff's own errors."""


class ConfigError(PoolsniffError):
    """A configuration file or option is wrong; names the file, line and fix."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        self.path = path
        self.line = line
        self.hint = hint
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class CaptureError(PoolsniffError):
    """A capture cannot be opened or is not a capture at all."""
