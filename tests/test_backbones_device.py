"""Device choice and CPU threads for the frozen backbones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.backbones import resolve_device
from pipeline.backbones.device import (
    channels_last_for, feature_precision, freeze, inference, is_sticky_device_error, limit_cpu_threads, local_gpu,
    usable_cpus,
)
from pipeline.errors import UsageError


def test_auto_picks_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_devices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match="only 2 CUDA"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps", ""])
def test_unknown_devices_are_usage_errors(spec):
    with pytest.raises(UsageError, match="device"):
        resolve_device(spec)


def test_cuda_without_cuda_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="not available"):
        resolve_device("cuda")


def test_cpu_threads_are_capped_never_raised():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert limit_cpu_threads() == 1 == torch.get_num_threads()
        torch.set_num_threads(usable_cpus() + 7)
        assert limit_cpu_threads() == usable_cpus() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_frozen_model_on_cpu():
    model = freeze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), torch.device("cpu"))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with inference(torch.device("cpu")):
        out = model(torch.rand(1, 3, 8, 8))
    assert torch.is_inference(out) and out.dtype == torch.float32  # float32 on CPU: no autocast there


def test_channels_last_matches_the_convolutions():
    assert channels_last_for(nn.Conv2d(3, 4, 3)) == torch.channels_last
    assert channels_last_for(nn.Sequential(nn.Conv3d(3, 4, 3))) == torch.channels_last_3d


@pytest.mark.parametrize("environ, local_index, gpu", [
    ({"LOCAL_RANK": "3"}, None, 3),                          # torchrun / accelerate
    ({"SLURM_LOCALID": "2"}, None, 2),                       # srun, one task per GPU
    ({"LOCAL_RANK": "1", "SLURM_LOCALID": "2"}, None, 1),    # the launcher inside SLURM wins
    ({"LOCAL_RANK": "5"}, None, 1),                          # more ranks than GPUs: wrap around
    ({"SLURM_LOCALID": "1"}, 3, 1),                          # the node's rank beats a local cluster's number
    ({}, 2, 2),                                              # --cluster local:N worker number 2
    ({"CUDA_VISIBLE_DEVICES": "6"}, None, 0),                # one GPU made visible: it is cuda:0
    ({}, None, 0),
])
def test_each_worker_takes_the_gpu_its_launcher_names(environ: dict, local_index: int | None, gpu: int) -> None:
    assert local_gpu(4, environ, local_index) == gpu


def test_a_malformed_local_rank_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="LOCAL_RANK='x'"):
        local_gpu(2, {"LOCAL_RANK": "x"})


def test_features_are_float32_on_cpu_and_bf16_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert feature_precision("cpu") == feature_precision(torch.device("cpu")) == "float32"
    assert feature_precision(torch.device("cuda", 0)) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert feature_precision("auto") == "bf16"


@pytest.mark.parametrize("message", [
    "CUDA error: an illegal memory access was encountered",
    "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported",
    "CUDA error: unspecified launch failure",
    "cudaErrorLaunchFailure",
    "CUDA error: uncorrectable ECC error encountered",
    "CUDA error: unknown error",
    "CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx(...)`",
])
def test_sticky_cuda_errors_are_recognised(message: str) -> None:
    assert is_sticky_device_error(RuntimeError(message)) and is_sticky_device_error(message)


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("Given groups=1, weight of size [64, 3, 7, 7], expected input to have 3 channels"),
    ValueError("illegal memory access"),  # not what torch raises for a device error
])
def test_other_errors_fail_one_video(error: BaseException) -> None:
    assert not is_sticky_device_error(error)
