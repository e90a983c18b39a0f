"""A store's ``manifest.json`` (settings, their hash, versions, format), read only here: the rest of the code
sees its settings as one typed :class:`StoreSettings`. Also the advisory lock on the directory under which the
manifest is created and ``failures.csv`` rewritten."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline import __version__
from pipeline.errors import SettingsMismatchError, StoreError, describe_os_error
from pipeline.files import write_atomic
from pipeline.trees import canonical, differences

#: Store format: 2 shards carry checksums (an index digest, an XXH3-64 per video and kind) and HDF5 metadata with
#: checksums; 1 shards carry none (still read, with a warning: docs/design.md, "Feature store").
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
LOCK = ".lock"


@dataclass(frozen=True)
class StoreSettings:
    """The settings a store's features were made with, as its manifest records them, and the SHA-256 that names
    them: shards, model files and a scorer's choice of store compare these hashes, never loose dicts."""

    values: dict
    hash: str

    @classmethod
    def of(cls, settings: Mapping) -> StoreSettings:
        """``settings`` as a manifest holds them (JSON types: a tuple becomes a list) with their hash, the SHA-256
        of their canonical JSON (sorted keys, no whitespace)."""
        values = json.loads(canonical(settings))
        return cls(values, hashlib.sha256(canonical(values).encode("utf-8")).hexdigest())

    def differences(self, other: StoreSettings, allowed: tuple[str, ...] = ()) -> list[str]:
        """``"key: mine vs. other's"`` for every dotted key whose values differ, keys in ``allowed`` aside."""
        return differences(self.values, other.values, allowed)


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of what shapes the features, recorded in the manifest and each shard for provenance."""
    versions = {"python": sys.version.split()[0], "pipeline": __version__}
    for dist in ("numpy", "h5py", "torch", "torchvision", "decord", "av"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_settings(root: Path) -> StoreSettings | None:
    """The settings of the store at ``root``; None when it has no manifest (StoreError when it is unreadable)."""
    manifest = _read_manifest(root)
    return None if manifest is None else StoreSettings(manifest["settings"], manifest["settings_hash"])


def _read_manifest(root: Path) -> dict | None:
    """The manifest of the store at ``root``; None when there is none (StoreError when it is unreadable)."""
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the manifest: {exc}") from exc
    try:
        manifest = json.loads(text)
        if manifest["format"] not in READABLE_FORMATS:
            raise StoreError(f"{path}: store format {manifest['format']}, this version reads {READABLE_FORMATS}")
        manifest["settings"], manifest["settings_hash"]  # noqa: B018 - both must be present
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: not a valid store manifest ({exc})") from exc
    return manifest


def create_or_check(root: Path, settings: StoreSettings) -> StoreSettings:
    """The settings of the store at ``root``, its manifest written with ``settings`` when there is none yet;
    SettingsMismatchError naming the differing keys when the store was made with other settings.

    An existing store is only read here (no lock), so a read-only store serves what it holds.
    """
    held = read_settings(root) or _create(root, settings)
    differing = held.differences(settings)
    if differing:
        listed = "\n".join(f"  - {d}" for d in differing)
        raise SettingsMismatchError(
            f"{root}: the store was made with other extraction settings; use another --store or the "
            f"store's settings. Differing keys (store vs. this run):\n{listed}"
        )
    return held


def _create(root: Path, settings: StoreSettings) -> StoreSettings:
    """Make the store directory and its manifest, unless a concurrent writer made them first; the settings the
    store then has."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{root}: cannot create the feature store: {describe_os_error(exc)}") from exc
    with locked(root):
        held = read_settings(root)
        if held is None:
            manifest = {
                "format": FORMAT_VERSION,
                "settings": settings.values,
                "settings_hash": settings.hash,
                "versions": dict(library_versions()),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            write_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return held or settings


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Exclusive advisory lock on the store directory (manifest creation, failures.csv updates)."""
    try:
        f = open(root / LOCK, "a")
    except OSError as exc:
        raise StoreError(f"{root}: cannot write to the feature store ({describe_os_error(exc)})") from exc
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
