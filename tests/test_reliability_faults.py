"""Faults mid-run: SIGKILL during a fit and during scoring, damaged model files, a disk that fills up.

SIGKILL during extraction (the store then holds complete shards only, and rerunning the command does what
is missing, to the same features as a clean run) is tested in test_extract.py
(``test_killed_run_resumes_to_the_clean_result``); it is not repeated here.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import FEW, TINY, invoke, sets
from fit_fixtures import make_store, write_configs, write_csv
from pipeline.cli import extract, fit, score
from pipeline.errors import WeightsError
from pipeline.fit.model import load_model
from pipeline.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def disk_full_for(monkeypatch: pytest.MonkeyPatch, fragment: str) -> None:
    """Make ``os.fsync`` fail with ENOSPC for the files whose path contains ``fragment``, as a full disk does."""
    fsync = os.fsync

    def full(fd: int) -> None:
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise NO_SPACE
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)


pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic store and a coarse-only config for it: fits take a fraction of a second per epoch."""
    root = tmp_path_factory.mktemp("synthetic")
    csv = write_csv(root / "labels.csv", make_store(root / "store", videos=24, max_chunks=2))
    write_configs(root, root / "store", csv, coarse={"fine_config": None, "num_epochs": 2})
    return root


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 180) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it ended (or took too long) before that."""
    deadline = time.monotonic() + timeout_s
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the command ended before it could be killed"


# -- fit ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_fit_killed_mid_training_leaves_no_model_and_a_rerun_starts_clean(synthetic: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(REPO / "fit.py"), "-o", str(synthetic / "coarse.yml"),
                             "--out", str(out), "--set", "num_epochs=100000"],
                            cwd=REPO, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "log.txt"
    kill_when(proc, lambda: log.exists() and "epoch   2/100000" in log.read_text())
    assert not (out / "best_model.pth").exists() and not (out / "metrics.json").exists()

    code, output = invoke(fit, "-o", synthetic / "coarse.yml", "--out", out)  # the same run dir, the usual epochs
    assert code == 0, output
    code, output = invoke(fit, "-o", synthetic / "coarse.yml", "--out", tmp_path / "clean")
    assert code == 0, output
    assert "100000" not in (out / "log.txt").read_text()  # nothing of the killed run is carried over
    assert (out / "metrics.json").read_text() == (tmp_path / "clean" / "metrics.json").read_text()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left


@pytest.mark.slow
def test_a_model_write_that_fails_keeps_the_previous_model(synthetic: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is written to a temp file and renamed: a disk that fills mid-write leaves the old file whole."""
    out = tmp_path / "run"
    renames: list[tuple[Path, Path]] = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((Path(src), Path(dst))), replace(src, dst)))
    assert invoke(fit, "-o", synthetic / "coarse.yml", "--out", out)[0] == 0
    (src, _), = [(src, dst) for src, dst in renames if dst == out / "best_model.pth"]
    assert src.parent == out and src.name.startswith(".best_model.pth.")  # a hidden temp name in the same folder
    before = (out / "best_model.pth").read_bytes()

    disk_full_for(monkeypatch, "_model.pth.")
    code, output = invoke(fit, "-o", synthetic / "coarse.yml", "--out", out, "--seed", "11")
    assert code == 1 and "_model.pth: cannot write: no space left on device" in output, output
    assert "the previous file, if any, is kept" in output and "Traceback" not in output
    assert (out / "best_model.pth").read_bytes() == before
    load_model(out / "best_model.pth")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"", "not a readable model file"),
    (lambda data: data[: len(data) // 2], "not a readable model file"),
    (lambda data: data[:-1], "not a readable model file"),
    (lambda data: data[:-200] + bytes(200), "not a readable model file"),
    (lambda data: flip(data, len(data) // 2), "fails its CRC check"),  # in the first layer's weights
], ids=["empty", "half", "last byte cut", "tail zeroed", "one bit flipped"])
def test_a_damaged_model_file_is_refused_by_score(run: Path, tmp_path: Path, damage, message: str) -> None:
    model = tmp_path / "best_model.pth"
    model.write_bytes(damage((run / "run" / "best_model.pth").read_bytes()))
    code, out = invoke(score, "--model", model, "--csv", run / "labels.csv", "--store", run / "store",
                       "--out", tmp_path / "scores.csv", "--no-progress")
    assert code == 1 and f"error: {model}: " in out and message in out, out
    assert not (tmp_path / "scores.csv").exists()


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_model_file_loads_the_same_model_or_is_refused(run: Path, data: st.DataObject) -> None:
    good = (run / "run" / "best_model.pth").read_bytes()
    damaged = bytearray(good)
    for at in data.draw(st.lists(st.integers(0, len(good) - 1), min_size=1, max_size=4)):
        damaged[at] ^= data.draw(st.integers(1, 255))
    path = run.parent / f"damaged-{os.getpid()}.pth"
    path.write_bytes(bytes(damaged))
    try:
        model, _ = load_model(path)
    except WeightsError as err:
        assert str(path) in str(err)
        return
    finally:
        path.unlink()
    reference, _ = load_model(run / "run" / "best_model.pth")
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), f"{name}: a damaged file loaded other weights"


# -- scoring ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_scoring_killed_mid_run_is_redone_by_a_rerun(run: Path, tmp_path: Path) -> None:
    """Killed while extracting, scoring keeps the complete shards; the rerun extracts the rest and writes the
    same scores.csv as scoring from a store that held everything."""
    store, scores = tmp_path / "store", tmp_path / "scores.csv"
    args = ["--model", run / "run" / "best_model.pth", "--csv", run / "few.csv", "--store", store, "--out", scores,
            "--no-progress", "--set", "extract.shard_videos=1"]
    proc = subprocess.Popen([sys.executable, str(REPO / "score.py"), *map(str, args)], cwd=REPO, env=ONE_THREAD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: bool(list(store.glob("shard-*.h5"))))
    assert not scores.exists()
    assert 1 <= len(FeatureStore.open(store).cached()) < FEW

    code, out = invoke(score, *args)
    assert code == 0, out
    code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", run / "few.csv",
                       "--store", run / "store", "--out", tmp_path / "reference.csv", "--no-progress")
    assert code == 0, out
    assert scores.read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_scores_csv_is_replaced_whole_or_not_at_all(run: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    scores = tmp_path / "scores.csv"
    args = ["--model", run / "run" / "best_model.pth", "--csv", run / "labels.csv", "--store", run / "store",
            "--out", scores, "--per-second", tmp_path / "seconds.jsonl", "--no-progress"]
    assert invoke(score, *args)[0] == 0
    before = scores.read_bytes(), (tmp_path / "seconds.jsonl").read_bytes()

    def crash(*args: object) -> None:
        raise NO_SPACE

    monkeypatch.setattr(os, "replace", crash)  # the write is done, the rename into place never happens
    code, out = invoke(score, *args)
    assert code == 1 and f"{scores}: cannot write: no space left on device" in out, out
    assert (scores.read_bytes(), (tmp_path / "seconds.jsonl").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "seconds.jsonl"]


# -- a full disk --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_full_disk_ends_extraction_with_a_clear_error_and_a_valid_store(run: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the second shard is written: exit 1 naming the shard and the cause; the first shard
    stays readable, nothing partial is visible, and a rerun (with space again) does the rest. (A real full file
    system: test_reliability_store.py, as root.)"""
    store = tmp_path / "store"
    args = ["-o", run / "config.yml", "--csv", run / "few.csv", "--store", store, "--no-progress", *sets(TINY),
            "--set", "extract.shard_videos=2"]
    synced: set[str] = set()
    fsync = os.fsync

    def fills_up(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith(".h5.tmp"):
            synced.add(name)
            if len(synced) > 1:
                raise NO_SPACE
        fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    code, out = invoke(extract, *args)
    assert code == 1, out
    assert f"{store}: cannot write shard shard-" in out and "no space left on device" in out, out
    assert "kept: 2 video(s) in the 1 shard(s) this run completed" in out and "Traceback" not in out
    monkeypatch.undo()

    written = FeatureStore.open(store)
    assert len(written.shards()) == 1 and len(written.cached()) == 2
    written.read(["spatial_coarse", "temporal_slow"])  # the complete shard reads back
    assert not list(store.glob("*.tmp")) and not list(store.glob(".*.tmp"))
    code, out = invoke(extract, *args)
    assert code == 0 and f"extracted {FEW - 2}, skipped 2 (cached)" in out, out


def test_a_full_disk_while_recording_failures_is_a_clear_error(run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    (tmp_path / "labels.csv").write_text(f"filename\n{run / 'clip0.mp4'}\n{tmp_path / 'missing.mp4'}\n")
    args = ["-o", run / "config.yml", "--csv", tmp_path / "labels.csv", "--store", store, "--no-progress", *sets(TINY)]
    disk_full_for(monkeypatch, "failures.csv")
    code, out = invoke(extract, *args)
    assert code == 1 and "failures.csv: cannot write: no space left on device" in out, out
    monkeypatch.undo()
    assert not list(store.glob(".*.tmp"))
    FeatureStore.open(store).failures()  # still a readable store
