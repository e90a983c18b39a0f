"""What ``fit.py`` does: resolve both phases' configs, then run one fit, a grouped K-fold, N random splits, or a sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

from pipeline.config import Config, fine_config_path, load_config, to_dict
from pipeline.errors import UsageError
from pipeline.fit.checks import check_phases
from pipeline.fit.jobs import FitJob, run_jobs
from pipeline.fit.outputs import write_configs, write_run_info
from pipeline.fit.protocols import check_holdout, holdouts
from pipeline.fit.summary import summarise
from pipeline.fit.sweep import as_overrides, read_sweep
from pipeline.report.run_report import write_run_report
from pipeline.metric_tables import format_table
from pipeline.trees import flatten

Metrics = dict[str, dict[str, dict]]  # [phase][split] -> metric -> value


def fit(
    config: str | Path,
    *,
    fine: str | Path | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    folds: int = 0,
    repeats: int = 0,
    test_fraction: float = 0.2,
    sweep: str | Path | None = None,
    jobs: int = 1,
) -> Metrics:
    """Fit the coarse phase of ``config`` then its fine phase; return the metrics (fold means, repeat medians).

    ``fine`` replaces the config's ``fine_config``; ``overrides`` (``KEY=VALUE``) apply to both phases.
    ``folds`` >= 2 runs a grouped K-fold of the train CSV; ``repeats`` >= 1 runs that many random grouped
    splits holding out ``test_fraction`` of its groups; ``sweep`` runs every fit a sweep file lists
    (returning the best one's metrics); ``jobs`` fits run in parallel.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    coarse, fine_cfg = resolve_configs(config, fine, overrides)
    protocol = Protocol(folds, repeats, test_fraction)
    out = Path(out) if out is not None else default_run_dir(coarse)
    if sweep is not None:
        return _sweep(config, fine, overrides, Path(sweep), out, protocol, jobs)
    plan = _plan(coarse, fine_cfg, out, protocol)
    results = list(run_jobs(plan, jobs))
    return _summary(plan, results)


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


class Protocol(NamedTuple):
    """The ``--folds`` / ``--repeats`` options of a run (both 0: one fit)."""

    folds: int
    repeats: int
    test_fraction: float


def _plan(coarse: Config, fine: Config | None, out: Path, protocol: Protocol) -> list[FitJob]:
    held = holdouts(*protocol, seed=coarse.seed)
    if not held:
        return [FitJob(coarse, fine, out)]
    check_holdout(coarse.data, held[0])  # now, not when the first fit reads its splits
    return [FitJob(coarse, fine, out / holdout.name, holdout=holdout) for holdout in held]


def _summary(plan: list[FitJob], results: list[Metrics]) -> Metrics:
    """A plan's metrics: its protocol's summary (written beside its fits) when it holds splits out, else its one fit's."""
    if plan[0].holdout is None:
        return results[0]
    write_run_info(plan[0].out_dir.parent)
    return summarise(plan[0].out_dir.parent, [job.holdout for job in plan], results)


def _sweep(config: str | Path, fine: str | Path | None, overrides: Sequence[str], sweep: Path, out: Path,
           protocol: Protocol, jobs: int) -> Metrics:
    """Run every fit of ``sweep`` (each in ``out/run-NNN``), then rank them by the last phase's validation SROCC."""
    entries = read_sweep(sweep)
    configs = [resolve_configs(config, fine, [*overrides, *as_overrides(entry)]) for entry in entries]  # all checked first
    plans = [_plan(coarse, fine_cfg, out / f"run-{i:03d}", protocol) for i, (coarse, fine_cfg) in enumerate(configs)]
    flat = [job for plan in plans for job in plan]
    each = len(plans[0])
    print(f"sweep {sweep}: {len(entries)} fit(s){f' x {each} held-out splits' if each > 1 else ''}, {jobs} in parallel -> {out}")
    results: list[Metrics] = []
    for job, metrics in zip(flat, run_jobs(flat, jobs)):
        results.append(metrics)
        last = list(metrics)[-1]
        print(f"  done {job.out_dir}: {last} val srocc {metrics[last]['val']['srocc']:.4f}", flush=True)
    summaries, at = [], 0
    for plan in plans:
        done, at = results[at:at + len(plan)], at + len(plan)
        summaries.append(_summary(plan, done))
    names = [f"run-{i:03d}" for i in range(len(entries))]
    table = _ranking(entries, [coarse for coarse, _ in configs], summaries, names)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out)
    table.to_csv(out / "sweep.csv", index=False)
    best = int(table.index[0])
    write_configs(out, *configs[best], names=("best_config.yml", "best_config_fine.yml"))
    write_run_report(out)
    held = " (fold means or repeat medians; test = the held-out splits)" if plans[0][0].holdout else ""
    print(f"\nsweep results, best first by validation SROCC{held}:")
    print(format_table(list(table.columns), table.itertuples(index=False)))
    print(f"best: {table.iloc[0]['run']}; its config: {out / 'best_config.yml'}")
    return summaries[best]


def _ranking(entries: list[dict], configs: list[Config], summaries: list[Metrics], names: list[str]) -> pd.DataFrame:
    """One row per fit: the swept keys' values and the last phase's val (and test splits') metrics, by val SROCC."""
    swept = list(dict.fromkeys(key for entry in entries for key in entry))
    rows = []
    for name, cfg, metrics in zip(names, configs, summaries):
        values, phases = flatten(to_dict(cfg)), list(metrics)
        row = {"run": name, **{key: _resolved(values, key) for key in swept}}
        row.update({f"{phase}_val_srocc": metrics[phase]["val"]["srocc"] for phase in phases[:-1]})
        for split, scores in metrics[phases[-1]].items():  # val, then every test split
            row.update({f"{split}_{c}": scores[c] for c in ("srocc", "krocc", "plcc", "rmse", "n")})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("val_srocc", ascending=False, na_position="last", kind="stable")


def _resolved(values: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of a flattened config: a leaf, or the mapping below it (a swept ``model: {...}``)."""
    if key in values:
        return values[key]
    return {k[len(key) + 1:]: v for k, v in values.items() if k.startswith(key + ".")}
