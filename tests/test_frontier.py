"""Tests of FairFrontierCV (model_selection/_frontier.py) and its sweeps."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from conftest import mlp_backbone
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    true_positive_rate,
)
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair._store import SPOT_ROWS, VERIFY_ROWS
from sklearn_winfair.metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    weighted_f1_error,
)
from sklearn_winfair.model_selection import FairFrontierCV
from sklearn_winfair.model_selection._sweep import (
    confusion,
    metrics_from_confusion,
    sweep_class_offsets,
    sweep_thresholds,
)

#: rows that went through any copy of the counting backbone's forward
SEEN = {"rows": 0}


class CountingBackbone(nn.Module):
    """A two-layer MLP that counts the rows of every forward call."""

    def __init__(self, n_in=4, n_out=2):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU())
        self.out = nn.Linear(16, n_out)

    def forward(self, x):
        SEEN["rows"] += len(x)
        return self.out(self.body(x))


def biased_task(n=1200, n_classes=2, seed=0):
    """Labels that depend on the group: plain models have a large DP gap."""
    rng = np.random.RandomState(seed)
    s = rng.choice(["a", "b"], size=n, p=[0.6, 0.4])
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 1] += np.where(s == "a", 1.0, -1.0)  # the group is visible in X
    score = X[:, 0] + 0.8 * X[:, 1]
    if n_classes == 2:
        y = (score > 0).astype(int)
    else:
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    return X, y, s


def tuner(n_out=2, **kw):
    params = dict(rank=2, max_epochs=15, lr=0.05, random_state=0,
                  importance="uniform")
    params.update(kw)
    return FairLowRankFineTuner(mlp_backbone(n_in=4, n_out=n_out), **params)


def frontier(**kw):
    params = dict(penalty_strengths=[0.0], n_bootstrap=20, random_state=0)
    params.update(kw)
    return FairFrontierCV(tuner(), **params)


# ---------------------------------------------------------------- the sweep
@pytest.mark.parametrize(
    "constraint", ["demographic_parity", "equalized_odds", "equalized_odds_max",
                   "equal_opportunity"])
def test_sweep_metrics_equal_the_package_metrics_on_hard_predictions(constraint):
    """Every swept point's error and gap equal our fairlearn-based metrics."""
    rng = np.random.RandomState(1)
    n = 300
    g = rng.randint(0, 2, size=n)
    y = rng.randint(0, 2, size=n)
    score = rng.normal(size=n) + y + 0.5 * g
    t, err, gap = sweep_thresholds(score, y, g, g, 2, 2, constraint=constraint,
                                   steps=6)
    assert len(t) > 10
    for i in range(0, len(t), 7):
        pred = (score > t[i][g]).astype(int)
        assert err[i] == pytest.approx(weighted_f1_error(y, pred))
        if constraint == "demographic_parity":
            ref = demographic_parity_gap(y, pred, sensitive_features=g)
        elif constraint == "equal_opportunity":
            ref = MetricFrame(metrics=true_positive_rate, y_true=y, y_pred=pred,
                              sensitive_features=g).difference()
        else:
            agg = "max" if constraint.endswith("max") else "sum"
            ref = equalized_odds_gap(y, pred, sensitive_features=g, agg=agg)
        assert gap[i] == pytest.approx(ref, abs=1e-12)


def test_weighted_confusion_matches_fairlearn_with_sample_weight():
    rng = np.random.RandomState(2)
    y, pred, g = rng.randint(0, 2, 50), rng.randint(0, 2, 50), rng.randint(0, 3, 50)
    w = rng.uniform(0.1, 2, 50)
    _, gap = metrics_from_confusion(confusion(y, pred, g, 3, 2, w),
                                    "demographic_parity")
    ref = demographic_parity_difference(y, pred, sensitive_features=g,
                                        sample_weight=w)
    assert gap == pytest.approx(ref)


def test_shared_sweep_reaches_every_cut_off():
    """One shared threshold: all distinct scores are cut-offs (plus both ends)."""
    score = np.array([0.1, 0.4, 0.4, 0.9])
    y = np.array([0, 1, 0, 1])
    g = np.array([0, 1, 0, 1])
    t, _, _ = sweep_thresholds(score, y, g, np.zeros(4, int), 2, 1,
                               constraint="demographic_parity", steps=None)
    assert sorted(np.unique((score[None] > t).sum(1))) == [0, 1, 3, 4]


def test_class_offsets_reduce_the_multiclass_gap():
    rng = np.random.RandomState(0)
    g = rng.randint(0, 2, 600)
    logits = rng.normal(size=(600, 3)) + np.outer(g, [1.5, 0, -1.5])
    y = logits.argmax(1)
    offsets, err, gap = sweep_class_offsets(logits, y, g, g, 2, 2, n_points=5)
    assert gap[0] > 0.3 and err[0] == 0
    assert gap[-1] < 0.05
    pred = (logits + offsets[-1][g]).argmax(1)
    ref = max(demographic_parity_gap(None, (pred == c).astype(int),
                                     sensitive_features=g) for c in range(3))
    assert gap[-1] == pytest.approx(ref)


# ---------------------------------------------------------------- the frontier
def test_tolerance_is_met_on_held_out_and_on_fresh_rows():
    """The constructed task has a large DP gap; per-group thresholds close it.

    2,000 held-out rows: with fewer, the choice among ~1,000 threshold points
    overfits the held-out gap (measured: 0.05 held out, 0.15 fresh at 300).
    """
    X, y, s = biased_task(n=4000)
    plain = clone(tuner()).fit(X, y, sensitive_features=s)
    X2, y2, s2 = biased_task(n=4000, seed=1)
    assert demographic_parity_gap(y2, plain.predict(X2), sensitive_features=s2) > 0.3
    f = frontier(tolerance=0.05, cv=0.5).fit(X, y, sensitive_features=s)
    best = f.front_.loc[f.best_index_]
    assert best["gap"] <= 0.05 and best["feasible"] and best["chosen"]
    assert f.front_["chosen"].sum() == 1
    assert best["post"] == "per_group" and f.group_dependent_
    feasible = f.front_[f.front_["feasible"]]
    assert best["error"] == feasible["error"].min()
    fresh = demographic_parity_gap(y2, f.predict(X2, sensitive_features=s2),
                                   sensitive_features=s2)
    assert fresh <= 0.08  # held-out tolerance 0.05 plus sampling slack
    assert {"error_low", "gap_high", "pareto"} <= set(f.front_.columns)
    assert (f.front_["gap_low"] <= f.front_["gap_high"]).all()


def test_no_feasible_point_warns_and_takes_the_smallest_gap():
    X, y, s = biased_task(n=400)
    f = frontier(tolerance=0.0, thresholds="none", n_bootstrap=0)
    with pytest.warns(UserWarning, match="No point of the front has a held-out"):
        f.fit(X, y, sensitive_features=s)
    assert f.front_.loc[f.best_index_, "gap"] == f.front_["gap"].min()


def test_fits_are_deterministic():
    X, y, s = biased_task(n=500)
    a = frontier().fit(X, y, sensitive_features=s)
    b = frontier().fit(X, y, sensitive_features=s)
    np.testing.assert_array_equal(a.predict_proba(X, sensitive_features=s),
                                  b.predict_proba(X, sensitive_features=s))
    np.testing.assert_array_equal(a.front_["gap_high"], b.front_["gap_high"])
    assert a.predict(X, s).tolist() == a.predict(X, s).tolist()


def test_candidates_and_refit_run_the_backbone_once_per_row():
    """Four candidates, two folds and the refit: each row is a forward pass once."""
    X, y, s = biased_task(n=300)
    est = FairLowRankFineTuner(CountingBackbone(), rank=2, max_epochs=2,
                               random_state=0)
    f = FairFrontierCV(est, penalty_strengths=[0.0, 1.0], importances=["neutral",
                       "uniform"], cv=2, n_bootstrap=0, random_state=0)
    SEEN["rows"] = 0
    f.fit(X, y, sensitive_features=s)
    assert len(f.front_["candidate"].unique()) == 4
    # every row once, plus the feature store's checks of stored rows against
    # the live backbone (VERIFY_ROWS per shard and process, SPOT_ROWS a call)
    extra = SEEN["rows"] - len(X)
    assert 0 <= extra <= 3 * VERIFY_ROWS + 30 * SPOT_ROWS, extra


@pytest.mark.parametrize("post", ["none", "shared", "per_group"])
def test_export_equals_predict_proba(post):
    X, y, s = biased_task(n=500)
    tol = {"none": 1.0, "shared": 1.0, "per_group": 0.02}[post]
    f = frontier(thresholds=post if post != "none" else "none", tolerance=tol)
    f.fit(X, y, sensitive_features=s)
    if post == "shared":  # force a shared point with a non-zero offset
        shared = f.front_[f.front_["post"] == "shared"]
        f.offsets_ = shared["offsets"].iloc[len(shared) // 2]
        f.group_dependent_ = False
    module = f.export_module()
    with torch.no_grad():
        if f.group_dependent_:
            out = module(torch.from_numpy(X), torch.as_tensor(
                np.searchsorted(f.groups_, s)))
        else:
            assert isinstance(module, nn.Sequential)  # the backbone's architecture
            out = module(torch.from_numpy(X))
    proba = torch.softmax(out.double(), 1).numpy()
    np.testing.assert_allclose(proba, f.predict_proba(X, sensitive_features=s),
                               atol=1e-5)
    assert (proba.argmax(1) == f.predict(X, sensitive_features=s)).all()


def test_inferred_groups_need_no_group_at_predict_and_export_in_one_module():
    X, y, s = biased_task(n=600)
    f = frontier(tolerance=0.05, groups_at_predict="inferred")
    f.fit(X, y, sensitive_features=s)
    assert 0.8 < f.group_accuracy_ <= 1.0  # the group is visible in X
    pred = f.predict(X)
    module = f.export_module()
    with torch.no_grad():
        out = module(torch.from_numpy(X))
    assert (out.argmax(1).numpy() == pred).all()
    np.testing.assert_allclose(torch.softmax(out.double(), 1).numpy(),
                               f.predict_proba(X), atol=1e-5)


def test_per_group_thresholds_without_groups_at_predict_raise():
    X, y, s = biased_task(n=500)
    f = frontier(tolerance=0.02, n_bootstrap=0).fit(X, y, sensitive_features=s)
    assert f.group_dependent_
    with pytest.raises(ValueError, match="predict needs sensitive_features"):
        f.predict(X)
    with pytest.raises(ValueError, match="were not seen in fit"):
        f.predict(X[:2], sensitive_features=["a", "zz"])


def test_multiclass_demographic_parity_and_binary_only_errors():
    X, y, s = biased_task(n=900, n_classes=3)
    est = FairLowRankFineTuner(mlp_backbone(n_in=4, n_out=3), rank=2, max_epochs=15,
                               lr=0.05, importance="uniform", solver="adam",
                               random_state=0)
    f = FairFrontierCV(est, tolerance=0.1, n_bootstrap=10, random_state=0)
    f.fit(X, y, sensitive_features=s)
    plain = f.front_[f.front_["post"] == "none"]["gap"].iloc[0]
    best = f.front_.loc[f.best_index_]
    assert plain > 0.2 and best["gap"] <= 0.1 and best["post"] == "per_group"
    assert f.offsets_.shape == (2, 3)
    with pytest.raises(ValueError, match="defined for a binary target"):
        FairFrontierCV(est, constraint="equalized_odds").fit(
            X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="needs a binary target"):
        FairFrontierCV(est, penalty_strengths=[0.0, 1.0]).fit(
            X, y, sensitive_features=s)


def test_argument_errors_name_the_argument():
    X, y, s = biased_task(n=200)
    with pytest.raises(ValueError, match="sensitive_features is required"):
        frontier().fit(X, y)
    with pytest.raises(ValueError, match="refit=False keeps the candidate"):
        frontier(refit=False, cv=3).fit(X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="test folds that share rows"):
        frontier(cv=ShuffleSplit(3, random_state=0)).fit(X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="importances must list"):
        frontier(importances=["tl"]).fit(X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="'tolerance' parameter"):
        frontier(tolerance=-1).fit(X, y, sensitive_features=s)


def test_reweighing_and_importance_families_are_on_the_front():
    X, y, s = biased_task(n=400)
    f = frontier(importances=["neutral", None], reweighing=True,
                 penalty_strengths=[0.0, 1.0], n_bootstrap=0, thresholds="none",
                 tolerance=1.0)
    f.fit(X, y, sensitive_features=s)
    assert set(f.front_["family"]) == {
        "OURS", "OURS + penalty", "OURS + reweighing", "TL", "TL + penalty",
        "TL + reweighing"}


def test_pickle_clone_and_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    X, y, s = biased_task(n=400)
    f = frontier(tolerance=0.05).fit(X, y, sensitive_features=s)
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g.predict_proba(X, s), f.predict_proba(X, s))
    assert g._owned_memory != f._owned_memory
    store = f._owned_memory
    f.fit(X, y, sensitive_features=s)  # a refit reuses the store it owns
    assert f._owned_memory == store
    assert clone(f).get_params()["tolerance"] == 0.05
    ax = f.plot_front()
    assert ax.get_xlabel().startswith("held-out demographic parity")


def test_pipeline_with_metadata_routing_and_grid_search():
    X, y, s = biased_task(n=400)
    w = np.ones(len(y))
    with sklearn.config_context(enable_metadata_routing=True):
        f = frontier(tolerance=0.05).set_fit_request(
            sensitive_features=True, sample_weight=True).set_predict_request(
            sensitive_features=True)
        pipe = make_pipeline(FunctionTransformer(), f)
        pipe.fit(X, y, sensitive_features=s, sample_weight=w)
        pred = pipe.predict(X, sensitive_features=s)
    assert (pred == f.predict(X, sensitive_features=s)).all()
    search = GridSearchCV(frontier(thresholds="shared", n_bootstrap=0),
                          {"tolerance": [0.02, 0.2]}, cv=2)
    search.fit(X, y, sensitive_features=s)
    assert search.best_params_["tolerance"] in (0.02, 0.2)
    # per-group thresholds: the groups reach score through metadata routing
    with sklearn.config_context(enable_metadata_routing=True):
        inner = frontier(n_bootstrap=0).set_fit_request(
            sensitive_features=True).set_score_request(sensitive_features=True)
        search = GridSearchCV(inner, {"tolerance": [0.02, 0.2]}, cv=2)
        search.fit(X, y, sensitive_features=s)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_duplicate_rows_share_the_feature_store():
    """Identical rows (Adult has some) get one key; later lookups still work."""
    X, y, s = biased_task(n=300)
    X[150:] = X[:150]
    f = frontier(n_bootstrap=0, tolerance=1.0, cv=2)
    f.fit(X, y, sensitive_features=s)
    assert len(f.predict(X, sensitive_features=s)) == len(X)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_candidates_fitted_on_the_features_equal_those_fitted_alone(solver, tmp_path):
    """Every family fitted on the trunk's output (as fit does) equals its fit on X.

    The frontier fits the first candidate on X and the others on the frozen
    features with the head alone as backbone; each of those must give the
    held-out logits of the same candidate fitted by itself on X, for every
    kind of candidate (TL, an importance, a penalty, reweighing, weights).
    """

    X, y, s = biased_task(n=400)
    w = np.random.RandomState(1).uniform(0.5, 2.0, size=len(y))
    f = FairFrontierCV(tuner(solver=solver, max_epochs=5),
                       penalty_strengths=[0.0, 1.0],
                       importances=["neutral", None, "fisher"], reweighing=True)
    candidates = f._candidates(2)
    train, test = np.arange(300), np.arange(300, 400)
    memory = str(tmp_path)
    first = f._fit_one(candidates[0][1], False, X, y, s, w, train, memory)
    base = f._feature_estimator(first)
    assert base is not None
    features = first._head_features(X).cpu()
    for info, params in candidates:
        alone = f._fit_one(params, info["reweighing"], X, y, s, w, train, memory)
        on_features = f._fit_one(params, info["reweighing"], features, y, s, w,
                                 train, None, base=base)
        np.testing.assert_allclose(
            on_features.decision_function(features[test]),
            alone.decision_function(X[test]), rtol=1e-5, atol=1e-6,
            err_msg=str(info))


def test_refit_false_returns_the_candidate_fitted_on_the_training_part():
    """With refit=False the chosen model predicts as that candidate fitted alone."""
    X, y, s = biased_task(n=400)
    f = frontier(penalty_strengths=[0.0, 2.0], importances=[None, "neutral"],
                 refit=False, cv=0.5, n_bootstrap=0, thresholds="none",
                 tolerance=1.0).fit(X, y, sensitive_features=s)
    train, _ = f._splits(y, np.searchsorted(f.groups_, s), len(y))[0]
    alone = clone(tuner()).set_params(**f.best_params_).fit(
        X[train], y[train], sensitive_features=s[train])
    np.testing.assert_allclose(f.best_estimator_.decision_function(X),
                               alone.decision_function(X), rtol=1e-5, atol=1e-6)


def test_bootstrap_intervals_equal_one_draw_at_a_time():
    """The blocked bootstrap gives, per point, the percentiles of direct draws."""
    from sklearn_winfair.model_selection._sweep import bootstrap_metrics

    rng = np.random.RandomState(0)
    y, g = rng.randint(3, size=300), rng.randint(2, size=300)
    w = rng.uniform(0.5, 2, size=300)
    preds = rng.randint(3, size=(7, 300))
    got = bootstrap_metrics(y, preds, g, 2, 3, w, "demographic_parity", 50, 4)
    draws = np.random.RandomState(4)
    counts = [np.bincount(draws.randint(300, size=300), minlength=300)
              for _ in range(50)]
    for i, pred in enumerate(preds):
        conf = np.stack([confusion(y, pred, g, 2, 3, w * c) for c in counts])
        err, gap = metrics_from_confusion(conf, "demographic_parity")
        np.testing.assert_allclose(got[:, i], [*np.percentile(err, [2.5, 97.5]),
                                               *np.percentile(gap, [2.5, 97.5])])


def test_adapters_keep_every_candidate_fitted_on_x():
    """With adapters inside the trunk the features move, so no shortcut is taken.

    The frontier then fits every candidate on X (through the store), and the
    refit=False model is the candidate as fitted.
    """
    X, y, s = biased_task(n=300)
    backbone = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8),
                             nn.ReLU(), nn.Linear(8, 2))
    est = FairLowRankFineTuner(backbone, target_modules=["2"], rank=2,
                               max_epochs=2, random_state=0)
    f = FairFrontierCV(est, penalty_strengths=[0.0, 1.0], cv=0.5, refit=False,
                       n_bootstrap=0, tolerance=1.0, thresholds="none",
                       random_state=0)
    f.fit(X, y, sensitive_features=s)
    assert f.best_estimator_.adapted_layers_ == ["2"]
    assert f._feature_estimator(f.best_estimator_) is None
    assert len(f.front_) == 2
