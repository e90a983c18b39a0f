"""One training phase: cross-fitted members trained together, the kept epoch, and what their out-of-fold
predictions fit: the calibration, the intervals' residuals and the domain check."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from sklearn.model_selection import GroupKFold

from pipeline.config import Config, LossConfig
from pipeline.errors import ConfigError
from pipeline.fit.calibration import fit_calibration
from pipeline.fit.checks import check_phase
from pipeline.fit.data import ChunkFeatures, FeatureSpec, Log, Split, training_part
from pipeline.fit.intervals import DEFAULT_LEVEL, Residuals, coverage
from pipeline.fit.losses import mse_losses, rank_losses
from pipeline.fit.model import ChunkRegressor, ModelSpec
from pipeline.fit.novelty import fit_domain, reference_sample
from pipeline.fit.protocols import is_test
from pipeline.metrics import evaluate

# Chunk rows per forward pass when predicting: float32 inputs below glibc's mmap threshold, so the buffers
# are reused; larger batches get fresh, page-faulted memory every time (BENCHMARKS.md, "Fitting").
_PREDICT_ROWS = 512
_MONITORED_VIDEOS = 2000  # training videos whose out-of-fold predictions draw each epoch's curve


@dataclass
class PhaseResult:
    """The kept model of a phase (its cross-fitted members) and what it was judged by."""

    phase: str
    model: ChunkRegressor  # the kept weights of every member, eval mode
    spec: ModelSpec
    best_epoch: int  # the kept epoch; 0: the initial model (random for coarse, the coarse model for fine)
    history: list[dict]  # one row per epoch
    splits: dict[str, Split]  # what was scored: "val" (every training video, out of fold) and the test splits
    predictions: dict[str, np.ndarray]  # split -> scores (calibrated, MOS scale)
    raw: dict[str, np.ndarray]  # split -> the same before calibration
    metrics: dict[str, dict]  # split -> metrics.evaluate of the scores, with the interval coverage


def train_phase(
    phase: str,
    cfg: Config,
    features: ChunkFeatures,
    splits: dict[str, Split],
    init: ChunkRegressor | None = None,
    log: Log = print,
) -> PhaseResult:
    """Train one phase's cross-fitted members on the training videos, and keep their last epoch or the one with
    the best out-of-fold SROCC.

    The training videos (``splits['train']`` and ``['val']``) are cut into ``cfg.crossfit_folds`` folds by
    source content; member ``k`` trains on every fold but ``k``, all members in one pass over each batch. So
    every training video has a prediction from a member that never saw its source (out of fold): those fit
    the calibration, the intervals' residuals and the domain's threshold, and are the ``val`` metrics. A new
    video's prediction is the members' mean. ``init`` (the previous phase's kept model) gives the starting
    weights; the input standardisation is always recomputed from this phase's features.
    """
    check_phase(cfg)
    started = time.perf_counter()
    spec = FeatureSpec.from_config(cfg)
    features.load(spec.kinds)
    device = features.device
    part = training_part(splits)
    folds = crossfit_folds(part, cfg.crossfit_folds)
    members = int(folds.max()) + 1
    videos = features.videos(part.keys)
    trains = torch.from_numpy(folds[:, None] != np.arange(members)[None, :]).to(device)  # (N, members)
    mos_mean, mos_std = float(part.mos.mean()), float(part.mos.std()) or 1.0
    target = torch.tensor((part.mos - mos_mean) / mos_std, dtype=torch.float32, device=device)  # (N,)

    torch.manual_seed(cfg.seed)
    model = ChunkRegressor.from_config(features.width(spec.kinds), cfg, members).to(device)
    if init is not None:
        _transfer(init, model, phase)
    model.standardise_with(*features.moments(videos, spec.kinds))
    optimizer = make_optimizer(cfg, model)
    per_epoch = min(len(part), cfg.epoch_videos or len(part))
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(cfg.scheduler.warmup_epochs * steps_per_epoch, cfg.num_epochs * steps_per_epoch)
    )
    epochs = _epoch_videos(len(part), per_epoch, torch.Generator().manual_seed(cfg.seed))
    chunk_draws = torch.Generator().manual_seed(cfg.seed + 1)
    monitored = _monitored(len(part), cfg)

    def out_of_fold(among: np.ndarray) -> np.ndarray:
        """The prediction (MOS scale) of each of the training videos ``among`` by the member that left it out."""
        oof = np.empty(len(among))
        for member in range(members):
            mine = np.flatnonzero(folds[among] == member)
            oof[mine] = _predict(model, features, videos[among[mine]], spec.kinds, member)[:, 0]
        return oof * mos_std + mos_mean

    def validate() -> tuple[dict, np.ndarray]:
        oof = out_of_fold(monitored)
        return evaluate(part.mos[monitored], oof), oof

    val, oof = validate()
    best_srocc, best_epoch, best_oof = _score(val), 0, oof  # what best_val keeps until an epoch beats it
    best_state = copy.deepcopy(model.state_dict()) if cfg.select_epoch == "best_val" else None
    history = [_row(phase, 0, float("nan"), torch.full((3,), float("nan")), val, (0.0, 0.0))]
    log(f"{phase}: {len(part)} training videos in {members} folds by {cfg.data.group_column} (member k trains on "
        f"all but fold k), inputs {'+'.join(spec.kinds)} ({model.architecture['in_dim']}), "
        + _epoch_shape(cfg, per_epoch, len(part), len(monitored))
        + f"; epoch 0 out-of-fold srocc {history[0]['val_srocc']:.4f} "
        f"(standardisation and epoch 0: {time.perf_counter() - started:.1f} s)")
    for epoch in range(1, cfg.num_epochs + 1):
        started, lr = time.perf_counter(), schedule.get_last_lr()[0]
        model.train()
        totals = torch.zeros(3, device=device)  # loss, mse, rank summed over videos, averaged over members
        for batch in next(epochs).to(device).split(cfg.batch_size):
            chunks = features.sample_chunks(videos[batch], cfg.train_chunks, chunk_draws) if cfg.train_chunks else None
            x, mask = features.batch(videos[batch], spec.kinds, chunks)  # (B, C, D), (B, C)
            totals += train_step(model, optimizer, x, mask, target[batch], trains[batch], cfg.loss) * len(batch)
            schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so the epoch's timing covers its queued GPU work
        trained = time.perf_counter()
        val, oof = validate()
        improved = cfg.select_epoch == "best_val" and _score(val) > best_srocc
        if improved:
            best_srocc, best_epoch, best_state, best_oof = _score(val), epoch, copy.deepcopy(model.state_dict()), oof
        seconds = (trained - started, time.perf_counter() - trained)
        history.append(_row(phase, epoch, lr, totals.cpu() / per_epoch, val, seconds))
        log(_progress(history[-1], cfg.num_epochs, improved))

    if cfg.select_epoch == "last":
        best_epoch, best_oof = cfg.num_epochs, oof
    else:
        model.load_state_dict(best_state)
    model.eval()
    # the kept epoch's pass when it covered every video, else one pass over all of them now
    oof = best_oof if len(monitored) == len(part) else out_of_fold(np.arange(len(part)))
    log(f"{phase}: kept epoch {best_epoch} ({'the last' if cfg.select_epoch == 'last' else 'best out-of-fold'}, "
        f"out-of-fold srocc {_score(evaluate(part.mos, oof)):.4f})"
        + ("; no epoch beat the initial model" if best_epoch == 0 else ""))
    calibration = fit_calibration(oof, part.mos)
    residuals = Residuals.of(part.mos - calibration(oof), folds, members)
    sample = reference_sample(len(part), cfg.seed)
    reference = videos[torch.from_numpy(sample).to(device)]
    domain = features.derived("domain", lambda: fit_domain(features.video_means(reference, spec.kinds), folds[sample]),
                              spec.kinds, reference, folds[sample])
    model_spec = ModelSpec(
        features=spec,
        widths={kind: features.width([kind]) for kind in spec.kinds},
        store=features.store.settings,
        mos_mean=mos_mean,
        mos_std=mos_std,
        calibration=calibration,
        config=cfg,
        residuals=residuals,
        domain=domain,
        held_out_by=dict(zip(part.keys, map(int, folds))),
    )
    scored = {"val": dataclasses.replace(part, name="val"),
              **{name: split for name, split in splits.items() if is_test(name)}}
    members_raw = {name: _predict(model, features, features.videos(split.keys), spec.kinds) * mos_std + mos_mean
                   for name, split in scored.items() if name != "val"}
    raw = {"val": oof, **{name: outputs.mean(1) for name, outputs in members_raw.items()}}
    members_raw["val"] = oof[:, None]  # a training video is scored by the member that left it out
    predictions, metrics = {}, {}
    for name, split in scored.items():
        predictions[name] = calibration(raw[name])
        low, high = residuals.interval(calibration(members_raw[name]))
        metrics[name] = {**evaluate(split.mos, predictions[name]),
                         "coverage": coverage(split.mos, np.minimum(low, predictions[name]),
                                              np.maximum(high, predictions[name]))}
    log(f"{phase}: calibration over predictions {calibration.fitted_range[0]:.2f}..{calibration.fitted_range[1]:.2f}; "
        + ", ".join(f"{name} {DEFAULT_LEVEL:.0%}-interval coverage {m['coverage']:.2f}" for name, m in metrics.items()))
    return PhaseResult(phase, model, model_spec, best_epoch, history, scored, predictions, raw, metrics)


def _monitored(videos: int, cfg: Config) -> np.ndarray:
    """The training videos whose out-of-fold SROCC each epoch reports: every one when that picks the epoch
    (``select_epoch: best_val``) or when there are few; else a fixed random sample, as the curves only need a
    sample and a pass over every video costs as much as a fifth of a training epoch."""
    if cfg.select_epoch == "best_val" or videos <= _MONITORED_VIDEOS:
        return np.arange(videos)
    return np.sort(np.random.default_rng(cfg.seed).choice(videos, _MONITORED_VIDEOS, replace=False))


def _epoch_videos(videos: int, per_epoch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Each epoch's videos in training order: consecutive slices of a stream of reshuffled passes over all videos,
    so every video is visited as often as any other (within one) however epochs cut the passes."""
    stream = torch.empty(0, dtype=torch.long)
    while True:
        while len(stream) < per_epoch:
            stream = torch.cat([stream, torch.randperm(videos, generator=generator)])
        yield stream[:per_epoch]
        stream = stream[per_epoch:]


def _epoch_shape(cfg: Config, per_epoch: int, videos: int, monitored: int) -> str:
    """How an epoch reads the training videos, for the phase's first log line."""
    shape = f"{per_epoch} videos an epoch" + (f" (of {videos}: epoch_videos)" if per_epoch < videos else "")
    shape += f", {cfg.train_chunks} chunk(s) of each per step" if cfg.train_chunks else ", every chunk"
    return shape + (f", curves on {monitored} of them" if monitored < videos else "")


def crossfit_folds(part: Split, folds: int) -> np.ndarray:
    """The fold (0..K-1) of each training video: ``GroupKFold`` by source content, K = ``folds`` or the number of
    groups when there are fewer (a group never spans two folds, so no member has seen a held-out source)."""
    groups = part.groups.astype(str)
    k = min(folds, len(set(groups)))
    assigned = np.empty(len(groups), dtype=np.int64)
    for fold, (_, held) in enumerate(GroupKFold(n_splits=k).split(groups, groups=groups)):
        assigned[held] = fold
    return assigned


def train_step(model: ChunkRegressor, optimizer: torch.optim.Optimizer, x: torch.Tensor, mask: torch.Tensor,
               target: torch.Tensor, trains: torch.Tensor, loss: LossConfig) -> torch.Tensor:
    """One optimizer step on a batch ``x`` ``(B, C, D)``, ``mask`` ``(B, C)``, ``target`` ``(B,)``, ``trains``
    ``(B, members)`` (which member learns from which video); returns (loss, mse, rank), means over members.

    The members' losses are summed, so each member's gradient is that of its own loss alone.
    """
    pred = model(x, mask)  # (B, members)
    mse = mse_losses(pred, target, trains)
    rank = rank_losses(pred, target, trains, loss.rank_margin)
    total = loss.mse_weight * mse + loss.rank_weight * rank  # (members,)
    optimizer.zero_grad(set_to_none=True)
    total.sum().backward()
    optimizer.step()
    return torch.stack([total.mean(), mse.mean(), rank.mean()]).detach()


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
def _predict(model: ChunkRegressor, features: ChunkFeatures, videos: torch.Tensor, kinds: tuple[str, ...],
             member: int | None = None) -> np.ndarray:
    """Every member's outputs (standardised MOS, float64 ``(videos, members)``) for ``videos``; with ``member``,
    that member's alone ``(videos, 1)``."""
    model.eval()
    if len(videos) == 0:
        return np.empty((0, 1 if member is not None else model.members))
    per_batch = max(1, _PREDICT_ROWS // int(features.counts[videos].max()))
    outputs = [model(*features.batch(chunk, kinds), member=member) for chunk in videos.split(per_batch)]
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
    """Out-of-fold SROCC for model selection (undefined, e.g. constant predictions, ranks lowest)."""
    return metrics["srocc"] if math.isfinite(metrics["srocc"]) else -math.inf


def _row(phase: str, epoch: int, lr: float, losses: torch.Tensor, val: dict, seconds: tuple[float, float]) -> dict:
    loss, mse, rank = losses.tolist()
    return {"phase": phase, "epoch": epoch, "lr": lr, "train_loss": loss, "train_mse": mse, "train_rank": rank,
            **{f"val_{k}": v for k, v in val.items()}, "train_seconds": seconds[0], "val_seconds": seconds[1]}


def _progress(row: dict, epochs: int, improved: bool) -> str:
    return (f"{row['phase']:6s} epoch {row['epoch']:3d}/{epochs}  lr {row['lr']:.2e}  "
            f"loss {row['train_loss']:.4f} (mse {row['train_mse']:.4f}, rank {row['train_rank']:.4f})  "
            f"out-of-fold srocc {row['val_srocc']:.4f} plcc {row['val_plcc']:.4f}  "
            f"{row['train_seconds']:.1f}+{row['val_seconds']:.1f}s"
            + ("  *" if improved else ""))
