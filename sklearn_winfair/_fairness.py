"""Private re-export shim: the code moved to the public subpackages.

Kept only so that modules not yet updated keep importing; use
:mod:`sklearn_winfair.metrics`, :mod:`sklearn_winfair.model_selection` and
:mod:`sklearn_winfair.penalties` instead. To be deleted.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from .metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    err_scorer,
    fairness_metric_frame,
    make_fairness_scorer,
    paper_metrics,
    weighted_f1_error,
)
from .model_selection import fairest_within_tolerance
from .penalties import demographic_parity_penalty, equalized_odds_penalty

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
