"""Extraction runs: skip what is cached, record failures, survive SIGKILL, decoder crashes and hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import extract
from pipeline.config import load_config
from pipeline.store import shards as shard_files
from pipeline.extract.decode_pool import DecodePool, feed_plan
from pipeline.extract.decoding import ChunkDecoded, Decoded, DecodedChunk, DecodeFailed, DecodeOptions, decode_video
from pipeline.errors import StoreError
from pipeline.backbones import Backbones
from pipeline.extract.heap import keep_freed_memory
from pipeline.extract.run import extract_videos
from pipeline.nss import NSS_DIM
from pipeline.feature_kinds import KIND_NAMES
from pipeline.store import FeatureStore
from decode_stubs import crashing_decode
from videos import TINY_EXTRACT_YAML, make_video

REPO = Path(__file__).resolve().parents[1]

# One thread: the CI machine is small and shared, and oversubscribed intra-op threads crawl.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with good videos and a labels CSV that also names a missing and a corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(6):
        make_video(root / f"clip{i}.mp4", frames=48, fps=24, seed=i)
    (root / "corrupt.mp4").write_bytes(b"this is not a video" * 100)
    names = [f"clip{i}.mp4" for i in range(6)] + ["corrupt.mp4", "missing.mp4"]
    (root / "labels.csv").write_text("filename,mos\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    (root / "good.csv").write_text("filename\n" + "".join(f"clip{i}.mp4\n" for i in range(3)))
    (root / "config.yml").write_text(TINY_EXTRACT_YAML)
    return root


def run(videos: Path, store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(extract, ["-o", str(videos / "config.yml"), "--store", str(store), "--no-progress",
                                          *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def table(store: Path, kinds=("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")) -> dict:
    read = FeatureStore.open(store).read(kinds)
    return {key: {kind: read.features[kind][read.rows(key)] for kind in kinds} for key in read.keys}


def assert_same_features(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        for kind in a[key]:
            np.testing.assert_array_equal(a[key][kind], b[key][kind], err_msg=f"{key} {kind}")


@pytest.mark.slow
def test_extracts_skips_cached_and_reports_failures(videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out = run(videos, store, "--csv", str(videos / "good.csv"))
    assert code == 0, out
    assert "extracted 3, skipped 0 (cached), failed 0" in out
    first = table(store)
    assert sorted(first) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert all(len(rows["spatial_fine"]) == 2 for rows in first.values())  # one row per second
    assert FeatureStore.open(store).cached()["clip0.mp4"].kinds == KIND_NAMES  # NSS too, by default

    code, out = run(videos, store, "--csv", str(videos / "labels.csv"))
    assert code == 3, out
    assert "extracted 3, skipped 3 (cached), failed 2" in out
    failures = FeatureStore.open(store).failures()
    assert sorted(failures) == ["corrupt.mp4", "missing.mp4"]
    assert "corrupt.mp4" in failures["corrupt.mp4"] and "not found" in failures["missing.mp4"]
    assert_same_features({k: v for k, v in table(store).items() if k in first}, first)

    os.utime(videos / "clip1.mp4", ns=(time.time_ns(), time.time_ns()))  # the file changed since extraction
    code, out = run(videos, store, "--csv", str(videos / "good.csv"))
    assert code == 0 and "extracted 1 (1 of them changed since cached), skipped 2" in out, out
    assert_same_features(table(store), {**table(store), **first})


@pytest.mark.slow
def test_a_level_added_later_keeps_the_others(videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    csv = str(videos / "good.csv")
    assert run(videos, store, "--csv", csv, "--levels", "coarse")[0] == 0
    assert FeatureStore.open(store).cached()["clip0.mp4"].kinds == ("spatial_coarse", "temporal_slow", "temporal_fast",
                                                                    "nss")
    coarse = table(store, ("spatial_coarse",))
    code, out = run(videos, store, "--csv", csv, "--levels", "fine")
    assert code == 0 and "extracted 3" in out, out
    assert_same_features(table(store, ("spatial_coarse",)), coarse)
    assert "spatial_fine" in FeatureStore.open(store).cached()["clip0.mp4"].kinds


@pytest.mark.slow
def test_other_settings_are_refused(videos: Path, tmp_path: Path) -> None:
    """A store made with other settings is a settings mismatch: exit 2, as when scoring (pipeline.errors)."""
    store = tmp_path / "store"
    assert run(videos, store, "--csv", str(videos / "good.csv"), "--levels", "coarse")[0] == 0
    code, out = run(videos, store, "--csv", str(videos / "good.csv"), "--set", "extract.levels.coarse.short_side=96")
    assert code == 2 and "levels.coarse.short_side: 64 vs. 96" in out, out


@pytest.mark.parametrize("args, message", [
    (["--levels", "medium"], "unknown level"),
    (["--set", "extract.colour=1"], "unknown config key"),
    (["--device", "tpu"], "device 'tpu'"),
])
def test_usage_errors_exit_2(videos: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, out = run(videos, tmp_path / "store", "--csv", str(videos / "good.csv"), *args)
    assert code == 2 and message in out, out


@pytest.mark.slow
def test_killed_run_resumes_to_the_clean_result(videos: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run, rerun the same command: the store equals a clean run's, and a .tmp is never read."""
    command = [sys.executable, str(REPO / "extract_features.py"), "-o", str(videos / "config.yml"),
               "--csv", str(videos / "labels.csv"), "--no-progress"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([*command, "--store", str(killed)], cwd=REPO, env=ONE_THREAD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(killed.glob("shard-*.h5")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert 1 <= len(list(killed.glob("shard-*.h5"))) < 6
    planted = killed / "shard-99999999999999999999-elsewhere-1-abcd.h5.tmp"  # another machine's shard in progress
    planted.write_bytes(b"half a shard")

    resumed = subprocess.run([*command, "--store", str(killed)], cwd=REPO, env=ONE_THREAD, capture_output=True,
                             text=True)
    assert resumed.returncode == 3, resumed.stderr
    assert "failed 2" in resumed.stdout and "skipped 0" not in resumed.stdout
    assert planted.exists()
    code, out = run(videos, clean, "--csv", str(videos / "labels.csv"), "--workers", "1")  # decoded elsewhere
    assert code == 3, out
    assert_same_features(table(killed), table(clean))
    assert sorted(FeatureStore.open(killed).failures()) == sorted(FeatureStore.open(clean).failures())


@pytest.mark.slow
def test_decode_pool_fails_only_the_video_whose_decoder_crashes_or_hangs(videos: Path) -> None:
    options = DecodeOptions.from_config(load_config(videos / "config.yml").extract)
    pool = DecodePool(2, options, timeout_s=3, decode=crashing_decode)
    try:
        events = list(pool.events([(0, "crash.mp4"), (1, "hang.mp4"), (2, str(videos / "clip0.mp4"))]))
    finally:
        pool.close()
    ends = {event.task: event for event in events if isinstance(event, (Decoded, DecodeFailed))}
    assert isinstance(ends[0], DecodeFailed) and "SIGSEGV" in ends[0].reason
    assert isinstance(ends[1], DecodeFailed) and "stalled" in ends[1].reason
    assert ends[2] == Decoded(2)
    chunks = [event.chunk for event in events if isinstance(event, ChunkDecoded) and event.task == 2]
    assert len(chunks) == 2 and all(isinstance(c, DecodedChunk) for c in chunks)
    assert tuple(chunks[0].clip.shape) == (8, 3, 32, 32)


def test_auto_workers_feed_the_models_without_oversubscribing_the_cores() -> None:
    assert feed_plan("auto", 16, cuda=True, models=True) == (14, 1)    # the GPU waits on decoding: all but two
    assert feed_plan("auto", 16, cuda=False, models=True) == (0, 16)   # CNNs on the CPU: decode in this process
    assert feed_plan("auto", 4, cuda=False, models=False) == (4, 1)    # NSS only: decoding is the work
    assert feed_plan("auto", 2, cuda=True, models=True) == (1, 2)
    assert feed_plan(3, 16, cuda=True, models=True) == (3, 5)          # a count is kept; threads fill the cores
    assert feed_plan(0, 8, cuda=False, models=False) == (0, 8)


# Blocks of 1.5-4.5 MB allocated and freed together, as a chunk's clip and NSS arrays are: the page faults of a round.
_CHURN = """
import resource, sys
import numpy as np
from pipeline.extract.heap import keep_freed_memory
if not keep_freed_memory():
    sys.exit(3)
def chunk():
    arrays = [np.ones(1_500_000 // 8 * (1 + i % 3)) for i in range(12)]
for _ in range(3):
    chunk()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    chunk()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_extraction_processes_keep_freed_memory_instead_of_faulting_it_back() -> None:
    # Without keep_freed_memory glibc gives such blocks back and each round faults about 6,000 pages in again.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", _CHURN], cwd=REPO, env=environment, capture_output=True, text=True,
                         timeout=60)
    if run.returncode == 3:
        pytest.skip("not glibc, or malloc tunables set in GLIBC_TUNABLES")
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) < 50


def test_allocator_thresholds_chosen_in_the_environment_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "2147483647")  # the README's tip for the backbones on a CPU
    assert not keep_freed_memory()
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576")
    assert not keep_freed_memory()


def test_extract_videos_summary(videos: Path, tmp_path: Path) -> None:
    cfg = load_config(videos / "config.yml").extract
    pairs = [("a", videos / "clip0.mp4"), ("a", videos / "clip1.mp4"), ("b", videos / "missing.mp4")]
    summary = extract_videos(pairs, tmp_path / "store", cfg, levels=["coarse"], progress=False)
    assert summary.done == ["a"] and list(summary.failed) == ["b"] and len(summary.shards) == 1
    assert FeatureStore.open(tmp_path / "store").cached()["a"].width == 64


@pytest.mark.slow
def test_unusable_rows_fail_their_video_but_an_unwritable_store_ends_the_run(
        videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(videos / "config.yml").extract
    temporal, calls = Backbones.temporal_batch, []

    def nan_from_the_second_batch(self: Backbones, clips: torch.Tensor) -> tuple:
        slow, fast = temporal(self, clips)
        calls.append(len(clips))
        if len(calls) > 1:  # each 2-s video is one batch: the second video gets NaN rows
            fast = torch.full_like(fast, float("nan"))
        return slow, fast

    monkeypatch.setattr(Backbones, "temporal_batch", nan_from_the_second_batch)
    pairs = [("a", videos / "clip0.mp4"), ("b", videos / "clip1.mp4")]
    summary = extract_videos(pairs, tmp_path / "store", cfg, levels=["coarse"], progress=False)
    assert calls == [2, 2] and summary.done == ["a"] and "non-finite" in summary.failed["b"]

    def disk_full(*args: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(Backbones, "temporal_batch", temporal)
    monkeypatch.setattr(shard_files, "write_shard", disk_full)
    with pytest.raises(StoreError, match="disk full"):
        extract_videos([("c", videos / "clip2.mp4")], tmp_path / "store", cfg, levels=["coarse"], progress=False)


@pytest.mark.slow
def test_nss_only_chunks_cross_without_their_pixels_and_give_the_same_rows(videos: Path, tmp_path: Path) -> None:
    cfg = replace(load_config(videos / "config.yml").extract, levels={}, temporal=False, nss=True)
    options = DecodeOptions.from_config(cfg)
    assert not options.pixels and DecodeOptions.from_config(cfg, planes=True).pixels  # the device needs them for NSS
    assert DecodeOptions.from_config(load_config(videos / "config.yml").extract).pixels
    pool = DecodePool(1, options)
    try:
        events = list(pool.events([(0, str(videos / "clip0.mp4"))]))
    finally:
        pool.close()
    chunks = [event.chunk for event in events if isinstance(event, ChunkDecoded)]
    assert len(chunks) == 2 and all(c.key_frame.numel() == c.clip.numel() == 0 for c in chunks)
    with_pixels = [c for c in decode_video(str(videos / "clip0.mp4"), replace(options, pixels=True))
                   if isinstance(c, DecodedChunk)]
    assert with_pixels[0].clip.numel() > 0
    for bare, full in zip(chunks, with_pixels):
        assert np.array_equal(bare.nss, full.nss)
    stores = {}
    for workers in (0, 1):
        stores[workers] = tmp_path / f"w{workers}"
        summary = extract_videos([("a", videos / "clip0.mp4")], stores[workers], replace(cfg, workers=workers),
                                 progress=False)
        assert summary.done == ["a"], summary.failed
    rows = [FeatureStore.open(stores[w]).read(["nss"]).features["nss"] for w in (0, 1)]
    assert rows[0].shape == (2, NSS_DIM) and np.array_equal(rows[0], rows[1])
