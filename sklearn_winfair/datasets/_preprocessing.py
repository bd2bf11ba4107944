"""A ready-made tabular preprocessor for the bundled data sets."""

import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_numeric_dtype,
    is_object_dtype,
    is_string_dtype,
)
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ._base import _check_bool, _is_str_sequence

X_TYPE_MSG = "`X` must be a pandas DataFrame, got {type_name}."
SENSITIVE_TYPE_MSG = (
    "`sensitive` must be None, a column name (str) or a list of column names, "
    "got {value!r} of type {type_name}."
)
SENSITIVE_MISSING_MSG = (
    "`sensitive` names column(s) {missing} that are not in `X`; "
    "the columns of `X` are {columns}."
)
UNSUPPORTED_DTYPE_MSG = (
    "`X` column {column!r} has dtype {dtype}; expected a numeric, bool, "
    "string, object or category dtype."
)
NO_COLUMNS_MSG = (
    "No column of `X` is left once the sensitive column(s) {dropped} are dropped."
)


def _is_categorical(dtype):
    """Return True for dtypes that are one-hot encoded."""
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or is_bool_dtype(dtype)
        or is_object_dtype(dtype)
        or is_string_dtype(dtype)
    )


def make_tabular_preprocessor(X, *, sensitive=None, keep_sensitive=False):
    """Build an unfitted preprocessor for a mixed-type DataFrame.

    Columns are split by their dtype in ``X``. Categorical columns (``category``,
    ``object``, string and bool dtypes) are imputed with their most frequent
    value and one-hot encoded; unknown categories met at transform time are
    encoded as all zeros. Numeric columns are imputed with their median and
    standardized. The sensitive column(s) are dropped unless
    ``keep_sensitive=True``, so that a model fitted on the output does not see
    them directly (it may still see proxies of them).

    Parameters
    ----------
    X : pandas.DataFrame
        Data whose column names and dtypes define the preprocessing; only the
        dtypes are looked at, nothing is fitted.

    sensitive : str or list of str, default=None
        Name(s) of the sensitive column(s) of ``X``, e.g. ``"sex"`` for
        :func:`load_adult` or ``["personal_status", "age"]`` for
        :func:`load_german_credit`. None drops nothing.

    keep_sensitive : bool, default=False
        If True, the sensitive column(s) are encoded like the other columns
        instead of being dropped.

    Returns
    -------
    sklearn.compose.ColumnTransformer
        Unfitted transformer whose ``fit_transform`` returns a dense
        ``float64`` NumPy array: first the one-hot columns of the categorical
        features, then the scaled numeric features. Columns are selected by
        name, so transform DataFrames with the same columns as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a DataFrame, ``sensitive`` is not None, a str or a
        list of str, or ``keep_sensitive`` is not a bool.
    ValueError
        If a ``sensitive`` column is not in ``X``, a column has an unsupported
        dtype (such as datetime), or no column is left.

    See Also
    --------
    load_adult : Load the bundled Adult data set.
    load_german_credit : Load the bundled German Credit data set.

    Notes
    -----
    The transformer is made of scikit-learn parts only:
    ``SimpleImputer(strategy="most_frequent")`` then
    ``OneHotEncoder(handle_unknown="ignore", sparse_output=False)`` for
    categorical columns, and ``SimpleImputer(strategy="median")`` then
    ``StandardScaler()`` for numeric columns, in a ``ColumnTransformer`` with
    ``remainder="drop"`` and ``sparse_threshold=0``.

    Dropping a sensitive column ("fairness through unawareness") does not by
    itself make a model fair; pass the sensitive feature to the fairness-aware
    estimator or metric through ``sensitive_features`` instead.

    Examples
    --------
    >>> from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
    >>> X, y = load_adult(return_X_y=True)
    >>> preprocessor = make_tabular_preprocessor(X, sensitive="sex")
    >>> Xt = preprocessor.fit_transform(X)
    >>> Xt.shape, Xt.dtype
    ((48842, 103), dtype('float64'))
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(X_TYPE_MSG.format(type_name=type(X).__name__))
    keep_sensitive = _check_bool(keep_sensitive, "keep_sensitive")
    if sensitive is None:
        sensitive_columns = []
    elif isinstance(sensitive, str):
        sensitive_columns = [sensitive]
    elif _is_str_sequence(sensitive):
        sensitive_columns = list(sensitive)
    else:
        raise TypeError(
            SENSITIVE_TYPE_MSG.format(
                value=sensitive, type_name=type(sensitive).__name__
            )
        )
    missing = [name for name in sensitive_columns if name not in X.columns]
    if missing:
        raise ValueError(
            SENSITIVE_MISSING_MSG.format(missing=missing, columns=list(X.columns))
        )

    dropped = set() if keep_sensitive else set(sensitive_columns)
    categorical, numeric = [], []
    for column, dtype in X.dtypes.items():
        if column in dropped:
            continue
        if _is_categorical(dtype):
            categorical.append(column)
        elif is_numeric_dtype(dtype):
            numeric.append(column)
        else:
            raise ValueError(UNSUPPORTED_DTYPE_MSG.format(column=column, dtype=dtype))
    if not categorical and not numeric:
        raise ValueError(NO_COLUMNS_MSG.format(dropped=sorted(dropped)))

    transformers = []
    if categorical:
        categorical_pipeline = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                (
                    "encode",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
            ]
        )
        transformers.append(("categorical", categorical_pipeline, categorical))
    if numeric:
        numeric_pipeline = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
            ]
        )
        transformers.append(("numeric", numeric_pipeline, numeric))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0)
