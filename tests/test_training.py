"""The solvers (sklearn_winfair._training): convergence, determinism, penalties."""

import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import make_task, mlp_backbone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from sklearn_winfair import FairLowRankFineTuner, paper_metrics


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
