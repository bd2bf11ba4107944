"""Save a fitted estimator without pickle: safetensors for tensors, JSON for the rest.

safetensors stores the tensors (the merged export's ``state_dict``, the
pre-trained head it replaced, and the numeric fitted arrays) and keeps a JSON
document in its header: the estimator's parameters and fitted attributes, with
references to those tensors. Nothing is unpickled and no code is named in the
file: the architecture comes from the ``backbone`` the caller passes to
:func:`load_fitted`, and the only classes the file can name are the optimizers
of :mod:`torch.optim`. A SHA-256 digest of the JSON and of every tensor detects a
file changed after :func:`save_fitted` wrote it (an integrity check, not a
signature: whoever can edit the file can recompute it).

Layout of the file::

    tensors   model/<key>      merged export's state_dict (user's architecture)
              backbone/<key>   pre-trained values of the keys the fit changed
              array/<n>        numeric fitted arrays (importance_, ...)
    metadata  "sklearn_winfair"  JSON: format, class, params, fitted, ...
              "sha256"           digest of the JSON and the tensors
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import copy
import hashlib
import importlib
import json
import numbers

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._estimator import FairLowRankFineTuner
from ._version import __version__

__all__ = ["save_fitted", "load_fitted"]

_METADATA_KEY = "sklearn_winfair"
_DIGEST_KEY = "sha256"
_FORMAT = "sklearn_winfair.fitted_estimator"
_FORMAT_VERSION = 1
# fitted attributes not written: model_ is rebuilt from the merged export and
# the caller's architecture; net_ (skorch's history, optimizer state and
# callbacks) is training state that predict, export and refit do not use
_NOT_SAVED = ("model_", "net_")

_MESSAGE_MISSING_PACKAGE = (
    "{what} needs the package {package!r}, which is not installed. Install it "
    "with `pip install {package}`."
)
_MESSAGE_NOT_OURS = (
    "{path!r} is not a file written by sklearn_winfair.save_fitted: {why}."
)
_MESSAGE_TAMPERED = (
    "{path!r} was modified after save_fitted wrote it: the SHA-256 digest of its "
    "metadata and tensors does not match the one stored in it. Save the estimator "
    "again; to change a parameter, pass it to load_fitted instead "
    "(load_fitted(path, backbone, device='cpu'))."
)
_MESSAGE_ARCHITECTURE = (
    "backbone does not match the saved model: {problems}. Pass a fresh instance "
    "of the architecture (and dtype) that was fitted."
)
_MESSAGE_UNSAVED_PARAMS = (
    "Parameters {names} could not be stored in JSON when the estimator was saved "
    "(types: {types}); pass them to load_fitted, e.g. "
    "load_fitted(path, backbone, {example}=...)."
)
_MESSAGE_DEVICE = (
    "device={device!r} (saved, or passed to load_fitted) is not available here "
    "({error}). Pass another one: load_fitted(path, backbone, device='cpu')."
)
_MESSAGE_UNKNOWN_PARAMS = (
    "load_fitted got unknown parameters {names}; the estimator's parameters are "
    "{known}."
)
_MESSAGE_KEYS_DIFFER = (
    "The estimator's backbone and its export have different state_dict keys "
    "({detail}), so the pre-trained backbone cannot be stored as a difference "
    "from the export (is the backbone wrapped, e.g. by torch.compile or "
    "nn.DataParallel?). Save estimator.export_module().state_dict() with "
    "safetensors directly instead."
)


def _import_optional(module, package, what):
    """Import ``module``; if missing, raise ``ImportError`` naming ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            _MESSAGE_MISSING_PACKAGE.format(what=what, package=package)
        ) from exc


# ---------------------------------------------------------------- encoding
def _encode(value, tensors, where):
    """Return a JSON-able form of ``value``; numeric arrays go into ``tensors``.

    Raise ``TypeError`` naming ``where`` for a value that has no safe form.
    """
    if isinstance(value, np.generic):  # before str and float: np.str_, np.float64
        return {"__scalar__": value.dtype.str, "value": value.item()}
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        return {
            "__dict__": [
                [
                    _encode(k, tensors, f"{where} key"),
                    _encode(v, tensors, f"{where}[{k!r}]"),
                ]
                for k, v in value.items()
            ]
        }
    if isinstance(value, torch.Tensor):
        key = f"array/{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            key = f"array/{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"__ndarray__": key}
        if value.dtype.kind in "UO":
            data = [
                _encode(v, tensors, f"{where}[...]") for v in value.ravel().tolist()
            ]
            return {
                "__strarray__": value.dtype.str,
                "shape": list(value.shape),
                "data": data,
            }
    if isinstance(value, torch.dtype):
        return {"__torch_dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if (
        isinstance(value, type)
        and issubclass(value, torch.optim.Optimizer)
        and getattr(torch.optim, value.__name__, None) is value
    ):
        return {"__torch_optim__": value.__name__}
    raise TypeError(f"{where} of type {type(value).__name__} has no safe JSON form")


def _decode(value, tensors):
    """Inverse of :func:`_encode`; raise ``ValueError`` on an unknown form."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict) or len(value) == 0:
        raise ValueError(f"unknown value {value!r}")
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy()
    if "__strarray__" in value:
        data = [_decode(v, tensors) for v in value["data"]]
        return np.array(data, dtype=np.dtype(value["__strarray__"])).reshape(
            value["shape"]
        )
    if "__scalar__" in value:
        return np.dtype(value["__scalar__"]).type(value["value"])
    if "__torch_dtype__" in value:
        dtype = getattr(torch, value["__torch_dtype__"], None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown torch dtype {value['__torch_dtype__']!r}")
        return dtype
    if "__device__" in value:
        return torch.device(value["__device__"])
    if "__torch_optim__" in value:
        cls = getattr(torch.optim, value["__torch_optim__"], None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ValueError(f"unknown optimizer {value['__torch_optim__']!r}")
        return cls
    raise ValueError(f"unknown value {value!r}")


def _digest(document, tensors):
    """SHA-256 of the JSON document and of every tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256(document.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # no copy
    return h.hexdigest()


def _state(module):
    """``state_dict`` detached on CPU, each tensor its own contiguous copy."""
    return {
        k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()
    }


# -------------------------------------------------------------------- save
def save_fitted(estimator, path):
    """Save a fitted :class:`FairLowRankFineTuner` to one safetensors file, no pickle.

    The file holds the merged export (:meth:`~FairLowRankFineTuner.export_module`,
    in the backbone's own architecture), the pre-trained values of the layers
    the fit replaced, the parameters and the fitted attributes. Loading it
    (:func:`load_fitted`) runs no code from the file. Read more in the
    :ref:`User Guide <deployment>`.

    .. versionadded:: 0.1

    Parameters
    ----------
    estimator : FairLowRankFineTuner
        A fitted estimator.
    path : str or path-like
        File to write (conventionally ``*.safetensors``); overwritten.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If a fitted attribute has no safe JSON form (the message names it).
    ValueError
        If the backbone's ``state_dict`` keys differ from its export's.
    ImportError
        If the ``safetensors`` package is not installed.

    See Also
    --------
    load_fitted : Load the estimator back, given a fresh copy of the architecture.

    Notes
    -----
    Parameters without a JSON form (a callable ``output``, skorch
    ``callbacks``, a ``RandomState``, a custom optimizer class) are not saved;
    their names are, and :func:`load_fitted` asks for them. The skorch net
    ``net_`` (training history, optimizer state) is not saved: predicting,
    exporting and refitting do not need it.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner, load_fitted, save_fitted
    >>> def make_backbone():
    ...     return torch.nn.Sequential(
    ...         torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> X = np.random.RandomState(0).normal(size=(64, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = FairLowRankFineTuner(make_backbone(), importance="uniform", rank=1,
    ...                            max_epochs=2, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.safetensors")
    >>> save_fitted(clf, path)
    >>> loaded = load_fitted(path, make_backbone())
    >>> bool((loaded.predict(X) == clf.predict(X)).all())
    True
    """
    check_is_fitted(estimator)
    st = _import_optional("safetensors.torch", "safetensors", "save_fitted")
    tensors = {}
    export = estimator.export_module()
    model_state = _state(export)
    backbone_state = _state(estimator.backbone)
    if model_state.keys() != backbone_state.keys():
        only_b = sorted(backbone_state.keys() - model_state.keys())[:3]
        only_m = sorted(model_state.keys() - backbone_state.keys())[:3]
        raise ValueError(
            _MESSAGE_KEYS_DIFFER.format(
                detail=f"only in the backbone: {only_b}, only in the export: {only_m}"
            )
        )
    # _state copied every tensor, so tied weights are written once per name
    for key, value in model_state.items():
        tensors[f"model/{key}"] = value
    changed = []
    for key, value in backbone_state.items():
        mine = model_state[key]
        if (value.dtype, value.shape) != (mine.dtype, mine.shape) or not torch.equal(
            value, mine
        ):
            tensors[f"backbone/{key}"] = value
            changed.append(key)

    params, unsaved = {}, {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "backbone":
            continue
        try:
            params[name] = _encode(value, tensors, f"parameter {name!r}")
        except TypeError:
            unsaved[name] = type(value).__name__
    fitted = {}
    for name, value in sorted(vars(estimator).items()):
        if name.startswith("_") or not name.endswith("_") or name in _NOT_SAVED:
            continue
        fitted[name] = _encode(
            value, tensors, f"fitted attribute {name!r} of {type(estimator).__name__}"
        )

    document = json.dumps(
        {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "class": type(estimator).__name__,
            "sklearn_winfair_version": __version__,
            "params": params,
            "unsaved_params": unsaved,
            "fitted": fitted,
            "backbone_changed_keys": changed,
        },
        sort_keys=True,
    )
    metadata = {_METADATA_KEY: document, _DIGEST_KEY: _digest(document, tensors)}
    st.save_file(tensors, str(path), metadata=metadata)


# -------------------------------------------------------------------- load
def _read(path):
    """Return (document dict, tensors) of a file written by :func:`save_fitted`."""
    safetensors = _import_optional("safetensors", "safetensors", "load_fitted")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, safetensors.SafetensorError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(
            _MESSAGE_NOT_OURS.format(path=str(path), why=f"safetensors says {exc}")
        ) from exc
    if _METADATA_KEY not in metadata or _DIGEST_KEY not in metadata:
        raise ValueError(
            _MESSAGE_NOT_OURS.format(
                path=str(path), why=f"its header has no {_METADATA_KEY!r} metadata"
            )
        )
    document = metadata[_METADATA_KEY]
    if _digest(document, tensors) != metadata[_DIGEST_KEY]:
        raise ValueError(_MESSAGE_TAMPERED.format(path=str(path)))
    doc = json.loads(document)
    if doc.get("format") != _FORMAT or doc.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            _MESSAGE_NOT_OURS.format(
                path=str(path),
                why=(
                    f"format {doc.get('format')!r} version "
                    f"{doc.get('format_version')!r}, this version reads "
                    f"{_FORMAT!r} version {_FORMAT_VERSION}"
                ),
            )
        )
    return doc, tensors


def _load_into(module, state):
    """Load ``state`` into ``module``, raising ``ValueError`` on any mismatch.

    ``load_state_dict`` would cast a bfloat16 tensor into a float32 model
    silently; keys, shapes and dtypes are compared first.
    """
    own = module.state_dict()
    problems = []
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    if missing:
        problems.append(f"keys missing from the file {missing[:5]}")
    if unexpected:
        problems.append(f"keys the backbone lacks {unexpected[:5]}")
    for key in sorted(own.keys() & state.keys()):
        a, b = own[key], state[key]
        if a.shape != b.shape:
            problems.append(
                f"{key!r} has shape {tuple(a.shape)}, saved {tuple(b.shape)}"
            )
        elif a.dtype != b.dtype:
            problems.append(f"{key!r} has dtype {a.dtype}, saved {b.dtype}")
        if len(problems) >= 5:
            break
    if problems:
        raise ValueError(_MESSAGE_ARCHITECTURE.format(problems="; ".join(problems)))
    module.load_state_dict(state, strict=True)


def load_fitted(path, backbone, **params):
    """Load an estimator written by :func:`save_fitted`, without unpickling.

    The caller brings the architecture: ``backbone`` is a fresh instance of
    the model that was fitted (its weights do not matter; they are
    overwritten). The result predicts as the saved estimator's merged export
    does, and its ``backbone`` parameter holds the pre-trained weights, so a
    refit (or :func:`~sklearn.base.clone`) starts where the original fit did.
    Read more in the :ref:`User Guide <deployment>`.

    .. versionadded:: 0.1

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_fitted`.
    backbone : torch.nn.Module
        A fresh instance of the fitted architecture, in the same dtype. Not
        modified: the weights are loaded into a deep copy.
    **params : dict
        Parameters to set instead of the saved ones (``device="cpu"`` to load a
        model fitted on a GPU), and those that could not be saved.

    Returns
    -------
    estimator : FairLowRankFineTuner
        Fitted; every fitted attribute except ``net_`` is restored, and
        ``model_`` is the merged export in the caller's architecture.

    Raises
    ------
    ValueError
        If the file was not written by :func:`save_fitted` or was changed
        since, if ``backbone`` does not match the saved weights (keys, shapes,
        dtypes), or a parameter is unknown or was not saved and not given.
    TypeError
        If ``backbone`` is not a ``torch.nn.Module``.

    See Also
    --------
    save_fitted : Write the file.

    Notes
    -----
    The saved estimator predicts with its factorized head, the loaded one with
    the merged ``nn.Linear`` (``W = A B``): probabilities agree to float32
    rounding (about 1e-7), and exactly with the original's
    ``export_module()``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner, load_fitted, save_fitted
    >>> def make_backbone():
    ...     return torch.nn.Sequential(
    ...         torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X = np.random.RandomState(0).normal(size=(64, 4)).astype("float32")
    >>> y = np.where(X[:, 0] > 0, "yes", "no")
    >>> clf = FairLowRankFineTuner(make_backbone(), importance="uniform", rank=1,
    ...                            head_classes=["no", "yes"], max_epochs=2,
    ...                            random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.safetensors")
    >>> save_fitted(clf, path)
    >>> loaded = load_fitted(path, make_backbone(), device="cpu")
    >>> loaded.classes_.tolist(), loaded.head_name_
    (['no', 'yes'], '2')
    >>> bool(np.allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6))
    True
    """
    if not isinstance(backbone, nn.Module):
        raise TypeError(
            f"backbone must be a torch.nn.Module (a fresh instance of the fitted "
            f"architecture), got {type(backbone).__name__}."
        )
    doc, tensors = _read(path)
    if doc.get("class") != FairLowRankFineTuner.__name__:
        raise ValueError(
            _MESSAGE_NOT_OURS.format(
                path=str(path), why=f"it holds a {doc.get('class')!r}"
            )
        )
    saved = {name: _decode(v, tensors) for name, v in doc["params"].items()}
    missing = sorted(set(doc["unsaved_params"]) - set(params))
    if missing:
        types = [doc["unsaved_params"][n] for n in missing]
        raise ValueError(
            _MESSAGE_UNSAVED_PARAMS.format(
                names=missing, types=types, example=missing[0]
            )
        )
    known = set(saved) | set(doc["unsaved_params"])
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            _MESSAGE_UNKNOWN_PARAMS.format(names=unknown, known=sorted(known))
        )
    saved.update(params)

    prefix_model, prefix_backbone = "model/", "backbone/"
    model_state = {
        k[len(prefix_model) :]: v
        for k, v in tensors.items()
        if k.startswith(prefix_model)
    }
    model = copy.deepcopy(backbone)
    _load_into(model, model_state)
    pretrained = copy.deepcopy(model)
    changed = {
        k[len(prefix_backbone) :]: v
        for k, v in tensors.items()
        if k.startswith(prefix_backbone)
    }
    if changed:
        _load_into(pretrained, {**model_state, **changed})

    try:
        estimator = FairLowRankFineTuner(pretrained, **saved)
    except TypeError as exc:  # a parameter this version no longer has
        raise ValueError(
            _MESSAGE_NOT_OURS.format(
                path=str(path), why=f"its parameters do not fit this version ({exc})"
            )
        ) from exc
    for name, value in doc["fitted"].items():
        setattr(estimator, name, _decode(value, tensors))
    try:
        model = model.to(torch.device(estimator.device)).eval()
    except (RuntimeError, AssertionError) as exc:  # e.g. no CUDA on this machine
        raise ValueError(
            _MESSAGE_DEVICE.format(device=estimator.device, error=exc)
        ) from exc
    for p in model.parameters():
        p.requires_grad_(False)
    estimator.model_ = model
    # export_module() casts the merged head to the dtype the fit recorded in
    # this private attribute; the merged head already has it
    head = model.get_submodule(estimator.head_name_)
    floats = [p.dtype for p in head.parameters() if p.is_floating_point()]
    estimator._head_dtype = floats[0] if floats else None
    return estimator
