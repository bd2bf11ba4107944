"""The estimator's notebook (HTML) repr: a one-line backbone summary and a doc link.

scikit-learn draws the diagram (:func:`sklearn.utils.estimator_html_repr`); this
module only supplies what it cannot know about a torch backbone. By default the
diagram shows the backbone as ``reprlib`` cuts its ``repr``,
``Sequential( ..., bias=True) )``; here it is summarized as its class, its
parameter count and its head. Three hooks of scikit-learn's repr are used, all
private scikit-learn API and all optional (an older scikit-learn ignores them):
``_sk_visual_block_`` (the caption under the estimator's name),
``_get_params_html`` (the value shown for ``backbone`` in the parameter table)
and ``_doc_link_module`` / ``_doc_link_template`` (the "?" link to the API page).
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from torch import nn

from ._layers import resolve_head

__all__ = []

#: Root of the published documentation site, without a trailing slash, e.g.
#: ``"https://example.org/sklearn-winfair"``. ``None`` while no site is
#: published: the diagram then shows no "?" link rather than a dead one.
DOCS_URL = None

#: Page of a public class in the API reference (``docs/api/index.rst`` builds
#: ``api/generated/<module>.<name>.html`` with autosummary); scikit-learn fills
#: ``estimator_module`` (``sklearn_winfair``) and ``estimator_name``.
DOC_LINK_PATH = "/api/generated/{estimator_module}.{estimator_name}.html"


def doc_link_template(docs_url=None):
    """Return the ``_doc_link_template`` for ``docs_url`` (``""``: no link)."""
    docs_url = DOCS_URL if docs_url is None else docs_url
    return "" if not docs_url else docs_url.rstrip("/") + DOC_LINK_PATH


def _count(n):
    """``58``, ``12.3k``, ``4.7M``, ``1.2B``."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def _layer(module):
    """``Linear(16 -> 2)`` for a linear layer, else the class name."""
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features} -> {module.out_features})"
    return type(module).__name__


def _default_head(backbone):
    """Name of the last registered ``nn.Linear`` (the estimator's ``head=None``)."""
    try:
        return resolve_head(backbone, None)
    except ValueError:
        return None


def backbone_summary(estimator):
    """One line: the backbone's class, parameter count and head (fitted or not).

    Parameters
    ----------
    estimator : FairLowRankFineTuner
        Fitted or not; only ``backbone``, ``head`` and the fitted ``head_name_``,
        ``ranks_`` and ``n_trainable_params_`` are read.

    Returns
    -------
    str
        For example ``"Sequential, 354 parameters; head '2': Linear(16 -> 2)"``,
        and once fitted ``"...; fitted: rank 1, 20 trainable parameters"``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> from sklearn_winfair._repr import backbone_summary
    >>> backbone = torch.nn.Sequential(
    ...     torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> backbone_summary(FairLowRankFineTuner(backbone))
    "Sequential, 130 parameters; head '2' (last nn.Linear): Linear(16 -> 2)"
    """
    backbone = estimator.backbone
    if not isinstance(backbone, nn.Module):
        return f"backbone is a {type(backbone).__name__}, not a torch.nn.Module"
    n = sum(p.numel() for p in backbone.parameters())
    text = f"{type(backbone).__name__}, {_count(n)} parameters"
    fitted = hasattr(estimator, "head_name_")
    head = estimator.head_name_ if fitted else estimator.head
    how = ""
    if head is None:
        head, how = _default_head(backbone), " (last nn.Linear)"
    if head is None:
        return text + "; no nn.Linear to use as the head"
    try:
        layer = _layer(backbone.get_submodule(head))
    except AttributeError:
        return text + f"; head {head!r} is not a submodule"
    text += f"; head {head!r}{how}: {layer}"
    if fitted:
        ranks = sorted(set(getattr(estimator, "ranks_", {}).values()))
        rank = "not factorized" if not ranks else "rank " + "/".join(map(str, ranks))
        trainable = getattr(estimator, "n_trainable_params_", None)
        text += f"; fitted: {rank}"
        if trainable is not None:
            text += f", {_count(trainable)} trainable parameters"
    return text


class _ModuleSummary:
    """Stands for a module in the parameter table: ``Sequential, 130 params``.

    scikit-learn shows a parameter's value through ``reprlib``, which cuts any
    object's ``repr`` to 30 characters, so the text is kept short.
    """

    def __init__(self, module):
        self.text = (
            f"{type(module).__name__}, "
            + _count(sum(p.numel() for p in module.parameters()))
            + " params"
        )

    def __repr__(self):
        return self.text


def visual_block(estimator):
    """scikit-learn's ``_VisualBlock`` for the estimator, captioned with the summary.

    Return the block scikit-learn would build, with ``name_caption`` set to
    :func:`backbone_summary`.
    """
    try:
        from sklearn.utils._repr_html.estimator import _VisualBlock
    except ImportError:  # scikit-learn < 1.7
        from sklearn.utils._estimator_html_repr import _VisualBlock
    return _VisualBlock(
        "single",
        estimator,
        names=type(estimator).__name__,
        name_details=str(estimator),
        name_caption=backbone_summary(estimator),
    )


def params_html(params):
    """Replace the ``backbone`` value of scikit-learn's ``ParamsDict`` by its summary.

    Parameters
    ----------
    params : sklearn.utils._repr_html.params.ParamsDict
        What ``BaseEstimator._get_params_html`` returned.

    Returns
    -------
    params : ParamsDict
        The same object, changed in place.
    """
    backbone = params.get("backbone")
    if isinstance(backbone, nn.Module):
        params["backbone"] = _ModuleSummary(backbone)
    return params
