"""The videos a user points at instead of a CSV (``score.py --videos``): folders, files, glob patterns, stdin.

A folder is searched recursively for files with a video extension (:data:`VIDEO_EXTENSIONS`, any case) and for
files of any other name whose first bytes are those of a video container or stream (copies saved without their
extension); hidden files and folders (a name starting with ``.``) are skipped. A file named directly, or a line
of standard input (``-``), is taken as it is, so an unreadable one fails its own row when scored. Keys, which
name the rows and the store's entries, are paths relative to the folder given (or to the fixed part of a glob
pattern); a file named directly is its own key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from glob import glob
from pathlib import Path
from typing import TextIO

from pipeline.errors import UsageError

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".ts", ".m2ts", ".mts", ".mpg",
    ".mpeg", ".m2v", ".vob", ".3gp", ".3g2", ".ogv", ".mxf", ".y4m", ".ivf", ".h264", ".264", ".h265", ".265", ".hevc",
})
STDIN = "-"
# (offset, bytes) a video file starts with: Matroska/WebM, ISO media (MP4, MOV, 3GP), AVI, MPEG program stream and
# video elementary stream, H.264/HEVC Annex B, FLV, ASF/WMV, IVF, Y4M. MPEG-TS is told by its sync bytes.
_MAGIC = ((0, b"\x1a\x45\xdf\xa3"), (4, b"ftyp"), (4, b"moov"), (8, b"AVI "), (0, b"\x00\x00\x01\xba"),
          (0, b"\x00\x00\x01\xb3"), (0, b"\x00\x00\x00\x01"), (0, b"FLV\x01"), (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),
          (0, b"DKIF"), (0, b"YUV4MPEG2"))
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")  # ISO media files that hold sound only
_TS_PACKET = 188
_GLOB_CHARS = frozenset("*?[")


def find_videos(specs: Sequence[str], stdin: TextIO | None = None) -> dict[str, str]:
    """``{key: path}`` of the videos ``specs`` point at, in order (a folder's files sorted by path).

    UsageError for a folder holding no video, a pattern matching nothing, and a key that names two files.
    """
    found: dict[str, str] = {}
    for spec in specs:
        for key, path in _expand(spec, stdin):
            if Path(found.setdefault(key, path)).resolve() != Path(path).resolve():
                raise UsageError(f"key {key!r} names both {found[key]} and {path}: point at their common folder, "
                                 "or score them separately")
    return found


def folder_videos(folder: Path, relative_to: Path | None = None) -> list[tuple[str, str]]:
    """``(key, path)`` of the video files under ``folder``, sorted; keys relative to ``relative_to`` (``folder``)."""
    base = relative_to if relative_to is not None else folder
    videos = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(top) / name
            if not name.startswith(".") and (path.suffix.lower() in VIDEO_EXTENSIONS or looks_like_video(path)):
                videos.append((path.relative_to(base).as_posix(), str(path)))
    return sorted(videos)


def looks_like_video(path: Path) -> bool:
    """Whether the file starts as a video container or stream does (False when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_TS_PACKET + 1)
    except OSError:
        return False
    if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return False
    is_ts = len(head) > _TS_PACKET and head[0] == head[_TS_PACKET] == 0x47
    return is_ts or any(head[at:at + len(magic)] == magic for at, magic in _MAGIC)


def _expand(spec: str, stdin: TextIO | None) -> Iterable[tuple[str, str]]:
    if spec == STDIN:
        if stdin is None:
            raise UsageError("--videos -: no standard input to read paths from")
        lines = [line.rstrip("\r\n") for line in stdin]
        return [(line, line) for line in lines if line.strip()]
    path = Path(spec)
    if path.is_dir():
        return _nonempty(spec, folder_videos(path), "no video file in this folder (searched recursively)")
    if not path.exists() and _GLOB_CHARS & set(spec):
        base = _fixed_part(spec)
        matches = [Path(match) for match in sorted(glob(spec, recursive=True))]
        found = [item for match in matches for item in (
            folder_videos(match, base) if match.is_dir() else [(match.relative_to(base).as_posix(), str(match))])]
        return _nonempty(spec, found, "no video file matches this pattern")
    return [(spec, spec)]


def _nonempty(spec: str, found: list[tuple[str, str]], problem: str) -> list[tuple[str, str]]:
    if not found:
        raise UsageError(f"{spec}: {problem}; video files are those named {', '.join(sorted(VIDEO_EXTENSIONS))} "
                         "(any case) or starting as a video file does")
    return found


def _fixed_part(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: what its keys are relative to."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()
