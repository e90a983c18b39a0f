"""Size and writing time of the score report at catalogue scale (BENCHMARKS.md, "Score report at 10,000 videos").

A synthetic scoring table (tests/report_data.py: chunk scores, MOS, some failures) stands in for
``Scorer.score_csv``; the worst videos' thumbnails are decoded from the bundled sample's files, so the time
includes real decoding. Each configuration is written once with thumbnails and once without (``--worst 0``).
When Chromium is installed, the time it takes to load the page headless (``--dump-dom``) is shown too.

    .venv/bin/python -m bench.report [--videos 10000] [--chunks 10,120] [--worst 20] [--failed 0.02]
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from bench.cputime import timed
from pipeline.metrics import evaluate
from pipeline.report.score_report import write_score_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from report_data import synthetic_scores  # noqa: E402  (the synthetic tables the report tests use)


@click.command()
@click.option("--videos", default=10_000, show_default=True)
@click.option("--chunks", default="10,120", show_default=True, help="Fewest and most chunks (seconds) per video.")
@click.option("--worst", default=20, show_default=True, help="Videos with thumbnails (as --report-worst).")
@click.option("--failed", default=0.02, show_default=True, help="Fraction of videos that failed.")
@click.option("--thumbnails", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=ROOT / "data" / "sample" / "videos", show_default=True,
              help="Folder of .mp4 files the worst videos' thumbnails are decoded from.")
def main(videos: int, chunks: str, worst: int, failed: float, thumbnails: Path) -> None:
    low, high = map(int, chunks.split(","))
    table = synthetic_scores(videos, failed=round(failed * videos), chunks=(low, high), seed=0)
    ok = table[table["status"] == "ok"]
    metrics = evaluate(ok["mos"], ok["score"])
    samples = itertools.cycle(sorted(thumbnails.glob("*.mp4")))
    files = {name: str(next(samples)) for name in table["filename"]}
    rows = int(ok["chunk_scores"].map(len).sum())
    print(f"{videos} videos ({len(table) - len(ok)} failed), {rows} chunks ({low}-{high} per video)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (worst, 0):
            path = Path(tmp) / f"report-{n}.html"
            _, took = timed(lambda: write_score_report(path, table, metrics, videos=files, worst=n, title="bench"))
            print(f"  --report-worst {n:3d}: {path.stat().st_size / 1e6:6.2f} MB in {took.wall:5.1f} s"
                  + _browser_load(path, Path(tmp) / "profile"))


def _browser_load(page: Path, profile: Path) -> str:
    """How long headless Chromium takes to load and lay out ``page`` (empty when it is not installed)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return ""
    _, took = timed(lambda: subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                            f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                                           capture_output=True, check=True))
    return f"; Chromium loads it in {took.wall:4.1f} s"


if __name__ == "__main__":
    main()
