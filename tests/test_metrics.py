"""Tests for sklearn_winfair.metrics: the paper's metrics, the metric frame, scorers."""

import math
import warnings

import numpy as np
import pytest
import sklearn
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV

from sklearn_winfair.metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    err_scorer,
    fairness_metric_frame,
    make_fairness_scorer,
    paper_metrics,
    weighted_f1_error,
)


def _random_binary(seed, n=300, n_groups=3):
    """Random 0/1 labels and predictions, groups where every group has both labels."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=n)
    # bias the predictions by group so the gaps are not all near 0
    p = 0.2 + 0.6 * groups / max(n_groups - 1, 1)
    y_true = rng.integers(0, 2, size=n)
    y_pred = (rng.random(n) < p).astype(int)
    for g in range(n_groups):  # make sure every (group, class) cell is non-empty
        idx = np.flatnonzero(groups == g)
        y_true[idx[:2]] = [0, 1]
    weights = rng.random(n) + 0.5
    return y_true, y_pred, groups, weights


# --------------------------------------------------------------------------
# metrics against fairlearn
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_groups", [2, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_demographic_parity_gap_equals_fairlearn(seed, n_groups, weighted):
    """DP gap equals fairlearn's demographic_parity_difference (max - min)."""
    y_true, y_pred, groups, weights = _random_binary(seed, n_groups=n_groups)
    sw = weights if weighted else None
    ours = demographic_parity_gap(
        y_true, y_pred, sensitive_features=groups, sample_weight=sw
    )
    ref = demographic_parity_difference(
        y_true, y_pred, sensitive_features=groups, sample_weight=sw
    )
    assert type(ours) is float
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours > 0


def test_demographic_parity_gap_ignores_y_true():
    """y_true may be None and does not change the DP gap."""
    y_true, y_pred, groups, _ = _random_binary(0)
    with_y = demographic_parity_gap(y_true, y_pred, sensitive_features=groups)
    without_y = demographic_parity_gap(None, y_pred, sensitive_features=groups)
    assert with_y == without_y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_equalized_odds_gap_aggregations_equal_fairlearn(seed, n_groups, weighted):
    """EO sum is 2x fairlearn's agg="mean"; "max"/"mean" equal worst_case/mean."""
    y_true, y_pred, groups, weights = _random_binary(seed, n_groups=n_groups)
    sw = weights if weighted else None
    kwargs = {"sensitive_features": groups, "sample_weight": sw}

    fl_mean = equalized_odds_difference(y_true, y_pred, agg="mean", **kwargs)
    fl_worst = equalized_odds_difference(y_true, y_pred, agg="worst_case", **kwargs)

    eo_sum = equalized_odds_gap(y_true, y_pred, **kwargs)  # default agg="sum"
    assert type(eo_sum) is float
    assert eo_sum == pytest.approx(2 * fl_mean, abs=1e-12)
    assert equalized_odds_gap(y_true, y_pred, agg="max", **kwargs) == pytest.approx(
        fl_worst, abs=1e-12
    )
    assert equalized_odds_gap(y_true, y_pred, agg="mean", **kwargs) == pytest.approx(
        fl_mean, abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_equalized_odds_gap_sum_is_tpr_gap_plus_fpr_gap(seed):
    """EO sum equals (max-min TPR) + (max-min FPR) read off a MetricFrame by hand."""
    y_true, y_pred, groups, _ = _random_binary(seed, n_groups=3)
    frame = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    by_group = frame.by_group
    expected = (by_group["tpr"].max() - by_group["tpr"].min()) + (
        by_group["fpr"].max() - by_group["fpr"].min()
    )
    ours = equalized_odds_gap(y_true, y_pred, sensitive_features=groups)
    assert ours == pytest.approx(expected, abs=1e-12)


def test_string_labels_with_pos_label_match_numeric_labels():
    """String labels with pos_label give the same gaps as the 0/1 encoding."""
    y_true, y_pred, groups, _ = _random_binary(3, n_groups=3)
    names = np.array(["deny", "grant"])
    y_true_s, y_pred_s = names[y_true], names[y_pred]
    group_names = np.array(["x", "y", "z"])[groups]

    dp_num = demographic_parity_gap(y_true, y_pred, sensitive_features=groups)
    dp_str = demographic_parity_gap(
        y_true_s, y_pred_s, sensitive_features=group_names, pos_label="grant"
    )
    assert dp_str == pytest.approx(dp_num, abs=1e-12)

    for agg in ["sum", "max", "mean"]:
        eo_num = equalized_odds_gap(y_true, y_pred, sensitive_features=groups, agg=agg)
        eo_str = equalized_odds_gap(
            y_true_s,
            y_pred_s,
            sensitive_features=group_names,
            pos_label="grant",
            agg=agg,
        )
        assert eo_str == pytest.approx(eo_num, abs=1e-12)

    # the other label as positive flips selection: the DP gap is unchanged
    dp_flip = demographic_parity_gap(
        y_true_s, y_pred_s, sensitive_features=group_names, pos_label="deny"
    )
    assert dp_flip == pytest.approx(dp_num, abs=1e-12)


def test_pos_label_not_a_label_raises():
    """A pos_label absent from y_true and y_pred is an error, not a silent 0."""
    y = np.array(["no", "yes", "yes", "no"])
    groups = [0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"pos_label=1 is not one of the labels"):
        demographic_parity_gap(y, y, sensitive_features=groups, pos_label=1)
    with pytest.raises(ValueError, match=r"pos_label='Yes' is not one of the labels"):
        equalized_odds_gap(y, y, sensitive_features=groups, pos_label="Yes")


def test_invalid_agg_raises():
    """agg outside {"sum", "max", "mean"} raises a ValueError naming the options."""
    y_true, y_pred, groups, _ = _random_binary(0)
    with pytest.raises(
        ValueError, match=r"agg must be one of \['sum', 'max', 'mean'\]"
    ):
        equalized_odds_gap(y_true, y_pred, sensitive_features=groups, agg="worst_case")


@pytest.mark.parametrize(
    "func", [demographic_parity_gap, equalized_odds_gap], ids=["dp", "eo"]
)
def test_sensitive_features_checks(func):
    """Wrong length or None sensitive_features raise a ValueError naming it."""
    y_true, y_pred, groups, _ = _random_binary(0)
    with pytest.raises(ValueError, match=r"sensitive_features must have one row"):
        func(y_true, y_pred, sensitive_features=groups[:-1])
    with pytest.raises(ValueError, match=r"sensitive_features is required"):
        func(y_true, y_pred, sensitive_features=None)
    with pytest.raises(TypeError, match=r"sensitive_features must be array-like"):
        func(y_true, y_pred, sensitive_features=3)


def test_multicolumn_sensitive_features_are_intersectional():
    """Two sensitive columns give the same gap as their merged group label."""
    rng = np.random.default_rng(0)
    n = 200
    a, b = rng.integers(0, 2, n), rng.integers(0, 3, n)
    y_pred = rng.integers(0, 2, n)
    two_columns = np.column_stack([a, b])
    merged = a * 3 + b
    assert demographic_parity_gap(
        None, y_pred, sensitive_features=two_columns
    ) == pytest.approx(demographic_parity_gap(None, y_pred, sensitive_features=merged))


def test_weighted_f1_error_is_percent_of_weighted_f1():
    """Err is 100 * (1 - weighted F1), with and without sample weights."""
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    w = rng.random(100)
    expected = 100 * (1 - f1_score(y_true, y_pred, average="weighted"))
    assert weighted_f1_error(y_true, y_pred) == pytest.approx(expected)
    expected_w = 100 * (
        1 - f1_score(y_true, y_pred, average="weighted", sample_weight=w)
    )
    assert weighted_f1_error(y_true, y_pred, sample_weight=w) == pytest.approx(
        expected_w
    )
    assert type(weighted_f1_error(y_true, y_pred)) is float


def test_weighted_f1_error_never_predicted_class_does_not_warn():
    """A class never predicted counts as F1 = 0 without an UndefinedMetricWarning."""
    assert weighted_f1_error([0, 1, 1, 0], [0, 0, 0, 0]) == pytest.approx(
        100 * (1 - 0.5 * (2 / 3))
    )


def test_paper_metrics_collects_the_three_metrics():
    """paper_metrics returns Err, DP gap and the summed EO gap as floats."""
    y_true, y_pred, groups, _ = _random_binary(1)
    result = paper_metrics(y_true, y_pred, sensitive_features=groups)
    assert result == {
        "err": weighted_f1_error(y_true, y_pred),
        "dp_gap": demographic_parity_gap(y_true, y_pred, sensitive_features=groups),
        "eo_gap": equalized_odds_gap(
            y_true, y_pred, sensitive_features=groups, agg="sum"
        ),
    }
    assert all(type(v) is float for v in result.values())


def _multiclass_case():
    """Four classes, two groups; class 3's gaps are larger than class 1's."""
    rng = np.random.default_rng(7)
    n = 400
    groups = rng.integers(0, 2, n)
    y_true = rng.integers(0, 4, n)
    y_pred = y_true.copy()
    flip = rng.random(n) < 0.3
    y_pred[flip] = rng.integers(0, 4, flip.sum())
    # group 1 is predicted class 3 more often: class 3 carries the largest gap
    more3 = (groups == 1) & (rng.random(n) < 0.2)
    y_pred[more3] = 3
    return y_true, y_pred, groups


def test_paper_metrics_multiclass_is_max_of_one_vs_rest_gaps():
    """On 4 integer classes each gap is the max over classes of fairlearn's OvR gap.

    Before, pos_label=1 silently measured class 1 against the rest.
    """
    y_true, y_pred, groups = _multiclass_case()
    dp_by_class, eo_by_class = [], []
    for c in range(4):
        yc, pc = (y_true == c).astype(int), (y_pred == c).astype(int)
        dp_by_class.append(
            demographic_parity_difference(yc, pc, sensitive_features=groups)
        )
        # fairlearn's agg="mean" is half the sum of the TPR and FPR gaps
        eo_by_class.append(
            2 * equalized_odds_difference(yc, pc, sensitive_features=groups, agg="mean")
        )
    assert int(np.argmax(dp_by_class)) == 3 and dp_by_class[3] > dp_by_class[1]

    result = paper_metrics(y_true, y_pred, sensitive_features=groups)
    assert result["dp_gap"] == pytest.approx(max(dp_by_class), abs=1e-12)
    assert result["eo_gap"] == pytest.approx(max(eo_by_class), abs=1e-12)
    assert result["err"] == weighted_f1_error(y_true, y_pred)
    # the functions underneath follow the same definition
    assert demographic_parity_gap(
        None, y_pred, sensitive_features=groups
    ) == pytest.approx(max(dp_by_class), abs=1e-12)
    assert equalized_odds_gap(
        y_true, y_pred, sensitive_features=groups, agg="max"
    ) == pytest.approx(
        max(
            equalized_odds_difference(
                (y_true == c).astype(int),
                (y_pred == c).astype(int),
                sensitive_features=groups,
            )
            for c in range(4)
        ),
        abs=1e-12,
    )
    # an explicit pos_label still measures that class against the rest
    one_vs_rest = paper_metrics(y_true, y_pred, sensitive_features=groups, pos_label=1)
    assert one_vs_rest["dp_gap"] == pytest.approx(dp_by_class[1], abs=1e-12)
    assert one_vs_rest["eo_gap"] == pytest.approx(eo_by_class[1], abs=1e-12)


def test_pos_label_none_keeps_the_binary_definition():
    """Default pos_label on 0/1 labels equals pos_label=1, as before the change."""
    y_true, y_pred, groups, weights = _random_binary(4, n_groups=3)
    default = paper_metrics(y_true, y_pred, sensitive_features=groups)
    assert default == paper_metrics(
        y_true, y_pred, sensitive_features=groups, pos_label=1
    )
    assert demographic_parity_gap(
        y_true, y_pred, sensitive_features=groups, sample_weight=weights
    ) == demographic_parity_gap(
        y_true, y_pred, sensitive_features=groups, sample_weight=weights, pos_label=1
    )
    # two string labels: both one-vs-rest gaps are the same number
    names = np.array(["deny", "grant"])
    assert demographic_parity_gap(
        names[y_true], names[y_pred], sensitive_features=groups
    ) == pytest.approx(default["dp_gap"], abs=1e-12)
    assert equalized_odds_gap(
        names[y_true], names[y_pred], sensitive_features=groups
    ) == pytest.approx(default["eo_gap"], abs=1e-12)


def test_multiclass_explicit_pos_label_not_a_label_and_missing_y_true_raise():
    """An unknown pos_label on multiclass labels and EO without y_true raise."""
    y_true, y_pred, groups = _multiclass_case()
    with pytest.raises(ValueError, match=r"pos_label=7 is not one of the labels"):
        paper_metrics(y_true, y_pred, sensitive_features=groups, pos_label=7)
    with pytest.raises(ValueError, match=r"equalized_odds_gap needs y_true"):
        equalized_odds_gap(None, y_pred, sensitive_features=groups)


def test_multiclass_fairness_scorer_scores_the_largest_gap():
    """make_fairness_scorer's default pos_label gives the multiclass gap too."""
    y_true, y_pred, groups = _multiclass_case()
    X = np.zeros((len(y_true), 1))

    class _Fixed(DummyClassifier):
        def predict(self, X):
            return y_pred[: len(X)]

    clf = _Fixed().fit(X, y_true)
    scorer = make_fairness_scorer("demographic_parity")
    with sklearn.config_context(enable_metadata_routing=True):
        value = scorer(clf, X, y_true, sensitive_features=groups)
    assert value == pytest.approx(
        -demographic_parity_gap(None, y_pred, sensitive_features=groups)
    )
    assert value == -paper_metrics(y_true, y_pred, sensitive_features=groups)["dp_gap"]


# --------------------------------------------------------------------------
# fairness_metric_frame
# --------------------------------------------------------------------------


def _fitted_string_classifier():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=80) > 0, "yes", "no")
    groups = np.where(X[:, 1] > 0, "g1", "g2")
    return LogisticRegression().fit(X, y), X, y, groups


def test_fairness_metric_frame_binary_defaults_to_greatest_class():
    """Binary frame has all six metrics; pos_label defaults to classes_[-1]."""
    clf, X, y, groups = _fitted_string_classifier()
    frame = fairness_metric_frame(clf, X, y, sensitive_features=groups)
    assert list(frame.overall.index) == [
        "err",
        "accuracy",
        "selection_rate",
        "tpr",
        "fpr",
        "count",
    ]
    y_pred = clf.predict(X)
    assert clf.classes_[-1] == "yes"
    assert frame.overall["err"] == pytest.approx(weighted_f1_error(y, y_pred))
    assert frame.overall["accuracy"] == pytest.approx(accuracy_score(y, y_pred))
    assert frame.overall["selection_rate"] == pytest.approx(np.mean(y_pred == "yes"))
    assert frame.overall["tpr"] == pytest.approx(
        true_positive_rate(y, y_pred, pos_label="yes")
    )
    assert frame.overall["count"] == len(y)
    dp = demographic_parity_gap(y, y_pred, sensitive_features=groups, pos_label="yes")
    assert frame.difference()["selection_rate"] == pytest.approx(dp)

    flipped = fairness_metric_frame(
        clf, X, y, sensitive_features=groups, pos_label="no"
    )
    assert flipped.overall["selection_rate"] == pytest.approx(
        selection_rate(y, y_pred, pos_label="no")
    )


def test_fairness_metric_frame_multiclass_drops_binary_metrics():
    """With three classes only err, accuracy and count are computed."""
    X = np.arange(12, dtype=float).reshape(-1, 1)
    y = np.array([0, 1, 2] * 4)
    clf = DummyClassifier(strategy="most_frequent").fit(X, y)
    frame = fairness_metric_frame(clf, X, y, sensitive_features=[0, 1] * 6)
    assert list(frame.overall.index) == ["err", "accuracy", "count"]


def test_fairness_metric_frame_invalid_arguments():
    """Bad sensitive_features length and unknown pos_label raise ValueError."""
    clf, X, y, groups = _fitted_string_classifier()
    with pytest.raises(ValueError, match=r"sensitive_features must have one row"):
        fairness_metric_frame(clf, X, y, sensitive_features=groups[:-3])
    with pytest.raises(ValueError, match=r"pos_label=1 is not one of the labels"):
        fairness_metric_frame(clf, X, y, sensitive_features=groups, pos_label=1)


# --------------------------------------------------------------------------
# scorers and the refit rule
# --------------------------------------------------------------------------


def test_make_fairness_scorer_needs_no_routing_to_build():
    """Building works with routing off; it requests sensitive_features and weights."""
    assert not sklearn.get_config()["enable_metadata_routing"]
    scorer = make_fairness_scorer("equalized_odds", agg="max")
    assert not sklearn.get_config()["enable_metadata_routing"]
    routing = scorer.get_metadata_routing()
    assert routing.score.requests == {"sensitive_features": True, "sample_weight": True}


def test_fairness_scorer_returns_negated_gap():
    """Called directly (routing on), the scorer returns minus the metric."""
    clf, X, y, groups = _fitted_string_classifier()
    y_pred = clf.predict(X)
    with sklearn.config_context(enable_metadata_routing=True):
        dp = make_fairness_scorer("demographic_parity", pos_label="yes")
        eo = make_fairness_scorer("equalized_odds", pos_label="yes", agg="mean")
        dp_value = dp(clf, X, y, sensitive_features=groups)
        eo_value = eo(clf, X, y, sensitive_features=groups)
        err_value = err_scorer(clf, X, y)
    assert dp_value == pytest.approx(
        -demographic_parity_gap(y, y_pred, sensitive_features=groups, pos_label="yes")
    )
    assert eo_value == pytest.approx(
        -equalized_odds_gap(
            y, y_pred, sensitive_features=groups, pos_label="yes", agg="mean"
        )
    )
    assert err_value == pytest.approx(-weighted_f1_error(y, y_pred))


def test_fairness_scorer_accepts_callables():
    """A callable metric is used as is; pos_label goes only where it is accepted."""
    clf, X, y, groups = _fitted_string_classifier()
    y_pred = clf.predict(X)
    with_pos = make_fairness_scorer(demographic_parity_gap, pos_label="yes")
    without_pos = make_fairness_scorer(demographic_parity_difference)
    with sklearn.config_context(enable_metadata_routing=True):
        a = with_pos(clf, X, y, sensitive_features=groups)
        b = without_pos(clf, X, (y == "yes").astype(int), sensitive_features=groups)
    # the model predicts strings, so fairlearn's selection_rate sees no 1s for b
    assert a == pytest.approx(
        -demographic_parity_gap(y, y_pred, sensitive_features=groups, pos_label="yes")
    )
    assert b == 0.0


def test_fairness_scorer_without_sensitive_features_explains_routing():
    """If sensitive_features is not routed, the TypeError says why and how to."""
    clf, X, y, _ = _fitted_string_classifier()
    scorer = make_fairness_scorer("demographic_parity", pos_label="yes")
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(
            TypeError,
            match=r"received no sensitive_features: routing is on, but no "
            r"sensitive_features reached the scorer.*enable_metadata_routing=True",
        ):
            scorer(clf, X, y)
    with pytest.raises(
        TypeError,
        match=r"received no sensitive_features: metadata routing is off.*"
        r"GridSearchCV.fit\(X, y, sensitive_features=s\)",
    ):
        scorer(clf, X, y)


def _optuna_search(error_score, refit=True):
    """A 2-trial OptunaSearchCV of a logistic regression scored by the DP gap."""
    optuna = pytest.importorskip("optuna")
    optuna_integration = pytest.importorskip("optuna_integration")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna_integration.OptunaSearchCV(
            LogisticRegression(),
            {"C": optuna.distributions.FloatDistribution(0.1, 10.0)},
            n_trials=2,
            cv=2,
            refit=refit,
            scoring=make_fairness_scorer("demographic_parity"),
            error_score=error_score,
            random_state=0,
        )


def test_fairness_scorer_error_reaches_the_user_of_optuna_search():
    """Routing off, OptunaSearchCV(error_score="raise") raises our TypeError.

    optuna-integration catches ``ValueError`` around ``cross_validate`` and
    stores ``error_score`` (the string "raise") as the score, so a ValueError
    from the scorer ended as numpy's "resolved dtypes are not compatible".
    """
    X, y, _ = _biased_dataset(n=60)
    search = _optuna_search("raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning and kin
        with pytest.raises(
            TypeError, match=r"received no sensitive_features: metadata routing is off"
        ):
            search.fit(X, y)


def test_fairness_scorer_under_optuna_search_numeric_error_score_warns():
    """With error_score=nan every fold's warning carries our message; routed, it works.

    scikit-learn catches every scorer error when error_score is numeric, so no
    error can escape: what the user sees is one UserWarning per fold with the
    explanation, and trials marked FAIL. With routing on and the groups passed
    to fit, the same search completes every trial with a finite DP gap.
    """
    X, y, groups = _biased_dataset(n=60)
    search = _optuna_search(np.nan, refit=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    ours = [
        w
        for w in caught
        if issubclass(w.category, UserWarning)
        and "received no sensitive_features: metadata routing is off" in str(w.message)
    ]
    assert len(ours) == 4  # 2 trials x 2 folds
    assert [t.state.name for t in search.study_.trials] == ["FAIL", "FAIL"]

    search = _optuna_search("raise", refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with sklearn.config_context(enable_metadata_routing=True):
            search.fit(X, y, sensitive_features=groups)
    assert [t.state.name for t in search.study_.trials] == ["COMPLETE", "COMPLETE"]
    assert -1.0 <= search.best_score_ <= 0.0


def test_make_fairness_scorer_invalid_arguments():
    """Unknown metric names, types, keyword arguments and agg values raise."""
    with pytest.raises(ValueError, match=r"metric must be one of"):
        make_fairness_scorer("equal_opportunity")
    with pytest.raises(TypeError, match=r"metric must be one of"):
        make_fairness_scorer(3)
    with pytest.raises(TypeError, match=r"Unexpected keyword arguments \['agg'\]"):
        make_fairness_scorer("demographic_parity", agg="sum")
    with pytest.raises(ValueError, match=r"agg must be one of"):
        make_fairness_scorer("equalized_odds", agg="worst_case")


def _biased_dataset(seed=0, n=300):
    """Data whose label depends on a feature correlated with the group."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, n)
    proxy = groups + rng.normal(scale=0.7, size=n)
    signal = rng.normal(size=n)
    X = np.column_stack([proxy, signal])
    y = (signal + 0.8 * groups + rng.normal(scale=0.5, size=n) > 0.4).astype(int)
    return X, y, groups


def test_cv_results_err_scorer_is_negated():
    """err_scorer shows up in cv_results_ as minus the percent error."""
    X, y, _ = _biased_dataset(n=90)
    search = GridSearchCV(
        LogisticRegression(), {"C": [1.0]}, scoring={"err": err_scorer}, refit=False
    )
    search.fit(X, y)
    err = -search.cv_results_["mean_test_err"][0]
    assert 0 < err < 100
    assert not math.isnan(err)
