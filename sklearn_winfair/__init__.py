"""Fair low-rank fine-tuning of frozen PyTorch backbones for scikit-learn.

Weight-importance neutralization (Zhang & Zhou, 2024): replace the head of a
frozen backbone by a low-rank factorization weighted by the groups'
neutralized Fisher importance, and fine-tune only that, through skorch.
"""

from ._estimator import FairLowRankFineTuner
from ._factorize import LowRankLinear, weighted_svd
from ._fairness import (
    demographic_parity_gap,
    demographic_parity_penalty,
    equalized_odds_gap,
    equalized_odds_penalty,
    fairest_within_tolerance,
    fairness_metric_frame,
    make_fairness_scorer,
    paper_metrics,
    weighted_f1_error,
)
from ._importance import group_row_importance, neutral_importance
from .exceptions import TrainingDivergedError

__version__ = "0.1.0.dev0"

__all__ = [
    # estimator
    "FairLowRankFineTuner",
    # building blocks
    "group_row_importance",
    "neutral_importance",
    "weighted_svd",
    "LowRankLinear",
    # metrics and model selection
    "weighted_f1_error",
    "demographic_parity_gap",
    "equalized_odds_gap",
    "paper_metrics",
    "fairness_metric_frame",
    "make_fairness_scorer",
    "fairest_within_tolerance",
    # training penalties
    "demographic_parity_penalty",
    "equalized_odds_penalty",
    # errors and warnings
    "TrainingDivergedError",
    "__version__",
]
