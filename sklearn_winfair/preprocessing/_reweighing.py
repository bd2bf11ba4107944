"""Kamiran-Calders reweighing: one weight per (group, class) cell.

Neither scikit-learn (its :func:`~sklearn.utils.class_weight.compute_sample_weight`
balances classes only) nor fairlearn 0.15 (fairlearn issue #784 is still open)
provides it, so it is computed here with numpy.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from .._validation import check_sensitive_features, encode_groups

__all__ = ["reweighing_weights"]


def reweighing_weights(y, *, sensitive_features):
    r"""Kamiran-Calders reweighing weights, ``P(s) P(y) / P(s, y)`` per row.

    Each row of group ``s`` and class ``y`` gets the weight that makes the
    label statistically independent of the group in the weighted data: cells
    rarer than independence predicts weigh more than 1, more common cells
    less. Pass the result as ``sample_weight`` to
    :meth:`~sklearn_winfair.FairLowRankFineTuner.fit` (or to any
    scikit-learn estimator).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.

    sensitive_features : array-like, Series or DataFrame
        Group membership of each row, of shape ``(n_samples,)`` or
        ``(n_samples, n_columns)``; several columns are merged into
        intersectional groups, as in ``fit``.

    Returns
    -------
    sample_weight : ndarray of shape (n_samples,), dtype float64
        ``w_i = P(s_i) P(y_i) / P(s_i, y_i)`` with the empirical frequencies
        of the training rows, i.e. ``n_s n_y / (n n_{s,y})``. The weights
        average to 1, and in the weighted data every group has the overall
        class distribution.

    Raises
    ------
    ValueError
        If ``y`` is empty or not a classification target, if ``y`` and
        ``sensitive_features`` differ in length, or a group label is missing.

    See Also
    --------
    sklearn.utils.class_weight.compute_sample_weight : Weights that balance
        the classes only, ignoring the groups.

    Notes
    -----
    The method is the "reweighing" of Kamiran and Calders [1]_, a
    pre-processing step for demographic parity: it changes which rows the
    model learns from, not the model. Every (group, class) cell that occurs
    gets a finite positive weight; cells with no row need none.

    References
    ----------
    .. [1] F. Kamiran and T. Calders, "Data preprocessing techniques for
       classification without discrimination", Knowledge and Information
       Systems 33(1), 1-33, 2012.

    Examples
    --------
    Group "a" has 3 positives out of 4 rows, group "b" 1 out of 4; overall
    half the rows are positive. Reweighing shrinks the common cells (a, 1) and
    (b, 0) to 2/3 and grows the rare ones to 2:

    >>> from sklearn_winfair.preprocessing import reweighing_weights
    >>> y = [1, 1, 1, 0, 1, 0, 0, 0]
    >>> s = ["a", "a", "a", "a", "b", "b", "b", "b"]
    >>> w = reweighing_weights(y, sensitive_features=s)
    >>> w.round(3).tolist()
    [0.667, 0.667, 0.667, 2.0, 2.0, 0.667, 0.667, 0.667]
    >>> float(w.mean())
    1.0
    """
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    n = len(y)
    if n == 0:
        raise ValueError("y is empty; reweighing needs at least one row.")
    labels = check_sensitive_features(sensitive_features, n, against="y")
    _, s_codes = encode_groups(labels)
    _, y_codes = np.unique(y, return_inverse=True)
    y_codes = np.asarray(y_codes).ravel()
    n_groups, n_classes = int(s_codes.max()) + 1, int(y_codes.max()) + 1
    joint = np.zeros((n_groups, n_classes))
    np.add.at(joint, (s_codes, y_codes), 1.0)
    expected = np.outer(joint.sum(axis=1), joint.sum(axis=0)) / n
    cell = joint[s_codes, y_codes]
    return expected[s_codes, y_codes] / cell
