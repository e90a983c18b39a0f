"""Scoring end to end on tiny generated videos: extract -> fit -> score, failures per row, outputs, the Python API."""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction
import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from click.testing import CliRunner

from pipeline.cli import extract, score
from pipeline.config import load_config
from pipeline.demo import demo_overrides, extract_sample
from pipeline.errors import SettingsMismatchError
from pipeline.fit.model import ChunkRegressor, load_model, save_model
from pipeline.fit.run import fit
from pipeline.scoring import Scorer, write_per_second
from pipeline.scoring.store_choice import default_store
from pipeline.store import FeatureStore, StoreSettings
from videos import frame_content, make_video

REPO = Path(__file__).resolve().parents[1]
# Tiny everything, as --set overrides of the extraction (the config keeps the design's defaults).
TINY = ["extract.device=cpu", "extract.batch_size=4", "extract.levels.coarse.short_side=64",
        "extract.levels.fine.short_side=80", "extract.clip.size=32", "extract.clip.frames=8"]
VIDEOS = 6


def invoke(command, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(command, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with tiny videos, their labels, a store extracted with random weights, and a fitted run."""
    return fitted_run(tmp_path_factory.mktemp("score"))


def fitted_run(root: Path, *extract_sets: str) -> Path:
    """``root`` with tiny videos, their labels, a store extracted with ``TINY`` and ``extract_sets``, and a run."""
    for i in range(VIDEOS):
        make_video(root / f"clip{i}.mp4", frames=24 if i == 3 else 16, fps=8, seed=i)  # 2 chunks; clip3: 3
    rows = [f"clip{i}.mp4,{1 + i * 0.5},src{i // 2}\n" for i in range(VIDEOS)]
    (root / "labels.csv").write_text("filename,mos,group\n" + "".join(rows))
    (root / "fine.yml").write_text("name: tiny_fine\nfine_config: null\nfeatures: {level: fine}\nnum_epochs: 1\n")
    (root / "coarse.yml").write_text(
        f"name: tiny\nseed: 1\nfine_config: {root / 'fine.yml'}\nnum_epochs: 2\nbatch_size: 4\n"
        f"model: {{hidden: [8]}}\n"
        f"data: {{train_csv: {root / 'labels.csv'}, video_root: {root}, store: {root / 'store'}, "
        "val_fraction: 0.34}\n")
    code, out = invoke(extract, "-o", root / "coarse.yml", "--weights", "random", "--no-progress",
                       *(a for item in [*TINY, *extract_sets] for a in ("--set", item)))
    assert code == 0, out
    fit(root / "coarse.yml", out=root / "run")
    (root / "bad.mp4").write_bytes(b"not a video at all" * 50)
    (root / "new.mp4").write_bytes((root / "clip1.mp4").read_bytes())  # same content, not in the store yet
    return root


def score_cli(run: Path, csv: Path, *args: str) -> tuple[int, str]:
    return invoke(score, "--model", run / "run" / "best_model.pth", "--csv", csv, "--store", run / "store",
                  "--device", "cpu", "--no-progress", *args)


@pytest.mark.slow
def test_scores_csv_with_failures_per_second_and_metrics(run: Path, tmp_path: Path) -> None:
    csv = tmp_path / "to_score.csv"
    csv.write_text("filename,mos\nclip0.mp4,1\nmissing.mp4,2\nclip3.mp4,2.5\nbad.mp4,3\nnew.mp4,4\n")
    code, out = score_cli(run, csv, "--video-root", run, "--out", tmp_path / "scores.csv",
                          "--per-second", tmp_path / "seconds.jsonl", "--metrics", tmp_path / "metrics.json")
    assert code == 3, out
    table = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    assert list(table.columns) == ["filename", "score", "score_raw", "status", "error", "score_low", "score_high",
                                   "in_domain", "novelty", "trained_on"]
    assert list(table["filename"]) == ["clip0.mp4", "missing.mp4", "clip3.mp4", "bad.mp4", "new.mp4"]
    assert list(table["status"]) == ["ok", "error", "ok", "error", "ok"]
    assert "missing.mp4" in table.loc[1, "error"] and "not found" in table.loc[1, "error"]
    assert "bad.mp4" in table.loc[3, "error"]
    assert table.loc[[1, 3], "score"].tolist() == ["", ""]
    assert "2 video(s) failed" in out and "scored 3 of 5" in out
    # new.mp4 is clip1.mp4's bytes under another name: extracted now, it scores the same as clip1 would under a
    # name the model did not train on (clip1.mp4 itself is scored by the member that left it out)
    api = Scorer.load(run / "run" / "best_model.pth", device="cpu", store=run / "store")
    reference = api.score_paths({"clip1 renamed.mp4": run / "clip1.mp4"})
    assert float(table.loc[4, "score"]) == pytest.approx(reference.loc[0, "score"], rel=1e-5)
    assert list(table["trained_on"]) == ["True", "", "True", "", "False"]
    ok = table[table["status"] == "ok"].astype({"score": float, "score_low": float, "score_high": float})
    assert ((ok.score_low <= ok.score) & (ok.score <= ok.score_high) & (ok.score_low < ok.score_high)).all()

    lines = [json.loads(line) for line in (tmp_path / "seconds.jsonl").read_text().splitlines()]
    assert [line["filename"] for line in lines] == ["clip0.mp4", "clip3.mp4", "new.mp4"]
    assert [line["seconds"] for line in lines] == [[0, 1], [0, 1, 2], [0, 1]]
    assert all(len(line["scores"]) == len(line["seconds"]) == len(line["scores_low"]) == len(line["scores_high"])
               for line in lines)
    assert all(low <= score <= high for line in lines
               for low, score, high in zip(line["scores_low"], line["scores"], line["scores_high"]))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 3 and {"srocc", "krocc", "plcc", "rmse"} <= set(metrics)
    assert re.search(r"srocc\s+krocc\s+plcc\s+rmse", out)


def test_many_failures_are_listed_as_extraction_lists_them(run: Path, tmp_path: Path) -> None:
    csv = tmp_path / "to_score.csv"
    csv.write_text("filename,mos\n" + "".join(f"missing{i:02d}.mp4,1\n" for i in range(23)))
    code, out = score_cli(run, csv, "--video-root", run, "--out", tmp_path / "scores.csv")
    assert code == 3, out
    assert f"23 video(s) failed (status=error in {tmp_path / 'scores.csv'}):" in out
    assert "missing19.mp4" in out and "missing20.mp4" not in out and "  ... and 3 more" in out


def test_the_default_store_is_the_training_store_when_its_settings_are_the_scorers(run: Path) -> None:
    trained = FeatureStore.open(run / "store").settings
    assert default_store(trained, run / "store") == run / "store"
    other = StoreSettings.of({**trained.values, "max_chunks": 7})
    assert default_store(other, run / "store") == Path("features") / f"scores-{other.hash[:12]}"
    assert default_store(trained, run / "no-store-here") == Path("features") / f"scores-{trained.hash[:12]}"


def make_sparse_clip(path: Path) -> Path:
    """Frames at 0, 1 and 2 s, the last one shown for 3 s: a 5 s video whose seconds 3 and 4 start no chunk."""
    time_base = Fraction(1, 90000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        packets = []
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(frame_content(k, 64, 48), format="rgb24")
            frame.pts, frame.time_base = round(k / time_base), time_base
            packets += stream.encode(frame)
        packets += stream.encode()
        max(packets, key=lambda p: p.pts).duration = round(3 / time_base)
        for packet in packets:
            container.mux(packet)
    return path


@pytest.mark.slow
def test_per_second_scores_name_the_seconds_the_chunks_start_at(tmp_path: Path) -> None:
    """With max_chunks 2, the sparse clip's chunks start at 0 s and 2 s (sampling plan), whatever its duration."""
    root = fitted_run(tmp_path, "extract.max_chunks=2")
    scorer = Scorer.load(root / "run" / "best_model.pth", device="cpu", store=root / "store")
    table = scorer.score_paths({"sparse.mp4": make_sparse_clip(root / "sparse.mp4")})
    write_per_second(table, tmp_path / "seconds.jsonl")
    line = json.loads((tmp_path / "seconds.jsonl").read_text())
    assert line["seconds"] == [0, 2] and len(line["scores"]) == 2
@pytest.mark.slow
def test_report_lists_every_video_with_key_frames_of_the_worst(run: Path, tmp_path: Path) -> None:
    csv = tmp_path / "to_score.csv"
    csv.write_text("filename,mos\nclip0.mp4,1\nmissing.mp4,2\nclip3.mp4,2.5\nclip4.mp4,3\n")
    code, out = score_cli(run, csv, "--video-root", run, "--out", tmp_path / "scores.csv",
                          "--report", tmp_path / "report.html", "--report-worst", 1)
    assert code == 3 and "report -> " in out, out
    page = (tmp_path / "report.html").read_text()
    body = page.split("<h2>All videos</h2>")[1]
    assert body.count("<tr") - 1 == 4  # the header, then one row per video
    assert '<tr class="failed">' in body and "missing.mp4: video file not found" in body
    worst = pd.read_csv(tmp_path / "scores.csv").nsmallest(1, "score")["filename"].item()
    assert f"<h3>{worst} &middot; score" in page
    assert page.count('src="data:image/jpeg') == (3 if worst == "clip3.mp4" else 2)  # one per chunk (at most 4)
    assert page.count('src="data:image/png') == 2  # histogram, scatter
    # fit.py wrote the run's report beside its model: both phases' curves, the scatter, the configs.
    run_page = (run / "run" / "report.html").read_text()
    assert run_page.count('src="data:image/png') == 4 and "config_fine.yml" in run_page  # and the calibration


def test_video_score_is_the_calibrated_mean_of_its_chunks(run: Path) -> None:
    """The fast block-wise scorer agrees with the model's own forward pass on padded batches."""
    scorer = Scorer.load(run / "run" / "best_model.pth", device="cpu", store=run / "store")
    store = FeatureStore.open(run / "store")
    keys = [f"clip{i}.mp4" for i in range(VIDEOS)]
    table = store.read(scorer.kinds, keys)
    predictions = scorer.score_table(table)
    model, spec = load_model(run / "run" / "best_model.pth")
    counts = np.diff(table.offsets)
    x = torch.zeros(len(keys), counts.max(), sum(spec.widths.values()))
    mask = torch.zeros(len(keys), counts.max(), dtype=torch.bool)
    for i, key in enumerate(keys):
        rows = table.rows(key)
        x[i, : counts[i]] = torch.cat([torch.from_numpy(table.features[k][rows]).float() for k in scorer.kinds], 1)
        mask[i, : counts[i]] = True
    with torch.no_grad():
        members = model(x, mask).double().numpy() * spec.mos_std + spec.mos_mean  # (videos, members)
    raw = np.array([members[i, spec.held_out_by[key]] if key in spec.held_out_by else members[i].mean()
                    for i, key in enumerate(keys)])
    # float32 sums in another order: up to ~1.5e-5 apart once the phase keeps its last epoch (select_epoch);
    # a wrong chunk mean or padding would be off by orders of magnitude more
    np.testing.assert_allclose(predictions.score_raw, raw, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(predictions.score, spec.calibration(predictions.score_raw))
    first = slice(table.offsets[0], table.offsets[1])
    np.testing.assert_allclose(predictions.score_raw[0], predictions.chunk_score_raw[first].mean())


def test_refuses_a_store_made_with_other_settings(run: Path, tmp_path: Path) -> None:
    settings = FeatureStore.open(run / "store").settings.values
    FeatureStore.open(tmp_path / "other", {**settings, "levels": {**settings["levels"], "fine": {"short_side": 96}}})
    code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", run / "labels.csv",
                       "--store", tmp_path / "other", "--out", tmp_path / "s.csv", "--no-progress")
    assert code == 2, out
    assert "other extraction settings" in out and "levels.fine.short_side: 80 vs. 96" in out
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_a_model_trained_on_bf16_features_scores_on_a_cpu(run: Path, tmp_path: Path) -> None:
    """Precision is the one setting a model's features and a scorer's may differ in: the CPU scorer of a model
    trained on GPU (bf16) features extracts float32 ones, into a store of that precision, never the bf16 one."""
    model, spec = load_model(run / "run" / "best_model.pth")
    assert spec.store.values["precision"] == "float32"
    gpu_settings = {**spec.store.values, "precision": "bf16"}
    gpu = dataclasses.replace(spec, store=StoreSettings.of(gpu_settings))
    save_model(tmp_path / "gpu.pth", model, gpu)
    scorer = Scorer.load(tmp_path / "gpu.pth", device="cpu", store=tmp_path / "cpu-store")
    table = scorer.score_paths({"clip0.mp4": run / "clip0.mp4"})
    reference = Scorer.load(run / "run" / "best_model.pth", device="cpu", store=run / "store")
    assert table.loc[0, "status"] == "ok", table.loc[0, "error"]
    again = reference.score_paths({"clip0.mp4": run / "clip0.mp4"}).loc[0, "score"]
    assert table.loc[0, "score"] == pytest.approx(again, rel=1e-5)
    assert FeatureStore.open(tmp_path / "cpu-store").settings.values["precision"] == "float32"
    FeatureStore.open(tmp_path / "bf16-store", gpu_settings)
    code, out = invoke(score, "--model", tmp_path / "gpu.pth", "--csv", run / "labels.csv", "--store",
                       tmp_path / "bf16-store", "--device", "cpu", "--out", tmp_path / "s.csv", "--no-progress")
    assert code == 2 and 'precision: "float32" vs. "bf16"' in out, out


def test_usage_errors_exit_2(run: Path, tmp_path: Path) -> None:
    model = run / "run" / "best_model.pth"
    code, out = invoke(score, "--model", model, "--csv", run / "labels.csv", "--out", tmp_path / "s.csv",
                       "--set", "optimizer.lr=1")
    assert code == 2 and "scoring may change only extract.decoder, extract.device" in out
    code, out = invoke(score, "--model", tmp_path / "nope.pth", "--csv", run / "labels.csv",
                       "--out", tmp_path / "s.csv")
    assert code == 2 and "nope.pth" in out
    (tmp_path / "dup.csv").write_text("filename\nclip0.mp4\nclip0.mp4\n")
    code, out = invoke(score, "--model", model, "--csv", tmp_path / "dup.csv", "--out", tmp_path / "s.csv")
    assert code == 2 and "duplicate filename" in out


def test_score_features_validates_arrays(run: Path) -> None:
    scorer = Scorer.load(run / "run" / "best_model.pth", device="cpu", store=run / "store")
    rng = np.random.default_rng(0)
    arrays = {kind: rng.standard_normal((5, width)).astype(np.float32) for kind, width in scorer.spec.widths.items()}
    both = scorer.score_features(arrays, offsets=[0, 2, 5], keys=["a", "b"])
    assert both.keys == ["a", "b"] and both.score.shape == (2,) and both.chunk_score.shape == (5,)
    alone = scorer.score_features({k: v[2:] for k, v in arrays.items()})
    # float32 products of another shape sum in another order: equal to float32 precision through the network.
    assert alone.score[0] == pytest.approx(both.score[1], rel=1e-4)
    with pytest.raises(Exception, match="lack"):
        scorer.score_features({})
    with pytest.raises(Exception, match="offsets"):
        scorer.score_features(arrays, offsets=[0, 5, 5])


@pytest.mark.slow
def test_readme_python_api_example_runs(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API example, run as written against a tiny run laid out like the demo's."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    os.symlink(run / "run" / "best_model.pth", tmp_path / "runs" / "demo" / "best_model.pth")
    videos = sorted(set(re.findall(r"data/sample/videos/[\w.-]+\.mp4", code)))
    assert videos, "the example should score bundled sample videos"
    for i, name in enumerate(videos):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((run / f"clip{i % VIDEOS}.mp4").read_bytes())
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    table = namespace["table"]
    assert list(table["status"]) == ["ok"] * len(videos) and table["score"].notna().all()


def test_demo_says_when_it_runs_with_random_weights(capsys: pytest.CaptureFixture) -> None:
    overrides, weights = demo_overrides(str(REPO / "config" / "kwai_simpleVQA.yml"), "random")
    assert weights == "random"
    assert {"extract.weights=random", "data.store=features/sample-random"} <= set(overrides)
    assert "RANDOM backbone weights" in capsys.readouterr().out
    overrides, _ = demo_overrides(str(REPO / "config" / "kwai_simpleVQA.yml"), "/opt/weights")
    assert "extract.weights=/opt/weights" in overrides and not any(o.startswith("data.store") for o in overrides)


def test_a_model_file_of_version_1_still_scores_with_one_warning(run: Path, tmp_path: Path) -> None:
    """Files written before cross-fitting: one nn.Linear model and a logistic; scores without intervals."""
    payload = torch.load(run / "run" / "best_model.pth", weights_only=True)
    model = ChunkRegressor(**{**payload["architecture"], "members": 1})
    old_state = {name: (t[:, 0, :].T.contiguous() if name.endswith("weight") and t.dim() == 3 else
                        t[0] if name.endswith("bias") else t) for name, t in model.state_dict().items()}
    architecture = {k: v for k, v in payload["architecture"].items() if k != "members"}
    old = {**{k: payload[k] for k in ("format", "features", "store", "labels", "config")}, "version": 1,
           "state_dict": old_state, "architecture": architecture,
           "calibration": {"b1": 90.0, "b2": 10.0, "b3": 2.5, "b4": 0.5, "linear": False}}
    torch.save(old, tmp_path / "old.pth")
    with pytest.warns(UserWarning, match="before models had intervals"):
        scorer = Scorer.load(tmp_path / "old.pth", device="cpu", store=run / "store")
    table = scorer.score_paths({f"clip{i}.mp4": run / f"clip{i}.mp4" for i in range(3)})
    assert list(table["status"]) == ["ok"] * 3
    assert table["score_low"].isna().all() and table["novelty"].isna().all() and table["in_domain"].isna().all()
    x = torch.from_numpy(np.concatenate([FeatureStore.open(run / "store").read(scorer.kinds, ["clip0.mp4"]).features[k]
                                         for k in scorer.kinds], 1)).float()
    with torch.no_grad():
        reference = torch.nn.functional.linear(  # the version-1 model as nn.Linear layers
            torch.nn.functional.gelu(torch.nn.functional.linear(
                (x - model.input_mean) / model.input_std, old_state["body.0.weight"], old_state["body.0.bias"])),
            old_state["head.weight"], old_state["head.bias"]).mean().item()
    assert table.loc[0, "score_raw"] == pytest.approx(reference * scorer.spec.mos_std + scorer.spec.mos_mean, rel=1e-5)


def test_scores_keep_the_order_of_raw_predictions_far_outside_the_training_data(run: Path) -> None:
    """Random features, most far beyond anything the model trained on: no two videos or chunks share a score,
    SROCC(score, score_raw) is 1, and every interval holds its score."""
    scorer = Scorer.load(run / "run" / "best_model.pth", device="cpu", store=run / "store")
    rng = np.random.default_rng(0)
    rows = 120
    features = {kind: (rng.standard_normal((rows, width)) * rng.choice([1, 30, 1000], (rows, 1))).astype(np.float32)
                for kind, width in scorer.spec.widths.items()}
    p = scorer.score_features(features, offsets=np.arange(0, rows + 1, 2))
    for calibrated, raw in ((p.score, p.score_raw), (p.chunk_score, p.chunk_score_raw)):
        assert len(np.unique(calibrated)) == len(np.unique(raw)) == len(raw)
        assert stats.spearmanr(calibrated, raw)[0] == pytest.approx(1.0)
    assert np.all((p.score_low <= p.score) & (p.score <= p.score_high))
    assert np.all((p.chunk_low <= p.chunk_score) & (p.chunk_score <= p.chunk_high))
    assert np.mean(p.novelty > 1) > 0.5  # most of these are unlike the training videos


def test_the_demo_names_the_command_that_clears_a_store_an_earlier_version_left(tmp_path: Path) -> None:
    make_video(tmp_path / "a.mp4", width=64, height=48, frames=8, fps=8, seed=0)
    cfg = load_config(REPO / "config" / "nss_only.yml", [f"data.store={tmp_path / 'store'}"])
    extract_sample([("a.mp4", str(tmp_path / "a.mp4"))], cfg)
    older = load_config(REPO / "config" / "nss_only.yml", [f"data.store={tmp_path / 'store'}", "extract.clip.frames=16"])
    with pytest.raises(SettingsMismatchError, match="make clean-demo"):
        extract_sample([("a.mp4", str(tmp_path / "a.mp4"))], older)
