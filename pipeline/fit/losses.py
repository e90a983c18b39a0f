"""Training losses on standardised MOS, one per cross-fitted member: MSE for the scale, a pairwise hinge for the
order. Each member sees only its own videos of a batch (``trains``), so members trained together learn exactly
what members trained apart on their folds would."""

from __future__ import annotations

import torch


def mse_losses(pred: torch.Tensor, target: torch.Tensor, trains: torch.Tensor) -> torch.Tensor:
    """Per member ``(K,)``: mean squared error of predictions ``(B, K)`` against targets ``(B,)`` over the videos
    ``trains`` ``(B, K)`` marks for that member (0 for a member with none in the batch)."""
    weights = trains.to(pred.dtype)
    return (weights * (pred - target[:, None]) ** 2).sum(0) / weights.sum(0).clamp_min(1)


def rank_losses(pred: torch.Tensor, target: torch.Tensor, trains: torch.Tensor, margin: float) -> torch.Tensor:
    """Per member ``(K,)``: mean over its pairs with ``y_i != y_j`` of ``max(0, margin - (p_i - p_j) * sign(y_i - y_j))``.

    Zero once every such pair is ordered like its targets by at least ``margin``, and for a member without
    such a pair in the batch. Both orders of a pair give the same term, so the mean over ordered pairs equals
    the mean over unordered ones.
    """
    order = torch.sign(target[:, None] - target[None, :])  # (B, B)
    pairs = ((order != 0)[..., None] & trains[:, None, :] & trains[None, :, :]).to(pred.dtype)  # (B, B, K)
    hinge = torch.relu(margin - (pred[:, None, :] - pred[None, :, :]) * order[..., None])  # (B, B, K)
    return (hinge * pairs).sum((0, 1)) / pairs.sum((0, 1)).clamp_min(1)
