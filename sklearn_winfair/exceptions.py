"""Errors and warnings raised by sklearn-winfair.

Each class also subclasses the builtin (or scikit-learn) class that callers
would catch without knowing this package, as skorch's exceptions do.
"""

__all__ = ["NoFactorizationWarning", "TrainingDivergedError"]


class NoFactorizationWarning(UserWarning):
    """Warn that ``rank`` is too large for any head layer to be factorized.

    A layer with ``min(in_features, out_features) <= rank`` is kept dense, so
    when every head layer is that small the fit is plain fine-tuning of the
    head (the paper's TL baseline) whatever ``importance`` says.
    """


class TrainingDivergedError(FloatingPointError):
    """Raise when the training loss becomes NaN or infinite.

    Subclasses :class:`FloatingPointError`. The usual cures are a smaller
    ``lr`` or a smaller ``penalty_strength``.
    """
