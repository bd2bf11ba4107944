"""The solvers (sklearn_winfair._training): convergence, determinism, penalties."""

import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import make_task, mlp_backbone, mlp_head_backbone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from skorch.callbacks import Callback
from torch import nn

from sklearn_winfair import FairLowRankFineTuner, paper_metrics
from sklearn_winfair.exceptions import TrainingDivergedError

#: Settings of the tests moved from test_estimator.py (Adam-era; L-BFGS ignores lr)
FAST = dict(max_epochs=5, lr=0.05, batch_size=64, random_state=0)


def _random_trunk_task(n, seed=0):
    """Issue 15's case: random 8 -> 16 ReLU trunk, random 16 -> 2 head, linear labels."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(2 * n, 8)).astype(np.float32)
    y = (X @ rng.normal(size=8) > 0).astype(int)
    with torch.no_grad():
        feats = torch.relu(backbone[0](torch.from_numpy(X))).numpy()
    return backbone, X, y, feats


@pytest.mark.parametrize("n", [400, 4000])
def test_default_fit_matches_logistic_regression_on_frozen_features(n):
    """A head that does not fit the task is fitted: within 0.01 of LogisticRegression.

    Before the L-BFGS default, the default fit left this head at 0.45 (N=400)
    and 0.78 (N=4,000) test accuracy where LogisticRegression reached 0.887
    and 0.899.
    """
    backbone, X, y, feats = _random_trunk_task(n)
    train, test = slice(0, n), slice(n, 2 * n)
    ref = LogisticRegression(max_iter=1000).fit(feats[train], y[train])
    clf = FairLowRankFineTuner(backbone, rank=None, random_state=0)
    clf.fit(X[train], y[train])
    assert clf.solver_ == "lbfgs" and 0 < clf.n_iter_ < clf.max_iter
    ours, theirs = clf.score(X[test], y[test]), ref.score(feats[test], y[test])
    assert ours >= theirs - 0.01, (ours, theirs)


def test_lbfgs_stopped_by_max_iter_warns_and_records_n_iter():
    """max_iter reached without meeting tol: ConvergenceWarning, n_iter_ == max_iter."""
    backbone, X, y, _ = _random_trunk_task(200)
    clf = FairLowRankFineTuner(backbone, rank=None, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"solver='lbfgs' reached max_iter=2"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2
    assert np.isfinite(clf.net_.history[-1, "train_loss"])


def test_lbfgs_is_deterministic_without_a_seed():
    """Full-batch L-BFGS draws nothing: two unseeded fits are bit-identical."""
    backbone, X, y, _ = _random_trunk_task(200)
    a = FairLowRankFineTuner(backbone, rank=1, importance="uniform").fit(X, y)
    b = FairLowRankFineTuner(backbone, rank=1, importance="uniform").fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_solver_validation_names_the_conflict():
    """lbfgs needs cached features and no per-epoch validation; errors say so."""
    X, y, s = make_task(n=60)
    with pytest.raises(ValueError, match="solver='lbfgs' trains on the cached"):
        FairLowRankFineTuner(mlp_backbone(), rank=None, solver="lbfgs",
                             cache_features=False).fit(X, y)
    with pytest.raises(ValueError, match="early_stopping=True monitors"):
        FairLowRankFineTuner(mlp_backbone(), rank=None, solver="lbfgs",
                             early_stopping=True).fit(X, y)
    auto = FairLowRankFineTuner(mlp_backbone(), rank=None, early_stopping=True,
                                max_epochs=2, random_state=0).fit(X, y)
    assert auto.solver_ == "adam"


def test_auto_takes_adam_for_a_head_of_several_layers():
    """'auto' is L-BFGS for a one-layer head, Adam for a 16-8-3 head (non-convex).

    An explicit solver="lbfgs" still runs L-BFGS on the 2-layer head.
    """
    X, y, _ = make_task(n=120, n_classes=3)
    one = FairLowRankFineTuner(mlp_backbone(n_out=3), rank=None).fit(X, y)
    two = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=None,
                               max_epochs=2, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        forced = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=None,
                                      solver="lbfgs", max_iter=5).fit(X, y)
    assert (one.solver_, two.solver_, forced.solver_) == ("lbfgs", "adam", "lbfgs")


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_every_solver_takes_the_penalty_and_weights(solver):
    """A DP penalty narrows the DP gap with each solver; weights are accepted."""
    X, y, s = make_task(n=400)
    w = np.random.RandomState(0).uniform(0.5, 1.5, size=len(y))
    params = dict(rank=None, solver=solver, random_state=0, lr=0.05, max_epochs=20)
    plain = FairLowRankFineTuner(mlp_backbone(), **params).fit(
        X, y, sensitive_features=s, sample_weight=w)
    fair = FairLowRankFineTuner(
        mlp_backbone(), fairness_penalty="demographic_parity", penalty_strength=5.0,
        **params).fit(X, y, sensitive_features=s, sample_weight=w)
    gap = {name: paper_metrics(y, m.predict(X), sensitive_features=s)["dp_gap"]
           for name, m in (("plain", plain), ("fair", fair))}
    assert gap["fair"] < gap["plain"], gap


def _fit_proba(backbone, X, y, out, key):
    clf = FairLowRankFineTuner(backbone, rank=1, importance="uniform",
                               solver="adam", max_epochs=3, batch_size=16,
                               early_stopping=True, validation_fraction=0.2,
                               random_state=7)
    out[key] = clf.fit(X, y).predict_proba(X)


def test_seeded_fits_in_threads_are_bit_identical_and_global_rng_untouched():
    """Shuffles and hold-outs come from the fit's own generator, not torch's global one."""
    X, y, _ = make_task(n=300)
    backbones = {k: mlp_backbone() for k in ["sequential", 0, 1, 2, 3]}
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    out = {}
    _fit_proba(backbones["sequential"], X, y, out, "sequential")
    threads = [threading.Thread(target=_fit_proba, args=(backbones[k], X, y, out, k))
               for k in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(4):
        np.testing.assert_array_equal(out[k], out["sequential"])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()


def test_nan_loss_stops_training_with_a_clear_error(task):
    """A loss that becomes NaN raises TrainingDivergedError (a FloatingPointError)."""
    X, y, s = task
    backbone = mlp_backbone()
    with torch.no_grad():
        backbone[2].weight.mul_(1e38)  # logits overflow to inf -> NaN loss
    with pytest.raises(TrainingDivergedError, match="became (nan|inf)"):
        FairLowRankFineTuner(backbone, rank=None, **FAST).fit(X, y)
    assert issubclass(TrainingDivergedError, FloatingPointError)


def test_net_params_cannot_override_estimator_parameters(task):
    """net_params={"lr": ...} raises and names the estimator's own parameter."""
    X, y, s = task
    with pytest.raises(ValueError, match=r"net_params sets \['lr'\]"):
        FairLowRankFineTuner(
            mlp_backbone(), rank=1, net_params={"lr": 0.1}, **FAST
        ).fit(X, y, sensitive_features=s)
    FairLowRankFineTuner(
        mlp_backbone(), rank=1, net_params={"optimizer__weight_decay": 1e-4},
        solver="adam", **FAST
    ).fit(X, y, sensitive_features=s)


def test_fit_restores_torch_threads(task):
    """A small head trains on one thread; the caller's setting is restored."""
    X, y, s = task
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    before = torch.get_num_threads()
    seen = []

    class Record(Callback):
        def on_epoch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())

    FairLowRankFineTuner(mlp_backbone(), rank=1, callbacks=[Record()], **FAST).fit(
        X, y, sensitive_features=s
    )
    try:
        assert set(seen) == {1}
        assert torch.get_num_threads() == before == 2
    finally:
        torch.set_num_threads(caller)


# ------------------------------------------- reproducibility, clone, pickle
def test_same_seed_same_predictions_and_rng_left_alone(task):
    """Two fits with one random_state agree; the global torch RNG is not reseeded."""
    X, y, s = task
    backbone = mlp_backbone()
    state = torch.get_rng_state()
    a = FairLowRankFineTuner(backbone, rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    assert torch.equal(torch.get_rng_state(), state)
    b = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_early_stopping_holds_out_a_fraction_and_stops(task):
    """early_stopping uses skorch's EarlyStopping on a stratified hold-out."""
    X, y, s = task
    clf = FairLowRankFineTuner(mlp_backbone(), rank=None, max_epochs=200, lr=0.05,
                               early_stopping=True, validation_fraction=0.2,
                               n_iter_no_change=3, random_state=0)
    clf.fit(X, y)
    history = clf.net_.history
    assert len(history) < 200
    assert history[-1, "train_batch_count"] == int(np.ceil(240 / 128))
    assert "valid_loss" in history[-1]
    with pytest.raises(ValueError, match="cannot be combined with train_split"):
        FairLowRankFineTuner(mlp_backbone(), early_stopping=True,
                             train_split=lambda ds, y: (ds, None)).fit(X, y)
