"""Where the frozen backbones run, and how: device choice, CPU threads, the recipe (precision, batching, layout)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


def local_gpu(cuda_devices: int, environ: Mapping[str, str] = os.environ, local_index: int | None = None) -> int:
    """The index, among the ``cuda_devices`` this process sees, of the GPU it should use.

    The launcher says which: ``LOCAL_RANK`` (torchrun, accelerate) or ``SLURM_LOCALID`` (srun) is the
    process's rank on its node; else ``local_index`` (a ``--cluster local:N`` worker's number). Without any,
    the process uses the first GPU it sees: with ``CUDA_VISIBLE_DEVICES`` naming one device per process (as
    SLURM's ``--gpus-per-task`` does), that is its own. A rank beyond the visible GPUs wraps around.
    """
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise UsageError(f"environment variable {name}={value!r}: expected the process's rank on its node")
            return int(value) % max(1, cuda_devices)
    return (local_index or 0) % max(1, cuda_devices)


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


@dataclass(frozen=True)
class Recipe:
    """How a frozen backbone runs: its precision, whole batches or one item per call, its memory layout, and
    where the clips are converted from the decoder's YUV (the same definition either way, video/yuv.py).

    Two recipes exist, one per kind of device (:func:`recipe_for`). The accelerator one can also be asked for
    on the CPU (bf16 autocast works there too, only slowly), which is how the tests cover the GPU path's
    batching, layout and precision without a GPU.
    """

    precision: str  # "float32" or "bf16": part of a store's settings, so two precisions never mix in one store
    batched: bool  # the whole batch in one call (accelerators) or one item per call (CPU)
    channels_last: bool  # NHWC / NDHWC tensors, the layout tensor cores read fastest
    clips_on_device: bool = False  # decoders hand over YUV planes; the device converts them and computes NSS


#: CPU: float32 (bf16 convolutions are slow there), one item per call (batches only cost page faults, see
#: :func:`forward_batch`), the default layout, clips converted by swscale in the decoder.
CPU_RECIPE = Recipe(precision="float32", batched=False, channels_last=False)
#: CUDA: bf16 autocast (statistics and pooling still in float32), whole batches, channels-last, clips and NSS
#: on the device (the CPU only decodes: BENCHMARKS.md, "The CPU feed").
ACCELERATOR_RECIPE = Recipe(precision="bf16", batched=True, channels_last=True, clips_on_device=True)


def recipe_for(device: torch.device) -> Recipe:
    """The recipe the backbones use on ``device``."""
    return CPU_RECIPE if device.type == "cpu" else ACCELERATOR_RECIPE


def feature_precision(device: str | torch.device) -> str:
    """The precision ("float32" or "bf16") the backbones compute features at on ``device`` (a spec or a device)."""
    return recipe_for(device if isinstance(device, torch.device) else resolve_device(device)).precision


def freeze(model: nn.Module, device: torch.device, recipe: Recipe | None = None) -> nn.Module:
    """Return ``model`` in eval mode, without gradients, on ``device``, in the layout of ``recipe``.

    On CUDA this also turns on cuDNN's autotuner: the input shapes repeat (a few key frame sizes, one clip
    size), so the one-off search per shape pays for itself within a few batches.
    """
    recipe = recipe or recipe_for(device)
    model.eval().requires_grad_(False)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=channels_last_for(model))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model


def channels_last_for(model: nn.Module) -> torch.memory_format:
    """The channels-last layout matching the model's convolutions (2-D or 3-D)."""
    has_3d = any(isinstance(m, nn.Conv3d) for m in model.modules())
    return torch.channels_last_3d if has_3d else torch.channels_last


@contextlib.contextmanager
def inference(device: torch.device, recipe: Recipe | None = None) -> Iterator[None]:
    """Inference mode, with bfloat16 autocast when the recipe (by default the device's) computes in bf16."""
    recipe = recipe or recipe_for(device)
    with torch.inference_mode():
        if recipe.precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield


def forward_batch(model: nn.Module, x: torch.Tensor, batched: bool = False) -> Any:
    """``model(x)``, but one item per call unless ``batched``, with the outputs concatenated in order.

    On a CPU, batching buys no arithmetic and costs page faults: every call's activations are fresh
    allocations that glibc returns to the system afterwards, so batches made ResNet-50 and SlowFast slower
    per item than single calls (BENCHMARKS.md, "Extraction end to end"). One item per call
    also makes a video's features independent of the videos batched with it. Accelerators get the whole batch.
    """
    if batched or len(x) <= 1:
        return model(x)
    outputs = [model(item) for item in x.split(1)]
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return tuple(torch.cat(parts) for parts in zip(*outputs))


def to_cpu_float32(features: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy, made outside inference mode so callers get an ordinary tensor they may modify."""
    return features.to("cpu", torch.float32, copy=True)


#: What the CUDA runtime, cuBLAS and cuDNN say on errors that leave the process's CUDA context unusable: after
#: one of them every later CUDA call fails too, so going on would only mark every remaining video failed.
STICKY_DEVICE_ERRORS = (
    "illegal memory access", "illegal address", "illegal instruction", "misaligned address",
    "device-side assert", "unspecified launch failure", "launch timed out", "hardware stack error",
    "invalid program counter", "uncorrectable ecc error", "gpu is lost", "fallen off the bus",
    "cuda error: unknown error", "no cuda-capable device", "busy or unavailable", "context is destroyed",
    "cudaerrorillegaladdress", "cudaerrorlaunchfailure", "cudaerrorassert", "cudaerrorecc",
    "cublas_status_execution_failed", "cudnn_status_execution_failed",
)


def is_sticky_device_error(error: BaseException | str) -> bool:
    """True for an error (or its message) that a broken accelerator raises, not one a single video causes.

    Out-of-memory is not sticky: the context survives it, and a smaller video may still fit.
    """
    if not isinstance(error, (RuntimeError, str)):
        return False
    text = str(error).lower()
    return "out of memory" not in text and any(phrase in text for phrase in STICKY_DEVICE_ERRORS)
