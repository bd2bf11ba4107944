"""The frozen prefix below the lowest adapted layer runs once per fit.

What these tests prove: the cut is found along a chain of ``nn.Sequential``
(nested ones composed), else in a ``torch.fx`` trace at a single value that
everything above reads (a residual block's input); ``suffix(prefix(x))`` is
the model; a fit on the cached prefix outputs predicts what a fit running the
whole model at every step predicts (``cache_features=False``), on an MLP
and a CNN with BatchNorm, for every init, with a penalty and sample
weights, in bfloat16 too; the prefix sees each row once in a fit, and once
over a whole grid search with ``memory=``; a model that cannot be split,
and one whose split does not reproduce it, fall back to the whole model
and say so; the store keys a prefix apart from the head's features.
"""

import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import TinyResNet, deep_mlp, make_task, two_channel_image_task
from sklearn.model_selection import GridSearchCV
from torch import nn

from sklearn_winfair import FairLowRankFineTuner, _features
from sklearn_winfair._adapters import (
    PROBE_ROWS,
    find_graph_cut,
    find_prefix_cut,
    inject_adapters,
    split_at_cut,
)
from sklearn_winfair._store import _ROOT, VERIFY_ROWS

FAST = dict(max_epochs=3, batch_size=64, lr=1e-2, random_state=0)


# ------------------------------------------------------------------- models
flat_mlp = deep_mlp  # 5-16-8-2, head "4" (conftest)


def paper_mlp(seed=0):
    """The reproduction harness's shape: ``Sequential(Sequential(trunk), head)``."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU())
    return nn.Sequential(trunk, nn.Linear(12, 2)).eval()


def seq_cnn(seed=0):
    """bench_fit's CNN shape, small: conv-BN-ReLU-pool, conv-ReLU, 2-layer head."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 2))
    model = nn.Sequential(OrderedDict(trunk=trunk, head=head))
    with torch.no_grad():  # BatchNorm that is not the identity
        model.trunk[1].running_mean.uniform_(-0.2, 0.2)
        model.trunk[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


image_task = two_channel_image_task  # conftest


#: (backbone, data, target_modules, expected frozen_prefix_)
CASES = {
    "mlp": (paper_mlp, make_task, ["0.2"], ["0.0", "0.1"]),
    # the last block's conv and the layer before the head
    "cnn": (seq_cnn, image_task, ["trunk.4", "head.0"],
            ["trunk.0", "trunk.1", "trunk.2", "trunk.3"]),
}


# ------------------------------------------------------------ the cut itself
def test_cut_composes_across_nested_sequentials():
    """The cut descends into the Sequential holding the lowest adapted layer."""
    assert find_prefix_cut(paper_mlp(), ["0.2"]) == ((("", 0), ("0", 2)), None)
    # the lowest of several names decides, whatever their order
    assert find_prefix_cut(seq_cnn(), ["head.0", "trunk.4"])[0] == (
        ("", 0), ("trunk", 4))
    assert find_prefix_cut(flat_mlp(), ["2"])[0] == (("", 2),)


def test_split_is_the_model_and_shares_its_modules():
    """suffix(prefix(x)) == model(x); the parts hold the model's own modules."""
    model = seq_cnn()
    adapted, _ = inject_adapters(model, ["trunk.4", "head.0"], rank=2, init="uniform")
    prefix, suffix, pre, post = split_at_cut(adapted, find_prefix_cut(adapted,
                                                                      ["trunk.4"])[0])
    assert pre == ["trunk.0", "trunk.1", "trunk.2", "trunk.3"]
    assert post == ["trunk.4", "trunk.5", "trunk.6", "trunk.7", "head"]
    assert suffix[0] is adapted.trunk[4] and suffix[4] is adapted.head
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(suffix(prefix(x)), adapted(x))
    assert not adapted.trunk[1].training  # modes untouched


def test_no_cut_without_a_sequential_chain():
    """None and why: another root class, an overridden forward, nothing below."""
    cut, reason = find_prefix_cut(TinyResNet(), ["layer1.conv2"])
    assert cut is None and "TinyResNet" in reason

    class SkipsAChild(nn.Sequential):
        def forward(self, x):
            return self[-1](x)

    cut, reason = find_prefix_cut(SkipsAChild(nn.Linear(5, 5), nn.Linear(5, 2)), ["1"])
    assert cut is None and "forward is Sequential's own" in reason
    cut, reason = find_prefix_cut(flat_mlp(), ["0", "2"])
    assert cut is None and "nothing runs before" in reason and "'0'" in reason
    # a step that is not a plain Sequential goes whole above the cut
    model = nn.Sequential(nn.Linear(5, 5),
                          SkipsAChild(nn.Linear(5, 5), nn.Linear(5, 2)))
    assert find_prefix_cut(model, ["1.1"])[0] == (("", 1),)


# -------------------------------------------- same results, prefix run once
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("importance,adapter_init",
                         [("neutral", "svd"), ("fisher", "svd"),
                          ("uniform", "svd"), ("neutral", "lora")])
def test_cached_prefix_fit_equals_whole_model_fit(case, importance, adapter_init):
    """With a DP penalty and sample weights, the cache changes nothing but cost.

    The inner Fisher (on the suffix, fed the cached outputs) equals the one
    through the whole model, and so do the trained model's probabilities.
    """
    build, data, targets, prefix = CASES[case]
    X, y, s = data()
    w = np.random.RandomState(1).uniform(0.2, 2.0, size=len(y))
    kw = dict(target_modules=targets, rank=2, importance=importance,
              adapter_init=adapter_init, fairness_penalty="demographic_parity",
              penalty_strength=0.5, **FAST)
    cached = FairLowRankFineTuner(build(), **kw).fit(
        X, y, sensitive_features=s, sample_weight=w)
    whole = FairLowRankFineTuner(build(), cache_features=False, **kw).fit(
        X, y, sensitive_features=s, sample_weight=w)
    assert cached.frozen_prefix_ == prefix and whole.frozen_prefix_ is None
    if cached.group_importance_ is not None:
        for name, rows in cached.group_importance_.items():
            np.testing.assert_allclose(rows, whole.group_importance_[name],
                                       rtol=1e-5, atol=1e-12)
    p_cached, p_whole = cached.predict_proba(X), whole.predict_proba(X)
    np.testing.assert_allclose(p_cached, p_whole, atol=1e-5)
    # training moved the model: the equality is not that of two untrained ones
    assert not np.allclose(p_cached, FairLowRankFineTuner(
        build(), **dict(kw, max_epochs=1, lr=1e-12)).fit(
        X, y, sensitive_features=s, sample_weight=w).predict_proba(X), atol=1e-3)


def test_bfloat16_trunk_keeps_its_dtype_in_the_cache():
    """A bf16 trunk's prefix output is cached in bf16; results as the whole model's."""
    X, y, s = make_task()
    kw = dict(target_modules=["0.2"], rank=2, **FAST)
    cached = FairLowRankFineTuner(paper_mlp().bfloat16(), **kw).fit(
        X, y, sensitive_features=s)
    whole = FairLowRankFineTuner(paper_mlp().bfloat16(), cache_features=False,
                                 **kw).fit(X, y, sensitive_features=s)
    assert cached.frozen_prefix_ == ["0.0", "0.1"]
    np.testing.assert_allclose(cached.predict_proba(X), whole.predict_proba(X),
                               atol=1e-5)


class _RowCounter:
    """Counts the rows a module's forward sees (survives the fit's deepcopy)."""

    def __init__(self, module):
        self.rows = []
        module.register_forward_hook(self)

    def __call__(self, module, args, out):
        self.rows.append(len(args[0]))

    def __deepcopy__(self, memo):
        return self  # the fit's copy of the model reports here too


@pytest.mark.parametrize("cache_features", [True, False])
def test_prefix_sees_each_row_once_per_fit(cache_features):
    """Rows through the first conv in a fit: n once, plus fixed checks.

    The checks: one batch of the whole model (the head-is-last check, as
    without adapters) and PROBE_ROWS rows four times (the prefix, the whole
    model and the prefix on each half before the adapters, the whole
    adapted model after).
    Without the cache the conv sees every row once for the Fisher and once
    per epoch.
    """
    X, y, s = image_task(n=150)
    backbone = seq_cnn()
    counter = _RowCounter(backbone.trunk[0])
    clf = FairLowRankFineTuner(backbone, target_modules=["trunk.4"], rank=2,
                               cache_features=cache_features, **FAST)
    clf.fit(X, y, sensitive_features=s)
    n, first_batch = len(y), min(FAST["batch_size"], len(y))
    if cache_features:
        assert sum(counter.rows) == n + first_batch + 4 * PROBE_ROWS
    else:
        assert sum(counter.rows) == first_batch + n + FAST["max_epochs"] * n


def test_grid_search_with_memory_sends_each_row_through_the_prefix_once(
        tmp_path, monkeypatch):
    """Over 2 ranks x 2 folds + the refit, the prefix pass runs each row once.

    Beyond that only the store's verification sample of stored rows is
    recomputed (VERIFY_ROWS per later fit at most); without memory, every
    fit runs its own rows (3 n in all here). The grid's choice is the same.
    """
    X, y, s = make_task(n=200)
    seen = []
    run = _features._run_prefix

    def counting(prefix, data, *args):
        seen.append(len(data))
        return run(prefix, data, *args)

    monkeypatch.setattr(_features, "_run_prefix", counting)
    grid = {"rank": [1, 2]}
    results = {}
    for memory in (str(tmp_path), None):
        seen.clear()
        est = FairLowRankFineTuner(paper_mlp(), target_modules=["0.2"],
                                   importance="uniform", memory=memory, **FAST)
        search = GridSearchCV(est, grid, cv=2).fit(X, y)
        results[memory] = (sum(seen), search.best_params_,
                           search.cv_results_["mean_test_score"])
    n = len(y)
    assert results[None][0] == 3 * n  # 4 fits on n / 2 rows, the refit on n
    assert n <= results[str(tmp_path)][0] <= n + 3 * VERIFY_ROWS
    assert results[str(tmp_path)][1] == results[None][1]
    np.testing.assert_allclose(results[str(tmp_path)][2], results[None][2])


def test_store_keys_the_prefix_apart_from_the_head_features(tmp_path):
    """A head-only fit and an adapter fit share a folder without colliding."""
    X, y, s = make_task()
    head_only = FairLowRankFineTuner(paper_mlp(), rank=None, memory=str(tmp_path),
                                     **FAST).fit(X, y)
    kw = dict(target_modules=["0.2"], importance="uniform", rank=2, **FAST)
    with_memory = FairLowRankFineTuner(paper_mlp(), memory=str(tmp_path), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped a file of another width"
        with_memory.fit(X, y)
    folders = [p for p in (tmp_path / _ROOT).iterdir() if p.is_dir()]
    assert len(folders) == 2  # the head's features, the prefix's outputs
    without = FairLowRankFineTuner(paper_mlp(), **kw).fit(X, y)
    np.testing.assert_array_equal(with_memory.predict_proba(X),
                                  without.predict_proba(X))
    assert head_only.frozen_prefix_ is None


# ---------------------------------------------------------------- fallbacks
def test_unsplittable_model_falls_back_to_the_whole_model(capsys):
    """A non-Sequential backbone fits as before; the summary line says why."""
    X, y, s = image_task()
    clf = FairLowRankFineTuner(TinyResNet(width=6).eval(),
                               target_modules=["layer1.conv2"], rank=2, verbose=1,
                               **FAST).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None
    out = capsys.readouterr().out
    assert "whole model at each step" in out and "TinyResNet" in out
    assert clf.score(X, y) > 0.4


def test_split_that_lies_falls_back_to_the_whole_model(capsys):
    """A hook on a container makes the chain lie: the check catches it.

    The trunk's forward hook doubles its output, which running its steps
    one by one skips. The fit then runs the whole model (with the hook) at
    every step, as cache_features=False does, and predicts what it does.
    """
    def lying():
        model = paper_mlp()
        model[0].register_forward_hook(_double)
        return model

    X, y, s = make_task()
    kw = dict(target_modules=["0.2"], rank=2, verbose=1, **FAST)
    clf = FairLowRankFineTuner(lying(), **kw).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None
    assert "did not give the model's logits" in capsys.readouterr().out
    whole = FairLowRankFineTuner(lying(), cache_features=False, **kw).fit(
        X, y, sensitive_features=s)
    np.testing.assert_array_equal(clf.predict_proba(X), whole.predict_proba(X))


def _double(module, args, out):
    return 2 * out


def test_mapping_input_falls_back():
    """Keyword-argument X cannot feed a Sequential chain: the whole model runs."""

    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = paper_mlp()

        def forward(self, x):
            return self.body(x)

    X, y, s = make_task()
    clf = FairLowRankFineTuner(Keyword().eval(), target_modules=["body.0.2"], rank=2,
                               **FAST).fit({"x": X}, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None and "mapping" in clf._no_prefix


def test_harness_resnet_caches_the_stages_below_its_last_block():
    """build_resnet is Sequential(trunk, head): the cut stops at the last block.

    The block itself (a custom forward with its shortcut) goes whole above
    the cut; the fit equals the whole-model fit.
    """
    from sklearn_winfair.reproduction._resnet import build_resnet

    X, y, s = image_task()
    kw = dict(target_modules=["0.5.conv1", "0.5.conv2", "1.0"], rank=2, **FAST)
    cached = FairLowRankFineTuner(build_resnet(width=4), **kw).fit(
        X, y, sensitive_features=s)
    whole = FairLowRankFineTuner(build_resnet(width=4), cache_features=False,
                                 **kw).fit(X, y, sensitive_features=s)
    assert cached.frozen_prefix_ == ["0.0", "0.1", "0.2", "0.3", "0.4"]
    np.testing.assert_allclose(cached.predict_proba(X), whole.predict_proba(X),
                               atol=1e-5)


def test_split_that_raises_falls_back_to_the_whole_model():
    """A container's pre-hook casts integer X: its steps alone cannot take it.

    Running the trunk's steps one by one skips the hook, so the first Linear
    gets int64 rows and raises; the fit falls back to the whole model (with
    the hook), which takes them, and says why.
    """
    model = paper_mlp()
    model[0].register_forward_pre_hook(_to_float)
    X, y, s = make_task()
    X = np.round(X * 10).astype(np.int64)
    clf = FairLowRankFineTuner(model, target_modules=["0.2"], rank=2, **FAST).fit(
        X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None and "raised RuntimeError" in clf._no_prefix
    assert not clf.cast_integers_  # the whole model took the integers
    assert clf.score(X, y) > 0.6


def _to_float(module, args):
    return (args[0].float(),)


# ------------------------------------------------- a traced graph's cut (fx)
class ResidualNet(nn.Module):
    """A custom forward, not a Sequential: stem, one residual block, pooled head."""

    def __init__(self, seed=0):
        super().__init__()
        from sklearn_winfair.reproduction._resnet import BasicBlock

        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                  nn.ReLU())
        self.block = BasicBlock(4, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.stem[1].running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def test_traced_graph_cut_keeps_the_shortcut_above_it():
    """The block's input feeds conv1 and the shortcut: the cut is that input.

    The two parts of the adapted model compose to it and hold its modules.
    """
    model = ResidualNet().eval()
    assert find_prefix_cut(model, ["block.conv2"])[0] is None  # not Sequential
    cut, reason = find_graph_cut(model, ["block.conv2", "fc"])
    assert reason is None and cut.names == ["stem.0", "stem.1", "stem.2"]
    adapted, _ = inject_adapters(model, ["block.conv2"], rank=2, init="uniform")
    prefix, suffix, inner = cut.split(adapted)
    assert suffix.get_submodule(inner("block.conv2")) is adapted.block.conv2
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(suffix(prefix(x)), adapted(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("importance,adapter_init", [("neutral", "svd"),
                                                     ("neutral", "lora")])
def test_traced_model_cached_fit_equals_whole_model_fit(importance, adapter_init):
    """A custom-forward CNN: cached prefix and whole-model fits agree (DP, weights)."""
    X, y, s = image_task()
    w = np.random.RandomState(1).uniform(0.2, 2.0, size=len(y))
    kw = dict(target_modules=["block.conv1", "block.conv2"], rank=2,
              importance=importance, adapter_init=adapter_init,
              fairness_penalty="demographic_parity", **FAST)
    cached = FairLowRankFineTuner(ResidualNet().eval(), **kw).fit(
        X, y, sensitive_features=s, sample_weight=w)
    whole = FairLowRankFineTuner(ResidualNet().eval(), cache_features=False,
                                 **kw).fit(X, y, sensitive_features=s,
                                           sample_weight=w)
    assert cached.frozen_prefix_ == ["stem.0", "stem.1", "stem.2"]
    np.testing.assert_allclose(cached.predict_proba(X), whole.predict_proba(X),
                               atol=1e-5)


class InputSkip(nn.Module):
    """The input itself is read above the adapted layer: no single value to cache."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.mid = nn.Linear(5, 8), nn.Linear(8, 8)
        self.skip, self.fc = nn.Linear(5, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.mid(torch.relu(self.a(x))) + self.skip(x))


def test_graph_without_a_single_value_cut_falls_back():
    """x feeds both the layer below the adapter and a skip above it."""
    cut, reason = find_graph_cut(InputSkip(), ["mid", "fc"])
    assert cut is None and "also read above it" in reason
    X, y, s = make_task()
    clf = FairLowRankFineTuner(InputSkip().eval(), target_modules=["mid"], rank=2,
                               **FAST).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None and "also read above it" in clf._no_prefix
    assert clf.score(X, y) > 0.6


class BatchCentered(nn.Module):
    """Subtracts the batch's mean: a row's output depends on its batch."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def test_prefix_that_mixes_rows_falls_back():
    """Cached in other batches than training draws, it would change results.

    The probe rows split in halves give other outputs, so the fit runs the
    whole model at every step and predicts what cache_features=False does.
    """
    def build():
        model = paper_mlp()
        return nn.Sequential(nn.Sequential(model[0][0], BatchCentered(),
                                           *model[0][1:]), model[1]).eval()

    X, y, s = make_task()
    kw = dict(target_modules=["0.3"], rank=2, **FAST)
    clf = FairLowRankFineTuner(build(), **kw).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None
    assert "depends on the other rows of its batch" in clf._no_prefix
    whole = FairLowRankFineTuner(build(), cache_features=False, **kw).fit(
        X, y, sensitive_features=s)
    np.testing.assert_array_equal(clf.predict_proba(X), whole.predict_proba(X))


class SharedLayer(nn.Module):
    """One nn.Linear registered as both ``l1`` and ``l2`` and called twice."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pre, self.head = nn.Linear(5, 8), nn.Linear(8, 2)
        self.l1 = self.l2 = nn.Linear(8, 8)

    def forward(self, x):
        x = torch.relu(self.pre(x))
        return self.head(torch.relu(self.l2(torch.relu(self.l1(x)))))


def test_module_under_two_names_is_not_traced_and_trains_the_model_it_returns():
    """torch.fx would call the adapter at both sites, the model at one.

    The checks at initialization cannot see it (LoRA starts equal to the
    layer), so the traced cut is refused: the fit equals the whole-model one
    (it differed by 0.69 in probability before the refusal).
    """
    cut, reason = find_graph_cut(SharedLayer(), ["l1", "head"])
    assert cut is None and "also registered as 'l2'" in reason
    X, y, s = make_task()
    kw = dict(head="head", target_modules=["l1"], rank=2, adapter_init="lora",
              **FAST)
    clf = FairLowRankFineTuner(SharedLayer().eval(), **kw).fit(
        X, y, sensitive_features=s)
    whole = FairLowRankFineTuner(SharedLayer().eval(), cache_features=False,
                                 **kw).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None
    np.testing.assert_array_equal(clf.predict_proba(X), whole.predict_proba(X))


def test_prefix_cache_above_its_memory_bound_runs_the_whole_model(monkeypatch):
    """A cache larger than MAX_PREFIX_CACHE_BYTES is not built; the fit still runs."""
    from sklearn_winfair import _adapters

    X, y, s = make_task()
    kw = dict(target_modules=["0.2"], rank=2, **FAST)
    cached = FairLowRankFineTuner(paper_mlp(), **kw).fit(X, y, sensitive_features=s)
    assert cached.frozen_prefix_ == ["0.0", "0.1"]  # 12 floats a row: cached
    monkeypatch.setattr(_adapters, "MAX_PREFIX_CACHE_BYTES", 1000)
    clf = FairLowRankFineTuner(paper_mlp(), **kw).fit(X, y, sensitive_features=s)
    assert clf.frozen_prefix_ is None and "GiB the cache may hold" in clf._no_prefix
    assert clf.score(X, y) > 0.6
