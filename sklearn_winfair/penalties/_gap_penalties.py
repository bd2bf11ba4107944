r"""Differentiable demographic parity and equalized odds gaps of a mini-batch.

torch computes them on predicted probabilities with ``index_add`` (no Python
loop over samples or groups), so that they can be added to a training loss on
any device; on hard predictions they equal the metrics of
:mod:`sklearn_winfair.metrics`.

.. math::

    \mathrm{DP}(p) = \max_g \bar p_g - \min_g \bar p_g, \qquad
    \mathrm{EO}(p) = \sum_{c \in \{0, 1\}}
        \bigl(\max_g \bar p_{g, c} - \min_g \bar p_{g, c}\bigr),

where :math:`\bar p_g` is the mean of ``proba_pos`` over the rows of group
:math:`g` in the batch and :math:`\bar p_{g, c}` the same over its rows of
true class :math:`c`; only the groups present count. With ``sample_weight``
the means are weighted, :math:`\bar p_g = \sum_{i \in g} w_i p_i /
\sum_{i \in g} w_i`, and a row of weight 0 is absent.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import torch

__all__ = ["demographic_parity_penalty", "equalized_odds_penalty"]

_MESSAGE_TENSOR_1D = "{name} must be a 1-d tensor. Got shape {shape}."
_MESSAGE_TENSOR_LENGTH = (
    "{name} must have the same length as proba_pos ({expected}). Got {got}."
)
_MESSAGE_GROUPS_DTYPE = (
    "groups must be an integer tensor of group codes 0..G-1. Got dtype {dtype}."
)
_MESSAGE_GROUPS_RANGE = (
    "groups must hold codes in [0, {upper}). Got values in [{lo}, {hi}]."
)
_MESSAGE_PROBA_DTYPE = "proba_pos must be a floating point tensor. Got dtype {dtype}."
_MESSAGE_Y_VALUES = "y must hold only 0 and 1. Got values {values}."
_MESSAGE_WEIGHT_VALUES = (
    "sample_weight must be finite and non-negative. Got values in [{lo}, {hi}]."
)


def _check_penalty_inputs(proba_pos, groups, y, num_groups, sample_weight=None):
    """Validate the penalty inputs; return the number of groups."""
    if not torch.is_floating_point(proba_pos):
        raise TypeError(_MESSAGE_PROBA_DTYPE.format(dtype=proba_pos.dtype))
    if proba_pos.ndim != 1:
        raise ValueError(
            _MESSAGE_TENSOR_1D.format(name="proba_pos", shape=tuple(proba_pos.shape))
        )
    n = proba_pos.shape[0]
    others = {"groups": groups} if y is None else {"groups": groups, "y": y}
    if sample_weight is not None:
        others["sample_weight"] = sample_weight
    for name, tensor in others.items():
        if tensor.ndim != 1:
            raise ValueError(
                _MESSAGE_TENSOR_1D.format(name=name, shape=tuple(tensor.shape))
            )
        if tensor.shape[0] != n:
            raise ValueError(
                _MESSAGE_TENSOR_LENGTH.format(
                    name=name, expected=n, got=tensor.shape[0]
                )
            )
    if torch.is_floating_point(groups) or torch.is_complex(groups):
        raise TypeError(_MESSAGE_GROUPS_DTYPE.format(dtype=groups.dtype))
    if n == 0:
        return 0 if num_groups is None else num_groups
    lo, hi = int(groups.min()), int(groups.max())
    upper = hi + 1 if num_groups is None else num_groups
    if lo < 0 or hi >= upper:
        raise ValueError(_MESSAGE_GROUPS_RANGE.format(upper=upper, lo=lo, hi=hi))
    if y is not None:
        values = torch.unique(y).tolist()
        if not set(values) <= {0, 1}:
            raise ValueError(_MESSAGE_Y_VALUES.format(values=values))
    if sample_weight is not None:
        w = sample_weight.double()
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(
                _MESSAGE_WEIGHT_VALUES.format(lo=w.min().item(), hi=w.max().item())
            )
    return upper


def _as_weights(sample_weight, values):
    """``sample_weight`` in the dtype and on the device of ``values``, or ones."""
    if sample_weight is None:
        return torch.ones_like(values)
    return sample_weight.to(dtype=values.dtype, device=values.device)


def _group_mean_range(values, keys, num_keys, num_columns, weights):
    """Range (max - min) of weighted group means over the groups present, per column.

    ``keys`` indexes a ``(num_keys // num_columns, num_columns)`` table of
    (group, column) cells; a cell is present when its total weight is positive.
    Returns a tensor of shape ``(num_columns,)`` with 0 for a column in which
    fewer than two groups are present.
    """
    num_keys = max(num_keys, num_columns)  # an empty batch still gets one row
    sums = values.new_zeros(num_keys).index_add(0, keys, values * weights)
    counts = values.new_zeros(num_keys).index_add(0, keys, weights)
    sums = sums.view(-1, num_columns)
    counts = counts.view(-1, num_columns)
    present = counts > 0
    means = sums / torch.where(present, counts, 1.0)
    highest = means.masked_fill(~present, -torch.inf).amax(dim=0)
    lowest = means.masked_fill(~present, torch.inf).amin(dim=0)
    spread = torch.where(present.sum(dim=0) >= 2, highest - lowest, 0.0)
    return spread


def demographic_parity_penalty(
    proba_pos, groups, *, num_groups=None, sample_weight=None, validate_args=True
):
    """Differentiable demographic parity gap of a mini-batch.

    The largest minus the smallest mean predicted probability across the groups
    present in the batch. On hard predictions (``proba_pos`` in {0, 1}) it
    equals :func:`~sklearn_winfair.metrics.demographic_parity_gap`.

    Parameters
    ----------
    proba_pos : torch.Tensor of shape (n_samples,)
        Floating point probabilities ``P(y = 1 | x)``.

    groups : torch.Tensor of shape (n_samples,)
        Integer group codes in ``0 .. num_groups - 1``.

    num_groups : int, default=None
        Number of groups. None infers ``groups.max() + 1``, which synchronises
        with the device; pass it to avoid that.

    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Non-negative row weights: each group mean becomes a weighted mean, and
        a row of weight 0 is absent (a group whose rows all weigh 0 is not
        present). None weighs every row 1.

    validate_args : bool, default=True
        Check shapes, dtypes and values. Set to False in a hot loop once the
        inputs are known to be valid.

    Returns
    -------
    torch.Tensor
        A 0-d tensor with the dtype and device of ``proba_pos``; 0 when fewer
        than two groups are present.

    Raises
    ------
    ValueError
        If the shapes disagree or group codes are out of range.
    TypeError
        If ``proba_pos`` is not floating point or ``groups`` not integer.

    See Also
    --------
    sklearn_winfair.metrics.demographic_parity_gap : The metric on predicted labels.
    equalized_odds_penalty : Penalty for equalized odds.

    Notes
    -----
    Computed with ``index_add`` over (group) cells, without a Python loop over
    samples or groups, so it runs on any device and is differentiable with
    respect to ``proba_pos``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair.penalties import demographic_parity_penalty
    >>> proba = torch.tensor([0.9, 0.7, 0.2, 0.4], requires_grad=True)
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> penalty = demographic_parity_penalty(proba, groups)
    >>> round(penalty.item(), 4)
    0.5
    >>> penalty.backward()
    >>> proba.grad
    tensor([ 0.5000,  0.5000, -0.5000, -0.5000])

    Weights make each group's mean a weighted mean (group 0: (3 * 0.9 + 0.7)
    / 4 = 0.85):

    >>> weights = torch.tensor([3.0, 1.0, 1.0, 1.0])
    >>> penalty = demographic_parity_penalty(proba, groups, sample_weight=weights)
    >>> round(penalty.item(), 4)
    0.55
    """
    if validate_args:
        num_groups = _check_penalty_inputs(
            proba_pos, groups, None, num_groups, sample_weight
        )
    elif num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 0
    keys = groups.long()
    weights = _as_weights(sample_weight, proba_pos)
    return _group_mean_range(proba_pos, keys, num_groups, 1, weights)[0]


def equalized_odds_penalty(
    proba_pos, y, groups, *, num_groups=None, sample_weight=None, validate_args=True
):
    """Differentiable equalized odds gap (TPR gap + FPR gap) of a mini-batch.

    For each true class ``c`` in {0, 1}, the largest minus the smallest mean of
    ``proba_pos`` over the samples of class ``c`` in each group, counting only the
    groups present in that class; the two spreads are added. On hard predictions it
    equals :func:`~sklearn_winfair.metrics.equalized_odds_gap` with ``agg="sum"`` when
    every group holds both classes.

    Parameters
    ----------
    proba_pos : torch.Tensor of shape (n_samples,)
        Floating point probabilities ``P(y = 1 | x)``.

    y : torch.Tensor of shape (n_samples,)
        True labels, 0 or 1 (integer or bool).

    groups : torch.Tensor of shape (n_samples,)
        Integer group codes in ``0 .. num_groups - 1``.

    num_groups : int, default=None
        Number of groups. None infers ``groups.max() + 1``, which synchronises
        with the device; pass it to avoid that.

    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Non-negative row weights: each group mean becomes a weighted mean, and
        a row of weight 0 is absent (a group whose rows all weigh 0 is not
        present). None weighs every row 1.

    validate_args : bool, default=True
        Check shapes, dtypes and values. Set to False in a hot loop once the
        inputs are known to be valid.

    Returns
    -------
    torch.Tensor
        A 0-d tensor with the dtype and device of ``proba_pos``, in ``[0, 2]``.

    Raises
    ------
    ValueError
        If the shapes disagree, group codes are out of range or ``y`` is not
        0/1.
    TypeError
        If ``proba_pos`` is not floating point or ``groups`` not integer.

    See Also
    --------
    sklearn_winfair.metrics.equalized_odds_gap : The metric on predicted labels.
    demographic_parity_penalty : Penalty for demographic parity.

    Notes
    -----
    Unlike :func:`~sklearn_winfair.metrics.equalized_odds_gap`, which
    follows fairlearn and gives a group without positives a true positive rate of 0, the
    penalty ignores a group absent from a class: a mini-batch often misses some (group,
    class) cells, and a rate of 0 there would be noise rather than unfairness.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair.penalties import equalized_odds_penalty
    >>> proba = torch.tensor([0.9, 0.1, 0.6, 0.3])
    >>> y = torch.tensor([1, 0, 1, 0])
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> round(equalized_odds_penalty(proba, y, groups).item(), 4)
    0.5

    A row of weight 0 is absent: without group 1's negative row, only the
    positives' gap ``|0.9 - 0.6|`` remains.

    >>> weights = torch.tensor([1.0, 1.0, 1.0, 0.0])
    >>> round(equalized_odds_penalty(proba, y, groups, sample_weight=weights).item(), 4)
    0.3
    """
    if validate_args:
        num_groups = _check_penalty_inputs(
            proba_pos, groups, y, num_groups, sample_weight
        )
    elif num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 0
    keys = groups.long() * 2 + y.long()
    weights = _as_weights(sample_weight, proba_pos)
    return _group_mean_range(proba_pos, keys, 2 * num_groups, 2, weights).sum()
