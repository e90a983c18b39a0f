"""The GPU path's logic, run on the CPU: bf16 recipe, batches spanning videos, sticky device errors.

The accelerator recipe (whole batches, channels-last, bf16 autocast) runs on a CPU too, only slowly, so
these tests cover everything but the CUDA kernels. Tolerance of bf16 against float32, per row: cosine
>= 0.999 and relative L2 error <= 2 % (measured on these random-weight models: 0.99998 and 0.6 %).
Tests marked ``cuda`` need a GPU (``bench/gpu_check.py`` runs them there) and skip without one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.backbones import SpatialExtractor, TemporalExtractor
from pipeline.backbones.device import ACCELERATOR_RECIPE, CPU_RECIPE, Recipe
from pipeline.backbones.slowfast import GlobalPool
from pipeline.extract.assemble import assemble
from pipeline.extract.device_step import upload
from pipeline.extract.plan import VideoJob
from pipeline.cli import extract
from pipeline.config import load_config
from pipeline.extract.decoding import ChunkDecoded, Decoded, DecodedChunk, DecodeFailed, Opened
from pipeline.errors import DeviceError
from pipeline.backbones import Backbones
from pipeline.extract.run import extract_videos
from pipeline.nss import NSS_DIM
from pipeline.store import FeatureStore
from pipeline.video import VideoInfo

pytestmark = pytest.mark.usefixtures("one_thread")

MIN_COSINE = 0.999  # bf16 vs float32, per row
MAX_RELATIVE_ERROR = 0.02
#: Whole batches in float32: isolates the batching logic from bf16 rounding (rows may move only by ulps).
BATCHED_FLOAT32 = Recipe(precision="float32", batched=True, channels_last=True)
KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast", "nss")


def assert_close_rows(reference: np.ndarray, other: np.ndarray, what: str) -> None:
    """Per-row cosine and relative error of ``other`` against ``reference`` within the bf16 tolerance."""
    a, b = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    assert a.shape == b.shape, what
    norms = np.linalg.norm(a, axis=1)
    cosine = (a * b).sum(1) / (norms * np.linalg.norm(b, axis=1))
    relative = np.linalg.norm(a - b, axis=1) / norms
    assert cosine.min() >= MIN_COSINE and relative.max() <= MAX_RELATIVE_ERROR, (what, cosine, relative)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2-s videos of three sizes (so key frames group by size) and one 3-s video of the first size."""
    helpers = pytest.importorskip("videos", reason="making test videos needs PyAV")  # a GPU node may lack it
    root = tmp_path_factory.mktemp("videos")
    for i, (width, height, frames) in enumerate([(64, 48, 48), (80, 48, 48), (48, 64, 48), (64, 48, 72)]):
        helpers.make_video(root / f"v{i}.mp4", width=width, height=height, frames=frames, fps=24, seed=i)
    (root / "config.yml").write_text(helpers.TINY_EXTRACT_YAML)
    return root


@pytest.fixture(scope="module")
def cfg(videos: Path):
    return load_config(videos / "config.yml").extract


def rows(store: Path, key: str) -> dict[str, np.ndarray]:
    read = FeatureStore.open(store).read(KINDS)
    return {kind: read.features[kind][read.rows(key)] for kind in KINDS}


def test_slowfast_pools_bf16_activations_in_float32() -> None:
    """8x7x7 bf16 values averaged in bf16 lose their low bits; in float32 they match the exact mean."""
    g = torch.Generator().manual_seed(0)
    slow, fast = (1 + torch.rand(2, 64, 8, 7, 7, generator=g)).bfloat16(), torch.rand(2, 8, 8, 7, 7, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = GlobalPool()((slow, fast.bfloat16()))
    exact = slow.double().mean(dim=(2, 3, 4))
    assert pooled[0].dtype == pooled[1].dtype == torch.float32
    torch.testing.assert_close(pooled[0].double(), exact, rtol=1e-6, atol=0)
    assert (slow.mean(dim=(2, 3, 4)).double() - exact).abs().max() > 1e-4  # what bf16 pooling would have given


@pytest.mark.parametrize("extractor, shape", [(SpatialExtractor, (3, 3, 64, 96)), (TemporalExtractor, (2, 8, 3, 32, 32))])
@pytest.mark.slow
def test_the_accelerator_recipe_matches_float32_within_the_bf16_tolerance(extractor, shape) -> None:
    """Whole batches, channels-last, bf16 autocast (the CUDA recipe), here on the CPU, against the CPU recipe."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    reference, accelerated = extractor("random", "cpu")(x), extractor("random", "cpu", recipe=ACCELERATOR_RECIPE)(x)
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (reference, accelerated))):
        assert b.dtype == torch.float32 and a.shape == b.shape
        assert not torch.equal(a, b)  # bf16 did run
        assert_close_rows(a.numpy(), b.numpy(), extractor.__name__)


@pytest.mark.parametrize("recipe", [CPU_RECIPE, ACCELERATOR_RECIPE], ids=["cpu", "accelerator"])
@pytest.mark.slow
def test_spatial_rows_do_not_depend_on_the_key_frames_memory_layout(recipe: Recipe) -> None:
    """Key frames come channels last, as decoded; the rows are those of the same frames in any other layout."""
    frames = torch.rand(2, 64, 96, 3, generator=torch.Generator().manual_seed(2))
    channels_last, contiguous = frames.permute(0, 3, 1, 2), frames.permute(0, 3, 1, 2).contiguous()
    extractor = SpatialExtractor("random", "cpu", recipe=recipe)
    assert torch.equal(extractor(channels_last), extractor(contiguous))


def test_upload_stacks_tensors_in_their_own_memory_layout() -> None:
    key_frames = [torch.randint(0, 256, (40, 60, 3), dtype=torch.uint8).permute(2, 0, 1) for _ in range(3)]
    clips = [torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8) for _ in range(3)]
    for tensors, layout in ((key_frames, torch.channels_last), (clips, torch.contiguous_format)):
        batch = upload(tensors, torch.device("cpu"))
        assert batch.is_contiguous(memory_format=layout) and torch.equal(batch, torch.stack(tensors))


@pytest.mark.parametrize("recipe", [BATCHED_FLOAT32, ACCELERATOR_RECIPE], ids=["float32", "bf16"])
@pytest.mark.slow
def test_a_videos_features_do_not_depend_on_the_videos_batched_with_it(videos: Path, cfg, tmp_path: Path,
                                                                        recipe: Recipe) -> None:
    """Batches spanning videos (the accelerator way) give each video the rows it gets when extracted alone."""
    backbones = Backbones(cfg, recipe=recipe)
    pairs = [(f"v{i}", videos / f"v{i}.mp4") for i in range(4)]
    together = extract_videos(pairs, tmp_path / "together", cfg, backbones=backbones, progress=False)
    assert sorted(together.done) == ["v0", "v1", "v2", "v3"] and not together.failed
    alone = Backbones(cfg)  # the CPU recipe: one item per call, batches within one video
    for key, path in pairs:
        extract_videos([(key, path)], tmp_path / key, cfg, backbones=alone, progress=False)
        reference, batched = rows(tmp_path / key, key), rows(tmp_path / "together", key)
        for kind in KINDS:
            if recipe is BATCHED_FLOAT32:
                np.testing.assert_allclose(batched[kind], reference[kind], rtol=1e-3, atol=1e-3, err_msg=kind)
            else:
                assert_close_rows(reference[kind], batched[kind], f"{key} {kind}")


def synthetic_chunk(seed: int, height: int, width: int, clip: int = 32, frames: int = 8) -> DecodedChunk:
    g = torch.Generator().manual_seed(seed)
    key_frame = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    clip_frames = torch.randint(0, 256, (frames, 3, clip, clip), dtype=torch.uint8, generator=g)
    return DecodedChunk(key_frame, clip_frames, np.full(NSS_DIM, seed, np.float32), second=seed % 10)


def info(width: int, height: int, chunks: int) -> VideoInfo:
    return VideoInfo("x.mp4", width, height, 24.0, 24 * chunks, float(chunks), 0, "yuv420p", "h264", "pyav")


@pytest.mark.slow
def test_interleaved_videos_share_batches_and_a_failing_batch_fails_only_its_bad_video(
        cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of three videos arrive interleaved (as from several decoder processes); the middle one makes any
    batch holding it raise. That batch runs again video by video: only the bad video fails."""
    sizes = {0: (48, 64), 1: (48, 64), 2: (48, 64)}
    events = [Opened(task, info(w, h, 3)) for task, (h, w) in sizes.items()]
    for index in range(3):
        events += [ChunkDecoded(task, synthetic_chunk(10 * task + index, *sizes[task])) for task in sizes]
    events += [Decoded(task) for task in sizes]
    spatial, calls = Backbones.spatial_batch, []

    def refuses_the_bad_video(self: Backbones, key_frames: torch.Tensor, level: str) -> torch.Tensor:
        calls.append(len(key_frames))
        if (key_frames == synthetic_chunk(10, 48, 64).key_frame).flatten(1).all(1).any():  # video 1's first chunk
            raise ValueError("this batch holds the bad video")
        return spatial(self, key_frames, level)

    monkeypatch.setattr(Backbones, "spatial_batch", refuses_the_bad_video)
    ended = run_events(events, cfg, tmp_path / "store", BATCHED_FLOAT32, videos=3)
    assert ended["v0"] is None and ended["v2"] is None and "bad video" in ended["v1"], ended
    assert calls[0] == 4  # the first batch spans videos: chunk 0 of each, then chunk 1 of video 0
    stored = FeatureStore.open(tmp_path / "store").read(("spatial_coarse", "nss"))
    assert sorted(stored.keys) == ["v0", "v2"]
    np.testing.assert_array_equal(stored.features["nss"][stored.rows("v2")][:, 0], [20, 21, 22])  # rows in order


def run_events(events: list, cfg, store_path: Path, recipe: Recipe, videos: int) -> dict[str, str | None]:
    """Feed decode events to :func:`assemble` with batches of 4; return each video's outcome as it was reported."""
    backbones = Backbones(replace(cfg, batch_size=4), recipe=recipe)
    store = FeatureStore.open(store_path, backbones.settings.to_dict())
    jobs = [VideoJob(f"v{task}", f"v{task}.mp4", ("coarse",), 1, 0.0) for task in range(videos)]
    with store.writer(flush_videos=8) as writer:
        ended = list(assemble(iter(events), jobs, backbones, 4, writer))
    assert len(ended) == len({key for key, _ in ended}) == videos, ended  # each video reported once
    return dict(ended)


@pytest.mark.parametrize("recipe", [CPU_RECIPE, BATCHED_FLOAT32], ids=["per-video", "spanning"])
@pytest.mark.slow
def test_a_video_whose_decoding_fails_midway_leaves_no_rows_in_the_batches(cfg, tmp_path: Path, recipe: Recipe) -> None:
    events = [Opened(0, info(64, 48, 3)), Opened(1, info(64, 48, 2))]
    events += [ChunkDecoded(0, synthetic_chunk(0, 48, 64)), ChunkDecoded(1, synthetic_chunk(10, 48, 64)),
               ChunkDecoded(0, synthetic_chunk(1, 48, 64)), DecodeFailed(0, "v0.mp4: the bitstream broke"),
               ChunkDecoded(1, synthetic_chunk(11, 48, 64)), Decoded(1)]
    ended = run_events(events, cfg, tmp_path / "store", recipe, videos=2)
    assert ended == {"v0": "v0.mp4: the bitstream broke", "v1": None}
    stored = FeatureStore.open(tmp_path / "store").read(("spatial_coarse", "nss"))
    assert stored.keys == ["v1"]
    np.testing.assert_array_equal(stored.features["nss"][:, 0], [10, 11])


@pytest.mark.slow
def test_a_sticky_device_error_stops_the_run_and_keeps_what_was_stored(
        videos: Path, cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An illegal memory access leaves the CUDA context unusable: the run stops (exit 1) with a clear message,
    instead of recording every remaining video as failed."""
    temporal, calls = Backbones.temporal_batch, []

    def device_lost_on_the_second_video(self: Backbones, clips: torch.Tensor) -> tuple:
        calls.append(len(clips))
        if len(calls) > 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                               "asynchronously reported at some other API call")
        return temporal(self, clips)

    monkeypatch.setattr(Backbones, "temporal_batch", device_lost_on_the_second_video)
    pairs = [(f"v{i}", videos / f"v{i}.mp4") for i in range(4)]
    with pytest.raises(DeviceError, match="illegal memory access.*rerun the same command"):
        extract_videos(pairs, tmp_path / "store", cfg, progress=False)
    store = FeatureStore.open(tmp_path / "store")
    assert list(store.cached()) == ["v0"] and store.failures() == {}
    assert len(calls) == 2  # nothing was attempted after the error

    csv = tmp_path / "labels.csv"
    csv.write_text("filename\n" + "".join(f"v{i}.mp4\n" for i in range(4)))
    result = CliRunner().invoke(extract, ["-o", str(videos / "config.yml"), "--csv", str(csv), "--video-root",
                                          str(videos), "--store", str(tmp_path / "cli"), "--no-progress"])
    assert result.exit_code == 1 and "the device failed" in result.output, result.output
    assert FeatureStore.open(tmp_path / "cli").failures() == {}


# -- on a GPU (bench/gpu_check.py runs these) ------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("extractor, shape", [(SpatialExtractor, (4, 3, 224, 320)), (TemporalExtractor, (2, 32, 3, 64, 64))])
def test_cuda_features_match_the_cpu(extractor, shape, monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 on CUDA (TF32 off) within 1e-3 relative of the CPU; bf16 (the CUDA default) within the tolerance."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(2))
    cpu = extractor("random", "cpu")(x)
    float32 = extractor("random", "cuda", recipe=BATCHED_FLOAT32)(x)
    bf16 = extractor("random", "cuda")(x)
    for a, b, c in zip(*(r if isinstance(r, tuple) else (r,) for r in (cpu, float32, bf16))):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * a.abs().max().item())
        assert_close_rows(a.numpy(), c.numpy(), f"{extractor.__name__} bf16")


@pytest.mark.cuda
def test_cuda_batches_spanning_videos_match_videos_alone(videos: Path, cfg, tmp_path: Path) -> None:
    cuda_cfg = replace(cfg, device="cuda")
    backbones = Backbones(cuda_cfg)
    assert backbones.recipe == ACCELERATOR_RECIPE and torch.backends.cudnn.benchmark
    pairs = [(f"v{i}", videos / f"v{i}.mp4") for i in range(4)]
    extract_videos(pairs, tmp_path / "together", cuda_cfg, backbones=backbones, progress=False)
    for key, path in pairs:
        extract_videos([(key, path)], tmp_path / key, cuda_cfg, backbones=backbones, progress=False)
        for kind in KINDS:
            assert_close_rows(rows(tmp_path / key, key)[kind], rows(tmp_path / "together", key)[kind], f"{key} {kind}")


@pytest.mark.cuda
def test_cpu_recipe_is_what_a_cpu_uses() -> None:
    assert SpatialExtractor("random", "cpu").recipe == CPU_RECIPE
    assert SpatialExtractor("random", "cuda").recipe == ACCELERATOR_RECIPE
