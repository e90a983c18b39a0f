"""bench/gpu_check.py in its CPU mode: every check's logic runs (tiny sizes), the CUDA-only one skips."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("preflight", "cuda-tests", "parity", "throughput", "decode-ceiling", "end-to-end", "fit-score", "lsvq-fit")


@pytest.mark.slow
def test_the_gpu_check_runs_every_check_on_a_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--quick", "--work",
                             str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    lines = {m.group(2): (m.group(1), m.group(3)) for m in re.finditer(r"^(PASS|FAIL|SKIP) +(\S+) +(.*)$", out, re.M)}
    assert tuple(lines) == CHECKS, out
    expected_skips = {"cuda-tests"} if not torch.cuda.is_available() else set()
    assert {name for name, (status, _) in lines.items() if status == "SKIP"} == expected_skips, out
    assert "chunks/s" in lines["end-to-end"][1] and "x the decode ceiling" in lines["end-to-end"][1], out
    assert re.search(r"summary: 7 passed, 0 failed, 1 skipped", out) or not expected_skips, out
