"""Weight resolution: directory, then hub cache, then a checked download (served here from 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.backbones import SpatialExtractor, TemporalExtractor
from corpus import invoke
from pipeline.backbones import weights as pretrained
from pipeline.backbones.cli import main as weights_cli
from pipeline.backbones.weights import WeightsSpec, build_with_weights, locate
from pipeline.errors import WeightsError


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, holding a small random state dict; yields (dir, base URL)."""
    root = tmp_path_factory.mktemp("served")
    torch.save(nn.Linear(4, 3).state_dict(), root / "tiny.pth")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache, so nothing from the machine's real one leaks in."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def spec_for(served, sha256: str | None = "digest", filename: str = "tiny.pth") -> WeightsSpec:
    root, base = served
    if sha256 == "digest":
        sha256 = hashlib.sha256((root / "tiny.pth").read_bytes()).hexdigest()
    return WeightsSpec(name="TINY", filename=filename, url=f"{base}/{filename}", sha256=sha256)


def unreachable_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny.pth"


def test_download_is_checked_and_cached(served, cache):
    spec = spec_for(served)
    found = locate(spec, "pretrained")
    assert found.path == cache / "tiny.pth"
    assert found.sha256 == spec.sha256
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.pth"]  # no partial file left behind
    # Second time round the cache answers: the server is no longer needed.
    offline = WeightsSpec(name="TINY", filename="tiny.pth", url=unreachable_url(), sha256=spec.sha256)
    assert locate(offline, "imagenet") == found  # the old word for pretrained, still accepted


def test_digest_prefix_is_enough(served, cache):
    """torchvision publishes only the first 8 hex digits, in the file name."""
    spec = spec_for(served)
    assert locate(WeightsSpec("TINY", "tiny.pth", spec.url, spec.sha256[:8]), "imagenet").sha256 == spec.sha256


def test_hash_mismatch_saves_nothing(served, cache):
    spec = spec_for(served, sha256="0" * 64)
    with pytest.raises(WeightsError, match="expected 0000") as raised:
        locate(spec, "pretrained")
    assert spec.url in str(raised.value)
    assert list(cache.iterdir()) == []


def test_unreachable_server_names_url_and_destination(cache):
    spec = WeightsSpec(name="TINY", filename="tiny.pth", url=unreachable_url(), sha256=None)
    with pytest.raises(WeightsError) as raised:
        locate(spec, "pretrained")
    message = str(raised.value)
    assert spec.url in message and str(cache) in message and "--weights" in message
    assert list(cache.iterdir()) == []


def test_missing_file_on_server(served, cache):
    with pytest.raises(WeightsError, match="404"):
        locate(spec_for(served, sha256=None, filename="absent.pth"), "imagenet")


def test_directory_comes_before_cache(served, cache, tmp_path):
    spec = spec_for(served, sha256=None)
    cache.mkdir(parents=True)
    torch.save(nn.Linear(4, 3).state_dict(), cache / "tiny.pth")
    mine = tmp_path / "mine"
    mine.mkdir()
    torch.save(nn.Linear(4, 3).state_dict(), mine / "tiny.pth")
    assert locate(spec, mine).path == mine / "tiny.pth"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert locate(spec, empty).path == cache / "tiny.pth"  # a directory without the file: the cache is next


def test_corrupt_file_in_directory_is_an_error_not_a_fallback(served, cache, tmp_path):
    spec = spec_for(served)
    (tmp_path / "tiny.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="SHA-256"):
        locate(spec, tmp_path)
    assert not cache.exists()  # no download was tried in its place


def test_weights_must_be_a_keyword_or_a_directory(served, cache, tmp_path):
    with pytest.raises(WeightsError, match="not a directory"):
        locate(spec_for(served), tmp_path / "nowhere")


def test_build_with_weights_random_and_from_file(served, cache):
    root, _ = served
    spec = spec_for(served)
    random_model, random_id = build_with_weights(lambda: nn.Linear(4, 3), spec, "random", seed=5)
    assert random_id == "random seed=5"
    again, _ = build_with_weights(lambda: nn.Linear(4, 3), spec, "random", seed=5)
    torch.testing.assert_close(random_model.state_dict(), again.state_dict(), rtol=0, atol=0)

    model, weights_id = build_with_weights(lambda: nn.Linear(4, 3), spec, root, seed=5)
    assert weights_id == f"TINY sha256:{spec.sha256}"
    torch.testing.assert_close(model.state_dict(), torch.load(root / "tiny.pth"), rtol=0, atol=0)

    with pytest.raises(WeightsError, match="does not fit"):
        build_with_weights(lambda: nn.Linear(5, 3), spec, root, seed=5)


def test_unreadable_checkpoint(cache, tmp_path):
    (tmp_path / "tiny.pth").write_bytes(b"\x00garbage")
    spec = WeightsSpec(name="TINY", filename="tiny.pth", url=unreachable_url(), sha256=None)
    with pytest.raises(WeightsError, match="cannot be read"):
        build_with_weights(lambda: nn.Linear(4, 3), spec, tmp_path, seed=0)


def test_building_does_not_disturb_the_callers_random_state(served):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_with_weights(lambda: nn.Linear(4, 3), spec_for(served), "random", seed=0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_official_constants():
    assert pretrained.RESNET50_IMAGENET1K_V1.url.endswith("/" + pretrained.RESNET50_IMAGENET1K_V1.filename)
    assert pretrained.RESNET50_IMAGENET1K_V1.filename == f"resnet50-{pretrained.RESNET50_IMAGENET1K_V1.sha256}.pth"
    assert pretrained.SLOWFAST_8X8_R50.url.endswith("/SLOWFAST_8x8_R50.pyth")
    assert pretrained.SLOWFAST_8X8_R50.state_key == "model_state"
    assert pretrained.BACKBONE_WEIGHTS == (pretrained.RESNET50_IMAGENET1K_V1, pretrained.SLOWFAST_8X8_R50)


@pytest.mark.parametrize(
    ("extractor", "constant"),
    [(SpatialExtractor, "RESNET50_IMAGENET1K_V1"), (TemporalExtractor, "SLOWFAST_8X8_R50")],
)
def test_extractors_never_fall_back_to_random_weights(cache, monkeypatch, extractor, constant):
    """No file anywhere and no network: an error naming the URL, not a model with random weights."""
    offline = dataclasses.replace(getattr(pretrained, constant), url=unreachable_url())
    monkeypatch.setattr(pretrained, constant, offline)
    with pytest.raises(WeightsError) as raised:
        extractor(weights="imagenet", device="cpu")
    assert offline.url in str(raised.value) and offline.filename in str(raised.value)


# -- vqa-weights: fetch on a machine with network, check anywhere, then --weights DIR with no network ----------

@pytest.fixture
def stand_ins(served, cache, monkeypatch) -> tuple[WeightsSpec, WeightsSpec]:
    """The backbones' two files replaced by small ones on 127.0.0.1: one with a digest, one without (as SlowFast)."""
    root, base = served
    torch.save({"model_state": nn.Linear(2, 2).state_dict()}, root / "tiny_state.pyth")
    specs = (spec_for(served), WeightsSpec("TINY_STATE", "tiny_state.pyth", f"{base}/tiny_state.pyth", None,
                                           state_key="model_state"))
    monkeypatch.setattr(pretrained, "BACKBONE_WEIGHTS", specs)
    return specs


def test_fetch_then_check_then_use_offline(stand_ins, cache, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    code, out = invoke(weights_cli, "fetch", folder)
    assert code == 0, out
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.pth", "tiny_state.pyth"]  # no partial file left
    assert "all 2 weight files valid" in out and f"sha256 {stand_ins[0].sha256}" in out
    assert not cache.exists()  # fetched into the folder, not the cache

    offline = tuple(dataclasses.replace(spec, url=unreachable_url()) for spec in stand_ins)
    monkeypatch.setattr(pretrained, "BACKBONE_WEIGHTS", offline)
    assert invoke(weights_cli, "fetch", folder)[0] == 0  # valid copies are kept: nothing to download
    code, out = invoke(weights_cli, "check", folder)
    assert code == 0 and out.count(" ok") == 2
    model, weights_id = build_with_weights(lambda: nn.Linear(4, 3), offline[0], folder, seed=0)  # what --weights DIR does
    assert weights_id == f"TINY sha256:{stand_ins[0].sha256}"


def test_check_names_what_is_missing_or_invalid(stand_ins, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "tiny.pth").write_bytes(b"not the weights")
    code, out = invoke(weights_cli, "check", folder)
    assert code == 1
    assert "tiny.pth" in out and "INVALID" in out and "SHA-256" in out
    assert "tiny_state.pyth" in out and "missing" in out and "vqa-weights fetch" in out
    (folder / "tiny_state.pyth").write_bytes(b"\x00garbage")  # no digest published: it must read as a checkpoint
    assert "cannot be read" in invoke(weights_cli, "check", folder)[1]


def test_fetch_from_an_unreachable_server_fails_cleanly(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "BACKBONE_WEIGHTS", tuple(
        dataclasses.replace(spec, url=unreachable_url()) for spec in stand_ins))
    folder = tmp_path / "weights"
    code, out = invoke(weights_cli, "fetch", folder)
    assert code == 1 and "downloading it failed" in out
    assert list(folder.iterdir()) == []
