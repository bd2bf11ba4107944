"""Errors and warnings raised by sklearn-winfair.

Each class also subclasses the builtin (or scikit-learn) class that callers
would catch without knowing this package, as skorch's exceptions do.
"""

__all__ = [
    "FeatureStoreWarning",
    "HeadClassesWarning",
    "SmallGroupWarning",
    "TrainingDivergedError",
]


class TrainingDivergedError(FloatingPointError):
    """Raise when the training loss becomes NaN or infinite.

    Subclasses :class:`FloatingPointError`. The usual cures are a smaller
    ``lr`` or a smaller ``penalty_strength``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> from sklearn_winfair.exceptions import TrainingDivergedError
    >>> backbone = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> with torch.no_grad():
    ...     _ = backbone[0].weight.fill_(3e38)  # logits overflow to inf
    >>> X = np.ones((8, 2), dtype="float32"); y = np.arange(8) % 2
    >>> try:
    ...     FairLowRankFineTuner(backbone, rank=None).fit(X, y)
    ... except TrainingDivergedError as exc:
    ...     print(type(exc).__name__)
    TrainingDivergedError
    """


class HeadClassesWarning(UserWarning):
    """Warn that a pre-trained head's columns are matched to sorted labels.

    Column ``j`` of the head's output is taken to mean the ``j``-th sorted
    label of ``y``. Pass ``head_classes=[...]`` (the label of each column,
    in column order) to say otherwise, or to silence the warning.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> from sklearn_winfair.exceptions import HeadClassesWarning
    >>> X = np.random.RandomState(0).normal(size=(20, 3)).astype("float32")
    >>> y = np.array(["no", "yes"] * 10)
    >>> head = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = FairLowRankFineTuner(head, rank=None, max_epochs=1).fit(X, y)
    >>> [w.category.__name__ for w in caught]
    ['HeadClassesWarning']
    >>> clf = FairLowRankFineTuner(head, rank=None, max_epochs=1,
    ...                            head_classes=["no", "yes"]).fit(X, y)
    """


class SmallGroupWarning(UserWarning):
    """Warn that some groups have too few rows of a class.

    Their empirical Fisher importance, and any fairness penalty, rest on a
    handful of rows. A continuous column passed as ``sensitive_features``
    (one group per distinct value) is the usual cause: bin it first.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 3)).astype("float32"); y = np.arange(40) % 2
    >>> age = rng.uniform(18, 90, size=40)  # continuous: one group per row
    >>> head = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = FairLowRankFineTuner(head, max_epochs=1).fit(
    ...         X, y, sensitive_features=age)
    >>> [w.category.__name__ for w in caught]
    ['SmallGroupWarning']
    """


class FeatureStoreWarning(UserWarning):
    """Warn that the feature store (``memory=``) skipped a file or a write.

    The message names the file or folder and what was wrong: a damaged,
    foreign or oversized shard (its rows are recomputed), stored rows that
    do not match the live backbone (the store is not used for that call), a
    folder that others can write to, or a write that failed at ``fit``.
    Results are never affected, only the time saved by the store.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from pathlib import Path
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> from sklearn_winfair.exceptions import FeatureStoreWarning
    >>> X = np.random.RandomState(0).normal(size=(20, 3)).astype("float32")
    >>> y = np.arange(20) % 2
    >>> folder = tempfile.mkdtemp()
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    >>> clf = FairLowRankFineTuner(net, rank=None, max_epochs=1, memory=folder,
    ...                            head_classes=[0, 1]).fit(X, y)
    >>> [shard] = Path(folder).glob("sklearn_winfair_features/*/*.npz")
    >>> _ = (shard.parent / "0000.npz").write_bytes(b"not a shard")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = clf.predict(X)
    >>> [w.category.__name__ for w in caught]
    ['FeatureStoreWarning']
    """
