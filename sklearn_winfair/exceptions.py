"""Errors and warnings raised by sklearn-winfair.

Each class also subclasses the builtin (or scikit-learn) class that callers
would catch without knowing this package, as skorch's exceptions do.
"""

__all__ = ["TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Raise when the training loss becomes NaN or infinite.

    Subclasses :class:`FloatingPointError`. The usual cures are a smaller
    ``lr`` or a smaller ``penalty_strength``.
    """
