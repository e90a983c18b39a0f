"""Hostile and unusual inputs for the reliability suite, generated on the fly (no binaries in the repository).

``VIDEO_CASES`` are files broken in many ways (and some only unusual), each saying whether the pipeline
must extract it or fail that one row, and what the failure message must say; ``write_videos`` writes them.
``TABLE_CASES`` and ``CONFIG_CASES`` do the same for label CSVs and configs. Everything is seeded: the same
corpus on every run. Shared helpers of the reliability tests (tiny settings, invoking the commands) live here too.
"""

from __future__ import annotations

import functools
import os
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from pipeline.cli import extract, fit
from videos import make_audio_only, make_video

# Tiny extraction settings, as --set overrides: every test video is a few 64x48 frames.
TINY = ("extract.device=cpu", "extract.weights=random", "extract.batch_size=4",
        "extract.levels.coarse.short_side=40", "extract.levels.fine.short_side=48", "extract.clip.size=32",
        "extract.clip.frames=4", "extract.shard_videos=4")
# A tiny fit: one phase, a few epochs of a small MLP.
TINY_FIT = "name: tiny\nseed: 7\nfine_config: null\nnum_epochs: 3\nbatch_size: 4\nmodel: {hidden: [8]}\n"


def sets(overrides: Sequence[str]) -> list[str]:
    """``--set`` options for ``overrides``."""
    return [arg for item in overrides for arg in ("--set", item)]


def invoke(command, *args: object) -> tuple[int, str]:
    """Run a click command in this process; return its exit code and output (stdout and stderr).

    An exception that is not a clean exit is re-raised: a command must never end in a traceback.
    """
    result = CliRunner().invoke(command, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# -- videos -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoCase:
    """One file of the corpus: its name (the CSV key), what is odd about it, and what must happen to it."""

    name: str
    kind: str
    ok: bool  # True: extracted and scored; False: that row fails with ``problem``, the run goes on
    write: Callable[[Path], object] = field(repr=False, compare=False)
    problem: str = ""  # a failure message must say this (besides naming the file)
    either: bool = False  # damaged at random: a decoder may survive it or not, but never takes the run down


def _clip(name: str, **kwargs: object) -> Callable[[Path], Path]:
    """Writer of a 2 s test video (16 frames at 8 fps unless ``kwargs`` say otherwise)."""
    return lambda root: make_video(root / name, **{"frames": 16, "fps": 8, **kwargs})


def _source(root: Path, suffix: str = ".mp4") -> Path:
    """A good 3 s video that damaged files are cut from (an MP4 has its index, the moov box, at the end)."""
    path = root / f".source{suffix}"
    return path if path.exists() else make_video(path, frames=24, fps=8, seed=3)


def _cut(name: str, fraction: float, suffix: str = ".mp4") -> Callable[[Path], None]:
    def write(root: Path) -> None:
        data = _source(root, suffix).read_bytes()
        (root / name).write_bytes(data[: max(1, int(len(data) * fraction))])
    return write


def _mutated(name: str, seed: int, count: int = 40) -> Callable[[Path], None]:
    """A good video with ``count`` bytes overwritten at seeded places past the first 64."""
    def write(root: Path) -> None:
        data = bytearray(_source(root).read_bytes())
        rng = random.Random(seed)
        for _ in range(count):
            data[rng.randrange(64, len(data))] = rng.randrange(256)
        (root / name).write_bytes(bytes(data))
    return write


def _appended(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(_source(root).read_bytes() + bytes(range(256)) * 20)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _no_streams(root: Path) -> None:
    """An MP4 holding no stream at all: a file type box and a movie header, no track."""
    mvhd = _box(b"mvhd", bytes(12) + struct.pack(">IIIH", 1000, 0, 0x10000, 0x100) + bytes(70) + struct.pack(">I", 2))
    (root / "no_streams.mp4").write_bytes(_box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
                                          + _box(b"moov", mvhd))


def _alien_codec(root: Path) -> None:
    """A Matroska file whose codec id no FFmpeg knows: a good file with the codec name patched."""
    data = make_video(root / ".alien-source.mkv", frames=5).read_bytes()
    (root / "alien_codec.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/ZZZ"))


def _unreadable(root: Path) -> None:
    make_video(root / "unreadable.mp4", frames=8, fps=8).chmod(0)


def _encodable(codec: str, pix_fmt: str = "yuv420p") -> bool:
    """Whether this PyAV build can encode ``codec`` in ``pix_fmt`` (HEVC, VP9 and 10-bit are optional)."""
    try:
        formats = av.CodecContext.create(codec, "w").codec.video_formats or ()
    except (av.error.FFmpegError, ValueError):
        return False
    return any(f.name == pix_fmt for f in formats)


def _video_cases() -> list[VideoCase]:
    ok = [  # unusual but valid: each must be extracted and scored
        VideoCase("plain.mp4", "plain", True, _clip("plain.mp4", seed=1)),
        VideoCase("single_frame.mp4", "a single frame", True, _clip("single_frame.mp4", frames=1)),
        VideoCase("short.mp4", "shorter than 1 s", True, _clip("short.mp4", frames=3, seed=2)),
        VideoCase("tiny16.mp4", "16x16", True, _clip("tiny16.mp4", width=16, height=16)),
        VideoCase("odd63x47.mp4", "odd frame size", True,
                  _clip("odd63x47.mp4", width=63, height=47, pix_fmt="yuv444p")),
        VideoCase("wide.mp4", "extreme aspect ratio", True, _clip("wide.mp4", width=256, height=16)),
        VideoCase("rotated90.mp4", "rotation metadata", True, _clip("rotated90.mp4", rotation=90)),
        VideoCase("vfr.mkv", "variable frame rate", True, _clip("vfr.mkv", pts=[0, 0.05, 0.4, 0.45, 1.0, 1.3, 1.9])),
        VideoCase("raw.h264", "raw H.264, no container or timestamps", True, _clip("raw.h264")),
        VideoCase("cut_60.mkv", "truncated stream: the intact part counts", True, _cut("cut_60.mkv", 0.6, ".mkv")),
        VideoCase("trailing_garbage.mp4", "garbage appended", True, _appended("trailing_garbage.mp4")),
        VideoCase("name with spaces, a comma and ünïcode.mp4", "awkward file name", True,
                  _clip("name with spaces, a comma and ünïcode.mp4", seed=4)),
    ]
    if _encodable("libx264", "yuv420p10le"):
        ok.append(VideoCase("deep10.mp4", "10-bit", True, _clip("deep10.mp4", pix_fmt="yuv420p10le")))
    if _encodable("libx265"):
        ok.append(VideoCase("hevc.mp4", "HEVC", True, _clip("hevc.mp4", codec="libx265")))
    if _encodable("libvpx-vp9"):
        ok.append(VideoCase("vp9.webm", "VP9", True, _clip("vp9.webm", codec="libvpx-vp9")))

    bad = [  # each must fail its own row with a message naming the file and the problem
        VideoCase("zero.mp4", "zero bytes", False, lambda root: (root / "zero.mp4").touch(), "empty file"),
        VideoCase("notes.mp4", "a text file named .mp4", False,
                  lambda root: (root / "notes.mp4").write_text("filename,mos\nclip.mp4,3.2\n" * 40),
                  "not a video file"),
        *(VideoCase(f"cut_{p}.mp4", f"mp4 truncated at {p} %", False, _cut(f"cut_{p}.mp4", p / 100), "cannot be opened")
          for p in (1, 50, 96)),  # in the header, the frames, the index (moov: the last 12 %; cut early in it, the
        # file opens with a partial track and fails as "no video stream" or "unknown codec" instead)
        VideoCase("audio_only.m4a", "audio only", False,
                  lambda root: make_audio_only(root / "audio_only.m4a", seconds=0.5), "no video stream"),
        VideoCase("no_streams.mp4", "no streams at all", False, _no_streams, "no video stream"),
        VideoCase("alien_codec.mkv", "unknown codec", False, _alien_codec, "codec"),
        VideoCase("folder.mp4", "a directory, not a file", False, lambda root: (root / "folder.mp4").mkdir(),
                  "directory"),
        VideoCase("missing.mp4", "missing file", False, lambda root: None, "not found"),
        VideoCase("timestamp_jump.mp4", "a frame shown for hours", False,
                  _clip("timestamp_jump.mp4", pts=[k / 8 for k in range(13)] + [10243 + k / 8 for k in range(11)]),
                  "its timestamps are corrupt"),
        *(VideoCase(f"mutated_{seed}.mp4", f"mutated bytes, seed {seed}", False, _mutated(f"mutated_{seed}.mp4", seed),
                    either=True) for seed in range(3)),
    ]
    if os.geteuid() != 0:  # root reads anything: the case is moot there
        bad.append(VideoCase("unreadable.mp4", "no read permission", False, _unreadable, "ermission"))
    return ok + bad


VIDEO_CASES = _video_cases()


def write_videos(root: Path, cases: Sequence[VideoCase] = VIDEO_CASES) -> Path:
    """Write ``cases`` into ``root``; return ``root``."""
    for case in cases:
        case.write(root)
    return root


# -- label CSVs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableCase:
    """A label CSV (``None``: no such file) and what reading it must give: exit code 0, or 2 and ``problem``."""

    name: str
    content: bytes | None
    problem: str = ""  # "" for a table that is unusual but valid


TABLE_CASES = [
    TableCase("empty.csv", b"", "file is empty"),
    TableCase("header_only.csv", b"filename,mos\n", "no data rows"),
    TableCase("no_filename.csv", b"name,mos\nplain.mp4,3\n", "missing column 'filename'"),
    TableCase("semicolons.csv", b"filename;mos\nplain.mp4;3\n", "missing column 'filename'"),
    TableCase("words_as_mos.csv", b"filename,mos\nplain.mp4,good\n", "line 2: MOS 'good' is not a number"),
    TableCase("nan_mos.csv", b"filename,mos\nplain.mp4,NaN\n", "line 2: MOS 'NaN' is not a number"),
    TableCase("inf_mos.csv", b"filename,mos\nplain.mp4,3\nshort.mp4,-inf\n", "line 3: MOS '-inf' is infinite"),
    TableCase("duplicates.csv", b"filename,mos\nplain.mp4,1\nshort.mp4,2\nplain.mp4,3\n",
              "line 4: duplicate filename 'plain.mp4' (first on line 2)"),
    TableCase("empty_filename.csv", b"filename,mos\n  ,3\n", "line 2: empty filename"),
    TableCase("extra_fields.csv", b"filename,mos\nplain.mp4,1,short.mp4,2\n", "more fields than the header"),
    TableCase("ragged.csv", b"filename,mos\nplain.mp4,1\nshort.mp4,2,3\n", "not a readable CSV"),
    TableCase("latin1.csv", "filename,mos\nvidéo.mp4,1\n".encode("latin-1"), "not a readable CSV"),
    TableCase("utf16.csv", "filename,mos\nplain.mp4,1\n".encode("utf-16"), "not a readable CSV"),
    TableCase("binary.csv", random.Random(0).randbytes(300), "not a readable CSV"),
    TableCase("missing.csv", None, "file not found"),
    TableCase("nul_in_name.csv", b"filename,mos\nplain.mp4,1\nbad\x00name.mp4,2\n",
              "line 3: filename 'bad\\x00name.mp4' contains a NUL"),
    # unusual but valid
    TableCase("bom_whitespace_crlf.csv", "\ufefffilename , mos \r\n  plain.mp4 , 3 \r\n\r\n".encode()),
    TableCase("score_alias.csv", b"score,filename\n3,plain.mp4\n"),
    TableCase("quoted.csv", '"filename","mos"\n"name with spaces, a comma and ünïcode.mp4","2.5"\n'.encode()),
]


def write_table(root: Path, case: TableCase) -> Path:
    path = root / case.name
    if case.content is not None:
        path.write_bytes(case.content)
    return path


# -- configs ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigCase:
    """A config file (``None``: no such file) and ``--set`` overrides that must exit 2 with ``problem``."""

    name: str
    text: str | None
    overrides: tuple[str, ...] = ()
    problem: str = ""


CONFIG_CASES = [
    ConfigCase("unknown_key.yml", "extract:\n  colour: red\n", problem="unknown config key 'extract.colour'"),
    ConfigCase("wrong_type.yml", "extract:\n  batch_size: eight\n", problem="extract.batch_size must be int"),
    ConfigCase("bool_for_int.yml", "extract: {max_chunks: true}\n", problem="extract.max_chunks must be int"),
    ConfigCase("bad_choice.yml", "extract: {decoder: ffmpeg}\n", problem="extract.decoder must be one of decord, pyav"),
    ConfigCase("malformed.yml", "extract:\n  batch_size: [1, 2\n", problem="not valid YAML"),
    ConfigCase("tabs.yml", "extract:\n\tbatch_size: 2\n", problem="not valid YAML"),
    ConfigCase("a_list.yml", "- extract\n- fit\n", problem="expected a mapping of config keys"),
    ConfigCase("section_scalar.yml", "extract: 5\n", problem="extract must be a mapping"),
    ConfigCase("missing.yml", None, problem="config file not found"),
    ConfigCase("set_no_equals.yml", "", ("extract.batch_size",), "expected KEY=VALUE"),
    ConfigCase("set_no_key.yml", "", ("=3",), "expected KEY=VALUE"),
    ConfigCase("set_unknown.yml", "", ("extract.batchsize=3",), "unknown config key 'extract.batchsize'"),
    ConfigCase("set_bad_yaml.yml", "", ("extract.levels={coarse: {short_side: 3",), "value is not valid YAML"),
    ConfigCase("set_wrong_type.yml", "", ("extract.clip.size=big",), "extract.clip.size must be int"),
    ConfigCase("set_zero_frames.yml", "", ("extract.clip.frames=0",), "extract.clip.frames must be >= 1"),
    ConfigCase("set_negative_chunks.yml", "", ("extract.max_chunks=-1",), "extract.max_chunks must be >= 0"),
    ConfigCase("set_zero_side.yml", "", ("extract.levels.coarse.short_side=0",),
               "extract.levels.coarse.short_side must be >= 1"),
    ConfigCase("set_zero_timeout.yml", "", ("extract.decode_timeout_s=0",), "extract.decode_timeout_s must be > 0"),
    ConfigCase("set_zero_shard.yml", "", ("extract.shard_videos=0",), "extract.shard_videos must be >= 1"),
    ConfigCase("set_zero_batch.yml", "", ("extract.batch_size=0",), "extract.batch_size must be >= 1"),
]


def write_config(root: Path, case: ConfigCase) -> Path:
    path = root / case.name
    if case.text is not None:
        path.write_text(case.text)
    return path


# -- a small good run, shared read-only by the reliability tests ------------------------------------------

GOOD_VIDEOS = 8
FEW = 4  # videos of few.csv, for the tests that extract them again


@functools.cache
def _tiny_run(base: Path) -> Path:
    root = base / "tiny-run"
    root.mkdir()
    for i in range(GOOD_VIDEOS):
        make_video(root / f"clip{i}.mp4", frames=8 * (2 + i % 2), fps=8, seed=10 + i)  # 2 or 3 chunks
    (root / "labels.csv").write_text("filename,mos,group\n" + "".join(
        f"clip{i}.mp4,{1 + (i * 7) % 5 + i / 10},src{i // 2}\n" for i in range(GOOD_VIDEOS)))
    (root / "few.csv").write_text("".join((root / "labels.csv").read_text().splitlines(keepends=True)[:FEW + 1]))
    (root / "config.yml").write_text(TINY_FIT + f"data: {{train_csv: {root / 'labels.csv'}, video_root: {root}, "
                                                f"store: {root / 'store'}, val_fraction: 0.5}}\n")
    code, out = invoke(extract, "-o", root / "config.yml", "--no-progress", *sets(TINY))
    assert code == 0, out
    code, out = invoke(fit, "-o", root / "config.yml", "--out", root / "run")
    assert code == 0, out
    return root


def tiny_run(factory: pytest.TempPathFactory) -> Path:
    """A folder with a few good videos, ``labels.csv`` (``few.csv``: its first rows), ``config.yml`` (tiny
    extraction and fit), the ``store`` extracted from them and a fitted ``run``. Built once per test session;
    its users must not change it."""
    return _tiny_run(factory.getbasetemp())
