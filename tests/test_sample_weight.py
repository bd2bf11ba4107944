"""Tests for sample_weight: penalties, importances, SVD, probe, routing, fairlearn.

The deterministic parts of a fit (the Fisher importances, the weighted SVD at
initialization, the linear probe) are proven equal exactly between a weighted
fit and the fit on the rows it stands for (zero weight = row dropped, integer
weight = row repeated). Training itself is stochastic in its mini-batches, which
is why scikit-learn's ``check_sample_weight_equivalence`` is an expected failure
in test_common.py.
"""

import numpy as np
import pytest
import torch
from conftest import make_task, mlp_backbone, mlp_head_backbone

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.penalties import (
    demographic_parity_penalty,
    equalized_odds_penalty,
)

# --------------------------------------------------------------------------
# penalties
# --------------------------------------------------------------------------


def test_weighted_penalties_equal_hand_computation():
    """Weighted group means, computed by hand on six rows."""
    proba = torch.tensor([0.9, 0.5, 0.2, 0.6, 0.1, 0.3], dtype=torch.float64)
    y = torch.tensor([1, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    w = torch.tensor([2.0, 1.0, 1.0, 3.0, 1.0, 0.5], dtype=torch.float64)

    # DP: group 0 = (2*.9 + .5 + .2) / 4, group 1 = (3*.6 + .1 + .5*.3) / 4.5
    g0 = (2 * 0.9 + 0.5 + 0.2) / 4
    g1 = (3 * 0.6 + 0.1 + 0.5 * 0.3) / 4.5
    dp = demographic_parity_penalty(proba, groups, sample_weight=w)
    assert dp.item() == pytest.approx(abs(g0 - g1), abs=1e-12)

    # EO: positives g0 (2*.9 + .2) / 3 vs g1 .6;
    # negatives g0 .5 vs g1 (.1 + .5*.3) / 1.5
    pos = abs((2 * 0.9 + 0.2) / 3 - 0.6)
    neg = abs(0.5 - (0.1 + 0.5 * 0.3) / 1.5)
    eo = equalized_odds_penalty(proba, y, groups, sample_weight=w)
    assert eo.item() == pytest.approx(pos + neg, abs=1e-12)


@pytest.mark.parametrize("n_groups", [2, 3])
def test_penalties_all_ones_weights_equal_unweighted(n_groups):
    rng = np.random.default_rng(0)
    proba = torch.tensor(rng.random(50), requires_grad=True)
    y = torch.as_tensor(rng.integers(0, 2, 50))
    groups = torch.as_tensor(rng.integers(0, n_groups, 50))
    ones = torch.ones(50, dtype=torch.float64)
    for penalty, args in [
        (demographic_parity_penalty, (proba, groups)),
        (equalized_odds_penalty, (proba, y, groups)),
    ]:
        plain = penalty(*args)
        (grad_plain,) = torch.autograd.grad(plain, proba)
        weighted = penalty(*args, sample_weight=ones)
        (grad_weighted,) = torch.autograd.grad(weighted, proba)
        assert weighted.item() == plain.item()
        torch.testing.assert_close(grad_weighted, grad_plain, rtol=0, atol=0)


def test_penalties_integer_and_zero_weights_equal_repeated_and_dropped_rows():
    rng = np.random.default_rng(1)
    n = 40
    proba = torch.as_tensor(rng.random(n))
    y = torch.as_tensor(rng.integers(0, 2, n))
    groups = torch.as_tensor(rng.integers(0, 3, n))
    counts = torch.as_tensor(rng.integers(0, 4, n))  # 0 drops the row
    rows = torch.repeat_interleave(torch.arange(n), counts)
    w = counts.double()
    assert demographic_parity_penalty(
        proba, groups, sample_weight=w
    ).item() == pytest.approx(
        demographic_parity_penalty(proba[rows], groups[rows]).item(), abs=1e-12
    )
    assert equalized_odds_penalty(
        proba, y, groups, sample_weight=w
    ).item() == pytest.approx(
        equalized_odds_penalty(proba[rows], y[rows], groups[rows]).item(), abs=1e-12
    )


def test_penalties_group_with_zero_weight_is_absent():
    proba = torch.tensor([0.9, 0.7, 0.2, 0.4])
    groups = torch.tensor([0, 0, 1, 1])
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # only group 0 is present: no gap
    assert demographic_parity_penalty(proba, groups, sample_weight=w).item() == 0.0
    assert equalized_odds_penalty(
        proba, torch.tensor([1, 0, 1, 0]), groups, sample_weight=w
    ).item() == 0.0


@pytest.mark.parametrize(
    "w, match",
    [
        (torch.tensor([1.0, -1.0, 1.0, 1.0]), "finite and non-negative"),
        (torch.tensor([1.0, float("nan"), 1.0, 1.0]), "finite and non-negative"),
        (torch.tensor([1.0, 1.0, 1.0]), "sample_weight must have the same length"),
        (torch.ones(4, 1), "sample_weight must be a 1-d tensor"),
    ],
)
def test_penalties_reject_bad_weights(w, match):
    proba = torch.tensor([0.9, 0.7, 0.2, 0.4])
    groups = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=match):
        demographic_parity_penalty(proba, groups, sample_weight=w)
    with pytest.raises(ValueError, match=match):
        equalized_odds_penalty(
            proba, torch.tensor([1, 0, 1, 0]), groups, sample_weight=w
        )


# --------------------------------------------------------------------------
# reweighing
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# scorers
# --------------------------------------------------------------------------


def test_scorers_pass_routed_sample_weight():
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_validate

    from sklearn_winfair.metrics import (
        demographic_parity_gap,
        err_scorer,
        make_fairness_scorer,
        weighted_f1_error,
    )

    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + rng.normal(size=120) > 0).astype(int)
    s = rng.choice(["a", "b"], size=120)
    w = rng.uniform(0.1, 3.0, size=120)
    cv = KFold(3)
    with sklearn.config_context(enable_metadata_routing=True):
        dp = make_fairness_scorer("demographic_parity")
        clf = LogisticRegression().set_fit_request(sample_weight=False)
        result = cross_validate(
            clf, X, y, cv=cv, scoring={"dp": dp, "err": err_scorer},
            params={"sensitive_features": s, "sample_weight": w},
            return_estimator=True,
        )
    for k, (_, test) in enumerate(cv.split(X)):
        y_pred = result["estimator"][k].predict(X[test])
        gap = demographic_parity_gap(
            y[test], y_pred, sensitive_features=s[test], sample_weight=w[test]
        )
        unweighted = demographic_parity_gap(
            y[test], y_pred, sensitive_features=s[test]
        )
        assert gap != pytest.approx(unweighted)  # the weights matter here
        assert result["test_dp"][k] == pytest.approx(-gap)
        err = weighted_f1_error(y[test], y_pred, sample_weight=w[test])
        assert result["test_err"][k] == pytest.approx(-err)


# --------------------------------------------------------------------------
# the estimator: deterministic parts of a weighted fit
# --------------------------------------------------------------------------
#: One SGD epoch at lr=1e-12 leaves the head as the weighted SVD made it.
AT_INIT = dict(max_epochs=1, solver="sgd", lr=1e-12, random_state=0)


def _init_fit(backbone, X, y, s, w=None, **params):
    clf = FairLowRankFineTuner(backbone, **{**AT_INIT, **params})
    return clf.fit(X, y, sensitive_features=s, sample_weight=w)


def _assert_same_init(weighted, expanded):
    """Same importances and the same factorized head (the SVD at init)."""
    assert weighted.importance_.keys() == expanded.importance_.keys()
    for name, ihat in weighted.importance_.items():
        np.testing.assert_allclose(ihat, expanded.importance_[name], rtol=1e-10)
    if expanded.group_importance_ is not None:
        for name, rows in weighted.group_importance_.items():
            np.testing.assert_allclose(
                rows, expanded.group_importance_[name], rtol=1e-10, atol=1e-300
            )
    assert weighted.ranks_ == expanded.ranks_
    ours = weighted.net_.module_.state_dict()
    theirs = expanded.net_.module_.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        torch.testing.assert_close(value, theirs[key], rtol=1e-6, atol=1e-7)


HEADS = {
    # (backbone factory, n_classes, extra parameters)
    "linear head, cached": (mlp_backbone, 2, dict(rank=1)),
    "mlp head, uncached": (
        mlp_head_backbone, 3, dict(rank=2, head="1", cache_features=False,
                                  batch_size=64),
    ),
}


@pytest.mark.parametrize("importance", ["neutral", "fisher", "uniform"])
@pytest.mark.parametrize("head", list(HEADS))
def test_zero_weight_equals_dropping_the_row(importance, head):
    factory, n_classes, params = HEADS[head]
    X, y, s = make_task(n=200, n_classes=n_classes)
    w = (np.random.RandomState(1).uniform(size=200) < 0.7).astype(float)
    kept = w > 0
    weighted = _init_fit(factory(), X, y, s, w, importance=importance, **params)
    dropped = _init_fit(factory(), X[kept], y[kept], s[kept], importance=importance,
                        **params)
    _assert_same_init(weighted, dropped)
    if importance != "uniform":  # and the weights do change the importances
        plain = _init_fit(factory(), X, y, s, importance=importance, **params)
        name = next(iter(plain.importance_))
        assert not np.allclose(plain.importance_[name], weighted.importance_[name])


@pytest.mark.parametrize("importance", ["neutral", "fisher"])
@pytest.mark.parametrize("head", list(HEADS))
def test_integer_weight_equals_repeating_the_row(importance, head):
    factory, n_classes, params = HEADS[head]
    X, y, s = make_task(n=200, n_classes=n_classes)
    counts = np.random.RandomState(2).randint(0, 4, size=200)
    rows = np.repeat(np.arange(200), counts)
    weighted = _init_fit(factory(), X, y, s, counts.astype(float),
                         importance=importance, **params)
    repeated = _init_fit(factory(), X[rows], y[rows], s[rows], importance=importance,
                         **params)
    _assert_same_init(weighted, repeated)


def test_probe_weights_equal_repeated_rows():
    """head_init='probe': the logistic regression sees the weights."""
    X, y, s = make_task(n=200, n_classes=3)
    counts = np.random.RandomState(3).randint(0, 4, size=200)
    rows = np.repeat(np.arange(200), counts)
    params = dict(head_init="probe", rank=2, importance="fisher")
    weighted = _init_fit(mlp_backbone(n_out=2), X, y, s, counts.astype(float),
                         **params)
    repeated = _init_fit(mlp_backbone(n_out=2), X[rows], y[rows], s[rows], **params)
    plain = _init_fit(mlp_backbone(n_out=2), X, y, s, **params)
    # lbfgs stops at its tolerance on two different (equivalent) objectives
    for name, ihat in weighted.importance_.items():
        np.testing.assert_allclose(ihat, repeated.importance_[name], rtol=1e-3)
        assert not np.allclose(ihat, plain.importance_[name], rtol=1e-3)
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-4
    )
    assert np.abs(weighted.predict_proba(X) - plain.predict_proba(X)).max() > 1e-2


@pytest.mark.parametrize("penalty", ["demographic_parity", "equalized_odds"])
def test_weights_reach_the_training_loss_and_the_penalty(penalty):
    """Weighted training: zero-weight rows are absent from loss and penalty."""
    X, y, s = make_task(n=200)
    w = (np.random.RandomState(4).uniform(size=200) < 0.6).astype(float)
    kept = w > 0
    # batch_size above n: one batch holding the same rows, in any order
    params = dict(rank=None, max_epochs=3, solver="sgd", lr=0.5,
                  batch_size=512, random_state=0,
                  fairness_penalty=penalty, penalty_strength=2.0)
    weighted = FairLowRankFineTuner(mlp_backbone(), **params).fit(
        X, y, sensitive_features=s, sample_weight=w)
    dropped = FairLowRankFineTuner(mlp_backbone(), **params).fit(
        X[kept], y[kept], sensitive_features=s[kept])
    plain = FairLowRankFineTuner(mlp_backbone(), **params).fit(
        X, y, sensitive_features=s)
    np.testing.assert_allclose(
        weighted.net_.history[:, "train_loss"], dropped.net_.history[:, "train_loss"],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        weighted.predict_proba(X), dropped.predict_proba(X), atol=1e-5
    )
    assert np.abs(weighted.predict_proba(X) - plain.predict_proba(X)).max() > 1e-3


@pytest.mark.parametrize(
    "w, match",
    [
        (-np.ones(100), "Negative values in data passed to `sample_weight`"),
        (np.r_[np.nan, np.ones(99)], "Input sample_weight contains NaN"),
        (np.ones(99), r"sample_weight.shape == \(99,\), expected \(100,\)"),
        (np.zeros(100), "Sample weights must contain at least one non-zero"),
    ],
)
def test_invalid_sample_weight(w, match):
    X, y, s = make_task(n=100)
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, max_epochs=1)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y, sensitive_features=s, sample_weight=w)


# --------------------------------------------------------------------------
# metadata routing
# --------------------------------------------------------------------------


def test_sample_weight_routed_through_pipeline_and_cross_validation():
    import sklearn
    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, s = make_task(n=200)
    w = np.random.RandomState(5).uniform(0.0, 3.0, size=200)
    params = dict(rank=1, **AT_INIT)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(mlp_backbone(), **params).set_fit_request(
            sample_weight=True, sensitive_features=True
        )
        clf.set_score_request(sample_weight=True)  # the default (accuracy) score
        pipe = make_pipeline(FunctionTransformer(), clf)
        pipe.fit(X, y, sample_weight=w, sensitive_features=s)
        cv = KFold(2)
        result = cross_validate(
            pipe, X, y, cv=cv, return_estimator=True,
            params={"sample_weight": w, "sensitive_features": s},
        )
    _assert_same_init(pipe[-1], _init_fit(mlp_backbone(), X, y, s, w, rank=1))
    for k, (train, _) in enumerate(cv.split(X)):
        direct = _init_fit(mlp_backbone(), X[train], y[train], s[train], w[train],
                           rank=1)
        _assert_same_init(result["estimator"][k][-1], direct)


def test_sample_weight_routed_through_grid_search_to_fit_and_scorers():
    import sklearn
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_winfair.metrics import err_scorer, make_fairness_scorer

    X, y, s = make_task(n=200)
    w = np.random.RandomState(6).uniform(0.0, 3.0, size=200)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **AT_INIT)
        clf.set_fit_request(sample_weight=True, sensitive_features=True)
        search = GridSearchCV(
            clf, {"alpha": [0.2, 0.8]}, cv=KFold(2), refit="err",
            scoring={
                "err": err_scorer, "dp": make_fairness_scorer("demographic_parity")
            },
        )
        search.fit(X, y, sample_weight=w, sensitive_features=s)
    best = search.best_params_["alpha"]
    _assert_same_init(
        search.best_estimator_, _init_fit(mlp_backbone(), X, y, s, w, rank=1,
                                          alpha=best)
    )
    assert np.isfinite(search.cv_results_["mean_test_dp"]).all()


# --------------------------------------------------------------------------
# fairlearn reductions
# --------------------------------------------------------------------------
#: fairlearn 0.15's reductions use pandas idioms that pandas 3 deprecates
#: (new Series keys set with .at, a float Series set to bools).
FAIRLEARN_ON_PANDAS_3 = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:fairlearn.*"
)
REDUCTION_BASES = {
    "TL": dict(rank=None),
    "uniform": dict(rank=1, importance="uniform"),
    "fisher": dict(rank=1, importance="fisher"),
}


def _reduction(kind, base):
    from fairlearn.reductions import (
        DemographicParity,
        ExponentiatedGradient,
        GridSearch,
    )

    if kind == "ExponentiatedGradient":
        return ExponentiatedGradient(base, constraints=DemographicParity(), max_iter=4)
    return GridSearch(base, constraints=DemographicParity(), grid_size=3)


@FAIRLEARN_ON_PANDAS_3
@pytest.mark.parametrize("kind", ["ExponentiatedGradient", "GridSearch"])
@pytest.mark.parametrize("base", list(REDUCTION_BASES))
def test_fairlearn_reductions_fit_and_predict(kind, base):
    X, y, s = make_task(n=200)
    clf = FairLowRankFineTuner(
        mlp_backbone(), max_epochs=2, lr=1e-2, random_state=0, **REDUCTION_BASES[base]
    )
    mitigator = _reduction(kind, clf).fit(X, y, sensitive_features=s)
    fitted = [
        p for p in mitigator.predictors_ if isinstance(p, FairLowRankFineTuner)
    ]
    assert fitted, "every oracle call fell back to a constant predictor"
    assert all(p.groups_ is None for p in fitted)  # fit without groups
    y_pred = mitigator.predict(X)
    assert y_pred.shape == (200,) and set(np.unique(y_pred)) <= {0, 1}


@FAIRLEARN_ON_PANDAS_3
def test_fairlearn_reduction_passes_the_weights():
    """The oracle's weights reach the fit: its importances are the weighted ones."""
    from fairlearn.reductions import DemographicParity, GridSearch

    X, y, s = make_task(n=200)
    base = FairLowRankFineTuner(mlp_backbone(), rank=1, importance="fisher",
                                **AT_INIT)
    search = GridSearch(base, constraints=DemographicParity(), grid_size=3)
    search.fit(X, y, sensitive_features=s)
    importances = [
        p.importance_["2"] for p in search.predictors_
        if isinstance(p, FairLowRankFineTuner)
    ]
    assert len(importances) >= 2
    assert not np.allclose(importances[0], importances[1])


@FAIRLEARN_ON_PANDAS_3
def test_neutral_inside_a_reduction_raises_a_clear_error():
    """Reductions call fit(X, y, sample_weight=w) without groups: say what works."""
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient

    X, y, s = make_task(n=200)
    base = FairLowRankFineTuner(mlp_backbone(), rank=1, importance="neutral",
                                max_epochs=1)
    mitigator = ExponentiatedGradient(base, constraints=DemographicParity())
    with pytest.raises(
        ValueError,
        match=r"sensitive_features is required when importance='neutral'.*"
        r"importance='fisher', 'uniform' or rank=None",
    ):
        mitigator.fit(X, y, sensitive_features=s)
