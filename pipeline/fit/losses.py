"""Training losses on standardised MOS: MSE for the scale, a pairwise hinge for the order."""

from __future__ import annotations

import torch


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``(B,)`` predictions and targets."""
    return torch.mean((pred - target) ** 2)


def rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over pairs with ``y_i != y_j`` of ``max(0, margin - (p_i - p_j) * sign(y_i - y_j))``.

    Zero once every such pair is ordered like its targets by at least ``margin``; zero (with a graph) when
    the batch has no such pair. Both orders of a pair give the same term, so the mean over ordered pairs
    equals the mean over unordered ones.
    """
    order = torch.sign(target[:, None] - target[None, :])  # (B, B)
    pairs = order != 0
    if not pairs.any():
        return pred.sum() * 0.0
    hinge = torch.relu(margin - (pred[:, None] - pred[None, :]) * order)  # (B, B)
    return hinge[pairs].mean()
