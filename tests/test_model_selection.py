"""Tests for sklearn_winfair.model_selection: the fair refit rule."""

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklearn_winfair.metrics import demographic_parity_gap, make_fairness_scorer
from sklearn_winfair.model_selection import fairest_within_tolerance


def test_fairest_within_tolerance_on_handmade_results():
    """The rule picks the fairest near-best candidate; NaN candidates are skipped."""
    cv_results = {
        "params": [{}] * 5,
        "mean_test_accuracy": np.array([0.90, 0.895, 0.88, 0.70, np.nan]),
        # negated gaps, as stored by sklearn for greater_is_better=False
        "mean_test_dp_gap": np.array([-0.30, -0.20, -0.05, 0.0, 0.0]),
    }
    assert fairest_within_tolerance(tolerance=0.0)(cv_results) == 0
    assert fairest_within_tolerance(tolerance=0.01)(cv_results) == 1
    assert fairest_within_tolerance(tolerance=0.05)(cv_results) == 2
    assert fairest_within_tolerance(tolerance=1.0)(cv_results) == 3
    # ties in fairness go to the higher score, then to the lower index
    tied = {
        "mean_test_accuracy": np.array([0.8, 0.9, 0.9]),
        "mean_test_dp_gap": np.array([-0.1, -0.1, -0.1]),
    }
    assert fairest_within_tolerance(tolerance=0.5)(tied) == 1
    # the best score has a NaN fairness (failed scorer): it is skipped
    nan_fair = {
        "mean_test_accuracy": np.array([0.9, 0.85]),
        "mean_test_dp_gap": np.array([np.nan, -0.2]),
    }
    assert fairest_within_tolerance(tolerance=0.0)(nan_fair) == 1


def test_fairest_within_tolerance_invalid_arguments():
    """Bad tolerance, unknown scorer names and all-NaN results raise."""
    cv_results = {
        "mean_test_accuracy": np.array([0.9]),
        "mean_test_eo_gap": np.array([-0.1]),
    }
    with pytest.raises(ValueError, match=r"tolerance must be a non-negative"):
        fairest_within_tolerance(tolerance=-0.1)
    with pytest.raises(ValueError, match=r"tolerance must be a non-negative"):
        fairest_within_tolerance(tolerance="0.1")
    with pytest.raises(
        ValueError,
        match=r"fairness='dp_gap' has no 'mean_test_dp_gap'.*\['accuracy', 'eo_gap'\]",
    ):
        fairest_within_tolerance()(cv_results)
    with pytest.raises(ValueError, match=r"score='f1' has no 'mean_test_f1'"):
        fairest_within_tolerance(score="f1", fairness="eo_gap")(cv_results)
    all_nan = {
        "mean_test_accuracy": np.array([np.nan]),
        "mean_test_dp_gap": np.array([-0.1]),
    }
    with pytest.raises(ValueError, match=r"Every candidate has NaN"):
        fairest_within_tolerance()(all_nan)


def _biased_dataset(seed=0, n=300):
    """Data whose label depends on a feature correlated with the group."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, n)
    proxy = groups + rng.normal(scale=0.7, size=n)
    signal = rng.normal(size=n)
    X = np.column_stack([proxy, signal])
    y = (signal + 0.8 * groups + rng.normal(scale=0.5, size=n) > 0.4).astype(int)
    return X, y, groups


def test_grid_search_routes_sensitive_features_and_refits_fairest():
    """GridSearchCV routes sensitive_features to the DP scorer and uses the rule.

    The per-fold DP scores equal -demographic_parity_gap recomputed by hand on
    the same folds, and best_index_ equals the index recomputed from
    cv_results_ (undoing the sign sklearn applies to greater_is_better=False).
    """
    X, y, groups = _biased_dataset()
    # wide enough to let the strongly regularised (less accurate, fairer) C in
    tolerance = 0.12
    cv = StratifiedKFold(n_splits=3)
    grid = {"C": [1e-3, 1e-2, 1e-1, 1.0]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            LogisticRegression(),
            grid,
            scoring={
                "accuracy": "accuracy",
                "dp_gap": make_fairness_scorer("demographic_parity"),
            },
            refit=fairest_within_tolerance(
                score="accuracy", fairness="dp_gap", tolerance=tolerance
            ),
            cv=cv,
        )
        search.fit(X, y, sensitive_features=groups)

    results = search.cv_results_
    gaps = -results["mean_test_dp_gap"]
    assert (gaps >= 0).all() and gaps.max() > 0

    # sensitive_features was sliced per fold: recompute fold scores by hand
    for split, (train, test) in enumerate(cv.split(X, y)):
        for i, params in enumerate(results["params"]):
            model = LogisticRegression(**params).fit(X[train], y[train])
            gap = demographic_parity_gap(
                y[test], model.predict(X[test]), sensitive_features=groups[test]
            )
            assert results[f"split{split}_test_dp_gap"][i] == pytest.approx(-gap)

    accuracy = results["mean_test_accuracy"]
    near_best = np.flatnonzero(accuracy >= accuracy.max() - tolerance)
    expected = near_best[np.argmin(gaps[near_best])]
    assert search.best_index_ == expected
    assert search.best_params_ == results["params"][expected]
    assert hasattr(search, "best_estimator_")
    # the data make the rule matter: it trades accuracy for a smaller gap
    assert accuracy[search.best_index_] < accuracy.max() - 0.05
    assert gaps[search.best_index_] < gaps[np.argmax(accuracy)]
