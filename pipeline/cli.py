"""Command-line entry points: thin click commands over ``pipeline``, sharing option parsing and exit codes.

Exit codes (docs/design.md; each cause's code is decided in :mod:`pipeline.errors`): 0 success, 1 any other
error, 2 bad usage, config or settings, 3 finished but some videos failed (they are listed). The top-level
scripts and the ``vqa-*`` console scripts call these same functions.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from pipeline import __version__
from pipeline.config import Config, load_config
from pipeline.discovery import find_videos
from pipeline.errors import (
    EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, Interrupted, UsageError, VQAError, describe_os_error, exit_code, no_space,
)
from pipeline.labels import read_labels
from pipeline.table_formats import check_format, write_table
from pipeline.metric_tables import metrics_table

_LISTED_FAILURES = 20  # failed videos named on the terminal; the store's failures.csv has them all

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a config key by its dotted path, e.g. --set extract.batch_size=4 (repeatable).",
)


def _list_configs(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--list-configs``: print each shipped config's name and what it is for, then stop."""
    if not value or ctx.resilient_parsing:
        return
    from pipeline.configs import shipped_names, summary

    for name in shipped_names():
        click.echo(f"{name:24} {summary(name)}")
    ctx.exit()


list_configs_option = click.option(
    "--list-configs", is_flag=True, expose_value=False, is_eager=True, callback=_list_configs,
    help="List the configs that ship with the package (-o NAME) and exit.",
)
version_option = click.version_option(__version__, "--version", prog_name="vqa-pipeline",
                                      message="%(prog)s %(version)s")


def _workers(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """``--workers``: a count of decoder processes (0 or more) or ``auto``."""
    if value is None or value == "auto":
        return value
    if not value.isdigit():
        raise click.BadParameter(f"expected a number >= 0 or auto, got {value!r}")
    return int(value)


_KEPT = "interrupt note"  # click context meta: what a command says it kept when interrupted


def _nothing_kept() -> str:
    return "nothing was left half-written; rerun the same command to start again"


def reports_errors(command: Callable[..., int | None]) -> Callable[..., None]:
    """Run ``command``; print a typed error as one message (no traceback) and exit with its code.

    The command returns its exit code (None: 0), e.g. ``EXIT_SOME_FAILED`` when some videos failed. Ctrl-C and
    SIGTERM exit 130 and 143 with one line saying what was kept (:func:`on_interrupt`); a full disk anywhere is
    one line naming the file.
    """

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        try:
            with _signals_interrupt() as received:
                code = command(*args, **kwargs)
                if received:  # its interrupt was raised where Python drops exceptions (a finaliser): stop here
                    raise Interrupted if received[-1] == signal.SIGTERM else KeyboardInterrupt
        except VQAError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(exit_code(exc)) from None
        except KeyboardInterrupt as exc:
            kept = click.get_current_context().meta.get(_KEPT, _nothing_kept)
            click.echo(f"{'terminated' if isinstance(exc, Interrupted) else 'interrupted'}: {kept()}", err=True)
            raise SystemExit(exit_code(exc)) from None
        except OSError as exc:
            if not no_space(exc):
                raise
            click.echo(f"error: {exc.filename or 'a file'}: cannot write: {describe_os_error(exc)}", err=True)
            raise SystemExit(EXIT_ERROR) from None
        raise SystemExit(code or EXIT_OK)

    return run


def on_interrupt(kept: Callable[[], str]) -> None:
    """Say ``kept()`` (what an interrupted run keeps, and how to carry on) if the command is interrupted."""
    click.get_current_context().meta[_KEPT] = kept


def stored(store: str | Path) -> Callable[[], str]:
    """What an interrupted extraction into ``store`` keeps: the videos stored there, counted when asked."""

    def kept() -> str:
        from pipeline.store import FeatureStore

        try:
            count = len(FeatureStore.open(store).cached())
        except VQAError:
            count = 0
        return f"{count} video(s) are stored in {store}; rerun the same command to continue with the rest"

    return kept


@contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """Make Ctrl-C and SIGTERM interrupt the command (KeyboardInterrupt, Interrupted: the same clean-up, the shard in
    progress committed), and yield the signals received: an interrupt raised inside a finaliser or a weakref
    callback is dropped by Python, and the command must still end as interrupted."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise Interrupted if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def load(config_path: str | Path, overrides: Sequence[str]) -> Config:
    """The config of ``config_path`` with the ``--set`` overrides applied (ConfigError names a bad key)."""
    return load_config(config_path, overrides)


def report_failures(failed: Mapping[str, str], listed_in: str) -> None:
    """List failed videos on stderr (the first few), saying where ``listed_in`` the complete record is."""
    click.echo(f"{len(failed)} video(s) failed ({listed_in}):", err=True)
    for key, error in list(failed.items())[:_LISTED_FAILURES]:
        click.echo(f"  {key}: {error}", err=True)
    if len(failed) > _LISTED_FAILURES:
        click.echo(f"  ... and {len(failed) - _LISTED_FAILURES} more", err=True)


def _videos(cfg: Config, csv_paths: Sequence[str], video_root: str | None) -> list[tuple[str, str]]:
    """``(key, path)`` of every row of the CSVs: ``--csv`` ones, or else the config's train/val/test CSVs."""
    if csv_paths:  # a user's CSV: filenames are relative to --video-root, else to the CSV's own folder
        sources = [(csv, video_root) for csv in csv_paths]
    else:
        root = video_root or cfg.data.video_root
        sources = [(csv, root) for csv in (cfg.data.train_csv, cfg.data.val_csv, cfg.data.test_csv) if csv]
    if not sources:
        raise UsageError("no CSV given: pass --csv or set data.train_csv in the config")
    videos: dict[str, str] = {}
    for csv, root in sources:
        table = read_labels(csv, root, require_mos=False, missing="keep")
        for key, path in zip(table["filename"], table["path"]):
            videos.setdefault(key, path)
    return list(videos.items())


def _pointed_at(csv_path: str | None, video_specs: Sequence[str], video_root: str | None) -> dict[str, str] | None:
    """``{key: path}`` of the videos ``--videos`` points at; None when a ``--csv`` names them (exactly one of the
    two is given, and ``--video-root`` only with a CSV)."""
    if (csv_path is None) == (not video_specs):
        raise UsageError("name the videos to score with --csv CSV or with --videos DIR|FILE|GLOB|- (one of the two"
                         f"{', not both' if csv_path else ''})")
    if csv_path is not None:
        return None
    if video_root is not None:
        raise UsageError("--video-root goes with --csv; the keys of --videos are relative to each folder given")
    return find_videos(video_specs, sys.stdin)


def _part(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``--part I/N``: the I-th of N parts (1 <= I <= N)."""
    if value is None:
        return None
    i, _, n = value.partition("/")
    if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise click.BadParameter(f"expected I/N with 1 <= I <= N, e.g. 3/8, got {value!r}")
    return int(i), int(n)


def _levels(option: str | None) -> list[str] | None:
    if option is None:
        return None
    levels = [level.strip() for level in option.split(",") if level.strip()]
    if not levels:
        raise UsageError(f"--levels {option!r}: name at least one level, e.g. --levels coarse,fine")
    return levels


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--config", "config_path", required=True, metavar="CONFIG",
              help="Config: a YAML file, or the name of a shipped config (--list-configs), e.g. nss_only.")
@list_configs_option
@click.option("--csv", "csv_paths", multiple=True, metavar="CSV",
              help="Label CSV of the videos (filename column; repeatable). Default: the config's train/val/test CSVs.")
@click.option("--video-root", metavar="DIR",
              help="Folder the CSV filenames are relative to. Default: data.video_root for the config's CSVs, "
                   "the CSV's own folder for --csv.")
@click.option("--store", metavar="DIR", help="Feature store directory. Default: the config's data.store.")
@click.option("--levels", metavar="LEVELS", help="Spatial levels to extract, comma-separated (default: all in the config).")
@click.option("--device", metavar="auto|cpu|cuda|cuda:N", help="Where the models run (default: extract.device).")
@click.option("--weights", metavar="pretrained|random|DIR",
              help="Backbone weights: the pretrained ones, seeded random ones (tests, demos), or a folder holding them.")
@set_option
@click.option("--workers", callback=_workers, metavar="N|auto",
              help="Decode in N separate processes beside the models; 0 decodes in this one; auto: what keeps the "
                   "models busy (default: extract.workers).")
@click.option("--cluster", metavar="local:N|ADDRESS",
              help="Extract on a Dask cluster: N worker processes here, or a scheduler such as tcp://host:8786 "
                   "(needs the dist extra; videos and store on a file system every worker sees).")
@click.option("--part", callback=_part, metavar="I/N",
              help="Extract only the I-th of N parts of the videos (every N-th row of the CSVs from the I-th: the same "
                   "split each time), e.g. --part $((SLURM_ARRAY_TASK_ID + 1))/$SLURM_ARRAY_TASK_COUNT in a job array.")
@click.option("--verify", is_flag=True,
              help="Also check every stored row against its checksum (reads the whole store): shards found damaged are "
                   "moved to STORE/damaged/ and their videos extracted again (damaged indexes always are).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@version_option
@reports_errors
def extract(config_path: str, csv_paths: tuple[str, ...], video_root: str | None, store: str | None,
            levels: str | None, device: str | None, weights: str | None, overrides: tuple[str, ...],
            workers: int | str | None, cluster: str | None, part: tuple[int, int] | None, verify: bool,
            progress: bool) -> int:
    """Extract the features of a CSV's videos into a feature store; cached videos are skipped.

    Exit codes: 0 done, 1 error, 2 bad usage or config, 3 finished but some videos failed.
    """
    from pipeline.extract.run import extract_videos  # heavy imports (torch) only once arguments are valid

    cfg = load(config_path, overrides)
    if device is not None:
        cfg.extract.device = device
    if weights is not None:
        cfg.extract.weights = weights
    if workers is not None:
        cfg.extract.workers = workers
    store = store or cfg.data.store
    on_interrupt(stored(store))
    videos = _videos(cfg, csv_paths, video_root)
    if part is not None:
        videos = videos[part[0] - 1::part[1]]
    uses_weights = bool(cfg.extract.levels) or cfg.extract.temporal
    click.echo(f"extracting {len(videos)} video(s){f' (part {part[0]}/{part[1]})' if part else ''} into {store} "
               f"({f'weights {cfg.extract.weights}' if uses_weights else 'no backbone'}, "
               f"device {cfg.extract.device}, workers {cfg.extract.workers}"
               f"{f', cluster {cluster}' if cluster else ''})", err=True)
    if cluster is not None:
        from pipeline.distributed import extract_on_cluster

        if verify:
            raise UsageError("--verify reads the whole store on this machine: run it without --cluster")
        summary = extract_on_cluster(videos, store, cfg.extract, cluster, levels=_levels(levels), progress=progress)
    else:
        summary = extract_videos(videos, store, cfg.extract, levels=_levels(levels), progress=progress, verify=verify)
    click.echo(str(summary))
    if summary.failed:
        report_failures(summary.failed, f"all listed in {Path(store) / 'failures.csv'}")
        return EXIT_SOME_FAILED
    return EXIT_OK


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_path", required=True, metavar="RUN_DIR/best_model.pth",
              type=click.Path(exists=True, dir_okay=False), help="A model file written by fit.py.")
@click.option("--csv", "csv_path", metavar="CSV",
              help="Videos to score: a filename column; a mos (or score) column adds metrics. Or use --videos.")
@click.option("--videos", "video_specs", multiple=True, metavar="DIR|FILE|GLOB|-",
              help="Videos to score instead of a CSV (repeatable): a folder (searched recursively for video files), "
                   "a file, a glob pattern, or - to read paths from standard input. Keys are the paths relative to "
                   "the folder given.")
@click.option("--video-root", metavar="DIR",
              help="Folder the CSV filenames are relative to (default: the CSV's folder).")
@click.option("--store", metavar="DIR",
              help="Feature store to read and extend (default: the model's training store when it is here with the "
                   "same settings, else features/scores-<settings hash>).")
@click.option("--out", "out_path", required=True, metavar="SCORES.csv|.jsonl|.parquet",
              help="Where to write filename,score,score_raw,status,error,score_low,score_high,in_domain,novelty,"
                   "trained_on, in the format its extension names (.parquet needs the parquet extra).")
@click.option("--interval", "interval", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, metavar="LEVEL",
              help="score_low..score_high hold the MOS of this share of videos from sources the model never saw.")
@click.option("--device", metavar="auto|cpu|cuda|cuda:N",
              help="Where the models run (default: the model's extract.device).")
@click.option("--weights", metavar="pretrained|random|DIR",
              help="Backbone weights for videos not in the store yet (default: those the model's features used).")
@click.option("--per-second", "per_second", metavar="FILE", help="Also write one JSON line of chunk scores per video.")
@click.option("--metrics", "metrics_path", metavar="FILE", help="Write the metrics (when the CSV has MOS) as JSON.")
@click.option("--report", "report_path", metavar="FILE.html",
              help="Also write a self-contained HTML report: summary, failures by reason, per-second strips of every "
                   "video, key frames of the worst seconds of the worst videos, scatter and metrics when MOS is given.")
@click.option("--report-worst", type=click.IntRange(min=0), default=20, show_default=True, metavar="N",
              help="Videos (the lowest-scoring) whose worst seconds the report shows as thumbnails.")
@set_option
@click.option("--workers", callback=_workers, metavar="N|auto",
              help="Decode in N separate processes beside the models, or auto (default: extract.workers).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar while extracting.")
@version_option
@reports_errors
def score(model_path: str, csv_path: str | None, video_specs: tuple[str, ...], video_root: str | None,
          store: str | None, out_path: str, interval: float, device: str | None, weights: str | None,
          per_second: str | None, metrics_path: str | None, report_path: str | None, report_worst: int,
          overrides: tuple[str, ...], workers: int | str | None, progress: bool) -> int:
    """Score videos with a fitted model, extracting the features its store lacks: a CSV's, or those --videos finds.

    Exit codes: 0 done, 1 error, 2 bad usage or config, 3 finished but some videos failed (status=error rows).
    """
    check_format(out_path)
    found = _pointed_at(csv_path, video_specs, video_root)
    from pipeline.fit.outputs import write_json  # heavy imports (torch) only once arguments are valid
    from pipeline.scoring import SCORE_COLUMNS, Scorer, write_per_second

    extra = [f"extract.workers={workers}"] if workers is not None else []
    scorer = Scorer.load(model_path, device=device, weights=weights, store=store, overrides=[*overrides, *extra],
                         interval=interval)
    source = csv_path or " ".join(video_specs)
    click.echo(f"scoring {source} with {model_path} (inputs {'+'.join(scorer.kinds)}; store {scorer.store}, "
               f"device {scorer.device})", err=True)
    on_interrupt(stored(scorer.store))
    if found is None:
        table, metrics = scorer.score_csv(csv_path, video_root, progress=progress)
    else:
        table, metrics = scorer.score_paths(found, progress=progress), None
    write_table(table, out_path, SCORE_COLUMNS)
    if per_second:
        write_per_second(table, per_second)
    if report_path:
        from pipeline.report.score_report import write_score_report

        if found is None:
            labels = read_labels(csv_path, video_root, require_mos=False, missing="keep")
            found = dict(zip(labels["filename"], labels["path"]))
        write_score_report(report_path, table, metrics, videos=found, worst=report_worst,
                           title=f"{source} scored with {model_path}", interval=interval)
        click.echo(f"report -> {report_path}")
    failed = table[table["status"] == "error"]
    click.echo(f"scored {len(table) - len(failed)} of {len(table)} video(s) -> {out_path}")
    unfamiliar = int((table["in_domain"] == False).sum())  # noqa: E712 - None (no domain check) is not False
    if unfamiliar:
        click.echo(f"{unfamiliar} video(s) unlike the training data (in_domain false): treat their scores with "
                   "caution; README, 'Reading a score'", err=True)
    if metrics is not None:
        click.echo(metrics_table([], [([], metrics)]))
        click.echo(f"(plcc, rmse: after a logistic fitted on these videos; *_raw: of the scores as written; "
                   f"coverage: share of MOS inside the {interval:.0%} intervals)")
        if metrics_path:
            write_json(Path(metrics_path), {"model": model_path, "csv": csv_path, **metrics})
    elif metrics_path:
        click.echo(f"no metrics: {source} gives no MOS for any scored video; {metrics_path} not written", err=True)
    if len(failed):
        report_failures(dict(zip(failed[SCORE_COLUMNS[0]], failed["error"])), f"status=error in {out_path}")
        return EXIT_SOME_FAILED
    return EXIT_OK


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--config", "config_path", required=True, metavar="CONFIG",
              help="Coarse-phase config: a YAML file, or the name of a shipped config (--list-configs), e.g. "
                   "kwai_simpleVQA. Its fine_config names the fine phase.")
@list_configs_option
@click.option("--fine", "fine_path", metavar="CONFIG", help="Fine-phase config (default: the config's fine_config).")
@click.option("--store", metavar="DIR", help="Feature store directory. Default: the config's data.store.")
@click.option("--out", "out_dir", metavar="RUN_DIR", help="Run directory. Default: runs/<name>-<timestamp>.")
@set_option
@click.option("--seed", type=int, metavar="N", help="Seed of splits, initialisation and shuffling (default: seed).")
@click.option("--folds", type=click.IntRange(min=0), default=0, metavar="K",
              help="Grouped K-fold cross-validation of the train CSV (by data.group_column): each fold is the test "
                   "split once, validated on the others; reports mean and std.")
@click.option("--repeats", type=click.IntRange(min=0), default=0, metavar="N",
              help="N random grouped train/test splits of the train CSV (seeded), validated inside the training part; "
                   "reports the median and std over them (RUN/repeats.csv, RUN/repeats.json).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, metavar="F", help="With --repeats: the fraction of the groups each split tests on.")
@click.option("--sweep", "sweep_path", metavar="SWEEP_YAML",
              help="Run every fit of a sweep file (grid: and/or runs: of overrides), ranked by validation SROCC.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Fits run in parallel processes (sweeps, folds and repeats).")
@click.option("--cluster", metavar="local:N|ADDRESS",
              help="Run the fits of a sweep or of folds on a Dask cluster instead of --jobs processes: N worker "
                   "processes here, or a scheduler such as tcp://host:8786 (needs the dist extra; store, CSVs and "
                   "run directory on a file system every worker sees).")
@version_option
@reports_errors
def fit(config_path: str, fine_path: str | None, store: str | None, out_dir: str | None,
        overrides: tuple[str, ...], seed: int | None, folds: int, repeats: int, test_fraction: float,
        sweep_path: str | None, jobs: int, cluster: str | None) -> int:
    """Fit the regressor on cached features: the coarse phase, then the fine phase started from its kept model.

    Exit codes: 0 done, 1 error, 2 bad usage or config.
    """
    from pipeline.fit.run import fit as run_fit  # heavy imports (torch) only once arguments are valid

    extra = [f"data.store={json.dumps(store)}"] if store is not None else []
    extra += [f"seed={seed}"] if seed is not None else []
    run = functools.partial(run_fit, config_path, fine=fine_path, overrides=[*overrides, *extra], out=out_dir,
                            folds=folds, repeats=repeats, test_fraction=test_fraction, sweep=sweep_path)
    if cluster is not None:
        from pipeline.distributed import fits_on_cluster

        with fits_on_cluster(cluster) as slots:
            run(jobs=slots)
    else:
        run(jobs=jobs)
    return EXIT_OK
