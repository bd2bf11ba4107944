"""The backbone's input in every form, checked once and batched row-wise.

Which library does what here: scikit-learn checks 2-d and n-d arrays and
DataFrames (``validate_data``: lengths, column names, ``n_features_in_``);
numpy and torch share memory with the caller's array (never written); torch
copies one batch at a time onto the device, casting floats there.

Forms of ``X`` (see :func:`check_input`):

* an array, DataFrame, ``np.memmap`` or CPU ``torch.Tensor`` of any numeric
  dtype, 2-d or n-d (``N x C x H x W`` images are not flattened). Integer X
  keeps its dtype (token ids stay int64, a uint8 image stays uint8 for the
  model's own first step to convert); floating X is cast to the trunk's
  floating dtype **one batch at a time**, so a memmap is never read whole.
* a mapping of equal-length arrays (``dict``, skorch's
  :class:`~skorch.helper.SliceDict`, a Hugging Face ``BatchEncoding``),
  passed to ``forward`` as keyword arguments, batched row-wise.
"""

import re
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.utils.validation import validate_data

__all__ = ["InputData", "check_input"]

#: Elements per chunk of the NaN / inf scan of a floating array: the scan's
#: temporaries stay a few MiB whatever the size of X.
_SCAN_ELEMENTS = 1 << 20

def _is_float_dtype(dtype):
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return np.issubdtype(dtype, np.floating)


def _as_tensor(arr):
    """Return a CPU tensor sharing memory with ``arr`` (read-only arrays too).

    torch warns that a read-only array is not writable; nothing here writes
    to it (every batch is copied before the backbone sees it).
    """
    if isinstance(arr, torch.Tensor):
        return arr.detach()
    arr = np.asarray(arr)
    if arr.dtype.kind in "biuf":
        if not arr.flags.c_contiguous:
            # a strided view cannot be shared; the copy is the caller's layout
            arr = np.ascontiguousarray(arr)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return torch.from_numpy(arr)
    raise TypeError(
        f"X has dtype {arr.dtype}; the backbone needs numbers (integers, "
        "floats or booleans). Encode strings and categories first, for example "
        "with sklearn_winfair.datasets.make_tabular_preprocessor in a Pipeline."
    )


def _check_finite(name, t):
    """Raise if a floating tensor holds NaN or inf; scans in chunks."""
    if not t.dtype.is_floating_point:
        return
    row = max(1, t[:1].numel())
    step = max(1, _SCAN_ELEMENTS // row)
    for start in range(0, len(t), step):
        chunk = t[start : start + step]
        if not torch.isfinite(chunk).all():
            raise ValueError(
                f"Input {name} contains NaN or infinity. Impute or drop those "
                "rows first (the backbone cannot use them)."
            )


class InputData:
    """The checked input: one tensor, or a dict of tensors with equal length.

    Parameters
    ----------
    data : torch.Tensor or dict of str to torch.Tensor
        CPU tensors sharing memory with what the caller passed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._inputs import InputData
    >>> data = InputData({"ids": np.arange(6).reshape(3, 2)})
    >>> data.batch(0, 2, "cpu", None)["ids"].tolist()
    [[0, 1], [2, 3]]
    """

    def __init__(self, data, *, cast_integers=False):
        if isinstance(data, Mapping):
            self.data = {k: _as_tensor(v) for k, v in data.items()}
        else:
            self.data = _as_tensor(data)
        #: Cast integer X to the trunk's float dtype per batch: set when the
        #: backbone's first batch rejected integers (a float MLP fed int X).
        self.cast_integers = cast_integers

    @property
    def is_mapping(self):
        """Whether the backbone takes keyword arguments."""
        return isinstance(self.data, dict)

    def tensors(self):
        """Return the tensors as ``(name, tensor)`` pairs (``"X"`` for one)."""
        if self.is_mapping:
            return [(f"X[{k!r}]", v) for k, v in self.data.items()]
        return [("X", self.data)]

    def __len__(self):
        return len(self.tensors()[0][1])

    def _cast(self, t, device, float_dtype):
        """Copy ``t`` to ``device``; floats become ``float_dtype`` on the way."""
        is_float = float_dtype is not None and _is_float_dtype(t.dtype)
        if self.cast_integers and not t.is_floating_point():
            return t.to(device=device, dtype=float_dtype or torch.float32, copy=True)
        if t.dtype == torch.bool or is_float:
            return t.to(device=device, dtype=float_dtype or torch.float32, copy=True)
        return t.to(device=device, copy=True)

    def batch(self, start, stop, device, float_dtype):
        """Rows ``start:stop``, copied to ``device`` and cast (floats only).

        Parameters
        ----------
        start, stop : int
            Row range.
        device : torch.device or str
            Where the batch goes.
        float_dtype : torch.dtype or None
            Floating dtype of the trunk; integer tensors keep their dtype.

        Returns
        -------
        torch.Tensor or dict of str to torch.Tensor
        """
        if self.is_mapping:
            return {
                k: self._cast(v[start:stop], device, float_dtype)
                for k, v in self.data.items()
            }
        return self._cast(self.data[start:stop], device, float_dtype)

    def take(self, indices):
        """Rows ``indices`` as a new :class:`InputData` (a copy of those rows)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.is_mapping:
            return InputData({k: v[idx] for k, v in self.data.items()})
        return InputData(self.data[idx], cast_integers=self.cast_integers)

    def shapes(self):
        """Trailing shape of each tensor (without the row axis)."""
        return {name: tuple(t.shape[1:]) for name, t in self.tensors()}

    def forward(self, model, batch):
        """Call ``model`` on one batch (keyword arguments for a mapping).

        Numeric input is numeric input: a single integer tensor that the
        backbone cannot take (a float layer fed integer features, as
        scikit-learn's checks pass) is cast to the trunk's float dtype, and
        :attr:`cast_integers` records it for every later batch (and, through
        the estimator's ``cast_integers_``, for predict). Token ids in a
        mapping are never cast; there the error says how to cast.
        """
        try:
            return call_backbone(model, batch)
        except TypeError:
            if self.is_mapping or self.cast_integers or batch.is_floating_point():
                raise
            dtype = next(
                (p.dtype for p in model.parameters() if p.is_floating_point()),
                torch.float32,
            )
            out = call_backbone(model, batch.to(dtype))
            self.cast_integers = True
            return out


def call_backbone(model, batch):
    """``model(batch)``, or ``model(**batch)`` for a mapping; clear dtype errors.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone.
    batch : torch.Tensor or dict of str to torch.Tensor
        One batch, on the model's device.

    Returns
    -------
    The backbone's output, whatever its type.
    """
    try:
        if isinstance(batch, dict):
            return model(**batch)
        return model(batch)
    except RuntimeError as exc:
        width = _feature_mismatch(exc, batch)
        if width is not None:
            got, expected = width
            raise ValueError(
                f"X has {got} features per row but the backbone's first layer "
                f"expects {expected} (torch: {str(exc).splitlines()[0]}). If a "
                "preprocessing step before this estimator changed the number of "
                "columns (a one-hot encoder refitted on other categories inside "
                "cross-validation, say), fix its output width, e.g. "
                "OneHotEncoder(handle_unknown='ignore') fitted once, or "
                "categories= given explicitly."
            ) from exc
        tensors = batch.values() if isinstance(batch, dict) else [batch]
        ints = sorted({str(t.dtype) for t in tensors if not t.is_floating_point()})
        msg = str(exc)
        if ints and ("dtype" in msg or "scalar type" in msg):
            raise TypeError(
                f"The backbone failed on integer input ({', '.join(ints)}): "
                f"{msg}. Integer X is passed to the backbone unchanged (token "
                "ids must stay integers); if this backbone expects floating "
                "features, pass X.astype('float32')."
            ) from exc
        raise


_MATMUL = re.compile(
    r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)"
)


def _feature_mismatch(exc, batch):
    """``(got, expected)`` when ``exc`` says X's width does not fit the first layer."""
    match = _MATMUL.search(str(exc))
    if match is None or not isinstance(batch, torch.Tensor) or batch.ndim != 2:
        return None
    rows, got, expected = (int(match.group(i)) for i in (1, 2, 3))
    if rows != batch.shape[0] or got != batch.shape[1] or got == expected:
        return None
    return got, expected


def _shape_hint(shape, expected):
    """Return the likely cause of rows ``shape[1:]`` where ``expected`` was fitted."""
    row = tuple(shape[1:])
    if len(expected) == 3:
        c, h, w = expected
        if row == (h, w, c):
            return ("it looks channels-last (N x H x W x C): pass "
                    "X.transpose(0, 3, 1, 2).")
        if c == 1 and row == (h, w):
            return "the channel axis is missing: pass X[:, None]."
        if row == (c * h * w,):
            return f"the images are flattened: pass X.reshape(-1, {c}, {h}, {w})."
    if tuple(shape) == tuple(expected):
        return "this is a single row without the row axis: pass X[None]."
    return None


def _check_shape_first(estimator, X):
    """At predict, compare the row shape before scikit-learn counts features."""
    expected = getattr(estimator, "input_shape_", {}).get("X")
    shape = getattr(X, "shape", None)
    if expected is None or shape is None or len(expected) < 2:
        return
    shape = tuple(shape)
    if shape[1:] == tuple(expected):
        return
    hint = _shape_hint(shape, expected)
    raise ValueError(
        f"X has rows of shape {shape[1:]} (X.shape = {shape}), but the estimator "
        f"was fitted on rows of shape {tuple(expected)}"
        + (f"; {hint}" if hint else ".")
    )


def _mapping_input(X):
    lengths = {}
    columns = {}
    for key, value in X.items():
        if not isinstance(key, str):
            raise TypeError(
                f"X is a mapping, so its keys must be the names of forward's "
                f"keyword arguments (str); got key {key!r} of type "
                f"{type(key).__name__}."
            )
        if isinstance(value, (pd.DataFrame, pd.Series)):
            value = value.to_numpy()
        if not isinstance(value, torch.Tensor):
            value = np.asarray(value)
        if value.ndim == 0:
            raise ValueError(
                f"X[{key!r}] is a scalar; every entry of a mapping X must have "
                "one row per sample."
            )
        lengths[key] = len(value)
        columns[key] = value
    if not columns:
        raise ValueError("X is an empty mapping; pass at least one input array.")
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"The arrays of X must have one row per sample each, but their "
            f"lengths differ: {lengths}."
        )
    return InputData(columns)


def check_input(estimator, X, *, reset):
    """Check ``X`` for ``estimator`` and return it as :class:`InputData`.

    Arrays and DataFrames go through scikit-learn's ``validate_data``
    (``dtype="numeric"``: integer and float dtypes are kept, nothing is cast
    as a whole), which sets or checks ``n_features_in_`` and
    ``feature_names_in_``. Floating arrays are scanned for NaN and inf in
    chunks. The trailing shape (``input_shape_``) is recorded at fit and
    compared at predict, so image-size mismatches are stated as shapes.

    What cannot be checked here: that integer ids are within the
    backbone's vocabulary, and that a mapping's keys are the names that
    ``forward`` takes (the backbone raises on the first batch).

    Parameters
    ----------
    estimator : BaseEstimator
        Receives ``n_features_in_``, ``feature_names_in_`` and
        ``input_shape_`` when ``reset``.
    X : array-like, torch.Tensor or mapping
        See the module docstring.
    reset : bool
        ``True`` in ``fit``, ``False`` in ``predict``.

    Returns
    -------
    InputData
    """
    if isinstance(X, Mapping) and not sp.issparse(X):  # dok_matrix is a dict
        data = _mapping_input(X)
    elif isinstance(X, torch.Tensor):
        if not reset:
            _check_shape_first(estimator, X)
        if X.ndim < 2:
            raise ValueError(
                f"X must have one row per sample and at least 2 dimensions, got "
                f"a tensor of shape {tuple(X.shape)}."
            )
        data = InputData(X)
        if reset:
            estimator.n_features_in_ = int(X.shape[1])
    else:
        if not reset:
            _check_shape_first(estimator, X)
        # dtype="numeric" keeps integer and float dtypes; copy=False keeps a
        # memmap or read-only array shared (floats are cast per batch later)
        arr = validate_data(
            estimator, X, reset=reset, allow_nd=True, dtype="numeric",
            ensure_all_finite=False, copy=False,
        )
        data = InputData(arr)
    for name, t in data.tensors():
        _check_finite(name, t)
    shapes = data.shapes()
    if reset:
        estimator.input_shape_ = shapes
    else:
        _check_shapes(estimator, data, shapes)
    return data


def _check_shapes(estimator, data, shapes):
    expected = estimator.input_shape_
    if set(shapes) != set(expected):
        raise ValueError(
            f"X has inputs {sorted(shapes)} but the estimator was fitted on "
            f"{sorted(expected)}."
        )
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise ValueError(
                f"{name} has rows of shape {shape}, but the estimator was "
                f"fitted on rows of shape {expected[name]} (the full shape of "
                f"{name} is {(len(data),) + shape})."
            )
