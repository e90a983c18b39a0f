"""Untrusted inputs: model and weight files never run code; CSV paths never choose where anything is written.

A checkpoint is a pickle, and unpickling can call any function. Every file is loaded with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers; the tests below
craft files whose unpickling would create a marker file and check it is never created. CSV file names are
read where they point (that is what the user asked for), but keys such as ``../../x`` or absolute paths
never decide where shards, failure records or outputs go.
"""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch

from corpus import TINY, invoke, sets
from pipeline.backbones.weights import RESNET50_IMAGENET1K_V1, SLOWFAST_8X8_R50
from pipeline.cli import extract, score
from pipeline.errors import WeightsError
from pipeline.fit.model import load_model
from pipeline.store import FeatureStore
from videos import make_video

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


pytestmark = pytest.mark.usefixtures("one_thread")



def test_the_payload_would_run_if_unpickled(tmp_path: Path) -> None:
    """The crafted files below are real attacks: a plain unpickle of one runs the command."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


def test_every_torch_load_is_weights_only() -> None:
    calls = []
    for path in PIPELINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((f"{path.relative_to(PIPELINE.parent)}:{node.lineno}", keywords.get("weights_only")))
    assert calls, "the package loads model files somewhere"
    assert all(value == "True" for _, value in calls), calls


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_a_model_file_with_code_in_it_is_refused_by_score(run: Path, tmp_path: Path, container: str) -> None:
    marker, model = tmp_path / "ran", tmp_path / "best_model.pth"
    evil = {"format": "vqa-pipeline/chunk-regressor", "version": 1, "config": Payload(marker)}
    if container == "torch.save":
        torch.save(evil, model)
    else:
        model.write_bytes(pickle.dumps(evil))
    code, out = invoke(score, "--model", model, "--csv", run / "labels.csv", "--store", run / "store",
                       "--out", tmp_path / "scores.csv", "--no-progress")
    assert code == 1 and f"error: {model}: " in out, out
    assert ("refused" if container == "torch.save" else "not a torch.save archive") in out, out
    assert not marker.exists(), "the file's code ran"
    with pytest.raises(WeightsError):
        load_model(model)
    assert not marker.exists() and not (tmp_path / "scores.csv").exists()


@pytest.mark.parametrize("spec, overrides", [
    (SLOWFAST_8X8_R50, ("extract.levels.coarse=null", "extract.levels.fine=null")),  # no digest published: unpickled
    (RESNET50_IMAGENET1K_V1, ()),  # refused by its SHA-256 before it is ever unpickled
], ids=["slowfast", "resnet50"])
def test_backbone_weights_with_code_in_them_are_refused(run: Path, tmp_path: Path, spec, overrides) -> None:
    marker, weights = tmp_path / "ran", tmp_path / "weights"
    weights.mkdir()
    torch.save({spec.state_key or "state": Payload(marker)}, weights / spec.filename)
    code, out = invoke(extract, "-o", run / "config.yml", "--store", tmp_path / "store", "--no-progress",
                       *sets(TINY), "--weights", weights, *sets(overrides))
    assert code == 1 and str(weights / spec.filename) in out, out
    assert not marker.exists(), "the file's code ran"
    assert not (tmp_path / "store").exists()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if not p.is_dir()}


@pytest.mark.slow
def test_csv_paths_never_choose_where_anything_is_written(run: Path, tmp_path: Path) -> None:
    """Keys that climb out of the video root or are absolute are read where they point, and are only ever keys.

    A writer that built paths from keys (``store/<key>.h5``, ``out/<key>``) would write inside ``tmp_path``
    for these keys; the only files that may appear are the store's and the named outputs.
    """
    root, work = tmp_path / "videos", tmp_path / "work"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    work.mkdir()
    make_video(tmp_path / "elsewhere" / "escape.mp4", frames=16, fps=8, seed=1)
    make_video(tmp_path / "elsewhere" / "absolute.mp4", frames=16, fps=8, seed=2)
    keys = ["../elsewhere/escape.mp4",  # outside the video root, relative
            str(tmp_path / "elsewhere" / "absolute.mp4"),  # absolute
            "../../../../../../../../etc/passwd",  # a system file: read (it is no video), never written
            "sub/../../work/store/shard-x.h5",  # names a path inside the store
            "../work/out/scores.csv"]  # names the output file
    (tmp_path / "labels.csv").write_text("filename\n" + "".join(f"{key}\n" for key in keys))
    passwd = Path("/etc/passwd").stat().st_mtime_ns
    before = snapshot(tmp_path)
    store, out = work / "store", work / "out"

    code, output = invoke(extract, "-o", run / "config.yml", "--csv", tmp_path / "labels.csv", "--video-root", root,
                          "--store", store, "--no-progress", *sets(TINY))
    assert code == 3, output  # the passwd and the two made-up paths fail; the two real videos are extracted
    assert sorted(FeatureStore.open(store).cached()) == sorted(keys[:2])  # stored under the keys as given
    assert set(FeatureStore.open(store).failures()) == set(keys[2:])
    out.mkdir()
    code, output = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", tmp_path / "labels.csv",
                          "--video-root", root, "--store", work / "score-store", "--out", out / "scores.csv",
                          "--per-second", out / "seconds.jsonl", "--no-progress")
    assert code == 3, output

    changed = {name for name, stat in snapshot(tmp_path).items() if before.get(name) != stat}
    allowed = ("work/store/", "work/score-store/", "work/out/scores.csv", "work/out/seconds.jsonl")
    assert changed and all(name.startswith(allowed) for name in changed), sorted(changed)
    assert not any(name.startswith("work/store/shard-x") for name in changed)
    assert Path("/etc/passwd").stat().st_mtime_ns == passwd
