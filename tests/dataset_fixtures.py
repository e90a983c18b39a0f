"""Tiny metadata files in each data set's format: text ones live in tests/fixtures/datasets, binary ones
(XLSX, MATLAB) are written here with openpyxl and scipy.io, the libraries that read them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "datasets"
REAL = ROOT.parent / "shared" / "data" / "labels"  # real label files; tests using them skip when absent

UGC_HEADER = ("vid", "category", "resolution", "# subjects", "MOS full", "MOS chunk00", "std full", "std chunk00")


def write_xlsx(path: Path, sheets: dict[str, list[tuple]]) -> Path:
    """A workbook with one sheet per entry, rows as given (None: an empty cell)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    workbook.save(path)
    return path


def youtube_ugc_xlsx(path: Path) -> Path:
    """The official layout: sheet ``MOS`` (after an added sheet, as in the shipped copy), blank rows at the end."""
    return write_xlsx(path, {
        "diff": [("Vlog_720P-0001",), ("Vlog_720P-0002",)],  # an added sheet: a bare list of names
        "MOS": [
            UGC_HEADER,
            ("Animation_1080P-01b3", "Animation", 1080, 125, 3.649, 3.604, 0.468, 0.574),
            ("Vlog_720P-6410", "Vlog", 720, 117, 3.18, 1.456, 0.719, 0.627),
            (None,) * len(UGC_HEADER),
        ],
        "readme": [("The MOS range is [1, 5]",)],
    })


def cells(names: list[str]) -> np.ndarray:
    """A MATLAB column cell array of strings, as the data sets' .mat files hold names."""
    array = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        array[i, 0] = name
    return array


def live_vqc_mat(path: Path, names: list[str] | None = None, mos: list[float] | None = None) -> Path:
    """``LiveVQC_data.mat``'s layout: ``video_list`` (cells) and ``mos`` (column)."""
    names = names or ["A001.mp4", "A012.mp4", "B100.mp4"]
    mos = mos or [80.232, 57.3005, 6.25]
    scipy.io.savemat(path, {"video_list": cells(names), "mos": np.array(mos).reshape(-1, 1)})
    return path


def qualcomm_mat(path: Path) -> Path:
    """The official structs: two scenes filmed by two phones each, two distortion folders."""
    names = ["0723_ManUnderTree_GS5_03_20150723_130016.yuv", "0723_ManUnderTree_HTCOneVx_03_VIDEO0006.yuv",
             "0912_Cheerleader1_iphone_IMG_0184.yuv", "0912_CheerLeader1_Nokia1080_20130306_17_46_21_Pro.yuv"]
    scipy.io.savemat(path, {
        "qualcommVideoData": {
            "vidNames": cells(names),
            "distortionType": np.array([[1], [1], [2], [2]], dtype=np.uint8),
            "distortionNames": cells(["Artifacts", "Color"]),
            "phoneType": cells(["GS5", "HTCOneVX", "iPhone5s"]),
        },
        "qualcommSubjectiveData": {
            "unBiasedMOS": np.array([[52.5], [57.25], [36.75], [40.0]]),
            "biasedMOS": np.array([[59.0], [55.9], [38.1], [41.0]]),
        },
    })
    return path
