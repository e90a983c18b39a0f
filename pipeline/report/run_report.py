"""The run report (``RUN_DIR/report.html``): how a fit went, from the files its run directory already holds.

Each section appears when its file is there: the metrics (``metrics.json``, and ``baselines.json`` when ridge
or SVR was scored beside the MLP), loss and validation curves per phase (``history.csv``), the scatter
(``scatter.png``), "Scores you can trust" (the calibration of ``best_model.pth`` beyond its fitted range, over
the points of ``out_of_fold.csv``, and the interval coverage per split of ``metrics.json``), the tables of
``--folds`` (``folds.csv``/``folds.json``),
``--repeats`` (``repeats.csv``/``repeats.json``) and ``--sweep`` (``sweep.csv``), links to the reports of the
fits below (``fold-*``, ``run-*``...), the resolved configs and the log. Building from files means a report can
be made again for any run directory, and a new output file needs only a new section here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pipeline.errors import WeightsError
from pipeline.files import write_atomic
from pipeline.fit.calibration import Calibration
from pipeline.fit.intervals import DEFAULT_LEVEL
from pipeline.report import plots
from pipeline.report.html import data_uri, esc, image, page, plain_table
from pipeline.metric_tables import METRIC_COLUMNS

REPORT_NAME = "report.html"
_OUT_OF_FOLD = "out_of_fold.csv"  # the training videos' out-of-fold scores (pipeline.fit.outputs)
_EXTEND = 0.25  # the calibration is drawn this share of its fitted range beyond each end
_CONFIGS = ("config_coarse.yml", "config_fine.yml", "best_config.yml", "best_config_fine.yml")
# Table files of the runs that fit many times: (file, summary file, title).
_MANY_FITS = (("folds.csv", "folds.json", "Folds"), ("repeats.csv", "repeats.json", "Repeats"),
              ("sweep.csv", None, "Sweep, best first by validation SROCC"))


def write_run_report(run_dir: str | Path, best_epochs: Mapping[str, int] | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run's files; return its path.

    ``best_epochs`` (phase -> epoch) marks the epoch each phase kept on its curves; without it none is marked.
    """
    run_dir = Path(run_dir)
    path = run_dir / REPORT_NAME
    write_atomic(path, run_report(run_dir, best_epochs or {}))
    return path


def run_report(run_dir: Path, best_epochs: Mapping[str, int]) -> str:
    """The report of :func:`write_run_report` as one HTML string."""
    sections = [
        f"<h1>Fit run: {esc(run_dir.name)}</h1><p class=\"meta\">{esc(run_dir.resolve())}</p>",
        _metrics(run_dir / "metrics.json", run_dir / "baselines.json"),
        _curves(run_dir / "history.csv", best_epochs),
        _scatter(run_dir / "scatter.png"),
        _trust(run_dir),
        *(_many_fits(run_dir, *files) for files in _MANY_FITS),
        _sub_runs(run_dir),
        _texts(run_dir, _CONFIGS, "Resolved configs", opened=True),
        _texts(run_dir, ("log.txt",), "Log", opened=False),
    ]
    return page(f"Fit run {run_dir.name}", "\n".join(s for s in sections if s), sortable=True)


def _metrics(path: Path, baselines: Path) -> str:
    """The MLP's phases, then the baselines (rows ``ridge``, ``svr``) on the same test splits."""
    if not path.exists():
        return ""
    metrics = {**json.loads(path.read_text()), **(json.loads(baselines.read_text()) if baselines.exists() else {})}
    columns = list(dict.fromkeys(c for by_split in metrics.values() for values in by_split.values() for c in values))
    rows = [[model, split, *(_value(values.get(c)) for c in columns)]
            for model, by_split in metrics.items() for split, values in by_split.items()]
    coverage = (f"; coverage: the share of MOS inside the {DEFAULT_LEVEL:.0%} prediction intervals, val: every "
                "training video, scored out of fold" if "coverage" in columns else "")
    return ("<h2>Metrics</h2>" + plain_table(["model", "split", *columns], rows)
            + f'<p class="note">plcc, rmse: after a logistic fitted on these predictions (VQEG practice); *_raw: of the scores as written{coverage}.</p>')


def _curves(path: Path, best_epochs: Mapping[str, int]) -> str:
    if not path.exists():
        return ""
    history = pd.read_csv(path)
    figures = plots.curves_by_phase(history, best_epochs)
    marked = ", ".join(f"{phase} {epoch}" for phase, epoch in best_epochs.items())
    note = (f"Kept epoch (the last, or the best out-of-fold SROCC with select_epoch: best_val): {marked}. "
            if marked else "")
    return ("<h2>Training</h2>" + "".join(image(uri, f"{phase} phase per epoch") for phase, uri in figures.items())
            + f'<p class="note">{note}Epoch 0 is the model a phase starts from.</p>')


def _scatter(path: Path) -> str:
    if not path.exists():
        return ""
    return f"<h2>Predicted vs. MOS</h2>{image(data_uri(path.read_bytes(), 'image/png'), 'predicted against MOS')}"


def _trust(run_dir: Path) -> str:
    """How far the model's scores can be trusted: its calibration beyond the training videos' predictions, and
    whether its intervals held the MOS as often as they promise. Absent for runs from before either existed."""
    parts = [part for part in (_calibration(run_dir / "best_model.pth", run_dir / _OUT_OF_FOLD),
                               _coverage(run_dir / "metrics.json")) if part]
    return "<h2>Scores you can trust</h2>" + "".join(parts) if parts else ""


def _calibration(model: Path, out_of_fold: Path) -> str:
    """The model's map from raw prediction to score, past the predictions it was fitted on: what a video unlike
    every training video is scored."""
    if not model.exists():
        return ""
    from pipeline.fit.model import load_model  # torch: imported only for a run that has a model

    try:
        _, spec = load_model(model)
    except WeightsError as err:
        return f'<p class="note">No calibration shown: {esc(err)}</p>'
    calibration = spec.calibration
    if not isinstance(calibration, Calibration):
        return (f'<p class="note">{esc(model.name)} is a model file of version 1: a logistic calibration fitted on the '
                "validation split, no prediction intervals and no domain check; refit it for them.</p>")
    points = None
    if out_of_fold.exists():
        table = pd.read_csv(out_of_fold)
        points = (table["score_raw"].to_numpy(), table["mos"].to_numpy())
    low, high = calibration.fitted_range
    uri = plots.calibration_curve(calibration, points, _EXTEND)
    note = (f"Fitted on the out-of-fold predictions of the training videos, {low:.4g} to {high:.4g} (grey), shown "
            f"{_EXTEND:.0%} of that range beyond each end. It rises everywhere, so no two predictions share a score; "
            f"past the fitted range it is a line of the average slope ({calibration.tail_slope:.3g}): a video "
            "predicted beyond every training video scores beyond the training MOS, an extrapolation. The score "
            "report flags the videos whose features are unlike the training data.")
    return (f"<h3>Calibration over the full range of predictions</h3>"
            f'{image(uri, "calibration from raw prediction to score")}<p class="note">{note}</p>')


def _coverage(path: Path) -> str:
    """Each split's interval coverage against the level the intervals promise, and whether the gap is more
    than the sampling error of a share over ``n`` videos."""
    if not path.exists():
        return ""
    rows = [[phase, split, f"{values['coverage']:.0%}", f"{DEFAULT_LEVEL:.0%}", values.get("n"),
             _reading(values["coverage"], values.get("n"))]
            for phase, by_split in json.loads(path.read_text()).items() for split, values in by_split.items()
            if values.get("coverage") is not None]
    if not rows:
        return ""
    return ("<h3>Prediction intervals: how often they held the MOS</h3>"
            + plain_table(["model", "split", "coverage", "nominal", "n", "reading"], rows)
            + f'<p class="note">The share of videos whose MOS lies inside its {DEFAULT_LEVEL:.0%} prediction '
              "interval; val: every training video, scored by the member that did not train on it; test: videos no "
              "member saw. Within two standard errors of the nominal level reads as held.</p>")


def _reading(coverage: float, n: int | None) -> str:
    """Whether a coverage over ``n`` videos is the nominal level within two binomial standard errors."""
    if not n:
        return ""
    error = 2 * math.sqrt(DEFAULT_LEVEL * (1 - DEFAULT_LEVEL) / n)
    if coverage < DEFAULT_LEVEL - error:
        return "too narrow: fewer MOS inside than promised"
    return "wider than needed" if coverage > DEFAULT_LEVEL + error else "held"


def _many_fits(run_dir: Path, table_name: str, summary_name: str | None, title: str) -> str:
    if not (run_dir / table_name).exists():
        return ""
    table = _by_model(pd.read_csv(run_dir / table_name))
    parts = [f"<h2>{esc(title)}</h2>"]
    summary = run_dir / summary_name if summary_name else None
    if summary is not None and summary.exists():
        parts.append(_summary(json.loads(summary.read_text())))
    split = table.to_dict("split")
    parts.append(plain_table(split["columns"], [[_value(v) for v in row] for row in split["data"]]))
    return "".join(parts)


def _by_model(table: pd.DataFrame) -> pd.DataFrame:
    """``repeats.csv``'s wide rows (a column ``<model>_<split>_<metric>`` each) as one row per repeat, model and
    split, as ``folds.csv`` has them; a table whose columns are not all named so is returned as it is."""
    index = table.columns[0]
    parsed = {column: _model_split_metric(column) for column in table.columns[1:]}
    if index != "repeat" or not parsed or None in parsed.values():
        return table
    rows = []
    for row in table.to_dict("records"):
        by_model: dict[tuple[str, str], dict] = {}
        for column, (model, split, metric) in parsed.items():
            by_model.setdefault((model, split), {})[metric] = row[column]
        rows += [{index: row[index], "model": model, "split": split, **values}
                 for (model, split), values in by_model.items()]
    return pd.DataFrame(rows)


def _model_split_metric(column: str) -> tuple[str, str, str] | None:
    model, _, rest = column.partition("_")
    metric = max((c for c in METRIC_COLUMNS if rest.endswith(f"_{c}")), key=len, default=None)
    return (model, rest[:-len(metric) - 1], metric) if metric and len(rest) > len(metric) + 1 else None


def _summary(summary: dict) -> str:
    """A ``folds.json``/``repeats.json`` summary as a table: one row per model and split, a column per metric,
    each cell its statistics (``mean ± std``, with the median first where there is one). ``repeats.json`` gives
    every model under ``models`` (its top-level splits repeat the last phase's) and how the splits were drawn."""
    drawn = {key: value for key, value in summary.items() if not isinstance(value, dict)}
    summary = summary.get("models", summary)
    rows: list[tuple[list[str], dict]] = []

    def walk(node: dict, path: list[str]) -> None:
        if all(isinstance(v, dict) and all(not isinstance(x, dict) for x in v.values()) for v in node.values()):
            rows.append((path, node))
        else:
            for key, child in node.items():
                walk(child, [*path, key])

    walk(summary, [])
    metrics = list(dict.fromkeys(m for _, node in rows for m in node))
    depth = max(len(path) for path, _ in rows)
    labels = ["model", "split"][-depth:] if depth <= 2 else [f"level {i + 1}" for i in range(depth)]
    body = [[*path, *(_stats(node.get(m, {})) for m in metrics)] for path, node in rows]
    note = ", ".join(f"{key} {value}" for key, value in drawn.items())
    return plain_table([*labels, *metrics], body) + (f'<p class="note">{esc(note)}</p>' if note else "")


def _stats(values: dict) -> str:
    def fmt(key: str) -> str:
        value = values.get(key)
        return "nan" if value is None else f"{value:.4g}"

    text = f"{fmt('mean')} ± {fmt('std')}" if "mean" in values else ""
    return f"{fmt('median')} ({text})" if "median" in values else text


def _sub_runs(run_dir: Path) -> str:
    reports = sorted(run_dir.glob(f"*/{REPORT_NAME}"))
    if not reports:
        return ""
    links = " &middot; ".join(f'<a href="{esc(p.parent.name)}/{REPORT_NAME}">{esc(p.parent.name)}</a>' for p in reports)
    return f"<h2>Reports of the fits in this run</h2><p>{links}</p>"


def _texts(run_dir: Path, names: tuple[str, ...], title: str, *, opened: bool) -> str:
    found = [run_dir / name for name in names if (run_dir / name).exists()]
    if not found:
        return ""
    attr = " open" if opened else ""
    return f"<h2>{esc(title)}</h2>" + "".join(
        f"<details{attr}><summary>{esc(p.name)}</summary><pre>{esc(p.read_text())}</pre></details>" for p in found)


def _value(value: object) -> object:
    """A value from JSON or CSV for a table cell: missing numbers (null, NaN) as blank."""
    return float("nan") if value is None else value
