"""Clips converted on the device (from YUV planes, torch) against swscale's (in the decoder): pixels and features.

The accelerator recipe converts clips of 8-bit 4:2:0 frames from their uploaded planes (``pipeline.video.yuv``)
where the CPU recipe has swscale convert them; both compute one definition. This measures how far apart
they land on real content (``bench.feed``'s 1080p30 and 720p24 clips, re-encoded from vqa-dev): clip pixels,
then the temporal (SlowFast, random weights) and NSS rows of both ways, extracted in float32 so that only the
conversion differs (the recipe is otherwise the CPU's), with the planes handed over through shared memory
by a decoder process as on a GPU node.

    python -m bench.device_clips
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import av
import click
import numpy as np
import torch

from bench.feed import CLIPS, make_clip
from pipeline.backbones.device import CPU_RECIPE
from pipeline.config import load_config
from pipeline.backbones import Backbones
from pipeline.extract.run import extract_videos
from pipeline.store import FeatureStore
from pipeline.video import open_chunks, plan_chunks
from pipeline.video.probe import probe
from pipeline.video.yuv import clip_from_yuv, new_planes

ROOT = Path(__file__).resolve().parent.parent
DEVICE_CLIPS = dataclasses.replace(CPU_RECIPE, clips_on_device=True)
KINDS = ("temporal_slow", "temporal_fast", "nss")


def pixel_differences(path: Path) -> dict:
    """Clip pixels of every chunk both ways: mean and largest absolute difference, and the share that differ; and
    the same between the clips and feature definitions version 2's (swscale's default RGB output, ``AREA``)."""
    with open_chunks(path) as swscale, open_chunks(path, planes=new_planes) as planar:
        pairs = [(a.clip, clip_from_yuv(b.clip, 224)) for a, b in zip(swscale, planar)]
    with av.open(str(path)) as container:
        version_2 = torch.from_numpy(np.stack([
            frame.reformat(width=224, height=224, format="rgb24", interpolation="AREA").to_ndarray()
            for frame in container.decode(video=0)])).permute(0, 3, 1, 2)
    _, index, _ = probe(path)
    plans = plan_chunks(index.seconds(), float(index.duration), clip_frames=32)
    return {"device_vs_swscale": _summary([(device.int() - cpu.int()).abs() for cpu, device in pairs]),
            "version_3_vs_2": _summary([(cpu.int() - version_2[list(plan.frames)].int()).abs()
                                        for (cpu, _), plan in zip(pairs, plans)])}


def _summary(diffs: list[torch.Tensor]) -> dict:
    every = torch.cat([d.flatten() for d in diffs]).float()
    return {"mean": every.mean().item(), "max": every.max().item(), "share_differing": (every > 0).float().mean().item()}


def feature_differences(paths: list[Path], work: Path) -> dict:
    """Temporal and NSS rows both ways (one decoder process): per-row cosine and relative error, worst row."""
    cfg = load_config(ROOT / "config" / "nss_only.yml", ["extract.temporal=true", "extract.weights=random",
                                                          "extract.workers=1"]).extract
    videos = [(p.stem, p) for p in paths]
    stores = {}
    for name, recipe in (("swscale", CPU_RECIPE), ("device", DEVICE_CLIPS)):
        stores[name] = work / name
        extract_videos(videos, stores[name], cfg, backbones=Backbones(cfg, recipe=recipe), progress=False)
    a, b = (FeatureStore.open(stores[n]).read(KINDS) for n in ("swscale", "device"))
    report = {}
    for kind in KINDS:
        x, y = a.features[kind].astype(np.float64), b.features[kind].astype(np.float64)
        cosine = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        relative = np.linalg.norm(x - y, axis=1) / np.linalg.norm(x, axis=1)
        report[kind] = {"rows": len(x), "min_cosine": cosine.min(), "max_relative_error": relative.max()}
    return report


@click.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=Path("/work/shared/data/vqa-dev"))
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-feed"), show_default=True)
def cli(data: Path, work: Path) -> None:
    """Print one JSON line per clip (pixels), then one for the features."""
    paths = [make_clip(data, work, name) for name in CLIPS]
    for path in paths:
        print(json.dumps({"clip": path.name, "pixels": pixel_differences(path)}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-device-clips-") as tmp:
        print(json.dumps({"features": feature_differences(paths, Path(tmp))}, default=float), flush=True)


if __name__ == "__main__":
    cli()
