"""Tests for FairLowRankFineTuner (sklearn_winfair._estimator)."""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_task, mlp_backbone, mlp_head_backbone
from sklearn.base import clone
from torch import nn

from sklearn_winfair import (
    FairLowRankFineTuner,
    demographic_parity_gap,
)
from sklearn_winfair._factorize import LowRankLinear, weighted_svd
from sklearn_winfair._store import SPOT_ROWS, VERIFY_ROWS
from sklearn_winfair.exceptions import HeadClassesWarning, SmallGroupWarning

FAST = dict(max_epochs=5, lr=0.05, batch_size=64, random_state=0)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _low_rank_product(layer):
    """A @ B of a fitted LowRankLinear, in the paper's orientation (d x k)."""
    return (layer.first.weight.T @ layer.second.weight.T).detach().double().numpy()


# ----------------------------------------------------------------- basics
def test_fit_predict_binary_with_factorized_linear_head(task):
    """The default head is the last Linear; rank 1 factorizes it; the model learns."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.head_name_ == "2" and clf.factorized_layers_ == ["2"]
    assert clf.rank_ == 1
    assert clf.n_trainable_params_ == 16 * 1 + 1 * 2 + 2
    assert isinstance(clf.model_.get_submodule("2"), LowRankLinear)
    assert clf.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(clf.groups_) == ["a", "b"]
    assert clf.group_importance_["2"].shape == (2, 16)
    assert clf.neutral_importance_["2"].shape == (16,)


def test_rank_none_is_plain_fine_tuning_of_the_head(task):
    """rank=None (TL) factorizes nothing and trains the dense head."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=None, **FAST).fit(X, y)
    assert clf.factorized_layers_ == [] and clf.rank_ is None
    assert clf.n_trainable_params_ == 16 * 2 + 2
    assert isinstance(clf.model_.get_submodule("2"), nn.Linear)


def test_multilayer_head_factorizes_each_layer_at_min_rank_in_out():
    """In an MLP head every Linear is factorized, at min(rank, in, out)."""
    X, y, s = make_task(n_classes=3)
    clf = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=2, **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.factorized_layers_ == ["1.0", "1.2"]
    assert clf.ranks_ == {"1.0": 2, "1.2": 2}
    assert set(clf.group_importance_) == {"1.0", "1.2"}
    assert clf.group_importance_["1.0"].shape == (2, 16)
    assert clf.group_importance_["1.2"].shape == (2, 8)
    clf5 = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=5, **FAST)
    clf5.fit(X, y, sensitive_features=s)
    # 16 -> 8 at rank 5; 8 -> 3 at its full rank 3
    assert clf5.ranks_ == {"1.0": 5, "1.2": 3}
    assert isinstance(clf5.model_.get_submodule("1.2"), LowRankLinear)


def test_rank_above_layer_size_is_full_rank_and_silent(task):
    """rank >= min(in, out) factorizes at full rank, without any warning."""
    X, y, s = task
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = FairLowRankFineTuner(mlp_backbone(), rank=4, **FAST).fit(
            X, y, sensitive_features=s
        )
    assert clf.factorized_layers_ == ["2"] and clf.ranks_ == {"2": 2}
    assert clf.n_trainable_params_ == 16 * 2 + 2 * 2 + 2


def test_string_multiclass_targets_and_dataframe_input():
    """String classes, 3 classes and DataFrame X (feature_names_in_) work."""
    X, y, s = make_task(n_classes=3)
    names = np.array(["low", "mid", "high"])[y]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    clf = FairLowRankFineTuner(mlp_backbone(n_out=3), rank=2, **FAST)
    with pytest.warns(HeadClassesWarning, match=r"\['high', 'low', 'mid'\]"):
        clf.fit(frame, names, sensitive_features=pd.Series(s))
    assert list(clf.classes_) == ["high", "low", "mid"]
    assert list(clf.feature_names_in_) == list(frame.columns)
    assert set(clf.predict(frame)) <= set(clf.classes_)
    assert clf.predict_proba(frame).shape == (len(X), 3)


def test_probe_init_for_a_head_with_other_classes():
    """head_init='probe' fits a new output layer when the head's size differs."""
    X, y, s = make_task(n_classes=4)
    with pytest.raises(ValueError, match="head_init='probe'"):
        FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
            X, y, sensitive_features=s
        )
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, head_init="probe", **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.predict_proba(X).shape == (len(X), 4)
    assert clf.score(X, y) > 0.5


def test_export_module_reproduces_predictions(task):
    """The exported plain torch module gives the estimator's logits."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    module = clf.export_module()
    with torch.no_grad():
        proba = torch.softmax(module(torch.from_numpy(X)), dim=1).double().numpy()
    # merged: W = A B in float32, so equal up to float rounding
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5)
    assert not any(p.requires_grad for p in module.parameters())
    assert isinstance(module[2], nn.Linear)
    unmerged = clf.export_module(merge=False)
    assert isinstance(unmerged[2], LowRankLinear)
    with torch.no_grad():
        proba = torch.softmax(unmerged(torch.from_numpy(X)), dim=1).double().numpy()
    # predict runs the head in float64, the export in float32
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=1e-12)


# -------------------------------------------------- method and baselines
def test_uniform_importance_is_plain_svd_of_the_head(task):
    """importance='uniform' starts from the plain truncated SVD (f+SVD)."""
    X, y, s = task
    backbone = mlp_backbone(n_in=5, hidden=16, n_out=3)
    X3, y3, s3 = make_task(n_classes=3)
    clf = FairLowRankFineTuner(
        backbone, rank=2, importance="uniform", solver="sgd",
        lr=1e-12, max_epochs=1, random_state=0,
    ).fit(X3, y3)
    W = backbone[2].weight.detach().double().numpy().T
    A, B = weighted_svd(W, np.ones(16), 2)
    np.testing.assert_allclose(
        _low_rank_product(clf.model_[2]), A @ B, atol=1e-5
    )
    np.testing.assert_array_equal(clf.importance_["2"], np.ones(16))
    assert clf.neutral_importance_ is None


def test_alpha_one_uses_only_the_first_groups_importance(task):
    """alpha=1 gives Ihat_N = sqrt(I_g0) with g0 the first group in sorted order."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, alpha=1.0, **FAST)
    clf.fit(X, y, sensitive_features=s)
    I = clf.group_importance_["2"]
    expected = np.sqrt(I[0])
    expected = np.maximum(expected, 1e-6 * expected.max())
    np.testing.assert_allclose(clf.neutral_importance_["2"], expected)
    clf0 = FairLowRankFineTuner(mlp_backbone(), rank=1, alpha=0.0, **FAST)
    clf0.fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(
        clf0.neutral_importance_["2"],
        np.maximum(np.sqrt(I[1]), 1e-6 * np.sqrt(I[1]).max()),
    )


def test_fisher_importance_is_the_pooled_fisher(task):
    """importance='fisher' (FWSVD) equals the row-count weighted mean of I_s."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, importance="fisher", **FAST)
    clf.fit(X, y, sensitive_features=s)
    counts = np.array([(s == "a").sum(), (s == "b").sum()], dtype=float)
    pooled = counts / counts.sum() @ clf.group_importance_["2"]
    np.testing.assert_allclose(clf.importance_["2"], np.sqrt(pooled), rtol=1e-10)
    # and it needs no groups at all
    FairLowRankFineTuner(mlp_backbone(), rank=1, importance="fisher", **FAST).fit(X, y)


def test_neutral_initialisation_is_the_weighted_svd():
    """Before training, the factorized head is the Ihat_N-weighted SVD of W."""
    X, y, s = make_task(n_classes=3)
    backbone = mlp_backbone(n_out=3)
    clf = FairLowRankFineTuner(
        backbone, rank=1, solver="sgd", lr=1e-12, max_epochs=1,
        random_state=0,
    ).fit(X, y, sensitive_features=s)
    W = backbone[2].weight.detach().double().numpy().T
    A, B = weighted_svd(W, clf.neutral_importance_["2"], 1)
    np.testing.assert_allclose(_low_rank_product(clf.model_[2]), A @ B, atol=1e-5)


def test_more_than_two_groups_and_group_weights():
    """Three groups: uniform mean by default, group_weights otherwise, alpha refused."""
    X, y, _ = make_task(n=300)
    s = np.tile(["x", "y", "z"], 100)
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    clf.fit(X, y, sensitive_features=s)
    I = clf.group_importance_["2"]
    np.testing.assert_allclose(
        clf.neutral_importance_["2"], np.sqrt(I).mean(axis=0), rtol=1e-10
    )
    w = {"x": 2.0, "y": 1.0, "z": 1.0}
    clf_w = FairLowRankFineTuner(mlp_backbone(), rank=1, group_weights=w, **FAST)
    clf_w.fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(
        clf_w.neutral_importance_["2"], np.array([0.5, 0.25, 0.25]) @ np.sqrt(I),
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="alpha=0.7 only applies to two groups"):
        FairLowRankFineTuner(mlp_backbone(), rank=1, alpha=0.7, **FAST).fit(
            X, y, sensitive_features=s
        )
    with pytest.raises(ValueError, match="group_weights must have exactly one entry"):
        FairLowRankFineTuner(
            mlp_backbone(), rank=1, group_weights={"x": 1.0}, **FAST
        ).fit(X, y, sensitive_features=s)


def test_small_group_with_a_single_class_still_works(task):
    """A group of three rows, all of one class, is handled."""
    X, y, s = task
    s = s.astype(object)  # a "<U1" array would store "tiny" as "t"
    idx = np.flatnonzero(y == 1)[:3]
    s[:] = "big"
    s[idx] = "tiny"
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    with pytest.warns(SmallGroupWarning, match=r"'tiny': \{'0': 0, '1': 3\}"):
        clf.fit(X, y, sensitive_features=s)
    assert np.all(np.isfinite(clf.neutral_importance_["2"]))


def test_dead_features_do_not_give_nan():
    """Features that are zero on every row (dead ReLUs) give finite importances."""
    X, y, s = make_task()
    backbone = mlp_backbone()
    with torch.no_grad():
        backbone[0].bias[:8] = -100.0  # half of the hidden units never fire
    clf = FairLowRankFineTuner(backbone, rank=1, **FAST).fit(X, y, sensitive_features=s)
    ihat = clf.neutral_importance_["2"]
    assert np.all(np.isfinite(ihat)) and np.all(ihat > 0)
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_fairness_penalty_reduces_the_demographic_parity_gap():
    """A strong DP penalty gives a smaller selection-rate gap than none."""
    rng = np.random.RandomState(0)
    n = 600
    s = rng.choice(["a", "b"], size=n)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[:, 0] += np.where(s == "a", 1.0, -1.0)
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    kw = dict(rank=None, max_epochs=15, lr=1e-2, batch_size=100, random_state=0)
    plain = FairLowRankFineTuner(mlp_backbone(), **kw).fit(X, y, sensitive_features=s)
    fair = FairLowRankFineTuner(
        mlp_backbone(), fairness_penalty="demographic_parity",
        penalty_strength=5.0, **kw,
    ).fit(X, y, sensitive_features=s)
    gap_plain = demographic_parity_gap(y, plain.predict(X), sensitive_features=s)
    gap_fair = demographic_parity_gap(y, fair.predict(X), sensitive_features=s)
    assert gap_fair < gap_plain - 0.1


def test_equalized_odds_penalty_runs_with_any_importance(task):
    """The EO penalty combines with importance='uniform' and a factorized head."""
    X, y, s = task
    clf = FairLowRankFineTuner(
        mlp_backbone(), rank=1, importance="uniform",
        fairness_penalty="equalized_odds", **FAST,
    ).fit(X, y, sensitive_features=s)
    assert clf.factorized_layers_ == ["2"]


def test_no_feature_cache_gives_the_same_model(task):
    """cache_features=False trains the same head as the cached path."""
    X, y, s = task
    a = FairLowRankFineTuner(mlp_backbone(), rank=1, solver="adam", **FAST).fit(
        X, y, sensitive_features=s
    )
    b = FairLowRankFineTuner(mlp_backbone(), rank=1, cache_features=False,
                             solver="adam", **FAST)
    b.fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)
    for k, v in a.group_importance_.items():
        np.testing.assert_allclose(v, b.group_importance_[k], rtol=1e-5)


def test_clone_and_pickle_round_trips(task):
    """clone refits to the same model; pickle keeps identical predictions."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    again = clone(clf).fit(X, y, sensitive_features=s)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    deep = copy.deepcopy(clf)
    np.testing.assert_array_equal(deep.predict(X), clf.predict(X))


# ----------------------------------------------------------- verbosity
def test_verbose_zero_prints_nothing(task, capsys):
    """verbose=0 is silent; verbose=1 prints skorch's epoch log."""
    X, y, s = task
    FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(X, y, sensitive_features=s)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    FairLowRankFineTuner(mlp_backbone(), rank=1, verbose=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    out = capsys.readouterr()
    assert "train_loss" in out.out


def test_predict_before_fit_and_wrong_width(task):
    """predict before fit raises NotFittedError; another width raises ValueError."""
    from sklearn.exceptions import NotFittedError

    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :4])


def _count_rows(backbone):
    """Count the rows the backbone (and every deep copy of it) runs on."""
    rows = []
    backbone.register_forward_hook(lambda m, args, out: rows.append(len(args[0])))
    return rows


def test_memory_shares_features_across_fits(task, tmp_path):
    """With memory=, a second fit on the same rows runs the backbone on none."""
    X, y, s = task
    backbone = mlp_backbone()
    rows = _count_rows(backbone)
    a = FairLowRankFineTuner(backbone, rank=1, memory=str(tmp_path), **FAST)
    a.fit(X, y, sensitive_features=s)
    assert sum(rows) == len(X)
    b = FairLowRankFineTuner(copy.deepcopy(backbone), rank=1, alpha=0.9,
                             memory=str(tmp_path), **FAST)
    b.fit(X, y, sensitive_features=s)
    # only the check of the stored rows; the Fisher pass reuses them too
    assert sum(rows) == len(X) + VERIFY_ROWS
    # a fit on some new rows and some stored ones extracts only the new ones
    X2 = np.vstack([X[:50], X[:20] + 1.0])
    c = FairLowRankFineTuner(backbone, rank=1, memory=str(tmp_path), **FAST)
    c.fit(X2, np.r_[y[:50], y[:20]], sensitive_features=np.r_[s[:50], s[:20]])
    assert sum(rows) == len(X) + VERIFY_ROWS + 20 + SPOT_ROWS
    ref = FairLowRankFineTuner(backbone, rank=1, alpha=0.9, **FAST)
    ref.fit(X, y, sensitive_features=s)
    np.testing.assert_array_equal(b.predict_proba(X), ref.predict_proba(X))


class _InPlaceFirst(nn.Module):
    """Backbone whose first step writes into its input (x -= 1, in place)."""

    def __init__(self):
        super().__init__()
        self.body = mlp_backbone()

    def forward(self, x):
        x.sub_(1.0)
        return self.body(x)


def test_group_importance_matches_an_independent_fisher():
    """Each group's row equals the closed form on that group's rows and labels.

    Labels and groups are strings whose sorted order differs from their order of
    appearance, so any misalignment of codes, classes or rows would show.
    """
    X, y, s = make_task(n=200)
    labels = np.where(y == 1, "alpha", "zulu")  # class 0 of classes_ is "alpha"
    groups = np.where(s == "a", "zz", "aa")  # groups_[0] is "aa"
    backbone = mlp_backbone()
    clf = FairLowRankFineTuner(backbone, rank=1, head_classes=["alpha", "zulu"],
                               **FAST)
    clf.fit(X, labels, sensitive_features=groups)
    with torch.no_grad():
        feats = backbone[:2](torch.from_numpy(X)).double().numpy()
        W = backbone[2].weight.double().numpy().T
        b = backbone[2].bias.double().numpy()
    logits = feats @ W + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(2)[(labels == "zulu").astype(int)]
    rows = feats**2 * ((p - onehot) ** 2).sum(axis=1, keepdims=True)
    expected = np.vstack([rows[groups == "aa"].mean(0), rows[groups == "zz"].mean(0)])
    assert list(clf.groups_) == ["aa", "zz"]
    np.testing.assert_allclose(clf.group_importance_["2"], expected, rtol=1e-4,
                               atol=1e-9)


def test_memory_with_bfloat16_backbone(task, tmp_path):
    """memory= works for a bfloat16 backbone (numpy has no bfloat16)."""
    X, y, s = task
    backbone = mlp_backbone().to(torch.bfloat16)
    clf = FairLowRankFineTuner(backbone, rank=1, memory=str(tmp_path), **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.predict_proba(X).dtype == np.float64


