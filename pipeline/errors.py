"""Typed errors. Every message names the file (or key) at fault and what is wrong with it.

The command-line layer maps these to the exit codes of the design: ``UsageError`` and its
subclasses to 2, everything else to 1. Per-video failures during batch work are recorded, not raised.
"""

from __future__ import annotations

from pathlib import Path


class VQAError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(VQAError):
    """Bad command-line usage, config or input table (exit code 2)."""


class ConfigError(UsageError):
    """A config file or ``--set`` override is invalid."""


class CSVError(UsageError):
    """A label CSV is invalid; the message lists every problem found, one per line."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s):\n{listed}")


class VideoError(VQAError):
    """A video could not be decoded. Subclasses say why; ``path`` names the file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoNotFoundError(VideoError):
    """The file does not exist or cannot be read."""


class NoVideoStreamError(VideoError):
    """The file holds no video stream (audio only, not a media file at all, zero bytes)."""


class CorruptVideoError(VideoError):
    """The container or bitstream is damaged, truncated beyond use, or yields no frames."""


class UnsupportedVideoError(VideoError):
    """The codec or pixel format cannot be decoded by any available backend."""


class DecodeTimeoutError(VideoError):
    """Decoding stalled for longer than the configured timeout."""


class WeightsError(VQAError):
    """Pretrained weights are missing, corrupt, or fail their SHA-256 check."""


class StoreError(VQAError):
    """A feature store is inconsistent, locked, or was made with other settings."""


class DeviceError(VQAError):
    """The accelerator failed in a way that leaves it unusable for this process (a sticky CUDA error)."""
