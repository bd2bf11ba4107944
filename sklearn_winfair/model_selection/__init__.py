"""Model selection: the fair refit rule for scikit-learn's hyper-parameter searches."""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from ._refit import fairest_within_tolerance

__all__ = ["fairest_within_tolerance"]
