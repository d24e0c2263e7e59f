"""poolsniff: find cryptocurrency mining in network traffic."""

__version__ = "0.1.0"
