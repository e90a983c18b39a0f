"""Backbones on a CPU: per-item time of raw batched calls against the extractors (one item per call there).

For ResNet-50 at a key-frame size and SlowFast on 32-frame clips: the model called on batches of 1 and of
``--batch`` items (how the extractors ran before), then the extractor on the same batch (one call per item on
a CPU). Prints seconds per item (best of ``--repeats``), the process's system CPU seconds (page faults of
fresh activation buffers show up there), and a digest of the extractors' features, so runs under different
allocator settings can be checked for bit-identical output:

    .venv/bin/python -m bench.cpu_batching
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv/bin/python -m bench.cpu_batching
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 .venv/bin/python -m bench.cpu_batching
"""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable

import click
import torch

from pipeline.backbones import SpatialExtractor, TemporalExtractor


def per_item(call: Callable[[torch.Tensor], object], items: torch.Tensor, batch: int, repeats: int) -> float:
    """Best seconds per item of ``call`` over ``items`` in batches of ``batch`` (after one warm-up call)."""
    call(items[:batch])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            call(items[i:i + batch])
        best = min(best, (time.perf_counter() - start) / len(items))
    return best


@click.command()
@click.option("--short-side", default=448, show_default=True, help="Key-frame height (16:9 frames).")
@click.option("--batch", default=4, show_default=True)
@click.option("--repeats", default=2, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(short_side: int, batch: int, repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 3, short_side, round(short_side * 16 / 9) // 2 * 2, generator=generator)
    clips = torch.rand(batch, 32, 3, 224, 224, generator=generator)
    digest = hashlib.sha256()
    for name, extractor, items in (("ResNet-50", SpatialExtractor("random"), frames),
                                   ("SlowFast", TemporalExtractor("random"), clips)):
        x = items.permute(0, 2, 1, 3, 4) if name == "SlowFast" else items  # the raw model's layout

        def raw(part: torch.Tensor, model: torch.nn.Module = extractor.model) -> object:
            with torch.inference_mode():
                return model(part)

        results = {"raw batch 1": per_item(raw, x, 1, repeats), f"raw batch {batch}": per_item(raw, x, batch, repeats),
                   f"extractor, batch {batch}": per_item(extractor, items, batch, repeats)}
        print(f"{name} {tuple(items.shape[1:])}: " + ", ".join(f"{k} {v:.3f} s/item" for k, v in results.items()))
        outputs = extractor(items)
        for tensor in outputs if isinstance(outputs, tuple) else (outputs,):
            digest.update(tensor.numpy().tobytes())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{threads} threads; process CPU: user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s; "
          f"features sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
