"""Fair low-rank fine-tuning of frozen PyTorch backbones for scikit-learn.

Weight-importance neutralization (Zhang & Zhou, 2024): replace the head of a
frozen backbone by a low-rank factorization weighted by the groups'
neutralized Fisher importance, and fine-tune only that, through skorch.

The estimator and the building blocks of the method live at the root; the
public subpackages group the rest as scikit-learn and fairlearn do:
:mod:`sklearn_winfair.metrics`, :mod:`sklearn_winfair.model_selection`,
:mod:`sklearn_winfair.penalties`, :mod:`sklearn_winfair.preprocessing` and
:mod:`sklearn_winfair.datasets`; errors and warnings are in
:mod:`sklearn_winfair.exceptions`. The names
of the metrics, the refit rule and the penalties are also importable from the
root.
"""

from . import datasets, metrics, model_selection, penalties, preprocessing
from ._estimator import FairLowRankFineTuner
from ._factorize import LowRankLinear, weighted_svd
from ._importance import group_row_importance, neutral_importance
from ._persistence import load_fitted, save_fitted
from ._version import __version__
from .exceptions import HeadClassesWarning, SmallGroupWarning, TrainingDivergedError
from .metrics import (
    demographic_parity_gap,
    equalized_odds_gap,
    fairness_metric_frame,
    make_fairness_scorer,
    paper_metrics,
    weighted_f1_error,
)
from .model_selection import fairest_within_tolerance
from .penalties import demographic_parity_penalty, equalized_odds_penalty

__all__ = [
    # estimator
    "FairLowRankFineTuner",
    # building blocks
    "group_row_importance",
    "neutral_importance",
    "weighted_svd",
    "LowRankLinear",
    # saving without pickle
    "save_fitted",
    "load_fitted",
    # public subpackages
    "datasets",
    "metrics",
    "model_selection",
    "penalties",
    "preprocessing",
    # metrics (sklearn_winfair.metrics)
    "weighted_f1_error",
    "demographic_parity_gap",
    "equalized_odds_gap",
    "paper_metrics",
    "fairness_metric_frame",
    "make_fairness_scorer",
    # model selection (sklearn_winfair.model_selection)
    "fairest_within_tolerance",
    # training penalties (sklearn_winfair.penalties)
    "demographic_parity_penalty",
    "equalized_odds_penalty",
    # errors and warnings
    "HeadClassesWarning",
    "SmallGroupWarning",
    "TrainingDivergedError",
    "__version__",
]
