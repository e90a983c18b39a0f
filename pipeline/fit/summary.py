"""What a protocol's fits add up to: ``folds.*`` or ``repeats.*`` in the run directory, and the printed table.

Each fit of ``--folds`` / ``--repeats`` writes its own run directory (``fold-K`` / ``repeat-N``, with
``metrics.json`` and, when baselines ran, ``baselines.json``); this module gathers them. The MLP's phases
and the baselines (``ridge``, ``svr``) are rows side by side, as in a paper's comparison table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.fit.outputs import BASELINES_FILE, write_json
from pipeline.fit.protocols import Fold, Holdout
from pipeline.report.run_report import write_run_report
from pipeline.metric_tables import METRIC_COLUMNS, cell, format_table

Metrics = dict[str, dict[str, dict]]  # [phase][split] -> metric -> value
TABLE_METRICS = ("srocc", "plcc", "krocc", "rmse")  # the order papers print them in
_STATS = ("median", "mean", "std")  # std: sample std (ddof 1) over the folds or repeats


def summarise(out: Path, holdouts: list[Holdout], results: list[Metrics]) -> Metrics:
    """Write the protocol's per-fit and summary files and its report, print its table, and return the MLP phases'
    centres.

    The centre is the mean over folds (``folds.csv``, ``folds.json``: mean and std) or the median over
    repeats (``repeats.csv`` one row per repeat, ``repeats.json``: median, mean and std), as published.
    """
    per_fit = [{**metrics, **_baselines(out / holdout.name)} for holdout, metrics in zip(holdouts, results)]
    table = pd.DataFrame([
        {"index": k + 1, "phase": phase, "split": split, **{c: values[c] for c in METRIC_COLUMNS}}
        for k, metrics in enumerate(per_fit) for phase, by_split in metrics.items() for split, values in by_split.items()
    ])
    stats = table.groupby(["phase", "split"], sort=False)[list(METRIC_COLUMNS)].agg(list(_STATS))
    summary = {phase: {split: _stats_of(stats.loc[(phase, split)], _STATS) for split in by_split}
               for phase, by_split in per_fit[0].items()}
    folds = isinstance(holdouts[0], Fold)
    centre = "mean" if folds else "median"
    if folds:
        table.rename(columns={"index": "fold"}).to_csv(out / "folds.csv", index=False)
        write_json(out / "folds.json", {phase: {split: _stats_of(stats.loc[(phase, split)], ("mean", "std"))
                                                for split in by_split} for phase, by_split in summary.items()})
        print(f"\n{len(holdouts)}-fold grouped cross-validation (mean ± std over folds), {out}:")
    else:
        _wide(table).to_csv(out / "repeats.csv", index=False)
        last = list(results[0])[-1]
        repeat = holdouts[0]
        write_json(out / "repeats.json", {**summary[last], "models": summary, "repeats": len(holdouts),
                                          "test_fraction": repeat.test_fraction, "seed": repeat.seed})
        print(f"\n{len(holdouts)} random grouped splits holding out {repeat.test_fraction:g} of the groups "
              f"(median ± std over repeats), {out}:")
    write_run_report(out)
    print(protocol_table(summary, centre))
    return {phase: {split: {c: v[centre] for c, v in values.items()} for split, values in summary[phase].items()}
            for phase in results[0]}


def protocol_table(summary: dict, centre: str) -> str:
    """One row per model and split, ``centre ± std`` of each metric, test splits first as papers have them."""
    rows = sorted(((phase, split, values) for phase, by_split in summary.items() for split, values in by_split.items()),
                  key=lambda row: row[1] == "val")
    cells = [[phase, split, *(f"{cell(v[c][centre])} ± {cell(v[c]['std'])}" for c in TABLE_METRICS), f"{v['n'][centre]:g}"]
             for phase, split, v in rows]
    return format_table(["model", "split", *(c.upper() for c in TABLE_METRICS), "n"], cells)


def _wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per repeat: ``repeat``, then ``<phase>_<split>_<metric>`` for every model, split and metric."""
    wide = table.set_index(["index", "phase", "split"])[list(METRIC_COLUMNS)].unstack(["phase", "split"])
    order = [(c, phase, split) for phase, split in dict.fromkeys(zip(table.phase, table.split)) for c in METRIC_COLUMNS]
    wide = wide[order]
    wide.columns = [f"{phase}_{split}_{c}" for c, phase, split in order]
    return wide.rename_axis("repeat").reset_index()


def _stats_of(row: pd.Series, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{metric: {stat: value}}`` from one row of the ``(metric, stat)`` aggregate table."""
    return {c: {name: float(row[(c, name)]) for name in names} for c in METRIC_COLUMNS}


def _baselines(run_dir: Path) -> Metrics:
    path = run_dir / BASELINES_FILE
    return json.loads(path.read_text()) if path.exists() else {}
