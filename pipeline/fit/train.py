"""One training phase: the loop, the kept epoch (the last, or the best on validation SROCC), and its predictions."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from pipeline.config import Config, LossConfig
from pipeline.errors import ConfigError
from pipeline.fit.checks import check_phase
from pipeline.fit.data import ChunkFeatures, FeatureSpec, Log, Split
from pipeline.fit.losses import mse_loss, rank_loss
from pipeline.fit.model import ChunkRegressor, ModelSpec
from pipeline.metrics import evaluate, fit_logistic

# Chunk rows per forward pass when predicting: float32 inputs below glibc's mmap threshold, so the buffers
# are reused; larger batches get fresh, page-faulted memory every time (BENCHMARKS.md, "Fitting").
_PREDICT_ROWS = 512


@dataclass
class PhaseResult:
    """The kept model of a phase and what it was judged by."""

    phase: str
    model: ChunkRegressor  # best weights, eval mode
    spec: ModelSpec
    best_epoch: int  # the kept epoch; 0: the initial model (random for coarse, the coarse model for fine)
    history: list[dict]  # one row per epoch
    predictions: dict[str, np.ndarray]  # split -> predictions on the MOS scale, before calibration
    metrics: dict[str, dict]  # split -> metrics.evaluate of those predictions (val and test)


def train_phase(
    phase: str,
    cfg: Config,
    features: ChunkFeatures,
    splits: dict[str, Split],
    init: ChunkRegressor | None = None,
    log: Log = print,
) -> PhaseResult:
    """Train one phase on ``splits['train']`` and keep its last epoch, or the one with the best validation SROCC.

    ``init`` (the previous phase's kept model) gives the starting weights; the input standardisation is
    always recomputed from this phase's training features. With ``select_epoch: best_val`` epoch 0 is the
    starting model itself, so a phase never returns something worse on validation than what it started from.
    """
    check_phase(cfg)
    started = time.perf_counter()
    spec = FeatureSpec.from_config(cfg)
    features.load(spec.kinds)
    device = features.device
    videos = {name: features.videos(split.keys) for name, split in splits.items()}
    train = splits["train"]
    mos_mean, mos_std = float(train.mos.mean()), float(train.mos.std()) or 1.0
    target = torch.tensor((train.mos - mos_mean) / mos_std, dtype=torch.float32, device=device)  # (N,)

    torch.manual_seed(cfg.seed)
    model = ChunkRegressor.from_config(features.width(spec.kinds), cfg).to(device)
    if init is not None:
        _transfer(init, model, phase)
    model.standardise_with(*features.moments(videos["train"], spec.kinds))
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(cfg.scheduler.warmup_epochs * steps_per_epoch, cfg.num_epochs * steps_per_epoch)
    )
    shuffle = torch.Generator().manual_seed(cfg.seed)

    def validate() -> dict:
        return evaluate(splits["val"].mos, _predict(model, features, videos["val"], spec.kinds) * mos_std + mos_mean)

    val = validate()
    best_srocc, best_epoch, best_state = _score(val), 0, copy.deepcopy(model.state_dict())
    history = [_row(phase, 0, float("nan"), torch.full((3,), float("nan")), val, (0.0, 0.0))]
    log(f"{phase}: {len(train)} train / {len(splits['val'])} val videos, inputs {'+'.join(spec.kinds)} "
        f"({model.architecture['in_dim']}), epoch 0 val srocc {history[0]['val_srocc']:.4f} "
        f"(standardisation and epoch 0: {time.perf_counter() - started:.1f} s)")
    for epoch in range(1, cfg.num_epochs + 1):
        started, lr = time.perf_counter(), schedule.get_last_lr()[0]
        model.train()
        totals = torch.zeros(3, device=device)  # loss, mse, rank summed over videos
        for batch in torch.randperm(len(train), generator=shuffle).to(device).split(cfg.batch_size):
            x, mask = features.batch(videos["train"][batch], spec.kinds)  # (B, C, D), (B, C)
            totals += train_step(model, optimizer, x, mask, target[batch], cfg.loss) * len(batch)
            schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so the epoch's timing covers its queued GPU work
        trained = time.perf_counter()
        val = validate()
        improved = _score(val) > best_srocc or cfg.select_epoch == "last"
        if improved:
            best_srocc, best_epoch, best_state = _score(val), epoch, copy.deepcopy(model.state_dict())
        seconds = (trained - started, time.perf_counter() - trained)
        history.append(_row(phase, epoch, lr, totals.cpu() / len(train), val, seconds))
        log(_progress(history[-1], cfg.num_epochs, improved))

    model.load_state_dict(best_state)
    model.eval()
    log(f"{phase}: kept epoch {best_epoch} ({'the last' if cfg.select_epoch == 'last' else 'best val'}, "
        f"val srocc {best_srocc:.4f})" + ("; no epoch beat the initial model" if best_epoch == 0 else ""))
    predictions = {
        name: _predict(model, features, videos[name], spec.kinds) * mos_std + mos_mean
        for name in splits if name != "train"
    }
    metrics = {name: evaluate(splits[name].mos, pred) for name, pred in predictions.items()}
    model_spec = ModelSpec(
        features=spec,
        widths={kind: features.width([kind]) for kind in spec.kinds},
        store_settings=features.store.settings,
        store_settings_hash=features.store.manifest["settings_hash"],
        mos_mean=mos_mean,
        mos_std=mos_std,
        calibration=fit_logistic(predictions["val"], splits["val"].mos, (train.mos.min(), train.mos.max())),
        config=cfg,
    )
    return PhaseResult(phase, model, model_spec, best_epoch, history, predictions, metrics)


def train_step(model: ChunkRegressor, optimizer: torch.optim.Optimizer, x: torch.Tensor, mask: torch.Tensor,
               target: torch.Tensor, loss: LossConfig) -> torch.Tensor:
    """One optimizer step on a batch ``x`` ``(B, C, D)``, ``mask`` ``(B, C)``, ``target`` ``(B,)``; returns (loss, mse, rank)."""
    pred = model(x, mask)  # (B,)
    mse = mse_loss(pred, target)
    rank = rank_loss(pred, target, loss.rank_margin)
    total = loss.mse_weight * mse + loss.rank_weight * rank
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return torch.stack([total, mse, rank]).detach()


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms while training (restored afterwards); CPU runs are then bit for bit repeatable.

    Uninitialised memory is not NaN-filled (that debugging aid of deterministic mode costs a pass over every
    new tensor, and nothing here reads memory it did not write).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS requires
    fill = torch.utils.deterministic.fill_uninitialized_memory
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill


@torch.no_grad()
def _predict(model: ChunkRegressor, features: ChunkFeatures, videos: torch.Tensor, kinds: tuple[str, ...]) -> np.ndarray:
    """Model outputs (standardised MOS, float64) for ``videos``."""
    model.eval()
    per_batch = max(1, _PREDICT_ROWS // int(features.counts[videos].max()))
    outputs = [model(*features.batch(chunk, kinds)) for chunk in videos.split(per_batch)]
    return torch.cat(outputs).double().cpu().numpy()


def _transfer(init: ChunkRegressor, model: ChunkRegressor, phase: str) -> None:
    """Start ``model`` from ``init``'s weights; the architecture (input width included) must match."""
    shape = {k: v for k, v in model.architecture.items() if k != "dropout"}
    previous = {k: v for k, v in init.architecture.items() if k != "dropout"}
    if shape != previous:
        raise ConfigError(
            f"the {phase} phase cannot start from the previous phase's model: its model/inputs differ "
            f"({previous} before, {shape} now); keep model.hidden, model.activation and the input widths equal"
        )
    model.load_state_dict(init.state_dict())


def make_optimizer(cfg: Config, model: ChunkRegressor) -> torch.optim.Optimizer:
    opt = cfg.optimizer
    if opt.name in ("adamw", "adam"):  # fused: one kernel per step instead of a dozen passes over the weights
        adam = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        return adam(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, fused=True)
    return torch.optim.SGD(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, momentum=0.9)


def _warmup_cosine(warmup_steps: int, total_steps: int):
    """LR factor per step: linear warmup to 1 over ``warmup_steps``, then a cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _score(metrics: dict) -> float:
    """Validation SROCC for model selection (undefined, e.g. constant predictions, ranks lowest)."""
    return metrics["srocc"] if math.isfinite(metrics["srocc"]) else -math.inf


def _row(phase: str, epoch: int, lr: float, losses: torch.Tensor, val: dict, seconds: tuple[float, float]) -> dict:
    loss, mse, rank = losses.tolist()
    return {"phase": phase, "epoch": epoch, "lr": lr, "train_loss": loss, "train_mse": mse, "train_rank": rank,
            **{f"val_{k}": v for k, v in val.items()}, "train_seconds": seconds[0], "val_seconds": seconds[1]}


def _progress(row: dict, epochs: int, improved: bool) -> str:
    return (f"{row['phase']:6s} epoch {row['epoch']:3d}/{epochs}  lr {row['lr']:.2e}  "
            f"loss {row['train_loss']:.4f} (mse {row['train_mse']:.4f}, rank {row['train_rank']:.4f})  "
            f"val srocc {row['val_srocc']:.4f} plcc {row['val_plcc']:.4f}  "
            f"{row['train_seconds']:.1f}+{row['val_seconds']:.1f}s"
            + ("  *" if improved else ""))
