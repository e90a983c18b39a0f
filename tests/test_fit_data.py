from pathlib import Path

import numpy as np
import pytest
import torch
from fit_fixtures import make_store, write_configs, write_csv

from pipeline.config import load_config
from pipeline.errors import ConfigError, StoreError, UsageError
from pipeline.fit.data import ChunkFeatures, FeatureSpec, Split, drop_uncached, read_splits, shared_features
from pipeline.fit.protocols import Fold
from pipeline.store import FeatureStore

KINDS = ("spatial_coarse", "temporal_slow", "temporal_fast")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fitdata")
    labels = make_store(tmp / "store", videos=24, max_chunks=3, nss_dim=5)
    csv = write_csv(tmp / "labels.csv", labels)
    return tmp, labels, csv


def config(tiny, **data):
    tmp, _, csv = tiny
    cfg = load_config(write_configs(tmp, tmp / "store", csv))
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def test_feature_spec_orders_kinds_like_the_store():
    cfg = load_config(None, ["features.temporal=[fast, slow]", "features.nss=true", "features.level=fine"])
    assert FeatureSpec.from_config(cfg).kinds == ("spatial_fine", "temporal_slow", "temporal_fast", "nss")
    with pytest.raises(ConfigError, match="no input"):
        FeatureSpec.from_config(load_config(None, ["features.level=null", "features.temporal=[]", "features.nss=false"]))


def test_batch_pads_and_masks_videos_of_different_lengths(tiny):
    tmp, labels, _ = tiny
    store = FeatureStore.open(tmp / "store")
    features = ChunkFeatures(store, list(labels.filename), torch.device("cpu"))
    features.load([*KINDS, "nss"])
    table = store.read([*KINDS, "nss"], list(labels.filename))
    videos = torch.tensor([2, 0, 4])  # 3, 1 and 2 chunks
    x, mask = features.batch(videos, [*KINDS, "nss"])
    assert x.dtype == torch.float32 and x.shape == (3, 3, 7168 + 2048 + 256 + 5)  # nss is stored as float32
    assert features.batch(videos, KINDS)[0].dtype == torch.float16  # the CNN kinds keep the store's dtype
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    for b, v in enumerate(videos.tolist()):
        rows = table.rows(labels.filename[v])
        expected = np.concatenate([table.features[k][rows].astype(np.float32) for k in [*KINDS, "nss"]], axis=1)
        np.testing.assert_array_equal(x[b, : len(expected)].numpy(), expected)


def test_moments_cover_every_chunk_of_the_given_videos(tiny):
    tmp, labels, _ = tiny
    store = FeatureStore.open(tmp / "store")
    features = ChunkFeatures(store, list(labels.filename), torch.device("cpu"))
    features.load(KINDS)
    videos = torch.tensor([1, 5, 6, 7])
    mean, std = features.moments(videos, KINDS)
    table = store.read(KINDS, [labels.filename[v] for v in videos.tolist()])
    rows = np.concatenate([table.features[k].astype(np.float64) for k in KINDS], axis=1)
    np.testing.assert_allclose(mean.numpy(), rows.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), rows.std(0), rtol=1e-5, atol=1e-6)


def test_shared_features_are_reused_until_the_store_changes(tmp_path):
    labels = make_store(tmp_path / "store", videos=4)
    keys, cpu = list(labels.filename), torch.device("cpu")
    first = shared_features(FeatureStore.open(tmp_path / "store"), keys, cpu)
    assert shared_features(FeatureStore.open(tmp_path / "store"), keys, cpu) is first
    assert shared_features(FeatureStore.open(tmp_path / "store"), keys[:2], cpu) is not first
    make_store(tmp_path / "store", videos=4)  # the same keys again, in a newer shard
    assert shared_features(FeatureStore.open(tmp_path / "store"), keys[:2], cpu) is not first


def test_grouped_split_keeps_sources_apart_and_follows_the_seed(tiny):
    cfg = config(tiny)
    splits = read_splits(cfg, log=lambda _: None)
    assert not set(splits["train"].groups) & set(splits["val"].groups)
    assert len(splits["train"]) + len(splits["val"]) == 24
    assert read_splits(cfg, log=lambda _: None)["val"].keys == splits["val"].keys
    cfg.seed += 1
    assert read_splits(cfg, log=lambda _: None)["val"].keys != splits["val"].keys


def test_folds_hold_out_a_test_fold_and_validate_on_the_others(tiny):
    cfg = config(tiny)
    folds = [read_splits(cfg, Fold(k, 4), log=lambda _: None) for k in range(4)]
    tests = [fold["test"] for fold in folds]
    assert sorted(key for t in tests for key in t.keys) == sorted(tiny[1].filename)  # every video tested once
    groups = [set(t.groups) for t in tests]
    assert all(not a & b for i, a in enumerate(groups) for b in groups[i + 1:])
    for fold in folds:  # the held-out fold never trains nor picks the epoch; train and val share no source
        assert sum(len(split) for split in fold.values()) == len(tiny[1])
        assert not set(fold["test"].groups) & (set(fold["train"].groups) | set(fold["val"].groups))
        assert not set(fold["train"].groups) & set(fold["val"].groups)
    with pytest.raises(UsageError, match="--folds 11 needs 2 <= K <= 10"):  # 12 groups, 2 kept for validation
        read_splits(cfg, Fold(0, 11), log=lambda _: None)
    with pytest.raises(UsageError, match="data.test_csv"):
        read_splits(config(tiny, test_csv=str(tiny[0] / "labels.csv")), Fold(0, 4), log=lambda _: None)


def test_split_by_filename_without_a_group_column_and_val_csv(tiny):
    tmp, labels, _ = tiny
    plain = write_csv(tmp / "plain.csv", labels[["filename", "mos"]].iloc[:16])
    lines = []
    splits = read_splits(config(tiny, train_csv=str(plain)), log=lines.append)
    assert "splitting by filename" in lines[0]
    assert len(splits["val"]) == 4  # 20 % of 16 videos, each its own group
    val = write_csv(tmp / "val.csv", labels.iloc[16:])
    splits = read_splits(config(tiny, train_csv=str(plain), val_csv=str(val), test_csv=str(val)), log=lines.append)
    assert len(splits["train"]) == 16 and splits["val"].keys == list(labels.filename[16:])
    assert splits["test"].keys == splits["val"].keys
    with pytest.raises(UsageError, match="cannot be combined"):
        read_splits(config(tiny, val_csv=str(val)), Fold(0, 2), log=lines.append)


def test_videos_missing_from_the_store_are_left_out_with_a_warning(tiny):
    tmp, _, _ = tiny
    store = FeatureStore.open(tmp / "store")

    def split(name, keys):
        return Split(name, keys, np.arange(len(keys), dtype=float), np.array(keys))

    lines: list[str] = []
    kept = drop_uncached({"train": split("train", ["v000.mp4", "gone.mp4", "v001.mp4", "v002.mp4"]),
                          "val": split("val", ["v003.mp4", "v004.mp4"])}, store, lines.append)
    assert kept["train"].keys == ["v000.mp4", "v001.mp4", "v002.mp4"] and kept["train"].mos.tolist() == [0, 2, 3]
    assert kept["val"].keys == ["v003.mp4", "v004.mp4"]
    assert lines == [f"warning: 1 train video(s) not in the store {tmp / 'store'} are left out "
                     "(gone.mp4: not extracted)"]
    with pytest.raises(StoreError, match="only 1 of the 2 val videos have features"):
        drop_uncached({"val": split("val", ["v003.mp4", "gone.mp4"])}, store, lines.append)


def test_group_shuffle_needs_two_groups(tiny, tmp_path: Path):
    _, labels, _ = tiny
    one = labels.iloc[:4].assign(source="same")
    with pytest.raises(UsageError, match="at least 2 groups"):
        read_splits(config(tiny, train_csv=str(write_csv(tmp_path / "one.csv", one))), log=lambda _: None)
    three = write_csv(tmp_path / "three.csv", labels.iloc[:3].assign(source=["a", "b", "c"]))
    with pytest.raises(UsageError, match="the val split has 1 video"):
        read_splits(config(tiny, train_csv=str(three)), log=lambda _: None)


def test_a_source_on_both_sides_is_reported(tiny):
    tmp, labels, csv = tiny
    lines: list[str] = []
    overlapping = write_csv(tmp / "overlap.csv", labels.iloc[:4])
    read_splits(config(tiny, val_csv=str(overlapping)), log=lines.append)
    assert lines == [f"warning: 2 group(s) of {csv} also in the val split, e.g. ['src0', 'src1']; "
                     "its scores will be optimistic"]


def test_sampled_chunks_are_distinct_real_chunks_drawn_by_the_generator(tiny):
    tmp, labels, _ = tiny
    features = ChunkFeatures(FeatureStore.open(tmp / "store"), list(labels.filename), torch.device("cpu"))
    features.load(KINDS)
    videos = torch.tensor([2, 0, 4])  # 3, 1 and 2 chunks
    chunks = features.sample_chunks(videos, 2, torch.Generator().manual_seed(0))
    x, mask = features.batch(videos, KINDS, chunks)
    assert x.shape[:2] == mask.shape == (3, 2)
    assert mask.tolist() == [[True, True], [True, False], [True, True]]  # the one-chunk video: its chunk, padding
    for row, (video, picked) in enumerate(zip(videos.tolist(), chunks.tolist())):
        real = [c for c in picked if c < int(features.counts[video])]
        assert len(set(real)) == len(real) == int(mask[row].sum())
        everything, _ = features.batch(videos[row:row + 1], KINDS)
        for column, chunk in enumerate(real):
            assert torch.equal(x[row, column], everything[0, chunk])
    again = features.sample_chunks(videos, 2, torch.Generator().manual_seed(0))
    assert torch.equal(chunks, again)
    draws = {tuple(features.sample_chunks(videos[:1], 1, torch.Generator().manual_seed(s)).tolist()[0]) for s in range(20)}
    assert draws == {(0,), (1,), (2,)}  # every chunk of the three-chunk video gets drawn


def test_moments_are_computed_once_per_set_of_videos(tiny, monkeypatch):
    tmp, labels, _ = tiny
    features = ChunkFeatures(FeatureStore.open(tmp / "store"), list(labels.filename), torch.device("cpu"))
    features.load(KINDS)
    calls = []
    compute = features._moments
    monkeypatch.setattr(features, "_moments", lambda *args: calls.append(1) or compute(*args))
    first = features.moments(torch.tensor([1, 5]), KINDS)
    assert features.moments(torch.tensor([1, 5]), KINDS) is first and len(calls) == 1
    features.moments(torch.tensor([1, 6]), KINDS)
    assert len(calls) == 2
