"""Layer surgery (sklearn_winfair._layers): resolving, freezing, replacing, merging, unwrapping."""


import numpy as np
import pytest
import torch
from conftest import TinyResNet, image_task, mlp_backbone
from torch import nn

from sklearn_winfair import (
    FairLowRankFineTuner,
)

FAST = dict(max_epochs=5, lr=0.05, batch_size=64, random_state=0)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_backbone_without_linear_and_bad_head_name(task):
    """No nn.Linear, an unknown head, or a layer after the head: clear errors."""
    X, y, s = task
    conv_only = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(ValueError, match="contains no torch.nn.Linear"):
        FairLowRankFineTuner(conv_only, rank=1, **FAST).fit(X, y, sensitive_features=s)
    with pytest.raises(ValueError, match="head='classifier' is not a submodule"):
        FairLowRankFineTuner(mlp_backbone(), head="classifier", **FAST).fit(
            X, y, sensitive_features=s
        )
    with pytest.raises(ValueError, match="holds no torch.nn.Linear"):
        FairLowRankFineTuner(mlp_backbone(), head="1", **FAST).fit(
            X, y, sensitive_features=s
        )
    after = nn.Sequential(*mlp_backbone(), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="head's output is not the logits"):
        FairLowRankFineTuner(after, rank=1, **FAST).fit(X, y, sensitive_features=s)


def test_trunk_is_frozen_and_caller_backbone_untouched(task):
    """Only the head changes; the caller's backbone and inputs are not modified."""
    X, y, s = task
    backbone = mlp_backbone()
    backbone.train()
    before = _state(backbone)
    X_copy, s_copy = X.copy(), s.copy()
    clf = FairLowRankFineTuner(backbone, rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert backbone.training and all(p.requires_grad for p in backbone.parameters())
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(s, s_copy)
    torch.testing.assert_close(clf.model_[0].weight, before["0.weight"])


# ------------------------------------------------------------- image models


def test_mistyped_head_suggests_the_closest_names():
    X, y, s = image_task()
    with pytest.raises(ValueError, match=r"Did you mean \['fc'\]\?.*\['fc'\]"):
        FairLowRankFineTuner(TinyResNet(), head="fcc", rank=None).fit(X, y)


def test_uninitialized_lazy_layer_says_to_run_one_batch(task):
    X, y, s = task
    lazy = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"lazy parameters.*backbone\(X\[:1\]\)"):
        FairLowRankFineTuner(lazy, rank=None).fit(X, y)
