"""SlowFast-R50 (Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019), 8x8 setting.

Two pathways see the same clip: the slow one 1/alpha of the frames with many channels (semantics), the fast
one every frame with 1/beta of the channels (motion). After the stem and after each of res2..res4, a lateral
connection fuses fast into slow. Module and parameter names are those of pytorchvideo's ``create_slowfast``
(``blocks.<i>.multipathway_blocks.<pathway>...``), so the official Kinetics-400 checkpoint
``SLOWFAST_8x8_R50`` loads with ``strict=True``; class names follow the paper.

    slow frames ─ stem ─┬─ res2 ─┬─ res3 ─┬─ res4 ─┬─ res5 ─ pool ─ 2048 ┐
                        ↑ fuse   ↑ fuse   ↑ fuse   ↑ fuse                  ├─ proj ─ 400 Kinetics classes
    fast frames ─ stem ─┴─ res2 ─┴─ res3 ─┴─ res4 ─┴─ res5 ─ pool ─  256 ┘
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALPHA = 4  # the fast pathway sees alpha times the frames of the slow one
BETA_INV = 8  # the slow pathway has 8 times the channels of the fast one
FUSION_CHANNEL_RATIO = 2  # a lateral connection carries 2x the fast pathway's channels into the slow one
FUSION_KERNEL = 7  # temporal kernel of the lateral convolution (5 for R101)
STAGE_DEPTHS = (3, 4, 6, 3)  # residual blocks in res2..res5 for depth 50
SLOW_DIM = 2048
FAST_DIM = SLOW_DIM // BETA_INV  # 256
NUM_CLASSES = 400  # Kinetics-400
KINETICS_MEAN = 0.45  # the checkpoint's input normalisation, the same for every channel
KINETICS_STD = 0.225

Pathways = tuple[torch.Tensor, torch.Tensor]  # (slow, fast), each (N, C, T, H, W)


def split_pathways(clips: torch.Tensor) -> Pathways:
    """(N, C, T, H, W) -> (slow, fast): fast is every frame, slow ``T // ALPHA`` evenly spaced ones.

    The spacing is pytorchvideo's and PySlowFast's (``linspace(0, T - 1, T // alpha)``, truncated), the
    sampling the checkpoint was trained with.
    """
    frames = clips.shape[2]
    # Computed on the CPU, as upstream does; a non-blocking copy, since a blocking one would stall the device.
    index = torch.linspace(0, frames - 1, frames // ALPHA).long().to(clips.device, non_blocking=True)
    return clips.index_select(2, index), clips


class Stem(nn.Module):
    """conv1 + pool1 of one pathway: a (t, 7, 7) convolution with spatial stride 2, BN, ReLU, 3x3 max-pool."""

    def __init__(self, out_channels: int, temporal_kernel: int):
        super().__init__()
        kernel, padding = (temporal_kernel, 7, 7), (temporal_kernel // 2, 3, 3)
        self.conv = nn.Conv3d(3, out_channels, kernel, stride=(1, 2, 2), padding=padding, bias=False)
        self.norm = nn.BatchNorm3d(out_channels)
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class Bottleneck(nn.Module):
    """(t, 1, 1) conv_a -> (1, 3, 3) conv_b (carries the spatial stride) -> (1, 1, 1) conv_c, each with BN."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, spatial_stride: int):
        super().__init__()
        temporal, stride = (temporal_kernel, 1, 1), (1, spatial_stride, spatial_stride)
        self.conv_a = nn.Conv3d(dim_in, dim_inner, temporal, padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=stride, padding=(0, 1, 1), bias=False)
        self.norm_b = nn.BatchNorm3d(dim_inner)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = F.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Bottleneck (``branch2``) plus shortcut (``branch1``, projected when the shape changes), then ReLU."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, spatial_stride: int):
        super().__init__()
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, temporal_kernel, spatial_stride)
        projected = dim_in != dim_out or spatial_stride != 1
        stride = (1, spatial_stride, spatial_stride)
        self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride, bias=False) if projected else None
        self.branch1_norm = nn.BatchNorm3d(dim_out) if projected else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return F.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """res2..res5 of one pathway: ``depth`` residual blocks, the first one changing width and stride."""

    def __init__(self, depth: int, dim_in: int, dim_out: int, temporal_kernel: int, spatial_stride: int):
        super().__init__()
        dim_inner = dim_out // 4
        first = ResBlock(dim_in, dim_inner, dim_out, temporal_kernel, spatial_stride)
        rest = (ResBlock(dim_out, dim_inner, dim_out, temporal_kernel, 1) for _ in range(depth - 1))
        self.res_blocks = nn.ModuleList([first, *rest])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FuseFastToSlow(nn.Module):
    """Lateral connection: a (7, 1, 1) conv with temporal stride alpha brings fast features to the slow frame
    rate; BN and ReLU, then they are concatenated to the slow pathway's channels."""

    def __init__(self, fast_dim: int):
        super().__init__()
        fused = fast_dim * FUSION_CHANNEL_RATIO
        self.conv_fast_to_slow = nn.Conv3d(
            fast_dim, fused, (FUSION_KERNEL, 1, 1), (ALPHA, 1, 1), (FUSION_KERNEL // 2, 0, 0), bias=False
        )
        self.norm = nn.BatchNorm3d(fused)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> Pathways:
        lateral = F.relu(self.norm(self.conv_fast_to_slow(fast)))
        return torch.cat([slow, lateral], dim=1), fast


class SlowFastStage(nn.Module):
    """One stage of both pathways (``multipathway_blocks`` = [slow, fast]), then the fast-to-slow fusion if any."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FuseFastToSlow | None):
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: Pathways) -> Pathways:
        slow_block, fast_block = self.multipathway_blocks
        slow, fast = slow_block(x[0]), fast_block(x[1])
        return (slow, fast) if self.multipathway_fusion is None else self.multipathway_fusion(slow, fast)


class GlobalPool(nn.Module):
    """Average each pathway over time and space: (slow (N, 2048), fast (N, 256)) at any clip size, in float32.

    Under bf16 autocast the activations are bf16 (8 bits of mantissa); a mean of 8 x 7 x 7 of them summed in
    bf16 loses most of them, so the sum runs in float32, as the spatial statistics do.
    """

    def forward(self, x: Pathways) -> Pathways:
        return x[0].float().mean(dim=(2, 3, 4)), x[1].float().mean(dim=(2, 3, 4))


class Classifier(nn.Module):
    """The Kinetics-400 projection of the pooled, concatenated pathways (upstream's ``ResNetBasicHead.proj``).

    Features are taken before it; it is part of the model so the checkpoint loads with ``strict=True``.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, x: Pathways) -> torch.Tensor:
        return self.proj(torch.cat(x, dim=1))


class SlowFast(nn.Module):
    """SlowFast-R50: clips (N, 3, T, H, W) in [0, 1] -> pooled pathway features (slow (N, 2048), fast (N, 256))."""

    def __init__(self) -> None:
        super().__init__()
        slow_dim, fast_dim = 64, 64 // BETA_INV
        stages = [SlowFastStage(Stem(slow_dim, 1), Stem(fast_dim, 5), FuseFastToSlow(fast_dim))]
        for i, depth in enumerate(STAGE_DEPTHS):
            slow_in, fast_in = slow_dim + fast_dim * FUSION_CHANNEL_RATIO, fast_dim  # slow input carries the fusion
            slow_dim, fast_dim = 256 * 2**i, 256 * 2**i // BETA_INV
            slow_temporal_kernel = 1 if i < 2 else 3  # the slow pathway has temporal convs only in res4, res5
            spatial_stride = 1 if i == 0 else 2
            fusion = FuseFastToSlow(fast_dim) if i < len(STAGE_DEPTHS) - 1 else None
            stages.append(
                SlowFastStage(
                    ResStage(depth, slow_in, slow_dim, slow_temporal_kernel, spatial_stride),
                    ResStage(depth, fast_in, fast_dim, 3, spatial_stride),
                    fusion,
                )
            )
        # blocks: 0 stem, 1..4 res2..res5, 5 pool, 6 head; the indices are the checkpoint's.
        self.blocks = nn.ModuleList([*stages, GlobalPool(), Classifier(SLOW_DIM + FAST_DIM, NUM_CLASSES)])
        self.apply(_init_weights)

    def forward(self, clips: torch.Tensor) -> Pathways:
        stem, res2, res3, res4, res5, pool, _classifier = self.blocks
        x = split_pathways((clips - KINETICS_MEAN) / KINETICS_STD)
        x = stem(x)
        x = res2(x)
        x = res3(x)
        x = res4(x)
        x = res5(x)
        return pool(x)


def _init_weights(module: nn.Module) -> None:
    """He init for convolutions, identity BN, small classifier: what ``weights="random"`` means here."""
    if isinstance(module, nn.Conv3d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.01)
        nn.init.zeros_(module.bias)
