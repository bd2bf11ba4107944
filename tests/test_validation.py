"""Checks before any forward pass (sklearn_winfair._validation): groups, parameters, the head."""


import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_task, mlp_backbone
from torch import nn

from sklearn_winfair import (
    FairLowRankFineTuner,
)
from sklearn_winfair.exceptions import SmallGroupWarning

FAST = dict(max_epochs=5, lr=0.05, batch_size=64, random_state=0)


# ----------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "sensitive,error,match",
    [
        (None, ValueError, "sensitive_features is required when importance='neutral'"),
        (["a", "b"], ValueError, "sensitive_features has 2 rows but X has 300"),
        ("nan", ValueError, "sensitive_features contains missing values"),
        ("none", ValueError, "sensitive_features contains missing values"),
        ("one", ValueError, "sensitive_features has 1 distinct group"),
    ],
)
def test_bad_sensitive_features(task, sensitive, error, match):
    """Missing, wrong-length, NaN/None and single-group sensitive_features raise."""
    X, y, s = task
    if sensitive == "nan":
        sensitive = pd.Series(s).where(np.arange(len(s)) != 3, np.nan)
    elif sensitive == "none":
        sensitive = list(s)
        sensitive[5] = None
    elif sensitive == "one":
        sensitive = np.full(len(s), "a")
    with pytest.raises(error, match=match):
        FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
            X, y, sensitive_features=sensitive
        )


def test_penalty_requires_groups_and_binary_target(task):
    """A penalty without groups, or with a multiclass target, is refused."""
    X, y, s = task
    with pytest.raises(ValueError, match="fairness_penalty='demographic_parity'"):
        FairLowRankFineTuner(
            mlp_backbone(), rank=None, fairness_penalty="demographic_parity", **FAST
        ).fit(X, y)
    X3, y3, s3 = make_task(n_classes=3)
    with pytest.raises(ValueError, match="needs a binary target, but y has 3"):
        FairLowRankFineTuner(
            mlp_backbone(n_out=3), rank=None, fairness_penalty="equalized_odds",
            **FAST,
        ).fit(X3, y3, sensitive_features=s3)


@pytest.mark.parametrize(
    "params,match",
    [
        ({"alpha": 1.5}, "'alpha' parameter"),
        ({"alpha": -0.1}, "'alpha' parameter"),
        ({"rank": 0}, "'rank' parameter"),
        ({"importance": "pca"}, "'importance' parameter"),
        ({"penalty_strength": -1}, "'penalty_strength' parameter"),
        ({"backbone": "resnet"}, "'backbone' parameter"),
    ],
)
def test_bad_parameters(task, params, match):
    """Out-of-range or wrongly typed parameters name the parameter."""
    X, y, s = task
    kw = {"backbone": mlp_backbone(), **FAST, **params}
    backbone = kw.pop("backbone")
    with pytest.raises(ValueError, match=match):
        FairLowRankFineTuner(backbone, **kw).fit(X, y, sensitive_features=s)


def test_alpha_and_group_weights_together_are_refused(task):
    """Setting both alpha and group_weights is ambiguous and raises."""
    X, y, s = task
    with pytest.raises(ValueError, match="alpha=0.9 and group_weights are both set"):
        FairLowRankFineTuner(
            mlp_backbone(), rank=1, alpha=0.9, group_weights={"a": 1, "b": 1}, **FAST
        ).fit(X, y, sensitive_features=s)
    # alpha plays no part without the neutral importance: no error
    s3 = np.tile(["x", "y", "z"], 100)
    FairLowRankFineTuner(mlp_backbone(), rank=None, alpha=0.9, **FAST).fit(
        X, y, sensitive_features=s3
    )


def test_dict_of_sensitive_columns(task):
    """A dict {name: column} is accepted, as fairlearn accepts it."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    clf.fit(X, y, sensitive_features={"sex": s})
    assert list(clf.groups_) == ["a", "b"]


def test_intersectional_dataframe_groups(task):
    """Several sensitive columns are merged into intersectional groups."""
    X, y, s = task
    frame = pd.DataFrame({"sex": s, "age": np.tile(["young", "old"], len(s) // 2)})
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    clf.fit(X, y, sensitive_features=frame)
    assert list(clf.groups_) == ["a,old", "a,young", "b,old", "b,young"]


# --------------------------------------------------------------- errors
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_named(task):
    X, y, s = task
    with pytest.raises(ValueError, match=r"device='cuda' is not usable.*\['cpu'"):
        FairLowRankFineTuner(mlp_backbone(), device="cuda").fit(X, y)


def test_continuous_sensitive_column_warns_once_naming_the_small_groups():
    """A continuous column makes one group per value: one warning says so."""
    X, y, s = make_task()
    age = np.round(np.random.RandomState(0).uniform(18, 90, size=len(y)), 1)
    match = r"groups in sensitive_features.*pandas.cut"
    with pytest.warns(SmallGroupWarning, match=match) as rec:
        FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
            X, y, sensitive_features=age
        )
    assert len([w for w in rec if w.category is SmallGroupWarning]) == 1


class _CountingBackbone(nn.Module):
    """Counts its forward passes, to prove a check ran before any of them."""

    def __init__(self, n_out=2):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(5, 16)
        self.head = nn.Linear(16, n_out)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(torch.relu(self.body(x)))


@pytest.mark.parametrize("n_out, params, match", [
    (3, dict(rank=None), r"out_features=3 but y has 2 classes"),      # head size
    (2, dict(head="haed", rank=None), r"Did you mean \['head'\]"),               # head name
    (2, dict(importance="neutral"), "sensitive_features is required"),
    (2, dict(rank=None, solver="lbfgs", cache_features=False), "solver='lbfgs'"),
])
def test_cheap_checks_run_before_the_backbone_does(n_out, params, match):
    """The head's name and size, groups and solver fail before any forward pass."""
    X, y, s = make_task(n=60)
    backbone = _CountingBackbone(n_out=n_out)
    with pytest.raises(ValueError, match=match):
        FairLowRankFineTuner(backbone, **params).fit(X, y)
    assert backbone.calls == 0


def test_sample_weights_are_scaled_to_mean_one_in_float64():
    from sklearn_winfair._validation import scale_weights

    np.testing.assert_allclose(scale_weights(np.full(4, 1e-30)), np.ones(4))
    np.testing.assert_allclose(scale_weights(np.array([1e308, 1e308, 0.0])),
                               [1.5, 1.5, 0.0])
    with pytest.raises(ValueError, match="sample_weight sums to zero"):
        scale_weights(np.zeros(3))


def test_one_sensitive_features_checker_for_fit_and_reweighing():
    """fit and reweighing_weights share the checker; the message names the other side."""
    from sklearn_winfair.preprocessing import reweighing_weights

    X, y, s = make_task(n=60)
    with pytest.raises(ValueError, match="sensitive_features has 59 rows but X has 60"):
        FairLowRankFineTuner(mlp_backbone(), rank=None,
                             fairness_penalty="demographic_parity").fit(
            X, y, sensitive_features=s[:59])
    with pytest.raises(ValueError, match="sensitive_features has 59 rows but y has 60"):
        reweighing_weights(y, sensitive_features=s[:59])
