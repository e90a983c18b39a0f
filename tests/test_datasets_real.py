"""The importers on the real label files of ../shared/data/labels (skipped where ../shared is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from dataset_fixtures import REAL
from pipeline.datasets import import_dataset
from pipeline.labels import read_labels

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real label files not present ({REAL})")


def load(tmp_path: Path, name: str, *files: str) -> tuple[pd.DataFrame, list[str]]:
    """Import ``files`` (relative to the real labels folder), return the CSV as the label reader sees it, and notes."""
    out = tmp_path / f"{name}.csv"
    report = import_dataset(name, [REAL / f for f in files], out)
    table = read_labels(out, tmp_path, missing="keep")
    assert report.written == len(table)
    return pd.read_csv(out, dtype={"filename": str, "group": str}).assign(group=table["group"]), report.notes


def test_konvid1k(tmp_path: Path):
    table, _ = load(tmp_path, "konvid1k", "KoNViD-1k/KoNViD_1k_attributes.csv", "KoNViD-1k/KoNViD_1k_mos.csv")
    assert len(table) == 1200 and table["group"].nunique() == 1200
    assert table["mos"].between(1, 5).all()
    row = table.set_index("filename").loc["8171831850.mp4"]
    assert row["mos"] == 4.444029851  # from the quoted mos file, not the attributes' rounded value


@pytest.mark.slow
def test_lsvq_three_parts(tmp_path: Path):
    table, _ = load(tmp_path, "lsvq", "LSVQ/train_labels.txt", "LSVQ/LSVQ_whole_test.csv", "LSVQ/labels_test_1080p.csv")
    assert Counter(table["split"]) == {"train": 28056, "test": 7220, "test-1080p": 3573}
    assert table["mos"].between(0, 100).all()
    assert table["filename"].iloc[0] == "yfcc-batch1/725.mp4"  # the header-less list already has .mp4
    assert (table["filename"].str.count(r"\.mp4$") == 1).all()
    sizes = Counter(Counter(table["group"]).values())
    assert sizes == {1: 38849 - 2 * 343, 2: 343}  # names in two batches: two clips of one source
    pair = table[table["group"] == "youtube-3nZ920j6NUE"]
    assert sorted(pair["filename"]) == ["ia-batch1/youtube-3nZ920j6NUE.mp4", "ia-batch24/youtube-3nZ920j6NUE.mp4"]


def test_youtube_ugc_reads_the_mos_sheet_not_the_added_ones(tmp_path: Path):
    table, _ = load(tmp_path, "youtube-ugc", "YouTube-UGC/original_videos_MOS_for_YouTube_UGC_dataset.xlsx")
    assert len(table) == 1380  # sheet 'diff2' (1032 rows) and 'diff' (348) are a copy's additions
    assert list(table.columns) == ["filename", "mos", "group", "mos_std"]
    first = table.iloc[0]
    assert (first["filename"], first["mos"], first["mos_std"]) == ("Animation_1080P-01b3.mkv", 3.649, 0.468)


def test_live_vqc(tmp_path: Path):
    table, _ = load(tmp_path, "live-vqc", "LIVE-VQC/LiveVQC_data.mat")
    assert len(table) == 585 and table["filename"].iloc[0] == "A001.mp4"
    assert table["mos"].min() == pytest.approx(6.22368) and table["mos"].max() == pytest.approx(94.2865)


def test_kvq_leaves_the_unscored_test_list_out(tmp_path: Path):
    table, notes = load(tmp_path, "kvq", "KVQ/train_data_part.csv", "KVQ/test_data.csv")
    assert len(table) == 1499 and set(table["split"]) == {"train"}
    assert notes == [f"{REAL / 'KVQ/test_data.csv'}: left out 854 row(s) without a score"]


def test_live_qualcomm_groups_by_scene(tmp_path: Path):
    table, _ = load(tmp_path, "live-qualcomm", "LIVE-Qualcomm/LIVE-Qualcomm_qualcommSubjectiveData.mat")
    assert len(table) == 208
    sizes = Counter(Counter(table["group"]).values())
    assert table["group"].nunique() == 54 and sizes == {4: 47, 3: 6, 2: 1}  # 54 scenes, most by 4 phones
    assert set(table["filename"].str.split("/").str[0]) == {
        "Artifacts", "Color", "Exposure", "Focus", "Sharpness", "Stabilization"}


def test_cvd2014(tmp_path: Path):
    table, _ = load(tmp_path, "cvd2014", "CVD2014/CVD2014_Realignment_MOS.csv")
    assert len(table) == 234  # 168 empty rows at the end of the file are not videos
    assert table["group"].nunique() == 18  # 6 tests x 3 scenes
    assert (table["mos"] < 0).sum() == 3 and table["mos"].min() == -6.5
    assert "Test6/Talking_head/Test06_Talking_head_D01.avi" in set(table["filename"])
