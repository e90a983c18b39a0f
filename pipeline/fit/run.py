"""What ``fit.py`` does: resolve both phases' configs, then run one fit, a grouped K-fold, or a sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from pipeline.config import Config, fine_config_path, load_config, to_dict
from pipeline.errors import UsageError
from pipeline.fit.checks import check_phases
from pipeline.fit.jobs import FitJob, run_jobs
from pipeline.fit.outputs import write_configs, write_json
from pipeline.fit.sweep import as_overrides, read_sweep
from pipeline.report.run_report import write_run_report
from pipeline.tables import METRIC_COLUMNS, cell, format_table
from pipeline.trees import flatten

Metrics = dict[str, dict[str, dict]]  # [phase][split] -> metric -> value


def fit(
    config: str | Path,
    *,
    fine: str | Path | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    folds: int = 0,
    sweep: str | Path | None = None,
    jobs: int = 1,
) -> Metrics:
    """Fit the coarse phase of ``config`` then its fine phase; return the metrics (fold means with ``folds``).

    ``fine`` replaces the config's ``fine_config``; ``overrides`` (``KEY=VALUE``) apply to both phases.
    ``folds`` >= 2 runs a grouped K-fold of the train CSV; ``sweep`` runs every fit a sweep file lists
    (returning the best one's metrics); ``jobs`` fits run in parallel.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    if folds == 1 or folds < 0:
        raise UsageError(f"--folds must be 0 (no folds) or >= 2, got {folds}")
    coarse, fine_cfg = resolve_configs(config, fine, overrides)
    out = Path(out) if out is not None else default_run_dir(coarse)
    if sweep is not None:
        return _sweep(config, fine, overrides, Path(sweep), out, folds, jobs)
    plan = _plan(coarse, fine_cfg, out, folds)
    results = list(run_jobs(plan, jobs))
    return _summarise_folds(out, results) if folds else results[0]


def resolve_configs(
    config: str | Path, fine: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[Config, Config | None]:
    """The coarse config with ``overrides``, and the fine one laid over it (None when there is no fine phase),
    both checked in full (:func:`pipeline.fit.checks.check_phases`) before any store is read."""
    coarse = load_config(config, overrides)
    fine_path = Path(fine) if fine is not None else fine_config_path(config, coarse)
    fine_cfg = load_config(fine_path, overrides, base=coarse) if fine_path is not None else None
    check_phases(coarse, fine_cfg)
    return coarse, fine_cfg


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _plan(coarse: Config, fine: Config | None, out: Path, folds: int) -> list[FitJob]:
    if not folds:
        return [FitJob(coarse, fine, out)]
    return [FitJob(coarse, fine, out / f"fold-{k + 1}", fold=(k, folds)) for k in range(folds)]


def _summarise_folds(out: Path, results: list[Metrics]) -> Metrics:
    """Write ``folds.csv`` (one row per fold, phase, split), ``folds.json`` (mean, std) and the report; print;
    return the means."""
    rows = [
        {"fold": k + 1, "phase": phase, "split": split, **{c: values[c] for c in METRIC_COLUMNS}}
        for k, metrics in enumerate(results)
        for phase, by_split in metrics.items()
        for split, values in by_split.items()
    ]
    table = pd.DataFrame(rows)
    table.to_csv(out / "folds.csv", index=False)
    stats = table.groupby(["phase", "split"], sort=False)[list(METRIC_COLUMNS)].agg(["mean", "std"])
    summary = {
        phase: {split: {c: {"mean": float(stats.loc[(phase, split), (c, "mean")]),
                            "std": float(stats.loc[(phase, split), (c, "std")])} for c in METRIC_COLUMNS}
                for split in by_split}
        for phase, by_split in results[0].items()
    }
    write_json(out / "folds.json", summary)
    write_run_report(out)
    cells = [[phase, split, *(f"{cell(v['mean'])} ± {cell(v['std'])}" for v in values.values())]
             for phase, by_split in summary.items() for split, values in by_split.items()]
    print(f"\n{len(results)}-fold grouped cross-validation (mean ± std over folds), {out}:")
    print(format_table(["phase", "split", *METRIC_COLUMNS], cells))
    return {phase: {split: {c: v["mean"] for c, v in values.items()} for split, values in by_split.items()}
            for phase, by_split in summary.items()}


def _sweep(config: str | Path, fine: str | Path | None, overrides: Sequence[str], sweep: Path, out: Path,
           folds: int, jobs: int) -> Metrics:
    """Run every fit of ``sweep`` (each in ``out/run-NNN``), then rank them by the last phase's validation SROCC."""
    entries = read_sweep(sweep)
    configs = [resolve_configs(config, fine, [*overrides, *as_overrides(entry)]) for entry in entries]  # all checked first
    plans = [_plan(coarse, fine_cfg, out / f"run-{i:03d}", folds) for i, (coarse, fine_cfg) in enumerate(configs)]
    flat = [job for plan in plans for job in plan]
    print(f"sweep {sweep}: {len(entries)} fit(s){f' x {folds} folds' if folds else ''}, {jobs} in parallel -> {out}")
    results: list[Metrics] = []
    for job, metrics in zip(flat, run_jobs(flat, jobs)):
        results.append(metrics)
        last = list(metrics)[-1]
        print(f"  done {job.out_dir}: {last} val srocc {metrics[last]['val']['srocc']:.4f}", flush=True)
    summaries, at = [], 0
    for plan in plans:
        done, at = results[at:at + len(plan)], at + len(plan)
        summaries.append(_summarise_folds(plan[0].out_dir.parent, done) if folds else done[0])
    names = [f"run-{i:03d}" for i in range(len(entries))]
    table = _ranking(entries, [coarse for coarse, _ in configs], summaries, names)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep.csv", index=False)
    best = int(table.index[0])
    write_configs(out, *configs[best], names=("best_config.yml", "best_config_fine.yml"))
    write_run_report(out)
    print(f"\nsweep results, best first by validation SROCC{' (fold means; test = the held-out folds)' if folds else ''}:")
    print(format_table(list(table.columns), table.itertuples(index=False)))
    print(f"best: {table.iloc[0]['run']}; its config: {out / 'best_config.yml'}")
    return summaries[best]


def _ranking(entries: list[dict], configs: list[Config], summaries: list[Metrics], names: list[str]) -> pd.DataFrame:
    """One row per fit: the swept keys' values and the last phase's val (and test) metrics, sorted by val SROCC."""
    swept = list(dict.fromkeys(key for entry in entries for key in entry))
    rows = []
    for name, cfg, metrics in zip(names, configs, summaries):
        values, phases = flatten(to_dict(cfg)), list(metrics)
        row = {"run": name, **{key: _resolved(values, key) for key in swept}}
        row.update({f"{phase}_val_srocc": metrics[phase]["val"]["srocc"] for phase in phases[:-1]})
        for split in ("val", "test"):
            if split in metrics[phases[-1]]:
                row.update({f"{split}_{c}": metrics[phases[-1]][split][c] for c in ("srocc", "krocc", "plcc", "rmse", "n")})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("val_srocc", ascending=False, na_position="last", kind="stable")


def _resolved(values: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of a flattened config: a leaf, or the mapping below it (a swept ``model: {...}``)."""
    if key in values:
        return values[key]
    return {k[len(key) + 1:]: v for k, v in values.items() if k.startswith(key + ".")}
