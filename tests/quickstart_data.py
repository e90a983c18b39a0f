"""Write a small data set as the README's quickstart expects one: videos in nested folders and a label CSV.

    python tests/quickstart_data.py DIR     # DIR/videos/src<k>/clip<i>.mp4 and DIR/labels.csv (filename,mos,source)

``.ci/wheel-quickstart`` runs the quickstart on it from an installed wheel, outside the checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from videos import make_video

SOURCES, PER_SOURCE = 4, 2


def write_quickstart_data(folder: Path) -> Path:
    """Write ``SOURCES * PER_SOURCE`` two-second 64x48 videos under ``folder`` and their labels; return the CSV."""
    rows = []
    for i in range(SOURCES * PER_SOURCE):
        name = f"videos/src{i // PER_SOURCE}/clip{i}.mp4"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        make_video(folder / name, frames=16, fps=8, seed=i)
        rows.append(f"{name},{1 + (i * 7) % 5 + i / 10},src{i // PER_SOURCE}\n")
    csv = folder / "labels.csv"
    csv.write_text("filename,mos,source\n" + "".join(rows))
    return csv


if __name__ == "__main__":
    print(write_quickstart_data(Path(sys.argv[1])))
