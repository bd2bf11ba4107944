"""FairLowRankFineTuner with ``target_modules``: adapters inside the backbone.

What these tests prove: a fit that barely trains predicts what the
pre-trained model predicts (the split ``W = W_res + A B`` is exact at
initialization, for every init, in an MLP, a CNN and a tiny BERT); only the
adapters' factors and the head receive gradients; ``predict_proba`` equals
the merged export, which loads into a fresh copy of the user's model; the
fitted attributes describe the adapted layers; a grid search over
``target_modules``, ``rank`` and ``alpha`` runs with routed groups; sample
weights reach the inner Fisher as row counts; a penalty narrows the gap it
penalizes; pickling, ``clone`` and the feature store's rule (the frozen
prefix's outputs only) hold; and every
misuse raises an error that says what to do.
"""

import copy
import pickle

import numpy as np
import pytest
import sklearn
import torch
import transformers
from conftest import TinyResNet, deep_mlp, make_task, two_channel_image_task
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback
from skorch.helper import SliceDict
from torch import nn

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair._adapters import LowRankAdapter
from sklearn_winfair.metrics import demographic_parity_gap

FAST = dict(max_epochs=3, batch_size=64, random_state=0)
#: A fit that moves no parameter measurably: the model as initialized.
NO_STEP = dict(solver="sgd", lr=1e-12, max_epochs=1, batch_size=64, random_state=0)


# ------------------------------------------------------------------- models
mlp = deep_mlp  # 5-16-8-2, head "4" (conftest)


def cnn(seed=0):
    """conftest's TinyResNet (BatchNorm in eval), trained a little so BN is not id."""
    torch.manual_seed(seed)
    model = TinyResNet(width=6)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=16, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config).eval()


image_task = two_channel_image_task  # conftest


def text_task(n=96, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 50, size=(n, 8)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[:, 6:] = rng.randint(0, 2, size=(n, 2))
    y = (ids[:, 0] > 25).astype(int)
    s = np.where(rng.uniform(size=n) < 0.4 + 0.2 * y, "f", "m")
    return {"input_ids": ids, "attention_mask": mask}, y, s


def _pretrained_proba(model, X):
    with torch.no_grad():
        if isinstance(X, dict):
            out = model(**{k: torch.as_tensor(v) for k, v in X.items()})
        else:
            out = model(torch.as_tensor(X))
        logits = getattr(out, "logits", out)
        return torch.softmax(logits.double(), 1).numpy()


#: (backbone builder, data builder, target_modules, expected adapted layers)
CASES = {
    "mlp": (mlp, make_task, ["0", "2"], ["0", "2"]),
    # a convolution of the last block and the one below (the layer before
    # the head is the pooling, which has no weight)
    "cnn": (cnn, image_task, ["layer1.conv2", "stem.0"], ["stem.0", "layer1.conv2"]),
    # the last block's attention and feed-forward layers
    "bert": (tiny_bert, text_task, ["query", "value", "intermediate.dense"],
             ["bert.encoder.layer.0.attention.self.query",
              "bert.encoder.layer.0.attention.self.value",
              "bert.encoder.layer.0.intermediate.dense"]),
}


# ---------------------------------------------------- exactness and export
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("importance,adapter_init",
                         [("neutral", "svd"), ("fisher", "svd"),
                          ("uniform", "svd"), ("neutral", "lora")])
def test_model_at_initialization_is_the_pretrained_one(case, importance,
                                                       adapter_init):
    """A fit that takes one step of lr=1e-12 predicts as the pre-trained model.

    rank=2 truncates every adapted layer (W_res is not 0), so this is the
    split W = W_res + A B being exact, not a trivially full-rank one.
    """
    build, data, targets, expected = CASES[case]
    X, y, s = data()
    clf = FairLowRankFineTuner(build(), target_modules=targets, rank=2,
                               importance=importance, adapter_init=adapter_init,
                               **NO_STEP).fit(X, y, sensitive_features=s)
    assert clf.adapted_layers_ == expected
    assert all(isinstance(clf.model_.get_submodule(n), LowRankAdapter)
               for n in expected)
    if adapter_init == "svd":
        assert all(e > 0 for e in clf.truncation_error_.values())  # truncated
    np.testing.assert_allclose(clf.predict_proba(X), _pretrained_proba(build(), X),
                               atol=2e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_predict_equals_merged_export_which_loads_into_a_fresh_copy(case):
    """After real training, the merged export is the user's architecture.

    Its state_dict loads strictly into a fresh copy of the backbone, that
    copy predicts what predict_proba says, and the training moved it away
    from the pre-trained model (so the equality is not the trivial one).
    """
    build, data, targets, expected = CASES[case]
    X, y, s = data()
    clf = FairLowRankFineTuner(build(), target_modules=targets, rank=2, lr=1e-2,
                               **FAST).fit(X, y, sensitive_features=s)
    exported = clf.export_module()
    assert not any(isinstance(m, LowRankAdapter) for m in exported.modules())
    fresh = build(seed=1)
    fresh.load_state_dict(exported.state_dict())  # strict: every key matches
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(_pretrained_proba(fresh, X), proba, atol=1e-5)
    assert np.abs(proba - _pretrained_proba(build(), X)).max() > 1e-3
    # the inner layers changed too (not only the head)
    before = build().state_dict()
    after = exported.state_dict()
    assert any(not torch.equal(before[f"{n}.weight"], after[f"{n}.weight"])
               for n in expected)
    # merge=False keeps the adapters and computes the same
    unmerged = clf.export_module(merge=False)
    assert isinstance(unmerged.get_submodule(expected[0]), LowRankAdapter)
    np.testing.assert_allclose(_pretrained_proba(unmerged, X), proba, atol=1e-5)


# --------------------------------------------------------------- gradients
class _RecordGrads(Callback):
    """The parameters that received a gradient in any training step."""

    def initialize(self):
        self.params_ = []
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.params_ += [p for _, p in named_parameters if p.grad is not None]


@pytest.mark.parametrize("cache_features", [True, False])
def test_only_the_adapters_and_the_head_receive_gradients(cache_features):
    """Every trained parameter is an adapter's A or B, or the head's.

    With the frozen prefix cached (``"0"``, ``"1"``) and without (the whole
    model at each step); the trained parameters are named in ``model_``.
    """
    X, y, s = make_task()
    clf = FairLowRankFineTuner(mlp(), target_modules=["2"], rank=2,
                               cache_features=cache_features,
                               callbacks=[("grads", _RecordGrads())], **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ == (["0", "1"] if cache_features else None)
    trained = {id(p) for p in dict(clf.net_.callbacks_)["grads"].params_}
    grads = {n for n, p in clf.model_.named_parameters() if id(p) in trained}
    assert grads == {"2.A", "2.B", "4.weight", "4.bias"}
    # the frozen parts equal the pre-trained weights; the residual W - A0 B0
    # is frozen too (only the merged layer moved)
    state, pre = clf.model_.state_dict(), mlp().state_dict()
    for key in ("0.weight", "0.bias", "2.base_layer.bias"):
        assert torch.equal(state[key], pre[key.replace("base_layer.", "")])
    assert clf.n_trainable_params_ == (16 * 2 + 2 * 8) + (8 * 2 + 2)
    assert clf.factorized_layers_ == ["2"] and clf.ranks_ == {"2": 2}
    assert clf.solver_ == "adam"


def test_fitted_attributes_describe_the_adapted_layers():
    """ranks_ are capped at min(d, k); importances have one entry per input."""
    X, y, s = make_task()
    clf = FairLowRankFineTuner(mlp(), target_modules=r"0|2", rank=6,
                               **FAST).fit(X, y, sensitive_features=s)
    assert clf.ranks_ == {"0": 5, "2": 6}
    assert clf.truncation_error_["0"] == pytest.approx(0.0, abs=1e-6)  # full rank
    assert clf.truncation_error_["2"] > 0
    assert {k: v.shape for k, v in clf.importance_.items()} == {"0": (5,),
                                                               "2": (16,)}
    assert {k: v.shape for k, v in clf.group_importance_.items()} == {
        "0": (2, 5), "2": (2, 16)}
    np.testing.assert_array_equal(clf.neutral_importance_["2"],
                                  clf.importance_["2"])
    lora = FairLowRankFineTuner(mlp(), target_modules=["2"], rank=2,
                                adapter_init="lora", **FAST).fit(X, y)
    # LoRA needs no groups and uses no importance
    assert lora.group_importance_ is None and lora.neutral_importance_ is None
    np.testing.assert_array_equal(lora.importance_["2"], np.ones(16))
    assert lora.truncation_error_ == {"2": 1.0}
    head_only = FairLowRankFineTuner(mlp(), rank=2, **FAST).fit(
        X, y, sensitive_features=s)
    assert head_only.adapted_layers_ == [] and head_only.factorized_layers_ == ["4"]


# ------------------------------------------------- weights, penalty, search
def test_sample_weight_counts_rows_in_the_inner_fisher():
    """Integer weights give the inner Fisher of the rows repeated that often.

    Weight 0 drops a row, weight 2 counts it twice: the per-group importance
    of an adapted layer equals the one of the expanded data set.
    """
    X, y, s = make_task(n=200)
    w = np.random.RandomState(1).randint(0, 3, size=len(y))
    rep = np.repeat(np.arange(len(y)), w)
    kw = dict(target_modules=["2"], rank=2, **NO_STEP)
    weighted = FairLowRankFineTuner(mlp(), **kw).fit(
        X, y, sensitive_features=s, sample_weight=w)
    expanded = FairLowRankFineTuner(mlp(), **kw).fit(
        X[rep], y[rep], sensitive_features=s[rep])
    np.testing.assert_allclose(weighted.group_importance_["2"],
                               expanded.group_importance_["2"], rtol=1e-6)
    unweighted = FairLowRankFineTuner(mlp(), **kw).fit(X, y, sensitive_features=s)
    assert not np.allclose(unweighted.group_importance_["2"],
                           weighted.group_importance_["2"], rtol=1e-3)


def test_demographic_parity_penalty_narrows_the_training_gap():
    """A strong DP penalty through the adapters lowers Delta_DP on the rows."""
    X, y, s = make_task(n=400)
    kw = dict(target_modules=["0", "2"], rank=2, lr=1e-2, max_epochs=20,
              batch_size=100, random_state=0)
    plain = FairLowRankFineTuner(mlp(), **kw).fit(X, y, sensitive_features=s)
    fair = FairLowRankFineTuner(mlp(), fairness_penalty="demographic_parity",
                                penalty_strength=20.0, **kw)
    fair.fit(X, y, sensitive_features=s)
    gap = demographic_parity_gap(y, plain.predict(X), sensitive_features=s)
    gap_fair = demographic_parity_gap(y, fair.predict(X), sensitive_features=s)
    assert gap_fair < gap - 0.05


def test_grid_search_over_target_modules_rank_and_alpha_with_routed_groups():
    """GridSearchCV clones, routes sensitive_features, and refits the best."""
    X, y, s = make_task(n=160)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(mlp(), rank=2, **FAST)
        clf.set_fit_request(sensitive_features=True)
        grid = {"target_modules": [None, ["2"], ["0", "2"]], "rank": [1, 2],
                "alpha": [0.3, 0.5]}
        search = GridSearchCV(clf, grid, cv=2).fit(X, y, sensitive_features=s)
    assert len(search.cv_results_["params"]) == 12
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert best.adapted_layers_ == (best.target_modules or [])


def test_text_model_with_slicedict_grid_search():
    """A tiny BERT's attention adapters fit through a SliceDict grid search."""
    X, y, s = text_task()
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(tiny_bert(), target_modules=["query"], **FAST)
        clf.set_fit_request(sensitive_features=True)
        search = GridSearchCV(clf, {"rank": [1, 2]}, cv=2)
        search.fit(SliceDict(**X), y, sensitive_features=s)
    assert search.best_estimator_.ranks_ == {
        "bert.encoder.layer.0.attention.self.query": search.best_params_["rank"]}


def test_probe_head_for_new_classes_with_adapters():
    """head_init="probe" fits a 3-class head, then the adapters train under it."""
    X, y, s = make_task(n=150, n_classes=3)
    labels = np.array(["lo", "mid", "hi"])[y]
    clf = FairLowRankFineTuner(mlp(), target_modules=["2"], head_init="probe",
                               rank=2, **FAST).fit(X, labels, sensitive_features=s)
    assert set(clf.classes_) == {"lo", "mid", "hi"}
    assert clf.export_module()[4].out_features == 3
    assert clf.score(X, labels) > 0.5


# ----------------------------------------------------- pickling, clone, store
def test_pickled_estimator_with_adapters_predicts_the_same():
    """The trunk differs from the backbone, so it is pickled whole and restored."""
    X, y, s = make_task()
    clf = FairLowRankFineTuner(mlp(), target_modules=["0", "2"], rank=2,
                               **FAST).fit(X, y, sensitive_features=s)
    restored = pickle.loads(pickle.dumps(clf))
    assert isinstance(restored.model_.get_submodule("2"), LowRankAdapter)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    twin = clone(clf)
    assert twin.get_params()["target_modules"] == ["0", "2"]
    assert not hasattr(twin, "model_")


def test_memory_stores_the_frozen_prefix_only(tmp_path):
    """memory= holds the output of the steps below the adapter ("0", "1").

    What the adapters change (the head's input) is never stored, so predict
    does not read the store; a cold fit, a warm fit and a fit without
    memory predict the same.
    """
    X, y, s = make_task()
    kw = dict(target_modules=["2"], rank=2, **FAST)
    cold = FairLowRankFineTuner(mlp(), memory=str(tmp_path), **kw)
    cold.fit(X, y, sensitive_features=s)
    assert cold.frozen_prefix_ == ["0", "1"] and cold._feature_key is None
    assert any(p.is_file() for p in tmp_path.rglob("*"))
    warm = FairLowRankFineTuner(mlp(), memory=str(tmp_path), **kw)
    warm.fit(X, y, sensitive_features=s)
    without = FairLowRankFineTuner(mlp(), **kw).fit(X, y, sensitive_features=s)
    for other in (warm, without):
        np.testing.assert_array_equal(cold.predict_proba(X), other.predict_proba(X))


def test_backbone_is_not_modified():
    """fit works on a copy: the user's backbone keeps its layers and weights."""
    X, y, s = make_task()
    backbone = mlp()
    before = copy.deepcopy(backbone.state_dict())
    FairLowRankFineTuner(backbone, target_modules=["2"], rank=2, **FAST).fit(
        X, y, sensitive_features=s)
    assert not any(isinstance(m, LowRankAdapter) for m in backbone.modules())
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("params,error,match", [
    ({"rank": None}, ValueError, r"needs a rank, but rank=None"),
    ({"solver": "lbfgs"}, ValueError, r"no features to cache. Use solver='adam'"),
    ({"target_modules": ["nope"]}, ValueError, r"matched no module of the model"),
    ({"target_modules": ["4"]}, ValueError, r"is the head '4' or inside it"),
    ({"target_modules": ["1"]}, ValueError, r"matched '1', a ReLU"),
    ({"target_modules": [2]}, TypeError, r"list of str, got a list holding"),
    ({"target_modules": 3}, sklearn.utils._param_validation.InvalidParameterError,
     r"'target_modules' parameter"),
    ({"adapter_init": "pissa"}, sklearn.utils._param_validation.InvalidParameterError,
     r"'adapter_init' parameter"),
])
def test_errors_say_what_is_wrong(params, error, match):
    """Each misuse fails before any forward pass, with a message that helps."""
    X, y, s = make_task(n=40)
    kw = {"target_modules": ["2"], **params}
    with pytest.raises(error, match=match):
        FairLowRankFineTuner(mlp(), **kw).fit(X, y, sensitive_features=s)


def test_target_modules_errors_come_before_any_forward_pass():
    """A bad target_modules fails without running the backbone once."""
    X, y, s = make_task(n=40)
    backbone = mlp()
    calls = []
    backbone.register_forward_pre_hook(lambda module, args: calls.append(1))
    for params in ({"target_modules": ["nope"]}, {"target_modules": ["4"]},
                   {"target_modules": ["2"], "rank": None},
                   {"target_modules": ["2"], "solver": "lbfgs"}):
        with pytest.raises(ValueError, match="target_modules"):
            FairLowRankFineTuner(backbone, **params).fit(X, y, sensitive_features=s)
    assert calls == []


def test_neutral_needs_groups_but_lora_does_not():
    """Groups are needed where the neutral importance is used, and only there."""
    X, y, _ = make_task(n=40)
    with pytest.raises(ValueError, match="sensitive_features is required when "
                                         "importance='neutral'"):
        FairLowRankFineTuner(mlp(), target_modules=["2"], **FAST).fit(X, y)
    FairLowRankFineTuner(mlp(), target_modules=["2"], adapter_init="lora",
                         **FAST).fit(X, y)


def test_half_precision_trunk_keeps_its_dtype_and_factors_train_in_float32():
    """A bf16 backbone: residual layers stay bf16, A and B are float32.

    The export is the user's bf16 architecture again, and its predictions
    agree with the estimator's (which runs the head in float64) on all but
    near-tie rows.
    """
    X, y, s = make_task()
    backbone = mlp().to(torch.bfloat16)
    clf = FairLowRankFineTuner(backbone, target_modules=["0", "2"], rank=2,
                               lr=1e-2, **FAST).fit(X, y, sensitive_features=s)
    adapter = clf.model_.get_submodule("0")  # the first layer: input dtype rule
    assert adapter.A.dtype == torch.float32
    assert adapter.base_layer.weight.dtype == torch.bfloat16
    exported = clf.export_module()
    assert {p.dtype for p in exported.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        pred = exported(torch.from_numpy(X).to(torch.bfloat16)).argmax(1).numpy()
    assert np.mean(pred == clf.predict(X)) >= 0.98


def test_early_stopping_with_adapters_stops_on_the_held_out_loss():
    """early_stopping runs with adapters: it stops before max_epochs on the
    held-out loss, and the model it keeps is the one exported."""
    X, y, s = make_task()
    clf = FairLowRankFineTuner(mlp(), target_modules=["2"], rank=2, lr=0.05,
                               early_stopping=True, n_iter_no_change=2,
                               max_epochs=40, batch_size=64, random_state=0)
    clf.fit(X, y, sensitive_features=s)
    valid = [h["valid_loss"] for h in clf.net_.history]
    assert len(valid) < 40  # stopped early
    best = int(np.argmin(valid))
    assert clf.net_.history[best]["valid_loss_best"]
    proba = clf.predict_proba(X)
    exported = clf.export_module()
    np.testing.assert_allclose(_pretrained_proba(exported, X), proba, atol=1e-5)


def test_fairness_frontier_over_an_estimator_with_adapters():
    """FairFrontierCV fits adapter candidates beside TL (the head alone).

    Its TL candidate (``importances`` holding None) sets ``rank=None``, which
    with ``target_modules`` would be an error: the frontier drops the
    adapters there, as TL means.
    """
    from sklearn_winfair.model_selection import FairFrontierCV

    X, y, s = make_task(n=300)
    est = FairLowRankFineTuner(mlp(), target_modules=["2"], rank=2, **FAST)
    front = FairFrontierCV(est, importances=["neutral", None],
                           penalty_strengths=[0.0], n_bootstrap=20,
                           random_state=0).fit(X, y, sensitive_features=s)
    assert set(front.front_["importance"]) == {"OURS", "TL"}
    expected = [] if front.best_params_.get("rank", 2) is None else ["2"]
    assert front.best_estimator_.adapted_layers_ == expected
    assert front.predict(X, sensitive_features=s).shape == (len(y),)


# -------------------------------------------------- scikit-learn's checks
from conftest import any_width_backbone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from test_common import EXPECTED_FAILED  # noqa: E402

#: The checks fit without sensitive_features: the group-free inits (the
#: pooled Fisher's SVD and LoRA) on the 10 -> 16 layer "1"; a probe head
#: serves the 2- and 3-class checks.
ADAPTER_ESTIMATORS = [
    FairLowRankFineTuner(any_width_backbone(), target_modules=["1"], rank=2,
                         importance=importance, adapter_init=init,
                         head_init="probe", max_epochs=5, lr=0.05, batch_size=32,
                         random_state=0)
    for importance, init in (("fisher", "svd"), ("uniform", "lora"))
]


ADAPTER_EXPECTED_FAILED = dict(
    EXPECTED_FAILED,
    check_methods_sample_order_invariance=(
        "the same float32 rounding as check_methods_subset_invariance: the "
        "adapted layer runs in the trunk at predict, and permuted rows took "
        "another BLAS path, moving one decision value by 5.6e-8 (relative "
        "2.7e-7, above the check's 1e-7) in our run."
    ),
)


@parametrize_with_checks(ADAPTER_ESTIMATORS,
                         expected_failed_checks=lambda est: ADAPTER_EXPECTED_FAILED)
def test_sklearn_compatible_estimator_with_adapters(estimator, check):
    """With target_modules the estimator passes scikit-learn's API checks."""
    check(estimator)
