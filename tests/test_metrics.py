import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.metrics import Logistic4, evaluate, fit_logistic, pair_accuracy


def test_matches_scipy_on_random_data():
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 200)
    pred = mos + rng.normal(0, 0.7, 200)
    result = evaluate(mos, pred)
    assert result["srocc"] == pytest.approx(stats.spearmanr(mos, pred)[0])
    assert result["krocc"] == pytest.approx(stats.kendalltau(mos, pred)[0])
    assert result["plcc_raw"] == pytest.approx(stats.pearsonr(mos, pred)[0])
    assert result["rmse_raw"] == pytest.approx(np.sqrt(np.mean((mos - pred) ** 2)))
    assert result["plcc"] >= result["plcc_raw"] - 1e-6  # the logistic can only help a monotone relation
    assert result["n"] == 200


def test_logistic_recovers_a_sigmoid_relation():
    x = np.linspace(-3, 3, 100)
    truth = Logistic4(90.0, 10.0, 0.5, 0.8)
    fitted = fit_logistic(x, truth(x))
    np.testing.assert_allclose(fitted(x), truth(x), atol=1e-3)
    result = evaluate(truth(x), x)
    assert result["plcc"] == pytest.approx(1.0, abs=1e-6) and result["rmse"] == pytest.approx(0.0, abs=1e-3)
    assert result["plcc_raw"] < 0.99


def test_logistic_serialises():
    logistic = Logistic4(1.0, 2.0, 3.0, -4.0)
    assert Logistic4.from_dict(logistic.to_dict()) == logistic


def test_ties_match_scipy():
    mos = np.array([1, 1, 2, 2, 3, 3], dtype=float)
    pred = np.array([1, 2, 2, 2, 3, 1], dtype=float)
    result = evaluate(mos, pred)
    assert result["srocc"] == pytest.approx(stats.spearmanr(mos, pred)[0])
    assert result["krocc"] == pytest.approx(stats.kendalltau(mos, pred)[0])


def test_two_samples():
    result = evaluate([1.0, 2.0], [0.1, 0.3])
    assert result["srocc"] == pytest.approx(1.0) and result["n"] == 2


def test_constant_predictions_give_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="constant"):
        result = evaluate([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert np.isnan(result["srocc"]) and np.isnan(result["plcc"]) and np.isnan(result["plcc_raw"])
    assert result["rmse"] == pytest.approx(np.std([1.0, 2.0, 3.0]))


def test_failed_fit_falls_back_to_affine_with_warning(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("no convergence")

    monkeypatch.setattr("pipeline.metrics.optimize.curve_fit", fail)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        logistic = fit_logistic(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    assert logistic.linear
    np.testing.assert_allclose(logistic([0.0, 1.0, 2.0]), [1.0, 3.0, 5.0])


def test_predictions_too_close_for_a_line_map_to_the_mean():
    # Found by tests/test_reliability_properties.py: a spread whose square underflows made numpy's polyfit raise.
    with pytest.warns(RuntimeWarning):
        logistic = fit_logistic([0.0, 6e-248], [0.0, 0.0])
    assert logistic.linear and np.array_equal(logistic(np.array([0.0, 6e-248])), [0.0, 0.0])
    with pytest.warns(RuntimeWarning):
        assert fit_logistic([0.0, 1e-200, 2e-200], [1.0, 2.0, 4.0])(np.array([5.0])) == pytest.approx([7 / 3])


def test_pair_accuracy():
    assert pair_accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert pair_accuracy([1, 2, 3], [3, 2, 1]) == 0.0
    assert pair_accuracy([1, 2], [5, 5]) == 0.5
    assert np.isnan(pair_accuracy([2, 2], [1, 3]))


@pytest.mark.parametrize(
    "mos, pred, message",
    [([1, 2], [1], "equal length"), ([], [], "at least one"), ([1, np.nan], [1, 2], "finite")],
)
def test_invalid_inputs(mos, pred, message):
    with pytest.raises(ValueError, match=message):
        evaluate(mos, pred)


def test_no_warnings_on_ordinary_data():
    rng = np.random.default_rng(1)
    mos = rng.uniform(0, 100, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(mos, mos * 0.01 + rng.normal(0, 0.1, 50))


def test_bounded_asymptotes_keep_calibration_on_the_training_scale():
    rng = np.random.default_rng(3)
    pred = np.linspace(0, 1, 10)
    mos = 40 + 200 * (pred - 0.5) + rng.normal(0, 1, 10)  # a steep relation that extrapolates off scale
    free = fit_logistic(pred, mos)
    bounded = fit_logistic(pred, mos, asymptotes=(0.0, 100.0))
    far = np.array([-10.0, 10.0])
    assert free(far).min() < 0 or free(far).max() > 100 or free.linear
    assert 0.0 - 1e-6 <= bounded(far).min() and bounded(far).max() <= 100.0 + 1e-6


def brute_force_pair_accuracy(mos: list[float], pred: list[float]) -> float:
    terms = [0.5 if pred[i] == pred[j] else float((mos[i] > mos[j]) == (pred[i] > pred[j]))
             for i, j in itertools.combinations(range(len(mos)), 2) if mos[i] != mos[j]]
    return sum(terms) / len(terms) if terms else float("nan")


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([-1.5, 0.0, 0.25, 2.0, 7.0])), min_size=2, max_size=25))
def test_pair_accuracy_counts_like_a_loop_over_pairs(rows):
    """The O(n log n) count (from Kendall's tau-b and the ties) equals the loop, ties in MOS, predictions or both."""
    mos, pred = map(list, zip(*rows))
    expected = brute_force_pair_accuracy(mos, pred)
    got = pair_accuracy(mos, pred)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)
