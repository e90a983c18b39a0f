"""``vqa-data`` (also ``python -m pipeline.datasets``): list the known data sets, import one as a label CSV."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import reports_errors, version_option

from .catalog import DATASETS
from .generic import Columns
from .importer import import_dataset


@click.group()
@version_option
def main() -> None:
    """Turn the official metadata of standard VQA data sets into label CSVs (filename,mos,group[,split][,mos_std])."""


@main.command("list")
def list_datasets() -> None:
    """Show the data sets `import` knows, their MOS scale and the metadata files to pass."""
    for d in DATASETS.values():
        click.echo(f"{d.name:14} {d.title}\n{'':14} {d.scale}; --metadata {d.metadata}\n{'':14} writes {d.output}")
    click.echo(f"{'generic':14} any other table: name its columns with --filename-column and --mos-column")


@main.command("import")
@click.argument("name")
@click.argument("more_metadata", nargs=-1, type=click.Path(path_type=Path), metavar="")
@click.option("--metadata", multiple=True, type=click.Path(path_type=Path), metavar="FILE [FILE ...]",
              help="The data set's metadata file(s) (`vqa-data list` says which).")
@click.option("--videos", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding the videos: every row is resolved to a file under it and written relative "
                   "to it (use it as data.video_root). Without it, the data set's usual names are written.")
@click.option("--skip-missing", is_flag=True, help="With --videos: write the rows whose videos were found.")
@click.option("--relative-to", type=click.Path(exists=True, file_okay=False), default=None,
              help="With --videos: write names relative to this folder above it (one video_root for several "
                   "data sets, e.g. for cross-dataset test CSVs).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Label CSV to write.")
@click.option("--filename-column", default=None, help="generic: column holding the video name.")
@click.option("--mos-column", default=None, help="generic: column holding the MOS.")
@click.option("--template", default=None,
              help="generic: file name from a row, e.g. '{vid}.mp4' ({} = the filename column's value).")
@click.option("--group-column", default=None, help="generic: column naming each video's source content.")
@click.option("--split-column", default=None, help="generic: column holding an official split (train/test...).")
@click.option("--mos-std-column", default=None, help="generic: column holding the MOS standard deviation.")
@click.option("--sheet", default=None, help="generic: XLSX sheet to read (default: the first).")
@reports_errors
def import_command(name: str, more_metadata: tuple[Path, ...], metadata: tuple[Path, ...], videos: str | None,
                   skip_missing: bool, relative_to: str | None, out: str, filename_column: str | None,
                   mos_column: str | None, template: str | None, group_column: str | None,
                   split_column: str | None, mos_std_column: str | None, sheet: str | None) -> None:
    """Import data set NAME (see `vqa-data list`, or `generic`) from its metadata into the label CSV --out."""
    options = (filename_column, mos_column, template, group_column, split_column, mos_std_column, sheet)
    columns = None
    if any(o is not None for o in options):
        if filename_column is None or mos_column is None:
            raise click.UsageError("--filename-column and --mos-column are both needed to name the columns")
        columns = Columns(filename_column, mos_column, template, group_column, split_column, mos_std_column, sheet)
    report = import_dataset(name, [*metadata, *more_metadata], out, videos=videos, skip_missing=skip_missing,
                            relative_to=relative_to, columns=columns)
    for note in report.notes:
        click.echo(note, err=True)
    click.echo(f"wrote {report.written} row(s) to {out}")
