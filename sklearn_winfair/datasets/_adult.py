"""Loader for the bundled UCI Adult ("Census Income") data set."""

from ._base import _build_return, _check_bool, _read_bundled_csv

ADULT_FILENAME = "adult.csv.gz"

ADULT_FEATURE_NAMES = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
]
ADULT_NUMERIC_FEATURES = [
    "age",
    "fnlwgt",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
]
ADULT_TARGET_NAME = "class"
ADULT_SENSITIVE_NAME = "sex"

ADULT_DESCR = """\
UCI Adult ("Census Income") data set, bundled with sklearn-winfair.

48,842 people from the 1994 US Census (the 32,561-row train split followed by
the 16,281-row test split of the UCI files), 14 features and a binary target
``class`` (">50K" or "<=50K" yearly income; 11,687 people, about 23.9%, earn
more than 50K). ``workclass``, ``occupation`` and ``native-country`` have
missing values (written "?" in the source); 45,222 rows have none. The usual
sensitive feature is ``sex`` ("Male"/"Female"). Column names follow OpenML
data id 1590, as used by ``fairlearn.datasets.fetch_adult``.

Source: Becker, B. and Kohavi, R. (1996). Adult [Dataset]. UCI Machine
Learning Repository. https://doi.org/10.24432/C5XW20. License: Creative
Commons Attribution 4.0 (CC BY 4.0). Please also cite Ron Kohavi, "Scaling Up
the Accuracy of Naive-Bayes Classifiers: a Decision-Tree Hybrid", KDD 1996.
The bundled copy concatenates the train and test files, strips whitespace,
removes the trailing dot of the test labels, adds a header and is gzip
compressed; see ``data/LICENSE_ADULT.txt``.
"""


def load_adult(*, as_frame=True, return_X_y=False, dropna=False):
    """Load the UCI Adult ("Census Income") data set bundled with the package.

    The data are read from a compressed CSV file shipped inside the package,
    so no network access is needed. The 14 feature columns have the same names
    as in :func:`fairlearn.datasets.fetch_adult` (OpenML data id 1590).

    ==================  ============================
    Samples             48,842 (45,222 with dropna)
    Features            14 (6 numeric, 8 categorical)
    Classes             2 (">50K": 11,687; "<=50K": 37,155)
    Sensitive feature   sex ("Male": 32,650; "Female": 16,192)
    ==================  ============================

    Parameters
    ----------
    as_frame : bool, default=True
        If True, ``data`` is a pandas DataFrame with numeric columns as
        ``int64`` and the other columns as ``category`` (missing values as
        NaN), and ``target`` and ``sensitive_features`` are ``category``
        Series. If False, all three are NumPy arrays of dtype ``object``
        (numbers as Python ints, strings as str, missing values as
        ``float("nan")``) and ``frame`` is None.

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    dropna : bool, default=False
        If True, drop the 3,620 rows that have a missing value and renumber
        the index from 0.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : pandas.DataFrame of shape (n_samples, 14) or ndarray
            The features.
        target : pandas.Series of shape (n_samples,) or ndarray
            The target ``class``, ">50K" or "<=50K".
        sensitive_features : pandas.Series of shape (n_samples,) or ndarray
            A copy of the ``sex`` column, "Male" or "Female".
        frame : pandas.DataFrame of shape (n_samples, 15) or None
            ``data`` and ``target`` side by side; None if ``as_frame=False``.
        feature_names : list of str
            The 14 feature names.
        target_names : list of str
            The name of the target column, ``["class"]`` (as in
            :func:`sklearn.datasets.fetch_openml`).
        DESCR : str
            Description of the data set, its source, license and citation.

    (data, target) : tuple if ``return_X_y`` is True
        The features and the target, as described above.

    See Also
    --------
    load_german_credit : Load the bundled German Credit data set.
    make_tabular_preprocessor : Build a preprocessor that drops sensitive columns.

    Notes
    -----
    Source: Becker, B. and Kohavi, R. (1996). Adult [Dataset]. UCI Machine
    Learning Repository. https://doi.org/10.24432/C5XW20, licensed under
    Creative Commons Attribution 4.0 (CC BY 4.0). The bundled copy
    concatenates ``adult.data`` and ``adult.test``, strips whitespace, removes
    the trailing dot of the test labels, adds a header and is gzip compressed;
    ``sklearn_winfair/datasets/data/LICENSE_ADULT.txt`` describes how it was
    made.

    Unlike :func:`fairlearn.datasets.fetch_adult`, whose numeric columns come
    from OpenML as floats, numeric columns here are ``int64``.

    References
    ----------
    .. [1] R. Kohavi, "Scaling Up the Accuracy of Naive-Bayes Classifiers: a
       Decision-Tree Hybrid", Proceedings of the Second International
       Conference on Knowledge Discovery and Data Mining (KDD), 1996.

    Examples
    --------
    >>> from sklearn_winfair.datasets import load_adult
    >>> bunch = load_adult()
    >>> bunch.data.shape
    (48842, 14)
    >>> bunch.target.value_counts().sort_index().to_dict()
    {'<=50K': 37155, '>50K': 11687}
    >>> bunch.sensitive_features.value_counts().sort_index().to_dict()
    {'Female': 16192, 'Male': 32650}
    >>> X, y = load_adult(return_X_y=True, dropna=True)
    >>> X.shape, int(X.isna().sum().sum())
    ((45222, 14), 0)
    """
    as_frame = _check_bool(as_frame, "as_frame")
    return_X_y = _check_bool(return_X_y, "return_X_y")
    dropna = _check_bool(dropna, "dropna")

    frame = _read_bundled_csv(
        ADULT_FILENAME, numeric_columns=ADULT_NUMERIC_FEATURES, na_values=["?"]
    )
    if dropna:
        frame = frame.dropna().reset_index(drop=True)

    data = frame[ADULT_FEATURE_NAMES].copy()
    target = frame[ADULT_TARGET_NAME].copy()
    sensitive_features = data[ADULT_SENSITIVE_NAME].copy()
    return _build_return(
        data=data,
        target=target,
        sensitive_features=sensitive_features,
        as_frame=as_frame,
        return_X_y=return_X_y,
        descr=ADULT_DESCR,
    )
