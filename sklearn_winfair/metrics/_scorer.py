"""Scikit-learn scorers of the paper's metrics, with sensitive_features routed.

scikit-learn makes the scorers (:func:`~sklearn.metrics.make_scorer`) and routes
``sensitive_features`` to them through its metadata routing.

Examples
--------
``err_scorer`` scores :func:`weighted_f1_error`; a search stores it negated:

>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.model_selection import cross_val_score
>>> from sklearn_winfair.metrics import err_scorer
>>> X, y = [[0.0], [1.0], [2.0], [3.0]] * 3, [0, 0, 1, 1] * 3
>>> scores = cross_val_score(LogisticRegression(), X, y, cv=2, scoring=err_scorer)
>>> [float(s) for s in scores]
[-0.0, -0.0]
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import inspect

from sklearn import config_context, get_config
from sklearn.metrics import make_scorer

from ._checks import _EO_AGGREGATIONS, _KW_SENSITIVE_FEATURES, _MESSAGE_AGG
from ._paper_metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    weighted_f1_error,
)

__all__ = ["make_fairness_scorer", "err_scorer"]

_MESSAGE_SCORER_METRIC = (
    "metric must be one of {options} or a callable with signature "
    "metric(y_true, y_pred, *, sensitive_features, ...). Got {metric!r} instead."
)
_MESSAGE_SCORER_KWARGS = (
    "Unexpected keyword arguments {unexpected} for metric {metric!r}. "
    "Accepted: {accepted}."
)
_MESSAGE_SCORER_NO_SENSITIVE_FEATURES = (
    "The fairness scorer received no sensitive_features{why}. Enable metadata "
    "routing with sklearn.set_config(enable_metadata_routing=True) and pass "
    "sensitive_features to fit (e.g. GridSearchCV.fit(X, y, sensitive_features=s)) "
    "or to cross_validate(..., params={{'sensitive_features': s}})."
)
_WHY_ROUTING_OFF = ": metadata routing is off, so scikit-learn does not route it"
_WHY_NOT_PASSED = ": routing is on, but no sensitive_features reached the scorer"

_FAIRNESS_METRICS = {
    "demographic_parity": demographic_parity_gap,
    "equalized_odds": equalized_odds_gap,
}


def _fairness_score(
    y_true, y_pred, *, metric, sensitive_features=None, sample_weight=None, **kwargs
):
    """Call ``metric``, explaining how to route a missing ``sensitive_features``.

    A missing ``sensitive_features`` is a missing required argument, so it raises
    ``TypeError`` as Python does. It must not be a ``ValueError``: searches such
    as optuna-integration's ``OptunaSearchCV`` catch ``ValueError`` around
    ``cross_validate`` and turn it into ``error_score`` (a ``numpy`` TypeError
    with ``error_score="raise"``, every trial NaN otherwise).
    """
    if sensitive_features is None:
        routing_on = get_config()["enable_metadata_routing"]
        raise TypeError(
            _MESSAGE_SCORER_NO_SENSITIVE_FEATURES.format(
                why=_WHY_NOT_PASSED if routing_on else _WHY_ROUTING_OFF
            )
        )
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
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


def make_fairness_scorer(metric, *, pos_label=None, **kwargs):
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

    pos_label : int, float, bool, str or None, default=None
        The positive label, passed to ``metric`` when it takes a ``pos_label``
        parameter (always the case for the two named metrics). ``None``: the
        named metrics use label ``1`` on 0/1 labels and the largest
        one-vs-rest gap on multiclass labels; a callable keeps its own default.

    **kwargs : dict
        Further keyword arguments of ``metric``, e.g. ``agg="max"`` for
        ``"equalized_odds"``.

    Returns
    -------
    callable
        A scorer made by :func:`sklearn.metrics.make_scorer` with
        ``greater_is_better=False`` and ``sensitive_features`` and
        ``sample_weight`` requested for ``score`` (the weights are passed to
        ``metric`` when routed; a callable must then accept them).

    Raises
    ------
    ValueError
        If ``metric`` is an unknown name, or ``agg`` is invalid.
    TypeError
        If ``metric`` is neither a name nor a callable, or ``kwargs`` holds an
        argument that the named metric does not take. The scorer itself raises
        ``TypeError`` when it is called without ``sensitive_features``.

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

    Called without ``sensitive_features`` (routing off, or not passed), the
    scorer raises a ``TypeError`` that says so, as Python does for a missing
    required argument. It is deliberately not a ``ValueError``: optuna's
    ``OptunaSearchCV`` catches ``ValueError`` from ``cross_validate`` and hides
    it. With ``error_score="raise"`` the error reaches the caller; with a
    numeric ``error_score`` scikit-learn catches every scorer error, scores
    the fold ``error_score`` and repeats the message in a ``UserWarning``.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from sklearn_winfair.metrics import make_fairness_scorer
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
        if "pos_label" in names and pos_label is not None:
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
        scorer.set_score_request(sensitive_features=True, sample_weight=True)
    return scorer


#: Scorer of :func:`weighted_f1_error`, made with ``greater_is_better=False``:
#: in ``cv_results_`` its values are negated (``mean_test_<name>`` is ``-Err``).
#: It requests ``sample_weight``, routed like ``sensitive_features``.
err_scorer = make_scorer(weighted_f1_error, greater_is_better=False)
with config_context(enable_metadata_routing=True):
    err_scorer.set_score_request(sample_weight=True)
