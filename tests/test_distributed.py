"""Extraction on a real Dask LocalCluster (worker processes): same store as one process, resumes, survives a kill."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from fit_fixtures import make_store, write_configs, write_csv

from pipeline.cli import extract
from pipeline.config import load_config
from pipeline.distributed import Cluster, connect, extract_on_cluster, fits_on_cluster, local_index, pick_device
from pipeline.extract.run import extract_videos
from pipeline.fit.run import fit
from pipeline.store import FeatureStore
from videos import TINY_EXTRACT_YAML, make_video

KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")
CLIPS = [f"clip{i}.mp4" for i in range(6)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six good videos, a corrupt one and a config; the CSV also names a missing file."""
    root = tmp_path_factory.mktemp("videos")
    for i, name in enumerate(CLIPS):
        make_video(root / name, frames=72, fps=24, seed=i)
    (root / "corrupt.mp4").write_bytes(b"this is not a video" * 100)
    (root / "labels.csv").write_text("filename\n" + "".join(f"{n}\n" for n in [*CLIPS, "corrupt.mp4", "missing.mp4"]))
    (root / "config.yml").write_text(TINY_EXTRACT_YAML)
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install '.[dist]')")
    with connect("local:2") as connected:
        yield connected


@pytest.fixture(scope="module")
def reference(videos: Path, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Features of a single-process run, with the torch threads of one cluster worker (float results depend on them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cluster.threads)
    try:
        store = tmp_path_factory.mktemp("reference") / "store"
        extract_videos(pairs(videos, CLIPS), store, load_config(videos / "config.yml").extract, progress=False)
    finally:
        torch.set_num_threads(threads)
    return table(store)


def pairs(videos: Path, names: list[str]) -> list[tuple[str, str]]:
    return [(name, str(videos / name)) for name in names]


def table(store: Path) -> dict:
    read = FeatureStore.open(store).read(KINDS)
    return {key: {kind: read.features[kind][read.rows(key)] for kind in KINDS} for key in read.keys}


def assert_same_features(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        for kind in KINDS:
            np.testing.assert_array_equal(a[key][kind], b[key][kind], err_msg=f"{key} {kind}")


def shard_pid(path: Path) -> int:
    return int(re.fullmatch(r"shard-\d+-.+-(\d+)-[0-9a-f]+\.h5", path.name).group(1))


def keys_by_pid(store: Path) -> dict[int, set[str]]:
    """The videos each process wrote, from the pid in each complete shard's name."""
    written: dict[int, set[str]] = {}
    for path in store.glob("shard-*.h5"):
        with h5py.File(path, "r") as f:
            written.setdefault(shard_pid(path), set()).update(f["index/key"].asstr()[()])
    return written


@pytest.mark.slow
def test_cluster_store_equals_single_process_and_resumes(videos: Path, cluster: Cluster, reference: dict,
                                                         tmp_path: Path) -> None:
    cfg = load_config(videos / "config.yml").extract
    store = tmp_path / "store"
    todo = pairs(videos, [*CLIPS, "corrupt.mp4", "missing.mp4"])
    summary = extract_on_cluster(todo, store, cfg, cluster, videos_per_task=2, progress=False)
    assert sorted(summary.done) == CLIPS and summary.skipped == []
    assert sorted(summary.failed) == ["corrupt.mp4", "missing.mp4"]
    assert sorted(FeatureStore.open(store).failures()) == ["corrupt.mp4", "missing.mp4"]
    assert_same_features(table(store), reference)
    assert len(keys_by_pid(store)) == 2, "both workers should have written shards"

    shards = sorted(store.glob("shard-*.h5"))
    again = extract_on_cluster(todo, store, cfg, cluster, progress=False)
    assert again.done == [] and sorted(again.skipped) == CLIPS and sorted(again.failed) == sorted(summary.failed)
    assert sorted(store.glob("shard-*.h5")) == shards


@pytest.fixture(params=[3, 0], ids=["dask-reruns-the-task", "split-into-one-video-tasks"])
def allowed_failures(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[int]:
    """Worker deaths the scheduler allows a task: after more, the client gets KilledWorker and splits the task."""
    def set_allowed(n: int, dask_scheduler) -> int:
        before, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
        return before

    before = cluster.client.run_on_scheduler(set_allowed, request.param)
    yield request.param
    cluster.client.run_on_scheduler(set_allowed, before)


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_replaced_and_its_task_rerun(videos: Path, cluster: Cluster, reference: dict,
                                                                 allowed_failures: int, tmp_path: Path) -> None:
    """SIGKILL the first worker to commit a shard: its task's other videos run again, the store ends complete."""
    store = tmp_path / "store"
    killed: list[int] = []
    finished = threading.Event()

    def kill_first_writer() -> None:
        while not finished.wait(0.005):
            shards = list(store.glob("shard-*.h5"))
            if shards:
                killed.append(shard_pid(shards[0]))
                os.kill(killed[0], signal.SIGKILL)
                return

    from distributed import get_task_stream

    killer = threading.Thread(target=kill_first_writer)
    killer.start()
    try:
        with get_task_stream(cluster.client) as stream:
            summary = extract_on_cluster(pairs(videos, CLIPS), store, load_config(videos / "config.yml").extract,
                                         cluster, videos_per_task=3, progress=False)
    finally:
        finished.set()
        killer.join()
    ended = [task["key"] for task in stream.data if task["key"].startswith("_extract_task")]
    if allowed_failures:
        assert len(ended) == 2, ended  # the killed task ran again, as itself
    else:
        assert len(ended) >= 3, ended  # the rest of the killed task ran as one-video tasks
    assert killed, "no shard was written before the run ended"
    assert summary.failed == {} and sorted(summary.done) == CLIPS
    assert_same_features(table(store), reference)
    written = keys_by_pid(store)
    task = next(t for t in (set(CLIPS[:3]), set(CLIPS[3:])) if written[killed[0]] <= t)
    assert len(written[killed[0]]) < len(task), "the worker finished its task before it was killed"
    assert task - written[killed[0]] <= set().union(*(keys for pid, keys in written.items() if pid != killed[0]))
    cluster.client.wait_for_workers(2, timeout=120)  # the dead worker's replacement
    assert killed[0] not in cluster.client.run(os.getpid).values()


@pytest.mark.slow
def test_a_sweep_fits_on_the_cluster_workers(cluster: Cluster, tmp_path: Path) -> None:
    """The sweep's fits run as tasks on the workers (joblib's Dask backend) and rank as a serial sweep does."""
    from distributed import get_task_stream

    csv = write_csv(tmp_path / "labels.csv", make_store(tmp_path / "store", videos=24, max_chunks=2))
    config = write_configs(tmp_path, tmp_path / "store", csv, coarse={"num_epochs": 2}, fine={"num_epochs": 1})
    sweep = tmp_path / "sweep.yml"
    sweep.write_text(yaml.safe_dump({"grid": {"optimizer.lr": [1e-3, 1e-4]}}))
    with get_task_stream(cluster.client) as stream, fits_on_cluster(cluster) as jobs:
        fit(config, sweep=sweep, out=tmp_path / "cluster", jobs=jobs)
    assert sum("_in_worker" in task["key"] for task in stream.data) >= 1, [t["key"] for t in stream.data]
    fit(config, sweep=sweep, out=tmp_path / "serial", jobs=1)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cluster" / "sweep.csv"),
                                  pd.read_csv(tmp_path / "serial" / "sweep.csv"), rtol=1e-6)


@pytest.mark.parametrize("spec, gpu, gpus, device", [
    ("auto", 3, 2, "cuda:1"), ("cuda", 2, 2, "cuda:0"), ("auto", 5, 1, "cuda:0"),
    ("auto", 1, 0, "auto"), ("cpu", 1, 2, "cpu"), ("cuda:1", 0, 4, "cuda:1"), ("cuda", 0, 0, "cuda"),
])
def test_workers_spread_over_the_gpus(spec: str, gpu: int, gpus: int, device: str) -> None:
    assert pick_device(spec, gpu, gpus) == device


@pytest.mark.parametrize("name, index", [(0, 0), (3, 3), ("SLURMCluster-7", None), ("tcp://10.0.0.5:40213", None),
                                         ("w", None)])
def test_only_a_local_clusters_worker_number_is_read_from_its_name(name: object, index: int | None) -> None:
    assert local_index(name) == index  # not a port, not a job number across the cluster


def run_cli(videos: Path, tmp_path: Path, cluster: str) -> tuple[int, str]:
    result = CliRunner().invoke(extract, ["-o", str(videos / "config.yml"), "--csv", str(videos / "labels.csv"),
                                          "--store", str(tmp_path / "store"), "--no-progress", "--cluster", cluster])
    return result.exit_code, result.output


def test_without_dask_the_cluster_option_says_what_to_install(videos: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    code, out = run_cli(videos, tmp_path, "local:2")
    assert code == 2 and "pip install '.[dist]'" in out, out
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("spec", ["local:0", "local:two", "local"])
@pytest.mark.slow
def test_a_malformed_cluster_spec_exits_2(videos: Path, tmp_path: Path, spec: str) -> None:
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    code, out = run_cli(videos, tmp_path, spec)
    assert code == 2 and "expected local:N" in out, out
