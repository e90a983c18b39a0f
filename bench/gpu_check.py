"""One prepared script for a GPU node: is the GPU path correct, and does extraction keep the GPU fed?

Prints one PASS / FAIL / SKIP line per check as it finishes, then a summary; exit code 1 if any check
failed. Made for a node with 16 cores and one H100/H200, CUDA torch installed and no network: everything
runs on random backbone weights (the same compute as the pretrained ones) and on videos it generates.
Missing packages are reported first (install them from carried wheels:
``pip install --no-index --find-links WHEELS -e .``); a check that needs one of them is skipped.

Checks, in order (targets in brackets):
1. ``preflight``: the packages the pipeline needs;
2. ``cuda-tests``: ``pytest -m cuda tests`` (the tests that skip without a GPU: backbones, NSS, views, clips
   converted from uploaded YUV planes);
3. ``parity``: backbone features on CUDA against the CPU: float32 (TF32 off) [relative L2 error per row
   <= 1e-3] and bf16, the CUDA default [cosine per row >= 0.999];
4. ``throughput``: ResNet-50 at 448 and 720 and SlowFast on 32 x 224^2 in whole batches, bf16, in TFLOP/s,
   and the backbones' time per chunk [<= 10 ms: the issue's estimate is 2-4 ms on an H100/H200];
5. ``decode-ceiling``: generated 1080p30 H.264 decoded alone (PyAV, one thread per process, every core);
6. ``end-to-end``: ``extract_videos`` on the same files, decoder processes beside the GPU [>= 0.8x the
   ceiling], and the GPU utilisation sampled meanwhile (reported; decoding bounds it by design);
7. ``fit-score``: a two-phase fit on CUDA on a synthetic store, then scoring on CUDA and on the CPU [the
   scores agree within 1e-3 of the MOS range];
8. ``lsvq-fit``: the default two-phase fit, everything included, on a synthetic store of LSVQ's size
   (28,000 videos x 8 chunks, 7.5 GB of float16 features written first) [<= 30 s].

    python -m bench.gpu_check                         # on the GPU node, about 5 minutes
    python -m bench.gpu_check --device cpu --quick    # tiny sizes: the script's logic on any machine
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
#: import name -> the distribution to install
REQUIRED = {"torchvision": "torchvision", "h5py": "h5py", "scipy": "scipy", "sklearn": "scikit-learn",
            "pandas": "pandas", "joblib": "joblib", "click": "click", "yaml": "PyYAML", "tqdm": "tqdm",
            "matplotlib": "matplotlib", "av": "av", "pytest": "pytest"}
MAX_RELATIVE_ERROR_FLOAT32 = 1e-3
MIN_COSINE_BF16 = 0.999
MAX_CHUNK_MS = 10.0
MIN_FEED_RATIO = 0.8
MAX_LSVQ_FIT_S = 30.0


class Skip(Exception):
    """A check that cannot run here; the message says why."""


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the real ones on a GPU node, tiny ones for ``--quick``."""

    key_frame: tuple[int, int]  # 1080p's key frame (H, W) before the resize to each level
    levels: dict[str, int]
    clip: tuple[int, int]  # frames, size
    batch: int
    parity_items: int
    timed_batches: int
    video: tuple[int, int, int, int]  # width, height, fps, seconds
    sources: int  # distinct generated videos
    keys: int  # videos extracted (the sources, reused under several keys)
    fit_videos: int
    fit_chunks: int
    fit_epochs: int
    lsvq_videos: int  # the default fit at scale: LSVQ's training set is 28,000 videos
    lsvq_epochs: int | None  # None: the default schedule


FULL = Sizes(key_frame=(1080, 1920), levels={"coarse": 448, "fine": 720}, clip=(32, 224), batch=8, parity_items=4,
             timed_batches=10, video=(1920, 1080, 30, 10), sources=4, keys=96, fit_videos=400, fit_chunks=8,
             fit_epochs=5, lsvq_videos=28000, lsvq_epochs=None)
QUICK = Sizes(key_frame=(48, 64), levels={"coarse": 64, "fine": 80}, clip=(8, 32), batch=2, parity_items=2,
              timed_batches=1, video=(64, 48, 24, 2), sources=2, keys=4, fit_videos=40, fit_chunks=2, fit_epochs=1,
              lsvq_videos=64, lsvq_epochs=1)


@dataclass
class Context:
    device: torch.device
    sizes: Sizes
    work: Path
    workers: int
    cuda: bool = False
    ceiling: float | None = None  # chunks/s of decoding alone, from the decode-ceiling check


def main(argv: list[str] | None = None) -> int:
    import argparse  # not click: the script must start, and say what is missing, where click is not installed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script's logic, not a GPU")
    parser.add_argument("--workers", type=int, default=0, help="decoder processes for end-to-end (0: cores - 2)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"FAIL  device        {args.device}: torch {torch.__version__} sees no CUDA device", flush=True)
        return 1
    from pipeline.backbones.device import usable_cpus

    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(device, QUICK if args.quick else FULL, work, args.workers or max(1, usable_cpus() - 2),
                  cuda=device.type == "cuda")
    print(f"gpu_check on {describe_machine(device)}; sizes {'quick' if args.quick else 'full'}; work in {work}",
          flush=True)
    checks: list[tuple[str, Callable[[Context], str]]] = [
        ("preflight", preflight), ("cuda-tests", cuda_tests), ("parity", parity), ("throughput", throughput),
        ("decode-ceiling", decode_ceiling), ("end-to-end", end_to_end), ("fit-score", fit_score),
        ("lsvq-fit", lsvq_fit)]
    results = []
    started = time.perf_counter()
    try:
        for name, check in checks:
            status, detail, began = "PASS", "", time.perf_counter()
            try:
                detail = check(ctx)
            except Skip as skip:
                status, detail = "SKIP", str(skip)
            except AssertionError as failure:
                status, detail = "FAIL", str(failure)
            except Exception as exc:  # noqa: BLE001 - a broken check is a failed check; the others still run
                status, detail = "FAIL", f"{type(exc).__name__}: {exc} ({_where(exc)})"
            results.append(status)
            print(f"{status:5} {name:14} {detail} [{time.perf_counter() - began:.0f} s]", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    counts = {status: results.count(status) for status in ("PASS", "FAIL", "SKIP")}
    print(f"summary: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return 1 if counts["FAIL"] else 0


def describe_machine(device: torch.device) -> str:
    from pipeline.backbones.device import usable_cpus

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used"
    return f"{usable_cpus()} usable cores, {gpu}, torch {torch.__version__}, Python {sys.version.split()[0]}"


def _where(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def need(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise Skip(f"needs {', '.join(REQUIRED.get(m, m) for m in missing)}, not installed")


def need_cuda(ctx: Context) -> None:
    if not ctx.cuda:
        raise Skip(f"needs a CUDA device; running on {ctx.device}")


# -- the checks ----------------------------------------------------------------------------------------------

def preflight(ctx: Context) -> str:
    missing = [dist for name, dist in REQUIRED.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise Skip(f"missing {', '.join(missing)}: the checks needing them are skipped; install with "
                   f"pip install --no-index --find-links WHEELS {' '.join(missing)}")
    return f"every package present; {ctx.workers} decoder processes for end-to-end"


def cuda_tests(ctx: Context) -> str:
    need_cuda(ctx)
    need("pytest", "av", "click")  # tests/conftest.py imports the test-video helpers (PyAV) and the CLI
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-o", "addopts=", "-p", "no:cacheprovider", "tests"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    assert result.returncode == 0 and "failed" not in last, f"{last}\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    return last


def _extractors(ctx: Context, recipe=None) -> tuple:
    from pipeline.backbones import SpatialExtractor, TemporalExtractor

    return (SpatialExtractor("random", ctx.device, recipe=recipe), TemporalExtractor("random", ctx.device, recipe=recipe))


def _inputs(ctx: Context, items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key frames at the coarse level's size (16:9) and clips, in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    side = ctx.sizes.levels["coarse"]
    frames = torch.rand(items, 3, side, round(side * 16 / 9), generator=g)
    frames_n, size = ctx.sizes.clip
    return frames, torch.rand(items, frames_n, 3, size, size, generator=g)


def _row_stats(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """(max relative L2 error, min cosine) per row."""
    a, b = reference.double(), other.double().cpu()
    relative = ((a - b).norm(dim=1) / a.norm(dim=1)).max().item()
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1).min().item()
    return relative, cosine


def parity(ctx: Context) -> str:
    """CPU float32 reference vs the device in float32 (TF32 off) and in its default recipe."""
    need("torchvision")
    from pipeline.backbones.device import Recipe

    frames, clips = _inputs(ctx, ctx.sizes.parity_items)
    cpu = torch.device("cpu")
    reference = [_outputs(e, x) for e, x in zip(_extractors(replace(ctx, device=cpu)), (frames, clips))]
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        exact = Recipe(precision="float32", batched=True, channels_last=ctx.cuda)
        float32 = [_outputs(e, x) for e, x in zip(_extractors(ctx, exact), (frames, clips))]
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    default = [_outputs(e, x) for e, x in zip(_extractors(ctx), (frames, clips))]
    names = ("spatial", "temporal_slow", "temporal_fast")
    flat = [sum(outputs, ()) for outputs in (reference, float32, default)]
    worst_relative = max(_row_stats(r, f)[0] for r, f in zip(flat[0], flat[1]))
    worst_cosine = min(_row_stats(r, d)[1] for r, d in zip(flat[0], flat[2]))
    detail = (f"{', '.join(names)}: float32 max relative error {worst_relative:.1e} (<= {MAX_RELATIVE_ERROR_FLOAT32:g}), "
              f"{ctx.device} default recipe min cosine {worst_cosine:.5f} (>= {MIN_COSINE_BF16})")
    assert worst_relative <= MAX_RELATIVE_ERROR_FLOAT32 and worst_cosine >= MIN_COSINE_BF16, detail
    return detail


def _outputs(extractor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = extractor(x)
    return out if isinstance(out, tuple) else (out,)


def _synchronize(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.synchronize(ctx.device)


def throughput(ctx: Context) -> str:
    """Whole batches in the device's recipe; FLOPs counted by torch's FlopCounterMode on one item."""
    need("torchvision")
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.backbones.device import inference

    spatial, temporal = _extractors(ctx)
    batch, (frames_n, size) = ctx.sizes.batch, ctx.sizes.clip
    height, width = ctx.sizes.key_frame
    workloads = {f"resnet50 {side}": (spatial, (3, side, round(width * side / height)))
                 for side in ctx.sizes.levels.values()}
    workloads["slowfast"] = (temporal, (3, frames_n, size, size))
    parts, chunk_s = [], 0.0
    for name, (extractor, shape) in workloads.items():
        x = torch.rand(batch, *shape, device=ctx.device)
        if extractor.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
        with inference(ctx.device, extractor.recipe), FlopCounterMode(display=False) as counter:
            extractor.model(x[:1])
        flops = counter.get_total_flops()
        seconds = []
        with inference(ctx.device, extractor.recipe):
            for step in range(2 + ctx.sizes.timed_batches):  # two warm-ups: cuDNN's autotuner, allocations
                _synchronize(ctx)
                began = time.perf_counter()
                extractor.model(x)
                _synchronize(ctx)
                seconds.append(time.perf_counter() - began)
        per_item = float(np.median(seconds[2:])) / batch
        chunk_s += per_item
        parts.append(f"{name}: {flops / 2e9:.0f} GMAC, {flops / per_item / 1e12:.1f} TFLOP/s")
    detail = (f"{'; '.join(parts)} (batch {batch}, {spatial.recipe.precision}); backbones per chunk "
              f"{chunk_s * 1e3:.1f} ms = {1 / chunk_s:.0f} chunks/s")
    if ctx.cuda:
        assert chunk_s * 1e3 <= MAX_CHUNK_MS, f"{detail}: over the {MAX_CHUNK_MS:g} ms target"
        return detail
    return detail + " (no target on a CPU)"


def _sources(ctx: Context) -> list[Path]:
    """Generate the test videos once (tests/videos.py's moving pattern, H.264 veryfast; one encoder per process)."""
    need("av")
    width, height, fps, seconds = ctx.sizes.video
    paths = [ctx.work / f"src{i}_{width}x{height}p{fps}.mp4" for i in range(ctx.sizes.sources)]
    todo = [(p, i) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        with mp.get_context("spawn").Pool(min(len(todo), os.cpu_count() or 1)) as pool:
            pool.starmap(_write_video, [(p, i, ctx.sizes.video) for p, i in todo])
    return paths


def _write_video(path: Path, seed: int, video: tuple[int, int, int, int]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from videos import make_video

    width, height, fps, seconds = video
    make_video(path, width=width, height=height, frames=fps * seconds, fps=fps, seed=seed,
               options={"preset": "veryfast"})


def _decode_alone(path: str) -> int:
    """Decode every frame of ``path`` on one thread, converting nothing; return the frame count."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def decode_ceiling(ctx: Context) -> str:
    """Chunks/s of decoding alone with every usable core busy: what a CPU-fed GPU cannot exceed."""
    from pipeline.backbones.device import usable_cpus

    paths = [str(p) for p in _sources(ctx)]
    files = [paths[i % len(paths)] for i in range(ctx.sizes.keys)]
    began = time.perf_counter()
    fps = ctx.sizes.video[2]
    with mp.get_context("spawn").Pool(usable_cpus()) as pool:
        chunks = sum(frames // fps for frames in pool.map(_decode_alone, files, chunksize=1))
    # The pool's start-up (spawned interpreters) is in the wall time: a conservative ceiling.
    ctx.ceiling = chunks / (time.perf_counter() - began)
    width, height, fps, _ = ctx.sizes.video
    return f"{ctx.ceiling:.1f} chunks/s ({chunks} chunks of {width}x{height}p{fps} on {usable_cpus()} processes)"


class Utilisation:
    """GPU utilisation sampled every 0.2 s in a thread (NVML through torch, else nvidia-smi)."""

    def __init__(self, device: torch.device):
        self.device, self.samples = device, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # noqa: BLE001 - no pynvml: ask nvidia-smi
                index = self.device.index or 0
                out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True)
                if out.returncode == 0 and out.stdout.strip():
                    self.samples.append(float(out.stdout.split()[0]))

    def summary(self) -> str:
        if not self.samples:
            return "GPU utilisation not sampled (neither pynvml nor nvidia-smi answered)"
        return f"GPU utilisation mean {np.mean(self.samples):.0f} % (median {np.median(self.samples):.0f} %)"


def _extract_config(ctx: Context):
    """The shipped config's extraction settings at these sizes, on the device, with random weights."""
    from pipeline.config import load_config

    frames, size = ctx.sizes.clip
    overrides = [f"extract.device={ctx.device}", "extract.weights=random", f"extract.workers={ctx.workers}",
                 f"extract.batch_size={ctx.sizes.batch}", f"extract.clip.frames={frames}", f"extract.clip.size={size}",
                 *(f"extract.levels.{name}.short_side={side}" for name, side in ctx.sizes.levels.items())]
    return load_config(ROOT / "config" / "kwai_simpleVQA.yml", overrides).extract


def end_to_end(ctx: Context) -> str:
    """``extract_videos`` over the generated files (models built before the clock; decoder start-up inside)."""
    need("av", "click", "yaml", "tqdm")
    from pipeline.backbones import Backbones
    from pipeline.extract.run import extract_videos
    from pipeline.store import FeatureStore

    paths = _sources(ctx)
    pairs = [(f"v{i:04d}.mp4", paths[i % len(paths)]) for i in range(ctx.sizes.keys)]
    cfg = _extract_config(ctx)
    backbones = Backbones(cfg)
    store = ctx.work / "store"
    shutil.rmtree(store, ignore_errors=True)
    utilisation = Utilisation(ctx.device) if ctx.cuda else None
    began = time.perf_counter()
    if utilisation:
        with utilisation:
            summary = extract_videos(pairs, store, cfg, backbones=backbones, progress=False)
    else:
        summary = extract_videos(pairs, store, cfg, backbones=backbones, progress=False)
    seconds = time.perf_counter() - began
    assert not summary.failed, f"videos failed: {dict(list(summary.failed.items())[:3])}"
    chunks = len(FeatureStore.open(store).read(("temporal_fast",)).features["temporal_fast"])
    rate = chunks / seconds
    detail = f"{rate:.1f} chunks/s ({chunks} chunks, {ctx.workers} decoder processes, NSS {'on' if cfg.nss else 'off'})"
    if ctx.ceiling:
        detail += f" = {rate / ctx.ceiling:.2f}x the decode ceiling (>= {MIN_FEED_RATIO})"
    detail += "; " + (utilisation.summary() if utilisation else "GPU utilisation: no GPU")
    if ctx.cuda:
        assert ctx.ceiling and rate >= MIN_FEED_RATIO * ctx.ceiling, detail
    return detail


def fit_score(ctx: Context) -> str:
    """Two-phase fit on the device, then scores on the device and on the CPU from the same store."""
    need("click", "yaml", "tqdm", "sklearn", "matplotlib")
    from pipeline.fit.run import fit
    from pipeline.scoring import Scorer
    from pipeline.store import FeatureStore

    root = ctx.work / "fit"
    overrides = (*_synthetic_fit(ctx, root, ctx.sizes.fit_videos), f"num_epochs={ctx.sizes.fit_epochs}")
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the fit's own report; this check prints one line
        metrics = fit(ROOT / "config" / "kwai_simpleVQA.yml", overrides=overrides, out=root / "run")
    fit_s = time.perf_counter() - began
    model = root / "run" / "best_model.pth"
    scores = {}
    for device in (str(ctx.device), "cpu"):
        scorer = Scorer.load(model, device=device, store=root / "store")
        table = FeatureStore.open(root / "store").read(scorer.kinds)
        scores[device] = scorer.score_table(table).score
    here, cpu = np.asarray(scores[str(ctx.device)]), np.asarray(scores["cpu"])
    mos = np.ptp(here) or 1.0
    gap = float(np.abs(here - cpu).max())
    srocc = metrics["fine"]["val"]["srocc"] if "fine" in metrics else metrics["coarse"]["val"]["srocc"]
    detail = (f"fit {fit_s:.1f} s on {ctx.device} ({ctx.sizes.fit_videos} videos x {ctx.sizes.fit_chunks} chunks, "
              f"{ctx.sizes.fit_epochs} epochs a phase, val SROCC {srocc:.2f} on random labels); scores "
              f"{ctx.device} vs cpu max difference {gap:.1e} (<= 1e-3 of the range {mos:.2f})")
    assert np.isfinite(here).all() and gap <= 1e-3 * mos, detail
    return detail



def lsvq_fit(ctx: Context) -> str:
    """The default two-phase fit on the device at LSVQ's size, store read and every output included."""
    need("click", "yaml", "tqdm", "sklearn", "matplotlib")
    from pipeline.fit.run import fit

    root = ctx.work / "lsvq"
    epochs = ctx.sizes.lsvq_epochs
    overrides = (*_synthetic_fit(ctx, root, ctx.sizes.lsvq_videos), *([f"num_epochs={epochs}"] if epochs else []))
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        fit(ROOT / "config" / "kwai_simpleVQA.yml", overrides=overrides, out=root / "run")
    seconds = time.perf_counter() - began
    shutil.rmtree(root, ignore_errors=True)  # gigabytes at full size
    detail = (f"default two-phase fit of {ctx.sizes.lsvq_videos} videos x {ctx.sizes.fit_chunks} chunks on "
              f"{ctx.device}: {seconds:.1f} s (<= {MAX_LSVQ_FIT_S:.0f} s)")
    if ctx.cuda:
        assert seconds <= MAX_LSVQ_FIT_S, detail
    return detail


def _synthetic_fit(ctx: Context, root: Path, videos: int) -> tuple[str, ...]:
    """Overrides that fit the default config on the device from a synthetic store of ``videos`` (written first)."""
    from bench.fit import generate

    csv = generate(root, videos, ctx.sizes.fit_chunks)
    return (f"data.train_csv={csv}", f"data.video_root={root}", f"data.store={root / 'store'}",
            "data.group_column=source", "features.nss=false", f"device={ctx.device}")


if __name__ == "__main__":
    sys.exit(main())
