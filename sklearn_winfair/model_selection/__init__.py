"""Model selection: the fair refit rule and the fairness frontier.

:func:`fairest_within_tolerance` is a ``refit`` rule for scikit-learn's
searches; :class:`FairFrontierCV` fits candidate heads on one frozen backbone,
post-processes them, and picks the most accurate one within a fairness
tolerance.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from ._frontier import FairFrontierCV
from ._refit import fairest_within_tolerance

__all__ = ["FairFrontierCV", "fairest_within_tolerance"]
