"""The standard data sets: how each one's official metadata is laid out, and what its quirks are.

One reader per data set turns its metadata files into ``Record``s. Real copies of every file live in
``../shared/data/labels`` (each folder's SOURCE.txt names where it came from); the tests read them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import matfiles
from .problems import MetadataError, Place, fail
from .label_rows import Imported, Record
from .metadata_files import read_table
from .metadata_table import Table


@dataclass(frozen=True)
class Dataset:
    """A data set the importer knows: what to pass it, and what comes out."""

    name: str
    title: str
    scale: str
    metadata: str  # the files to pass to --metadata
    output: str  # names written, groups, split, renamings handled
    read: Callable[[list[Path]], Imported]


DATASETS: dict[str, Dataset] = {}  # filled by @dataset below, in the order `vqa-data list` shows them


def dataset(name: str, title: str, scale: str, metadata: str, output: str) -> Callable:
    """Register the decorated reader as data set ``name`` (the other fields are what `vqa-data list` says)."""

    def register(read: Callable[[list[Path]], Imported]) -> Callable[[list[Path]], Imported]:
        DATASETS[name] = Dataset(name, title, scale, metadata, output, read)
        return read

    return register


@dataset(
    "konvid1k",
    title="KoNViD-1k (1200 Flickr videos, 960x540, 8 s)",
    scale="MOS 1-5",
    metadata="KoNViD_1k_attributes.csv and/or KoNViD_1k_mos.csv",
    output="<flickr_id>.mp4 (or the original long names); one group per video",
)
def konvid1k(paths: list[Path]) -> Imported:
    """KoNViD-1k: ``KoNViD_1k_attributes.csv`` and/or ``KoNViD_1k_mos.csv``, joined on ``flickr_id``.

    The MOS comes from the mos file when given (it has ten decimals; the attributes round to two to four).
    Most copies name videos ``<flickr_id>.mp4``; the attributes' ``file_name`` is the original long name.
    """
    first_place, long_name, precise, rounded = {}, {}, {}, {}
    for table in map(read_table, paths):
        ids = _unique(table, "flickr_id")
        scores, mos_column = (precise, "mos") if table.has("mos") else (rounded, "MOS")
        for i, (fid, mos) in enumerate(zip(ids, table.column(mos_column))):
            first_place.setdefault(fid, table.place(i))
            scores[fid] = mos
        if table.has("file_name"):
            long_name.update(zip(ids, table.column("file_name")))
    return Imported([
        Record(
            names=(f"{fid}.mp4",) + ((long_name[fid],) if fid in long_name else ()),
            mos=precise.get(fid, rounded.get(fid, "")),
            place=place,
        )
        for fid, place in first_place.items()
    ])


@dataset(
    "lsvq",
    title="LSVQ (39k Internet Archive/YFCC videos, 240p-1080p)",
    scale="MOS 0-100",
    metadata="labels_train_test.csv, labels_test_1080p.csv (or research copies of either part)",
    output="<name>.mp4; split train / test / test-1080p; group = source name (the name without its batch)",
)
def lsvq(paths: list[Path]) -> Imported:
    """LSVQ: the official ``labels_train_test.csv`` (``is_test`` splits it) and ``labels_test_1080p.csv``.

    Also reads research copies: the same layout without ``is_test``, and header-less ``name.mp4, -1, -1, mos``
    lists. Their split comes from the file name (``1080p`` -> test-1080p, else ``test`` or ``train``).
    The group is the name without its batch folder: 343 names (``youtube-<id>``, Internet Archive items) occur
    in two batches, two clips of one source with different MOS, and random splits must keep them together.
    """
    records = []
    for path in paths:
        table = read_table(path)
        if not table.has("name") and table.columns and table.columns[0].endswith(".mp4"):
            table = read_table(path, names=["name", "x", "y", "mos"])
        names = _unique(table, "name")
        if table.has("is_test"):
            splits = ["test" if flag.lower() in ("true", "1") else "train" for flag in table.column("is_test")]
        else:
            splits = [_split_from_file_name(path)] * len(names)
        for i, (name, mos, split) in enumerate(zip(names, table.column("mos"), splits)):
            name = name if name.endswith(".mp4") else f"{name}.mp4"
            records.append(Record((name,), mos, table.place(i), group=PurePosixPath(name).stem, split=split))
    return Imported(records)


@dataset(
    "youtube-ugc",
    title="YouTube-UGC (1380 videos, 360p-2160p, 20 s)",
    scale="MOS 1-5",
    metadata="original_videos_MOS_for_YouTube_UGC_dataset.xlsx (sheet MOS)",
    output="<vid>.mkv (or .mp4); mos_std; one group per video",
)
def youtube_ugc(paths: list[Path]) -> Imported:
    """YouTube-UGC: the official ``original_videos_MOS_for_YouTube_UGC_dataset.xlsx``, sheet ``MOS``.

    ``MOS full`` / ``std full`` are the whole video's; the chunk columns rate 10-second parts. The release's
    videos are ``<vid>.mkv``; copies converted to ``<vid>.mp4`` are found too.
    """
    records = []
    for path in paths:
        table = read_table(path, sheet="MOS" if path.suffix.lower() == ".xlsx" else None)
        for i, (vid, mos, std) in enumerate(zip(_unique(table, "vid"), table.column("MOS full"),
                                                 table.column("std full"))):
            records.append(Record((f"{vid}.mkv", f"{vid}.mp4"), mos, table.place(i), mos_std=std))
    return Imported(records)


@dataset(
    "live-vqc",
    title="LIVE-VQC (585 phone videos, mostly 1080p, 10 s)",
    scale="MOS 0-100",
    metadata="LiveVQC_data.mat",
    output="A001.mp4 ... (or A001NEW.mp4); one group per video",
)
def live_vqc(paths: list[Path]) -> Imported:
    """LIVE-VQC: ``LiveVQC_data.mat`` (``video_list``, ``mos``). Some copies name ``A012.mp4`` ``A012NEW.mp4``."""
    records = []
    for path in paths:
        table = read_table(path)
        for i, (name, mos) in enumerate(zip(_unique(table, "video_list"), table.column("mos"))):
            records.append(Record(_with_and_without_new(name), mos, table.place(i)))
    return Imported(records)


@dataset(
    "kvq",
    title="KVQ (Kuaishou short videos, NTIRE 2024 challenge, 720p portrait)",
    scale="MOS 1-5",
    metadata="train_data.csv, test_data.csv (filename,score)",
    output="train/NNNN.mp4, test/NNNN.mp4; split train / test; unscored rows left out",
)
def kvq(paths: list[Path]) -> Imported:
    """KVQ (NTIRE 2024 challenge): ``filename,score`` CSVs, e.g. ``train_data.csv`` and ``test_data.csv``.

    The split is the name's first folder (``train/``, ``test/``), else the CSV's file name. Rows without a
    score (the challenge's test list before its labels were published) are left out, with a note.
    """
    records, notes = [], []
    for path in paths:
        table = read_table(path)
        mos_column = "score" if table.has("score") else "mos"
        unscored = 0
        for i, (name, mos) in enumerate(zip(_unique(table, "filename"), table.column(mos_column))):
            if not mos:
                unscored += 1
                continue
            top = PurePosixPath(name).parts[0] if "/" in name else ""
            split = top if top in ("train", "test") else _split_from_file_name(path)
            records.append(Record((name,), mos, table.place(i), split=split))
        if unscored:
            notes.append(f"{path}: left out {unscored} row(s) without a score")
    return Imported(records, notes)


_QUALCOMM_PHONES = frozenset(
    {"gs5", "gs6", "htconevx", "nokia1020", "nokia1080", "1020", "lumia1020", "5s", "iphone", "iphone5", "iphone5s",
     "note4", "notes4", "g2", "lg", "lgg2", "oppo", "oppofind7", "oppofined7"}  # every spelling in the official file
)


@dataset(
    "live-qualcomm",
    title="LIVE-Qualcomm (208 phone videos of 54 scenes, 1080p, 15 s)",
    scale="MOS 0-100",
    metadata="LIVE-Qualcomm_qualcommSubjectiveData.mat (or qualcommSubjectiveData.mat)",
    output="<distortion>/<name>.yuv (or .mp4); group = scene",
)
def live_qualcomm(paths: list[Path]) -> Imported:
    """LIVE-Qualcomm: the official ``qualcommSubjectiveData.mat`` structs; ``unBiasedMOS`` is the usual MOS.

    Videos are ``<distortion name>/<vidName>`` (raw ``.yuv`` in the release, which needs its size given to
    decode; copies converted to ``.mp4`` with the same stem are found too). Each scene was filmed by several
    phones, so the group is the scene: the name up to the phone's model, case folded (the file names spell
    ``CheerLeader1`` and ``Cheerleader1`` for one scene).
    """
    records = []
    for path in paths:
        found = matfiles.variables(path)
        names = _variable(found, path, "qualcommVideoData.vidNames")
        kinds = _variable(found, path, "qualcommVideoData.distortionType")
        folders = _variable(found, path, "qualcommVideoData.distortionNames")
        scores = _variable(found, path, "qualcommSubjectiveData.unBiasedMOS")
        if not len(names) == len(kinds) == len(scores):
            raise fail(str(path), f"vidNames, distortionType and unBiasedMOS differ in length "
                                  f"({len(names)}, {len(kinds)}, {len(scores)})")
        for i, (name, kind, mos) in enumerate(zip(names, kinds, scores)):
            place = Place(str(path), f"entry {i + 1} of vidNames")
            folder = _lookup(folders, kind, place)
            stem = PurePosixPath(name).stem
            records.append(Record((f"{folder}/{name}", f"{folder}/{stem}.mp4"), mos, place, group=_scene(stem)))
    return Imported(records)


@dataset(
    "cvd2014",
    title="CVD2014 (234 camera videos of 18 scenes, 480p and 720p, 10-25 s)",
    scale="realigned MOS about -7 to 100",
    metadata="CVD2014_Realignment_MOS.csv",
    output="Test<N>/<Content>/<File_name>.avi; group = test and scene",
)
def cvd2014(paths: list[Path]) -> Imported:
    """CVD2014: ``CVD2014_Realignment_MOS.csv`` (``;``-separated, decimal commas, 168 empty rows at the end).

    ``Realignment MOS`` puts the six tests on one scale (it can be slightly negative). Videos are
    ``Test<N>/<Content, spaces as _>/<File_name>.avi``; the folders are spelled unlike the file names
    (``Talking_head`` vs ``Talking_Head``). All cameras of one test filmed the same scene at once, so the group
    is the test and the scene.
    """
    records, problems = [], []
    for path in paths:
        table = read_table(path)
        for i, (content, file_name, mos) in enumerate(zip(table.column("Content"), _unique(table, "File_name"),
                                                          table.column("Realignment MOS"))):
            test = re.match(r"Test0*(\d+)_", file_name)
            if test is None:
                problems.append(f"{table.place(i)}: File_name {file_name!r} does not start with Test<N>_")
                continue
            folder = f"Test{test.group(1)}/{re.sub(r'[ :]', '_', content)}"
            records.append(Record((f"{folder}/{file_name}.avi",), mos, table.place(i),
                                  group=f"Test{test.group(1)}/{content}"))
    if problems:
        raise MetadataError(problems)
    return Imported(records)


def _unique(table: Table, column: str) -> list[str]:
    """The cells of ``column``; a MetadataError naming every line that repeats an earlier one."""
    cells = table.column(column)
    first: dict[str, int] = {}
    problems = []
    for i, cell in enumerate(cells):
        if cell in first:
            problems.append(f"{table.place(i)}: duplicate {column} {cell!r} (first at {table.places[first[cell]]})")
        first.setdefault(cell, i)
    if problems:
        raise MetadataError(problems)
    return cells


def _split_from_file_name(path: Path) -> str:
    name = path.name.lower()
    for marker, split in (("1080p", "test-1080p"), ("test", "test"), ("train", "train")):
        if marker in name:
            return split
    raise fail(str(path), "cannot tell which split this file holds: its name has none of train, test, 1080p")


def _with_and_without_new(name: str) -> tuple[str, ...]:
    path = PurePosixPath(name)
    if path.stem.endswith("NEW"):
        return name, str(path.with_stem(path.stem[: -len("NEW")]))
    return name, str(path.with_stem(path.stem + "NEW"))


def _variable(found: dict[str, list[str]], path: Path, name: str) -> list[str]:
    if name not in found:
        raise fail(str(path), f"no variable {name!r} (variables found: {', '.join(found)})")
    return found[name]


def _lookup(values: list[str], one_based: str, place: Place) -> str:
    try:
        index = int(float(one_based)) - 1
    except ValueError:
        index = -1
    if not 0 <= index < len(values):
        raise MetadataError([f"{place}: distortionType {one_based!r} names none of the {len(values)} distortions"])
    return values[index]


def _scene(stem: str) -> str:
    parts = stem.split("_")
    for i in range(1, len(parts)):
        if parts[i].lower() in _QUALCOMM_PHONES:
            return "_".join(parts[:i]).lower()
    return stem
