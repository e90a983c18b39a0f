"""The package's version: on every command, in every run directory and in every model file."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from corpus import invoke
from pipeline import __version__
from pipeline.backbones.cli import main as weights_cli
from pipeline.cli import extract, fit, score
from pipeline.datasets.cli import main as data_cli
from pipeline.fit.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_distributions():
    assert __version__ == metadata.version("vqa-pipeline")


@pytest.mark.parametrize("command", [extract, fit, score, data_cli, weights_cli])
def test_every_command_says_its_version(command):
    assert invoke(command, "--version") == (0, f"vqa-pipeline {__version__}\n")


@pytest.mark.parametrize("script", ["extract_features.py", "fit.py", "score.py"])
@pytest.mark.slow
def test_top_level_scripts_say_their_version(script):
    done = subprocess.run([sys.executable, script, "--version"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout == f"vqa-pipeline {__version__}\n"


def test_run_directory_and_model_record_the_version(run):
    recorded = json.loads((run / "run" / "run.json").read_text())
    assert recorded["pipeline_version"] == recorded["versions"]["pipeline"] == __version__ and "torch" in recorded["versions"]
    payload = torch.load(run / "run" / "best_model.pth", weights_only=True)
    assert payload["pipeline_version"] == __version__


def test_model_files_without_a_version_still_load(run, tmp_path):
    payload = torch.load(run / "run" / "best_model.pth", weights_only=True)
    del payload["pipeline_version"]  # as files written before it was recorded
    torch.save(payload, tmp_path / "old.pth")
    model, spec = load_model(tmp_path / "old.pth")
    assert spec.config.name == "tiny"
