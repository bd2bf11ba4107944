"""Errors and warnings raised by sklearn-winfair.

Each class also subclasses the builtin (or scikit-learn) class that callers
would catch without knowing this package, as skorch's exceptions do.
"""

__all__ = ["HeadClassesWarning", "SmallGroupWarning", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Raise when the training loss becomes NaN or infinite.

    Subclasses :class:`FloatingPointError`. The usual cures are a smaller
    ``lr`` or a smaller ``penalty_strength``.
    """


class HeadClassesWarning(UserWarning):
    """Warn that a pre-trained head's columns are matched to sorted labels.

    Column ``j`` of the head's output is taken to mean the ``j``-th sorted
    label of ``y``. Pass ``head_classes=[...]`` (the label of each column,
    in column order) to say otherwise, or to silence the warning.
    """


class SmallGroupWarning(UserWarning):
    """Warn that some groups have too few rows of a class.

    Their empirical Fisher importance, and any fairness penalty, rest on a
    handful of rows. A continuous column passed as ``sensitive_features``
    (one group per distinct value) is the usual cause: bin it first.
    """
