"""Throughput of the frozen backbones: the extractors against the naive way of running the same network.

Naive: one frame (or clip) at a time, autograd on, no inference mode, float32, default memory layout.
Extractor: a batch, inference mode, frozen parameters; on CUDA also bfloat16 autocast and channels-last.
Weights are random (speed does not depend on them). Sizes are the project's: key frames resized to a
short side of 448 (coarse) and 720 (fine) at 16:9, clips of 32 frames at 224x224.

    .venv/bin/python -m bench.backbones                  # CPU, and CUDA when present
    .venv/bin/python -m bench.backbones --batches 1      # quicker
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable

import torch

from pipeline.backbones import SpatialExtractor, TemporalExtractor

LEVELS = {"coarse": (448, 796), "fine": (720, 1280)}  # 16:9 frames at each level's short side
CLIP = (32, 3, 224, 224)


def per_second(run: Callable[[], None], items: int, batches: int, device: torch.device) -> float:
    """Items per second over ``batches`` timed calls, after one untimed warm-up call."""
    run()
    sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        run()
    sync(device)
    return items * batches / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The same network as a beginner would run it: float32, trainable parameters, default layout."""
    model = copy.deepcopy(model).float().requires_grad_(True)
    return model.to(device, memory_format=torch.contiguous_format)


def bench_spatial(device: torch.device, batch: int, batches: int) -> list[tuple[str, str, float, float]]:
    extractor = SpatialExtractor(weights="random", device=str(device))
    naive = naive_copy(extractor.model, device)
    rows = []
    for level, (height, width) in LEVELS.items():
        frames = torch.rand(batch, 3, height, width)
        fast = per_second(lambda frames=frames: extractor(frames), batch, batches, device)
        one = frames[:1].to(device)
        slow = per_second(lambda one=one: naive(one).cpu(), 1, batches, device)
        rows.append((f"spatial {level} {height}x{width}", "frames/s", fast, slow))
    return rows


def bench_temporal(device: torch.device, batch: int, batches: int) -> list[tuple[str, str, float, float]]:
    extractor = TemporalExtractor(weights="random", device=str(device))
    naive = naive_copy(extractor.model, device)
    clips = torch.rand(batch, *CLIP)
    one = clips[:1].to(device).permute(0, 2, 1, 3, 4)  # (1, 3, T, S, S)
    fast = per_second(lambda: extractor(clips), batch, batches, device)
    slow = per_second(lambda: [pathway.cpu() for pathway in naive(one)], 1, batches, device)
    return [("temporal 32x224x224", "clips/s", fast, slow)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="extractor batch size (default 4)")
    parser.add_argument("--batches", type=int, default=2, help="timed calls per measurement (default 2)")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} CPU threads, load {load}")
    print(f"| device | workload | extractor (batch {args.batch}) | naive (batch 1, autograd) | speed-up |")
    print("|---|---|---|---|---|")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for workload, unit, fast, slow in bench_spatial(device, args.batch, args.batches) + bench_temporal(
            device, args.batch, args.batches
        ):
            print(f"| {name} | {workload} | {fast:.2f} {unit} | {slow:.2f} {unit} | {fast / slow:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
