"""The chunk regressor, and its file: everything score.py needs, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline import __version__
from pipeline.config import Config, from_dict, to_dict
from pipeline.errors import VQAError, WeightsError
from pipeline.files import write_atomic
from pipeline.fit.data import FeatureSpec
from pipeline.fit.calibration import Calibration
from pipeline.fit.intervals import Residuals
from pipeline.fit.novelty import DomainCheck
from pipeline.metrics import Logistic4
from pipeline.store import StoreSettings

MODEL_FORMAT = "vqa-pipeline/chunk-regressor"
MODEL_VERSION = 2  # 2: cross-fitted members, monotone calibration, residuals, domain; 1 still loads
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
_MIN_STD = 1e-6  # inputs with a smaller spread in the training split are left unscaled (constant columns)


class StackedLinear(nn.Module):
    """``members`` independent linear layers applied at once: one matrix product for all of them.

    The first layer of a model reads the features, the same for every member: input ``(..., in)``. Later
    layers read each member's own activations: input ``(..., members, in)``. Output ``(..., members, out)``.
    Each member is initialised as ``nn.Linear`` would be, from its own draws.
    """

    def __init__(self, members: int, in_features: int, out_features: int, shared_input: bool):
        super().__init__()
        self.shared_input = shared_input
        bound = 1.0 / math.sqrt(in_features)
        # (in, members, out): for a shared input, one (in, members * out) matrix without a copy
        self.weight = nn.Parameter(torch.empty(in_features, members, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Every member's outputs, or with ``member`` that member's alone (``members`` = 1 in the shapes)."""
        weight, bias = self.weight, self.bias
        if member is not None:
            weight, bias = weight[:, member:member + 1], bias[member:member + 1]
        in_features, members, out_features = weight.shape
        if self.shared_input and member is not None:
            y = (x @ weight[:, 0]).unsqueeze(-2)  # a strided view: no copy of the member's weights
        elif self.shared_input:
            y = (x @ weight.view(in_features, members * out_features)).unflatten(-1, (members, out_features))
        else:
            y = torch.einsum("...ki,iko->...ko", x, weight)
        return y + bias


class ChunkRegressor(nn.Module):
    """``members`` MLPs scoring each chunk from its standardised features; a video's score is the mean over its
    chunks. The members are the cross-fitted models (:mod:`pipeline.fit.train`): trained together, one matrix
    product per layer, each on its own videos; a video's prediction is their mean.

    The input mean and standard deviation are buffers (set from the training videos), so the model file alone
    maps raw store features to scores.
    """

    def __init__(self, in_dim: int, hidden: list[int], activation: str = "gelu", dropout: float = 0.0,
                 members: int = 1):
        super().__init__()
        self.architecture = {"in_dim": in_dim, "hidden": list(hidden), "activation": activation, "dropout": dropout,
                             "members": members}
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [StackedLinear(members, width, size, shared_input=not layers), ACTIVATIONS[activation](),
                       nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = StackedLinear(members, width, 1, shared_input=not layers)

    @classmethod
    def from_config(cls, in_dim: int, cfg: Config, members: int = 1) -> ChunkRegressor:
        return cls(in_dim, cfg.model.hidden, cfg.model.activation, cfg.model.dropout, members)

    @property
    def members(self) -> int:
        return self.architecture["members"]

    def standardise_with(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the input standardisation (per-input mean and std of the training videos)."""
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.where(std < _MIN_STD, torch.ones_like(std), std))

    def chunk_scores(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Each member's scores ``(..., members)`` of chunk features ``(..., in_dim)``, float16 (as stored) or
        float32; with ``member``, that member's alone ``(..., 1)``, at its share of the arithmetic."""
        scale = 1.0 / self.input_std
        hidden = torch.addcmul(-self.input_mean * scale, x, scale)  # standardised in one float32 pass
        for layer in self.body:
            hidden = layer(hidden, member) if isinstance(layer, StackedLinear) else layer(hidden)
        return self.head(hidden, member).squeeze(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Each member's video scores ``(B, members)`` of padded chunk features ``(B, C, in_dim)`` (``member``:
        that one's, ``(B, 1)``); ``mask`` ``(B, C)`` marks real chunks."""
        weights = mask.to(torch.float32)[..., None]  # (B, C, 1)
        return (self.chunk_scores(x, member) * weights).sum(1) / weights.sum(1)


@dataclass(frozen=True)
class ModelSpec:
    """What a model file says besides its weights: inputs, the store they came from, the output scale, and what
    says how far each score can be trusted."""

    features: FeatureSpec
    widths: dict[str, int]  # feature kind -> width, in input order
    store: StoreSettings  # of the store the model's features were read from
    mos_mean: float  # the model predicts (MOS - mos_mean) / mos_std
    mos_std: float
    # raw prediction (MOS scale) -> score: monotone, fitted on out-of-fold predictions; a logistic fitted on the
    # validation split in files of version 1
    calibration: Calibration | Logistic4
    config: Config
    residuals: Residuals | None = None  # out-of-fold errors per member, for intervals (None: version 1)
    domain: DomainCheck | None = None  # the training videos' domain, for novelty (None: version 1)
    held_out_by: dict[str, int] = field(default_factory=dict)  # training video key -> the member that left it out

    @property
    def legacy(self) -> bool:
        """A file of version 1: one model, a logistic calibration, no intervals, no domain check."""
        return self.residuals is None

    def to_mos(self, raw: np.ndarray) -> np.ndarray:
        """Model outputs (standardised) on the training MOS scale, calibrated: what score.py reports."""
        return self.calibration(np.asarray(raw, dtype=np.float64) * self.mos_std + self.mos_mean)


def save_model(path: str | Path, model: ChunkRegressor, spec: ModelSpec) -> None:
    """Write ``model`` and ``spec`` as a plain dict of tensors and Python data; a temp file renamed into place."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "pipeline_version": __version__,  # provenance only: loading does not read it
        "state_dict": state,
        "weights_sha256": weights_digest(state),
        "architecture": model.architecture,
        "features": {**spec.features.to_dict(), "widths": dict(spec.widths)},
        "store": {"settings_hash": spec.store.hash, "settings": spec.store.values},
        "labels": {"mos_mean": spec.mos_mean, "mos_std": spec.mos_std},
        "calibration": spec.calibration.to_dict(),
        "residuals": spec.residuals.to_dict() if spec.residuals is not None else None,
        "domain": spec.domain.to_dict() if spec.domain is not None else None,
        "held_out_by": dict(spec.held_out_by),
        "config": to_dict(spec.config),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory: the archive's inner name is fixed, so equal models give equal files
    write_atomic(path, buffer.getvalue())


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes: saved with the weights, checked on loading.

    It catches what the archive's own checks miss, such as damaged zip metadata that makes torch read a
    tensor from the wrong place.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _digest_matches(payload: dict) -> bool:
    try:
        return payload["weights_sha256"] == weights_digest(payload["state_dict"])
    except (AttributeError, TypeError, RuntimeError):  # not a dict of tensors
        return False


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[ChunkRegressor, ModelSpec]:
    """Return the model (eval mode, on ``device``) and spec saved in ``path``; WeightsError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:  # torch.load does not check the CRCs: damaged weights would load
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        raise WeightsError(f"{path}: not a readable model file (not a torch.save archive)") from None
    except Exception as err:  # noqa: BLE001 - a damaged archive fails in many ways; each means "damaged"
        raise WeightsError(f"{path}: damaged model file: {err}") from None
    if damaged is not None:
        raise WeightsError(f"{path}: damaged model file: {damaged} fails its CRC check; copy or refit it")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise WeightsError(
            f"{path}: refused: not a weights-only model file; loading it would run code from the file "
            f"({f'it needs {reason.group(1)}' if reason else str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails unpickling in many ways (IndexError, ...)
        raise WeightsError(f"{path}: not a readable model file: {type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise WeightsError(f"{path}: not a {MODEL_FORMAT} file (written by fit.py)")
    version = payload.get("version")
    if version not in (1, MODEL_VERSION):
        raise WeightsError(f"{path}: model file version {version}, this code reads 1 and {MODEL_VERSION}")
    if "weights_sha256" in payload and not _digest_matches(payload):  # absent in files of earlier versions
        raise WeightsError(f"{path}: damaged model file: its weights do not match the SHA-256 saved with them")
    try:
        features = payload["features"]
        spec = ModelSpec(
            features=FeatureSpec.from_dict(features),
            widths=dict(features["widths"]),
            store=StoreSettings(payload["store"]["settings"], payload["store"]["settings_hash"]),
            mos_mean=float(payload["labels"]["mos_mean"]),
            mos_std=float(payload["labels"]["mos_std"]),
            calibration=_calibration(payload["calibration"]),
            config=from_dict(payload["config"], str(path)),
            residuals=Residuals.from_dict(payload["residuals"]) if payload.get("residuals") else None,
            domain=DomainCheck.from_dict(payload["domain"]) if payload.get("domain") else None,
            held_out_by={str(k): int(v) for k, v in payload.get("held_out_by", {}).items()},
        )
        model = ChunkRegressor(**payload["architecture"])
        state = payload["state_dict"] if version == MODEL_VERSION else _stacked_state(payload["state_dict"])
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, VQAError) as err:
        raise WeightsError(f"{path}: damaged or incompatible model file: {err}") from None
    return model.to(device).eval(), spec


def _calibration(values: dict) -> Calibration | Logistic4:
    return Calibration.from_dict(values) if values.get("kind") == "monotone" else Logistic4.from_dict(values)


def _stacked_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A version-1 state dict (``nn.Linear`` layers) as the one-member :class:`StackedLinear` layers of today."""
    return {name: (tensor.T[:, None, :] if name.endswith("weight") and tensor.dim() == 2 else
                   tensor[None, :] if name.endswith("bias") else tensor)
            for name, tensor in state.items()}
