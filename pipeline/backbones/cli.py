"""``vqa-weights`` (also ``python -m pipeline.backbones``): the backbones' weight files for nodes without network.

Fetch them into a folder on a machine that has network (a cluster's login node), check them wherever the folder
is, then extract with ``--weights DIR``: nothing is downloaded there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pipeline.backbones import weights
from pipeline.cli import reports_errors, version_option
from pipeline.errors import EXIT_OK, WeightsError

_DIRECTORY = click.argument("directory", type=click.Path(file_okay=False, path_type=Path))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@version_option
def main() -> None:
    """Fetch and check the upstream weight files of ResNet-50 and SlowFast-R50 in a folder, for --weights DIR."""


@main.command()
@_DIRECTORY
@reports_errors
def fetch(directory: Path) -> int:
    """Download every backbone's weight file into DIRECTORY (those there and valid are kept), each SHA-256 checked.

    Exit codes: 0 every file there and valid, 1 some could not be fetched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return _report(directory, weights.fetch_into)


@main.command()
@_DIRECTORY
@reports_errors
def check(directory: Path) -> int:
    """Say which backbone weight files DIRECTORY holds and whether each is valid; downloads nothing.

    Exit codes: 0 every file there and valid, 1 some missing or invalid.
    """
    return _report(directory, weights.check_file)


def _report(directory: Path, each: Callable[[weights.WeightsSpec, Path], weights.WeightsCheck]) -> int:
    """Print one line per backbone file (``each`` checks or fetches it); WeightsError unless all are valid."""
    checks = [each(spec, directory) for spec in weights.BACKBONE_WEIGHTS]
    for c in checks:
        state = "ok" if c.problem is None else "missing" if c.problem == weights.MISSING else "INVALID"
        click.echo(f"{c.spec.filename:26} {c.spec.name:18} {state}" + (f" (sha256 {c.sha256})" if c.sha256 else ""))
        if state == "INVALID":
            click.echo(f"  {c.problem}", err=True)
    bad = [c for c in checks if c.problem is not None]
    if bad:
        raise WeightsError(f"{len(bad)} of {len(checks)} weight file(s) missing or invalid in {directory}; "
                           f"`vqa-weights fetch {directory}` on a machine with network fetches them")
    click.echo(f"all {len(checks)} weight files valid: extract with --weights {directory}")
    return EXIT_OK
