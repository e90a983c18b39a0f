"""Device choice and CPU threads for the frozen backbones."""

from __future__ import annotations

import pytest
import torch

from pipeline.backbones import resolve_device
from pipeline.backbones.device import limit_cpu_threads, usable_cpus
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
