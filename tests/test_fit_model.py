import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.errors import WeightsError
from pipeline.fit.data import FeatureSpec
from pipeline.fit.model import ChunkRegressor, ModelSpec, load_model, save_model
from pipeline.metrics import Logistic4
from pipeline.store import StoreSettings


def test_video_score_is_the_mean_of_its_real_chunks():
    torch.manual_seed(0)
    model = ChunkRegressor(4, [3], "relu", dropout=0.0).eval()
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = model(x, mask)
    assert scores[0].item() == pytest.approx(model.chunk_scores(x[0, :2]).mean().item())
    assert scores[1].item() == pytest.approx(model.chunk_scores(x[1]).mean().item())
    x[0, 2] = 1e6  # padding never leaks into a score
    assert model(x, mask)[0].item() == pytest.approx(scores[0].item())


def test_standardisation_is_part_of_the_model():
    model = ChunkRegressor(3, [2]).eval()
    x = torch.tensor([[[1.0, 5.0, 7.0]]])
    before = model.chunk_scores(x)
    model.standardise_with(torch.tensor([1.0, 5.0, 7.0]), torch.tensor([2.0, 0.0, 4.0]))
    assert model.input_std.tolist() == [2.0, 1.0, 4.0]  # a constant input is left unscaled
    assert model.chunk_scores(x).item() == pytest.approx(model.chunk_scores(torch.zeros(1, 1, 3) + model.input_mean
                                                                            ).item())
    assert model.chunk_scores(x).item() != pytest.approx(before.item())
    assert model.chunk_scores(x.half()).dtype == torch.float32  # stored float16 features standardise to float32
    assert model.chunk_scores(x.half()).item() == pytest.approx(model.chunk_scores(x).item(), abs=1e-6)


def spec() -> ModelSpec:
    cfg = load_config(None)
    return ModelSpec(FeatureSpec.from_config(cfg), {"spatial_coarse": 7168, "temporal_slow": 2048,
                                                    "temporal_fast": 256}, StoreSettings({"a": 1}, "abc"), 3.0, 0.5,
                     Logistic4(5.0, 1.0, 3.0, 0.4), cfg)


def test_model_file_round_trip_with_weights_only(tmp_path: Path):
    torch.manual_seed(1)
    model = ChunkRegressor(6, [4, 3], "silu", 0.2)
    model.standardise_with(torch.arange(6.0), torch.full((6,), 2.0))
    save_model(tmp_path / "m.pth", model, spec())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]  # the temp file was renamed
    payload = torch.load(tmp_path / "m.pth", weights_only=True)
    assert payload["labels"] == {"mos_mean": 3.0, "mos_std": 0.5}
    loaded, loaded_spec = load_model(tmp_path / "m.pth")
    assert not loaded.training
    assert loaded_spec == spec()
    x, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(loaded(x, mask), model.eval()(x, mask))
    raw = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(loaded_spec.to_mos(raw), Logistic4(5.0, 1.0, 3.0, 0.4)(raw * 0.5 + 3.0))


class Arbitrary:
    """Any class: unpickling it would run code from the file's author."""


def test_load_model_refuses_files_that_need_arbitrary_code(tmp_path: Path):
    torch.save({"format": "vqa-pipeline/chunk-regressor", "x": Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="evil.pth: refused: not a weights-only"):
        load_model(tmp_path / "evil.pth")


@pytest.mark.parametrize("content, message", [
    (None, "model file not found"),
    (b"not a zip", "not a readable model file"),
    ({"format": "other"}, "not a vqa-pipeline/chunk-regressor file"),
    ({"format": "vqa-pipeline/chunk-regressor", "version": 99}, "version 99"),
    ({"format": "vqa-pipeline/chunk-regressor", "version": 1}, "damaged or incompatible"),
])
def test_load_model_names_the_file_and_the_problem(tmp_path: Path, content, message):
    path = tmp_path / "model.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert not isinstance(err.value.__cause__, pickle.UnpicklingError)
