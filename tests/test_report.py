"""The HTML reports: content parsed from the page, key-frame thumbnails, and the page as headless Chromium draws it."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_data import synthetic_scores
from videos import frame_content, make_video

from pipeline.config import load_config
from pipeline.fit.calibration import Calibration
from pipeline.fit.data import FeatureSpec
from pipeline.fit.model import ChunkRegressor, ModelSpec, save_model
from pipeline.metrics import Logistic4, evaluate
from pipeline.report.html import esc
from pipeline.report.run_report import write_run_report
from pipeline.report.score_report import SECONDS_PER_VIDEO, failure_reason, write_score_report
from pipeline.report.sparklines import sparkline, whisker
from pipeline.report.thumbnails import key_frames
from pipeline.store import StoreSettings

VIDEOS, FAILED, WORST = 40, 4, 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The parts of a report the tests read: table rows with their classes and cells, images, script and links."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []  # rows of the sortable table: (class, cell texts)
        self.images: list[str] = []
        self.urls: list[str] = []
        self._sortable = self._body = False
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._sortable = a.get("class") == "sortable"
        elif tag == "tbody":
            self._body = self._sortable
        elif tag == "tr" and self._body:
            self.rows.append((a.get("class") or "", []))
        elif tag == "td" and self._body:
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"] or "")
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict, Path]:
    """A synthetic scoring table whose videos are tiny files (3 s, 8 fps), its metrics, and their folder."""
    root = tmp_path_factory.mktemp("report")
    table = synthetic_scores(VIDEOS, failed=FAILED, chunks=(2, 3), seed=1)
    table.loc[0, "filename"] = "odd <name> & \"quotes\".mp4"
    for i, name in enumerate(table["filename"]):
        make_video(root / f"{i}.mp4", frames=24, fps=8, seed=i)
    ok = table[table["status"] == "ok"]
    return table, evaluate(ok["mos"], ok["score"]), root


@pytest.fixture(scope="module")
def report(scored: tuple[pd.DataFrame, dict, Path]) -> Path:
    table, metrics, root = scored
    path = root / "report.html"
    write_score_report(path, table, metrics, videos={k: str(root / f"{i}.mp4") for i, k in enumerate(table["filename"])},
                       worst=WORST, title="synthetic scores")
    return path


@pytest.mark.slow
def test_one_row_per_video_failed_ones_listed_with_their_reason(scored, report: Path) -> None:
    table, _, _ = scored
    page = Page(report.read_text())
    assert len(page.rows) == VIDEOS
    names = [cells[1] for _, cells in page.rows]
    assert sorted(names) == sorted(table["filename"])  # escaped in the file, read back as given
    failed = table[table["status"] == "error"]
    shown = {cells[1]: (cls, cells) for cls, cells in page.rows}
    for name, error in zip(failed["filename"], failed["error"]):
        cls, cells = shown[name]
        assert cls == "failed" and cells[-1] == error and cells[2] == ""  # its reason, no score
    scores = [float(cells[2]) for cls, cells in page.rows if cls != "failed"]
    assert scores == sorted(scores)  # lowest first
    text = report.read_text()
    assert "Failed videos: 4, by reason" in text
    assert '<td>decoding failed after frame N</td><td class="n">3</td>' in text  # 3 videos, one reason
    assert "<name>" not in text and "&lt;name&gt; &amp; &quot;quotes&quot;" in text


def test_images_are_embedded_and_nothing_is_fetched(scored, report: Path) -> None:
    worst = scored[0].nsmallest(WORST, "score")["chunk_scores"]
    page = Page(report.read_text())
    jpegs = [src for src in page.images if src.startswith("data:image/jpeg;base64,")]
    pngs = [src for src in page.images if src.startswith("data:image/png;base64,")]
    assert len(jpegs) == sum(min(SECONDS_PER_VIDEO, len(s)) for s in worst) and len(pngs) == 2  # + histogram, scatter
    assert all(src.startswith("data:") for src in page.images)
    for src in jpegs[:1] + pngs:
        assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size[1] > 50
    assert not [url for url in page.urls if not url.startswith("data:")]
    assert not re.search(r"https?://|<link|@import|url\(", report.read_text())
    assert report.read_text().count('<svg class="spark"') == VIDEOS - FAILED  # one strip per scored video


def test_without_mos_there_is_no_scatter(scored, tmp_path: Path) -> None:
    table, _, root = scored
    path = tmp_path / "r.html"
    write_score_report(path, table.assign(mos=np.nan), None, videos={}, worst=0)
    page = Page(path.read_text())
    assert len(page.images) == 1 and "Predicted vs. MOS" not in path.read_text() and len(page.rows) == VIDEOS


def test_a_video_that_cannot_be_decoded_is_named_instead_of_its_thumbnails(scored, tmp_path: Path) -> None:
    table, metrics, _ = scored
    path = tmp_path / "r.html"
    write_score_report(path, table, metrics, videos={}, worst=1)  # the filenames are no files here
    assert "no thumbnails:" in path.read_text() and "not found" in path.read_text()


def test_thumbnails_show_the_key_frame_of_the_second(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", width=96, height=64, frames=24, fps=8, seed=3)
    (uri,) = key_frames(video, [2])
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), dtype=float)

    def distance(k: int) -> float:
        frame = Image.fromarray(frame_content(k, 96, 64, seed=3)).resize(thumb.shape[1::-1])
        return float(np.abs(np.asarray(frame, dtype=float) - thumb).mean())

    assert thumb.shape[0] == 96 and distance(16) < min(distance(0), distance(8), distance(23))


def test_failure_reasons_group_without_the_file_and_numbers() -> None:
    assert failure_reason("/data/a b.mp4: decoding failed after frame 37: Invalid", "/data/a b.mp4") == \
        failure_reason("x.mkv: decoding failed after frame 2: bad", "x.mkv") == "decoding failed after frame N"
    assert failure_reason("v.mp4: video file not found or unreadable (No such file)") == \
        "video file not found or unreadable"


def points(svg: str, cls: str = "") -> list[tuple[int, int]]:
    """The points of a strip's path of class ``cls`` ("": the line, "band": the shaded interval)."""
    kind = f' class="{cls}"' if cls else ""
    start, steps = re.search(rf'<path{kind} d="M(-?\d+,-?\d+)l([^"Z]*)Z?"', svg).groups()
    xy = [tuple(map(int, p.split(","))) for p in [start, *steps.split()]]
    return [tuple(int(v) for v in np.sum(xy[:i + 1], axis=0)) for i in range(len(xy))]


def test_sparklines_share_one_scale_and_stay_small_for_long_videos() -> None:
    a, b = points(sparkline(np.array([10.0, 50.0]), 0, 100)), points(sparkline(np.array([50.0, 90.0]), 0, 100))
    assert a[1][1] == b[0][1] and a[0][1] > a[1][1]  # the same score, the same height; lower scores lower
    long = np.full(3600, 60.0)
    long[1234] = 5.0
    svg = sparkline(long, 0, 100)
    assert len(points(svg)) == 80 and max(y for _, y in points(svg)) == pytest.approx(points(sparkline(np.array([5.0]), 0, 100))[0][1])
    assert len(svg) < 600
    assert len(sparkline(long, 0, 100, (long - 5, long + 5))) < 1400  # with its band


def test_strips_shade_each_seconds_interval_around_the_line() -> None:
    scores = np.array([40.0, 60.0, 20.0, 50.0])
    svg = sparkline(scores, 0, 100, (scores - 10, scores + 5))
    line, band = points(svg), points(svg, "band")
    upper, lower = band[:len(line)], band[len(line):][::-1]
    assert [x for x, _ in upper] == [x for x, _ in lower] == [x for x, _ in line]
    assert all(u < y < d for (_, u), (_, y), (_, d) in zip(upper, line, lower))  # higher scores are drawn higher
    assert points(sparkline(scores, 0, 100, (scores - 40, scores + 40)), "band")[0][1] < upper[0][1]  # wider
    assert 'class="band"' not in sparkline(scores, 0, 100, (np.full(4, np.nan), np.full(4, np.nan)))


def test_report_strips_carry_the_band(report: Path) -> None:
    assert report.read_text().count('<path class="band"') == VIDEOS - FAILED


def test_each_video_shows_its_interval_as_numbers_and_a_whisker(scored, report: Path) -> None:
    table = scored[0].set_index("filename")
    rows = Page(report.read_text()).rows
    assert report.read_text().count('<svg class="ci"') == VIDEOS - FAILED
    for cls, cells in rows:
        if cls != "failed":
            low, high = table.loc[cells[1], ["score_low", "score_high"]]
            shown = [float(bound) for bound in cells[4].split("–")]  # after #, video, score, MOS
            assert shown == pytest.approx([low, high], abs=0.006 * (high - low))  # 3 digits of the width
    header = re.findall(r"<thead>(.*?)</thead>", report.read_text())[-1]  # the table of every video
    assert ">80% interval<" in header and ">in domain<" in header and ">novelty<" in header and ">trained on<" in header


def test_whiskers_share_one_scale_with_the_dot_at_the_score() -> None:
    def drawn(svg: str) -> tuple[int, int, int]:
        a, b = map(int, re.search(r'd="M(\d+) \d+H(\d+)', svg).groups())
        return a, int(re.search(r'cx="(\d+)"', svg)[1]), b

    narrow, wide = drawn(whisker(50, (45, 55), 0, 100)), drawn(whisker(50, (20, 90), 0, 100))
    assert narrow[0] < narrow[1] < narrow[2] and wide[0] < narrow[0] and wide[2] > narrow[2]
    assert narrow[1] == wide[1]  # the same score at the same place
    assert (wide[1] - wide[0]) * 4 == pytest.approx((wide[2] - wide[1]) * 3, abs=8)  # 30 below, 40 above
    assert len(whisker(50, (20, 90), 0, 100)) < 140


def test_videos_unlike_the_training_data_are_marked_and_counted(scored, report: Path) -> None:
    table = scored[0]
    unlike = set(table.loc[table["in_domain"].eq(False), "filename"])
    assert unlike  # the synthetic table has some
    text = report.read_text()
    marked = {cells[1] for cls, cells in Page(text).rows if cls == "unfamiliar"}
    assert marked == unlike
    assert all(cells[5] == "unlike training" for cls, cells in Page(text).rows if cls == "unfamiliar")
    assert f"<b>{len(unlike)}</b><span>unlike the training data</span>" in text
    assert "their scores are extrapolated, so check these videos, and consider refitting with similar content" in text


def test_videos_the_model_trained_on_are_marked_out_of_fold(scored, report: Path) -> None:
    table = scored[0]
    trained = set(table.loc[table["trained_on"].eq(True), "filename"])
    assert trained
    shown = {cells[1] for cls, cells in Page(report.read_text()).rows if cls != "failed" and cells[7] == "yes"}
    assert shown == trained
    assert f"<b>{len(trained)}</b><span>trained on: scored out of fold</span>" in report.read_text()


def test_the_note_on_interval_widths_matches_the_videos_scored(scored, tmp_path: Path) -> None:
    table, metrics, _ = scored
    path = tmp_path / "r.html"
    mixed = table["trained_on"].eq(True).any() and not table["trained_on"].eq(True).all()
    assert mixed
    write_score_report(path, table, metrics, videos={}, worst=0)
    text = path.read_text()
    assert "ensemble members disagree on a video, the wider its interval" in text and "all get the same width" in text
    # The demo's case: every video was in the training data, so every interval has the same width.
    write_score_report(path, table.assign(trained_on=True), metrics, videos={}, worst=0)
    text = path.read_text()
    assert "every interval has the same width" in text and "wider its interval" not in text


def test_cards_give_the_interval_coverage_at_its_level(scored, tmp_path: Path) -> None:
    table, metrics, _ = scored
    path = tmp_path / "r.html"
    write_score_report(path, table, {**metrics, "coverage": 0.78}, videos={}, worst=0, interval=0.9)
    assert "<b>78%</b><span>of MOS inside the 90% prediction intervals</span>" in path.read_text()
    assert ">90% interval<" in path.read_text()


def test_equal_scores_list_the_least_familiar_video_first(scored, tmp_path: Path) -> None:
    table = scored[0].copy()
    ok = table.index[table["status"] == "ok"][:3]
    table.loc[ok, "score"] = -1.0
    table.loc[ok, "novelty"] = [0.5, 2.0, 1.2]
    path = tmp_path / "r.html"
    write_score_report(path, table, None, videos={}, worst=3)
    heads = re.findall(r"<h3>(.*?) &middot; score -1", path.read_text())
    assert heads == [esc(table.loc[ok[i], "filename"]) for i in (1, 2, 0)]


@pytest.mark.parametrize("old_columns", [False, True], ids=["version-1 model", "table from before intervals"])
def test_a_table_without_intervals_or_domain_check_renders_with_n_a(tmp_path: Path, old_columns: bool) -> None:
    table = synthetic_scores(VIDEOS, failed=FAILED, chunks=(2, 3), legacy=True, seed=1)
    if old_columns:
        table = table.drop(columns=["score_low", "score_high", "in_domain", "novelty", "trained_on", "chunk_low",
                                    "chunk_high"])
    ok = table[table["status"] == "ok"]
    metrics = {**evaluate(ok["mos"], ok["score"]), "coverage": 0.0}  # what nothing inside NaN bounds gives
    path = tmp_path / "r.html"
    write_score_report(path, table, metrics, videos={}, worst=1)
    text = path.read_text()
    rows = Page(text).rows
    assert len(rows) == VIDEOS and text.count('<svg class="spark"') == VIDEOS - FAILED
    assert all(cells[4:7] == ["n/a", "n/a", "n/a"] and cells[7] == "no" for cls, cells in rows if cls != "failed")
    assert '<svg class="ci"' not in text and 'class="band"' not in text and "unlike the training" not in text
    assert "prediction intervals</span>" not in text  # no coverage card: there were no intervals to cover
    assert "no prediction intervals and no domain check" in text


def test_run_report_shows_each_file_of_the_run(tmp_path: Path) -> None:
    rows = [{"phase": p, "epoch": e, "lr": 1e-3, "train_loss": (np.nan if e == 0 else 1 / e), "train_mse": 0.5,
             "train_rank": 0.1, "val_srocc": 0.5 + 0.1 * e, "val_plcc": 0.4 + 0.1 * e} for p in ("coarse", "fine")
            for e in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "history.csv", index=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"coarse": {"val": {"srocc": 0.7, "rmse": None, "n": 9}}}))
    (tmp_path / "baselines.json").write_text(json.dumps({"ridge": {"test": {"srocc": 0.654, "n": 5}}}))
    pd.DataFrame({"fold": [1, 2], "phase": "coarse", "split": "test", "srocc": [0.6, 0.8]}).to_csv(
        tmp_path / "folds.csv", index=False)
    (tmp_path / "folds.json").write_text(json.dumps({"coarse": {"test": {"srocc": {"mean": 0.7, "std": 0.14}}}}))
    pd.DataFrame({"repeat": [1, 2, 3], "coarse_test_srocc": [0.61, 0.72, 0.83], "coarse_test_plcc_raw": 0.5,
                  "svr_test:b_c_srocc": [0.51, 0.52, 0.531]}).to_csv(tmp_path / "repeats.csv", index=False)
    srocc = {"srocc": {"median": 0.72, "mean": 0.72, "std": 0.11}}
    (tmp_path / "repeats.json").write_text(json.dumps({"test": srocc, "models": {"coarse": {"test": srocc}},
                                                       "repeats": 3, "test_fraction": 0.2, "seed": 42}))
    (tmp_path / "config_coarse.yml").write_text("name: <tiny>\n")
    (tmp_path / "fold-1").mkdir()
    write_run_report(tmp_path / "fold-1")
    text = write_run_report(tmp_path, {"coarse": 2, "fine": 1}).read_text()
    page = Page(text)
    assert len([src for src in page.images if src.startswith("data:image/png")]) == 2  # one per phase
    assert "coarse 2, fine 1" in text and "name: &lt;tiny&gt;" in text
    assert "0.7 ± 0.14" in text and "0.72 (0.72 ± 0.11)" in text and "0.83" in text and "Repeats" in text
    assert "<td>ridge</td><td>test</td>" in text and "0.654" in text  # the baselines beside the phases
    # repeats.csv's <model>_<split>_<metric> columns become one row per repeat, model and split, as in folds.csv
    assert "<th>model</th><th>split</th><th class=\"n\">srocc</th><th class=\"n\">plcc_raw</th>" in text
    assert "<td>svr</td><td>test:b_c</td>" in text and "0.531" in text and "coarse_test_srocc" not in text
    assert "repeats 3, test_fraction 0.2, seed 42" in text
    assert 'href="fold-1/report.html"' in text
    assert "Scores you can trust" not in text  # a run from before calibration and intervals: no such section


def _model_file(path: Path, calibration: Calibration | Logistic4) -> Path:
    """A small but real model file with ``calibration``, as fit.py writes it."""
    cfg = load_config(None)
    spec = ModelSpec(FeatureSpec.from_config(cfg), {"spatial_coarse": 4}, StoreSettings({"a": 1}, "abc"), 3.0, 0.5,
                     calibration, cfg)
    save_model(path, ChunkRegressor(4, [3]), spec)
    return path


def test_run_report_shows_the_calibration_beyond_its_fitted_range_and_the_interval_coverage(tmp_path: Path) -> None:
    _model_file(tmp_path / "best_model.pth", Calibration((2.0, 3.0, 4.0), (1.5, 3.2, 4.5), 1.5))
    pd.DataFrame({"filename": ["a", "b"], "mos": [2.0, 4.0], "score": [2.1, 3.9], "score_raw": [2.0, 4.0],
                  "fold": [0, 1]}).to_csv(tmp_path / "out_of_fold.csv", index=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"fine": {
        "val": {"srocc": 0.8, "coverage": 0.79, "n": 400}, "test": {"srocc": 0.7, "coverage": 0.55, "n": 100}}}))
    text = write_run_report(tmp_path).read_text()
    trust = text[text.index("<h2>Scores you can trust</h2>"):]
    assert len(Page(trust).images) == 1  # the calibration
    assert "2 to 4 (grey), shown 25% of that range beyond each end" in trust and "average slope (1.5)" in trust
    assert "<td>fine</td><td>val</td><td>79%</td><td>80%</td><td class=\"n\">400</td><td>held</td>" in trust
    assert "<td>test</td><td>55%</td><td>80%</td><td class=\"n\">100</td><td>too narrow" in trust
    assert '<th class="n">coverage</th>' in text  # in the metrics table too


@pytest.mark.parametrize("model, note", [
    (lambda path: _model_file(path, Logistic4(5.0, 1.0, 3.0, 0.4)), "is a model file of version 1"),
    (lambda path: path.write_bytes(b"not a model"), "No calibration shown: "),
], ids=["version-1 model", "damaged model file"])
def test_run_report_of_a_model_without_calibration_says_why(tmp_path: Path, model, note: str) -> None:
    model(tmp_path / "best_model.pth")
    text = write_run_report(tmp_path).read_text()
    assert "Scores you can trust" in text and note in text and not Page(text).images


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                             "the report is not checked in a browser")
@pytest.mark.slow
def test_chromium_draws_the_report_without_errors(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = _chromium(report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.exists(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.02  # drawn: text, plots and thumbnails, not blank

    # The sort script: a click on the "video" header orders the rows by name.
    clicked = tmp_path / "clicked.html"
    clicked.write_text(report.read_text().replace(
        "</body>", '<script>document.querySelectorAll("table.sortable th")[1].click()</script></body>'))
    done = _chromium(clicked, tmp_path / "profile", "--dump-dom")
    assert not [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    names = [cells[1] for _, cells in Page(done.stdout).rows]
    assert len(names) == VIDEOS and names == sorted(names, key=str.lower)
