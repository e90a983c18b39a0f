"""The device step's data movement: clips and batches up to the device, rows back to the host, and telling a
broken device from a bad video.

On CUDA every copy overlaps the models: planes go up on a stream of their own, host batches through pinned
memory without blocking, and rows come back into pinned memory behind an event that is waited on only after
the next batch has been launched. Elsewhere the same calls are plain copies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.backbones.device import is_sticky_device_error
from pipeline.errors import DeviceError
from pipeline.video.yuv import YUVClip


@dataclass
class HostRows:
    """A batch's rows on their way to the host: one synchronisation away on CUDA, there already elsewhere."""

    host: dict[str, torch.Tensor]
    done: torch.cuda.Event | None

    def wait(self) -> dict[str, np.ndarray]:
        if self.done is not None:
            self.done.synchronize()
        return {kind: rows.numpy() for kind, rows in self.host.items()}


def to_device(clip: YUVClip, key_frame: torch.Tensor, device: torch.device) -> tuple[YUVClip, torch.Tensor]:
    """A clip's planes and its key frame on ``device``, copied by the time this returns (the shared memory they lie in
    may then be reused).

    On CUDA the copies run on a stream of their own, so they wait for no batch of the models, and the stream the
    models run on waits for them; from a decoder's ring, page-locked by
    :class:`~pipeline.extract.decode_pool.DecodePool`, they are direct copies. The host then sleeps until they are
    done (a blocking event: CUDA's default wait spins, burning a core the decoders could use). Elsewhere the planes
    are read where they are (they are converted at once) and the key frame, which waits for its batches, is copied.
    """
    if device.type != "cuda":
        return clip, key_frame.clone()
    compute = torch.cuda.current_stream(device)
    copies = _copy_stream(device)
    copied = torch.cuda.Event(blocking=True)
    with torch.cuda.stream(copies):
        moved = clip.to(device, non_blocking=True)  # from pageable memory: returns once staged
        key_frame = key_frame.to(device, non_blocking=True)
        copied.record(copies)
    compute.wait_event(copied)
    copied.synchronize()
    for tensor in (*moved.planes, key_frame):
        tensor.record_stream(compute)
    return moved, key_frame


@functools.cache
def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream plane copies to ``device`` run on."""
    return torch.cuda.Stream(device)


def upload(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Stack host tensors of one shape into a batch on ``device``: through pinned memory, without blocking, on CUDA.

    The batch keeps the tensors' memory layout (key frames: channels last, as decoded), so stacking copies rows
    of bytes instead of transposing every pixel.
    """
    if tensors[0].device.type != "cpu":
        return torch.stack(tensors).to(device)
    pinned = device.type == "cuda"
    first = tensors[0]
    order = sorted(range(first.dim()), key=lambda dim: -first.stride(dim))  # outermost dimension first
    batch = torch.empty((len(tensors), *(first.shape[dim] for dim in order)), dtype=first.dtype, pin_memory=pinned)
    batch = batch.permute(0, *(1 + order.index(dim) for dim in range(first.dim())))
    torch.stack(tensors, out=batch)
    return batch.to(device, non_blocking=True) if pinned else batch


def download(outputs: dict[str, torch.Tensor]) -> HostRows:
    """Start copying a batch's float32 outputs to the host; on CUDA into pinned memory, with an event to wait on."""
    first = next(iter(outputs.values()))
    if first.device.type != "cuda":
        return HostRows({kind: rows.to("cpu", torch.float32, copy=True) for kind, rows in outputs.items()}, None)
    host = {}
    for kind, rows in outputs.items():
        host[kind] = torch.empty(rows.shape, dtype=torch.float32, pin_memory=True)
        host[kind].copy_(rows, non_blocking=True)
    done = torch.cuda.Event(blocking=True)  # waited on by sleeping, not spinning (see to_device)
    done.record()
    return HostRows(host, done)


def stop_if_device_broken(error: BaseException | str, path: str) -> None:
    """Raise DeviceError when ``error`` says the device is unusable: every later video would fail the same way."""
    if is_sticky_device_error(error):
        text = str(error).removeprefix(f"{path}: ").strip()
        raise DeviceError(
            f"the device failed while extracting {path} ({' '.join(text.split()[:40])}); after such an error "
            "every later CUDA call fails, so the run stops here. The videos stored so far are kept: rerun the "
            "same command (after checking the GPU, e.g. with nvidia-smi) to extract the rest"
        ) from error if isinstance(error, BaseException) else None
