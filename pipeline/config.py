"""Typed run configuration: YAML files over documented defaults, plus ``--set dotted.key=value`` overrides.

Every key, its type and its default live in the dataclasses below and nowhere else. A config file holds only
the keys it changes; the fine phase's file holds only what differs from the coarse phase's resolved config.
Unknown keys and wrong types are errors that name the key, the file and the valid choices.
Relative paths are taken relative to the current directory. A config is named by a path or by the name of a
shipped one (:mod:`pipeline.configs`), and a file may start from another: ``base: NAME|PATH`` lays its keys over
that config's (how the checkout's ``config/`` files put the shipped ones on the bundled sample).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml

from .configs import resolve
from .errors import ConfigError
from .feature_kinds import LEVELS, TEMPORAL_PARTS

BASE_KEY = "base"  # a file's directive, not a config key: the config its keys are laid over


@dataclass
class DataConfig:
    train_csv: Optional[str] = None  # required to fit; extraction and scoring may name their CSVs instead
    val_csv: Optional[str] = None  # null: split train_csv by group (by filename when there is no group column)
    test_csv: Union[str, list[str], None] = None  # a list: each CSV is a test set reported on its own (cross-dataset)
    video_root: Optional[str] = None  # null: each CSV's filenames are relative to the CSV's own folder
    store: str = "features/default"
    val_fraction: float = 0.2
    group_column: str = "group"  # the column naming each clip's source content (the data sets here: `source`)
    split_column: Optional[str] = None  # an official split (train / val / test, test-1080p ...) in train_csv


@dataclass
class LevelConfig:
    short_side: int


def _default_levels() -> dict[str, LevelConfig]:
    return {"coarse": LevelConfig(448), "fine": LevelConfig(720)}


@dataclass
class ClipConfig:
    size: int = 224
    frames: int = 32


@dataclass
class ExtractConfig:
    decoder: Literal["decord", "pyav"] = "pyav"  # PyAV measured faster and leaner (BENCHMARKS.md)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    weights: str = "pretrained"  # pretrained (alias: imagenet) | random | a directory holding the upstream files
    batch_size: int = 8  # chunks per backbone call on CUDA; a CPU runs one per call (faster there)
    max_chunks: int = 0  # 0 = every second of the video
    levels: dict[Literal[LEVELS], LevelConfig] = field(default_factory=_default_levels)  # null: no ResNet
    clip: ClipConfig = field(default_factory=ClipConfig)
    temporal: bool = True  # run the SlowFast backbone (temporal_slow, temporal_fast)
    nss: bool = True  # also extract the weight-free natural-scene-statistics features (cheap beside the CNNs: BENCHMARKS.md)
    decode_timeout_s: float = 120.0  # a video whose decoding stalls this long fails instead of hanging
    # Decoding processes beside the models (0: decode in the main process); auto: what keeps the models busy.
    workers: Union[int, Literal["auto"]] = "auto"
    shard_videos: int = 64  # videos per shard: a killed run loses at most one shard's work


@dataclass
class FeaturesConfig:
    level: Optional[Literal[LEVELS]] = "coarse"  # spatial level this phase trains on (null: none)
    temporal: list[Literal[TEMPORAL_PARTS]] = field(default_factory=lambda: list(TEMPORAL_PARTS))
    nss: bool = True  # the accuracy study (BENCHMARKS.md): NSS added to deep features helped every configuration


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [128])
    activation: Literal["gelu", "relu", "silu", "tanh"] = "gelu"
    dropout: float = 0.1


@dataclass
class LossConfig:
    mse_weight: float = 1.0
    rank_weight: float = 1.0
    rank_margin: float = 0.1


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-2


@dataclass
class SchedulerConfig:
    warmup_epochs: int = 1


@dataclass
class Config:
    name: str = "kwai_simpleVQA"
    seed: int = 42
    fine_config: Optional[str] = "kwai_fine_simpleVQA"  # the phase run after this one (null: none)
    device: str = "cpu"  # where fit trains: auto | cpu | cuda | cuda:N (a small MLP is often fastest on CPU)
    data: DataConfig = field(default_factory=DataConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    num_epochs: int = 30
    batch_size: int = 32
    # Chunks of each video a training step reads, drawn afresh every epoch (0: all of them); predictions always
    # average every chunk. One is as accurate as all on vqa-dev and costs a chunk's share (BENCHMARKS.md).
    train_chunks: int = 1
    # At most this many videos an epoch (0: all): past it an epoch is the next slice of a reshuffled stream of the
    # training videos, so a large set trains in a bounded number of steps (BENCHMARKS.md, "Fit at LSVQ scale").
    epoch_videos: int = 4096
    # The epoch a phase keeps: its last (the cosine schedule has settled the weights there) or the one with the best
    # validation SROCC. On small data validation holds 2-3 sources, too few to pick an epoch (BENCHMARKS.md).
    select_epoch: Literal["last", "best_val"] = "last"
    # Members trained on all but one fold of the training videos (grouped by data.group_column; fewer when there
    # are fewer groups): their out-of-fold predictions calibrate the scores, set the intervals and the domain.
    crossfit_folds: int = 5
    baselines: list[Literal["ridge", "svr"]] = field(default_factory=lambda: ["ridge", "svr"])  # beside the MLP on test sets


def load_config(
    path: str | Path | None,
    overrides: Iterable[str] = (),
    base: Config | None = None,
) -> Config:
    """Return the config of ``path`` laid over ``base`` (default: the defaults), then the ``--set`` overrides."""
    tree = to_dict(base if base is not None else Config())
    source = "defaults"
    if path is not None:
        source = str(resolve(path))
        _merge(tree, _file_tree(Path(source)))
    cfg = _build(Config, tree, source, "")
    for item in overrides:  # one at a time, so an error names the override at fault
        key, value = _parse_override(item)
        _merge(tree, _nest(key, value))
        cfg = _build(Config, tree, f"--set {item}", "")
    return cfg


def fine_config_path(config_path: str | Path, cfg: Config) -> Path | None:
    """Return the fine phase's config file named by ``cfg.fine_config``: a file (here, or beside the coarse file)
    or a shipped config's name."""
    if cfg.fine_config is None:
        return None
    try:
        return resolve(cfg.fine_config, beside=resolve(config_path).parent)
    except ConfigError as err:
        raise ConfigError(f"{config_path}: fine_config does not exist: {err}") from None


def to_dict(cfg: Any) -> Any:
    """Return ``cfg`` as plain YAML-ready data (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    return cfg


def from_dict(tree: dict, source: str = "<dict>") -> Config:
    """Return the Config held in ``tree`` (as written by ``to_dict``), validated."""
    merged = to_dict(Config())
    _merge(merged, tree)
    return _build(Config, merged, source, "")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Return every dotted key path a config accepts."""
    keys = []
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        nested = _dataclass_of(_hints(cls)[f.name])
        keys.extend(valid_keys(nested, path + ".") if nested else [path])
    return keys


def _file_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The keys a config file sets: those of the config its ``base`` names (recursively), with its own over them."""
    tree = _read_yaml(path)
    base = tree.pop(BASE_KEY, None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {BASE_KEY} must name a config (a shipped name or a path), got {base!r}")
    chain = (*chain, path.resolve())
    parent = resolve(base, beside=path.parent)
    if parent.resolve() in chain:
        raise ConfigError(f"{path}: {BASE_KEY} {base!r} leads back to a config it started from ({parent})")
    merged = _file_tree(parent, chain)
    _merge(merged, tree)
    return merged


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(tree).__name__}")
    return tree


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {err}") from None
    return key.strip(), value


def _nest(dotted: str, value: Any) -> dict:
    tree: Any = value
    for part in reversed(dotted.split(".")):
        tree = {part: tree}
    return tree


def _merge(tree: dict, update: dict) -> None:
    """Lay ``update`` over ``tree`` in place; nested mappings merge, everything else replaces."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _build(cls: type, tree: Any, source: str, prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {tree!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in tree if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key {prefix + str(unknown[0])!r}; valid keys"
            f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
        )
    missing = [n for n in names if n not in tree and _required(cls, n)]
    if missing:
        raise ConfigError(f"{source}: {prefix}{missing[0]} is required")
    values = {k: _coerce(hints[k], v, source, prefix + k) for k, v in tree.items()}
    return cls(**values)


def _required(cls: type, name: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    """Return ``value`` checked against the annotated type ``tp``; raise a ConfigError naming ``key`` otherwise."""
    if isinstance(value, str) and value in _OLD_SPELLINGS.get(key, {}):
        value = _OLD_SPELLINGS[key][value]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    nested = _dataclass_of(tp)
    if nested:
        return _build(nested, value, source, key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:
            return _coerce(alternatives[0], value, source, key)
        for alternative in alternatives:
            try:
                return _coerce(alternative, value, source, key)
            except ConfigError:
                if isinstance(value, list) and typing.get_origin(alternative) is list:
                    raise  # a list for a str-or-list key: the list's own message names the bad item
        expected = " or ".join(_describe(a) for a in alternatives)
        raise ConfigError(f"{source}: {key} must be {expected}; got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:  # `levels: null`: no entries at all
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return {  # an entry set to null is dropped (e.g. `levels: {fine: null}` extracts no fine level)
            _coerce(args[0], k, source, key): _coerce(args[1], v, source, f"{key}.{k}")
            for k, v in value.items()
            if v is not None
        }
    return _scalar(tp, value, source, key)


# Values older configs and model files spell another way, read as today's: ``features.level: "none"`` was the
# string sentinel for no spatial level (model files written before it became null still hold it).
_OLD_SPELLINGS = {"features.level": {"none": None}}


def _describe(tp: Any) -> str:
    """How an error message names the values of type ``tp``: ``int``, ``'auto'``."""
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _scalar(tp: type, value: Any, source: str, key: str) -> Any:
    if tp is float and isinstance(value, str):
        parsed = _float_or_none(value)  # YAML 1.1 reads "3e-4" as a string
        value = value if parsed is None else parsed  # (not `or`: "0e0" is a float too)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    matches = isinstance(value, tp) and (tp is bool or not isinstance(value, bool))
    if not matches:
        raise ConfigError(f"{source}: {key} must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
