"""The accuracy study's table: a ``fit.py --folds K --sweep`` directory as one Markdown row per configuration.

Runs that differ only in ``seed`` are one configuration: each fold's held-out (test) metrics are averaged
over the seeds first, then the table gives the mean over folds (and the std over folds for SROCC), so the
spread shown is that of the content, not of the initialisation. Sorted by validation SROCC, the metric that
picks a configuration; the test columns are what it scores on sources it never saw.

    .venv/bin/python -m bench.accuracy_table RUN_DIR
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

METRICS = ("srocc", "krocc", "plcc", "rmse")


def describe(run: pd.Series) -> dict[str, str]:
    """The study's vocabulary for one run: which spatial levels and phases, temporal parts, NSS, rank weight."""
    two_phases = isinstance(run["fine_config"], str)
    spatial = "coarse -> fine" if two_phases else "-" if run["features.level"] in (None, "none") else run["features.level"] + " only"
    temporal = run["features.temporal"].strip("[]").replace("'", "").replace(", ", "+") or "-"
    return {"spatial": spatial, "temporal": temporal, "NSS": "yes" if run["features.nss"] else "-",
            "rank weight": f"{float(run['loss.rank_weight']):g}"}


def last_phase_test(run_dir: Path) -> pd.DataFrame:
    """Per-fold metrics of the run's last MLP phase on the held-out fold, and its validation SROCC."""
    folds = pd.read_csv(run_dir / "folds.csv")
    mlp = folds[folds.phase.isin(["coarse", "fine"])]  # not the baselines' rows (ridge, svr)
    last = mlp[mlp.phase == mlp.phase.iloc[-1]]
    test = last[last.split == "test"].set_index("fold")[list(METRICS)]
    test["val_srocc"] = last[last.split == "val"].set_index("fold")["srocc"]
    return test


def study_table(sweep_dir: Path) -> pd.DataFrame:
    sweep = pd.read_csv(sweep_dir / "sweep.csv")
    rows = []
    for _, run in sweep.iterrows():
        per_fold = last_phase_test(sweep_dir / run["run"])
        rows.append(per_fold.assign(**describe(run)).reset_index())
    table = pd.concat(rows)
    keys = ["spatial", "temporal", "NSS", "rank weight"]
    per_fold = table.groupby([*keys, "fold"], sort=False).mean()  # over seeds
    grouped = per_fold.groupby(keys, sort=False)
    summary = grouped.mean()
    summary["srocc_std"] = grouped["srocc"].std()
    summary["seeds"] = table.groupby(keys, sort=False).size() // grouped.size()
    return summary.sort_values("val_srocc", ascending=False).reset_index()


def markdown(summary: pd.DataFrame) -> str:
    head = "| spatial | temporal | NSS | rank weight | test SROCC | test KROCC | test PLCC | test RMSE | val SROCC |"
    lines = [head, "|" + "---|" * 9]
    for _, r in summary.iterrows():
        lines.append(f"| {r['spatial']} | {r['temporal']} | {r['NSS']} | {r['rank weight']} | "
                     f"{r['srocc']:.3f} ± {r['srocc_std']:.3f} | {r['krocc']:.3f} | {r['plcc']:.3f} | "
                     f"{r['rmse']:.1f} | {r['val_srocc']:.3f} |")
    return "\n".join(lines)


@click.command()
@click.argument("sweep_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(sweep_dir: Path) -> None:
    """Print SWEEP_DIR (a fit.py --folds --sweep output) as the study's Markdown table."""
    summary = study_table(sweep_dir)
    click.echo(f"{len(summary)} configurations, {int(summary['seeds'].min())}-{int(summary['seeds'].max())} seed(s) "
               "each; test = held-out folds (mean ± std over folds, seeds averaged per fold)")
    click.echo(markdown(summary))


if __name__ == "__main__":
    main()
