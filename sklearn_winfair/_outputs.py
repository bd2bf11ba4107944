"""Where the class logits are in a backbone's output.

Backbones return logits in many forms: a tensor (torchvision), a Hugging
Face ``ModelOutput`` (``.logits``), a dict (``{"logits": ...}``) or a tuple
(``(logits, features)``). The estimator's ``output`` parameter says where to
look; :func:`find_logits` applies it. Pure Python and torch, no library
beyond them.
"""

from collections.abc import Mapping

import torch

__all__ = ["check_output_spec", "find_logits"]

_AUTO_DOC = (
    "a tensor, a Hugging Face ModelOutput's .logits, a dict's 'logits' or a "
    "tuple's first element"
)


def check_output_spec(output):
    """Validate the estimator's ``output`` parameter.

    Parameters
    ----------
    output : None, str, int or callable
        See :func:`find_logits`.

    Returns
    -------
    output : None, str, int or callable
        Unchanged.
    """
    if output is None or callable(output) or isinstance(output, (str, int)):
        return output
    raise TypeError(
        "output must be None (find the logits automatically), an attribute "
        "name or dict key (str), a tuple index (int) or a callable, got "
        f"{type(output).__name__}."
    )


def _auto(out):
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)  # Hugging Face ModelOutput
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def find_logits(out, output=None):
    """Return the logits tensor in a backbone's output ``out``.

    Parameters
    ----------
    out : object
        What the backbone's ``forward`` returned.
    output : None, str, int or callable, default=None
        ``None``: a tensor, a Hugging Face ``ModelOutput``'s ``.logits``, a
        dict's ``"logits"`` or a tuple's first element. A ``str``: that
        attribute, or that key of a mapping. An ``int``: that element of a
        tuple or list. A callable: ``output(out)``.

    Returns
    -------
    logits : torch.Tensor of shape (n_samples, n_outputs)

    Raises
    ------
    TypeError
        If no tensor is found; the message names the output's type and the
        ``output`` parameter.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._outputs import find_logits
    >>> z = torch.zeros(2, 3)
    >>> find_logits((z, "features")) is z
    True
    >>> find_logits({"scores": z}, output="scores") is z
    True
    """
    if output is None:
        found = _auto(out)
    elif callable(output):
        found = output(out)
    elif isinstance(output, str):
        if isinstance(out, Mapping) and output in out:
            found = out[output]
        else:
            found = getattr(out, output, None)
    else:
        try:
            found = out[output]
        except (TypeError, IndexError, KeyError):
            found = None
    if not isinstance(found, torch.Tensor):
        where = _AUTO_DOC if output is None else f"output={output!r}"
        raise TypeError(
            f"Could not find the logits in the backbone's output of type "
            f"{type(out).__module__}.{type(out).__qualname__}: looked for {where}. "
            "Pass output=<attribute name, dict key, tuple index or a callable "
            "returning the logits tensor>."
        )
    return found
