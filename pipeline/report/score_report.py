"""The score report (``score.py --report FILE.html``): which videos are worst, and where in each the quality drops.

One self-contained page: a summary (counts, failures grouped by reason, a histogram of the scores), the
predicted-versus-MOS scatter and metrics when the CSV has MOS, key-frame thumbnails of the worst seconds of the
worst videos, and a sortable table of every video with a strip of its per-second scores. Only the worst
videos get thumbnails, so the page stays small at catalogue scale (BENCHMARKS.md: 10,000 videos).

How far each score can be trusted is on the page too: its prediction interval (numbers and a whisker per
video, a band around each strip), whether the video is like the training data (``in_domain``, ``novelty``:
unlike ones are highlighted and counted, since their scores are extrapolated), whether the model trained on it
(its score is then out of fold), and with MOS the share of MOS inside the intervals. A table of a model without
these (a version-1 model file, or a table from before them) shows "n/a" and no whiskers or bands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import VideoError
from pipeline.fit.intervals import DEFAULT_LEVEL
from pipeline.files import write_atomic
from pipeline.metrics import fit_logistic
from pipeline.report import plots
from pipeline.report.html import cell, data_table, esc, image, number, page, plain_table
from pipeline.report.sparklines import sparkline, whisker
from pipeline.report.thumbnails import key_frames
from pipeline.metric_tables import METRIC_COLUMNS

SECONDS_PER_VIDEO = 4  # thumbnails per worst video: its lowest-scoring seconds
#: The metrics of evaluate() shown against MOS: metrics.json's (METRIC_COLUMNS), with pair_accuracy before ``n``.
METRIC_ORDER = (*METRIC_COLUMNS[:-1], "pair_accuracy", "n")
_EXAMPLES = 3  # videos named per failure reason
# The trust columns as a model without intervals or domain check writes them (version 1), for older tables.
_UNTRUSTED = {"score_low": np.nan, "score_high": np.nan, "in_domain": None, "novelty": np.nan, "trained_on": False,
              "chunk_low": None, "chunk_high": None}


def write_score_report(path: str | Path, table: pd.DataFrame, metrics: Mapping | None = None, *,
                       videos: Mapping[str, str] | None = None, worst: int, title: str = "",
                       interval: float = DEFAULT_LEVEL) -> None:
    """Write the report of a scoring table (``Scorer.score_csv``/``score_paths``) to ``path``.

    ``videos`` maps each ``filename`` to its file, for the thumbnails (default: the filename itself);
    ``worst`` videos get thumbnails (0: none); ``title`` says what was scored (e.g. the CSV and the model);
    ``interval`` is the level the table's ``score_low``..``score_high`` were computed at (the table does not say).
    """
    write_atomic(path, score_report(table, metrics, videos=videos, worst=worst, title=title, interval=interval))


def score_report(table: pd.DataFrame, metrics: Mapping | None = None, *, videos: Mapping[str, str] | None = None,
                 worst: int, title: str = "", interval: float = DEFAULT_LEVEL) -> str:
    """The report of :func:`write_score_report` as one HTML string."""
    if worst < 0:
        raise ValueError(f"worst must be >= 0 videos, got {worst}")
    table = _ranked(_with_trust_columns(table))
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] != "ok"]
    has_mos = "mos" in table and table["mos"].notna().any()
    level = f"{interval:.0%}"
    if metrics and not _has_intervals(ok):
        metrics = {**metrics, "coverage": float("nan")}  # no intervals: nothing covers, and 0 % would say it failed
    sections = [
        "<h1>Video quality scores</h1>" + (f'<p class="meta">{esc(title)}</p>' if title else ""),
        _cards(table, ok, failed, metrics, level),
        _trust(ok, level),
        _distribution(ok, metrics if has_mos else None, level),
        _failures(failed, videos or {}),
        _worst(ok, videos or {}, worst, level),
        _videos(table, has_mos, level),
    ]
    return page(f"Scores{': ' + title if title else ''}", "\n".join(s for s in sections if s), sortable=True)


def _with_trust_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the columns a model without intervals or domain check leaves empty added where missing, so
    a table from before they existed reads as one of a version-1 model."""
    missing = {column: value for column, value in _UNTRUSTED.items() if column not in table}
    return table.assign(**missing) if missing else table


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The rows lowest score first; equal scores the least familiar first (then by name), failures last. Each row
    keeps its input position as ``row_number``."""
    numbered = table.assign(row_number=np.arange(1, len(table) + 1))
    return numbered.sort_values(["score", "novelty", "filename"], ascending=[True, False, True], na_position="last",
                                kind="stable")


def failure_reason(error: str, path: str = "") -> str:
    """What went wrong, without the file it went wrong with: the part of ``error`` failures share.

    Messages name the file first (``PATH: problem (detail)``); the file and the detail are cut, and numbers
    become ``N``, so "frame 12" and "frame 40" of two videos count as one reason.
    """
    reason = error
    for prefix in (path, *re.findall(r"^[^:]*\.\w{2,4}(?=: )", error)):
        if prefix and reason.startswith(prefix + ": "):
            reason = reason[len(prefix) + 2:]
    reason = re.split(r" \(|: ", reason, maxsplit=1)[0]
    return re.sub(r"\d+", "N", reason).strip() or "unknown error"


def _cards(table: pd.DataFrame, ok: pd.DataFrame, failed: pd.DataFrame, metrics: Mapping | None, level: str) -> str:
    cards = [("videos", len(table), ""), ("scored", len(ok), ""), ("failed", len(failed), "bad" if len(failed) else "")]
    if len(ok):
        cards += [("median score", number(float(ok["score"].median())), ""),
                  ("lowest score", number(float(ok["score"].min())), "")]
    if ok["in_domain"].notna().any():
        unfamiliar = int(_unfamiliar(ok).sum())
        cards += [("unlike the training data", unfamiliar, "warn" if unfamiliar else "")]
    if _trained_on(ok).any():
        cards += [("trained on: scored out of fold", int(_trained_on(ok).sum()), "")]
    if metrics:
        cards += [(f"SROCC vs. MOS (n={metrics['n']})", number(metrics["srocc"]), "")]
        if _finite(metrics.get("coverage")):
            cards += [(f"of MOS inside the {level} prediction intervals", f"{metrics['coverage']:.0%}", "")]
    return '<div class="cards">' + "".join(
        f'<div class="card {cls}"><b>{value}</b><span>{esc(label)}</span></div>' for label, value, cls in cards
    ) + "</div>"


def _trust(ok: pd.DataFrame, level: str) -> str:
    """What the intervals and the domain check say, in a sentence or two: how to read a score."""
    if not len(ok):
        return ""
    if not (_has_intervals(ok) or ok["in_domain"].notna().any()):
        return ('<p class="note">This model gives no prediction intervals and no domain check (a model file of '
                "version 1): refit it with fit.py to see how far each score can be trusted.</p>")
    widths = "The more the model's ensemble members disagree on a video, the wider its interval."
    trained_on = _trained_on(ok)
    if trained_on.all():  # each scored by the one member that left it out: the same spread of errors around each
        widths = ("Every video here was in the training data, scored by the member of the model that never saw it, "
                  "so every interval has the same width; on new videos, the more the members disagree, the wider.")
    elif trained_on.any():
        widths += " Videos the model was trained on (scored out of fold) all get the same width."
    notes = [f"Each score comes with its {level} prediction interval: the range the MOS of {level} of such videos "
             f"falls in. {widths}"]
    unfamiliar = int(_unfamiliar(ok).sum())
    if unfamiliar:
        notes.append(f'<b class="warn">{unfamiliar} video{"s" if unfamiliar > 1 else ""} unlike the training '
                     "data</b> (novelty above 1, marked in the table): their scores are extrapolated, so check these "
                     "videos, and consider refitting with similar content.")
    return "".join(f'<p class="note">{note}</p>' for note in notes)


def _distribution(ok: pd.DataFrame, metrics: Mapping | None, level: str) -> str:
    if not len(ok):
        return ""
    plots_html = [f'<div><h2>Score distribution</h2>{image(plots.histogram(ok["score"].to_numpy()), "histogram of scores")}</div>']
    if not metrics:
        return f'<div class="row">{plots_html[0]}</div>'
    rated = ok[ok["mos"].notna()]
    title = f"SROCC {metrics['srocc']:.3f}, PLCC {metrics['plcc']:.3f} (after the logistic)"
    scatter = plots.scatter(rated["score"].to_numpy(), rated["mos"].to_numpy(), fit_logistic(rated["score"], rated["mos"]), title)
    plots_html.append(f"<div><h2>Predicted vs. MOS</h2>{image(scatter, 'predicted score against MOS')}</div>")
    values = [[metrics.get(c, float("nan")) for c in METRIC_ORDER]]
    return (f'<div class="row">{"".join(plots_html)}</div>'
            f"<h3>Metrics against MOS</h3>{plain_table(list(METRIC_ORDER), values)}"
            '<p class="note">plcc, rmse: after a logistic fitted on these videos; *_raw: of the scores as written; '
            f"coverage: the share of MOS inside the {level} prediction intervals (about {level} when they hold; "
            "empty without intervals).</p>")


def _failures(failed: pd.DataFrame, videos: Mapping[str, str]) -> str:
    if not len(failed):
        return ""
    reasons = pd.Series([failure_reason(str(e), str(videos.get(k, k))) for k, e in zip(failed["filename"], failed["error"])],
                        index=failed.index)
    groups = sorted(failed.groupby(reasons, sort=False)["filename"], key=lambda group: -len(group[1]))
    rows = []
    for reason, names in groups:
        listed = ", ".join(esc(name) for name in names[:_EXAMPLES])
        more = f" and {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else ""
        rows.append(cell(esc(reason)) + cell(str(len(names)), cls="n") + cell(listed + more, cls="name"))
    return (f"<h2>Failed videos: {len(failed)}, by reason</h2>"
            + data_table(["reason", "videos", "for example"], rows, numeric=[False, True, False])
            + '<p class="note">Each failed video is in the table below with its full error and no score.</p>')


def _worst(ok: pd.DataFrame, videos: Mapping[str, str], worst: int, level: str) -> str:
    chosen = ok.head(worst)  # ``ok`` is ranked: lowest score first
    if not len(chosen):
        return ""
    blocks = []
    for row in chosen.itertuples(index=False):
        order = np.argsort(row.chunk_scores, kind="stable")[:SECONDS_PER_VIDEO]
        picked = sorted(order, key=lambda i: row.seconds[i])  # shown in time order
        seconds = [int(row.seconds[i]) for i in picked]
        head = (f"<h3>{esc(row.filename)} &middot; score {number(row.score)}{_interval_text(row, level)}"
                f"{_marks(row)}</h3>")
        try:
            uris = key_frames(videos.get(row.filename, row.filename), seconds)
        except (VideoError, OSError) as exc:
            blocks.append(f'<div class="worst">{head}<p class="note">no thumbnails: {esc(exc)}</p></div>')
            continue
        figures = "".join(
            f'<figure><img src="{uri}" alt="{esc(row.filename)} at {s} s">'
            f"<figcaption>{_clock(s)} &middot; {number(row.chunk_scores[i])}</figcaption></figure>"
            for uri, s, i in zip(uris, seconds, picked))
        blocks.append(f'<div class="worst">{head}<div class="thumbs">{figures}</div></div>')
    return (f"<h2>The {len(chosen)} lowest-scoring videos: key frames of their worst seconds</h2>"
            f'<p class="note">Each image is the first frame of a second the model scored low (up to '
            f"{SECONDS_PER_VIDEO} per video), captioned with that second and its score. Equal scores: the video "
            "least like the training data first.</p>"
            f'<div class="worsts">{"".join(blocks)}</div>')


def _videos(table: pd.DataFrame, has_mos: bool, level: str) -> str:
    """The sortable table of every video (``table`` ranked): its score, interval, trust, and per-second strip."""
    ok = table[table["status"] == "ok"]
    low, high = _span(np.concatenate([np.empty(0), *ok["chunk_scores"]]))
    bounds = _span(np.r_[ok["score_low"].to_numpy(np.float64), ok["score_high"].to_numpy(np.float64)])
    header = ["#", "video", "score", *(["MOS"] if has_mos else []), f"{level} interval", "in domain", "novelty",
              "trained on", "seconds", "per-second score", "worst second", "status"]
    numeric = [True, False, True, *([True] if has_mos else []), True, False, True, False, True, True, False, False]
    rows, classes = [], []
    for row in table.itertuples(index=False):
        mos = [cell(number(row.mos), cls="n")] if has_mos else []
        if row.status == "ok":
            cells = [cell(number(row.score), sort=f"{row.score:.8g}", cls="n"), *mos, _interval_cell(row, bounds),
                     *_trust_cells(row), *_strip_cells(row, low, high), cell("ok")]
        else:  # the error across the empty columns after the score
            span = len(header) - 3 - len(mos)  # from the interval column on
            cells = [cell("", sort="", cls="n"), *mos, cell(esc(row.error), cls="error", span=span)]
        rows.append("".join([cell(str(row.row_number), cls="n"), cell(esc(row.filename), cls="name"), *cells]))
        classes.append("failed" if row.status != "ok" else "unfamiliar" if _flag(row.in_domain) is False else "")
    intervals = _has_intervals(ok)
    notes = ["Lowest score first; click a column to sort."]
    if intervals:
        notes.append(f"The interval column sorts by width; its whiskers share one scale ({number(bounds[0])} to "
                     f"{number(bounds[1])}), the dot at the score.")
    notes.append(f"Strips share one scale ({number(low)} to {number(high)})"
                 + (f"; the band is each second's {level} interval" if intervals else "")
                 + "; the dot marks the worst second; long videos show the lowest second of each stretch.")
    if _unfamiliar(ok).any():
        notes.append("Highlighted rows are unlike the training data.")
    if _trained_on(ok).any():
        notes.append("Trained on: the model trained on the video; its score is that of the ensemble member that "
                     "did not (scored out of fold).")
    note = f'<p class="note">{" ".join(notes)}</p>'
    return f"<h2>All videos</h2>{note}" + data_table(header, rows, numeric=numeric, sortable=True, row_classes=classes)


def _strip_cells(row: tuple, low: float, high: float) -> list[str]:
    """The cells seconds, per-second score (the strip, on the shared scale ``low``..``high``) and worst second."""
    i = int(np.argmin(row.chunk_scores))
    band = None if row.chunk_low is None or row.chunk_high is None else (row.chunk_low, row.chunk_high)
    strip = sparkline(row.chunk_scores, low, high, band)
    return [cell(str(len(row.chunk_scores)), cls="n"), cell(strip, sort=f"{row.chunk_scores[i]:.6g}"),
            cell(f"{_clock(int(row.seconds[i]))} &middot; {number(row.chunk_scores[i])}")]


def _interval_cell(row: tuple, bounds: tuple[float, float]) -> str:
    """The video's interval as a whisker and ``low–high``; sorted by its width; "n/a" without one."""
    if not _has_interval(row):
        return cell("n/a", sort="", cls="n")
    drawn = whisker(row.score, (row.score_low, row.score_high), *bounds)
    return cell(_bounds(row) + drawn, sort=f"{row.score_high - row.score_low:.6g}", cls="n range")


def _trust_cells(row: tuple) -> list[str]:
    """The cells in domain, novelty and trained on of a scored video."""
    domain = {True: "yes", False: _badge("unlike training")}.get(_flag(row.in_domain), "n/a")
    novelty = (cell(number(row.novelty, 3), sort=f"{row.novelty:.6g}", cls="n") if _finite(row.novelty)
               else cell("n/a", sort="", cls="n"))
    return [cell(domain), novelty, cell(_badge("yes", plain=True) if _flag(row.trained_on) else "no")]


def _interval_text(row: tuple, level: str) -> str:
    return f", {level} interval {_bounds(row)}" if _has_interval(row) else ""


def _bounds(row: tuple) -> str:
    """``low–high`` to three significant digits of the interval's width, whatever the MOS scale (0.1-40.6, not
    0.08031-40.62; 3.215-4.012 on a 1-5 scale)."""
    width = row.score_high - row.score_low
    decimals = max(0, 2 - math.floor(math.log10(width))) if width > 0 else 2
    return f"{row.score_low:.{decimals}f}&ndash;{row.score_high:.{decimals}f}"


def _marks(row: tuple) -> str:
    """Badges for a video the model should not be trusted on as much, or trained on."""
    marks = [_badge("unlike training")] if _flag(row.in_domain) is False else []
    marks += [_badge("trained on: scored out of fold", plain=True)] if _flag(row.trained_on) else []
    return "".join(f" {mark}" for mark in marks)


def _badge(text: str, plain: bool = False) -> str:
    """A marker that stands out in a row of text: amber for a warning, grey (``plain``) for a fact."""
    return f'<span class="badge{" plain" if plain else ""}">{esc(text)}</span>'


def _span(values: np.ndarray) -> tuple[float, float]:
    """The lowest and highest finite value: a shared scale to draw on (0 to 1 when there is none)."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)


def _flag(value: object) -> bool | None:
    """A flag of the table (``in_domain``, ``trained_on``) as True/False, or None where the model does not say."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else bool(value)


def _unfamiliar(ok: pd.DataFrame) -> pd.Series:
    return ok["in_domain"].eq(False)


def _trained_on(ok: pd.DataFrame) -> pd.Series:
    return ok["trained_on"].eq(True)


def _has_intervals(ok: pd.DataFrame) -> bool:
    return bool(np.isfinite(ok["score_low"].to_numpy(np.float64)).any())


def _has_interval(row: tuple) -> bool:
    return _finite(row.score_low) and _finite(row.score_high)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and bool(np.isfinite(value))


def _clock(second: int) -> str:
    """A chunk's start as m:ss (h:mm:ss past an hour)."""
    minutes, s = divmod(int(second), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"
