"""The registry of feature kinds agrees with the backbones that compute them and answers in store order."""

import numpy as np

from pipeline.backbones import FAST_DIM, SLOW_DIM, SPATIAL_DIM
from pipeline.config import load_config
from pipeline.feature_kinds import BY_NAME, KIND_NAMES, LEVELS, held_levels, in_store_order, select, spatial_kind
from pipeline.fit.data import FeatureSpec


def test_widths_are_the_backbones_outputs():
    assert {kind: BY_NAME[kind].width for kind in KIND_NAMES} == {
        "spatial_coarse": SPATIAL_DIM, "spatial_fine": SPATIAL_DIM, "temporal_slow": SLOW_DIM,
        "temporal_fast": FAST_DIM, "nss": None}
    assert {BY_NAME[kind].dtype for kind in KIND_NAMES if kind != "nss"} == {np.dtype(np.float16)}
    assert BY_NAME["nss"].dtype == np.float32


def test_selections_come_in_store_order():
    assert select(["fine", "coarse"], ["fast", "slow"], nss=True) == KIND_NAMES
    assert select(["fine"], [], nss=False) == ("spatial_fine",)
    assert select([], ["fast"], nss=True) == ("temporal_fast", "nss")
    assert in_store_order({"nss", "spatial_fine", "unknown"}) == ("spatial_fine", "nss")
    assert held_levels(("spatial_fine", "temporal_slow", "spatial_coarse")) == ["fine", "coarse"]
    assert [spatial_kind(level) for level in LEVELS] == ["spatial_coarse", "spatial_fine"]


def test_a_phase_without_spatial_level_reads_the_old_none_as_null():
    assert load_config(None, ["features.level=none"]).features.level is None  # configs written before null
    old = FeatureSpec.from_dict({"level": "none", "temporal": [], "nss": True})  # a model file's features
    assert old.level is None and old.kinds == ("nss",)
