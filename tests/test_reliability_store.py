"""The store under real faults: a full file system, damaged shards, a read-only mount, and signals.

The full disk and the read-only store are real file systems (a small tmpfs, remounted read-only), so these
tests need root to mount them; without it they are skipped with a message saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import pytest

from corpus import FEW, TINY, invoke, sets
from pipeline.cli import extract, fit, score
from pipeline.errors import DamagedShardError
from pipeline.store import FeatureStore
from videos import make_video

REPO = Path(__file__).resolve().parents[1]
KINDS = ["spatial_coarse", "temporal_slow", "temporal_fast", "nss"]

pytestmark = pytest.mark.usefixtures("one_thread")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (unmounted afterwards); skips the test without root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: run the suite as root to test a real full disk / read-only store")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path, name: str = "filler", leave: int = 0) -> Path:
    """Fill the file system of ``folder`` with one file, up to the last page or leaving ``leave`` bytes free (room
    for small files, not for a shard); returns it (delete it to free the space)."""
    filler = folder / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def no_traceback(out: str) -> None:
    assert "Traceback" not in out and "Segmentation" not in out, out


# -- a full disk --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_full_disk_ends_extraction_with_one_clear_message_and_a_rerun_carries_on(run: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        store = disk / "store"
        (tmp_path / "two.csv").write_text("".join((run / "few.csv").read_text().splitlines(keepends=True)[:3]))
        common = ["-o", run / "config.yml", "--store", store, "--no-progress", *sets(TINY), "--set",
                  "extract.shard_videos=2", "--video-root", run]
        assert invoke(extract, *common, "--csv", tmp_path / "two.csv")[0] == 0
        filler = fill(disk, leave=24 << 10)  # the disk fills up between two runs, as on a shared scratch space

        code, out = invoke(extract, *common, "--csv", run / "few.csv")
        assert code == 1, out
        no_traceback(out)
        message = out.strip().splitlines()[-1]
        assert message.startswith(f"error: {store}: cannot write shard shard-") and ".h5:" in message, out
        assert "no space left on device" in message and "rerun the same command" in message, out
        assert "kept: 0 video(s) in the 0 shard(s) this run completed, and every earlier shard" in message, out
        assert sorted(p.name for p in store.iterdir() if p.name.endswith(".tmp")) == []  # nothing half-visible
        assert len(FeatureStore.open(store).read(KINDS).keys) == 2  # what was there reads back

        last_page = fill(disk, "last page")  # not even a claim file fits now
        code, out = invoke(extract, *common, "--csv", run / "few.csv")
        assert code == 1, out
        no_traceback(out)
        assert out.strip().splitlines()[-1].startswith(f"error: {store}: cannot claim a video in {store / 'claims'}: "
                                                       "no space left on device (free some space and rerun"), out

        filler.unlink()
        last_page.unlink()
        code, out = invoke(extract, *common, "--csv", run / "few.csv")
        assert code == 0 and f"extracted {FEW - 2}, skipped 2 (cached)" in out, out


@pytest.mark.slow
def test_a_full_disk_while_scoring_is_one_clear_message(run: Path, tmp_path: Path) -> None:
    """score.py extracting into its store on a full disk, and writing scores.csv onto a full disk."""
    model = run / "run" / "best_model.pth"
    with tmpfs(tmp_path / "disk") as disk:
        store = disk / "store"
        shutil.copytree(run / "store", store)
        new = tmp_path / "new.mp4"
        make_video(new, frames=16, fps=8, seed=99)
        (tmp_path / "new.csv").write_text(f"filename\n{new}\nclip0.mp4\n")
        filler = fill(disk, leave=24 << 10)
        base = ["--model", model, "--csv", tmp_path / "new.csv", "--video-root", run, "--no-progress"]
        args = [*base, "--store", store]

        code, out = invoke(score, *args, "--out", tmp_path / "scores.csv")
        assert code == 1 and "no space left on device" in out and f"{store}: cannot write shard" in out, out
        no_traceback(out)
        assert not (tmp_path / "scores.csv").exists()

        last_page = fill(disk, "last page")
        code, out = invoke(score, *base, "--store", tmp_path / "other-store", "--out", disk / "scores.csv")
        assert code == 1, out
        no_traceback(out)
        assert f"{disk / 'scores.csv'}: cannot write: no space left on device" in out, out
        assert not [p for p in disk.iterdir() if p.name.startswith(".")]

        filler.unlink()
        last_page.unlink()
        assert invoke(score, *args, "--out", tmp_path / "scores.csv")[0] == 0


def test_a_full_disk_while_fitting_is_one_clear_message(run: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        fill(disk)
        code, out = invoke(fit, "-o", run / "config.yml", "--out", disk / "run")
        assert code == 1 and "no space left on device" in out, out
        no_traceback(out)


# -- damaged shards -----------------------------------------------------------------------------------------

def flip(path: Path, at: int, count: int = 1) -> None:
    data = bytearray(path.read_bytes())
    for i in range(at, at + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def damage_array(path: Path) -> None:
    with h5py.File(path, "r") as f:
        at = f["spatial_coarse"].id.get_offset() + 1000
    flip(path, at, 64)


def damage_index(path: Path) -> None:
    with h5py.File(path, "r") as f:
        at = f["index/row_start"].id.get_offset() + 8  # the second video's first row
    flip(path, at)


def damage_metadata(path: Path) -> None:
    with h5py.File(path, "r") as f:
        at = h5py.h5o.get_info(f["index"].id).addr + 12  # inside the index group's object header
    flip(path, at, 4)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {"array bytes": damage_array, "index bytes": damage_index, "metadata bytes": damage_metadata,
          "truncation": truncate}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.slow
def test_a_damaged_shard_is_named_and_handled_by_every_command(run: Path, tmp_path: Path, how: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(run / "store", store)
    shard = FeatureStore.open(store).shards()[0]
    DAMAGE[how](shard)

    with pytest.raises(DamagedShardError) as caught:  # never served: reading names the shard
        FeatureStore.open(store).read(KINDS)
    assert caught.value.shard == shard

    code, out = invoke(fit, "-o", run / "config.yml", "--store", store, "--out", tmp_path / "fit")
    assert code == 1 and f"error: {shard}: damaged shard" in out and "--verify" in out, out
    no_traceback(out)

    scores = tmp_path / "scores.csv"
    code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", run / "labels.csv",
                       "--store", store, "--out", scores, "--no-progress")
    assert code == 0, out  # a writable store: the shard is set aside and its videos extracted again
    assert (store / "damaged" / shard.name).exists() and not shard.exists()
    code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", run / "labels.csv",
                       "--store", run / "store", "--out", tmp_path / "reference.csv", "--no-progress")
    assert scores.read_bytes() == (tmp_path / "reference.csv").read_bytes()


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.slow
def test_extraction_sets_a_damaged_shard_aside_and_extracts_its_videos_again(run: Path, tmp_path: Path,
                                                                             how: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(run / "store", store)
    shard = FeatureStore.open(store).shards()[0]
    DAMAGE[how](shard)
    args = ["-o", run / "config.yml", "--store", store, "--no-progress", *sets(TINY)]
    code, out = invoke(extract, *args)
    verified = how == "array bytes"  # rows are only read (and checked) with --verify
    if verified:
        assert code == 0 and "extracted 0" in out, out
        code, out = invoke(extract, *args, "--verify")
    assert code == 0 and "extracted 4, skipped 4 (cached)" in out, out
    assert (store / "damaged" / shard.name).exists()
    reference = FeatureStore.open(run / "store").read(KINDS)
    repaired = FeatureStore.open(store).read(KINDS)
    for kind in KINDS:
        assert (repaired.features[kind] == reference.features[kind]).all()


# -- a read-only store --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_read_only_store_serves_what_it_holds(run: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro") as mount:
        store = mount / "store"
        shutil.copytree(run / "store", store)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(OSError) as caught:
            (store / "probe").write_text("")
        assert caught.value.errno == errno.EROFS

        assert len(FeatureStore.open(store).read(KINDS).keys) == 8
        code, out = invoke(fit, "-o", run / "config.yml", "--store", store, "--out", tmp_path / "fit")
        assert code == 0, out
        code, out = invoke(extract, "-o", run / "config.yml", "--store", store, "--no-progress", *sets(TINY))
        assert code == 0 and "skipped 8 (cached)" in out, out  # nothing to do: fine on a read-only store

        new = tmp_path / "new.mp4"
        make_video(new, frames=16, fps=8, seed=99)
        csv = tmp_path / "mixed.csv"
        csv.write_text("filename\n" + "".join(f"clip{i}.mp4\n" for i in range(8)) + f"{new}\n")
        code, out = invoke(extract, "-o", run / "config.yml", "--store", store, "--csv", csv, "--video-root", run,
                           "--no-progress", *sets(TINY))
        assert code == 1 and "read-only" in out and "--store" in out, out
        no_traceback(out)

        scores = tmp_path / "scores.csv"
        code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", csv, "--video-root", run,
                           "--store", store, "--out", scores, "--no-progress")
        assert code == 3, out
        lines = scores.read_text().splitlines()[1:]  # the rows, not the header
        assert sum(",ok," in line for line in lines) == 8
        error, = [line for line in lines if ",error," in line]
        assert str(new) in error and f"{store}, which is read-only here" in error and "--store DIR" in error


# -- signals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
@pytest.mark.slow
def test_a_signal_ends_extraction_saying_what_is_stored(run: Path, tmp_path: Path, signum: int, code: int,
                                                        word: str) -> None:
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "extract_features.py"), "-o", str(run / "config.yml"), "--store", str(store),
         "--no-progress", "--workers", "0", *sets([*TINY, "extract.shard_videos=1"])],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    wait_for(lambda: bool(list(store.glob("shard-*.h5"))), proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    stored = len(FeatureStore.open(store).cached())
    assert out.strip().splitlines()[-1] == (f"{word}: {stored} video(s) are stored in {store}; rerun the same "
                                            "command to continue with the rest"), out


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "the command ended before it could be signalled"
        time.sleep(0.01)


# -- several writers ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_concurrent_extractions_share_the_work(run: Path, tmp_path: Path) -> None:
    """Two processes started together on one store and CSV extract each video once between them."""
    store = tmp_path / "store"
    command = [sys.executable, str(REPO / "extract_features.py"), "-o", str(run / "config.yml"), "--store", str(store),
               "--no-progress", "--workers", "0", *sets([*TINY, "extract.shard_videos=1"])]
    procs = [subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    written = FeatureStore.open(store)
    index = [entry.record.key for shard in written.shards() for entry in written.shard_index(shard).entries]
    assert sorted(index) == sorted(f"clip{i}.mp4" for i in range(8))  # each video once, none twice
    assert not list((store / "claims").iterdir())
    reference = FeatureStore.open(run / "store").read(KINDS)
    shared = written.read(KINDS)
    for kind in KINDS:
        assert (shared.features[kind] == reference.features[kind]).all()


@pytest.mark.slow
def test_part_splits_the_videos_deterministically(run: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(run / "store", store)
    args = ["-o", run / "config.yml", "--store", store, "--no-progress", *sets(TINY)]
    outs = [invoke(extract, *args, "--part", f"{i}/3") for i in (1, 2, 3)]
    assert [code for code, _ in outs] == [0, 0, 0]
    for part, (count, (_, out)) in enumerate(zip([3, 3, 2], outs), start=1):  # rows 1,4,7 / 2,5,8 / 3,6
        assert f"extracting {count} video(s) (part {part}/3)" in out and f"skipped {count} (cached)" in out, out
    code, out = invoke(extract, *args, "--part", "4/3")
    assert code == 2 and "1 <= I <= N" in out
