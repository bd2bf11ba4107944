r"""Post-processing sweeps and the held-out metrics of the fairness frontier.

numpy does everything here. Every metric is computed from a per-group
confusion matrix ``C[g, true, pred]`` (weighted counts), so one function serves
the threshold sweep, the chosen point and every bootstrap draw:

.. math::

    \mathrm{Err} = 100\,\Bigl(1 - \sum_c \frac{n_c}{n}
        \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}\Bigr), \qquad
    \Delta_{DP} = \max_c \bigl(\max_g SR_{g,c} - \min_g SR_{g,c}\bigr),

    \Delta_{EO} = \Delta_{TPR} + \Delta_{FPR}\ \text{(sum)},\quad
    \max(\Delta_{TPR}, \Delta_{FPR})\ \text{(max)}, \qquad
    \Delta_{EOpp} = \Delta_{TPR},

the definitions of :mod:`sklearn_winfair.metrics` (a rate with an empty
denominator is 0 and takes part, as in fairlearn; a group with no row does
not). The binary sweep follows OxonFair 0.3 (``efficient_compute.grid_search``):
the rows of each *assigned* group are sorted by score once, cumulative counts
of positives and negatives per *true* group give the confusion matrix of every
cut-off in O(1), and a grid of cut-offs per group is searched, then refined
around its Pareto front. The assigned group is the true group, or the group a
second head infers from the features.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import numpy as np

__all__ = [
    "CONSTRAINTS",
    "bootstrap_metrics",
    "confusion",
    "metrics_from_confusion",
    "pareto_mask",
    "sweep_class_offsets",
    "sweep_thresholds",
]

#: The constraints and whether they need a binary target.
CONSTRAINTS = {
    "demographic_parity": False,
    "equalized_odds": True,
    "equalized_odds_max": True,
    "equal_opportunity": True,
}


def _ratio(num, den):
    """``num / den`` with 0 where ``den`` is 0 (fairlearn's convention)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _spread(rates, present):
    """Largest minus smallest of ``rates`` over the groups (last axis) present."""
    hi = np.where(present, rates, -np.inf).max(axis=-1)
    lo = np.where(present, rates, np.inf).min(axis=-1)
    return np.where(np.isfinite(hi - lo), hi - lo, 0.0)


def metrics_from_confusion(conf, constraint):
    """Return ``(error, gap)`` of confusion matrices ``conf[..., g, true, pred]``.

    ``error`` is the weighted-F1 error in percent (``paper_metrics``'s ``err``),
    ``gap`` the constraint's gap in ``[0, 1]`` (``[0, 2]`` for the summed
    equalized odds). Leading axes are kept (points, bootstrap draws).
    """
    conf = np.asarray(conf, dtype=float)
    pooled = conf.sum(axis=-3)  # (..., true, pred)
    tp = np.diagonal(pooled, axis1=-2, axis2=-1)
    support = pooled.sum(axis=-1)
    predicted = pooled.sum(axis=-2)
    f1 = _ratio(2 * tp, support + predicted)
    error = 100.0 * (1.0 - _ratio((support * f1).sum(-1), support.sum(-1)))
    rows = conf.sum(axis=(-2, -1))  # (..., g)
    present = rows > 0
    if constraint == "demographic_parity":
        selection = _ratio(conf.sum(axis=-2), rows[..., None])  # (..., g, pred)
        gaps = _spread(np.moveaxis(selection, -1, -2), present[..., None, :])
        return error, gaps.max(axis=-1)
    tpr = _ratio(conf[..., :, 1, 1], conf[..., :, 1, :].sum(-1))
    fpr = _ratio(conf[..., :, 0, 1], conf[..., :, 0, :].sum(-1))
    tpr_gap, fpr_gap = _spread(tpr, present), _spread(fpr, present)
    if constraint == "equalized_odds":
        return error, tpr_gap + fpr_gap
    if constraint == "equalized_odds_max":
        return error, np.maximum(tpr_gap, fpr_gap)
    return error, tpr_gap  # equal_opportunity


def confusion(y, pred, groups, n_groups, n_classes, weight=None):
    """Weighted confusion matrices ``C[g, true, pred]`` of one prediction."""
    cells = (groups * n_classes + y) * n_classes + pred
    counts = np.bincount(
        cells, weights=weight, minlength=n_groups * n_classes * n_classes
    )
    return counts.reshape(n_groups, n_classes, n_classes)


def bootstrap_metrics(y, preds, groups, n_groups, n_classes, weight, constraint,
                      n_bootstrap, random_state, level=0.95):
    """Percentile intervals of error and gap for each row of ``preds``.

    The same ``n_bootstrap`` resamples of the held-out rows (drawn once from
    ``random_state``, an int) serve every point, so intervals are comparable.
    Returns four arrays of shape ``(n_points,)``: error low/high, gap low/high.
    """
    n = len(y)
    rng = np.random.RandomState(random_state)
    draws = np.stack([np.bincount(rng.randint(n, size=n), minlength=n)
                      for _ in range(n_bootstrap)]).astype(float)
    if weight is not None:
        draws *= weight
    preds = np.asarray(preds).reshape(-1, n)
    n_points = len(preds)
    q = [50 * (1 - level), 50 * (1 + level)]
    out = np.empty((n_points, 4))
    # a block of points at a time: for each (group, true class) cell, the
    # weighted draws of its rows times the indicator of each predicted class
    # (one matrix product per cell and class instead of one per point)
    block = max(1, 4_000_000 // max(1, n_bootstrap * n_groups * n_classes**2))
    cells = [(g, t, np.flatnonzero((groups == g) & (y == t)))
             for g in range(n_groups) for t in range(n_classes)]
    for start in range(0, n_points, block):
        part = preds[start : start + block]
        conf = np.zeros((n_bootstrap, len(part), n_groups, n_classes, n_classes))
        for g, t, rows in cells:
            if rows.size == 0:
                continue
            sub_draws, sub_pred = draws[:, rows], part[:, rows]
            for p in range(n_classes):
                conf[:, :, g, t, p] = sub_draws @ (sub_pred == p).T
        err, gap = metrics_from_confusion(conf, constraint)  # (draws, points)
        out[start : start + block, :2] = np.percentile(err, q, axis=0).T
        out[start : start + block, 2:] = np.percentile(gap, q, axis=0).T
    return out.T


def pareto_mask(error, gap):
    """Boolean mask of the points no other point beats on both error and gap.

    Ties on both keep the first point only.
    """
    error, gap = np.asarray(error, float), np.asarray(gap, float)
    order = np.lexsort((np.arange(len(error)), error, gap))
    mask = np.zeros(len(error), dtype=bool)
    best = np.inf
    for i in order:
        if error[i] < best:
            mask[i] = True
            best = error[i]
    return mask


# --------------------------------------------------------------------------
# binary: per-group thresholds by cumulative counts (OxonFair's sweep)
# --------------------------------------------------------------------------
def _cumulative(score, y, true_groups, n_groups, weight):
    """Sorted cut-offs of one assigned group and counts above each of them.

    Returns ``thresholds`` of shape ``(u + 1,)`` (descending; predicting 1 for
    ``score > thresholds[j]`` selects the ``j`` highest distinct scores) and
    ``above`` of shape ``(u + 1, 2, n_groups)``: weighted positives and
    negatives per true group with a score above each cut-off.
    """
    values, index = np.unique(score, return_inverse=True)
    values, index = values[::-1], len(values) - 1 - index
    counts = np.zeros((len(values), 2, n_groups))
    np.add.at(counts, (index, 1 - y, true_groups), 1.0 if weight is None else weight)
    above = np.concatenate([np.zeros((1, 2, n_groups)), np.cumsum(counts, 0)])
    if len(values) == 0:
        return np.array([0.0]), above
    mids = (values[:-1] + values[1:]) / 2
    thresholds = np.concatenate([[values[0] + 1.0], mids, [values[-1] - 1.0]])
    return thresholds, above


def _grid(cum, lows, highs, steps, totals, constraint):
    """Metrics of every combination of cut-offs (one index range per group)."""
    axes = [np.unique(np.round(np.linspace(lo, hi, steps + 1)).astype(int))
            for lo, hi in zip(lows, highs, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij", sparse=True)
    above = sum(c[m] for c, m in zip(cum, mesh, strict=True))  # (..., 2, G)
    above = above.reshape(-1, 2, above.shape[-1])
    index = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], 1)
    tp, fp = above[:, 0], above[:, 1]  # (P, G)
    pos, neg = totals
    conf = np.stack([np.stack([neg - fp, fp], -1), np.stack([pos - tp, tp], -1)], -2)
    error, gap = metrics_from_confusion(conf, constraint)
    return index, error, gap


def sweep_thresholds(score, y, true_groups, assigned, n_groups, n_assigned, *,
                     constraint, weight=None, steps=25, max_points=20_000):
    """Per-assigned-group thresholds on ``score`` and their held-out metrics.

    Parameters
    ----------
    score : ndarray of shape (n,)
        Held-out decision values (logit differences).
    y : ndarray of shape (n,)
        True labels, 0/1.
    true_groups, assigned : ndarray of shape (n,)
        True group codes (for the metrics) and the codes the thresholds are
        indexed by (the true ones, an inferred one, or all zeros for one
        shared threshold).
    n_groups, n_assigned : int
        Number of true and of assigned groups.
    constraint : str
        A key of :data:`CONSTRAINTS`.
    weight : ndarray of shape (n,) or None
        Row weights.
    steps : int or None
        Cut-offs per group in the coarse grid (``None``: every distinct score,
        for one shared threshold). The grid is refined once around the points
        of its Pareto front, as OxonFair does.
    max_points : int
        Upper bound on the grid's size; ``steps`` shrinks to respect it.

    Returns
    -------
    thresholds : ndarray of shape (n_points, n_assigned)
    error, gap : ndarray of shape (n_points,)
    """
    y = np.asarray(y, dtype=int)
    cum, cuts = [], []
    for a in range(n_assigned):
        rows = assigned == a
        t, c = _cumulative(score[rows], y[rows], true_groups[rows], n_groups,
                           None if weight is None else weight[rows])
        cuts.append(t)
        cum.append(c)
    w = np.ones(len(y)) if weight is None else weight
    totals = (np.bincount(true_groups, weights=w * (y == 1), minlength=n_groups),
              np.bincount(true_groups, weights=w * (y == 0), minlength=n_groups))
    highs = np.array([len(t) - 1 for t in cuts])
    if steps is None:
        steps = int(highs.max())
    steps = max(1, min(steps, int(max_points ** (1 / n_assigned)) - 1))
    lows = np.zeros(n_assigned, dtype=int)
    index, error, gap = _grid(cum, lows, highs, steps, totals, constraint)
    front = index[pareto_mask(error, gap)]
    width = np.maximum(1, highs // steps)
    lows2 = np.maximum(0, front.min(0) - width)
    highs2 = np.minimum(highs, front.max(0) + width)
    index2, error2, gap2 = _grid(cum, lows2, highs2, steps, totals, constraint)
    index = np.concatenate([index, index2])
    error, gap = np.concatenate([error, error2]), np.concatenate([gap, gap2])
    index, keep = np.unique(index, axis=0, return_index=True)
    thresholds = np.stack([cuts[a][index[:, a]] for a in range(n_assigned)], 1)
    return thresholds, error[keep], gap[keep]


# --------------------------------------------------------------------------
# multiclass demographic parity: per-group class offsets
# --------------------------------------------------------------------------
def _rates(pred, rows, n_classes, weight):
    counts = np.bincount(pred, weights=weight, minlength=n_classes)
    return counts / max(counts.sum(), 1e-300) if rows.any() else counts


def sweep_class_offsets(logits, y, true_groups, assigned, n_groups, n_assigned, *,
                        weight=None, n_points=21, n_iter=60):
    """Per-assigned-group class offsets that move selection rates toward parity.

    For ``lam`` in ``linspace(0, 1, n_points)``, each assigned group's target
    class distribution is ``(1 - lam) p_a + lam p``, between its own predicted
    distribution ``p_a`` and the pooled one ``p``; the offsets ``delta_a``
    (predict ``argmax(logits + delta_a)``) are found by ``n_iter`` damped
    multiplicative updates ``delta_a += (log target - log rate_a) / 2``.
    Deterministic; the metrics of each point are measured on the held-out
    rows, not assumed.

    Returns
    -------
    offsets : ndarray of shape (n_points, n_assigned, n_classes)
    error, gap : ndarray of shape (n_points,)
    """
    n_classes = logits.shape[1]
    y = np.asarray(y, dtype=int)
    w = np.ones(len(y)) if weight is None else weight
    masks = [assigned == a for a in range(n_assigned)]
    base = logits.argmax(1)
    own = np.stack([_rates(base[m], m, n_classes, w[m]) for m in masks])
    pooled = _rates(base, np.ones(len(y), bool), n_classes, w)
    eps = 0.5 / max(len(y), 1)
    all_offsets, errors, gaps = [], [], []
    for lam in np.linspace(0.0, 1.0, n_points):
        offsets = np.zeros((n_assigned, n_classes))
        target = (1 - lam) * own + lam * pooled
        for a, m in enumerate(masks):
            if not m.any():
                continue
            for _ in range(n_iter):
                rate = _rates((logits[m] + offsets[a]).argmax(1), m, n_classes, w[m])
                step = np.log(target[a] + eps) - np.log(rate + eps)
                if np.abs(rate - target[a]).max() < eps:
                    break
                offsets[a] += step / 2
            offsets[a] -= offsets[a].mean()
        pred = (logits + offsets[assigned]).argmax(1)
        err, gap = metrics_from_confusion(
            confusion(y, pred, true_groups, n_groups, n_classes, weight),
            "demographic_parity",
        )
        all_offsets.append(offsets)
        errors.append(float(err))
        gaps.append(float(gap))
    return np.stack(all_offsets), np.array(errors), np.array(gaps)
