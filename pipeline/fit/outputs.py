"""What a run directory receives: model files, metrics.json, run.json (versions), history.csv, resolved configs, a
scatter plot, and report.html, which shows them together (``pipeline.report.run_report``).

Formats are boring on purpose: JSON with a fixed schema (NaN written as null), CSV with a header, YAML
configs that reproduce the run (``fit.py -o RUN_DIR/config_coarse.yml``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.config import Config, dump_config
from pipeline.files import write_atomic
from pipeline.fit.model import save_model
from pipeline.fit.train import PhaseResult
from pipeline.report.run_report import write_run_report
from pipeline.store.manifest import library_versions
from pipeline.metric_tables import METRIC_COLUMNS
from pipeline.trees import finite

BASELINES_FILE = "baselines.json"  # {baseline: {test split: metrics}} of a run with test splits
OUT_OF_FOLD_FILE = "out_of_fold.csv"  # every training video scored by the member that did not train on it
RUN_FILE = "run.json"  # {"pipeline_version", "versions": {library: version}}: what made the run


class RunLog:
    """Progress lines, written to ``log.txt`` in the run directory (started afresh) and echoed unless quiet."""

    def __init__(self, path: Path, echo: bool = True):
        self.path = path
        self.echo = echo
        path.write_text("")

    def __call__(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)


def write_configs(
    out_dir: Path, coarse: Config, fine: Config | None, names: tuple[str, str] = ("config_coarse.yml", "config_fine.yml")
) -> None:
    """Write the resolved configs; the coarse one names the fine one beside it, so the pair reruns as is."""
    dump_config(dataclasses.replace(coarse, fine_config=names[1] if fine is not None else None), out_dir / names[0])
    if fine is not None:
        dump_config(fine, out_dir / names[1])


def write_results(out_dir: Path, results: list[PhaseResult]) -> dict:
    """Write the model files, metrics, history, scatter plot and report of a run; return the metrics written."""
    final = results[-1]
    save_model(out_dir / "best_model.pth", final.model, final.spec)
    for result in results[:-1]:
        save_model(out_dir / f"{result.phase}_model.pth", result.model, result.spec)
    metrics = {result.phase: {split: _contract(m) for split, m in result.metrics.items()} for result in results}
    write_json(out_dir / "metrics.json", metrics)
    write_run_info(out_dir)
    pd.DataFrame([row for result in results for row in result.history]).to_csv(out_dir / "history.csv", index=False)
    write_out_of_fold(out_dir / OUT_OF_FOLD_FILE, final)
    plot_scatter(out_dir / "scatter.png", final)
    write_run_report(out_dir, {result.phase: result.best_epoch for result in results})
    return metrics


def write_run_info(out_dir: Path) -> None:
    """Write ``run.json``: the version of this package (and of the libraries) that made the run."""
    write_json(out_dir / RUN_FILE, {"pipeline_version": __version__, "versions": library_versions()})


def write_baselines(out_dir: Path, baselines: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Write ``baselines.json`` with the metrics of ``metrics.json``; none when no baseline ran, so no earlier
    run's file is left in the directory. Return what was written."""
    (out_dir / BASELINES_FILE).unlink(missing_ok=True)
    written = {name: {split: _contract(m) for split, m in by_split.items()} for name, by_split in baselines.items()}
    if written:
        write_json(out_dir / BASELINES_FILE, written)
    return written


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as strict JSON (NaN and infinity as null), all at once."""
    write_atomic(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def write_out_of_fold(path: Path, result: PhaseResult) -> None:
    """Write every training video's out-of-fold score: ``filename, mos, score, score_raw, fold`` (the member that
    left it out), the honest scores of the videos the model trained on."""
    split = result.splits["val"]
    pd.DataFrame({"filename": split.keys, "mos": split.mos, "score": result.predictions["val"],
                  "score_raw": result.raw["val"], "fold": [result.spec.held_out_by[key] for key in split.keys]}
                 ).to_csv(path, index=False)


def plot_scatter(path: Path, result: PhaseResult) -> None:
    """Raw predictions (MOS scale) vs. MOS: the training videos out of fold and the test splits, with the
    calibration drawn over the whole range of predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for split, raw in result.raw.items():
        m = result.metrics[split]
        label = "training videos, out of fold" if split == "val" else split
        ax.scatter(raw, result.splits[split].mos, s=12, alpha=0.7,
                   label=f"{label} (n={m['n']}): SROCC {m['srocc']:.3f}, coverage {m['coverage']:.2f}")
    every = np.concatenate(list(result.raw.values()))
    low, high = every.min(), every.max()
    margin = 0.15 * (high - low or 1.0)
    x = np.linspace(low - margin, high + margin, 200)
    ax.plot(x, result.spec.calibration(x), color="black", lw=1.5, label="calibration (fitted out of fold)")
    ax.axvspan(*result.spec.calibration.fitted_range, color="grey", alpha=0.08, lw=0)
    ax.set_xlabel("raw prediction (MOS scale; grey: calibration fitted)")
    ax.set_ylabel("MOS")
    ax.set_title(f"{result.spec.config.name}: {result.phase} phase, kept epoch {result.best_epoch}")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _contract(values: dict) -> dict:
    return {c: values.get(c, math.nan) for c in METRIC_COLUMNS}
