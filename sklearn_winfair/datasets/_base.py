"""Shared helpers for the bundled data set loaders."""

from importlib import resources

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

DATA_DIRECTORY = "data"

BOOL_TYPE_MSG = "`{name}` must be a bool, got {value!r} of type {type_name}."


def _check_bool(value, name):
    """Raise a TypeError unless ``value`` is a Python or NumPy bool."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            BOOL_TYPE_MSG.format(name=name, value=value, type_name=type(value).__name__)
        )
    return bool(value)


def _read_bundled_csv(filename, *, numeric_columns, na_values=()):
    """Read a gzip CSV file shipped in ``sklearn_winfair/datasets/data``.

    Columns listed in ``numeric_columns`` are read as ``int64``; every other
    column is read as a string, stripped of surrounding whitespace and turned
    into a pandas ``category`` (categories sorted, missing values as NaN).

    Parameters
    ----------
    filename : str
        Name of the bundled file, e.g. ``"adult.csv.gz"``.

    numeric_columns : list of str
        Columns holding whole numbers.

    na_values : sequence of str, default=()
        Strings that mark a missing value.

    Returns
    -------
    frame : pandas.DataFrame
        A new DataFrame; nothing is cached, so callers may mutate it.
    """
    resource = resources.files(__package__).joinpath(DATA_DIRECTORY, filename)
    with resource.open("rb") as f:
        frame = pd.read_csv(
            f,
            compression="gzip",
            dtype=str,
            na_values=list(na_values),
            keep_default_na=False,
        )
    for column in frame.columns:
        if column in numeric_columns:
            frame[column] = frame[column].astype("int64")
        else:
            frame[column] = frame[column].str.strip().astype("category")
    return frame


def _as_object_array(obj):
    """Return a pandas object as a NumPy object array (missing values as NaN)."""
    return obj.to_numpy(dtype=object, na_value=np.nan)


def _build_return(*, data, target, sensitive_features, as_frame, return_X_y, descr):
    """Assemble a scikit-learn style ``Bunch`` or an ``(X, y)`` tuple.

    Parameters
    ----------
    data : pandas.DataFrame
        Features.

    target : pandas.Series
        Target, with a name.

    sensitive_features : pandas.Series or pandas.DataFrame
        Sensitive feature(s), aligned with ``data``.

    as_frame : bool
        Return pandas objects if True, NumPy object arrays otherwise.

    return_X_y : bool
        Return ``(data, target)`` instead of a ``Bunch``.

    descr : str
        Description of the data set.

    Returns
    -------
    Bunch or tuple
    """
    if return_X_y:
        if as_frame:
            return data, target
        return _as_object_array(data), _as_object_array(target)

    feature_names = [str(column) for column in data.columns]
    target_names = [str(target.name)]
    if as_frame:
        frame = pd.concat([data, target], axis=1)
    else:
        data = _as_object_array(data)
        target = _as_object_array(target)
        sensitive_features = _as_object_array(sensitive_features)
        frame = None
    return Bunch(
        data=data,
        target=target,
        sensitive_features=sensitive_features,
        frame=frame,
        feature_names=feature_names,
        target_names=target_names,
        DESCR=descr,
    )


def _is_str_sequence(value):
    """Return True for a list or tuple whose items are all str."""
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
