"""Pre-processing: sample weights that make the label independent of the groups."""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

from ._reweighing import reweighing_weights

__all__ = ["reweighing_weights"]
