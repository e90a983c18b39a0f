"""Throughput of the frozen backbones: the extractors against the naive way of running the same network.

Naive: one frame (or clip) at a time, autograd on, no inference mode, float32, default memory layout.
Extractor: a batch, inference mode, frozen parameters; on CUDA also bfloat16 autocast and channels-last.
Weights are random (speed does not depend on them). Sizes are the project's: key frames resized to a
short side of 448 (coarse) and 720 (fine) at 16:9, clips of 32 frames at 224x224.

The two ways are timed alternately, after a warm-up call each, and the best call of each is reported
(as timeit does), which keeps the comparison fair on a machine shared with other work.

    .venv/bin/python -m bench.backbones                  # CPU, and CUDA when present
    .venv/bin/python -m bench.backbones --repeats 1      # quicker
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


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process, all threads)


def seconds(run: Callable[[], object], device: torch.device) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def best_rates(
    extractor: Callable[[], object], batch: int, naive: Callable[[], object], repeats: int, device: torch.device
) -> tuple[Timing, Timing]:
    """Best (items per wall second, CPU seconds per item) of the extractor (``batch`` items a call) and of
    the naive way (one item a call). CPU time per item is the fairer figure on a machine shared with others."""
    seconds(extractor, device)  # warm-up: allocator, oneDNN/cuDNN plans
    seconds(naive, device)
    fast, slow = [], []
    for _ in range(repeats):
        fast.append(seconds(extractor, device))
        slow.append(seconds(naive, device))
    return best(fast, batch), best(slow, 1)


def best(timings: list[Timing], items: int) -> Timing:
    return items / min(wall for wall, _ in timings), min(cpu for _, cpu in timings) / items


def naive_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The same network as a beginner would run it: float32, trainable parameters, default layout."""
    model = copy.deepcopy(model).float().requires_grad_(True)
    return model.to(device, memory_format=torch.contiguous_format)


Row = tuple[str, str, Timing, Timing]  # workload, unit, extractor, naive


def bench_spatial(device: torch.device, batch: int, repeats: int) -> list[Row]:
    """One row per level."""
    extractor = SpatialExtractor(weights="random", device=str(device))
    naive = naive_copy(extractor.model, device)
    rows = []
    for level, (height, width) in LEVELS.items():
        frames = torch.rand(batch, 3, height, width)
        one = frames[:1].to(device)
        rates = best_rates(lambda f=frames: extractor(f), batch, lambda x=one: naive(x).cpu(), repeats, device)
        rows.append((f"spatial {level} {height}x{width}", "frames/s", *rates))
    return rows


def bench_temporal(device: torch.device, batch: int, repeats: int) -> list[Row]:
    extractor = TemporalExtractor(weights="random", device=str(device))
    naive = naive_copy(extractor.model, device)
    clips = torch.rand(batch, *CLIP)
    one = clips[:1].to(device).permute(0, 2, 1, 3, 4)  # (1, 3, T, S, S), as the model takes it
    rates = best_rates(lambda: extractor(clips), batch, lambda: [p.cpu() for p in naive(one)], repeats, device)
    return [("temporal 32x224x224", "clips/s", *rates)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2, help="extractor batch size (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls of each way (default 2)")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} CPU threads, load {load}")
    print(f"| device | workload | extractor (batch {args.batch}) | naive (batch 1, autograd) | speed-up | CPU s/item |")
    print("|---|---|---|---|---|---|")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        rows = bench_spatial(device, args.batch, args.repeats) + bench_temporal(device, args.batch, args.repeats)
        for workload, unit, (fast, fast_cpu), (slow, slow_cpu) in rows:
            cost = f"{fast_cpu:.2f} vs {slow_cpu:.2f}"
            print(f"| {name} | {workload} | {fast:.2f} {unit} | {slow:.2f} {unit} | {fast / slow:.2f}x | {cost} |")
    print(f"load afterwards {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
