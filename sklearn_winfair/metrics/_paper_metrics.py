r"""The paper's metrics: Err, Delta_DP and Delta_EO (Zhang & Zhou, 2024).

``Err`` is 100 minus the weighted F1 score (in percent), ``Delta_DP`` the gap in
selection rates between sensitive groups and ``Delta_EO`` the *sum* of the true
positive rate gap and the false positive rate gap. scikit-learn computes the F1
score (:func:`sklearn.metrics.f1_score`); fairlearn computes every group rate
(:class:`~fairlearn.metrics.MetricFrame`,
:func:`~fairlearn.metrics.demographic_parity_difference`,
:func:`~fairlearn.metrics.true_positive_rate`,
:func:`~fairlearn.metrics.false_positive_rate`), so that group handling,
multi-column sensitive features and sample weights behave as in fairlearn.

.. math::

    \mathrm{Err} = 100\,(1 - F_1^{\text{weighted}}), \qquad
    \Delta_{DP} = \max_a P(\hat y = 1 \mid A = a) - \min_a P(\hat y = 1 \mid A = a),

    \Delta_{EO} = \Delta_{TPR} + \Delta_{FPR}.

On more than two classes (with ``pos_label=None``) each gap is the largest of
the one-vs-rest gaps, :math:`\max_c \Delta(\mathbb{1}[y = c])`.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    false_positive_rate,
    true_positive_rate,
)
from sklearn.metrics import f1_score

from ._checks import (
    _EO_AGGREGATIONS,
    _MESSAGE_AGG,
    _binarize,
    _check_sensitive_features,
    _gap_labels,
)

_MESSAGE_Y_TRUE_NONE = (
    "equalized_odds_gap needs y_true (the true labels) to compute true and false "
    "positive rates. Got None."
)

__all__ = [
    "weighted_f1_error",
    "demographic_parity_gap",
    "equalized_odds_gap",
    "paper_metrics",
]


def weighted_f1_error(y_true, y_pred, *, sample_weight=None):
    """Error in percent: 100 times one minus the support-weighted F1 score.

    This is the ``Err`` column of Zhang & Zhou (2024), computed with
    :func:`sklearn.metrics.f1_score` and ``average="weighted"``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    float
        ``100 * (1 - f1_score(y_true, y_pred, average="weighted"))``, in
        ``[0, 100]``. Lower is better.

    See Also
    --------
    paper_metrics : Err, DP gap and EO gap in one call.
    err_scorer : This metric as a scikit-learn scorer.

    Notes
    -----
    A class that is never predicted has an F1 score of 0 (``zero_division=0``),
    without the warning scikit-learn emits by default.

    References
    ----------
    .. [1] Y. Zhang and F. Zhou, "Bias Mitigation in Fine-tuning Pre-trained
       Models for Enhanced Fairness and Efficiency", arXiv:2403.00625, 2024.

    Examples
    --------
    >>> from sklearn_winfair.metrics import weighted_f1_error
    >>> weighted_f1_error([0, 1, 1, 0], [0, 1, 1, 0])
    0.0
    >>> round(weighted_f1_error([0, 1, 1, 0], [0, 1, 0, 0]), 2)
    26.67
    """
    f1 = f1_score(
        y_true,
        y_pred,
        average="weighted",
        sample_weight=sample_weight,
        zero_division=0.0,
    )
    return float(100.0 * (1.0 - f1))


def demographic_parity_gap(
    y_true, y_pred, *, sensitive_features, pos_label=None, sample_weight=None
):
    """Largest minus smallest selection rate across sensitive groups.

    The selection rate of group ``a`` is ``P(y_pred == pos_label | A = a)``. For
    two groups this is ``Delta_DP`` of Zhang & Zhou (2024). The predictions are
    turned into 0/1 indicators of ``pos_label`` and passed to
    :func:`fairlearn.metrics.demographic_parity_difference`, so this equals
    fairlearn's metric whenever the labels are 0/1. With more than two labels
    and ``pos_label=None`` it is the largest one-vs-rest gap over the labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or None
        True labels. Ignored, as in fairlearn, apart from checking its length
        and that ``pos_label`` is one of the labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership. Several columns define intersectional groups.

    pos_label : int, float, bool, str or None, default=None
        The label counted as a positive (selected) outcome. ``None`` means
        ``1`` for labels 0/1 (or any two labels one of which is ``1``), and
        otherwise the largest of the one-vs-rest gaps of every label (the
        multiclass definition; with two labels both gaps are equal).

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    float
        The gap, in ``[0, 1]``. 0 means equal selection rates.

    See Also
    --------
    equalized_odds_gap : Gap in true and false positive rates.
    demographic_parity_penalty : Differentiable version for training.

    Examples
    --------
    >>> from sklearn_winfair.metrics import demographic_parity_gap
    >>> y_pred = ["yes", "yes", "no", "yes", "no", "no"]
    >>> groups = ["a", "a", "a", "b", "b", "b"]
    >>> round(demographic_parity_gap(
    ...     None, y_pred, sensitive_features=groups, pos_label="yes"), 4)
    0.3333
    """
    labels, y_true, y_pred = _gap_labels(y_true, y_pred, pos_label)
    _check_sensitive_features(sensitive_features, len(y_pred))
    gaps = []
    for label in labels:
        y_true01, y_pred01 = _binarize(y_true, y_pred, label)
        gaps.append(
            demographic_parity_difference(
                y_pred01 if y_true01 is None else y_true01,
                y_pred01,
                sensitive_features=sensitive_features,
                sample_weight=sample_weight,
            )
        )
    return float(max(gaps))


def equalized_odds_gap(
    y_true,
    y_pred,
    *,
    sensitive_features,
    pos_label=None,
    agg="sum",
    sample_weight=None,
):
    """Gap in true positive rate and false positive rate across sensitive groups.

    Each rate gap is the largest minus the smallest group rate. With
    ``agg="sum"`` the two gaps are added, which is ``Delta_EO`` of Zhang & Zhou
    (2024). The rates come from a :class:`fairlearn.metrics.MetricFrame` of
    :func:`~fairlearn.metrics.true_positive_rate` and
    :func:`~fairlearn.metrics.false_positive_rate` on 0/1 indicators of
    ``pos_label``, exactly as in
    :func:`fairlearn.metrics.equalized_odds_difference`. With more than two
    labels and ``pos_label=None`` it is the largest one-vs-rest combined gap
    over the labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership. Several columns define intersectional groups.

    pos_label : int, float, bool, str or None, default=None
        The positive label; every other label counts as negative. ``None``
        means ``1`` for labels 0/1 (or any two labels one of which is ``1``),
        and otherwise the largest of the one-vs-rest gaps of every label.

    agg : {"sum", "max", "mean"}, default="sum"
        How to combine the TPR gap and the FPR gap. ``"max"`` equals fairlearn's
        ``equalized_odds_difference(agg="worst_case")`` and ``"mean"`` its
        ``agg="mean"``; ``"sum"`` is twice the mean.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    float
        The combined gap: in ``[0, 2]`` for ``"sum"``, ``[0, 1]`` otherwise.

    Raises
    ------
    ValueError
        If ``agg`` is not one of the options, ``pos_label`` is not a label,
        or ``y_true`` is None.

    See Also
    --------
    demographic_parity_gap : Gap in selection rates.
    equalized_odds_penalty : Differentiable version for training.

    Notes
    -----
    As in fairlearn, a group without positive (negative) samples has a true
    (false) positive rate of 0, and it takes part in the gap.

    Examples
    --------
    >>> from sklearn_winfair.metrics import equalized_odds_gap
    >>> y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    >>> y_pred = [1, 1, 1, 0, 1, 0, 0, 0]
    >>> groups = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> equalized_odds_gap(y_true, y_pred, sensitive_features=groups)
    1.0
    >>> equalized_odds_gap(y_true, y_pred, sensitive_features=groups, agg="max")
    0.5
    """
    if agg not in _EO_AGGREGATIONS:
        raise ValueError(_MESSAGE_AGG.format(options=list(_EO_AGGREGATIONS), agg=agg))
    if y_true is None:
        raise ValueError(_MESSAGE_Y_TRUE_NONE)
    labels, y_true, y_pred = _gap_labels(y_true, y_pred, pos_label)
    _check_sensitive_features(sensitive_features, len(y_pred))
    sample_params = {"sample_weight": sample_weight}
    combined = []
    for label in labels:
        y_true01, y_pred01 = _binarize(y_true, y_pred, label)
        frame = MetricFrame(
            metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y_true01,
            y_pred=y_pred01,
            sensitive_features=sensitive_features,
            sample_params={"tpr": sample_params, "fpr": sample_params},
        )
        gaps = frame.difference(method="between_groups")
        combined.append({"sum": gaps.sum, "max": gaps.max, "mean": gaps.mean}[agg]())
    return float(max(combined))


def paper_metrics(y_true, y_pred, *, sensitive_features, pos_label=None):
    """Err, DP gap and EO gap of Zhang & Zhou (2024) in one dictionary.

    A convenience for benchmark tables: :func:`weighted_f1_error`,
    :func:`demographic_parity_gap` and :func:`equalized_odds_gap` with
    ``agg="sum"``, which are the ``Err``, ``Delta_DP`` and ``Delta_EO`` columns
    of the paper. On multiclass labels (with ``pos_label=None``) each gap is
    the largest one-vs-rest gap over the classes, as the benchmark reports it.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership.

    pos_label : int, float, bool, str or None, default=None
        The positive label. ``None`` means ``1`` for labels 0/1 (or any two
        labels one of which is ``1``), and otherwise the largest one-vs-rest
        gap over every label. Pass a label to measure it against the rest.

    Returns
    -------
    dict
        ``{"err": weighted_f1_error, "dp_gap": demographic_parity_gap,
        "eo_gap": equalized_odds_gap(agg="sum")}``, all Python floats.

    See Also
    --------
    fairness_metric_frame : Per-group metrics of a fitted estimator.

    Examples
    --------
    >>> from sklearn_winfair.metrics import paper_metrics
    >>> scores = paper_metrics(
    ...     [1, 0, 1, 0], [1, 0, 0, 0], sensitive_features=[0, 0, 1, 1])
    >>> {name: round(value, 2) for name, value in scores.items()}
    {'err': 26.67, 'dp_gap': 0.5, 'eo_gap': 1.0}

    With three classes each gap is the largest one-vs-rest gap; here class 2
    is predicted only in group 1 (its true positive rates are 0 and 1):

    >>> scores = paper_metrics([0, 1, 2, 0, 1, 2], [0, 1, 0, 0, 1, 2],
    ...                        sensitive_features=[0, 0, 0, 1, 1, 1])
    >>> {name: round(value, 2) for name, value in scores.items()}
    {'err': 17.78, 'dp_gap': 0.33, 'eo_gap': 1.0}
    """
    kwargs = {"sensitive_features": sensitive_features, "pos_label": pos_label}
    return {
        "err": weighted_f1_error(y_true, y_pred),
        "dp_gap": demographic_parity_gap(y_true, y_pred, **kwargs),
        "eo_gap": equalized_odds_gap(y_true, y_pred, agg="sum", **kwargs),
    }
