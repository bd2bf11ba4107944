"""Group fairness metrics, scorers, a refit rule and differentiable penalties.

The metrics follow Zhang & Zhou (2024): the error ``Err`` is 100 minus the
weighted F1 score (in percent), ``Delta_DP`` is the gap in selection rates
between sensitive groups and ``Delta_EO`` is the *sum* of the true positive
rate gap and the false positive rate gap. They are thin wrappers around
:mod:`fairlearn.metrics` (:class:`~fairlearn.metrics.MetricFrame`,
:func:`~fairlearn.metrics.selection_rate`,
:func:`~fairlearn.metrics.true_positive_rate`,
:func:`~fairlearn.metrics.false_positive_rate`), so that group handling,
multi-column sensitive features and sample weights behave as in fairlearn.

The torch penalties compute the same gaps on predicted probabilities so that
they can be added to a training loss.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import inspect
import numbers
from functools import partial

import numpy as np
import torch
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn import config_context
from sklearn.metrics import accuracy_score, f1_score, make_scorer
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = [
    "demographic_parity_gap",
    "demographic_parity_penalty",
    "equalized_odds_gap",
    "equalized_odds_penalty",
    "err_scorer",
    "fairest_within_tolerance",
    "fairness_metric_frame",
    "make_fairness_scorer",
    "paper_metrics",
    "weighted_f1_error",
]

_KW_SENSITIVE_FEATURES = "sensitive_features"
_EO_AGGREGATIONS = ("sum", "max", "mean")

_MESSAGE_SENSITIVE_FEATURES_NONE = (
    "sensitive_features is required: pass one group label per sample. Got None."
)
_MESSAGE_SENSITIVE_FEATURES_ROWS = (
    "sensitive_features must have one row per sample: expected {expected} rows, "
    "got {got}."
)
_MESSAGE_SENSITIVE_FEATURES_TYPE = (
    "sensitive_features must be array-like with one row per sample. "
    "Got {type_name} instead."
)
_MESSAGE_POS_LABEL = "pos_label={pos_label!r} is not one of the labels {labels}."
_MESSAGE_AGG = "agg must be one of {options}. Got {agg!r} instead."
_MESSAGE_SCORER_METRIC = (
    "metric must be one of {options} or a callable with signature "
    "metric(y_true, y_pred, *, sensitive_features, ...). Got {metric!r} instead."
)
_MESSAGE_SCORER_KWARGS = (
    "Unexpected keyword arguments {unexpected} for metric {metric!r}. "
    "Accepted: {accepted}."
)
_MESSAGE_SCORER_NO_SENSITIVE_FEATURES = (
    "The fairness scorer received no sensitive_features. Enable metadata routing "
    "with sklearn.set_config(enable_metadata_routing=True) and pass "
    "sensitive_features to fit (e.g. GridSearchCV.fit(X, y, sensitive_features=s)) "
    "or to cross_validate(..., params={'sensitive_features': s})."
)
_MESSAGE_REFIT_KEY = (
    "{argument}={name!r} has no '{key}' entry in cv_results. Available scorer "
    "names: {available}. Use a key of the `scoring` dict passed to the search."
)
_MESSAGE_TOLERANCE = "tolerance must be a non-negative real number. Got {tolerance!r}."
_MESSAGE_REFIT_ALL_NAN = (
    "Every candidate has NaN in mean_test_{score} or mean_test_{fairness}; "
    "cannot pick one. Check the fit and scoring failures reported by the search."
)
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


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _n_rows(sensitive_features):
    """Return the number of rows of ``sensitive_features``."""
    if isinstance(sensitive_features, dict):
        lengths = {len(column) for column in sensitive_features.values()}
        return lengths.pop() if len(lengths) == 1 else sorted(lengths)
    try:
        return len(sensitive_features)
    except TypeError:
        raise TypeError(
            _MESSAGE_SENSITIVE_FEATURES_TYPE.format(
                type_name=type(sensitive_features).__name__
            )
        ) from None


def _check_sensitive_features(sensitive_features, n_samples):
    """Check that ``sensitive_features`` has one row per sample."""
    if sensitive_features is None:
        raise ValueError(_MESSAGE_SENSITIVE_FEATURES_NONE)
    n_rows = _n_rows(sensitive_features)
    if n_rows != n_samples:
        raise ValueError(
            _MESSAGE_SENSITIVE_FEATURES_ROWS.format(expected=n_samples, got=n_rows)
        )


def _binarize(y_true, y_pred, pos_label):
    """Return ``(y_true == pos_label, y_pred == pos_label)`` as 0/1 int arrays.

    ``y_true`` may be None. Raise if ``pos_label`` is not among the labels of
    ``y_true`` and ``y_pred`` (only when ``y_true`` is given: predictions alone
    may legitimately never contain the positive label).
    """
    y_pred = column_or_1d(y_pred)
    if y_true is None:
        return None, (y_pred == pos_label).astype(int)
    y_true = column_or_1d(y_true)
    check_consistent_length(y_true, y_pred)
    labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    if not np.any(labels == pos_label):
        raise ValueError(
            _MESSAGE_POS_LABEL.format(pos_label=pos_label, labels=labels.tolist())
        )
    return (y_true == pos_label).astype(int), (y_pred == pos_label).astype(int)


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


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
    .. [1] Zhang, Z. and Zhou, Z. (2024). "Fairness via weight importance
       neutralization". arXiv:2403.00625.

    Examples
    --------
    >>> from sklearn_winfair._fairness import weighted_f1_error
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
    y_true, y_pred, *, sensitive_features, pos_label=1, sample_weight=None
):
    """Largest minus smallest selection rate across sensitive groups.

    The selection rate of group ``a`` is ``P(y_pred == pos_label | A = a)``. For
    two groups this is ``Delta_DP`` of Zhang & Zhou (2024). The predictions are
    turned into 0/1 indicators of ``pos_label`` and passed to
    :func:`fairlearn.metrics.demographic_parity_difference`, so this equals
    fairlearn's metric whenever ``pos_label=1`` and labels are 0/1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or None
        True labels. Ignored, as in fairlearn, apart from checking its length
        and that ``pos_label`` is one of the labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership. Several columns define intersectional groups.

    pos_label : int, float, bool or str, default=1
        The label counted as a positive (selected) outcome.

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
    >>> from sklearn_winfair._fairness import demographic_parity_gap
    >>> y_pred = ["yes", "yes", "no", "yes", "no", "no"]
    >>> groups = ["a", "a", "a", "b", "b", "b"]
    >>> round(demographic_parity_gap(
    ...     None, y_pred, sensitive_features=groups, pos_label="yes"), 4)
    0.3333
    """
    y_true01, y_pred01 = _binarize(y_true, y_pred, pos_label)
    _check_sensitive_features(sensitive_features, len(y_pred01))
    gap = demographic_parity_difference(
        y_pred01 if y_true01 is None else y_true01,
        y_pred01,
        sensitive_features=sensitive_features,
        sample_weight=sample_weight,
    )
    return float(gap)


def equalized_odds_gap(
    y_true,
    y_pred,
    *,
    sensitive_features,
    pos_label=1,
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
    :func:`fairlearn.metrics.equalized_odds_difference`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership. Several columns define intersectional groups.

    pos_label : int, float, bool or str, default=1
        The positive label. Every other label counts as negative.

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
        If ``agg`` is not one of the options, or ``pos_label`` is not a label.

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
    >>> from sklearn_winfair._fairness import equalized_odds_gap
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
    y_true01, y_pred01 = _binarize(y_true, y_pred, pos_label)
    _check_sensitive_features(sensitive_features, len(y_pred01))
    sample_params = {"sample_weight": sample_weight}
    frame = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true01,
        y_pred=y_pred01,
        sensitive_features=sensitive_features,
        sample_params={"tpr": sample_params, "fpr": sample_params},
    )
    gaps = frame.difference(method="between_groups")
    return float({"sum": gaps.sum, "max": gaps.max, "mean": gaps.mean}[agg]())


def paper_metrics(y_true, y_pred, *, sensitive_features, pos_label=1):
    """Err, DP gap and EO gap of Zhang & Zhou (2024) in one dictionary.

    A convenience for benchmark tables: :func:`weighted_f1_error`,
    :func:`demographic_parity_gap` and :func:`equalized_odds_gap` with
    ``agg="sum"``, which are the ``Err``, ``Delta_DP`` and ``Delta_EO`` columns
    of the paper.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership.

    pos_label : int, float, bool or str, default=1
        The positive label.

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
    >>> from sklearn_winfair._fairness import paper_metrics
    >>> scores = paper_metrics(
    ...     [1, 0, 1, 0], [1, 0, 0, 0], sensitive_features=[0, 0, 1, 1])
    >>> {name: round(value, 2) for name, value in scores.items()}
    {'err': 26.67, 'dp_gap': 0.5, 'eo_gap': 1.0}
    """
    kwargs = {"sensitive_features": sensitive_features, "pos_label": pos_label}
    return {
        "err": weighted_f1_error(y_true, y_pred),
        "dp_gap": demographic_parity_gap(y_true, y_pred, **kwargs),
        "eo_gap": equalized_odds_gap(y_true, y_pred, agg="sum", **kwargs),
    }


def fairness_metric_frame(estimator, X, y_true, *, sensitive_features, pos_label=None):
    """Overall and per-group metrics of a fitted classifier, as a MetricFrame.

    The metrics, computed on ``estimator.predict(X)``, are ``"err"``
    (:func:`weighted_f1_error`), ``"accuracy"``, ``"selection_rate"``,
    ``"tpr"``, ``"fpr"`` and ``"count"``. With more than two classes the three
    binary metrics are left out.

    Parameters
    ----------
    estimator : fitted classifier
        Any object with ``predict``; ``classes_`` is used when present.

    X : array-like of shape (n_samples, n_features)
        Input passed to ``estimator.predict``.

    y_true : array-like of shape (n_samples,)
        True labels.

    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership.

    pos_label : int, float, bool or str, default=None
        The positive label. None means the greatest class, ``estimator.classes_[-1]``
        (or the greatest label in ``y_true`` and the predictions if the estimator
        has no ``classes_``), as in scikit-learn.

    Returns
    -------
    fairlearn.metrics.MetricFrame
        Use ``.overall``, ``.by_group``, ``.difference()`` and so on.

    Raises
    ------
    ValueError
        If ``sensitive_features`` does not have one row per sample, or
        ``pos_label`` is not a class.

    See Also
    --------
    paper_metrics : The three paper metrics as floats.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn_winfair._fairness import fairness_metric_frame
    >>> X = [[0], [1], [2], [3]]
    >>> y = ["no", "yes", "yes", "yes"]
    >>> clf = DummyClassifier().fit(X, y)
    >>> groups = ["a", "a", "b", "b"]
    >>> frame = fairness_metric_frame(clf, X, y, sensitive_features=groups)
    >>> list(frame.overall.index)
    ['err', 'accuracy', 'selection_rate', 'tpr', 'fpr', 'count']
    >>> frame.by_group["accuracy"].tolist()
    [0.5, 1.0]
    """
    y_pred = column_or_1d(estimator.predict(X))
    y_true = column_or_1d(y_true)
    check_consistent_length(y_true, y_pred)
    _check_sensitive_features(sensitive_features, len(y_pred))
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        classes = np.union1d(np.unique(y_true), np.unique(y_pred))
    classes = np.asarray(classes)
    metrics = {"err": weighted_f1_error, "accuracy": accuracy_score}
    if len(classes) <= 2:
        if pos_label is None:
            pos_label = classes[-1]
        elif not np.any(classes == pos_label):
            raise ValueError(
                _MESSAGE_POS_LABEL.format(pos_label=pos_label, labels=classes.tolist())
            )
        metrics["selection_rate"] = partial(selection_rate, pos_label=pos_label)
        metrics["tpr"] = partial(true_positive_rate, pos_label=pos_label)
        metrics["fpr"] = partial(false_positive_rate, pos_label=pos_label)
    metrics["count"] = count
    return MetricFrame(
        metrics=metrics,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive_features,
    )


# --------------------------------------------------------------------------
# scorers and refit rule
# --------------------------------------------------------------------------

_FAIRNESS_METRICS = {
    "demographic_parity": demographic_parity_gap,
    "equalized_odds": equalized_odds_gap,
}


def _fairness_score(y_true, y_pred, *, metric, sensitive_features=None, **kwargs):
    """Call ``metric``, explaining how to route a missing ``sensitive_features``."""
    if sensitive_features is None:
        raise ValueError(_MESSAGE_SCORER_NO_SENSITIVE_FEATURES)
    return metric(y_true, y_pred, sensitive_features=sensitive_features, **kwargs)


def _keyword_names(func):
    """Return (names of keyword parameters, whether ``func`` takes ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return set(), True
    names = {
        p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def make_fairness_scorer(metric, *, pos_label=1, **kwargs):
    """Make a scorer of a fairness gap that takes ``sensitive_features`` as metadata.

    The scorer requests ``sensitive_features`` through scikit-learn's metadata
    routing, so that :class:`~sklearn.model_selection.GridSearchCV` and
    :func:`~sklearn.model_selection.cross_validate` pass each fold its slice of
    the group labels.

    Parameters
    ----------
    metric : {"demographic_parity", "equalized_odds"} or callable
        The gap to score: :func:`demographic_parity_gap`,
        :func:`equalized_odds_gap`, or a function
        ``metric(y_true, y_pred, *, sensitive_features, **kwargs)`` returning a
        gap where lower is fairer.

    pos_label : int, float, bool or str, default=1
        The positive label, passed to ``metric`` when it takes a ``pos_label``
        parameter (always the case for the two named metrics).

    **kwargs : dict
        Further keyword arguments of ``metric``, e.g. ``agg="max"`` for
        ``"equalized_odds"``.

    Returns
    -------
    callable
        A scorer made by :func:`sklearn.metrics.make_scorer` with
        ``greater_is_better=False`` and ``sensitive_features`` requested for
        ``score``.

    Raises
    ------
    ValueError
        If ``metric`` is an unknown name, or ``agg`` is invalid.
    TypeError
        If ``metric`` is neither a name nor a callable, or ``kwargs`` holds an
        argument that the named metric does not take.

    See Also
    --------
    fairest_within_tolerance : Refit rule that uses such a scorer.

    Notes
    -----
    Metadata routing must be enabled, with
    ``sklearn.set_config(enable_metadata_routing=True)`` or
    ``sklearn.config_context``, when the scorer is *used*: otherwise
    scikit-learn neither routes ``sensitive_features`` to it nor accepts it as
    a keyword. Making the scorer does not need routing: the request is recorded
    inside a temporary ``config_context``, because scikit-learn's
    ``set_score_request`` raises ``RuntimeError`` when routing is off.

    As with every scorer built with ``greater_is_better=False``, the search
    reports the *negated* gap: ``cv_results_["mean_test_<name>"]`` is
    ``-gap``, so larger (closer to 0) is fairer.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from sklearn_winfair._fairness import make_fairness_scorer
    >>> X = [[0.0], [1.0], [2.0], [3.0], [0.5], [1.5], [2.5], [3.5]]
    >>> y = [0, 0, 1, 1, 0, 0, 1, 1]
    >>> groups = ["a", "b", "a", "b", "a", "b", "a", "b"]
    >>> scorer = make_fairness_scorer("demographic_parity")
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     result = cross_validate(LogisticRegression(), X, y, cv=2,
    ...                             scoring=scorer,
    ...                             params={"sensitive_features": groups})
    >>> bool((result["test_score"] <= 0).all())
    True
    """
    if isinstance(metric, str):
        if metric not in _FAIRNESS_METRICS:
            raise ValueError(
                _MESSAGE_SCORER_METRIC.format(
                    options=sorted(_FAIRNESS_METRICS), metric=metric
                )
            )
        func = _FAIRNESS_METRICS[metric]
        accepted, _ = _keyword_names(func)
        accepted -= {"y_true", "y_pred", _KW_SENSITIVE_FEATURES, "pos_label"}
        unexpected = sorted(set(kwargs) - accepted)
        if unexpected:
            raise TypeError(
                _MESSAGE_SCORER_KWARGS.format(
                    unexpected=unexpected, metric=metric, accepted=sorted(accepted)
                )
            )
        if "agg" in kwargs and kwargs["agg"] not in _EO_AGGREGATIONS:
            raise ValueError(
                _MESSAGE_AGG.format(options=list(_EO_AGGREGATIONS), agg=kwargs["agg"])
            )
        kwargs["pos_label"] = pos_label
    elif callable(metric):
        func = metric
        names, _ = _keyword_names(func)
        if "pos_label" in names:
            kwargs["pos_label"] = pos_label
    else:
        raise TypeError(
            _MESSAGE_SCORER_METRIC.format(
                options=sorted(_FAIRNESS_METRICS), metric=metric
            )
        )
    scorer = make_scorer(
        _fairness_score, greater_is_better=False, metric=func, **kwargs
    )
    with config_context(enable_metadata_routing=True):
        scorer.set_score_request(sensitive_features=True)
    return scorer


#: Scorer of :func:`weighted_f1_error`, made with ``greater_is_better=False``:
#: in ``cv_results_`` its values are negated (``mean_test_<name>`` is ``-Err``).
err_scorer = make_scorer(weighted_f1_error, greater_is_better=False)


def fairest_within_tolerance(*, score="accuracy", fairness="dp_gap", tolerance=0.01):
    """Make a ``refit`` rule: the fairest candidate among the near-best ones.

    For a multi-metric :class:`~sklearn.model_selection.GridSearchCV` or
    :class:`~sklearn.model_selection.RandomizedSearchCV`, the returned callable
    keeps the candidates whose ``mean_test_<score>`` is within ``tolerance`` of
    the best one, and among them picks the fairest, i.e. the one with the
    greatest ``mean_test_<fairness>``. Ties go to the higher score, then to the
    lower index.

    Parameters
    ----------
    score : str, default="accuracy"
        Name, in the search's ``scoring`` dict, of the performance scorer.

    fairness : str, default="dp_gap"
        Name, in the search's ``scoring`` dict, of the fairness scorer, e.g. one
        made by :func:`make_fairness_scorer`.

    tolerance : float, default=0.01
        How far below the best mean test score, in the units of that score, a
        candidate may be and still be considered.

    Returns
    -------
    callable
        ``refit(cv_results) -> int``, the index of the chosen candidate, for the
        ``refit`` parameter of the search.

    Raises
    ------
    ValueError
        If ``tolerance`` is negative or not a real number. The returned
        callable raises ``ValueError`` listing the available scorer names when
        ``score`` or ``fairness`` is missing from ``cv_results``.

    See Also
    --------
    make_fairness_scorer : Scorer of a fairness gap.

    Notes
    -----
    scikit-learn stores every score so that greater is better: a scorer made
    with ``greater_is_better=False``, such as the ones from
    :func:`make_fairness_scorer` or :data:`err_scorer`, appears *negated* in
    ``cv_results_`` (``mean_test_dp_gap`` is ``-gap``). This rule therefore
    maximises ``mean_test_<fairness>``, which is the same as minimising the gap,
    and needs no sign handling from the caller. Candidates with a NaN score
    (failed fits) are never chosen.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._fairness import fairest_within_tolerance
    >>> cv_results = {
    ...     "mean_test_accuracy": np.array([0.90, 0.89, 0.80]),
    ...     "mean_test_dp_gap": np.array([-0.30, -0.10, -0.01]),
    ... }
    >>> fairest_within_tolerance(tolerance=0.02)(cv_results)
    1
    >>> fairest_within_tolerance(tolerance=0.0)(cv_results)
    0
    """
    if (
        not isinstance(tolerance, numbers.Real)
        or isinstance(tolerance, bool)
        or not tolerance >= 0
    ):
        raise ValueError(_MESSAGE_TOLERANCE.format(tolerance=tolerance))

    def refit(cv_results):
        score_values = _mean_test(cv_results, "score", score)
        fairness_values = _mean_test(cv_results, "fairness", fairness)
        index = _select_fairest(score_values, fairness_values, tolerance)
        if index is None:
            raise ValueError(
                _MESSAGE_REFIT_ALL_NAN.format(score=score, fairness=fairness)
            )
        return index

    refit.__name__ = refit.__qualname__ = "fairest_within_tolerance_refit"
    refit.__doc__ = (
        f"Refit rule: greatest mean_test_{fairness} among candidates whose "
        f"mean_test_{score} is within {tolerance} of the best."
    )
    return refit


def _mean_test(cv_results, argument, name):
    """Return ``cv_results[f"mean_test_{name}"]`` as floats, or raise."""
    key = f"mean_test_{name}"
    if key not in cv_results:
        available = sorted(
            k.removeprefix("mean_test_")
            for k in cv_results
            if k.startswith("mean_test_")
        )
        raise ValueError(
            _MESSAGE_REFIT_KEY.format(
                argument=argument, name=name, key=key, available=available
            )
        )
    return np.asarray(cv_results[key], dtype=float)


def _select_fairest(score_values, fairness_values, tolerance):
    """Index of the greatest fairness among scores within tolerance of the best.

    Candidates with a NaN score or fairness are skipped. Ties go to the higher
    score, then to the lower index. Return None if no candidate is valid.
    """
    valid = ~np.isnan(score_values) & ~np.isnan(fairness_values)
    if not valid.any():
        return None
    best = score_values[valid].max()
    candidates = np.flatnonzero(valid & (score_values >= best - tolerance))
    # np.lexsort sorts by the last key first
    order = np.lexsort(
        (candidates, -score_values[candidates], -fairness_values[candidates])
    )
    return int(candidates[order[0]])


# --------------------------------------------------------------------------
# differentiable penalties
# --------------------------------------------------------------------------


def _check_penalty_inputs(proba_pos, groups, y, num_groups):
    """Validate the penalty inputs; return the number of groups."""
    if not torch.is_floating_point(proba_pos):
        raise TypeError(_MESSAGE_PROBA_DTYPE.format(dtype=proba_pos.dtype))
    if proba_pos.ndim != 1:
        raise ValueError(
            _MESSAGE_TENSOR_1D.format(name="proba_pos", shape=tuple(proba_pos.shape))
        )
    n = proba_pos.shape[0]
    others = {"groups": groups} if y is None else {"groups": groups, "y": y}
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
    return upper


def _group_mean_range(values, keys, num_keys, num_columns):
    """Range (max - min) of group means over the groups present, per column.

    ``keys`` indexes a ``(num_keys // num_columns, num_columns)`` table of
    (group, column) cells. Returns a tensor of shape ``(num_columns,)`` with 0
    for a column in which fewer than two groups are present.
    """
    num_keys = max(num_keys, num_columns)  # an empty batch still gets one row
    sums = values.new_zeros(num_keys).index_add(0, keys, values)
    counts = values.new_zeros(num_keys).index_add(0, keys, torch.ones_like(values))
    sums = sums.view(-1, num_columns)
    counts = counts.view(-1, num_columns)
    present = counts > 0
    means = sums / counts.clamp(min=1)
    highest = means.masked_fill(~present, -torch.inf).amax(dim=0)
    lowest = means.masked_fill(~present, torch.inf).amin(dim=0)
    spread = torch.where(present.sum(dim=0) >= 2, highest - lowest, 0.0)
    return spread


def demographic_parity_penalty(
    proba_pos, groups, *, num_groups=None, validate_args=True
):
    """Differentiable demographic parity gap of a mini-batch.

    The largest minus the smallest mean predicted probability across the groups
    present in the batch. On hard predictions (``proba_pos`` in {0, 1}) it
    equals :func:`demographic_parity_gap`.

    Parameters
    ----------
    proba_pos : torch.Tensor of shape (n_samples,)
        Floating point probabilities ``P(y = 1 | x)``.

    groups : torch.Tensor of shape (n_samples,)
        Integer group codes in ``0 .. num_groups - 1``.

    num_groups : int, default=None
        Number of groups. None infers ``groups.max() + 1``, which synchronises
        with the device; pass it to avoid that.

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
    demographic_parity_gap : The metric on predicted labels.
    equalized_odds_penalty : Penalty for equalized odds.

    Notes
    -----
    Computed with ``index_add`` over (group) cells, without a Python loop over
    samples or groups, so it runs on any device and is differentiable with
    respect to ``proba_pos``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._fairness import demographic_parity_penalty
    >>> proba = torch.tensor([0.9, 0.7, 0.2, 0.4], requires_grad=True)
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> penalty = demographic_parity_penalty(proba, groups)
    >>> round(penalty.item(), 4)
    0.5
    >>> penalty.backward()
    >>> proba.grad
    tensor([ 0.5000,  0.5000, -0.5000, -0.5000])
    """
    if validate_args:
        num_groups = _check_penalty_inputs(proba_pos, groups, None, num_groups)
    elif num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 0
    keys = groups.long()
    return _group_mean_range(proba_pos, keys, num_groups, 1)[0]


def equalized_odds_penalty(
    proba_pos, y, groups, *, num_groups=None, validate_args=True
):
    """Differentiable equalized odds gap (TPR gap + FPR gap) of a mini-batch.

    For each true class ``c`` in {0, 1}, the largest minus the smallest mean of
    ``proba_pos`` over the samples of class ``c`` in each group, counting only
    the groups present in that class; the two spreads are added. On hard
    predictions it equals :func:`equalized_odds_gap` with ``agg="sum"`` when
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
    equalized_odds_gap : The metric on predicted labels.
    demographic_parity_penalty : Penalty for demographic parity.

    Notes
    -----
    Unlike :func:`equalized_odds_gap`, which follows fairlearn and gives a
    group without positives a true positive rate of 0, the penalty ignores a
    group absent from a class: a mini-batch often misses some (group, class)
    cells, and a rate of 0 there would be noise rather than unfairness.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._fairness import equalized_odds_penalty
    >>> proba = torch.tensor([0.9, 0.1, 0.6, 0.3])
    >>> y = torch.tensor([1, 0, 1, 0])
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> round(equalized_odds_penalty(proba, y, groups).item(), 4)
    0.5
    """
    if validate_args:
        num_groups = _check_penalty_inputs(proba_pos, groups, y, num_groups)
    elif num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 0
    keys = groups.long() * 2 + y.long()
    return _group_mean_range(proba_pos, keys, 2 * num_groups, 2).sum()
