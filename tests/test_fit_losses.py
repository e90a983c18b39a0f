import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.fit.losses import mse_loss, rank_loss
from pipeline.fit.model import ChunkRegressor


def brute_force_rank(pred: list[float], target: list[float], margin: float) -> float:
    terms = [
        max(0.0, margin - (pred[i] - pred[j]) * (1 if target[i] > target[j] else -1))
        for i, j in itertools.combinations(range(len(pred)), 2)
        if target[i] != target[j]
    ]
    return sum(terms) / len(terms) if terms else 0.0


values = st.floats(-3, 3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(values, st.sampled_from([1.0, 2.0, 2.5, 4.0])), min_size=1, max_size=9),
    margin=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_rank_loss_matches_a_loop_over_pairs(data, margin):
    pred, target = map(list, zip(*data))
    got = rank_loss(torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64), margin)
    assert got.item() == pytest.approx(brute_force_rank(pred, target, margin), abs=1e-9)


def test_rank_loss_is_zero_when_ordered_by_the_margin_and_positive_otherwise():
    target = torch.tensor([1.0, 2.0, 3.0, 3.0])
    assert rank_loss(torch.tensor([0.0, 0.2, 0.4, 0.9]), target, margin=0.2).item() == 0.0
    assert rank_loss(torch.tensor([0.0, 0.1, 0.4, 0.9]), target, margin=0.2).item() > 0.0  # one pair too close
    assert rank_loss(torch.tensor([0.4, 0.2, 0.0, 0.0]), target, margin=0.0).item() > 0.0  # reversed


def test_rank_loss_without_pairs_is_zero_and_keeps_the_graph():
    pred = torch.tensor([0.3, -0.1], requires_grad=True)
    loss = rank_loss(pred, torch.tensor([2.0, 2.0]), margin=0.1)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_mse_loss():
    assert mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(2.5)


@pytest.mark.parametrize("term", ["mse", "rank"])
def test_each_loss_term_moves_every_weight(term):
    """Every weight matrix moves (and the output bias for MSE; a shift of all scores cannot change a ranking)."""
    torch.manual_seed(0)
    model = ChunkRegressor(6, [5], "gelu", dropout=0.0)
    x, mask = torch.randn(8, 3, 6), torch.ones(8, 3, dtype=torch.bool)
    target = torch.linspace(-1, 1, 8)
    moving = {k: v for k, v in model.named_parameters() if term == "mse" or k != "head.bias"}
    before = {k: v.clone() for k, v in moving.items()}

    def loss() -> torch.Tensor:
        pred = model(x, mask)
        return mse_loss(pred, target) if term == "mse" else rank_loss(pred, target, margin=1.0)

    start = loss()
    start.backward()
    assert all(p.grad.abs().sum() > 1e-6 for p in moving.values())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        optimizer.step()
        optimizer.zero_grad()
        loss().backward()
    assert all(not torch.allclose(before[k], v) for k, v in moving.items())
    assert loss().item() < start.item()
