"""The end-to-end demo on the bundled sample (``make demo``): extract -> fit coarse, then fine -> score -> metrics.

Run from the repository root: ``python -m pipeline.demo [--set KEY=VALUE ...]``. Each step prints the
command that does the same on its own. The shipped configs are used as they are; what the demo changes is
passed as ``--set`` overrides and printed:

- Spatial levels at the sample's own size: the clips are 320x180, so the design's short sides (448, 720)
  would only upscale them, at 16 times the ResNet-50 cost of ``coarse 112, fine 180`` (native). A model
  fitted on these levels extracts new videos at the same levels when it scores them.
- A learning rate of 1e-4 for both phases (``optimizer.lr``): 30 clips make one optimizer step an epoch, and at
  the configs' 1e-3 the first steps on 9,547 inputs blow the MLP up, and the members then rank the source
  they left out backwards (BENCHMARKS.md, "make demo").
- Nothing else: the NSS features are on by default (``extract.nss``, ``features.nss``); they need no
  downloaded weights, so the demo's numbers mean something even where the pretrained weights cannot be had.
- Without pretrained weights, ``extract.weights=random`` (said plainly, with what it means) and a store of its
  own, ``<data.store>-random``, so random-weight features never mix with real ones.

The sample's 30 clips come from 3 source videos. The fit cross-fits one member per source, each trained on
the other two, and the model scores each clip with the member that never saw its source (``trained_on``):
every score in ``scores.csv`` and the report is out of fold, so the metrics over all 30 clips are honest
(demo-grade: 3 sources).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli import reports_errors, set_option
from pipeline.errors import SettingsMismatchError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.extract.plan import ExtractSummary

CONFIG = "config/kwai_simpleVQA.yml"
SAMPLE_CSV = "data/sample/labels.csv"
SAMPLE_LEVELS = ["extract.levels.coarse.short_side=112", "extract.levels.fine.short_side=180"]
SAMPLE_FIT = ["optimizer.lr=1e-4"]  # one step an epoch on 30 clips: 1e-3 diverges (module docstring)


def pretrained_weights() -> str | None:
    """None when both backbones' official weights are here (torch hub cache) or downloadable; else why not."""
    from pipeline.backbones.weights import BACKBONE_WEIGHTS, PRETRAINED, locate
    from pipeline.errors import WeightsError

    try:
        for spec in BACKBONE_WEIGHTS:
            locate(spec, PRETRAINED)
    except WeightsError as err:
        return str(err)
    return None


def demo_overrides(config: str, weights: str | None) -> tuple[list[str], str]:
    """The ``--set`` items the demo adds to ``config``, and the weights it extracts with."""
    from pipeline.backbones.weights import PRETRAINED
    from pipeline.config import load_config

    overrides = [*SAMPLE_LEVELS, *SAMPLE_FIT]
    if weights is None:
        missing = pretrained_weights()
        weights = PRETRAINED if missing is None else "random"
        if missing is not None:
            click.echo(f"Pretrained backbone weights are not available here:\n  {missing}\n")
    if weights == "random":
        click.echo(
            "=> This demo runs with RANDOM backbone weights (extract.weights=random). Random-weight ResNet-50 and\n"
            "   SlowFast features are fixed random projections of the pixels: they carry little quality signal,\n"
            "   so they are not what the numbers below measure. The weight-free NSS features (on by default)\n"
            "   carry real signal. With the pretrained weights in place, the same demo uses them.\n")
        overrides += ["extract.weights=random", f"data.store={load_config(config).data.store}-random"]
    else:
        overrides.append(f"extract.weights={weights}")
    return overrides, weights


def extract_sample(videos: list[tuple[str, str]], cfg: Config) -> ExtractSummary:
    """Extract the sample into the demo's own store; a store an earlier version left there is named with the
    command that clears it, since the demo, not the user, chose that store."""
    from pipeline.extract.run import extract_videos

    try:
        return extract_videos(videos, cfg.data.store, cfg.extract)
    except SettingsMismatchError as exc:
        raise SettingsMismatchError(f"{exc}\nThe demo made that store with an earlier version of the pipeline: "
                                    "`make clean-demo` removes it, and the demo then extracts the sample afresh.") from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--config", "config_path", default=CONFIG, show_default=True, metavar="CONFIG",
              help="Coarse-phase config (its fine_config is the fine phase).")
@click.option("--out", "out_dir", default="runs/demo", show_default=True, metavar="RUN_DIR", help="Run directory.")
@click.option("--weights", metavar="pretrained|random|DIR",
              help="Backbone weights (default: the pretrained ones when they can be had, else random).")
@set_option
@reports_errors
def main(config_path: str, out_dir: str, weights: str | None, overrides: tuple[str, ...]) -> int:
    """Extract the bundled sample's features, fit coarse then fine, score the sample, and print the metrics."""
    from pipeline.config import load_config
    from pipeline.fit.run import fit
    from pipeline.labels import read_labels
    from pipeline.scoring import Scorer, write_per_second, write_scores
    from pipeline.report.score_report import write_score_report
    from pipeline.metric_tables import metrics_table

    started = time.perf_counter()
    added, weights = demo_overrides(config_path, weights)
    items = [*added, *overrides]
    cfg = load_config(config_path, items)
    out = Path(out_dir)
    sets = " ".join(f"--set {item}" for item in items)
    click.echo(f"Demo overrides of {config_path} (the shipped config is unchanged): {sets}\n")

    _step(f"1/3 extract: python extract_features.py -o {config_path} {sets}")
    labels = read_labels(cfg.data.train_csv, cfg.data.video_root, group_column=cfg.data.group_column)
    summary = extract_sample(list(zip(labels["filename"], labels["path"])), cfg)
    click.echo(str(summary))
    if summary.failed:
        raise click.ClickException(f"{len(summary.failed)} sample video(s) failed: {summary.failed}")

    took = {"extract": time.perf_counter() - started}
    _step(f"2/3 fit: python fit.py -o {config_path} {sets} --out {out}")
    fitted = fit(config_path, overrides=items, out=out)
    took["fit"] = time.perf_counter() - started - sum(took.values())

    model = out / "best_model.pth"
    _step(f"3/3 score: python score.py --model {model} --csv {SAMPLE_CSV} --video-root {cfg.data.video_root} "
          f"--out {out / 'scores.csv'} --per-second {out / 'scores_per_second.jsonl'} "
          f"--report {out / 'scores.html'} --report-worst 4")
    table, metrics = Scorer.load(model).score_csv(cfg.data.train_csv, cfg.data.video_root, progress=True)
    write_scores(table, out / "scores.csv")
    write_per_second(table, out / "scores_per_second.jsonl")
    write_score_report(out / "scores.html", table, metrics, videos=dict(zip(labels["filename"], labels["path"])),
                       worst=4, title=f"{SAMPLE_CSV} scored with {model} (every clip out of fold)")
    took["score"] = time.perf_counter() - started - sum(took.values())

    rows = [([f"fit, {phase} phase", "all 30, out of fold"], values["val"]) for phase, values in fitted.items()]
    rows.append((["score.py, best model", "all 30, out of fold"], metrics))
    click.echo("\n" + metrics_table(["step", "videos"], rows, columns=_METRICS))
    click.echo(f"\nplcc/rmse after a 4-parameter logistic fit (VQEG practice); coverage: share of MOS inside the 80 % "
               f"intervals; MOS here is VMAF, a proxy (data/sample/README.md).\nEach of the {len(table)} clips is "
               f"scored by the member of the model that never saw its source (trained_on: true).\n"
               f"weights: {weights}. Outputs in {out}/: "
               f"best_model.pth, metrics.json, scatter.png, report.html, scores.csv, scores_per_second.jsonl, "
               f"scores.html (open the two .html files in a browser).\n"
               f"Demo finished in {time.perf_counter() - started:.0f} s ("
               + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in took.items()) + ").")
    return 0


_METRICS = ["srocc", "krocc", "plcc", "rmse", "coverage", "n"]


def _step(command: str) -> None:
    click.echo(f"\n== {command}")


if __name__ == "__main__":
    main()
