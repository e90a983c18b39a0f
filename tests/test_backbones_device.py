"""Device choice and CPU threads for the frozen backbones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.backbones import resolve_device
from pipeline.backbones.device import channels_last_for, freeze, inference, limit_cpu_threads, usable_cpus
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
