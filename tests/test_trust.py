"""What makes a score trustworthy: an order-keeping calibration, intervals with their coverage, the domain check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.fit.calibration import Calibration, fit_calibration
from pipeline.fit.intervals import Residuals, coverage
from pipeline.fit.novelty import DomainCheck, fit_domain

# raw predictions from -1e6 to 1e6, at least 1e-3 apart: doubles then resolve any two of them after the map
predictions = st.lists(st.integers(-10**9, 10**9), min_size=2, max_size=50, unique=True)


def stepwise_data(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose MOS saturates at both ends: what made the logistic a step."""
    rng = np.random.default_rng(seed)
    pred = rng.normal(50, 10, n)
    mos = np.clip(1.5 * (pred - 50) + 60 + rng.normal(0, 8, n), 20, 95)
    return pred, mos


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), probe=predictions)
def test_calibration_keeps_every_order_even_far_outside_its_data(seed, probe):
    calibration = fit_calibration(*stepwise_data(seed))
    x = np.asarray(probe) / 1000
    scores = calibration(x)
    assert np.all(np.isfinite(scores))
    order = np.argsort(x)
    assert np.all(np.diff(scores[order]) > 0)  # strictly increasing: no two predictions share a score
    assert stats.spearmanr(x, scores)[0] == pytest.approx(1.0)


def test_calibration_has_linear_tails_with_the_average_slope():
    calibration = fit_calibration(*stepwise_data(1))
    low, high = calibration.fitted_range
    slope = (calibration(np.array([high])) - calibration(np.array([low])))[0] / (high - low)
    beyond = calibration(np.array([high + 10.0, high + 20.0]))
    assert beyond[1] - beyond[0] == pytest.approx(10 * slope)
    below = calibration(np.array([low - 20.0, low - 10.0]))
    assert below[1] - below[0] == pytest.approx(10 * slope)


def test_calibration_fits_the_data_it_was_given():
    pred, mos = stepwise_data(2)
    calibration = fit_calibration(pred, mos)
    assert np.sqrt(np.mean((calibration(pred) - mos) ** 2)) < np.std(mos)  # better than the mean
    assert Calibration.from_dict(calibration.to_dict()) == calibration


@pytest.mark.parametrize("mos", [np.full(30, 50.0), np.linspace(90, 10, 30)])
def test_calibration_still_rises_when_mos_is_flat_or_falls(mos):
    calibration = fit_calibration(np.linspace(0, 1, 30), mos)
    assert np.all(np.diff(calibration(np.linspace(-5, 5, 100))) > 0)


def test_calibration_of_constant_predictions_is_a_rising_line():
    calibration = fit_calibration(np.full(10, 3.0), np.arange(10.0))
    assert np.all(np.diff(calibration(np.array([2.0, 3.0, 4.0]))) > 0)


def test_intervals_hold_their_level_on_exchangeable_data():
    """Residuals of one fold per member, new videos from the same distribution: coverage close to nominal."""
    rng = np.random.default_rng(0)
    folds = np.repeat(np.arange(5), 200)
    residuals = Residuals.of(rng.normal(0, 5, 1000), folds, members=5)
    truth = rng.uniform(20, 80, 4000)
    members = truth[:, None] + rng.normal(0, 5, (4000, 1))  # members agree: a spread of zero between them
    low, high = residuals.interval(np.repeat(members, 5, axis=1), 0.8)
    assert np.all(low <= members[:, 0]) and np.all(members[:, 0] <= high)
    assert coverage(truth, low, high) == pytest.approx(0.8, abs=0.03)
    low90, high90 = residuals.interval(np.repeat(members, 5, axis=1), 0.9)
    assert np.all(high90 - low90 > high - low)


def test_members_that_disagree_widen_the_interval():
    residuals = Residuals.of(np.linspace(-3, 3, 50), np.repeat(np.arange(5), 10), members=5)
    agree = residuals.interval(np.full((1, 5), 50.0))
    disagree = residuals.interval(np.array([[40.0, 45.0, 50.0, 55.0, 60.0]]))
    assert (disagree[1] - disagree[0])[0] > (agree[1] - agree[0])[0]
    assert Residuals.from_dict(residuals.to_dict()).interval(np.full((1, 5), 50.0))[0] == agree[0]


def test_coverage_counts_the_bounds_as_inside():
    assert coverage(np.array([1.0, 2.0, 3.0, 9.0]), np.array([1.0, 0.0, 3.5, 0.0]), np.array([2.0, 2.0, 4.0, 8.0])) == 0.5


def clustered_videos(rng: np.random.Generator, sources: int = 10, per_source: int = 12, dim: int = 40) -> tuple:
    centres = rng.normal(0, 1, (sources, dim))
    x = np.repeat(centres, per_source, axis=0) + rng.normal(0, 0.3, (sources * per_source, dim))
    folds = np.repeat(np.arange(sources) % 5, per_source)
    return x, folds, centres


def test_domain_keeps_new_sources_and_flags_unlike_content():
    rng = np.random.default_rng(3)
    x, folds, centres = clustered_videos(rng)
    domain = fit_domain(x, folds)
    new_sources = rng.normal(0, 1, (20, 40))  # content like the training data: the same distribution of sources
    like = np.repeat(new_sources, 5, axis=0) + rng.normal(0, 0.3, (100, 40))
    assert np.mean(domain.novelty(like) <= 1) >= 0.8
    pattern = np.full((5, 40), 8.0)  # far from every source, e.g. a test pattern
    assert np.all(domain.novelty(pattern) > 2)
    again = DomainCheck.from_dict(domain.to_dict())
    np.testing.assert_allclose(again.novelty(pattern), domain.novelty(pattern))
