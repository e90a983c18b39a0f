"""The score report (``score.py --report FILE.html``): which videos are worst, and where in each the quality drops.

One self-contained page: a summary (counts, failures grouped by reason, a histogram of the scores), the
predicted-versus-MOS scatter and metrics when the CSV has MOS, key-frame thumbnails of the worst seconds of the
worst videos, and a sortable table of every video with a strip of its per-second scores. Only the worst
videos get thumbnails, so the page stays small at catalogue scale (BENCHMARKS.md: 10,000 videos).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import VideoError
from pipeline.files import write_atomic
from pipeline.metrics import fit_logistic
from pipeline.report import plots
from pipeline.report.html import cell, data_table, esc, image, number, page, plain_table
from pipeline.report.sparklines import sparkline
from pipeline.report.thumbnails import key_frames
from pipeline.tables import METRIC_COLUMNS

SECONDS_PER_VIDEO = 4  # thumbnails per worst video: its lowest-scoring seconds
#: The metrics of evaluate() shown against MOS: metrics.json's (METRIC_COLUMNS), with pair_accuracy before ``n``.
METRIC_ORDER = (*METRIC_COLUMNS[:-1], "pair_accuracy", "n")
_EXAMPLES = 3  # videos named per failure reason


def write_score_report(path: str | Path, table: pd.DataFrame, metrics: Mapping | None = None, *,
                       videos: Mapping[str, str] | None = None, worst: int, title: str = "") -> None:
    """Write the report of a scoring table (``Scorer.score_csv``/``score_paths``) to ``path``.

    ``videos`` maps each ``filename`` to its file, for the thumbnails (default: the filename itself);
    ``worst`` videos get thumbnails (0: none); ``title`` says what was scored (e.g. the CSV and the model).
    """
    write_atomic(path, score_report(table, metrics, videos=videos, worst=worst, title=title))


def score_report(table: pd.DataFrame, metrics: Mapping | None = None, *, videos: Mapping[str, str] | None = None,
                 worst: int, title: str = "") -> str:
    """The report of :func:`write_score_report` as one HTML string."""
    if worst < 0:
        raise ValueError(f"worst must be >= 0 videos, got {worst}")
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] != "ok"]
    has_mos = "mos" in table and table["mos"].notna().any()
    sections = [
        "<h1>Video quality scores</h1>" + (f'<p class="meta">{esc(title)}</p>' if title else ""),
        _cards(table, ok, failed, metrics),
        _distribution(ok, metrics if has_mos else None),
        _failures(failed, videos or {}),
        _worst(ok, videos or {}, worst),
        _videos(table, has_mos),
    ]
    return page(f"Scores{': ' + title if title else ''}", "\n".join(s for s in sections if s), sortable=True)


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


def _cards(table: pd.DataFrame, ok: pd.DataFrame, failed: pd.DataFrame, metrics: Mapping | None) -> str:
    cards = [("videos", len(table), ""), ("scored", len(ok), ""), ("failed", len(failed), "bad" if len(failed) else "")]
    if len(ok):
        cards += [("median score", number(float(ok["score"].median())), ""),
                  ("lowest score", number(float(ok["score"].min())), "")]
    if metrics:
        cards += [(f"SROCC vs. MOS (n={metrics['n']})", number(metrics["srocc"]), "")]
    return '<div class="cards">' + "".join(
        f'<div class="card {cls}"><b>{value}</b><span>{esc(label)}</span></div>' for label, value, cls in cards
    ) + "</div>"


def _distribution(ok: pd.DataFrame, metrics: Mapping | None) -> str:
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
            '<p class="note">plcc, rmse: after a logistic fitted on these videos; *_raw: of the scores as written.</p>')


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


def _worst(ok: pd.DataFrame, videos: Mapping[str, str], worst: int) -> str:
    chosen = ok.nsmallest(worst, "score") if worst else ok.iloc[:0]
    if not len(chosen):
        return ""
    blocks = []
    for row in chosen.itertuples(index=False):
        order = np.argsort(row.chunk_scores, kind="stable")[:SECONDS_PER_VIDEO]
        picked = sorted(order, key=lambda i: row.seconds[i])  # shown in time order
        seconds = [int(row.seconds[i]) for i in picked]
        head = f"<h3>{esc(row.filename)} &middot; score {number(row.score)}</h3>"
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
            f"{SECONDS_PER_VIDEO} per video), captioned with that second and its score.</p>"
            f'<div class="worsts">{"".join(blocks)}</div>')


def _videos(table: pd.DataFrame, has_mos: bool) -> str:
    scored = [s for s in table["chunk_scores"] if s is not None and len(s)]
    low = min(float(np.min(s)) for s in scored) if scored else 0.0
    high = max(float(np.max(s)) for s in scored) if scored else 1.0
    header = ["#", "video", "score", *(["MOS"] if has_mos else []), "seconds", "per-second score", "worst second",
              "status"]
    numeric = [True, False, True, *([True] if has_mos else []), True, True, False, False]
    ranked = table.assign(row_number=np.arange(1, len(table) + 1)).sort_values("score", kind="stable", na_position="last")
    rows, classes = [], []
    for row in ranked.itertuples(index=False):
        mos = [cell(number(row.mos), cls="n")] if has_mos else []
        if row.status == "ok":
            i = int(np.argmin(row.chunk_scores))
            strip = cell(sparkline(row.chunk_scores, low, high), sort=f"{row.chunk_scores[i]:.6g}")
            worst = cell(f"{_clock(int(row.seconds[i]))} &middot; {number(row.chunk_scores[i])}")
            tail = [cell(str(len(row.chunk_scores)), cls="n"), strip, worst, cell("ok")]
            score = cell(number(row.score), sort=f"{row.score:.8g}", cls="n")
        else:
            tail = [cell(""), cell(""), cell(""), cell(esc(row.error), cls="error")]
            score = cell("", sort="", cls="n")
        rows.append("".join([cell(str(row.row_number), cls="n"), cell(esc(row.filename), cls="name"), score, *mos, *tail]))
        classes.append("" if row.status == "ok" else "failed")
    note = (f'<p class="note">Lowest score first; click a column to sort. Strips share one scale '
            f"({number(low)} to {number(high)}); the dot marks the worst second; long videos show the lowest "
            "second of each stretch.</p>")
    return f"<h2>All videos</h2>{note}" + data_table(header, rows, numeric=numeric, sortable=True, row_classes=classes)


def _clock(second: int) -> str:
    """A chunk's start as m:ss (h:mm:ss past an hour)."""
    minutes, s = divmod(int(second), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"
