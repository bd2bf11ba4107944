"""Tests for the bundled data set loaders in ``sklearn_winfair.datasets``."""

import gzip
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.utils import Bunch

from sklearn_winfair.datasets import (
    load_adult,
    load_german_credit,
    make_tabular_preprocessor,
)

# Column names of fairlearn.datasets.fetch_adult (OpenML data id 1590).
FETCH_ADULT_COLUMNS = [
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
CREDIT_G_COLUMNS = [
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

# Counted from the raw UCI files (adult.data + adult.test, german.data).
ADULT_N_ROWS = 48_842
ADULT_N_ROWS_DROPNA = 45_222
ADULT_TARGET_COUNTS = {">50K": 11_687, "<=50K": 37_155}
ADULT_TARGET_COUNTS_DROPNA = {">50K": 11_208, "<=50K": 34_014}
ADULT_SEX_COUNTS = {"Male": 32_650, "Female": 16_192}
ADULT_SEX_COUNTS_DROPNA = {"Male": 30_527, "Female": 14_695}
ADULT_MISSING_COUNTS = {"workclass": 2_799, "occupation": 2_809, "native-country": 857}
GERMAN_TARGET_COUNTS = {"good": 700, "bad": 300}
GERMAN_SEX_COUNTS = {"male": 690, "female": 310}
GERMAN_AGE_COUNTS = {"older": 851, "younger": 149}
GERMAN_SEX_AGE_COUNTS = {
    ("male", "older"): 625,
    ("female", "older"): 226,
    ("female", "younger"): 84,
    ("male", "younger"): 65,
}


def assert_frame_equal(left, right):
    # check_exact=True: the data are ints and strings, and it is much faster
    # than the default tolerance check on category columns.
    pd.testing.assert_frame_equal(left, right, check_exact=True)


def assert_series_equal(left, right):
    pd.testing.assert_series_equal(left, right, check_exact=True)


DATA_FILES = [
    "adult.csv.gz",
    "german.csv.gz",
    "LICENSE_ADULT.txt",
    "LICENSE_GERMAN.txt",
]


@pytest.fixture(scope="module")
def adult():
    return load_adult()


@pytest.fixture(scope="module")
def adult_dropna():
    return load_adult(dropna=True)


@pytest.fixture(scope="module")
def german():
    return load_german_credit()


def _counts(series):
    return {key: int(value) for key, value in series.value_counts().items()}


def test_bundled_files_are_small_gzip_with_license():
    """The data files ship in the package, are gzip with mtime 0 and under 1 MB."""
    data_dir = resources.files("sklearn_winfair.datasets").joinpath("data")
    total = 0
    for name in DATA_FILES:
        content = data_dir.joinpath(name).read_bytes()
        total += len(content)
        if name.endswith(".gz"):
            assert content[:2] == b"\x1f\x8b"
            assert content[4:8] == b"\x00\x00\x00\x00"  # mtime=0: reproducible
            assert gzip.decompress(content)
        else:
            text = content.decode("ascii")
            assert "CC BY 4.0" in text and "doi.org/10.24432/" in text
    assert total < 1_000_000


def test_adult_shape_and_columns(adult):
    """load_adult gives 48,842 rows and fetch_adult's 14 column names in order."""
    assert isinstance(adult, Bunch)
    assert adult.data.shape == (ADULT_N_ROWS, 14)
    assert list(adult.data.columns) == FETCH_ADULT_COLUMNS
    assert adult.feature_names == FETCH_ADULT_COLUMNS
    assert adult.target_names == ["class"]
    assert list(adult.frame.columns) == FETCH_ADULT_COLUMNS + ["class"]
    assert adult.target.name == "class"
    assert "10.24432/C5XW20" in adult.DESCR and "CC BY 4.0" in adult.DESCR


def test_adult_dtypes(adult):
    """Adult numeric columns are int64, the others category with stripped strings."""
    numeric = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss"]
    numeric.append("hours-per-week")
    for column in FETCH_ADULT_COLUMNS:
        dtype = adult.data[column].dtype
        if column in numeric:
            assert dtype == np.int64, column
        else:
            assert isinstance(dtype, pd.CategoricalDtype), column
            categories = list(dtype.categories)
            assert all(c == c.strip() for c in categories), column
            assert "?" not in categories, column


def test_adult_target_balance(adult, adult_dropna):
    """Adult target counts match the raw files (about 23.9% '>50K')."""
    assert _counts(adult.target) == ADULT_TARGET_COUNTS
    assert set(adult.target.cat.categories) == {">50K", "<=50K"}
    assert adult.target.eq(">50K").mean() == pytest.approx(0.239, abs=5e-4)
    assert _counts(adult_dropna.target) == ADULT_TARGET_COUNTS_DROPNA


def test_adult_missing_values_and_dropna(adult, adult_dropna):
    """Missing values are NaN in three columns and gone with dropna=True."""
    missing = adult.data.isna().sum()
    assert {k: int(v) for k, v in missing[missing > 0].items()} == (
        ADULT_MISSING_COUNTS
    )
    assert adult_dropna.data.shape == (ADULT_N_ROWS_DROPNA, 14)
    assert not adult_dropna.data.isna().any().any()
    assert adult_dropna.data.index.equals(pd.RangeIndex(ADULT_N_ROWS_DROPNA))
    assert len(adult_dropna.target) == len(adult_dropna.sensitive_features)


def test_adult_sensitive_features(adult, adult_dropna):
    """Adult sensitive_features is the sex column with the raw-file counts."""
    assert adult.sensitive_features.name == "sex"
    assert _counts(adult.sensitive_features) == ADULT_SEX_COUNTS
    assert _counts(adult_dropna.sensitive_features) == ADULT_SEX_COUNTS_DROPNA
    assert_series_equal(adult.sensitive_features, adult.data["sex"])


def test_adult_return_X_y(adult):
    """return_X_y=True returns the Bunch's data and target as a tuple."""
    X, y = load_adult(return_X_y=True)
    assert_frame_equal(X, adult.data)
    assert_series_equal(y, adult.target)


def test_adult_as_frame_false():
    """as_frame=False gives object arrays with NaN for missing and no frame."""
    bunch = load_adult(as_frame=False, dropna=False)
    assert bunch.data.shape == (ADULT_N_ROWS, 14) and bunch.data.dtype == object
    assert bunch.target.shape == (ADULT_N_ROWS,) and bunch.target.dtype == object
    assert bunch.sensitive_features.dtype == object
    assert bunch.frame is None
    assert bunch.feature_names == FETCH_ADULT_COLUMNS
    assert set(bunch.target) == {">50K", "<=50K"}
    workclass = bunch.data[:, FETCH_ADULT_COLUMNS.index("workclass")]
    assert pd.isna(workclass).sum() == ADULT_MISSING_COUNTS["workclass"]
    X, y = load_adult(as_frame=False, return_X_y=True)
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray)


@pytest.mark.parametrize("name", ["as_frame", "return_X_y", "dropna"])
def test_adult_flag_type_error(name):
    """A non-bool flag raises a TypeError naming the argument."""
    with pytest.raises(TypeError, match=f"`{name}` must be a bool, got 'yes'"):
        load_adult(**{name: "yes"})


def test_load_twice_equal_and_independent():
    """Loading twice gives equal frames, and mutating one leaves the next intact."""
    first = load_adult()
    second = load_adult()
    assert_frame_equal(first.frame, second.frame)
    assert_frame_equal(first.data, second.data)

    first.frame.loc[0, "age"] = -1
    first.data.loc[0, "age"] = -1
    first.data["workclass"] = first.data["workclass"].cat.add_categories("X")
    first.data.loc[:, "workclass"] = "X"
    first.target.iloc[0] = ">50K"
    first.sensitive_features.iloc[0] = "Female"
    third = load_adult()
    assert_frame_equal(third.frame, second.frame)
    assert_series_equal(third.target, second.target)
    assert third.data.loc[0, "age"] == 39
    assert third.target.iloc[0] == "<=50K"
    assert third.sensitive_features.iloc[0] == "Male"

    german = load_german_credit()
    german.data.loc[0, "age"] = 0
    assert_frame_equal(load_german_credit().frame, load_german_credit().frame)
    assert load_german_credit().data.loc[0, "age"] == 67


def test_german_shape_columns_and_target(german):
    """German Credit has 1,000 rows, credit-g column names and 700/300 classes."""
    assert german.data.shape == (1000, 20)
    assert list(german.data.columns) == CREDIT_G_COLUMNS
    assert german.feature_names == CREDIT_G_COLUMNS
    assert german.target_names == ["class"]
    assert german.target.name == "class"
    assert _counts(german.target) == GERMAN_TARGET_COUNTS
    assert german.frame.shape == (1000, 21)
    assert german.data.select_dtypes("number").shape[1] == 7
    assert german.data.loc[0, "checking_status"] == "A11"
    assert "10.24432/C5NC77" in german.DESCR


def test_german_sensitive_sex(german):
    """sensitive='sex' gives male/female from personal_status with raw counts."""
    sex = german.sensitive_features
    assert isinstance(sex, pd.Series) and sex.name == "sex"
    assert _counts(sex) == GERMAN_SEX_COUNTS
    status = german.data["personal_status"].astype(str)
    assert set(status[sex == "male"]) == {"A91", "A93", "A94"}
    assert set(status[sex == "female"]) == {"A92"}  # A95 does not occur


def test_german_sensitive_age():
    """sensitive='age' gives older (age >= 25) / younger with raw counts."""
    bunch = load_german_credit(sensitive="age")
    age_group = bunch.sensitive_features
    assert isinstance(age_group, pd.Series) and age_group.name == "age"
    assert _counts(age_group) == GERMAN_AGE_COUNTS
    assert (bunch.data["age"][age_group == "older"] >= 25).all()
    assert (bunch.data["age"][age_group == "younger"] < 25).all()


def test_german_sensitive_both():
    """sensitive=['sex', 'age'] gives a DataFrame with both, in that order."""
    both = load_german_credit(sensitive=["sex", "age"]).sensitive_features
    assert isinstance(both, pd.DataFrame)
    assert list(both.columns) == ["sex", "age"]
    counts = both.value_counts()
    assert {key: int(value) for key, value in counts.items()} == (GERMAN_SEX_AGE_COUNTS)
    reversed_ = load_german_credit(sensitive=("age", "sex")).sensitive_features
    assert list(reversed_.columns) == ["age", "sex"]


def test_german_return_X_y_and_as_frame_false(german):
    """return_X_y and as_frame=False work for German Credit too."""
    X, y = load_german_credit(return_X_y=True)
    assert_frame_equal(X, german.data)
    bunch = load_german_credit(as_frame=False, sensitive=["sex", "age"])
    assert bunch.data.dtype == object and bunch.data.shape == (1000, 20)
    assert bunch.sensitive_features.shape == (1000, 2)
    assert bunch.frame is None


@pytest.mark.parametrize("sensitive", ["gender", [], ["sex", "sex"], ["sex", "x"]])
def test_german_invalid_sensitive_value(sensitive):
    """A bad sensitive value raises a ValueError naming it and the allowed values."""
    with pytest.raises(
        ValueError, match=r"`sensitive` must be one of \['sex', 'age'\]"
    ):
        load_german_credit(sensitive=sensitive)


@pytest.mark.parametrize("sensitive", [None, 1, ["sex", 1]])
def test_german_invalid_sensitive_type(sensitive):
    """A sensitive of the wrong type raises a TypeError naming the argument."""
    with pytest.raises(TypeError, match="`sensitive` must be a str or a list"):
        load_german_credit(sensitive=sensitive)


def _n_categories(X, columns):
    return sum(X[column].nunique() for column in columns)


def test_preprocessor_drops_sensitive_adult(adult):
    """The Adult preprocessor drops 'sex' and outputs a finite dense float array."""
    X = adult.data
    preprocessor = make_tabular_preprocessor(X, sensitive="sex")
    assert isinstance(preprocessor, ColumnTransformer)
    assert not hasattr(preprocessor, "transformers_")  # unfitted
    Xt = preprocessor.fit_transform(X)
    categorical = X.select_dtypes("category").columns.drop("sex")
    expected = _n_categories(X, categorical) + 6
    assert expected == 103
    assert isinstance(Xt, np.ndarray) and Xt.dtype == np.float64
    assert Xt.shape == (ADULT_N_ROWS, expected)
    assert np.isfinite(Xt).all()
    names = preprocessor.get_feature_names_out()
    assert not any("sex" in name for name in names)

    kept = make_tabular_preprocessor(X, sensitive="sex", keep_sensitive=True)
    assert kept.fit_transform(X).shape == (ADULT_N_ROWS, expected + 2)


def test_preprocessor_drops_sensitive_german(german):
    """The German preprocessor drops a list of sensitive columns."""
    X = german.data
    preprocessor = make_tabular_preprocessor(X, sensitive=["personal_status", "age"])
    Xt = preprocessor.fit_transform(X)
    categorical = X.select_dtypes("category").columns.drop("personal_status")
    expected = _n_categories(X, categorical) + 6
    assert Xt.shape == (1000, expected) and Xt.dtype == np.float64
    assert np.isfinite(Xt).all()
    names = preprocessor.get_feature_names_out()
    assert not any("personal_status" in name or "__age" in name for name in names)
    assert make_tabular_preprocessor(X).fit_transform(X).shape[1] == expected + 5


def test_preprocessor_unknown_category_and_missing(adult_dropna):
    """Unseen categories and NaN at transform time still give finite output."""
    X = adult_dropna.data.head(500)
    preprocessor = make_tabular_preprocessor(X, sensitive="sex").fit(X)
    X_new = X.head(3).copy()
    X_new["workclass"] = X_new["workclass"].cat.add_categories("Unseen")
    X_new.loc[0, "workclass"] = "Unseen"
    X_new.loc[1, "occupation"] = np.nan
    X_new.loc[2, "age"] = np.nan
    Xt = preprocessor.transform(X_new)
    assert Xt.shape == (3, preprocessor.transform(X).shape[1])
    assert np.isfinite(Xt).all()


def test_preprocessor_sensitive_not_in_X(german):
    """A sensitive column missing from X raises a ValueError naming it."""
    with pytest.raises(ValueError, match=r"\['sex'\] that are not in `X`"):
        make_tabular_preprocessor(german.data, sensitive="sex")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sensitive": 3}, TypeError, "`sensitive` must be None, a column name"),
        ({"keep_sensitive": 1}, TypeError, "`keep_sensitive` must be a bool"),
    ],
)
def test_preprocessor_bad_arguments(german, kwargs, error, match):
    """Bad argument types raise a TypeError naming the argument."""
    with pytest.raises(error, match=match):
        make_tabular_preprocessor(german.data, **kwargs)


def test_preprocessor_bad_X_and_dtype():
    """X must be a DataFrame with supported dtypes and some column left."""
    with pytest.raises(TypeError, match="`X` must be a pandas DataFrame, got ndarray"):
        make_tabular_preprocessor(np.zeros((2, 2)))
    dates = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    with pytest.raises(ValueError, match="column 'when' has dtype datetime64"):
        make_tabular_preprocessor(dates)
    with pytest.raises(ValueError, match="No column of `X` is left"):
        make_tabular_preprocessor(pd.DataFrame({"s": ["a", "b"]}), sensitive="s")
