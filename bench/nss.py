"""NSS cost per chunk on one CPU thread: the current version (``pipeline.nss``) against version 1 (``bench/nss_v1.py``).

Real content: the first chunk of a vqa-dev video, its key frame upscaled (bicubic) to each frame size, its
clip (T x 3 x 224 x 224, the extraction's size at any resolution) as decoded. Times are process CPU time,
best of ``--repeats`` after a warm-up, with torch on one thread: on a shared, busy machine the best CPU time
is the closest estimate of an idle core. The allocator keeps freed memory, as in the extraction's processes.
The current version costs the same at any frame size (fixed samples); it is also timed in batches of
``--batch`` chunks, the form a GPU feeder calls.

    .venv/bin/python bench/nss.py --repeats 10
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from bench import nss_v1
from bench.cputime import best_cpu
from pipeline.extract.heap import keep_freed_memory
from pipeline.nss import NSS_VERSION, nss_features, nss_features_batch
from pipeline.video import open_chunks

SIZES = {"1080p": (1080, 1920), "720p": (720, 1280)}


def cpu_seconds(work: Callable[[], object], repeats: int) -> float:
    """Process CPU seconds of one call, the best of ``repeats`` after a warm-up."""
    return best_cpu(work, repeats, warm_up=True)


def upscale(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, *size), bicubic."""
    out = F.interpolate(frame[None].float(), size=size, mode="bicubic", align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8)


@click.command()
@click.option("--video", type=click.Path(exists=True, path_type=Path),
              default=Path("/work/shared/data/vqa-dev/videos/vid4_city__pristine.mp4"), show_default=True)
@click.option("--repeats", default=10, show_default=True)
@click.option("--batch", default=8, show_default=True, help="chunks per call of the batched form")
def main(video: Path, repeats: int, batch: int) -> None:
    torch.set_num_threads(1)
    keep_freed_memory()  # as in the extraction's processes
    with open_chunks(video) as stream:
        chunk = next(iter(stream))
    clip = chunk.clip
    print(f"{video.name}: key frame {tuple(chunk.key_frame.shape[1:])} upscaled, clip {tuple(clip.shape)}; "
          f"best of {repeats}, one thread\n")
    v1_clip = cpu_seconds(lambda: nss_v1.temporal_nss(clip), repeats)
    print(f"v1 clip part (temporal + motion, any frame size): {v1_clip:.4f} CPU-s\n")
    current = f"v{NSS_VERSION}"
    print(f"| frame size | v1 key frame part | v1 chunk | {current} chunk | {current} chunk, batches of {batch} "
          f"| v1 / {current} |")
    print("|---|---|---|---|---|---|")
    for name, size in SIZES.items():
        key = upscale(chunk.key_frame, size)
        v1_key = cpu_seconds(lambda: nss_v1.spatial_nss(key), repeats)
        v1 = cpu_seconds(lambda: nss_v1.nss_features(key, clip), repeats)
        now = cpu_seconds(lambda: nss_features(key, clip), repeats)
        batched = cpu_seconds(lambda: nss_features_batch([key] * batch, [clip] * batch), repeats) / batch
        print(f"| {name} | {v1_key:.4f} | {v1:.4f} | {now:.4f} | {batched:.4f} | {v1 / now:.0f}x |")


if __name__ == "__main__":
    main()
