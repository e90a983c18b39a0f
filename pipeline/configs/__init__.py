"""The configs that ship with the package, found by name, so ``vqa-fit -o kwai_simpleVQA`` works in any folder.

A config reference (``-o``, ``fine_config``, ``base``) means a file first: relative to the current directory,
then a file of that name beside the config that names it. Only when neither exists is it the name of a shipped
config: ``kwai_simpleVQA``, ``kwai_simpleVQA.yml`` or ``datasets/konvid1k``, also spelled with the checkout's
``config/`` folder in front, as configs written for a checkout name their fine phase.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent
_SUFFIX = ".yml"
_CHECKOUT_FOLDER = "config/"  # where the checkout keeps its configs: their old paths name the shipped ones


def shipped_names() -> list[str]:
    """Names of the shipped configs, e.g. ``kwai_simpleVQA``, ``datasets/konvid1k``."""
    return sorted(path.relative_to(SHIPPED).with_suffix("").as_posix() for path in SHIPPED.rglob(f"*{_SUFFIX}"))


def summary(name: str) -> str:
    """The first comment line of a shipped config: what it is for."""
    for line in (SHIPPED / f"{name}{_SUFFIX}").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def resolve(ref: str | Path, beside: Path | None = None) -> Path:
    """The config file ``ref`` means: a file, else one named so ``beside`` the referring config, else a shipped one."""
    path = Path(ref)
    near = beside / path.name if beside is not None and not path.is_absolute() else None
    for candidate in (path, near):
        if candidate is not None and candidate.is_file():
            return candidate
    name = str(ref).removeprefix(_CHECKOUT_FOLDER).removesuffix(_SUFFIX)
    if name in shipped_names():
        return SHIPPED / f"{name}{_SUFFIX}"
    looked = f" (nor {near})" if near is not None else ""
    raise ConfigError(f"{ref}: config file not found{looked}, and no shipped config has that name; shipped: "
                      f"{', '.join(shipped_names())} (--list-configs says what each is)")
