"""Loader for the bundled UCI Statlog (German Credit Data) data set."""

import pandas as pd

from ._base import _build_return, _check_bool, _is_str_sequence, _read_bundled_csv

GERMAN_FILENAME = "german.csv.gz"

GERMAN_FEATURE_NAMES = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_status",
    "employment",
    "installment_commitment",
    "personal_status",
    "other_parties",
    "residence_since",
    "property_magnitude",
    "age",
    "other_payment_plans",
    "housing",
    "existing_credits",
    "job",
    "num_dependents",
    "own_telephone",
    "foreign_worker",
]
GERMAN_NUMERIC_FEATURES = [
    "duration",
    "credit_amount",
    "installment_commitment",
    "residence_since",
    "age",
    "existing_credits",
    "num_dependents",
]
GERMAN_TARGET_NAME = "class"
GERMAN_TARGET_LABELS = {"1": "good", "2": "bad"}

# A9 "personal status and sex": A91 male divorced/separated, A92 female
# divorced/separated/married, A93 male single, A94 male married/widowed,
# A95 female single.
PERSONAL_STATUS_TO_SEX = {
    "A91": "male",
    "A92": "female",
    "A93": "male",
    "A94": "male",
    "A95": "female",
}
OLDER_AGE_THRESHOLD = 25
GERMAN_SENSITIVE_OPTIONS = ("sex", "age")

SENSITIVE_VALUE_MSG = (
    "`sensitive` must be one of {allowed} or a non-empty list of them without "
    "repeats, got {value!r}."
)
SENSITIVE_TYPE_MSG = (
    "`sensitive` must be a str or a list of str from {allowed}, got {value!r} of "
    "type {type_name}."
)

GERMAN_DESCR = """\
UCI Statlog (German Credit Data) data set, bundled with sklearn-winfair.

1,000 loan applicants described by 20 attributes (7 numeric, 13 categorical)
and a binary target ``class`` ("good": 700, "bad": 300 credit risk). Column
names follow OpenML "credit-g" (data id 31); categorical values keep the
original UCI attribute codes (e.g. ``checking_status`` "A11" means
"< 0 DM"; see the UCI description for the meaning of each code). The usual
sensitive features are sex, derived from ``personal_status`` (A91, A93, A94
male; A92, A95 female), and age group (``age`` >= 25 is "older").

Source: Hofmann, H. (1994). Statlog (German Credit Data) [Dataset]. UCI
Machine Learning Repository. https://doi.org/10.24432/C5NC77. License:
Creative Commons Attribution 4.0 (CC BY 4.0). The bundled copy is the
original file rewritten as comma-separated values with a header and gzip
compressed; see ``data/LICENSE_GERMAN.txt``.
"""


def _check_sensitive(sensitive):
    """Validate ``sensitive`` and return it as a list of option names."""
    allowed = list(GERMAN_SENSITIVE_OPTIONS)
    if isinstance(sensitive, str):
        names = [sensitive]
    elif _is_str_sequence(sensitive):
        names = list(sensitive)
    else:
        raise TypeError(
            SENSITIVE_TYPE_MSG.format(
                allowed=allowed, value=sensitive, type_name=type(sensitive).__name__
            )
        )
    if (
        not names
        or len(set(names)) != len(names)
        or any(name not in allowed for name in names)
    ):
        raise ValueError(SENSITIVE_VALUE_MSG.format(allowed=allowed, value=sensitive))
    return names


def _sensitive_column(data, name):
    """Derive one sensitive feature Series from the German Credit features."""
    if name == "sex":
        values = data["personal_status"].astype(str).map(PERSONAL_STATUS_TO_SEX)
    else:
        values = (
            data["age"].ge(OLDER_AGE_THRESHOLD).map({True: "older", False: "younger"})
        )
    return values.astype("category").rename(name)


def load_german_credit(*, as_frame=True, return_X_y=False, sensitive="sex"):
    """Load the UCI Statlog (German Credit Data) data set bundled with the package.

    The data are read from a compressed CSV file shipped inside the package,
    so no network access is needed. Column names are those of OpenML
    "credit-g" (data id 31); the categorical values keep the original UCI
    attribute codes ("A11", "A12", ...).

    ==================  ============================
    Samples             1,000
    Features            20 (7 numeric, 13 categorical)
    Classes             2 ("good": 700; "bad": 300)
    Sensitive features  sex ("male": 690; "female": 310),
                        age ("older": 851; "younger": 149)
    ==================  ============================

    Parameters
    ----------
    as_frame : bool, default=True
        If True, ``data`` is a pandas DataFrame with numeric columns as
        ``int64`` and the other columns as ``category``, and ``target`` and
        ``sensitive_features`` are ``category`` pandas objects. If False, all
        three are NumPy arrays of dtype ``object`` and ``frame`` is None.

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    sensitive : {"sex", "age"} or list of them, default="sex"
        Which sensitive feature(s) to return as ``sensitive_features``.

        - ``"sex"``: a Series named ``sex``, "male" for ``personal_status``
          A91, A93 and A94 and "female" for A92 and A95.
        - ``"age"``: a Series named ``age``, "older" if ``age`` >= 25 and
          "younger" otherwise.
        - a list such as ``["sex", "age"]``: a DataFrame with one column per
          name, in the order given.

        The features in ``data`` are not changed; drop the columns the
        sensitive features come from (``personal_status``, ``age``) with
        :func:`make_tabular_preprocessor` if the model must not see them.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : pandas.DataFrame of shape (1000, 20) or ndarray
            The features.
        target : pandas.Series of shape (1000,) or ndarray
            The target ``class``, "good" or "bad".
        sensitive_features : pandas.Series, pandas.DataFrame or ndarray
            The sensitive feature(s) chosen with ``sensitive``.
        frame : pandas.DataFrame of shape (1000, 21) or None
            ``data`` and ``target`` side by side; None if ``as_frame=False``.
        feature_names : list of str
            The 20 feature names.
        target_names : list of str
            The name of the target column, ``["class"]``.
        DESCR : str
            Description of the data set, its source, license and citation.

    (data, target) : tuple if ``return_X_y`` is True
        The features and the target, as described above.

    Raises
    ------
    ValueError
        If ``sensitive`` names an option other than "sex" or "age", is empty
        or repeats a name.
    TypeError
        If ``sensitive`` is neither a str nor a list or tuple of str, or a
        flag is not a bool.

    See Also
    --------
    load_adult : Load the bundled Adult data set.
    make_tabular_preprocessor : Build a preprocessor that drops sensitive columns.

    Notes
    -----
    Source: Hofmann, H. (1994). Statlog (German Credit Data) [Dataset]. UCI
    Machine Learning Repository. https://doi.org/10.24432/C5NC77, licensed
    under Creative Commons Attribution 4.0 (CC BY 4.0). The bundled copy is
    the original file rewritten as comma-separated values with a header and
    gzip compressed; the target codes 1 and 2 are mapped to "good" and "bad"
    when loading. ``sklearn_winfair/datasets/data/LICENSE_GERMAN.txt``
    describes how the file was made.

    Examples
    --------
    >>> from sklearn_winfair.datasets import load_german_credit
    >>> bunch = load_german_credit()
    >>> bunch.data.shape
    (1000, 20)
    >>> bunch.target.value_counts().to_dict()
    {'good': 700, 'bad': 300}
    >>> bunch.sensitive_features.value_counts().to_dict()
    {'male': 690, 'female': 310}
    >>> load_german_credit(sensitive=["sex", "age"]).sensitive_features.shape
    (1000, 2)
    """
    as_frame = _check_bool(as_frame, "as_frame")
    return_X_y = _check_bool(return_X_y, "return_X_y")
    names = _check_sensitive(sensitive)

    frame = _read_bundled_csv(GERMAN_FILENAME, numeric_columns=GERMAN_NUMERIC_FEATURES)
    data = frame[GERMAN_FEATURE_NAMES].copy()
    target = (
        frame[GERMAN_TARGET_NAME]
        .astype(str)
        .map(GERMAN_TARGET_LABELS)
        .astype(pd.CategoricalDtype(["good", "bad"]))
        .rename(GERMAN_TARGET_NAME)
    )
    columns = [_sensitive_column(data, name) for name in names]
    if isinstance(sensitive, str):
        sensitive_features = columns[0]
    else:
        sensitive_features = pd.concat(columns, axis=1)
    return _build_return(
        data=data,
        target=target,
        sensitive_features=sensitive_features,
        as_frame=as_frame,
        return_X_y=return_X_y,
        descr=GERMAN_DESCR,
    )
