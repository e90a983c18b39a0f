"""Write synthetic test patterns, content no VQA training set holds, for checking that the domain check flags it.

    python -m bench.patterns --out /tmp/patterns       # 6 clips of 2 s, 480x270, 25 fps, H.264
    python score.py --model RUN/best_model.pth --videos /tmp/patterns --out /tmp/patterns.csv

Each pattern is a classic of broadcast test signals or a degenerate input a catalogue does hold (a black or
flat grey clip, pure noise): ``bars`` (colour bars), ``gradient`` (a moving ramp), ``checker`` (a scrolling
checkerboard), ``grey`` (flat mid grey), ``black``, ``noise`` (uniform random pixels, new each frame).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from bench.videos import write_h264

WIDTH, HEIGHT, FPS, SECONDS = 480, 270, 25, 2
_BARS = np.array([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0),
                  (0, 0, 192)], dtype=np.uint8)


def pattern(name: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Frame ``k`` (RGB uint8, ``HEIGHT x WIDTH x 3``) of the pattern ``name``."""
    x = np.arange(WIDTH)[None, :]
    y = np.arange(HEIGHT)[:, None]
    if name == "bars":
        return np.broadcast_to(_BARS[x[0] * len(_BARS) // WIDTH][None], (HEIGHT, WIDTH, 3)).copy()
    if name == "gradient":
        ramp = ((x + 4 * k) % WIDTH) * 255 // WIDTH
        return np.repeat(np.broadcast_to(ramp, (HEIGHT, WIDTH))[..., None], 3, axis=2).astype(np.uint8)
    if name == "checker":
        cells = (((x + 3 * k) // 30 + y // 30) % 2) * 255
        return np.repeat(cells[..., None], 3, axis=2).astype(np.uint8)
    if name == "grey":
        return np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    if name == "black":
        return np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    if name == "noise":
        return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    raise ValueError(f"unknown pattern {name!r}")


PATTERNS = ("bars", "gradient", "checker", "grey", "black", "noise")


def write(path: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    frames = (av.VideoFrame.from_ndarray(pattern(name, k, rng), format="rgb24") for k in range(FPS * SECONDS))
    write_h264(path, frames, FPS, WIDTH, HEIGHT, {"crf": "18", "threads": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in PATTERNS:
        write(args.out / f"{name}.mp4", name)
    print(f"{len(PATTERNS)} patterns in {args.out}")


if __name__ == "__main__":
    main()
