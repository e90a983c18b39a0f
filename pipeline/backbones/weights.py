"""Pretrained weights: where they come from, how they are checked, and the one explicit way to run without them.

A checkpoint is looked for, in this order: in the directory the user names (``--weights DIR``, for offline
nodes; ``vqa-weights fetch DIR`` fills one where there is network), in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), and last downloaded from its official URL into a temporary file beside
the cache, SHA-256 checked, and only then renamed into place, so an interrupted or corrupt download never
poses as a good file. When all three fail, the ``WeightsError`` names the URL and
where to put the file. ``weights="random"`` (seeded) is the only way to run without real weights; nothing
falls back to it silently.

Every URL and digest lives in this module as a constant, so tests can point them at a local server.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import WeightsError

#: The official pretrained checkpoint of either backbone (ResNet-50: ImageNet; SlowFast-R50: Kinetics-400).
PRETRAINED = "pretrained"
#: Older word for :data:`PRETRAINED`, still accepted: it said ImageNet, though SlowFast's weights are Kinetics'.
PRETRAINED_ALIAS = "imagenet"
RANDOM = "random"
MISSING = "missing"  # WeightsCheck.problem of a file that is not there
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WeightsSpec:
    """One published checkpoint."""

    name: str  # as its publisher names it; goes into the store manifest
    filename: str  # the upstream file name, looked for in a weights directory and in the cache
    url: str
    sha256: str | None  # full hex digest or its leading digits; None where no digest is published
    state_key: str | None = None  # entry holding the state dict inside the checkpoint (None: the file is one)


RESNET50_IMAGENET1K_V1 = WeightsSpec(
    name="IMAGENET1K_V1",
    filename="resnet50-0676ba61.pth",
    url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    # torchvision publishes the first 8 hex digits of the file's SHA-256 in its name, and checks only those.
    sha256="0676ba61",
)

SLOWFAST_8X8_R50 = WeightsSpec(
    name="SLOWFAST_8x8_R50",
    filename="SLOWFAST_8x8_R50.pyth",
    url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    # No digest is published for this file (pytorchvideo's hub loader fetches it unchecked). What is checked
    # instead: it unpickles as plain tensors (weights_only) and its state dict loads with strict=True, every
    # name and shape. The digest of the file actually used is recorded in weights_id.
    sha256=None,
    state_key="model_state",
)


#: Every published checkpoint the backbones read: what a ``--weights DIR`` for an offline node holds.
BACKBONE_WEIGHTS = (RESNET50_IMAGENET1K_V1, SLOWFAST_8X8_R50)


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    sha256: str


@dataclass(frozen=True)
class WeightsCheck:
    """What a weights directory holds of one checkpoint: ``problem`` is None when the file is there and valid."""

    spec: WeightsSpec
    path: Path
    problem: str | None
    sha256: str | None = None


def cache_dir() -> Path:
    """The torch hub checkpoint cache (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _digest_matches(spec: WeightsSpec, digest: str) -> bool:
    return spec.sha256 is None or digest.startswith(spec.sha256.lower())


def _verified(spec: WeightsSpec, path: Path) -> WeightsFile:
    digest = file_sha256(path)
    if not _digest_matches(spec, digest):
        raise WeightsError(
            f"{path}: SHA-256 {digest} does not match the published {spec.sha256} of {spec.filename}; "
            f"the file is corrupt or not {spec.name}. Delete it and fetch it again from {spec.url}"
        )
    return WeightsFile(path, digest)


def _not_found(spec: WeightsSpec, searched: list[Path], why: str) -> WeightsError:
    looked = ", ".join(str(p) for p in searched)
    return WeightsError(
        f"{spec.name} weights not found (looked for {looked}) and {why}. Download {spec.url} on a machine "
        f"with network access and put it in {cache_dir()} or in a directory passed as --weights DIR; "
        f"--weights random runs with untrained weights"
    )


def locate(spec: WeightsSpec, source: str | Path) -> WeightsFile:
    """Return the checked checkpoint file; ``source`` is ``"pretrained"`` (or its alias ``"imagenet"``) or a directory
    holding the upstream file."""
    searched: list[Path] = []
    if str(source) not in (PRETRAINED, PRETRAINED_ALIAS):
        directory = Path(source)
        if not directory.is_dir():
            raise WeightsError(
                f"{directory}: weights must be '{PRETRAINED}', '{RANDOM}' or a directory holding {spec.filename}, "
                f"and this is not a directory"
            )
        searched.append(directory / spec.filename)
    searched.append(cache_dir() / spec.filename)
    for path in searched:
        if path.is_file():
            return _verified(spec, path)
    return download(spec, searched)


def check_file(spec: WeightsSpec, directory: str | Path) -> WeightsCheck:
    """Whether ``directory`` holds a valid ``spec`` file: its SHA-256 matches the published digest or, where none
    is published, it reads as the checkpoint (plain tensors, the expected entry)."""
    path = Path(directory) / spec.filename
    if not path.is_file():
        return WeightsCheck(spec, path, MISSING)
    try:
        file = _verified(spec, path)
        if spec.sha256 is None:
            load_state_dict(spec, file)
    except WeightsError as error:
        return WeightsCheck(spec, path, str(error))
    return WeightsCheck(spec, path, None, file.sha256)


def fetch_into(spec: WeightsSpec, directory: str | Path) -> WeightsCheck:
    """Download ``spec`` into ``directory`` unless a valid copy is there already; return the check of the result."""
    check = check_file(spec, directory)
    if check.problem is None:
        return check
    try:
        download(spec, [check.path], Path(directory))
    except WeightsError as error:
        return WeightsCheck(spec, check.path, str(error))
    return check_file(spec, directory)


def download(spec: WeightsSpec, searched: list[Path], directory: Path | None = None) -> WeightsFile:
    """Fetch ``spec.url`` into ``directory`` (default: the cache): to a temporary file, hash-checked, then renamed
    into place."""
    destination = (directory if directory is not None else cache_dir()) / spec.filename
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f"{spec.filename}.", suffix=".partial")
    except OSError as error:
        raise _not_found(spec, searched, f"the cache is not writable: {error}") from None
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        if not _digest_matches(spec, digest.hexdigest()):
            why = f"the file downloaded from {spec.url} has SHA-256 {digest.hexdigest()}, expected {spec.sha256}"
            raise _not_found(spec, searched, f"{why} (nothing was saved)")
        os.replace(partial, destination)
    except OSError as error:  # urllib's URLError and socket timeouts are OSErrors
        raise _not_found(spec, searched, f"downloading it failed: {error}") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return WeightsFile(destination, digest.hexdigest())


def load_state_dict(spec: WeightsSpec, file: WeightsFile) -> dict[str, torch.Tensor]:
    """Read the checkpoint's state dict, refusing anything but plain tensors and containers (weights_only)."""
    try:
        checkpoint = torch.load(file.path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling fails in many ways; each means "not a usable checkpoint"
        raise WeightsError(f"{file.path}: cannot be read as a {spec.name} checkpoint: {error}") from None
    if spec.state_key is not None:
        if not isinstance(checkpoint, dict) or spec.state_key not in checkpoint:
            raise WeightsError(f"{file.path}: no {spec.state_key!r} entry; not a {spec.name} checkpoint")
        checkpoint = checkpoint[spec.state_key]
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{file.path}: holds a {type(checkpoint).__name__}, not a state dict")
    return checkpoint


def build_with_weights(
    build: Callable[[], nn.Module], spec: WeightsSpec, weights: str | Path, seed: int
) -> tuple[nn.Module, str]:
    """Build a model and give it the weights ``weights`` names; return it with its ``weights_id``.

    The model is built under a private RNG seeded with ``seed``, so ``"random"`` weights are the same on every
    run and machine and building never disturbs the caller's random state.
    """
    file = None if str(weights) == RANDOM else locate(spec, weights)  # fail before the costly build
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    if file is None:
        return model, f"random seed={seed}"
    try:
        model.load_state_dict(load_state_dict(spec, file), strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{file.path}: does not fit the {spec.name} architecture: {error}") from None
    return model, f"{spec.name} sha256:{file.sha256}"
