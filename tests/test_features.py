"""FeatureSettings: config round trip, kinds, differences, old settings; and when a stored video must be extracted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.backbones.device import feature_precision
from pipeline.config import load_config
from pipeline.errors import SettingsMismatchError
from pipeline.features import SCORING_MAY_DIFFER, FeatureSettings
from pipeline.nss import NSS_DIM, NSS_VERSION
from pipeline.store import CHANGED, LACKING, MISSING, VideoRecord, extraction_need, file_signature


def settings_of(*overrides: str, precision: str = "float32") -> FeatureSettings:
    cfg = load_config(None, list(overrides)).extract
    return FeatureSettings.from_config(cfg, spatial_weights="resnet:abc", temporal_weights="slowfast:def",
                                       precision=precision)


def test_config_round_trip_keeps_what_shapes_features_and_takes_the_rest_from_runtime() -> None:
    settings = settings_of("extract.max_chunks=4", "extract.levels.fine=null", "extract.clip.frames=16")
    runtime = load_config(None, ["extract.decoder=pyav", "extract.workers=3", "extract.max_chunks=9"]).extract
    cfg = settings.to_config(runtime)
    assert (cfg.max_chunks, cfg.clip.frames, list(cfg.levels), cfg.decoder, cfg.workers) == (4, 16, ["coarse"], "pyav", 3)
    assert cfg.weights == "pretrained" and cfg.nss and cfg.temporal
    assert FeatureSettings.from_config(cfg, spatial_weights="resnet:abc", temporal_weights="slowfast:def",
                                       precision="float32") == settings
    assert FeatureSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["nss"] == {"dim": NSS_DIM, "version": NSS_VERSION}


def test_kinds_follow_levels_temporal_and_nss() -> None:
    assert settings_of().kinds(["coarse"]) == ("spatial_coarse", "temporal_slow", "temporal_fast", "nss")
    assert settings_of("extract.temporal=false", "extract.nss=false").kinds(["coarse", "fine"]) == \
        ("spatial_coarse", "spatial_fine")


def test_differences_name_the_keys_and_precision_may_differ_when_scoring() -> None:
    cpu, gpu = settings_of(), settings_of("extract.levels.coarse.short_side=96", precision="bf16")
    assert cpu.differences(gpu) == ["levels.coarse.short_side: 448 vs. 96", 'precision: "float32" vs. "bf16"']
    assert cpu.differences(gpu, allowed=SCORING_MAY_DIFFER) == ["levels.coarse.short_side: 448 vs. 96"]


def test_precision_follows_the_device_as_inference_does() -> None:
    assert feature_precision(torch.device("cpu")) == "float32"
    assert feature_precision(torch.device("cuda", 0)) == "bf16"  # a device object needs no GPU to exist


def test_settings_recorded_before_precision_read_back_unchanged() -> None:
    old = {k: v for k, v in settings_of().to_dict().items() if k != "precision"}
    settings = FeatureSettings.from_dict(old)
    assert settings.precision is None and settings.to_dict() == old
    assert settings.differences(settings_of(), allowed=SCORING_MAY_DIFFER) == []


def test_settings_not_made_by_extraction_are_named() -> None:
    assert not FeatureSettings.describes({"synthetic": True})
    with pytest.raises(SettingsMismatchError, match="model.pth: these features were not made by extract"):
        FeatureSettings.from_dict({"synthetic": True}, "model.pth")


def test_extraction_need(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    size, mtime = file_signature(video)
    record = VideoRecord("v", 25.0, 50, 64, 48, 2.0, "pyav", size, mtime, kinds=("spatial_coarse", "nss"))
    assert extraction_need(None, video, ["nss"]) == MISSING
    assert extraction_need(record, video, ["nss"]) is None
    assert extraction_need(record, video, ["nss", "spatial_fine"]) == LACKING
    video.write_bytes(b"y" * 11)
    assert extraction_need(record, video, ["nss"]) == CHANGED
    assert extraction_need(record, tmp_path / "gone.mp4") == CHANGED
