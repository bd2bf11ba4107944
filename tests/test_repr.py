"""Tests for sklearn_winfair._repr: the notebook repr's backbone summary and doc link.

The estimator does not use the hooks yet (the lead wires them into
``_estimator.py``); ``_Wired`` below adds exactly the lines it needs.
"""

import numpy as np
import pytest
import torch
from conftest import make_task, mlp_backbone, mlp_head_backbone
from sklearn.utils import estimator_html_repr

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair import _repr as winfair_repr


class _Wired(FairLowRankFineTuner):
    """FairLowRankFineTuner with the repr hooks, as the estimator will have them."""

    # scikit-learn links only classes defined in _doc_link_module
    __module__ = "sklearn_winfair._estimator"

    _doc_link_module = "sklearn_winfair"
    _doc_link_template = winfair_repr.doc_link_template("https://docs.example/winfair")

    def _sk_visual_block_(self):
        return winfair_repr.visual_block(self)

    def _get_params_html(self, deep=True, doc_link=""):
        return winfair_repr.params_html(super()._get_params_html(deep, doc_link))


# the link is built from the class's name and module: stand in for the real one
_Wired.__name__ = _Wired.__qualname__ = "FairLowRankFineTuner"


def test_html_repr_shows_backbone_summary_not_the_cut_module_repr():
    """Unfitted: the caption has class, parameter count and head; no cut repr."""
    html = estimator_html_repr(_Wired(mlp_backbone(), rank=1))
    assert (
        "Sequential, 130 parameters; head &#x27;2&#x27; (last nn.Linear): "
        "Linear(16 -&gt; 2)" in html
    )
    assert "Sequential, 130 params" in html  # the parameter table's value
    assert "..., bias=True" not in html


def test_html_repr_links_the_api_page():
    """The "?" link points at the autosummary page of the class."""
    clf = _Wired(mlp_backbone())
    assert clf._get_doc_link() == (
        "https://docs.example/winfair/api/generated/"
        "sklearn_winfair.FairLowRankFineTuner.html"
    )
    assert 'href="https://docs.example/winfair/api/generated/' in estimator_html_repr(
        clf
    )
    assert winfair_repr.doc_link_template() == ""  # no site published: no link


def test_summary_of_a_fitted_estimator_names_rank_and_trainable_parameters():
    """Fitted: the head actually used, its ranks and the trained parameter count."""
    X, y, s = make_task(n=90, n_classes=3)
    clf = _Wired(
        mlp_head_backbone(), head="1", rank=2, max_epochs=1, random_state=0
    ).fit(X, y, sensitive_features=s)
    text = winfair_repr.backbone_summary(clf)
    assert text == (
        f"Sequential, {sum(p.numel() for p in clf.backbone.parameters())} parameters;"
        f" head '1': Sequential; fitted: rank 2, {clf.n_trainable_params_} trainable"
        " parameters"
    )
    assert "fitted: rank 2" in estimator_html_repr(clf)


@pytest.mark.parametrize(
    "n, text", [(58, "58"), (12_345, "12.3k"), (4_731_394, "4.7M"), (2e9, "2.0B")]
)
def test_parameter_counts_are_short(n, text):
    assert winfair_repr._count(int(n)) == text


def test_summary_of_bad_heads_says_what_is_wrong():
    """A head name that is no submodule, or no nn.Linear at all, is stated."""
    assert winfair_repr.backbone_summary(
        FairLowRankFineTuner(mlp_backbone(), head="classifier")
    ).endswith("head 'classifier' is not a submodule")
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    assert winfair_repr.backbone_summary(FairLowRankFineTuner(conv)).endswith(
        "no nn.Linear to use as the head"
    )
    assert np.char.endswith(
        winfair_repr.backbone_summary(FairLowRankFineTuner("resnet")),
        "not a torch.nn.Module",
    )
