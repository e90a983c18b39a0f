"""Decoding throughput and peak memory of ``pipeline.video`` against decoding whole videos into lists first.

Two ways to turn videos into the chunks of the design (key frame at native size + 32-frame clip
at 224x224), both built with the same plan and resize code, so only the decoding strategy differs:

- ``layer``: ``open_chunks`` (streaming, one decode, RGB conversion only of frames a chunk uses);
- ``list``: the research-code way, every frame decoded to an RGB array in a list, chunks cut from it.

Each measurement runs in its own subprocess and reports its own peak RSS (``ru_maxrss``).

    .venv/bin/python -m bench.decode run --data /work/shared/data/vqa-dev --work /tmp/vqa-bench-decode
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import click
import decord
import numpy as np
import pandas as pd
import torch

from pipeline.video import open_chunks
from pipeline.video.sampling import plan_chunks
from pipeline.video.views import resize_frames

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from videos import frame_content  # noqa: E402  (the test pattern, shared with the tests)

CLIP_FRAMES, CLIP_SIZE = 32, 224


def chunks_by_layer(path: Path, decoder: str, max_chunks: int) -> tuple[int, int]:
    """Consume every chunk of ``path`` through ``open_chunks``; return (frames in the video, chunks)."""
    with open_chunks(path, decoder=decoder, max_chunks=max_chunks) as stream:
        count = sum(1 for _ in stream)
        return stream.info.frames, count


def chunks_by_list(path: Path, decoder: str, max_chunks: int) -> tuple[int, int]:
    """Decode every frame into a list first, then cut the same chunks from it."""
    if decoder == "pyav":
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = [(f.pts * stream.time_base, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
        times = [float(t - decoded[0][0]) for t, _ in decoded]
        frames = [a for _, a in decoded]
        last = decoded[-1][0] - decoded[-2][0] if len(decoded) > 1 else 0  # exact (Fraction) frame interval
        duration = float(decoded[-1][0] - decoded[0][0] + last)
    else:
        reader = decord.VideoReader(str(path), num_threads=0)
        stamps = reader.get_frame_timestamp(np.arange(len(reader)))
        frames = list(reader.get_batch(list(range(len(reader)))).asnumpy())
        times = stamps[:, 0].tolist()
        duration = len(frames) / reader.get_avg_fps()  # decord's float32 end times can fall short of the last second
    count = 0
    for plan in plan_chunks(times, duration, max_chunks=max_chunks, clip_frames=CLIP_FRAMES):
        key = torch.from_numpy(frames[plan.key_frame]).permute(2, 0, 1).contiguous()
        clip = resize_frames(torch.from_numpy(np.stack([frames[i] for i in plan.frames])).permute(0, 3, 1, 2),
                             CLIP_SIZE, CLIP_SIZE)
        count += key.shape[0] > 0 and clip.shape[0] == CLIP_FRAMES
    return len(frames), count


WAYS = {"layer": chunks_by_layer, "list": chunks_by_list}


def write_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """Write an H.264 test video of ``seconds`` (cycling 24 precomputed pattern frames keeps this fast)."""
    if path.exists():
        return path
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast"}
        cycle = [av.VideoFrame.from_ndarray(frame_content(k, width, height), format="rgb24").reformat(format="yuv420p")
                 for k in range(24)]
        for k in range(int(seconds * fps)):
            frame = cycle[k % len(cycle)]
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def measure_in_subprocess(way: str, decoder: str, paths: list[Path], max_chunks: int = 0) -> dict:
    """Run one measurement in a fresh interpreter; return its JSON report."""
    command = [sys.executable, "-m", "bench.decode", "measure", "--way", way, "--decoder", decoder,
               "--max-chunks", str(max_chunks), *map(str, paths)]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@click.group()
def cli() -> None:
    """Decode benchmarks of pipeline.video."""


@cli.command()
@click.option("--way", type=click.Choice(sorted(WAYS)), required=True)
@click.option("--decoder", type=click.Choice(["decord", "pyav"]), required=True)
@click.option("--max-chunks", default=0, show_default=True)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def measure(way: str, decoder: str, max_chunks: int, paths: tuple[Path, ...]) -> None:
    """Turn PATHS into chunks one way; print frames, chunks, seconds and peak RSS as JSON."""
    start = time.perf_counter()
    frames = chunks = 0
    for path in paths:
        f, c = WAYS[way](path, decoder, max_chunks)
        frames, chunks = frames + f, chunks + c
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"way": way, "decoder": decoder, "max_chunks": max_chunks, "videos": len(paths),
                      "frames": frames, "chunks": chunks, "seconds": round(seconds, 2),
                      "fps": round(frames / seconds, 1), "peak_rss_mib": round(peak_mib)}))


@cli.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=Path("/work/shared/data/vqa-dev"))
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-decode"), show_default=True)
@click.option("--short-seconds", default=10, show_default=True)
@click.option("--long-seconds", default=600, show_default=True)
@click.option("--list-seconds", default=30, show_default=True, help="longest 1080p video decoded into a list")
@click.option("--fps", default=10, show_default=True, help="frame rate of the generated 1080p videos")
def run(data: Path, work: Path, short_seconds: int, long_seconds: int, list_seconds: int, fps: int) -> None:
    """Throughput on DATA's videos, then peak memory on generated 1080p videos; print one JSON line each."""
    videos = [data / f for f in pd.read_csv(data / "labels.csv")["filename"]]
    for way in ("layer", "list"):
        for decoder in ("decord", "pyav"):
            print(json.dumps({"set": data.name, **measure_in_subprocess(way, decoder, videos)}), flush=True)
    work.mkdir(parents=True, exist_ok=True)
    generated = {s: write_video(work / f"1080p_{s}s_{fps}fps.mp4", s, fps, 1920, 1080)
                 for s in sorted({short_seconds, list_seconds, long_seconds})}
    runs = [("layer", d, s, 0) for d in ("decord", "pyav") for s in (short_seconds, long_seconds)]
    runs += [("layer", "pyav", long_seconds, 8), ("layer", "decord", long_seconds, 8)]
    runs += [("list", "pyav", s, 0) for s in sorted({short_seconds, list_seconds})]
    for way, decoder, seconds, max_chunks in runs:
        report = measure_in_subprocess(way, decoder, [generated[seconds]], max_chunks)
        print(json.dumps({"set": f"1080p {seconds} s @ {fps} fps", **report}), flush=True)


if __name__ == "__main__":
    cli()
