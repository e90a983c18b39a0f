"""Typed errors, named by cause, and the exit code of each cause. Every message names the file (or key) at
fault and what is wrong with it.

The exit codes (docs/design.md "Exit codes") are decided here, in :data:`EXIT_CODES`, and nowhere else; the
command-line layer asks :func:`exit_code`. Per-video failures during batch work are recorded, not raised.
"""

from __future__ import annotations

import errno
from pathlib import Path


class VQAError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(VQAError):
    """Bad command-line usage, config or input table (exit code 2)."""


class ConfigError(UsageError):
    """A config file or ``--set`` override is invalid."""


class ArrayError(UsageError, ValueError, TypeError):
    """An array or tensor handed to a function has the wrong shape or dtype: the caller's mistake, the same
    error in scoring, the backbones, the video views and NSS (still a ValueError/TypeError for numeric code)."""


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
    """A feature store is inconsistent, unreadable or unwritable."""


class DamagedShardError(StoreError):
    """A shard's bytes fail its checksums, its index disagrees with its arrays, or HDF5 cannot read it. ``shard``
    names the file: extraction moves it aside and extracts its videos again; readers stop and say so."""

    def __init__(self, shard: str | Path, problem: str):
        self.shard = Path(shard)
        self.problem = problem
        root = self.shard.parent
        super().__init__(
            f"{self.shard}: damaged shard ({problem}); its videos are not read. Repair: extract_features.py --store "
            f"{root} --verify with the config or CSVs that filled the store moves it to {root / 'damaged'} and "
            "extracts its videos again")


class ReadOnlyStoreError(StoreError):
    """Videos would have to be written into a store this process cannot write (a read-only mount)."""


class WriteError(VQAError, OSError):
    """A file could not be written (a full disk, a read-only file system); the previous file is kept. Still an
    OSError, with the errno of the cause, for callers that handle file-system errors."""

    def __init__(self, path: str | Path, cause: OSError, kept: str = "the previous file, if any, is kept"):
        self.path = Path(path)
        self.reason = describe_os_error(cause)
        self.message = f"{self.path}: cannot write: {self.reason}; {kept}"
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the same clean-up runs as for Ctrl-C (exit code 143, not 130)."""


def no_space(exc: BaseException) -> bool:
    """True when ``exc`` is a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(exc: OSError) -> str:
    """The cause of a file-system error in words; a full disk also says that a rerun with space carries on."""
    if no_space(exc):
        return "no space left on device (free some space and rerun the same command: it carries on)"
    return exc.strerror or str(exc)


class SettingsMismatchError(StoreError):
    """Features were asked for with other settings than those a store or model holds: extraction into a store
    made with other settings, scoring with a store or backbones that give other features than the model's.
    The message lists the differing keys; the way out is another store (or the matching settings)."""


class DeviceError(VQAError):
    """The accelerator failed in a way that leaves it unusable for this process (a sticky CUDA error)."""


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as shells report a command a signal ended
#: Exit code of each cause, most specific first; the first class an error is an instance of decides.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (Interrupted, EXIT_SIGTERM),
    (KeyboardInterrupt, EXIT_SIGINT),
    (UsageError, EXIT_USAGE),
    (SettingsMismatchError, EXIT_USAGE),  # the user picked the store or settings: a usage problem
    (VQAError, EXIT_ERROR),
)


def exit_code(exc: BaseException) -> int:
    """The exit code of an error, from :data:`EXIT_CODES` (1 for anything not listed)."""
    return next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), EXIT_ERROR)
