"""NSS extraction speed on the CPU: key frames per second at the two level sizes, clips and chunks per second.

The input is random uint8 content (the cost does not depend on what the pixels show). NSS runs in
numpy/scipy on one core, whatever torch's thread count, so besides wall-clock time the CPU time of the
process is reported: on a shared, busy machine it is the better estimate of the rate on an idle core.

    .venv/bin/python bench/nss.py --repeats 10
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click
import torch

from pipeline.nss import nss_features, spatial_nss, temporal_nss

# 16:9 key frames whose short side is each level's default size.
KEY_FRAMES = {"448 short side (448x796)": (448, 796), "720 short side (720x1280)": (720, 1280)}


def per_second(work: Callable[[], object], repeats: int) -> str:
    """Calls per second by wall clock and by process CPU time, each the best of ``repeats`` after a warm-up."""
    work()
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return f"{1 / wall:.1f} | {1 / cpu:.1f}"


@click.command()
@click.option("--repeats", default=10, show_default=True)
@click.option("--clip-frames", default=32, show_default=True)
@click.option("--clip-size", default=224, show_default=True)
def main(repeats: int, clip_frames: int, clip_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (clip_frames, 3, clip_size, clip_size), dtype=torch.uint8, generator=generator)
    print(f"best of {repeats} calls each\n")
    print("| part | input | unit | per second, wall clock | per second, CPU time |")
    print("|---|---|---|---|---|")
    clip_rate = per_second(lambda: temporal_nss(clip), repeats)
    print(f"| clip (temporal + motion) | {clip_frames}x{clip_size}x{clip_size} | clips | {clip_rate} |")
    for name, (h, w) in KEY_FRAMES.items():
        key_frame = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
        print(f"| key frame (spatial) | {name} | frames | {per_second(lambda: spatial_nss(key_frame), repeats)} |")
        chunk_rate = per_second(lambda: nss_features(key_frame, clip), repeats)
        print(f"| whole chunk | key frame {name} + clip | chunks | {chunk_rate} |")


if __name__ == "__main__":
    main()
