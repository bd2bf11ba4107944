"""Small helpers shared by the package: warnings at the user's frame, optional imports.

Which library does what here: the standard library only (``warnings``,
``sys._getframe``, ``importlib``).
"""

import importlib
import os
import sys
import warnings

__all__ = ["optional_import", "warn_user"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Frames in these folders are skipped: ours, and the scikit-learn, skorch
#: and joblib machinery between the user's call and ours (``_fit_context``).
_SKIPPED = (_PACKAGE_DIR,) + tuple(
    os.path.dirname(m.__file__)
    for m in (
        importlib.import_module("sklearn"),
        importlib.import_module("skorch"),
        importlib.import_module("joblib"),
    )
)


def _stacklevel():
    """Return the ``stacklevel`` of the first frame outside the skipped folders."""
    level, frame = 2, sys._getframe(2)  # 1: warn_user, 2: its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _SKIPPED
    ):
        frame = frame.f_back
        level += 1
    return level


def warn_user(message, category=UserWarning):
    """``warnings.warn`` pointing at the user's code, however deep we are.

    Instead of a hard-coded ``stacklevel`` that breaks when a call moves,
    the frames of this package and of the scikit-learn and skorch machinery
    around it are skipped.

    Parameters
    ----------
    message : str
    category : type of Warning, default=UserWarning
    """
    warnings.warn(message, category, stacklevel=_stacklevel())


def optional_import(name, *, extra=None, purpose=None):
    """Import the optional package ``name`` or raise an ImportError saying how to get it.

    Parameters
    ----------
    name : str
        Module name, e.g. ``"matplotlib.pyplot"``.
    extra : str or None, default=None
        The ``sklearn-winfair[extra]`` that installs it.
    purpose : str or None, default=None
        What it is needed for, for the message.

    Returns
    -------
    module
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        how = (
            f"pip install 'sklearn-winfair[{extra}]'" if extra else f"pip install {top}"
        )
        why = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"{top} is needed{why} but is not installed ({exc}). Install it with "
            f"{how}."
        ) from exc
