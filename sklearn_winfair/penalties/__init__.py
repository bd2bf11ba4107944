"""Differentiable fairness penalties (torch) to add to a training loss."""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from ._gap_penalties import demographic_parity_penalty, equalized_odds_penalty

__all__ = ["demographic_parity_penalty", "equalized_odds_penalty"]
