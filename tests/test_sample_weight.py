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


def test_reweighing_weights_equal_kamiran_calders_formula():
    from sklearn_winfair.preprocessing import reweighing_weights

    rng = np.random.default_rng(0)
    n = 500
    s = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < np.where(s == "a", 0.7, 0.3)).astype(int)
    w = reweighing_weights(y, sensitive_features=s)
    for g in "abc":
        for c in (0, 1):
            cell = (s == g) & (y == c)
            expected = (s == g).mean() * (y == c).mean() / cell.mean()
            np.testing.assert_allclose(w[cell], expected, rtol=1e-12)
    assert w.mean() == pytest.approx(1.0)
    # in the weighted data the label is independent of the group
    overall = np.average(y, weights=w)
    for g in "abc":
        assert np.average(y[s == g], weights=w[s == g]) == pytest.approx(overall)


def test_reweighing_weights_intersectional_and_errors():
    import pandas as pd

    from sklearn_winfair.preprocessing import reweighing_weights

    y = np.array([0, 1, 1, 0, 1, 0])
    frame = pd.DataFrame({"sex": list("mmmfff"), "race": list("xyxyxy")})
    merged = frame["sex"] + "," + frame["race"]
    np.testing.assert_array_equal(
        reweighing_weights(y, sensitive_features=frame),
        reweighing_weights(y, sensitive_features=merged),
    )
    with pytest.raises(ValueError, match="sensitive_features has 5 rows but y has 6"):
        reweighing_weights(y, sensitive_features=list("mmmff"))
    with pytest.raises(ValueError, match="Unknown label type"):
        reweighing_weights([0.5, 1.5], sensitive_features=["a", "b"])
    with pytest.raises(ValueError, match="y is empty"):
        reweighing_weights([], sensitive_features=[])


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
