"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from corpus import tiny_run


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
