"""Layer surgery: find, freeze, replace, wrap for dtype, merge back, unwrap.

Every change the estimator makes to the user's model goes through here, as
peft keeps it in ``tuners_utils`` (``_replace_module``, ``merge_and_unload``):
the layers that change the model (:class:`FloatHead` here,
:class:`~sklearn_winfair._factorize.LowRankLinear`) each know how to
``merge()`` themselves back into plain torch layers, and :func:`merge_layers`
walks a model calling them, so a new kind of adapted layer is an addition
(a class with a ``merge`` method), not a change to the export.

Which library does what here: torch only (``named_modules``,
``get_submodule``, ``setattr`` on the parent).
"""

import copy
import difflib

import torch
from torch import nn
from torch.nn.parameter import is_lazy

__all__ = [
    "FloatHead",
    "check_not_lazy",
    "float_dtype",
    "freeze",
    "linear_layer_names",
    "merge_layers",
    "modules_holding_linear",
    "replace_submodule",
    "resolve_head",
    "same_state_outside",
    "unwrap",
]


def linear_layer_names(module):
    """Return the names of the ``nn.Linear`` layers inside ``module``, in order.

    Parameters
    ----------
    module : torch.nn.Module
        A linear layer or a module holding several.

    Returns
    -------
    names : list of str
        ``""`` stands for ``module`` itself when it is an ``nn.Linear``.
    """
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def modules_holding_linear(model):
    """Names of the submodules that are or contain an ``nn.Linear``."""
    return [
        name for name, m in model.named_modules()
        if name and any(isinstance(sub, nn.Linear) for sub in m.modules())
    ]


def check_not_lazy(model, argument="backbone"):
    """Raise a ValueError naming uninitialized lazy parameters of ``model``."""
    lazy = [n for n, p in model.named_parameters() if is_lazy(p)]
    if lazy:
        raise ValueError(
            f"{argument} has uninitialized lazy parameters {lazy[:5]} (a "
            "torch.nn.LazyLinear or similar that has never run). Run one "
            "batch through it first, e.g. backbone(X[:1]), so its shapes "
            "are known."
        )


def resolve_head(model, head, *, require_linear=True):
    """Return the qualified name of the head inside ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone.
    head : str or None
        A name from ``model.named_modules()``, or ``None`` for the last
        ``nn.Linear`` by registration order.
    require_linear : bool, default=True
        Whether the named head must hold an ``nn.Linear`` (to factorize it,
        or to fit a probe); without, any module with parameters is a head
        (a 1x1 ``Conv2d`` classifier, fine-tuned with ``rank=None``).

    Returns
    -------
    name : str
    """
    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if head is None:
        if not linear_names:
            raise ValueError(
                "backbone contains no torch.nn.Linear layer, so there is no "
                "default head. Pass head='<name of the submodule that maps "
                "features to logits>'."
            )
        return linear_names[-1]
    if not isinstance(head, str):
        raise TypeError(
            f"head must be None or the name of a submodule, got "
            f"{type(head).__name__}."
        )
    names = [n for n, _ in model.named_modules() if n]
    if head not in names:
        close = difflib.get_close_matches(head, names, n=3, cutoff=0.5)
        holders = modules_holding_linear(model)
        shown = holders[-15:]
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"head={head!r} is not a submodule of backbone.{hint} Submodules "
            f"that hold an nn.Linear (the last {len(shown)} of "
            f"{len(holders)}): {shown}."
        )
    module = model.get_submodule(head)
    if not linear_layer_names(module):
        if not require_linear and any(True for _ in module.parameters()):
            return head
        why = (
            " (rank=None fine-tunes a head of any layers, e.g. a 1x1 Conv2d "
            "classifier; factorizing and head_init='probe' need nn.Linear)"
            if require_linear else ""
        )
        raise ValueError(
            f"head={head!r} holds no torch.nn.Linear layer{why}; name a module "
            f"that does: {modules_holding_linear(model)[-15:]}."
        )
    return head


def replace_submodule(model, name, new):
    """Put ``new`` at ``name`` in ``model`` (``""`` replaces the model); return it."""
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model


def float_dtype(module):
    """Return the dtype of ``module``'s first floating parameter (float32 if none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def freeze(model):
    """Put ``model`` in eval mode with no parameter requiring grad; return it."""
    model.eval()
    model.requires_grad_(False)
    return model


class FloatHead(nn.Module):
    """Run a head in float32 inside a half-precision trunk.

    The frozen trunk keeps its dtype (fp16 / bf16); the trainable head,
    whose optimizer state and small gradients underflow in half precision,
    computes in float32 and returns float32 logits.

    Parameters
    ----------
    head : torch.nn.Module
        A float32 head.
    """

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x):
        """Return ``head(x.float())``."""
        return self.head(x.float())

    def merge(self):
        """Return the inner head, merged (the float32 wrapper is removed)."""
        return merge_layers(self.head, copy=False)


def merge_layers(module, dtype=None, *, copy=True):
    """Return ``module`` with every layer that has a ``merge()`` method merged.

    Each adapted layer (:class:`~sklearn_winfair._factorize.LowRankLinear`,
    :class:`FloatHead`) replaces itself by plain torch layers, so the result
    has the original architecture again: its ``state_dict`` loads into a
    fresh copy of the pre-trained model. Parameters of the result do not
    require grad.

    Parameters
    ----------
    module : torch.nn.Module
        A fine-tuned model.
    dtype : torch.dtype or None, default=None
        Cast the whole result to this dtype; ``None`` keeps each layer's.
    copy : bool, default=True
        Work on a deep copy (``False`` changes ``module`` in place).

    Returns
    -------
    merged : torch.nn.Module
        In eval mode.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair._factorize import LowRankLinear
    >>> from sklearn_winfair._layers import merge_layers
    >>> model = torch.nn.Sequential(
    ...     LowRankLinear(np.ones((3, 1)), np.ones((1, 2)), torch.zeros(2)))
    >>> merge_layers(model)
    Sequential(
      (0): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    merged = _copy(module) if copy else module

    def merge(m):
        if callable(getattr(m, "merge", None)):
            return m.merge()
        for name, child in list(m.named_children()):
            setattr(m, name, merge(child))
        return m

    merged = merge(merged)
    if dtype is not None:
        merged.to(dtype)
    return freeze(merged)


def _copy(module):
    return copy.deepcopy(module)


def _wrapped(module):
    """Return the module inside a ``torch.compile`` or DataParallel wrapper."""
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return module.module
    inner = getattr(module, "_orig_mod", None)  # torch.compile's OptimizedModule
    if isinstance(inner, nn.Module) and type(module).__name__ == "OptimizedModule":
        return inner
    return None


def unwrap(module):
    """Return ``module`` without ``torch.compile`` / ``DataParallel`` wrappers.

    The wrappers prefix every ``state_dict`` key (``_orig_mod.``,
    ``module.``), so an export that kept them would not load into the
    user's own architecture. Wrappers are removed at any depth (in place
    for the children).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._layers import unwrap
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> unwrap(torch.nn.DataParallel(net)) is net
    True
    """
    while (inner := _wrapped(module)) is not None:
        module = inner
    for name, child in list(module.named_children()):
        plain = unwrap(child)
        if plain is not child:
            setattr(module, name, plain)
    return module


def same_state_outside(model, reference, prefix):
    """Whether ``model``'s state equals ``reference``'s outside ``prefix``.

    Used to pickle the frozen trunk once: a fitted model whose trunk still
    equals the user's backbone tensor by tensor is rebuilt from it.

    Parameters
    ----------
    model, reference : torch.nn.Module
    prefix : str
        Qualified name of the part that may differ (the head).

    Returns
    -------
    bool
    """
    if not prefix:
        return False
    start = prefix + "."

    def outside(m):
        return {k: v for k, v in m.state_dict().items() if not k.startswith(start)}

    ours, theirs = outside(model), outside(reference)
    if ours.keys() != theirs.keys():
        return False
    return all(
        v.dtype == theirs[k].dtype and torch.equal(v.cpu(), theirs[k].cpu())
        for k, v in ours.items()
    )
