"""Input checks shared by the estimator and the metrics.

Messages that several places raise are kept here as constants so tests can
match them (as fairlearn's ``utils/_input_validation.py`` does).
"""

import numbers

import numpy as np
import pandas as pd

_MISSING_SENSITIVE = (
    "sensitive_features is required when {reason}, but fit was called "
    "without it. Pass fit(X, y, sensitive_features=...). If a wrapper calls "
    "fit(X, y) without groups (for example fairlearn's ThresholdOptimizer "
    "with prefit=False), fit this estimator first and wrap it with "
    "prefit=True, or use importance='fisher', 'uniform' or rank=None."
)
_SENSITIVE_LENGTH = (
    "sensitive_features has {got} rows but X has {expected}; they must match."
)
_SENSITIVE_MISSING_VALUES = (
    "sensitive_features contains missing values (NaN or None) in {n} rows; "
    "every row needs a group label."
)
_TOO_FEW_GROUPS = (
    "sensitive_features has {n} distinct group(s) ({groups}); at least two "
    "are needed when {reason}."
)


def check_sensitive_features(sensitive_features, n_samples):
    """Validate ``sensitive_features`` and merge its columns into one label.

    Parameters
    ----------
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        A list, array, :class:`pandas.Series` or :class:`pandas.DataFrame`.
        Several columns are merged into one intersectional label, their
        values joined by ``","`` in column order, as fairlearn does.
    n_samples : int
        The number of rows of ``X``.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        One group label per row. A copy: the input is never modified.

    Raises
    ------
    ValueError
        If the length differs from ``n_samples``, if a value is missing, or
        if the input has more than two dimensions.
    """
    if isinstance(sensitive_features, pd.DataFrame):
        frame = sensitive_features
    elif isinstance(sensitive_features, dict):  # fairlearn accepts {name: column}
        frame = pd.DataFrame(sensitive_features)
    elif isinstance(sensitive_features, pd.Series):
        frame = sensitive_features.to_frame()
    else:
        arr = np.asarray(sensitive_features, dtype=object)
        if arr.ndim == 0:
            raise TypeError(
                "sensitive_features must be array-like with one entry per row "
                f"of X, got a scalar {sensitive_features!r}."
            )
        if arr.ndim > 2:
            raise ValueError(
                "sensitive_features must be 1-d or 2-d (one column per "
                f"sensitive attribute), got an array with {arr.ndim} dimensions."
            )
        frame = pd.DataFrame(arr.reshape(len(arr), -1))
    if len(frame) != n_samples:
        raise ValueError(
            _SENSITIVE_LENGTH.format(got=len(frame), expected=n_samples)
        )
    missing = frame.isna().to_numpy().any(axis=1)
    if missing.any():
        raise ValueError(_SENSITIVE_MISSING_VALUES.format(n=int(missing.sum())))
    if frame.shape[1] == 1:
        labels = frame.iloc[:, 0].to_numpy(dtype=object, copy=True)
    else:
        labels = (
            frame.astype(str).agg(",".join, axis=1).to_numpy(dtype=object)
        )
    return labels


def encode_groups(labels):
    """Return the sorted distinct groups and each row's integer group code.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Output of :func:`check_sensitive_features`.

    Returns
    -------
    groups : ndarray of shape (n_groups,)
        Distinct labels in sorted order (as :func:`numpy.unique` sorts them;
        mixed types are sorted by their string form).
    codes : ndarray of shape (n_samples,), dtype int64
        ``groups[codes[i]] == labels[i]``.
    """
    try:
        groups, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # mixed types (e.g. 1 and "a") cannot be compared
        as_str = np.asarray([str(v) for v in labels], dtype=object)
        groups, codes = np.unique(as_str, return_inverse=True)
    return groups, codes.astype(np.int64).ravel()


def check_group_weights(group_weights, groups):
    """Return one positive weight per group, normalised to sum to one.

    Parameters
    ----------
    group_weights : dict or None
        Mapping ``group -> weight``; ``None`` means equal weights.
    groups : ndarray of shape (n_groups,)
        The sorted groups seen in ``fit``.

    Returns
    -------
    weights : ndarray of shape (n_groups,)
    """
    n_groups = len(groups)
    if group_weights is None:
        return np.full(n_groups, 1.0 / n_groups)
    if not isinstance(group_weights, dict):
        raise TypeError(
            "group_weights must be a dict mapping each group to a weight, got "
            f"{type(group_weights).__name__}."
        )
    keys = {str(k) for k in group_weights}
    expected = {str(g) for g in groups}
    if keys != expected:
        raise ValueError(
            "group_weights must have exactly one entry per group seen in "
            f"sensitive_features. Groups: {sorted(expected)}; got keys "
            f"{sorted(keys)}."
        )
    by_str = {str(k): v for k, v in group_weights.items()}
    weights = np.array([by_str[str(g)] for g in groups], dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            "group_weights must be finite, non-negative and not all zero, got "
            f"{group_weights!r}."
        )
    return weights / weights.sum()


def check_random_seed(random_state):
    """Turn ``random_state`` into an int seed for torch, or None.

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        As in scikit-learn.

    Returns
    -------
    seed : int or None
    """
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise TypeError(
        "random_state must be None, an int or a numpy RandomState, got "
        f"{type(random_state).__name__}."
    )
