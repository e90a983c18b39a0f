import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.fit.losses import mse_losses, rank_losses
from pipeline.fit.model import ChunkRegressor


def rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """One member that trains on every video of the batch."""
    return rank_losses(pred[:, None], target, torch.ones(len(pred), 1, dtype=torch.bool), margin)[0]


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return mse_losses(pred[:, None], target, torch.ones(len(pred), 1, dtype=torch.bool))[0]


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
        pred = model(x, mask)[:, 0]
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


def test_each_member_learns_only_from_its_own_videos():
    """Members trained together get the gradients they would get alone on their videos: a member's loss ignores
    the videos it leaves out, so its weights do not depend on their targets."""
    torch.manual_seed(0)
    pred = torch.randn(6, 2, requires_grad=True)
    target = torch.linspace(-1, 1, 6)
    trains = torch.tensor([[True, False], [True, False], [True, True], [False, True], [False, True], [True, True]])
    changed = target.clone()
    changed[3:5] = torch.tensor([5.0, -5.0])  # targets of videos member 0 leaves out
    for loss in (lambda t: mse_losses(pred, t, trains), lambda t: rank_losses(pred, t, trains, 0.1)):
        first = torch.autograd.grad(loss(target)[0], pred)[0]
        second = torch.autograd.grad(loss(changed)[0], pred)[0]
        assert torch.equal(first, second)
        assert not torch.equal(loss(target)[1], loss(changed)[1])  # member 1 trains on them
    alone = mse_losses(pred[trains[:, 0], :1], target[trains[:, 0]], torch.ones(4, 1, dtype=torch.bool))[0]
    assert mse_losses(pred, target, trains)[0].item() == pytest.approx(alone.item())
