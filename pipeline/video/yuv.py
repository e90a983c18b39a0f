"""The clip view computed from a decoder's 8-bit 4:2:0 YUV planes with torch, on whatever device holds them.

This is the same definition as the CPU's swscale call (:data:`pipeline.video.frames.CLIP_FLAGS`), written
out so that an accelerator can compute it from uploaded planes and the CPU only decodes
(docs/design.md, "Feature definitions"):

1. each plane is area-averaged to the clip size: an output pixel is the mean of the source pixels its
   footprint covers, partly covered pixels weighted by the part covered (swscale's ``AREA`` filter);
   chroma sits as FFmpeg assumes by default for 4:2:0: on the luma column of its left pair (MPEG-2) and
   between its two luma rows, so in the chroma plane's own pixels an output footprint lies a quarter
   pixel further right than the plain centre-aligned one;
2. every output pixel gets its own chroma (swscale's ``FULL_CHR_H_INT``), converted to RGB with the
   frame's colour matrix in the range its pixel format implies (``yuvj``: full, else limited), rounded
   to the nearest integer and clamped (``ACCURATE_RND``).

Only shrinking is defined here: frames whose chroma plane is smaller than the clip stay on the swscale
path (small frames cost little to convert there), as do codecs whose chroma may sit elsewhere
(:data:`LEFT_SITED_CODECS`). The two agree within rounding (tests/test_yuv.py holds them to it: at most
one grey level, a few hundredths on average).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ArrayError
from .views import displayed

#: Pixel formats whose frames the device path converts: 8-bit 4:2:0, limited range (yuv420p) or full (yuvj420p).
DEVICE_PIX_FMTS = ("yuv420p", "yuvj420p")
#: Codecs whose 4:2:0 chroma FFmpeg sites left unless the stream says otherwise (which few do): the siting the
#: device path assumes. Others (VP8/9, AV1, MJPEG: centred or signalled) keep the swscale path, since PyAV
#: does not say where a frame's chroma sits.
LEFT_SITED_CODECS = ("h264", "hevc", "mpeg2video", "mpeg4")

# Luma weights (Kr, Kb) by AVColorSpace number, as swscale's coefficient table has them
# (libswscale/yuv2rgb.c, ff_yuv2rgb_coeffs): 0-1 BT.709, 4 FCC, 7 SMPTE 240M, 9-10 BT.2020; the rest
# (unspecified, BT.470BG, SMPTE 170M, and any number it does not know) BT.601.
_BT601 = (0.299, 0.114)
_LUMA_WEIGHTS = {0: (0.2126, 0.0722), 1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087),
                 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


@dataclass
class YUVClip:
    """A clip's frames as decoded: uint8 planes (T, H, W) luma and (T, ceil(H/2), ceil(W/2)) chroma in stored
    orientation, how to read them as colour (the frames' AVColorSpace number, full range or not), and the
    clockwise rotation that displays them."""

    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    colorspace: int
    full_range: bool
    rotation: int = 0

    @property
    def planes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.y, self.u, self.v

    def to(self, device: torch.device, non_blocking: bool = False) -> YUVClip:
        y, u, v = (p.to(device, non_blocking=non_blocking) for p in self.planes)
        return YUVClip(y, u, v, self.colorspace, self.full_range, self.rotation)


#: Where a clip's planes and its chunk's key frame are written: (frames, luma (rows, columns), chroma (rows,
#: columns), key frame (3, rows, columns)) -> uint8 tensors Y (frames, *luma), U and V (frames, *chroma) and the
#: key frame (a :func:`key_frame_view`), or None when there is no room (the clip is then converted on the CPU). A
#: decoder process hands out shared memory (plane_ring), so that neither crosses a pipe.
PlaneBuffers = Callable[[int, tuple[int, int], tuple[int, int], tuple[int, int, int]],
                        tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None]


def key_frame_view(memory: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """A (3, rows, columns) key frame laid out in flat uint8 ``memory`` channels last, as decoders deliver frames:
    a key frame is copied in, and read by the levels' resizes, with no transposition."""
    channels, rows, columns = shape
    return memory.view(rows, columns, channels).permute(2, 0, 1)


def new_planes(frames: int, luma: tuple[int, int], chroma: tuple[int, int],
               key: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
    """Fresh planes and key frame in this process's memory (the default :data:`PlaneBuffers`)."""
    y, u, v = (torch.empty(shape, dtype=torch.uint8) for shape in ((frames, *luma), (frames, *chroma), (frames, *chroma)))
    return y, u, v, key_frame_view(torch.empty(math.prod(key), dtype=torch.uint8), key)


def stack_planes(frames: Sequence[Sequence[np.ndarray]], colour: tuple[int, bool], rotation: int,
                 key_frame: torch.Tensor, buffers: PlaneBuffers = new_planes) -> tuple[YUVClip, torch.Tensor] | None:
    """A :class:`YUVClip` of frames given as (Y, U, V) arrays of one shape, and the chunk's (3, H, W) key frame
    beside it: one copy of each, into ``buffers`` (None when they have no room)."""
    given = buffers(len(frames), frames[0][0].shape, frames[0][1].shape, tuple(key_frame.shape))
    if given is None:
        return None
    y, u, v, key = given
    for t, planes in enumerate(frames):
        for out, plane in zip((y, u, v), planes):
            np.copyto(out[t].numpy(), plane)
    key.copy_(key_frame)
    return YUVClip(y, u, v, *colour, rotation), key


def converts_on_device(codec: str, pix_fmt: str, width: int, height: int, size: int) -> bool:
    """True when frames of this codec, format and stored size take the device path to a ``size`` x ``size`` clip."""
    return (codec in LEFT_SITED_CODECS and pix_fmt in DEVICE_PIX_FMTS
            and min((width + 1) // 2, (height + 1) // 2) >= size)


@functools.lru_cache(maxsize=64)
def _area_taps(source: int, target: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights), both (target, taps): the source pixels each output pixel averages, and their shares.

    Output pixel i covers [i * s + shift, (i + 1) * s + shift) of the source (s = source / target >= 1), in
    units of source pixels from the left edge; a footprint reaching past an edge counts the edge pixel for
    the part outside, as swscale does.
    """
    scale = source / target
    low = np.arange(target) * scale + shift
    high = low + scale
    first = np.clip(np.floor(low).astype(np.int64), 0, source - 1)
    taps = int(np.ceil(scale)) + 2
    index = np.minimum(first[:, None] + np.arange(taps)[None], source - 1)
    left = np.arange(taps)[None] + first[:, None]
    covered = np.clip(np.minimum(high[:, None], left + 1) - np.maximum(low[:, None], left), 0, None)
    covered[left >= source] = 0  # clamped repeats of the last pixel
    covered += np.where(left == 0, np.clip(-low, 0, None)[:, None], 0)  # past the left edge: the first pixel
    covered += np.where(left == source - 1, np.clip(high - source, 0, None)[:, None], 0)  # past the right: the last
    weights = covered / covered.sum(axis=1, keepdims=True)
    return torch.from_numpy(index), torch.from_numpy(weights.astype(np.float32))


def _resize_axis(planes: torch.Tensor, target: int, dim: int, shift: float) -> torch.Tensor:
    """Area-average float ``planes`` along ``dim`` to ``target``: one gather-multiply-add per tap, so nothing of
    the taps' size is materialised (memory traffic is what this costs, on any device)."""
    index, weights = (t.to(planes.device) for t in _area_taps(planes.shape[dim], target, shift))
    view = [1] * planes.dim()
    view[dim] = target
    out = planes.index_select(dim, index[:, 0]).mul_(weights[:, 0].reshape(view))
    for tap in range(1, index.shape[1]):
        out.add_(planes.index_select(dim, index[:, tap]).mul_(weights[:, tap].reshape(view)))
    return out


def area_resize(planes: torch.Tensor, size: int, chroma: bool = False) -> torch.Tensor:
    """float32 (T, size, size) area averages of uint8 or float (T, H, W) planes (H, W >= size)."""
    if planes.shape[-1] < size or planes.shape[-2] < size:
        raise ArrayError(f"area_resize only shrinks: planes of {tuple(planes.shape[-2:])} to {size}x{size}")
    planes = planes.float()
    rows = _resize_axis(planes, size, dim=1, shift=0.0)
    return _resize_axis(rows, size, dim=2, shift=0.25 if chroma else 0.0)


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, colorspace: int, full_range: bool) -> torch.Tensor:
    """uint8 (T, 3, H, W) RGB of float (T, H, W) Y, Cb, Cr of the same size: the matrix of ``colorspace``, rounded."""
    kr, kb = _LUMA_WEIGHTS.get(colorspace, _BT601)
    kg = 1 - kr - kb
    if full_range:
        luma, cb, cr = y, u - 128, v - 128
    else:
        luma, cb, cr = (y - 16) * (255 / 219), (u - 128) * (255 / 224), (v - 128) * (255 / 224)
    red = luma + 2 * (1 - kr) * cr
    green = luma - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    blue = luma + 2 * (1 - kb) * cb
    return torch.stack([red, green, blue], dim=1).round_().clamp_(0, 255).to(torch.uint8)


def clip_from_yuv(clip: YUVClip, size: int) -> torch.Tensor:
    """uint8 (T, 3, size, size) RGB clip frames of a :class:`YUVClip`, display-oriented, computed where its planes are."""
    y = area_resize(clip.y, size)
    u, v = (area_resize(p, size, chroma=True) for p in (clip.u, clip.v))
    return displayed(yuv_to_rgb(y, u, v, clip.colorspace, clip.full_range), clip.rotation)
