"""A fit job (both phases on one split, written to one run directory), and many of them in parallel.

Parallel jobs go through joblib's active backend, so ``with joblib.parallel_backend("dask"): run_jobs(...)``
spreads them over a Dask cluster unchanged. Each worker process keeps the features it read
(:func:`pipeline.fit.data.shared_features`), so the jobs a worker runs share one read of the store.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from joblib import Parallel, delayed

from pipeline.backbones.device import resolve_device, usable_cpus
from pipeline.config import Config, to_dict
from pipeline.errors import UsageError
from pipeline.feature_kinds import BY_NAME
from pipeline.features import FeatureSettings
from pipeline.fit.baseline import run_baselines
from pipeline.fit.checks import check_phases
from pipeline.fit.data import FeatureSpec, drop_uncached, read_splits, shared_features
from pipeline.fit.outputs import RunLog, write_baselines, write_configs, write_results
from pipeline.fit.protocols import Holdout
from pipeline.fit.train import PhaseResult, deterministic, train_phase
from pipeline.store import FeatureStore
from pipeline.metric_tables import metrics_table
from pipeline.trees import flatten


# Backbone of a feature kind -> (the extract key that turns it off, the fit override that does without it).
_EXCLUDED_BY = {
    "nss": ("extract.nss", "features.nss=false"),
    "slowfast": ("extract.temporal", "features.temporal=[]"),
}


@dataclass
class FitJob:
    """The two phases of one fit: the coarse config, the fine one (None: coarse only), and where results go."""

    coarse: Config
    fine: Config | None
    out_dir: Path
    holdout: Holdout | None = None  # a fold or repeat of train_csv held out as the test split
    echo: bool = True  # print progress to the console (parallel jobs only write their log.txt)


def run_job(job: FitJob) -> dict[str, dict[str, dict]]:
    """Run both phases of ``job``, write its run directory, and return its metrics (``[phase][split]``)."""
    check_phases(job.coarse, job.fine)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(job.out_dir / "log.txt", job.echo)
    write_configs(job.out_dir, job.coarse, job.fine)
    log(f"run {job.out_dir}" + (f" ({job.holdout.describe()})" if job.holdout else ""))
    coarse = {k: v for k, v in flatten(to_dict(job.coarse)).items() if not k.startswith("extract.")}
    log("config: " + " ".join(f"{k}={v}" for k, v in coarse.items()))
    if job.fine is not None:
        fine = flatten(to_dict(job.fine))
        log("fine phase changes: " + " ".join(f"{k}={fine[k]}" for k, v in coarse.items() if fine[k] != v))
    store = FeatureStore.open(job.coarse.data.store)
    splits = drop_uncached(read_splits(job.coarse, job.holdout, log), store, log)
    keys = sorted({key for split in splits.values() for key in split.keys})  # the same for every fold of a run
    features = shared_features(store, keys, resolve_device(job.coarse.device))
    phases = [(phase, cfg) for phase, cfg in (("coarse", job.coarse), ("fine", job.fine)) if cfg is not None]
    kinds = sorted({kind for _, cfg in phases for kind in FeatureSpec.from_config(cfg).kinds})
    _check_extracted(store, kinds)
    started = time.perf_counter()
    features.load(kinds)  # every phase's kinds now: a video lacking one fails before any training
    log(f"features: {len(keys)} videos, {features.rows} chunk rows of {', '.join(kinds)} in memory "
        f"({features.nbytes / 1e9:.2f} GB; {time.perf_counter() - started:.1f} s to read)")
    results: list[PhaseResult] = []
    with deterministic():
        for phase, cfg in phases:
            results.append(train_phase(phase, cfg, features, splits, results[-1].model if results else None, log))
    last = phases[-1][1]
    baselines = run_baselines(last.baselines, features, splits, FeatureSpec.from_config(last).kinds, log)
    baselines = write_baselines(job.out_dir, baselines)  # first, so that the report written with the results shows them
    metrics = write_results(job.out_dir, results)
    log("\n" + metrics_table(["phase", "split"], (([phase, split], values)
                                                  for phase, by_split in {**metrics, **baselines}.items()
                                                  for split, values in by_split.items())))
    return metrics


def run_jobs(jobs: list[FitJob], n_jobs: int = 1) -> Iterator[dict[str, dict[str, dict]]]:
    """Yield the metrics of each job, in order; ``n_jobs`` > 1 runs them in parallel worker processes."""
    if n_jobs == 1 or len(jobs) == 1:
        yield from (run_job(job) for job in jobs)
        return
    for job in {(repr(job.coarse.data), job.coarse.seed, job.holdout): job for job in jobs}.values():
        read_splits(job.coarse, job.holdout, log=lambda _: None)  # label errors surface here, typed, not in a worker
    threads = max(1, usable_cpus() // n_jobs)
    quiet = [dataclasses.replace(job, echo=False) for job in jobs]
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_in_worker)(job, threads) for job in quiet)


def _in_worker(job: FitJob, threads: int) -> dict[str, dict[str, dict]]:
    torch.set_num_threads(threads)  # workers share the cores: no oversubscription
    return run_job(job)


def _check_extracted(store: FeatureStore, kinds: list[str]) -> None:
    """Name the way out when a phase reads a kind that the store's settings exclude (no extraction can add it)."""
    if not FeatureSettings.describes(store.settings.values):
        return  # features made elsewhere: the read says what is missing
    settings = FeatureSettings.from_dict(store.settings.values, str(store.root))
    held = settings.kinds(settings.levels)
    for kind in kinds:
        backbone = BY_NAME[kind].backbone
        if backbone in _EXCLUDED_BY and kind not in held:
            extract_key, fit_without = _EXCLUDED_BY[backbone]
            raise UsageError(f"{store.root}: extracted with {extract_key}: false, so it has no {kind!r} features; "
                             f"fit without them (--set {fit_without}) or extract into a new store with {extract_key}: true")
