"""FairLowRankFineTuner inside scikit-learn and fairlearn tools."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from conftest import make_task, mlp_backbone
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_winfair import (
    FairLowRankFineTuner,
    demographic_parity_gap,
    fairest_within_tolerance,
    fairness_metric_frame,
    make_fairness_scorer,
)

FAST = dict(solver="adam", max_epochs=4, lr=0.05, batch_size=64, random_state=0)


@pytest.fixture
def routing():
    """Enable scikit-learn metadata routing for one test."""
    with sklearn.config_context(enable_metadata_routing=True):
        yield


class _Recorder(FairLowRankFineTuner):
    """Records the sensitive_features that reach fit."""

    def fit(self, X, y, *, sensitive_features=None):
        type(self).seen.append(None if sensitive_features is None
                               else np.asarray(sensitive_features).copy())
        return super().fit(X, y, sensitive_features=sensitive_features)


def test_pipeline_routes_sensitive_features(task, routing):
    """set_fit_request makes Pipeline pass sensitive_features to fit."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    clf.set_fit_request(sensitive_features=True)
    pipe = make_pipeline(StandardScaler(), clf)
    pipe.fit(X, y, sensitive_features=s)
    assert list(pipe[-1].groups_) == ["a", "b"]
    assert pipe.score(X, y) > 0.8


def test_grid_search_over_rank_and_alpha_routes_fold_groups(routing):
    """GridSearchCV searches rank/alpha and each fit sees its fold's groups."""
    X, y, s = make_task(n=240, n_classes=3)
    _Recorder.seen = []
    est = _Recorder(mlp_backbone(n_out=3), **FAST).set_fit_request(
        sensitive_features=True
    )
    scoring = {"accuracy": "accuracy", "err": "f1_weighted"}
    search = GridSearchCV(
        est, {"rank": [1, 2], "alpha": [0.5, 0.9]}, cv=StratifiedKFold(3),
        scoring=scoring, refit="accuracy",
    )
    search.fit(X, y, sensitive_features=s)
    assert len(search.cv_results_["params"]) == 4
    # 4 candidates x 3 folds + 1 refit, each with the rows of its training fold
    assert len(_Recorder.seen) == 13
    assert all(g is not None and len(g) in (160, 240) for g in _Recorder.seen)
    assert search.best_params_["rank"] in (1, 2)


def test_select_fairest_model_within_accuracy_tolerance(routing):
    """A refit callable picks the smallest DP gap among near-best accuracies."""
    rng = np.random.RandomState(0)
    n = 300
    s = rng.choice(["a", "b"], size=n)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[:, 0] += np.where(s == "a", 0.8, -0.8)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    est = FairLowRankFineTuner(
        mlp_backbone(), rank=None, fairness_penalty="demographic_parity", **FAST
    ).set_fit_request(sensitive_features=True)
    scoring = {
        "accuracy": "accuracy",
        "dp_gap": make_fairness_scorer("demographic_parity"),
    }
    refit = fairest_within_tolerance(score="accuracy", fairness="dp_gap",
                                     tolerance=0.05)
    search = GridSearchCV(
        est, {"penalty_strength": [0.0, 2.0, 8.0]}, cv=3, scoring=scoring,
        refit=refit,
    )
    search.fit(X, y, sensitive_features=s)
    res = search.cv_results_
    acc, gap = res["mean_test_accuracy"], -res["mean_test_dp_gap"]
    ok = np.flatnonzero(acc >= acc.max() - 0.05)
    assert search.best_index_ == ok[np.argmin(gap[ok])]


def test_metric_frame_matches_fairlearn(task):
    """fairness_metric_frame gives fairlearn's own per-group figures."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    mf = fairness_metric_frame(clf, X, y, sensitive_features=s)
    y_pred = clf.predict(X)
    ref = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                 "fpr": false_positive_rate},
        y_true=y, y_pred=y_pred, sensitive_features=s,
    )
    for col in ("selection_rate", "tpr", "fpr"):
        np.testing.assert_allclose(mf.by_group[col], ref.by_group[col])
    assert demographic_parity_gap(y, y_pred, sensitive_features=s) == pytest.approx(
        demographic_parity_difference(y, y_pred, sensitive_features=s)
    )


@pytest.mark.parametrize(
    "params",
    [{"rank": 1}, {"rank": 1, "importance": "fisher"},
     {"rank": 1, "importance": "uniform"}, {"rank": None}],
)
def test_threshold_optimizer_prefit(task, params):
    """ThresholdOptimizer(prefit=True) works over any importance (float64 proba)."""
    X, y, s = task
    X = pd.DataFrame(X, columns=list("abcde"))
    clf = FairLowRankFineTuner(mlp_backbone(), **FAST, **params).fit(
        X, y, sensitive_features=s
    )
    post = ThresholdOptimizer(
        estimator=clf, constraints="demographic_parity", prefit=True,
        predict_method="predict_proba",
    )
    post.fit(X, y, sensitive_features=s)
    y_post = post.predict(X, sensitive_features=s, random_state=0)
    assert set(np.unique(y_post)) <= {0, 1}
    assert demographic_parity_gap(y, y_post, sensitive_features=s) < 0.15


@pytest.mark.parametrize(
    "params", [{"rank": None}, {"rank": 1, "importance": "uniform"},
               {"rank": 1, "importance": "fisher"}],
)
def test_threshold_optimizer_not_prefit_without_groups(task, params):
    """prefit=False (fit(X, y) without groups) works for group-free settings."""
    X, y, s = task
    post = ThresholdOptimizer(
        estimator=FairLowRankFineTuner(mlp_backbone(), **FAST, **params),
        constraints="equalized_odds", prefit=False, predict_method="predict_proba",
    )
    post.fit(X, y, sensitive_features=s)
    assert len(post.predict(X, sensitive_features=s, random_state=0)) == len(X)


def test_threshold_optimizer_not_prefit_with_neutral_says_use_prefit(task):
    """prefit=False with importance='neutral' raises the error naming prefit=True."""
    X, y, s = task
    post = ThresholdOptimizer(
        estimator=FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST),
        prefit=False, predict_method="predict_proba",
    )
    with pytest.raises(ValueError, match="prefit=True"):
        post.fit(X, y, sensitive_features=s)
