"""Fairness and performance metrics, the by-group metric frame and scorers.

The paper's metrics (``Err``, ``Delta_DP``, ``Delta_EO``) as functions of
``(y_true, y_pred, *, sensitive_features)``, a fairlearn
:class:`~fairlearn.metrics.MetricFrame` of a fitted classifier, and
scikit-learn scorers that take ``sensitive_features`` as routed metadata.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from ._metric_frame import fairness_metric_frame
from ._paper_metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    paper_metrics,
    weighted_f1_error,
)
from ._scorer import err_scorer, make_fairness_scorer

__all__ = [
    # the paper's metrics
    "weighted_f1_error",
    "demographic_parity_gap",
    "equalized_odds_gap",
    "paper_metrics",
    # by-group report
    "fairness_metric_frame",
    # scorers
    "make_fairness_scorer",
    "err_scorer",
]
