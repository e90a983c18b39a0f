"""The tensor views a chunk is made of: display-oriented frames and the key frame's short-side resizes.

(The square clip frames come straight from the decoder's pixels, ``frames``.) Resizes here are
bilinear with antialiasing (as PIL does it), so downscaling averages pixels instead of skipping
them, and work on any device: on a GPU the work stays there. Their result is always rounded to
uint8 (the levels' inputs are 8-bit images, whatever resized them): on the CPU they run in uint8,
PyTorch's vectorised path, several times faster than float there; elsewhere in float, rounded back. The two
agree within one grey level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArrayError


def display_frame(rgb: np.ndarray, rotation: int, device: torch.device) -> torch.Tensor:
    """Return a decoded (H, W, 3) RGB uint8 frame as a (3, H', W') uint8 tensor on ``device``, rotated for display.

    ``rotation`` is the clockwise rotation in degrees (0, 90, 180, 270). The result keeps the
    channels-last memory of the decoder's array (no copy on the CPU unless rotated).
    """
    return displayed(torch.from_numpy(rgb).to(device).permute(2, 0, 1), rotation)


def displayed(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """``frames`` (..., H, W) in stored orientation, turned ``rotation`` degrees clockwise (0, 90, 180, 270)."""
    return torch.rot90(frames, k=-(rotation // 90), dims=(-2, -1)) if rotation else frames


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize uint8 (N, 3, H, W) frames to uint8 (N, 3, height, width), antialiased, aspect not kept.

    Frames already of that size come back as they are (the filter is the identity there), so a level equal
    to the key frame's size costs nothing.
    """
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    if frames.device.type == "cpu":
        return F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    resized = F.interpolate(frames.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def resize_short_side(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """Return float32 (N, 3, h, w) frames in [0, 1] whose short side is ``short_side``, aspect kept, antialiased.

    ``frames`` is uint8 (0-255, resized as uint8, see above) or float (already 0-1) (N, 3, H, W) on any device.
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ArrayError(f"frames must be (N, 3, H, W), got shape {tuple(frames.shape)}")
    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    h, w = frames.shape[-2:]
    if h <= w:
        size = (short_side, max(1, round(w * short_side / h)))
    else:
        size = (max(1, round(h * short_side / w)), short_side)
    if frames.dtype == torch.uint8:
        return resize_frames(frames, *size).float().div_(255)
    return F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
