"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from corpus import tiny_run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip without a CUDA device (``bench/gpu_check.py`` runs them on a GPU node)."""
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models gain
    nothing from two, and oversubscribed intra-op threads crawl on a small shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny extracted-and-fitted run (``corpus.tiny_run``); modules may define their own ``run``."""
    return tiny_run(tmp_path_factory)
