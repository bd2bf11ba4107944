"""Overall and per-group metrics of a fitted classifier, as a fairlearn MetricFrame.

fairlearn computes and groups the metrics (:class:`~fairlearn.metrics.MetricFrame`,
:func:`~fairlearn.metrics.selection_rate`, ...); scikit-learn gives the accuracy.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from functools import partial

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score
from sklearn.utils import check_consistent_length, column_or_1d

from ._checks import _MESSAGE_POS_LABEL, _check_sensitive_features
from ._paper_metrics import weighted_f1_error

__all__ = ["fairness_metric_frame"]


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
    >>> from sklearn_winfair.metrics import fairness_metric_frame
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
