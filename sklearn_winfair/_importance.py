"""Empirical Fisher row importance of a head, per group (paper Eq. 1).

Pure functions on tensors. The estimator calls :func:`layer_importances`,
which runs :func:`group_row_importance` on the pre-trained head and the new
task's training rows, then mixes the groups' importances for the chosen
``importance`` (:func:`neutral_importance` for the paper's, the row-count
weighted pool for FWSVD, ones for plain SVD).

Orientation follows the paper: a linear layer computes ``Z = X W + b`` with
``W`` of shape ``(d, k)``; torch stores ``weight = W.T``. Row ``j`` of ``W``
belongs to input feature ``j``, and its importance is
``I[j] = sum_c mean_i (dL_i / dW[j, c]) ** 2``.
"""

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ._layers import linear_layer_names

#: Entries of ``sqrt(I)`` below this fraction of the largest entry are raised
#: to it, so ``Ihat^{-1}`` stays finite for dead features (see Notes of
#: :func:`neutral_importance`).
IMPORTANCE_FLOOR = 1e-6


def _per_sample_rows_closed_form(layer, x, y):
    """Per-sample ``sum_c (dL/dW[j, c])**2`` for one linear layer, closed form.

    For cross-entropy on ``z = x W + b``, ``dL/dW[j, c] = x_j (p_c - y_c)``,
    so the row sum is ``x_j**2 * ||p - y||**2``.
    """
    logits = layer(x)
    err = torch.softmax(logits, dim=1)
    err = err - F.one_hot(y, num_classes=logits.shape[1]).to(err.dtype)
    return x.square() * err.square().sum(dim=1, keepdim=True)


class _NoClosedForm(Exception):
    """A head layer is not a plain per-sample linear map (fall back to vmap)."""


def _per_sample_rows_chain(head, names, x, y):
    """Per-sample row sums for every linear layer, from one batched backward.

    For a layer ``z = a W + b`` inside the head, the per-sample gradient is
    the outer product ``dL_i/dW[j, c] = a_ij g_ic`` with
    ``g_i = dL_i / dz_i``, so ``sum_c (dL_i/dW[j, c])**2 = a_ij**2 ||g_i||**2``.
    One backward of the *summed* loss gives every ``g_i`` at once, because
    row ``i`` of the batch only reaches loss ``i`` (the head is in eval mode:
    no batch statistics). Raises :class:`_NoClosedForm` when a layer is
    called more than once or sees inputs that are not 2-d.
    """
    inputs, outputs = {}, {}
    handles = []

    def make_hook(name):
        def hook(module, args, out):
            if name in outputs or args[0].ndim != 2:
                raise _NoClosedForm
            inputs[name], outputs[name] = args[0], out
        return hook

    for n in names:
        layer = head.get_submodule(n) if n else head
        handles.append(layer.register_forward_hook(make_hook(n)))
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            loss = F.cross_entropy(head(xg), y, reduction="sum")
            if len(outputs) != len(names):
                raise _NoClosedForm
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])
    finally:
        for h in handles:
            h.remove()
    return {
        n: inputs[n].detach().square() * g.square().sum(dim=1, keepdim=True)
        for n, g in zip(names, grads, strict=True)
    }


def _per_sample_rows_func(head, names, x, y):
    """Per-sample row sums of squared gradients for every named linear layer.

    Uses :func:`torch.func.vmap` over :func:`torch.func.grad`, so it works
    for any head (several layers, activations in between).
    """
    params = {k: v.detach() for k, v in head.named_parameters()}
    wanted = [f"{n}.weight" if n else "weight" for n in names]

    def loss(p, xi, yi):
        out = functional_call(head, p, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    # torch weight is (k, d): summing the squares over k gives one value per
    # input feature j, i.e. per row of the paper's W.
    return {n: grads[w].square().sum(dim=1) for n, w in zip(names, wanted, strict=True)}


@torch.no_grad()
def _accumulate(sums, rows, codes):
    sums.index_add_(0, codes, rows)


def group_row_importance(head, features, y, codes, n_groups, *, batch_size=1024,
                         sample_weight=None):
    """Per-group empirical Fisher row importance of each linear layer of ``head``.

    Parameters
    ----------
    head : torch.nn.Module
        The pre-trained head, mapping features to class logits. Not modified.
    features : torch.Tensor of shape (n_samples, d)
        The head's input (the frozen backbone's output), or an iterable of
        ``(features, y, codes)`` batches when they are not cached.
    y : torch.Tensor of shape (n_samples,), dtype long
        Encoded true labels (column ``y[i]`` of the logits is the true class).
    codes : torch.Tensor of shape (n_samples,), dtype long
        Group code of each row, in ``range(n_groups)``; all zeros for the
        pooled (FWSVD) Fisher.
    n_groups : int
        Number of groups.
    batch_size : int, default=1024
        Rows per vectorised gradient computation.
    sample_weight : torch.Tensor of shape (n_samples,) or None, default=None
        Non-negative row weights: ``F_s`` becomes the weighted mean of the
        per-sample squared gradients within each group (a row of weight 0
        counts as absent; an integer weight as that many copies of the row).
        With uncached ``features`` batches, pass them as a fourth element
        of each batch instead.

    Returns
    -------
    importance : dict of str to ndarray of shape (n_groups, d_layer)
        For each linear layer (by name inside ``head``; ``""`` for ``head``
        itself), ``I_s[j] = sum_c F_s[j, c]`` with
        ``F_s[j, c] = mean_{i in s} (dL_i/dW[j, c])**2``. A group without rows
        (or with zero total weight) gets a row of zeros.

    Notes
    -----
    Per-sample squared gradients, not squared batch gradients: the paper's
    empirical Fisher. A single ``nn.Linear`` head uses the closed form
    ``x_ij**2 (p_ic - y_ic)**2``; a head of linear layers and element-wise
    steps (an MLP) gets every layer's per-sample gradient from one batched
    backward, in closed form by the chain rule; any other head uses
    :func:`torch.func.vmap` of :func:`torch.func.grad`. All give the same
    numbers (tests prove it).

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair import group_row_importance
    >>> head = torch.nn.Linear(3, 2)
    >>> x = torch.randn(10, 3)
    >>> y = torch.tensor([0, 1] * 5)
    >>> codes = torch.tensor([0] * 6 + [1] * 4)  # two groups
    >>> rows = group_row_importance(head, x, y, codes, n_groups=2)
    >>> rows[""].shape  # one row of I_s per group, one entry per input feature
    (2, 3)
    """
    names = linear_layer_names(head)
    if not names:
        raise ValueError("head holds no nn.Linear layer; nothing to weigh.")
    was_training = head.training
    head.eval()
    try:
        if isinstance(features, torch.Tensor):
            batches = (
                (features[i : i + batch_size], y[i : i + batch_size],
                 codes[i : i + batch_size],
                 None if sample_weight is None else sample_weight[i : i + batch_size])
                for i in range(0, len(features), batch_size)
            )
        else:
            batches = features
        sums, counts = None, torch.zeros(n_groups, dtype=torch.float64)
        for xb, yb, cb, *wb in batches:
            wb = wb[0] if wb else None
            if isinstance(head, nn.Linear):
                with torch.no_grad():
                    rows = {"": _per_sample_rows_closed_form(head, xb, yb)}
            else:
                try:
                    rows = _per_sample_rows_chain(head, names, xb, yb)
                except _NoClosedForm:
                    rows = _per_sample_rows_func(head, names, xb, yb)
            cb = cb.to(xb.device)
            if sums is None:
                sums = {
                    n: torch.zeros(n_groups, r.shape[1], dtype=torch.float64,
                                   device=xb.device)
                    for n, r in rows.items()
                }
            if wb is None:
                wb = torch.ones(len(cb), dtype=torch.float64, device=xb.device)
            wb = wb.to(device=xb.device, dtype=torch.float64)
            for n, r in rows.items():
                _accumulate(sums[n], r.to(torch.float64) * wb[:, None], cb)
            counts += torch.bincount(
                cb.cpu(), weights=wb.cpu(), minlength=n_groups
            ).to(torch.float64)
    finally:
        head.train(was_training)
    if sums is None:
        raise ValueError("No rows to compute the Fisher importance on.")
    denom = torch.where(counts > 0, counts, 1.0).unsqueeze(1).numpy()
    return {n: s.cpu().numpy() / denom for n, s in sums.items()}


def neutral_importance(group_importance, weights, *, floor=IMPORTANCE_FLOOR):
    """Mix per-group row importances into the diagonal of ``Ihat_N``.

    ``Ihat_N = sum_s w_s * sqrt(I_s)``: with two groups and
    ``weights = [alpha, 1 - alpha]`` this is the paper's
    ``alpha * Ihat_1 + (1 - alpha) * Ihat_2``.

    Parameters
    ----------
    group_importance : ndarray of shape (n_groups, d)
        Raw importances ``I_s`` (one row per group).
    weights : array-like of shape (n_groups,)
        Non-negative group weights summing to one.
    floor : float, default=1e-6
        Relative floor, see Notes.

    Returns
    -------
    ihat : ndarray of shape (d,)
        Strictly positive diagonal of ``Ihat_N``.

    Notes
    -----
    A feature that is zero on every training row (a dead ReLU unit, say) has
    zero importance, and ``Ihat^{-1}`` would be infinite. Entries below
    ``floor * max(ihat)`` are raised to that value; if every entry is zero the
    result is all ones (plain SVD). A dead feature contributes nothing to the
    head's output, so the floor only keeps the arithmetic finite.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._importance import neutral_importance
    >>> I = np.array([[4.0, 0.0], [0.0, 1.0]])
    >>> neutral_importance(I, [0.5, 0.5])
    array([1. , 0.5])
    """
    group_importance = np.asarray(group_importance, dtype=float)
    weights = np.asarray(weights, dtype=float)
    ihat = weights @ np.sqrt(np.clip(group_importance, 0.0, None))
    return floor_importance(ihat, floor=floor)


def floor_importance(ihat, *, floor=IMPORTANCE_FLOOR):
    """Raise entries of ``ihat`` below ``floor * max(ihat)`` to that value.

    Parameters
    ----------
    ihat : ndarray of shape (d,)
        Non-negative diagonal of an importance matrix.
    floor : float, default=1e-6
        Relative floor.

    Returns
    -------
    ndarray of shape (d,)
        A strictly positive copy; all ones when ``ihat`` is all zero or not
        finite.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._importance import floor_importance
    >>> floor_importance(np.array([2.0, 0.0]), floor=0.1)
    array([2. , 0.2])
    """
    ihat = np.asarray(ihat, dtype=float)
    top = ihat.max(initial=0.0)
    if not np.isfinite(top) or top <= 0 or not np.all(np.isfinite(ihat)):
        return np.ones_like(ihat)
    return np.maximum(ihat, floor * top)


def layer_importances(head, names, importance, source, y, codes, n_groups, *,
                      sample_weight=None, mix=None, batch_size=1024):
    """Return the importance diagonal of each layer to factorize.

    Parameters
    ----------
    head : torch.nn.Module
        The float32 head to factorize (pre-trained or probe).
    names : list of str
        Its ``nn.Linear`` layers to factorize (``""``: the head itself).
    importance : {"neutral", "fisher", "uniform"}
        ``"uniform"``: ones (plain SVD); ``"fisher"``: the pooled Fisher
        over all rows, ``sqrt(sum_s n_s I_s / n)`` (FWSVD); ``"neutral"``:
        ``sum_s mix_s sqrt(I_s)`` (the paper's ``Ihat_N``).
    source : torch.Tensor or iterable
        The head's input (cached features), or an iterable of
        ``(features, y, codes, weights)`` batches (see
        :func:`group_row_importance`).
    y, codes : torch.Tensor of shape (n_samples,)
        Encoded labels and group codes (zeros without groups), on the
        features' device.
    n_groups : int
    sample_weight : torch.Tensor of shape (n_samples,) or None, default=None
    mix : ndarray of shape (n_groups,) or None, default=None
        Group weights of ``Ihat_N`` (``"neutral"`` only).
    batch_size : int, default=1024

    Returns
    -------
    ihats : dict of str to ndarray of shape (d_layer,)
    group_rows : dict of str to ndarray of shape (n_groups, d_layer) or None
        The raw ``I_s`` (``None`` for ``"uniform"``).
    """
    if importance == "uniform":
        ihats = {}
        for n in names:
            layer = head.get_submodule(n) if n else head
            ihats[n] = np.ones(layer.in_features)
        return ihats, None
    rows = group_row_importance(
        head, source, y, codes, n_groups, batch_size=batch_size,
        sample_weight=sample_weight,
    )
    rows = {n: rows[n] for n in names}
    return mix_importances(rows, importance, codes, n_groups,
                           sample_weight=sample_weight, mix=mix), rows


def mix_importances(group_rows, importance, codes, n_groups, *, sample_weight=None,
                    mix=None):
    """Mix per-group row importances into each layer's diagonal ``ihat``.

    Shared by the head (:func:`layer_importances`) and the inner layers'
    adapters (the estimator with ``target_modules``), so both use one rule.

    Parameters
    ----------
    group_rows : dict of str to ndarray of shape (n_groups, d_layer)
        Raw ``I_s`` per layer (:func:`group_row_importance` or
        :func:`~sklearn_winfair._adapters.inner_group_fisher`).
    importance : {"neutral", "fisher"}
        ``"fisher"``: the pooled Fisher ``sqrt(sum_s n_s I_s / n)`` with
        ``n_s`` the (weighted) row count of group ``s`` (FWSVD);
        ``"neutral"``: ``sum_s mix_s sqrt(I_s)`` (the paper's ``Ihat_N``).
    codes : torch.Tensor of shape (n_samples,)
        Group code of each row (zeros without groups).
    n_groups : int
    sample_weight : torch.Tensor of shape (n_samples,) or None, default=None
    mix : ndarray of shape (n_groups,) or None, default=None
        Group weights of ``Ihat_N`` (``"neutral"`` only).

    Returns
    -------
    ihats : dict of str to ndarray of shape (d_layer,)
        Strictly positive (:func:`floor_importance`).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair._importance import mix_importances
    >>> rows = {"0": np.array([[4.0, 1.0], [0.0, 1.0]])}
    >>> codes = torch.tensor([0, 0, 0, 1])  # 3 rows of group 0, 1 of group 1
    >>> mix_importances(rows, "fisher", codes, 2)["0"]
    array([1.73205081, 1.        ])
    >>> mix_importances(rows, "neutral", codes, 2, mix=np.array([0.5, 0.5]))["0"]
    array([1., 1.])
    """
    if importance == "fisher":
        # pooled Fisher = (weighted) row-count-weighted mean of the groups'
        counts = np.bincount(
            codes.cpu().numpy(), minlength=n_groups,
            weights=None if sample_weight is None else sample_weight.cpu().numpy(),
        ).astype(float)
        pooled = {n: (counts / counts.sum()) @ r for n, r in group_rows.items()}
        return {n: floor_importance(np.sqrt(v)) for n, v in pooled.items()}
    if importance == "neutral":
        return {n: neutral_importance(r, mix) for n, r in group_rows.items()}
    raise ValueError(
        f"importance must be 'neutral' or 'fisher' to mix group importances, "
        f"got {importance!r} (use ones for 'uniform')."
    )
