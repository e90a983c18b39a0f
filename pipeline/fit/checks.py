"""A fit's configs checked in full before any store is read, so a value no phase can run with costs nothing.

Caught later, the same value would cost the coarse phase's training (a fine phase that cannot start from the
coarse model), or a sweep's earlier fits (an override that only one entry sets).
"""

from __future__ import annotations

from pipeline.config import Config, to_dict
from pipeline.errors import ConfigError
from pipeline.fit.data import FeatureSpec


def check_phase(cfg: Config) -> None:
    """ConfigError naming every value of one phase's config that no fit can run with."""
    FeatureSpec.from_config(cfg)  # selects at least one input
    tests = cfg.data.test_csv
    rules = [
        ("data.train_csv", cfg.data.train_csv, "set to the training CSV (in the config, or --set data.train_csv=CSV)",
         cfg.data.train_csv is not None),
        ("num_epochs", cfg.num_epochs, ">= 1", cfg.num_epochs >= 1),
        ("batch_size", cfg.batch_size, ">= 2 (the rank loss compares pairs)", cfg.batch_size >= 2),
        ("train_chunks", cfg.train_chunks, ">= 0 (0: every chunk)", cfg.train_chunks >= 0),
        ("epoch_videos", cfg.epoch_videos, "0 (every video) or >= batch_size",
         cfg.epoch_videos == 0 or cfg.epoch_videos >= cfg.batch_size),
        ("scheduler.warmup_epochs", cfg.scheduler.warmup_epochs, ">= 0", cfg.scheduler.warmup_epochs >= 0),
        ("model.dropout", cfg.model.dropout, "in [0, 1)", 0 <= cfg.model.dropout < 1),
        ("optimizer.lr", cfg.optimizer.lr, "> 0", cfg.optimizer.lr > 0),
        ("crossfit_folds", cfg.crossfit_folds, ">= 2 (each member leaves one fold out)", cfg.crossfit_folds >= 2),
        ("data.val_fraction", cfg.data.val_fraction, "between 0 and 1 (exclusive) to split off a validation set",
         cfg.data.val_csv is not None or 0 < cfg.data.val_fraction < 1),
        ("data.test_csv", tests, "one path or a non-empty list of different paths",
         not isinstance(tests, list) or len(set(tests)) == len(tests) > 0),
        # select_epoch and the baselines' names are checked as the config is read (Literal types)
        ("baselines", cfg.baselines, "a list without repeats", len(set(cfg.baselines)) == len(cfg.baselines)),
    ]
    problems = [f"{key} must be {rule}, got {value}" for key, value, rule, ok in rules if not ok]
    if problems:
        raise ConfigError(f"{cfg.name}: " + "; ".join(problems))


def check_phases(coarse: Config, fine: Config | None) -> None:
    """Check each phase, and that the fine phase can continue the coarse one: the same videos and splits (data.*,
    device) and a model it can start from (model.hidden, model.activation, the same inputs but the spatial level)."""
    check_phase(coarse)
    if fine is None:
        return
    check_phase(fine)
    if coarse.data != fine.data or coarse.device != fine.device:
        fine_data = to_dict(fine.data)
        differing = [k for k, v in to_dict(coarse.data).items() if fine_data[k] != v]
        raise ConfigError(
            f"{fine.name}: the fine phase must keep the coarse phase's data.* and device "
            f"(differs: {', '.join(f'data.{k}' for k in differing) or 'device'})"
        )
    first, then = FeatureSpec.from_config(coarse), FeatureSpec.from_config(fine)
    layout = [
        ("model.hidden", coarse.model.hidden, fine.model.hidden),
        ("model.activation", coarse.model.activation, fine.model.activation),
        ("crossfit_folds", coarse.crossfit_folds, fine.crossfit_folds),
        ("features.temporal", list(first.temporal), list(then.temporal)),
        ("features.nss", first.nss, then.nss),
        ("features.level null or not", first.level is None, then.level is None),
    ]
    differing = [f"{key} {a} vs. {b}" for key, a, b in layout if a != b]
    if differing:
        raise ConfigError(f"{fine.name}: the fine phase starts from the coarse phase's model, so it must keep its "
                          f"shape and inputs (all but the spatial level); differs (coarse vs. fine): "
                          + "; ".join(differing))
