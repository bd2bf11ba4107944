"""Offline loaders for the data sets bundled with sklearn-winfair.

The data files are shipped inside the package, gzip compressed, with their
licenses (Creative Commons Attribution 4.0) in ``sklearn_winfair/datasets/data``.
"""

from ._adult import load_adult
from ._german import load_german_credit
from ._preprocessing import make_tabular_preprocessor

__all__ = [
    "load_adult",
    "load_german_credit",
    "make_tabular_preprocessor",
]
