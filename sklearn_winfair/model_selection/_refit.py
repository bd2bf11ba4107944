"""The fair refit rule: the fairest candidate among the near-best ones.

scikit-learn's :class:`~sklearn.model_selection.GridSearchCV` calls it as its
``refit`` callable on ``cv_results_``; numpy does the selection.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import numbers

import numpy as np

__all__ = ["fairest_within_tolerance"]

_MESSAGE_REFIT_KEY = (
    "{argument}={name!r} has no '{key}' entry in cv_results. Available scorer "
    "names: {available}. Use a key of the `scoring` dict passed to the search."
)
_MESSAGE_TOLERANCE = "tolerance must be a non-negative real number. Got {tolerance!r}."
_MESSAGE_REFIT_ALL_NAN = (
    "Every candidate has NaN in mean_test_{score} or mean_test_{fairness}; "
    "cannot pick one. Check the fit and scoring failures reported by the search."
)


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
        made by :func:`~sklearn_winfair.metrics.make_fairness_scorer`.

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
    sklearn_winfair.metrics.make_fairness_scorer : Scorer of a fairness gap.

    Notes
    -----
    scikit-learn stores every score so that greater is better: a scorer made
    with ``greater_is_better=False``, such as the ones from
    :func:`~sklearn_winfair.metrics.make_fairness_scorer` or
    :data:`~sklearn_winfair.metrics.err_scorer`, appears *negated* in ``cv_results_``
    (``mean_test_dp_gap`` is ``-gap``). This rule therefore maximises
    ``mean_test_<fairness>``, which is the same as minimising the gap, and needs no sign
    handling from the caller. Candidates with a NaN score (failed fits) are never
    chosen.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair.model_selection import fairest_within_tolerance
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
