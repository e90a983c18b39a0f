"""Where the frozen backbones run, and how: device choice, CPU threads, and the inference precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import UsageError

DEVICE_SPECS = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(spec: str) -> torch.device:
    """Return the torch device that ``spec`` names: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2]
        if index and not index.isdigit():
            raise UsageError(f"device {spec!r}: the CUDA index must be a number, e.g. cuda:0")
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
        if index and int(index) >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device(spec)
    raise UsageError(f"device {spec!r}: expected one of {', '.join(DEVICE_SPECS)}")


def usable_cpus() -> int:
    """Return the CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    ``os.cpu_count()`` reports the host's cores, which in a container can be many more than the
    process is allowed, and oversubscribed BLAS threads are much slower than fewer busy ones.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def limit_cpu_threads() -> int:
    """Cap torch's intra-op threads at the usable cores (never raising a lower setting); return the count."""
    threads = min(torch.get_num_threads(), usable_cpus())
    torch.set_num_threads(threads)
    return threads


def freeze(model: nn.Module, device: torch.device) -> nn.Module:
    """Return ``model`` in eval mode, without gradients, on ``device`` (channels-last on CUDA, where it is faster)."""
    model.eval().requires_grad_(False)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=channels_last_for(model))
    return model


def channels_last_for(model: nn.Module) -> torch.memory_format:
    """The channels-last layout matching the model's convolutions (2-D or 3-D)."""
    has_3d = any(isinstance(m, nn.Conv3d) for m in model.modules())
    return torch.channels_last_3d if has_3d else torch.channels_last


def feature_precision(device: torch.device) -> str:
    """What the backbones compute at on ``device`` (:func:`inference` follows it): ``bf16`` autocast on CUDA,
    ``float32`` on a CPU, where bf16 convolutions are slow. Part of a store's feature settings."""
    return "bf16" if device.type == "cuda" else "float32"


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """Inference mode, at the :func:`feature_precision` of ``device`` (bfloat16 autocast on CUDA)."""
    with torch.inference_mode():
        if feature_precision(device) == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def forward_batch(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``, but one item per call on the CPU, with the outputs concatenated in order.

    On a CPU, batching buys no arithmetic and costs page faults: every call's activations are fresh
    allocations that glibc returns to the system afterwards, so batches made ResNet-50 and SlowFast slower
    per item than single calls (BENCHMARKS.md, "Extraction end to end"). One item per call
    also makes a video's features independent of the videos batched with it. CUDA gets the whole batch.
    """
    if x.device.type != "cpu" or len(x) <= 1:
        return model(x)
    outputs = [model(item) for item in x.split(1)]
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return tuple(torch.cat(parts) for parts in zip(*outputs))


def to_cpu_float32(features: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy, made outside inference mode so callers get an ordinary tensor they may modify."""
    return features.to("cpu", torch.float32, copy=True)
