"""Validation shared by the metrics: group labels, positive label, aggregation.

It also decides which labels a gap is computed for: the positive label of a
binary target, or every label of a multiclass one (the gap is then the largest
one-vs-rest gap, the definition of the user guide's metrics page).

scikit-learn checks lengths and shapes (:func:`~sklearn.utils.column_or_1d`,
:func:`~sklearn.utils.check_consistent_length`); the messages are kept here as
constants so that the tests can match them.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import numpy as np
from sklearn.utils import check_consistent_length, column_or_1d

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


def _gap_labels(y_true, y_pred, pos_label):
    """Return the labels to compute a one-vs-rest gap for, and 1-d label arrays.

    With ``pos_label`` given, that label alone. With ``pos_label=None``, label
    ``1`` when the labels of ``y_true`` and ``y_pred`` are at most two and
    include ``1`` (the paper's binary definition); otherwise every label, so
    that the caller reports the largest one-vs-rest gap. With two labels the
    two one-vs-rest gaps are the same number (each group's rates of one label
    are one minus those of the other), so that case needs no positive label.

    Returns
    -------
    labels : list
        The labels to binarize on, in sorted order.
    y_true : ndarray of shape (n_samples,) or None
    y_pred : ndarray of shape (n_samples,)
    """
    y_pred = column_or_1d(y_pred)
    if y_true is not None:
        y_true = column_or_1d(y_true)
        check_consistent_length(y_true, y_pred)
        present = np.union1d(np.unique(y_true), np.unique(y_pred))
    else:
        present = np.unique(y_pred)
    if pos_label is not None:
        return [pos_label], y_true, y_pred
    if len(present) <= 2 and np.any(present == 1):
        return [1], y_true, y_pred
    return present.tolist(), y_true, y_pred


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
