"""Extraction and fits on a Dask cluster: ``--cluster local:N`` (worker processes here) or a scheduler address.

Extraction splits the videos into tasks of a few videos each. A task is an ordinary extraction run
(:func:`pipeline.extract.run.extract_videos`) inside a Dask worker: it skips what the store holds, writes its
videos as its own shards straight into the store directory, and returns its summary. Each worker process
builds the models once and keeps them for every task it runs (on its own GPU when there are several). So
the store must be on a file system every worker and the client see at the same path, and a worker that
dies loses only its shard in progress: Dask runs the task again elsewhere and the new run skips the videos
already stored. A task whose worker keeps dying (e.g. a decoder crash) is split into one-video tasks, so
only the video at fault fails.

Fits go through joblib's Dask backend (:func:`fits_on_cluster`), which :func:`pipeline.fit.jobs.run_jobs`
uses unchanged. Dask is an optional dependency (``pip install .[dist]``); it is imported only here, only
when a cluster is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from pipeline.backbones import Backbones
from pipeline.backbones.device import local_gpu, usable_cpus
from pipeline.config import ExtractConfig, to_dict
from pipeline.errors import UsageError
from pipeline.extract.plan import ExtractSummary
from pipeline.extract.run import extract_videos
from pipeline.features import FeatureSettings
from pipeline.store import FeatureStore, extraction_need

if TYPE_CHECKING:
    from distributed import Client, Future

INSTALL_HINT = "pip install '.[dist]' (or: pip install 'dask[distributed]')"
#: Tasks per task slot of the cluster: enough that fast workers take over the work of slow ones.
_TASKS_PER_SLOT = 4
_CONNECT_TIMEOUT_S = 30
#: How long joblib waits for a first worker (batch-queued workers, e.g. SLURM jobs, may take a while).
_WORKERS_TIMEOUT_S = 600

# This worker process's models: built by its first task, reused by the next ones (only the latest config kept).
_worker_backbones: dict[str, Backbones] = {}


@dataclass
class Cluster:
    """A connected Dask client, and the torch threads each worker process should use (None: leave as started)."""

    client: Client
    threads: int | None

    def slots(self) -> int:
        """Tasks the cluster runs at once (its workers' threads), at least 1 while workers are still starting."""
        return max(1, sum(self.client.nthreads().values()))


@contextmanager
def connect(spec: str) -> Iterator[Cluster]:
    """Connect to ``local:N`` (a new cluster of N one-thread worker processes here, closed on exit) or a scheduler.

    Raises UsageError when Dask is not installed, ``spec`` is malformed, or no scheduler answers at it.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(f"--cluster {spec}: Dask is not installed; install the dist extra: {INSTALL_HINT}") from None
    local = re.fullmatch(r"local:(\d+)", spec.strip())
    if spec.strip().startswith("local") and (local is None or int(local.group(1)) < 1):
        raise UsageError(f"--cluster {spec!r}: expected local:N with N >= 1 worker processes, or a scheduler "
                         "address such as tcp://host:8786")
    with ExitStack() as stack:
        if local:
            workers = int(local.group(1))
            threads = max(1, usable_cpus() // workers)
            # Read whenever a nanny (re)starts its worker, so they stay set for the cluster's whole life.
            stack.enter_context(dask.config.set(worker_config(threads)))
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))  # any free port: clusters side by side
            client = stack.enter_context(Client(cluster))
            yield Cluster(client, threads=threads)
            return
        try:
            client = stack.enter_context(Client(spec, timeout=_CONNECT_TIMEOUT_S))
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--cluster {spec}: no Dask scheduler answered there ({exc}); start one "
                             "(dask scheduler, or a dask-jobqueue SLURMCluster) and pass its address") from None
        yield Cluster(client, threads=None)


def worker_config(threads: int) -> dict:
    """Dask settings for extraction workers with ``threads`` torch threads each (README: for other clusters too).

    Non-daemon workers may start processes of their own (the ``--workers`` decode pool). Dask's default
    ``MALLOC_TRIM_THRESHOLD_`` pins glibc's mmap threshold, so every large tensor is a fresh mmap, which slows
    extraction (BENCHMARKS.md, "Distributed extraction"). The statistical profiler would sample every task
    for nothing here.
    """
    return {
        "distributed.worker.daemon": False,
        "distributed.worker.profile.enabled": False,
        "distributed.nanny.pre-spawn-environ": {
            name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        },
    }


def extract_on_cluster(
    videos: Iterable[tuple[str, str | Path]],
    store: str | Path,
    cfg: ExtractConfig,
    cluster: str | Cluster,
    *,
    levels: Sequence[str] | None = None,
    videos_per_task: int | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract ``(key, path)`` videos into ``store`` on a Dask cluster; return what was done, skipped and failed.

    Same result as :func:`pipeline.extract.run.extract_videos` in one process, features bit for bit. ``cluster``:
    a spec for :func:`connect`, or a cluster already connected. ``videos_per_task`` (default: about four
    tasks per task slot, at most ``cfg.shard_videos``) sets the granularity of scheduling and retries.
    Run-level errors (bad levels, a store made with other settings, missing weights) are raised.
    """
    if isinstance(cluster, str):
        with connect(cluster) as connected:
            return extract_on_cluster(videos, store, cfg, connected, levels=levels,
                                      videos_per_task=videos_per_task, progress=progress)
    from distributed import as_completed

    start = time.perf_counter()
    store = os.path.abspath(store)  # workers may run elsewhere, in another directory
    levels = tuple(cfg.levels) if levels is None else tuple(dict.fromkeys(levels))
    client, threads = cluster.client, cluster.threads
    # An empty run on one worker checks everything run-wide once (levels, weights, the store's settings)
    # and creates the store; it also builds that worker's models, which its next tasks reuse.
    settings, kinds = client.submit(_prepare, store, cfg, levels, threads, pure=False).result()
    feature_store = FeatureStore.open(store, settings.to_dict())
    summary = ExtractSummary()
    todo = _missing(videos, feature_store, set(kinds), summary)
    size = videos_per_task or min(cfg.shard_videos, math.ceil(len(todo) / (_TASKS_PER_SLOT * cluster.slots())))
    size = max(1, size)

    def submit(batch: list[tuple[str, str]]) -> Future:
        return client.submit(_extract_task, batch, store, cfg, levels, threads, pure=False)

    futures = {submit(todo[i:i + size]): todo[i:i + size] for i in range(0, len(todo), size)}
    pending = as_completed(futures)
    bar = tqdm(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for future in pending:
            batch = futures.pop(future)
            error = future.exception()
            if error is None:
                _merge(summary, future.result())
                bar.update(len(batch))
            elif _worker_died(error):
                retry = _missing(batch, feature_store, set(kinds), stored := ExtractSummary())
                summary.done += stored.skipped  # stored by the task before its worker died
                bar.update(len(stored.skipped))
                if len(retry) > 1:  # isolate the video that takes its worker down
                    for video in retry:
                        one = submit([video])
                        futures[one] = [video]
                        pending.add(one)
                else:
                    failed = {key: f"{path}: its Dask worker died each time it extracted this video (e.g. a "
                                   "decoder crash); extract it with --workers 1 to isolate the decoder"
                              for key, path in retry}
                    feature_store.record_failures(failed)
                    summary.failed.update(failed)
                    bar.update(len(retry))
            else:
                client.cancel(list(futures))
                raise error
            bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


@contextmanager
def fits_on_cluster(cluster: str | Cluster) -> Iterator[int]:
    """Inside, joblib runs its parallel tasks (the fits of a sweep or of folds) on the workers of ``cluster``.

    Yields the ``jobs`` to pass to :func:`pipeline.fit.run.fit`: the cluster's task slots, and at least 2,
    since :func:`pipeline.fit.jobs.run_jobs` runs the jobs of a single slot in this process.
    """
    import joblib

    if isinstance(cluster, str):
        with connect(cluster) as connected, fits_on_cluster(connected) as jobs:
            yield jobs
        return
    with joblib.parallel_config(backend="dask", client=cluster.client, wait_for_workers_timeout=_WORKERS_TIMEOUT_S):
        yield max(2, cluster.slots())


def pick_device(spec: str, gpu: int, cuda_devices: int) -> str:
    """The device a worker uses for ``spec``: ``auto`` and ``cuda`` become ``cuda:<gpu>`` when GPUs are visible.

    ``gpu`` comes from :func:`pipeline.backbones.device.local_gpu` (the launcher's local rank, else the first
    visible GPU). An explicit ``cuda:N`` or ``cpu`` is kept.
    """
    if spec in ("auto", "cuda") and cuda_devices > 0:
        return f"cuda:{gpu % cuda_devices}"
    return spec


def local_index(name: object) -> int | None:
    """A ``--cluster local:N`` worker's number: LocalCluster names its workers 0..N-1, as integers.

    Other names say nothing about the node: ``dask worker`` names a worker by its address (whose trailing
    digits are a port) and dask-jobqueue by its job, numbered across the whole cluster.
    """
    return name if isinstance(name, int) else None


# -- in the workers ------------------------------------------------------------------------------------------

def _prepare(store: str, cfg: ExtractConfig, levels: tuple[str, ...],
             threads: int | None) -> tuple[FeatureSettings, tuple[str, ...]]:
    """Run an empty extraction (checks levels, weights, store settings; creates the store); return its settings and kinds."""
    backbones = _backbones(cfg, threads)
    extract_videos([], store, backbones.cfg, levels=levels, backbones=backbones, progress=False)
    return backbones.settings, backbones.kinds(levels)


def _extract_task(videos: list[tuple[str, str]], store: str, cfg: ExtractConfig, levels: tuple[str, ...],
                  threads: int | None) -> ExtractSummary:
    """One task: an ordinary extraction run of a few videos with this worker's models."""
    backbones = _backbones(cfg, threads)
    return extract_videos(videos, store, backbones.cfg, levels=levels, backbones=backbones, progress=False)


def _backbones(cfg: ExtractConfig, threads: int | None) -> Backbones:
    """This worker's models for ``cfg``, built on first use, on the GPU its local rank picks."""
    from distributed import get_worker

    if cfg.workers != "auto" and cfg.workers and multiprocessing.current_process().daemon:  # auto decodes here
        raise UsageError(
            f"extract.workers={cfg.workers} decodes in child processes, which daemonic Dask workers cannot start: "
            "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False in their environment, or use --workers 0"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    gpus = torch.cuda.device_count()
    device = pick_device(cfg.device, local_gpu(gpus, local_index=local_index(get_worker().name)), gpus)
    cfg = dataclasses.replace(cfg, device=device)
    key = json.dumps(to_dict(cfg), sort_keys=True)
    if key not in _worker_backbones:
        _worker_backbones.clear()
        if device.startswith("cuda:"):
            torch.cuda.set_device(device)
        _worker_backbones[key] = Backbones(cfg)
    return _worker_backbones[key]


# -- on the client -------------------------------------------------------------------------------------------

def _missing(videos: Iterable[tuple[str, str | Path]], store: FeatureStore, kinds: set[str],
             summary: ExtractSummary) -> list[tuple[str, str]]:
    """Videos the store lacks, with absolute paths; the stored ones (same file, every kind) go to ``summary.skipped``.

    The tasks check again as they run; this spares sending the work already done, e.g. when a run resumes.
    """
    cached = store.cached()
    todo: dict[str, str] = {}
    seen: set[str] = set()
    for key, path in videos:
        if key in seen:
            continue
        seen.add(key)
        if extraction_need(cached.get(key), path, kinds) is None:
            summary.skipped.append(key)
        else:
            todo[key] = os.path.abspath(path)
    return list(todo.items())


def _merge(summary: ExtractSummary, part: ExtractSummary) -> None:
    """Add a task's summary; what it found stored was stored during this run, by an attempt whose worker died."""
    summary.done += part.done + part.skipped
    summary.stale += part.stale
    summary.elsewhere += part.elsewhere
    summary.failed.update(part.failed)
    summary.shards += part.shards


def _worker_died(error: BaseException) -> bool:
    from distributed import KilledWorker

    return isinstance(error, KilledWorker)

