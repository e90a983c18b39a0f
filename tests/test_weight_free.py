"""The weight-free path: config/nss_only.yml extracts, fits and scores with NSS features and no backbone at all."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.backbones import SpatialExtractor, TemporalExtractor
from pipeline.cli import extract, fit, score
from pipeline.fit.model import load_model
from pipeline.nss import NSS_VERSION
from pipeline.store.manifest import StoreSettings
from videos import make_video

REPO = Path(__file__).resolve().parents[1]
VIDEOS = 8

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(command, *args: object) -> str:
    result = CliRunner().invoke(command, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_extract_fit_score_without_any_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_backbone(*_, **__):
        raise AssertionError("the weight-free path built a backbone")

    monkeypatch.setattr(SpatialExtractor, "__init__", no_backbone)
    monkeypatch.setattr(TemporalExtractor, "__init__", no_backbone)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # no weights anywhere; none are needed
    for i in range(VIDEOS):
        make_video(tmp_path / f"clip{i}.mp4", width=64, height=48, frames=16, fps=8, seed=i)
    rows = "".join(f"clip{i}.mp4,{90 - 8 * i},src{i // 2}\n" for i in range(VIDEOS))
    (tmp_path / "labels.csv").write_text("filename,mos,source\n" + rows)
    data = [f"data.train_csv={tmp_path / 'labels.csv'}", f"data.video_root={tmp_path}",
            f"data.store={tmp_path / 'store'}", "num_epochs=3", "data.val_fraction=0.5"]
    sets = [a for item in data for a in ("--set", item)]
    config = REPO / "config" / "nss_only.yml"

    assert "no backbone" in invoke(extract, "-o", config, "--no-progress", *sets)
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())["settings"]
    assert manifest["spatial_weights"] is None and manifest["temporal_weights"] is None
    invoke(fit, "-o", config, "--out", tmp_path / "run", *sets)
    assert load_model(tmp_path / "run" / "best_model.pth")[1].features.kinds == ("nss",)
    invoke(score, "--model", tmp_path / "run" / "best_model.pth", "--csv", tmp_path / "labels.csv",
           "--store", tmp_path / "fresh", "--out", tmp_path / "scores.csv", "--no-progress")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores["status"]) == ["ok"] * VIDEOS and scores["score"].notna().all()
    assert not (tmp_path / "empty-hub").exists()


def test_a_store_of_an_older_nss_version_is_refused_naming_the_version(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", width=64, height=48, frames=8, fps=8, seed=0)
    (tmp_path / "labels.csv").write_text("filename,mos\nclip.mp4,50\n")
    sets = [a for item in (f"data.train_csv={tmp_path / 'labels.csv'}", f"data.video_root={tmp_path}",
                           f"data.store={tmp_path / 'store'}") for a in ("--set", item)]
    config = REPO / "config" / "nss_only.yml"
    invoke(extract, "-o", config, "--no-progress", *sets)
    # The store as an extraction of the previous NSS version left it.
    path = tmp_path / "store" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["settings"]["nss"]["version"] = NSS_VERSION - 1
    manifest["settings_hash"] = StoreSettings.of(manifest["settings"]).hash
    path.write_text(json.dumps(manifest))

    result = CliRunner().invoke(extract, ["-o", str(config), "--no-progress", *sets])
    assert result.exit_code == 2, result.output
    assert "made with other extraction settings" in result.output
    assert f"nss.version: {NSS_VERSION - 1} vs. {NSS_VERSION}" in result.output
