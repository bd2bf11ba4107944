"""Low-rank adapters on any layers of a backbone, and their per-group Fisher.

The paper's weighted SVD (Eq. 4) applied to inner layers, not only the head:
each targeted layer's weight is split ``W = W_res + A B`` where ``A B`` is the
rank-``r`` truncation of the importance-weighted SVD and ``W_res`` is frozen,
as peft's PiSSA does (Meng et al. 2024). Only ``A`` and ``B`` train.

Which library does what here: torch builds the layers and computes the
per-sample gradients (hooks for the closed form, :mod:`torch.func` for the
fallback); numpy computes the SVD through
:func:`sklearn_winfair._factorize.weighted_svd`; peft (optional) receives
the factors in :func:`to_peft`.

Orientation follows the paper: a layer computes ``Z = X W + b`` with ``W``
of shape ``(d, k)`` (``d`` inputs, ``k`` outputs). torch's ``nn.Linear``
stores ``weight = W.T`` of shape ``(k, d)``; an ``nn.Conv2d`` of shape
``(k, c, kh, kw)`` is read through its matrix view ``W`` of shape
``(c * kh * kw, k)`` (the columns of :func:`torch.nn.functional.unfold`);
Hugging Face's ``Conv1D`` stores ``W`` itself. ``A`` of shape ``(d, r)`` is
applied first (peft's ``lora_A.weight`` is ``A.T``), ``B`` of shape
``(r, k)`` second (peft's ``lora_B.weight`` is ``B.T``).
"""

import copy
import math
import re
import sys
import warnings

import numpy as np
import torch
from torch import fx, nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ._factorize import truncation_error, weighted_svd
from ._features import check_finite_features, extract_head_inputs, prefix_outputs
from ._importance import mix_importances
from ._inputs import call_backbone
from ._outputs import find_logits

__all__ = [
    "adapt_for_fit",
    "ADAPTER_INITS",
    "FrozenPrefix",
    "find_graph_cut",
    "find_prefix_cut",
    "split_at_cut",
    "LowRankAdapter",
    "adaptable_layer_names",
    "match_target_modules",
    "inject_adapters",
    "merge_adapters",
    "inner_group_fisher",
    "to_peft",
]

#: ``init`` values of :class:`LowRankAdapter` and :func:`inject_adapters`.
ADAPTER_INITS = ("neutral", "fisher", "uniform", "lora")
#: Inits that split ``W`` by weighted SVD (the others leave ``W`` unchanged).
SVD_INITS = ("neutral", "fisher", "uniform")
#: Largest number of float32 elements one per-sample-gradient chunk may hold.
MAX_CHUNK_ELEMENTS = 2**24

_NO_MATCH = (
    "target_modules={targets!r} matched no module of the model. Layers that "
    "can take an adapter (nn.Linear, nn.Conv2d, transformers' Conv1D): "
    "{candidates}."
)
_UNSUPPORTED = (
    "target_modules={targets!r} matched {name!r}, a {kind}, which cannot take "
    "an adapter: only nn.Linear, nn.Conv2d (groups=1, zero padding) and "
    "transformers' Conv1D can. {inside}{suffix}"
)


def _is_hf_conv1d(module):
    pu = sys.modules.get("transformers.pytorch_utils")
    return pu is not None and isinstance(module, pu.Conv1D)


def _is_adaptable(module):
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros"
    return isinstance(module, nn.Linear) or _is_hf_conv1d(module)


def adaptable_layer_names(model):
    """Return the qualified names of the layers that can take an adapter.

    Parameters
    ----------
    model : torch.nn.Module
        Any model.

    Returns
    -------
    names : list of str
        Names of its ``nn.Linear``, ``nn.Conv2d`` (``groups=1``, zero
        padding) and transformers ``Conv1D`` submodules, in module order;
        layers already wrapped in a :class:`LowRankAdapter` are left out.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import adaptable_layer_names
    >>> adaptable_layer_names(nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
    ...                                     nn.Linear(4, 2)))
    ['0', '2']
    """
    inside = {f"{n}.base_layer" for n, m in model.named_modules()
              if isinstance(m, LowRankAdapter)}
    return [n for n, m in model.named_modules()
            if n and n not in inside and _is_adaptable(m)]


def _matches(targets, key):
    # peft's check_target_module_exists (tuners_utils.py), without its
    # layers_to_transform / exclude_modules options.
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    return key in targets or any(key.endswith(f".{t}") for t in targets)


def match_target_modules(model, target_modules):
    r"""Resolve peft-style ``target_modules`` to qualified layer names.

    The rule is peft's (``check_target_module_exists``): a ``str`` is a
    regular expression that must match the whole qualified name
    (:func:`re.fullmatch`); a list of names matches every module whose
    qualified name equals one of them or ends with ``"." + name``. The root
    module (name ``""``) is never matched.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone.
    target_modules : str or list of str
        Regular expression, or names / name suffixes.

    Returns
    -------
    names : list of str
        Matched qualified names, in module order.

    Raises
    ------
    TypeError
        If ``target_modules`` is neither a str nor a list/tuple of str.
    ValueError
        If nothing matches (the message lists the layers that can take an
        adapter), or a match is a module that cannot (a container, a
        grouped convolution): the message names it.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import match_target_modules
    >>> model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()),
    ...                       nn.Linear(4, 2))
    >>> match_target_modules(model, ["0"])  # the container "0" cannot adapt
    Traceback (most recent call last):
    ...
    ValueError: target_modules=['0'] matched '0', a Sequential, ...
    >>> match_target_modules(model, ["0.0"])
    ['0.0']
    >>> match_target_modules(model, ["1"])  # suffix rule: "0.1" ends with ".1"
    Traceback (most recent call last):
    ...
    ValueError: target_modules=['1'] matched '0.1', a ReLU, ...
    >>> match_target_modules(model, r"1|0\.0")  # a regex matches whole names
    ['0.0', '1']
    """
    if isinstance(target_modules, (list, tuple, set, frozenset)):
        kinds = sorted({type(t).__name__ for t in target_modules} - {"str"})
        if kinds:
            raise TypeError(
                "target_modules must be a str (regular expression) or a list "
                f"of str, got a list holding {kinds}."
            )
        targets = list(target_modules)
    elif isinstance(target_modules, str):
        targets = target_modules
    else:
        raise TypeError(
            "target_modules must be a str (regular expression) or a list of "
            f"str, got {type(target_modules).__name__}."
        )
    candidates = adaptable_layer_names(model)
    names = []
    for name, module in model.named_modules():
        if not name or not _matches(targets, name):
            continue
        if isinstance(module, LowRankAdapter):
            raise ValueError(
                f"target_modules={target_modules!r} matched {name!r}, which "
                "already holds an adapter; merge_adapters() first."
            )
        if not _is_adaptable(module):
            inside = [c for c in candidates if c.startswith(name + ".")][:5]
            inside = (f"Name the layers inside it instead, e.g. {inside}."
                      if inside else f"Layers that can: {candidates[-5:]}.")
            suffix = "" if isinstance(targets, str) or name in targets else (
                " It matched as a name suffix (peft's rule); for exact names "
                "pass a regular expression, e.g. "
                f"{'|'.join(re.escape(t) for t in targets)!r}.")
            raise ValueError(_UNSUPPORTED.format(
                targets=target_modules, name=name, kind=type(module).__name__,
                inside=inside, suffix=suffix))
        names.append(name)
    if not names:
        shown = candidates if len(candidates) <= 20 else (
            candidates[:10] + ["..."] + candidates[-10:])
        raise ValueError(_NO_MATCH.format(targets=target_modules,
                                          candidates=shown))
    return names


def _paper_weight(layer):
    """``W`` of shape ``(d, k)`` (paper orientation), float64 numpy."""
    w = layer.weight.detach().to("cpu", torch.float64)
    if isinstance(layer, nn.Conv2d):
        return w.reshape(w.shape[0], -1).T.numpy()
    if _is_hf_conv1d(layer):
        return w.numpy()
    return w.T.numpy()


def _to_layer_weight(layer, W):
    """Inverse of :func:`_paper_weight`: a (d, k) tensor in the layer's layout."""
    if isinstance(layer, nn.Conv2d):
        return W.T.reshape(layer.weight.shape)
    if _is_hf_conv1d(layer):
        return W
    return W.T


def _lora_init_A(d, rank, generator):
    # peft's default: kaiming_uniform_(lora_A.weight, a=sqrt(5)) on a (rank, d)
    # weight, i.e. U(-1/sqrt(d), 1/sqrt(d)); B = 0.
    bound = 1.0 / math.sqrt(d)
    A_t = torch.rand(rank, d, generator=generator, dtype=torch.float64)
    return ((2 * A_t - 1) * bound).T.numpy()


class LowRankAdapter(nn.Module):
    """A frozen residual layer plus a trainable low-rank update ``A B``.

    ``forward(x) = base_layer(x) + (x A) B``, with ``base_layer`` the
    original layer whose weight is replaced by ``W_res = W - A B`` (frozen,
    bias included), so the adapter computes ``x W + b`` at initialization
    for every ``init`` and rank. For an ``nn.Conv2d`` ``x A`` is a
    convolution with the layer's kernel, stride, padding and dilation into
    ``r`` channels, and ``B`` a 1x1 convolution back to ``k``.

    Parameters
    ----------
    layer : nn.Linear, nn.Conv2d or transformers Conv1D
        The pre-trained layer; copied, not modified.
    rank : int
        Inner dimension ``r``, in ``[1, min(d, k)]``.
    init : {"neutral", "fisher", "uniform", "lora"}, default="neutral"
        ``"neutral"``, ``"fisher"`` and ``"uniform"`` split ``W`` by the
        importance-weighted SVD of paper Eq. 4, ``diag(ihat) W = U S V^T``,
        ``A = diag(ihat)^{-1} U_r S_r``, ``B = V_r^T``: with ``ihat`` the
        group-neutralized importance (the method), the pooled Fisher
        (FWSVD) or all ones (PiSSA). They differ only by ``importance``.
        ``"lora"`` is peft's default LoRA: ``A`` uniform in
        ``+-1/sqrt(d)`` (Kaiming), ``B = 0``, ``W_res = W``.
    importance : array-like of shape (d,) or None, default=None
        Strictly positive ``ihat``; required for ``"neutral"`` and
        ``"fisher"``, ignored by ``"lora"``, must be ``None`` or all equal
        for ``"uniform"``.
    dtype : torch.dtype, default=torch.float32
        Dtype of ``A`` and ``B``; the branch computes in it and casts its
        output to the layer's dtype (fp16 / bf16 trunks keep their dtype).
    generator : torch.Generator or None, default=None
        Random source of the ``"lora"`` init.
    svd_method : {"auto", "full", "randomized"}, default="auto"
        Passed to :func:`~sklearn_winfair._factorize.weighted_svd`.

    Attributes
    ----------
    base_layer : torch.nn.Module
        The layer with weight ``W_res``; frozen.
    A : torch.nn.Parameter of shape (d, rank)
    B : torch.nn.Parameter of shape (rank, k)
    truncation_error_ : float
        ``||diag(ihat) (W - A B)||_F / ||diag(ihat) W||_F`` at init (0 at
        full rank for the SVD inits; 1 for ``"lora"``, whose ``A B`` is 0).

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._adapters import LowRankAdapter
    >>> layer = torch.nn.Linear(4, 3)
    >>> adapter = LowRankAdapter(layer, rank=2, init="uniform")
    >>> x = torch.randn(5, 4)
    >>> bool(torch.allclose(adapter(x), layer(x), atol=1e-6))
    True
    >>> [n for n, p in adapter.named_parameters() if p.requires_grad]
    ['A', 'B']
    """

    def __init__(self, layer, rank, *, init="neutral", importance=None,
                 dtype=torch.float32, generator=None, svd_method="auto"):
        super().__init__()
        if not _is_adaptable(layer):
            raise TypeError(
                "layer must be an nn.Linear, an nn.Conv2d (groups=1, zero "
                f"padding) or a transformers Conv1D, got {type(layer).__name__}."
            )
        if init not in ADAPTER_INITS:
            raise ValueError(f"init must be one of {ADAPTER_INITS}, got {init!r}.")
        W = _paper_weight(layer)
        d, k = W.shape
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 1 <= rank <= min(d, k):
            raise ValueError(
                f"rank must be an int in [1, {min(d, k)}] for a {d} x {k} "
                f"layer, got {rank!r}."
            )
        rank = int(rank)
        ihat = self._check_importance(init, importance, d)
        if init == "lora":
            A = _lora_init_A(d, rank, generator)
            B = np.zeros((rank, k))
        else:
            A, B = weighted_svd(W, ihat, rank, method=svd_method)
        self.init = init
        self.truncation_error_ = truncation_error(W, ihat, A, B)
        base = copy.deepcopy(layer)
        W_res = torch.from_numpy(W - A @ B)
        with torch.no_grad():
            base.weight.copy_(_to_layer_weight(layer, W_res).to(base.weight.dtype))
        base.requires_grad_(False)
        self.base_layer = base
        self.A = nn.Parameter(torch.as_tensor(A, dtype=dtype,
                                              device=layer.weight.device))
        self.B = nn.Parameter(torch.as_tensor(B, dtype=dtype,
                                              device=layer.weight.device))

    @staticmethod
    def _check_importance(init, importance, d):
        if init in ("neutral", "fisher"):
            if importance is None:
                raise ValueError(
                    f"init={init!r} needs importance (the diagonal ihat of "
                    f"length {d}); pass it, or use init='uniform' (PiSSA)."
                )
        elif init == "uniform" and importance is not None:
            values = np.asarray(importance, dtype=float)
            if values.shape != (d,) or not np.allclose(values, values.flat[0]):
                raise ValueError(
                    "init='uniform' means ihat = 1 (PiSSA); importance must be "
                    "None or constant."
                )
        if init in ("uniform", "lora") or importance is None:
            return np.ones(d)
        ihat = np.asarray(importance, dtype=np.float64)
        if ihat.shape != (d,) or np.any(ihat <= 0) or not np.all(np.isfinite(ihat)):
            raise ValueError(
                f"importance must be {d} finite, strictly positive values "
                f"(one per input of the layer), got shape {ihat.shape}"
                + (" with non-positive or non-finite entries."
                   if ihat.shape == (d,) else ".")
            )
        return ihat

    @property
    def rank(self):
        """Inner dimension ``r``."""
        return self.A.shape[1]

    def _down(self, x):
        """``x A`` in the layer's convention (a convolution for Conv2d)."""
        base = self.base_layer
        A = self.A
        if isinstance(base, nn.Conv2d):
            kernel = A.T.reshape(self.rank, *base.weight.shape[1:])
            return F.conv2d(x.to(A.dtype), kernel, None, base.stride,
                            base.padding, base.dilation)
        return x.to(A.dtype) @ A

    def _up(self, h):
        if isinstance(self.base_layer, nn.Conv2d):
            return F.conv2d(h, self.B.T[:, :, None, None])
        return h @ self.B

    def forward(self, x):
        """Return ``base_layer(x) + (x A) B``."""
        out = self.base_layer(x)
        return out + self._up(self._down(x)).to(out.dtype)

    def get_delta_weight(self):
        """Return ``A B`` in the layer's own weight layout (peft's name).

        Returns
        -------
        delta : torch.Tensor
            Shape of ``base_layer.weight``, dtype of ``A``.
        """
        return _to_layer_weight(self.base_layer, self.A @ self.B)

    def merge(self):
        """Return the original layer type with weight ``W_res + A B``.

        Returns
        -------
        layer : nn.Linear, nn.Conv2d or Conv1D
            A new frozen layer of the wrapped layer's class and dtype.
        """
        merged = copy.deepcopy(self.base_layer)
        with torch.no_grad():
            w = merged.weight.to(self.A.dtype) + self.get_delta_weight().detach()
            merged.weight.copy_(w.to(merged.weight.dtype))
        merged.requires_grad_(False)
        return merged


def _set_submodule(model, name, new):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject_adapters(model, names, rank, importances=None, init="neutral", *,
                    dtype=torch.float32, random_state=None, svd_method="auto"):
    """Return a copy of ``model`` with a :class:`LowRankAdapter` at each name.

    Every parameter of the copy is frozen except the adapters' ``A`` and
    ``B``; unfreeze a head yourself to train it too.

    Parameters
    ----------
    model : torch.nn.Module
        The pre-trained backbone; not modified.
    names : list of str
        Qualified layer names, e.g. from :func:`match_target_modules`.
    rank : int or dict of str to int
        Rank of every adapter, or per name. An int larger than a layer's
        ``min(d, k)`` is capped to it (so ``rank=10**6`` means full rank);
        a dict value is not.
    importances : dict of str to array-like of shape (d,), or None
        ``ihat`` of each layer (e.g. :func:`neutral_importance` of
        :func:`inner_group_fisher`'s output); needed for ``"neutral"`` and
        ``"fisher"``.
    init : {"neutral", "fisher", "uniform", "lora"}, default="neutral"
        See :class:`LowRankAdapter`.
    dtype : torch.dtype, default=torch.float32
        Dtype of the adapters' factors.
    random_state : int, torch.Generator or None, default=None
        Seed of the ``"lora"`` init (drawn per layer, in ``names`` order).
    svd_method : {"auto", "full", "randomized"}, default="auto"
        See :func:`~sklearn_winfair._factorize.weighted_svd`.

    Returns
    -------
    model : torch.nn.Module
        The adapted copy, in the mode ``model`` was in.
    info : dict
        ``{"ranks": {name: r}, "truncation_error": {name: e},
        "n_trainable": int}``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import inject_adapters
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> adapted, info = inject_adapters(model, ["0"], rank=1, init="uniform")
    >>> type(adapted[0]).__name__, info["ranks"], info["n_trainable"]
    ('LowRankAdapter', {'0': 1}, 7)
    """
    if init not in ADAPTER_INITS:
        raise ValueError(f"init must be one of {ADAPTER_INITS}, got {init!r}.")
    names = list(names)
    if not names or "" in names:
        raise ValueError(
            "names must list submodules to adapt (not the model itself, name "
            f"''), got {names!r}; wrap a bare layer in nn.Sequential.")
    if isinstance(random_state, torch.Generator):
        generator = random_state
    else:
        generator = torch.Generator().manual_seed(
            0 if random_state is None else int(random_state))
    model = copy.deepcopy(model)
    model.requires_grad_(False)
    info = {"ranks": {}, "truncation_error": {}}
    for name in names:
        layer = model.get_submodule(name)
        if isinstance(rank, dict):
            if name not in rank:
                raise ValueError(f"rank has no entry for layer {name!r}.")
            r = rank[name]
        else:
            full = min(_paper_weight(layer).shape) if _is_adaptable(layer) else rank
            r = min(rank, full) if isinstance(rank, (int, np.integer)) else rank
        ihat = None
        if init in ("neutral", "fisher"):
            if importances is None or name not in importances:
                raise ValueError(
                    f"init={init!r} needs importances[{name!r}]; got "
                    f"{None if importances is None else sorted(importances)}."
                )
            ihat = importances[name]
        try:
            adapter = LowRankAdapter(layer, r, init=init, importance=ihat,
                                     dtype=dtype, generator=generator,
                                     svd_method=svd_method)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from exc
        adapter.train(layer.training)
        _set_submodule(model, name, adapter)
        info["ranks"][name] = adapter.rank
        info["truncation_error"][name] = adapter.truncation_error_
    info["n_trainable"] = int(sum(p.numel() for p in model.parameters()
                                  if p.requires_grad))
    return model, info


def merge_adapters(model):
    """Return a copy of ``model`` with every :class:`LowRankAdapter` merged.

    Each adapter becomes its original layer with weight ``W_res + A B``, so
    the result has the user's architecture again and its ``state_dict``
    loads into a fresh copy of it (torch alone, strict).

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`inject_adapters`, trained or not.

    Returns
    -------
    merged : torch.nn.Module
        A copy; the merged layers are frozen, other parameters keep their
        ``requires_grad``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import inject_adapters, merge_adapters
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> adapted, _ = inject_adapters(model, ["0", "2"], rank=1, init="lora")
    >>> merge_adapters(adapted)
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Linear(in_features=4, out_features=2, bias=True)
    )
    """
    model = copy.deepcopy(model)
    if isinstance(model, LowRankAdapter):
        return model.merge()
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LowRankAdapter)]
    for name in wrapped:  # outer names first; adapters never nest
        _set_submodule(model, name, model.get_submodule(name).merge())
    return model


# --------------------------------------------------------------------------
# Per-group Fisher of inner layers
# --------------------------------------------------------------------------


class _NoClosedForm(Exception):
    """Hooks cannot give per-sample gradients here (fall back to torch.func)."""


def _positions(layer, x, g):
    """Per-sample inputs and output gradients as ``(n, T, d)`` and ``(n, T, k)``.

    The layer's weight gradient for sample ``i`` is
    ``sum_t x[i, t]^T g[i, t]`` (``T`` positions: tokens, pixels).
    """
    n = x.shape[0]
    if isinstance(layer, nn.Conv2d):
        padding = layer.padding
        if isinstance(padding, str):  # "valid" or "same" (stride 1)
            pads = []
            for size, dil in zip(reversed(layer.kernel_size),
                                 reversed(layer.dilation), strict=True):
                total = dil * (size - 1) if padding == "same" else 0
                pads += [total // 2, total - total // 2]  # torch puts extra right
            x, padding = F.pad(x, pads), 0
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation,
                        padding=padding, stride=layer.stride)
        return cols.transpose(1, 2), g.reshape(n, g.shape[1], -1).transpose(1, 2)
    return x.reshape(n, -1, x.shape[-1]), g.reshape(n, -1, g.shape[-1])


def _row_sums(x, g, max_elements=MAX_CHUNK_ELEMENTS):
    """``sum_c (sum_t x[i, t, j] g[i, t, c])**2`` for every sample ``i``, row ``j``.

    Without positions (``T = 1``) this is ``x_ij**2 ||g_i||**2``. With
    positions, either form the per-sample gradient ``x_i^T g_i`` (``d x k``
    per sample) and square it, or use the Gram form
    ``sum_{t,s} x_tj x_sj <g_t, g_s>`` (``T x T`` per sample), whichever is
    cheaper; rows are processed in chunks of at most ``max_elements``.
    """
    n, T, d = x.shape
    k = g.shape[2]
    if T == 1:
        return x[:, 0].square() * g[:, 0].square().sum(1, keepdim=True)
    gram = T * T * (d + k) < T * d * k
    per_row = T * T + T * d if gram else d * k
    step = max(1, max_elements // per_row)
    out = []
    for i in range(0, n, step):
        xs, gs = x[i : i + step], g[i : i + step]
        if gram:
            K = gs @ gs.transpose(1, 2)  # (n, T, T)
            out.append((xs * (K @ xs)).sum(1))
        else:
            out.append((xs.transpose(1, 2) @ gs).square().sum(2))
    return torch.cat(out)


def _weight_rows(layer, g_weight):
    """Per-sample torch weight gradients -> ``(n, d)`` row sums of squares."""
    n = g_weight.shape[0]
    if isinstance(layer, nn.Conv2d):
        return g_weight.reshape(n, g_weight.shape[1], -1).square().sum(1)
    if _is_hf_conv1d(layer):
        return g_weight.square().sum(2)
    return g_weight.square().sum(1)


def _call(model, X, params=None):
    args, kwargs = ((), X) if isinstance(X, dict) else ((X,), {})
    if params is None:
        return model(*args, **kwargs)
    return functional_call(model, params, args, kwargs)


def _batch_len(X):
    return len(next(iter(X.values()))) if isinstance(X, dict) else len(X)


def _rows_hooks(model, layers, X, y, output):
    """Per-sample row sums of every layer from one backward of the summed loss.

    ``L = sum_i CE_i``: row ``i`` of a layer's output gradient is
    ``dCE_i / dz_i`` because samples do not interact in eval mode. A layer
    called several times gets its calls' positions concatenated.
    """
    n = _batch_len(X)
    calls = {name: [] for name in layers}
    handles = []

    def make_hook(name):
        def hook(module, args, out):
            if not isinstance(out, torch.Tensor) or args[0].shape[0] != n \
                    or out.shape[0] != n:
                raise _NoClosedForm
            if not out.requires_grad:  # a frozen trunk below: start a graph
                out = out.detach().requires_grad_(True)
            calls[name].append((args[0].detach(), out))
            return out
        return hook

    for name, layer in layers.items():
        handles.append(layer.register_forward_hook(make_hook(name)))
    try:
        with torch.enable_grad():
            logits = find_logits(_call(model, X), output).float()
            missing = [name for name, c in calls.items() if not c]
            if missing:  # weight used without calling the module
                raise _NoClosedForm
            loss = F.cross_entropy(logits, y.to(logits.device), reduction="sum")
            outs = [out for c in calls.values() for _, out in c]
            grads = list(torch.autograd.grad(loss, outs, allow_unused=True))
    finally:
        for h in handles:
            h.remove()
    rows = {}
    for name, layer in layers.items():
        xs, gs = [], []
        for x, out in calls[name]:
            g = grads.pop(0)
            g = torch.zeros_like(out) if g is None else g
            xt, gt = _positions(layer, x.float(), g.float())
            xs.append(xt)
            gs.append(gt)
        rows[name] = _row_sums(torch.cat(xs, 1), torch.cat(gs, 1))
    return rows


def _rows_func(model, layers, X, y, output, max_elements=MAX_CHUNK_ELEMENTS):
    """Per-sample row sums by :func:`torch.func.vmap` of :func:`torch.func.grad`."""
    wanted = {name: f"{name}.weight" for name in layers}
    params = {w: model.get_parameter(w).detach() for w in wanted.values()}

    def loss(p, xi, yi):
        xi = {k: v.unsqueeze(0) for k, v in xi.items()} if isinstance(xi, dict) \
            else xi.unsqueeze(0)
        logits = find_logits(_call(model, xi, p), output).float()
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    size = sum(p.numel() for p in params.values())
    step = max(1, max_elements // size)
    n = _batch_len(X)
    out = {name: [] for name in layers}
    for i in range(0, n, step):
        Xs = {k: v[i : i + step] for k, v in X.items()} if isinstance(X, dict) \
            else X[i : i + step]
        grads = per_sample(params, Xs, y[i : i + step])
        for name, layer in layers.items():
            out[name].append(_weight_rows(layer, grads[wanted[name]].detach().float()))
    return {name: torch.cat(v) for name, v in out.items()}


def inner_group_fisher(model, names, batches, n_groups, *, output=None,
                       method="auto"):
    """Per-group empirical Fisher row importance of inner layers of a model.

    For each layer ``W`` (paper orientation, ``d x k``) and group ``s``:
    ``I_s[j] = sum_c mean_{i in s} (dL_i / dW[j, c])**2``, with ``L_i`` the
    cross-entropy of sample ``i`` through the whole model. The means are
    weighted by ``sample_weight`` when batches carry it.

    Parameters
    ----------
    model : torch.nn.Module
        The pre-trained backbone; put in eval mode during the computation
        (restored after), not modified.
    names : list of str
        Qualified names of ``nn.Linear`` / ``nn.Conv2d`` / ``Conv1D`` layers.
    batches : iterable of tuples
        ``(X, y, codes)`` or ``(X, y, codes, sample_weight)``: ``X`` a tensor
        or a dict of tensors (passed as keyword arguments) on the model's
        device, ``y`` encoded labels, ``codes`` group codes in
        ``range(n_groups)``, ``sample_weight`` non-negative or ``None``.
    n_groups : int
        Number of groups (1 for the pooled Fisher).
    output : None, str, int or callable, default=None
        Where the logits are in the model's output
        (:func:`~sklearn_winfair._outputs.find_logits`).
    method : {"auto", "hooks", "func"}, default="auto"
        ``"hooks"``: closed form from forward / backward hooks (see Notes).
        ``"func"``: :func:`torch.func.vmap` of :func:`torch.func.grad`.
        ``"auto"``: hooks, and func for a batch where hooks cannot work
        (the layer's weight used without calling it, the batch not on the
        first axis of its input).

    Returns
    -------
    importance : dict of str to ndarray of shape (n_groups, d)
        ``I_s`` per layer; a group with no rows (or zero weight) is all 0.

    Notes
    -----
    A layer's per-sample weight gradient is ``sum_t x_{i,t}^T g_{i,t}``
    over its positions ``t`` (tokens, pixels; ``F.unfold`` columns for a
    convolution), with ``x`` its input and ``g = dL_i/dz`` its output
    gradient, the sum taken *before* squaring. Without positions,
    ``I[j] = mean_i x_ij**2 ||g_i||**2``. One backward of the summed loss
    gives every ``g_i`` at once (samples do not interact in eval mode).
    Everything is computed in float32 (``x`` and ``g`` are cast, the loss
    takes float32 logits) and accumulated in float64, whatever the trunk's
    dtype; the gradient itself flows back through the trunk in its dtype.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import inner_group_fisher
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> X, y = torch.randn(8, 3), torch.tensor([0, 1] * 4)
    >>> codes = torch.tensor([0] * 5 + [1] * 3)
    >>> inner_group_fisher(model, ["0"], [(X, y, codes)], n_groups=2)["0"].shape
    (2, 3)
    """
    if method not in ("auto", "hooks", "func"):
        raise ValueError(
            f"method must be 'auto', 'hooks' or 'func', got {method!r}.")
    layers = {}
    for name in names:
        layer = model.get_submodule(name)
        if not _is_adaptable(layer):
            raise ValueError(
                f"names holds {name!r}, a {type(layer).__name__}; the Fisher is "
                "computed for nn.Linear, nn.Conv2d and Conv1D layers only."
            )
        layers[name] = layer
    was_training = model.training
    model.eval()
    sums, counts = None, torch.zeros(n_groups, dtype=torch.float64)
    try:
        for Xb, yb, cb, *wb in batches:
            wb = wb[0] if wb else None
            rows = None
            if method != "func":
                try:
                    rows = _rows_hooks(model, layers, Xb, yb, output)
                except _NoClosedForm:
                    if method == "hooks":
                        raise ValueError(
                            "method='hooks' cannot compute per-sample gradients "
                            "here (a targeted layer is not called as a module, "
                            "or its input does not have the batch on its first "
                            "axis); use method='func' or 'auto'.") from None
            if rows is None:
                rows = _rows_func(model, layers, Xb, yb, output)
            device = next(iter(rows.values())).device
            if sums is None:
                sums = {name: torch.zeros(n_groups, r.shape[1], dtype=torch.float64,
                                          device=device)
                        for name, r in rows.items()}
            cb = cb.to(device)
            wb = torch.ones(len(cb), dtype=torch.float64, device=device) \
                if wb is None else wb.to(device=device, dtype=torch.float64)
            for name, r in rows.items():
                sums[name].index_add_(0, cb, r.to(torch.float64) * wb[:, None])
            counts += torch.bincount(cb.cpu(), weights=wb.cpu(),
                                     minlength=n_groups).to(torch.float64)
    finally:
        model.train(was_training)
    if sums is None:
        raise ValueError("batches is empty: no rows to compute the Fisher on.")
    denom = torch.where(counts > 0, counts, 1.0).unsqueeze(1).numpy()
    return {name: s.cpu().numpy() / denom for name, s in sums.items()}


# --------------------------------------------------------------------------
# The frozen prefix: what runs below the lowest adapted layer, run once
# --------------------------------------------------------------------------

#: Rows on which a cut is checked: the suffix on the prefix's output must
#: give the whole model's logits there, and the prefix the same output on
#: each half of them alone, before the cut is used.
PROBE_ROWS = 8
#: Largest cached frozen-prefix output (bytes) before a fit runs the whole
#: model at every step instead: the cache holds every row's activations at the
#: cut at once (on the fit's device), which can be many times the input (a
#: 64-channel 32x32 map is 85x a uint8 CIFAR image).
MAX_PREFIX_CACHE_BYTES = 2 * 2**30


def _is_plain_sequential(module):
    """Tell whether ``module`` is an ``nn.Sequential`` running Sequential's forward."""
    return isinstance(module, nn.Sequential) and \
        type(module).forward is nn.Sequential.forward


def _steps(container, container_name):
    """Return ``(qualified name, module)`` of each step, in the order forward runs.

    ``_modules`` rather than ``named_children``: the latter drops a module
    that appears twice, which forward still calls twice.
    """
    return [(f"{container_name}.{k}" if container_name else k, m)
            for k, m in container._modules.items()]


def find_prefix_cut(model, names):
    """Find where the frozen computation below the lowest adapted layer ends.

    The model must be an ``nn.Sequential`` (whose ``forward`` is
    ``nn.Sequential.forward``): its steps before the one holding the first
    of ``names`` are frozen, and their output alone is the input of
    everything above. When that step is itself such a Sequential (and not
    an adapted layer), the search goes on inside it, so the cut composes
    across levels: ``Sequential(Sequential(conv, relu, conv*), head)`` with
    ``conv*`` adapted cuts after ``relu``. A step of another type is not
    looked into; it goes whole into the part above the cut.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone (adapted or not: the cut is the same).
    names : list of str
        Qualified names of the adapted layers.

    Returns
    -------
    cut : tuple of (str, int) or None
        One ``(container name, index)`` per level, from the root down: the
        first step of that container above the cut. ``None`` when nothing is
        frozen below the lowest adapted layer in such a chain.
    reason : str or None
        Why there is no cut (``None`` when there is one).

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_winfair._adapters import find_prefix_cut
    >>> model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
    ...                                     nn.Linear(4, 4), nn.ReLU()),
    ...                       nn.Linear(4, 2))
    >>> find_prefix_cut(model, ["0.2"])
    ((('', 0), ('0', 2)), None)
    >>> find_prefix_cut(model, ["0.0"])[0] is None
    True
    """
    names = list(names)
    levels, reason = [], None
    container_name, container = "", model
    while True:
        if not _is_plain_sequential(container):
            where = f"its step {container_name!r}" if container_name else "it"
            reason = (f"{where} is a {type(container).__name__}, not an "
                      "nn.Sequential whose forward is Sequential's own")
            break
        steps = _steps(container, container_name)
        idx = next((i for i, (q, _) in enumerate(steps)
                    if any(n == q or n.startswith(q + ".") for n in names)), None)
        if idx is None:  # pragma: no cover - every adapted layer is inside
            reason = f"no step of {container_name!r} holds an adapted layer"
            break
        levels.append((container_name, idx))
        qualified, step = steps[idx]
        if qualified in names:
            break
        container_name, container = qualified, step
    if not levels:
        return None, (f"the backbone is a {type(model).__name__}, not an "
                      "nn.Sequential whose forward is Sequential's own")
    if not any(i for _, i in levels):
        inside = f"; {reason}, so it is not looked into" if reason else ""
        return None, ("nothing runs before the lowest adapted layer's step "
                      f"{qualified!r} in the backbone's nn.Sequential "
                      f"chain{inside}")
    return tuple(levels), None


def split_at_cut(model, cut):
    """Split ``model`` at ``cut`` into a frozen prefix and the suffix above it.

    Parameters
    ----------
    model : torch.nn.Module
        The model :func:`find_prefix_cut` was given, or the same model with
        adapters injected or the head replaced (the cut is structural).
    cut : tuple of (str, int)
        From :func:`find_prefix_cut`.

    Returns
    -------
    prefix, suffix : nn.Sequential
        New containers holding ``model``'s own modules (not copies), so
        training the suffix trains ``model``; flagged eval, their modules'
        modes untouched. ``suffix(prefix(x))`` is ``model(x)``.
    prefix_names, suffix_names : list of str
        Qualified names in ``model`` of the steps of each.
    """
    prefix, rests = [], []
    for depth, (container_name, idx) in enumerate(cut):
        container = model.get_submodule(container_name) if container_name else model
        steps = _steps(container, container_name)
        prefix += steps[:idx]
        last = depth == len(cut) - 1
        rests.append(steps[idx:] if last else steps[idx + 1:])
    suffix = [step for rest in reversed(rests) for step in rest]
    parts = []
    for steps in (prefix, suffix):
        seq = nn.Sequential(*[m for _, m in steps])
        seq.training = False  # no recursion: the modules keep their modes
        parts.append(seq)
    return parts[0], parts[1], [q for q, _ in prefix], [q for q, _ in suffix]


def _in_suffix(name, suffix_names):
    """``name`` (qualified in the model) as a name inside the suffix Sequential."""
    for k, q in enumerate(suffix_names):
        if name == q or name.startswith(q + "."):
            return f"{k}{name[len(q):]}"
    raise ValueError(f"{name!r} is not above the cut.")  # pragma: no cover


def _close(got, want):
    """``got`` equals ``want`` to float tolerance (of ``want``'s dtype and scale)."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False
    half = want.dtype in (torch.float16, torch.bfloat16)
    rtol = 1e-2 if half else 1e-4
    got, want = got.double(), want.double()
    finite = want[torch.isfinite(want)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    # NaN where the whole model gives NaN is the trunk's problem, not the cut's
    return bool(torch.allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1.0),
                               equal_nan=True))


def _same_logits(model, suffix, prefix_out, x, output):
    """Whether ``suffix(prefix_out)`` gives ``model(x)``'s logits (float tolerance)."""
    with torch.no_grad():
        full = find_logits(call_backbone(model, x), output)
        split = find_logits(suffix(prefix_out), output)
    return _close(split, full)


def _rows_independent(prefix, x, out):
    """Whether the prefix gives each row what it gives it in another batch.

    The cache runs the prefix in batches of consecutive rows, training
    draws shuffled ones: a prefix that mixes rows (statistics of the batch
    in its forward) would train on other values than the whole model.
    """
    half = len(x) // 2
    if half == 0:
        return True
    with torch.no_grad():
        parts = torch.cat([prefix(x[half:]), prefix(x[:half])])
    return _close(parts, torch.cat([out[half:], out[:half]]))


class _SequentialCut:
    """A cut from :func:`find_prefix_cut`, as :class:`FrozenPrefix` uses it."""

    def __init__(self, model, cut):
        self.cut = cut
        self.names = split_at_cut(model, cut)[2]
        self.key = ("sequential", *self.names)

    def split(self, model):
        """Return ``(prefix, suffix, name in model -> name in suffix)``."""
        prefix, suffix, _, suffix_names = split_at_cut(model, self.cut)
        return prefix, suffix, lambda name: _in_suffix(name, suffix_names)


def find_graph_cut(model, names):
    """Find a single value that everything above the lowest of ``names`` reads.

    The model is traced by :mod:`torch.fx` (``torch.nn`` layers and the
    modules of ``names`` stay whole, containers and custom modules are
    traced through).
    The cut is the last node before the first one that touches a layer of
    ``names`` (a call of it, of a module inside it or holding it, or of its
    parameters) such that no node after it reads an earlier node (other
    than constant attributes): its value alone then determines the rest, as
    a residual block's input does, shortcut included. A model whose forward
    has data-dependent control flow cannot be traced.

    Parameters
    ----------
    model : torch.nn.Module
        The frozen backbone, before adapters.
    names : list of str
        Qualified names of the layers that train (the adapted layers and
        the head).

    Returns
    -------
    cut : object or None
        With ``split(model)``, ``names`` (the modules the prefix calls) and
        ``key``; ``None`` when there is none.
    reason : str or None
        Why there is none.
    """
    # torch.fx names every call of a module by its first name, so a module
    # held under two names (self.a = self.b = layer) would be called as the
    # adapter (or the new head) at both sites in the suffix while the model
    # calls it at one: the checks at initialization cannot see that (the
    # adapter then equals the layer), so such a model is not cut
    seen = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name and id(module) in seen and seen[id(module)] != name:
            return None, (f"the module {seen[id(module)]!r} is also registered as "
                          f"{name!r} (torch.fx would call one name at both sites)")
        seen.setdefault(id(module), name)
    try:
        graph = _Tracer(names).trace(model)
    except Exception as exc:  # noqa: BLE001 - tracing runs the user's forward
        return None, ("torch.fx could not trace it ("
                      f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    nodes = list(graph.nodes)
    where = {node: i for i, node in enumerate(nodes)}

    def touches(node):
        if node.op not in ("call_module", "get_attr"):
            return False
        t = node.target
        return any(t == n or t.startswith(n + ".") or n.startswith(t + ".")
                   for n in names)

    first = next((i for i, node in enumerate(nodes) if touches(node)), None)
    if first is None:
        return None, "its traced graph does not call the adapted layers as modules"
    best, reach = None, -1
    for i, node in enumerate(nodes[:first]):
        if node.op in ("call_module", "call_function", "call_method") and reach <= i:
            best = i
        if node.op != "get_attr":
            reach = max([reach, *(where[u] for u in node.users)])
    if best is None:
        return None, ("in its traced graph every value before the lowest adapted "
                      "layer is also read above it (the input itself, say)")
    return _GraphCut(nodes, best), None


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with the trainable modules kept whole.

    A head or adapted layer is then one call in the graph, found by name
    in whatever replaces it (an adapter, a float32 wrapper of the head).
    """

    def __init__(self, leaves):
        super().__init__()
        self.leaves = set(leaves)

    def is_leaf_module(self, m, module_qualified_name):
        return module_qualified_name in self.leaves or super().is_leaf_module(
            m, module_qualified_name)


class _GraphCut:
    """A cut of a traced graph at one node (:func:`find_graph_cut`)."""

    def __init__(self, nodes, best):
        cut = nodes[best]
        prefix = fx.Graph()
        env = {}
        for node in nodes[: best + 1]:
            env[node] = prefix.node_copy(node, env.__getitem__)
        prefix.output(env[cut])
        suffix = fx.Graph()
        env = {cut: suffix.placeholder("frozen")}
        later = set(nodes[best + 1 :])
        for node in nodes[:best]:  # constants read above the cut
            if node.op == "get_attr" and any(u in later for u in node.users):
                env[node] = suffix.node_copy(node)
        for node in nodes[best + 1 :]:
            env[node] = suffix.node_copy(node, env.__getitem__)
        self._graphs = prefix, suffix
        called = [n.target for n in nodes[: best + 1] if n.op == "call_module"]
        self.names = called or [cut.name]
        self.key = ("fx", cut.name, *self.names)

    def split(self, model):
        """Return ``(prefix, suffix, name in model -> name in suffix)``.

        Both are :class:`torch.fx.GraphModule` holding ``model``'s own
        modules under their qualified names, flagged eval.
        """
        parts = []
        for graph in self._graphs:
            copy_ = fx.Graph()
            copy_.output(copy_.graph_copy(graph, {}))
            module = fx.GraphModule(model, copy_)
            module.training = False  # no recursion: the modules keep their modes
            parts.append(module)
        return parts[0], parts[1], lambda name: name


class FrozenPrefix:
    """The frozen steps below the lowest adapted layer and their output on every row.

    Built by :meth:`for_fit`; the fit then trains :meth:`suffix` of the
    adapted model on :attr:`outputs` instead of running the whole model at
    every step.

    Attributes
    ----------
    cut : object
        The cut (an ``nn.Sequential`` one from :func:`find_prefix_cut`, or
        a traced graph's from :func:`find_graph_cut`), with
        ``split(model)``.
    names : list of str
        Qualified names of the modules the prefix runs (the estimator's
        ``frozen_prefix_``).
    outputs : torch.Tensor of shape (n_samples, ...)
        The prefix's output on every training row, in the dtype the trunk
        gives it (float16 under a float16 trunk), on the fit's device.
    """

    def __init__(self, cut, names, outputs, probe, probe_x):
        self.cut, self.names, self.outputs = cut, names, outputs
        self._probe, self._probe_x = probe, probe_x

    @classmethod
    def for_fit(cls, model, names, data, *, batch_size, device, float_dtype,
                output, trainable=(), store=None, seed=None, verbose=False):
        """Find, check and run the prefix of ``model`` below ``names``.

        The cut is :func:`find_prefix_cut`'s (a chain of ``nn.Sequential``),
        else :func:`find_graph_cut`'s (a ``torch.fx`` trace).

        Parameters
        ----------
        model : torch.nn.Module
            The frozen backbone (eval mode), before adapters.
        names : list of str
            The layers that will get adapters.
        data : InputData
            The training rows (a mapping, keyword arguments, gets no cut).
        batch_size : int
        device : torch.device
        float_dtype : torch.dtype
            The trunk's dtype (floating inputs are cast per batch).
        output : None, str, int or callable
            Where the logits are in the model's output.
        trainable : sequence of str, default=()
            Other modules that train (the head): a traced graph's cut stays
            below them too.
        store : tuple of (location, torch.nn.Module) or None, default=None
            A feature-store folder and the user's backbone: the prefix's
            outputs are stored under the backbone's fingerprint plus the
            cut's step names (:func:`~sklearn_winfair._features.prefix_outputs`),
            so any fit of the same backbone cut at the same place reuses
            them (a grid search over ``rank``, say).
        seed : int or None
            Seed of the store's verification sample.
        verbose : bool, default=False
            Progress bar.

        Returns
        -------
        prefix : FrozenPrefix or None
            ``None`` when there is no cut, or the cut failed its check.
        reason : str or None
            Why there is none.
        """
        if data.is_mapping:
            return None, ("X is a mapping (keyword arguments), which the "
                          "cached prefix is not fed")
        found, reason = find_prefix_cut(model, names)
        if found is not None:
            cut = _SequentialCut(model, found)
        else:
            cut, why = find_graph_cut(model, [*names, *trainable])
            if cut is None:
                return None, f"{reason}; {why}"
        prefix, suffix, _ = cut.split(model)
        prefix_names = cut.names
        n = len(data)
        probe = np.unique(np.linspace(0, n - 1, min(n, PROBE_ROWS)).round()
                          .astype(np.int64))
        probe_x = data.take(probe).batch(0, len(probe), device, float_dtype)
        try:
            with torch.no_grad():
                probe_out = prefix(probe_x)
            ok = (isinstance(probe_out, torch.Tensor) and probe_out.is_floating_point()
                  and probe_out.ndim >= 1 and len(probe_out) == len(probe))
            if not ok:
                return None, (f"the output of {prefix_names[-1]!r} is not a "
                              "floating tensor with one row per sample")
            same = _same_logits(model, suffix, probe_out, probe_x, output)
            if same and not _rows_independent(prefix, probe_x, probe_out):
                return None, (f"the output of {prefix_names[-1]!r} on a row "
                              "depends on the other rows of its batch")
        except (RuntimeError, TypeError, ValueError) as exc:
            # the whole model (the fallback) raises it again if it is its own
            return None, (f"the split after {prefix_names[-1]!r} raised "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        if not same:
            return None, (f"the split after {prefix_names[-1]!r} did not give "
                          f"the model's logits on {len(probe)} probe rows (a "
                          "hook, or a module that is not what it looks like)")
        size = probe_out[0].numel() * probe_out.element_size() * n
        if size > MAX_PREFIX_CACHE_BYTES:
            return None, (f"the output of {prefix_names[-1]!r} on all {n} rows "
                          f"would take {size / 2**30:.1f} GiB, above the "
                          f"{MAX_PREFIX_CACHE_BYTES / 2**30:.0f} GiB the cache "
                          "may hold")
        outputs = prefix_outputs(prefix, data, like=probe_out, store=store,
                                 key=cut.key,
                                 batch_size=batch_size, device=device,
                                 float_dtype=float_dtype, seed=seed,
                                 verbose=verbose)
        return cls(cut, prefix_names, outputs, probe, probe_x), None

    def suffix(self, model):
        """Return ``(suffix, name in model -> name in suffix)`` of ``model``.

        ``model`` is the one given to :meth:`for_fit`, or it with adapters
        injected and the head placed.
        """
        _, suffix, inner = self.cut.split(model)
        return suffix, inner

    def check(self, model, output):
        """Whether the suffix of ``model`` on the cached outputs gives its logits."""
        probe = torch.as_tensor(self._probe, device=self.outputs.device)
        try:
            suffix, _ = self.suffix(model)
            return _same_logits(model, suffix, self.outputs.index_select(0, probe),
                                self._probe_x, output)
        except (AttributeError, RuntimeError, TypeError, ValueError):
            return False  # e.g. a traced head wrapped in FloatHead since

    def fisher(self, model, names, batches, n_groups, output):
        """:func:`inner_group_fisher` of ``names`` on the suffix, fed the outputs.

        ``batches`` yield ``(start, stop, y, codes, weights)``.
        """
        suffix, inner = self.suffix(model)
        inside = {n: inner(n) for n in names}
        rows = inner_group_fisher(
            suffix, list(inside.values()),
            ((self.outputs[i:j], yb, cb, wb) for i, j, yb, cb, wb in batches),
            n_groups, output=output)
        return {n: rows[inside[n]] for n in names}


# --------------------------------------------------------------------------
# peft export
# --------------------------------------------------------------------------


def _import_peft():
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - peft is installed in CI
        raise ImportError(
            "to_peft needs the optional package peft: pip install peft."
        ) from exc
    return peft


def to_peft(model, *, adapter_name="default"):
    """Return a peft ``PeftModel`` computing what ``model``'s adapters compute.

    Each :class:`LowRankAdapter` becomes peft's LoRA layer on its residual
    base layer, with ``lora_A.weight = A.T`` and
    ``lora_B.weight = B.T / scaling`` (``lora_alpha = r``, so
    ``scaling = 1``), the way peft's own PiSSA init writes its factors and
    residual (``LoraLayer.pissa_init``). ``PeftModel.save_pretrained`` then
    saves the adapter; it applies on top of the *residual* base, as a
    PiSSA adapter does.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`inject_adapters`; not modified.
    adapter_name : str, default="default"
        peft's adapter name.

    Returns
    -------
    peft_model : peft.PeftModel
        Trainable parameters: the LoRA factors only.

    Raises
    ------
    ValueError
        If ``model`` holds no adapter, or an adapted convolution is dilated
        (peft's LoRA convolution ignores dilation).
    """
    peft = _import_peft()
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, LowRankAdapter)}
    if not adapters:
        raise ValueError("model holds no LowRankAdapter; call inject_adapters first.")
    for name, m in adapters.items():
        base = m.base_layer
        if isinstance(base, nn.Conv2d) and tuple(base.dilation) != (1, 1):
            raise ValueError(
                f"layer {name!r} is a dilated Conv2d (dilation={base.dilation}); "
                "peft's LoRA convolution ignores dilation, so it cannot be "
                "exported to peft. Use merge_adapters instead."
            )
    kinds = {_is_hf_conv1d(m.base_layer) for m in adapters.values()}
    if len(kinds) > 1:
        raise ValueError(
            "model mixes adapted transformers Conv1D and torch layers; peft's "
            "LoraConfig has one fan_in_fan_out for all, so export them "
            "separately or use merge_adapters."
        )
    plain = copy.deepcopy(model)
    for name in adapters:
        _set_submodule(plain, name, copy.deepcopy(plain.get_submodule(name).base_layer))
    # Anchored, escaped names: peft fullmatches a str target_modules, and its
    # rank_pattern keys are searched as r"(.*\.)?(key)$".
    exact = {f"^{re.escape(n)}": m.rank for n, m in adapters.items()}
    config = peft.LoraConfig(
        r=max(exact.values()), lora_alpha=max(exact.values()),
        target_modules="|".join(f"(?:{re.escape(n)})" for n in adapters),
        rank_pattern=exact, alpha_pattern=dict(exact),
        init_lora_weights=False, lora_dropout=0.0,
        fan_in_fan_out=kinds.pop(),
    )
    with warnings.catch_warnings():
        # peft asks transformers models a deprecated question; not the user's
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        peft_model = peft.get_peft_model(plain, config, adapter_name=adapter_name)
    for name, m in adapters.items():
        lora = peft_model.base_model.model.get_submodule(name)
        lora_A, lora_B = lora.lora_A[adapter_name], lora.lora_B[adapter_name]
        if lora_A.weight.shape[0] != m.rank:
            raise RuntimeError(  # pragma: no cover - guards peft's matching
                f"peft gave layer {name!r} rank {lora_A.weight.shape[0]}, "
                f"expected {m.rank}.")
        scaling = lora.scaling[adapter_name]
        with torch.no_grad():
            A_t = m.A.detach().T.reshape(lora_A.weight.shape)
            B_t = (m.B.detach().T / scaling).reshape(lora_B.weight.shape)
            lora_A.weight.copy_(A_t.to(lora_A.weight.dtype))
            lora_B.weight.copy_(B_t.to(lora_B.weight.dtype))
    return peft_model


def adapt_for_fit(est, model, head, names, extract, fd, tensors, rng, mix, *,
                  cache=True, store=None):
    """Put a low-rank adapter on each layer of ``names`` (``target_modules``).

    With ``cache``, the frozen steps below the lowest adapted layer
    (:class:`FrozenPrefix`) run once over the training rows (or come from
    the feature store ``store``); the Fisher then runs the part above them
    only. The per-group Fisher of every layer (``inner_group_fisher``,
    per-sample gradients of the whole model's loss on the training rows,
    weighted by the scaled ``sample_weight``) is mixed into ``ihat`` by the
    head's rule (``mix_importances``); ``"uniform"`` and
    ``adapter_init="lora"`` need none; ``mix`` is the groups' weights of
    ``Ihat_N`` (``"neutral"``). Returns ``(adapted model, inject_adapters'
    info, {name: ihat}, {name: I_s} or None, FrozenPrefix or None, why
    there is none or None)``.
    """
    y_t, codes_t, w_t = tensors
    device, dtype = extract.device, extract.dtype
    # one batch with the head-is-last check (predict runs the head alone on
    # the trunk's features); it also settles whether integer X is cast
    first = extract_head_inputs(model, head, fd.X, batch_size=est.batch_size,
                                device=device, float_dtype=dtype, output=est.output,
                                check_output=True)
    check_finite_features(next(first), est.batch_size)
    first.close()
    prefix, reason = None, "cache_features=False"
    if cache:
        head_name = next(n for n, m in model.named_modules() if m is head)
        prefix, reason = FrozenPrefix.for_fit(
            model, names, fd.X, batch_size=est.batch_size, device=device,
            float_dtype=dtype, output=est.output, trainable=[head_name],
            store=store,
            seed=rng.child_seed(1), verbose=est.verbose > 0)
    svd = est.adapter_init == "svd"
    init = est.importance if svd else "lora"
    ihats, rows = None, None
    if svd and est.importance != "uniform":
        step = est.batch_size

        def spans():
            for i in range(0, len(fd.y), step):
                yield (i, i + step, y_t[i : i + step], codes_t[i : i + step],
                       None if w_t is None else w_t[i : i + step])

        if prefix is not None:
            rows = prefix.fisher(model, names, spans(), fd.n_groups, est.output)
        else:
            batches = ((fd.X.batch(i, j, device, dtype), yb, cb, wb)
                       for i, j, yb, cb, wb in spans())
            rows = inner_group_fisher(model, names, batches, fd.n_groups,
                                      output=est.output)
        ihats = mix_importances(rows, est.importance, codes_t, fd.n_groups,
                                sample_weight=w_t, mix=mix)
    adapted, info = inject_adapters(
        model, names, est.rank, ihats, init, dtype=torch.float32,
        random_state=rng.child_seed(3),
    )
    if ihats is None:  # ones: the importance the SVD used (none for LoRA)
        ihats = {n: np.ones(adapted.get_submodule(n).A.shape[0]) for n in names}
    return adapted, info, ihats, rows, prefix, reason
