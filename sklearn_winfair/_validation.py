"""Every check of fit's inputs and parameters, run before any expensive work.

The estimator's ``fit`` calls :func:`check_fit` first: parameters that
depend on each other (pure functions of the parameters, as scikit-learn's
``_check_solver``), the device, ``X``, the labels, the groups, the weights
and the head's name and size are all checked before the backbone runs once.
The result is one :class:`FitData` bundle (numpy arrays; the tensors are
made once from it), instead of numpy/torch twins travelling through the fit.

Messages that several places raise are kept here as constants so tests can
match them (as fairlearn's ``utils/_input_validation.py`` does); the
metrics and ``reweighing_weights`` share :func:`check_sensitive_features`.

Which library does what here: scikit-learn checks labels, weights and X
(``_check_y``, ``check_classification_targets``, ``_check_sample_weight``,
``validate_data`` through :func:`~sklearn_winfair._inputs.check_input`);
pandas merges several sensitive columns; torch checks the device.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, _check_y
from torch import nn

from ._adapters import match_target_modules
from ._inputs import InputData, check_input
from ._layers import check_not_lazy, linear_layer_names, resolve_head
from ._outputs import check_output_spec
from ._utils import warn_user
from .exceptions import HeadClassesWarning, SmallGroupWarning

_MISSING_SENSITIVE = (
    "sensitive_features is required when {reason}, but fit was called "
    "without it. Pass fit(X, y, sensitive_features=...). If a wrapper calls "
    "fit(X, y) without groups (for example fairlearn's ThresholdOptimizer "
    "with prefit=False), fit this estimator first and wrap it with "
    "prefit=True, or use importance='fisher', 'uniform' or rank=None."
)
_SENSITIVE_LENGTH = (
    "sensitive_features has {got} rows but {against} has {expected}; they must "
    "match."
)
_SENSITIVE_MISSING_VALUES = (
    "sensitive_features contains missing values (NaN or None) in {n} rows; "
    "every row needs a group label."
)
_TOO_FEW_GROUPS = (
    "sensitive_features has {n} distinct group(s) ({groups}); at least two "
    "are needed when {reason}."
)


def check_sensitive_features(sensitive_features, n_samples, *, against="X"):
    """Validate ``sensitive_features`` and merge its columns into one label.

    Parameters
    ----------
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        A list, array, :class:`pandas.Series` or :class:`pandas.DataFrame`.
        Several columns are merged into one intersectional label, their
        values joined by ``","`` in column order, as fairlearn does.
    n_samples : int
        The number of rows of ``X``.
    against : str, default="X"
        What ``n_samples`` counts, for the message (``"y"`` in
        :func:`~sklearn_winfair.preprocessing.reweighing_weights`).

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
            _SENSITIVE_LENGTH.format(got=len(frame), against=against,
                                     expected=n_samples)
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


# --------------------------------------------------------------------------
# the estimator's fit: parameters first, then data, then the layers
# --------------------------------------------------------------------------

#: A group with fewer rows than this of some class is named in a warning.
MIN_ROWS_PER_CLASS = 2


#: Device names people write that torch spells otherwise.
_DEVICE_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "apple": "mps", "metal": "mps"}


def _available_devices():
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    return available


def check_device(device):
    """Return ``torch.device(device)``, or a one-line ValueError naming what is there.

    torch's own errors for an unusable device run to a thousand characters
    (the dispatcher's list of backends); the message here names the device,
    the likely intended name, and the devices this machine has.
    """
    available = _available_devices()
    alias = _DEVICE_ALIASES.get(str(device).split(":")[0].lower())
    hint = f" Did you mean device={alias!r}?" if alias else ""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device name.{hint} Devices "
            f"available here: {available}."
        ) from None
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, AttributeError, NotImplementedError):
        raise ValueError(
            f"device={device!r} is not usable on this machine (this torch build "
            f"or machine has no {dev.type} backend).{hint} Devices available "
            f"here: {available}."
        ) from None
    return dev


def check_params(est, reserved_net_params):
    """Check parameters against each other, as pure functions (no data needed).

    Parameters
    ----------
    est : FairLowRankFineTuner
        Read only.
    reserved_net_params : dict
        skorch arguments the estimator sets itself, with the parameter to
        use instead.
    """
    check_output_spec(est.output)
    if not isinstance(est.backbone, nn.Module):
        raise TypeError("backbone must be a torch.nn.Module.")
    for name in ("rank", "max_epochs", "max_iter", "batch_size", "n_iter_no_change"):
        value = getattr(est, name)
        if isinstance(value, (bool, np.bool_)):
            # bool is an Integral, so the declared Interval lets it through
            raise TypeError(
                f"{name} must be an int{' or None' if name == 'rank' else ''}, "
                f"got {value!r} (a bool)."
            )
    if est.early_stopping and est.train_split is not None:
        raise ValueError(
            "early_stopping=True holds out validation_fraction of the rows "
            "itself; it cannot be combined with train_split. Set one of them."
        )
    clash = sorted(set(est.net_params or {}) & set(reserved_net_params))
    if clash:
        hints = {k: reserved_net_params[k] for k in clash}
        raise ValueError(
            f"net_params sets {clash}, which the estimator sets itself; use "
            f"its own parameter instead: {hints}."
        )


def scale_weights(weights):
    """Return ``weights`` divided by their mean (mean 1), finite, or an error.

    The training loss, the penalties' group means and the Fisher are
    weighted means, so a common factor changes nothing in exact arithmetic;
    in float32 weights of 1e-30 underflow and 1e38 overflow. Dividing by the
    mean (in float64) gives the result of weights of order 1. The linear
    probe, whose regularization makes the weights' scale meaningful (as in
    scikit-learn's ``LogisticRegression``), gets the original weights.

    Parameters
    ----------
    weights : ndarray of shape (n_samples,), float64, non-negative
    """
    with np.errstate(over="ignore"):
        total = weights.sum()
    if not np.isfinite(total):
        # the sum overflowed float64: scale by the largest weight first
        weights = weights / weights.max()
        total = weights.sum()
    if not total > 0:
        raise ValueError(
            "sample_weight sums to zero: at least one row needs a positive weight."
        )
    return weights / (total / len(weights))


@dataclass
class FitData:
    """The validated inputs of one fit, as numpy arrays.

    Attributes
    ----------
    X : InputData
    y : ndarray of shape (n_samples,), int64
        Column index of each row's label in the head's output.
    classes : ndarray of shape (n_classes,)
    groups : ndarray of shape (n_groups,) or None
    codes : ndarray of shape (n_samples,), int64 or None
    sample_weight : ndarray of shape (n_samples,), float64 or None
        Scaled to mean 1 (:func:`scale_weights`).
    raw_sample_weight : ndarray of shape (n_samples,), float64 or None
        As the user passed them (for the probe's ``LogisticRegression``).
    """

    X: InputData
    y: np.ndarray
    classes: np.ndarray
    groups: np.ndarray | None
    codes: np.ndarray | None
    sample_weight: np.ndarray | None
    raw_sample_weight: np.ndarray | None = None

    @property
    def n_classes(self):
        return len(self.classes)

    @property
    def n_groups(self):
        return 1 if self.groups is None else len(self.groups)

    def tensors(self, device):
        """Return ``(y, codes, weights)`` as tensors on ``device``.

        Without groups the codes are zeros (one pooled group).
        """
        y = torch.from_numpy(self.y).to(device)
        codes = self.codes
        if codes is None:
            codes = np.zeros(len(self.y), dtype=np.int64)
        w = None if self.sample_weight is None else torch.tensor(
            self.sample_weight, device=device
        )
        return y, torch.from_numpy(codes).to(device), w


def encode_labels(y, head_classes, head_init):
    """Return ``(classes, y_encoded)``: the head's column of every label.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Checked labels.
    head_classes : array-like or None
        The label of every output column of a pre-trained head.
    head_init : {"pretrained", "probe"}
    """
    if head_classes is not None:
        if head_init == "probe":
            raise ValueError(
                "head_classes names the columns of a pre-trained head, but "
                "head_init='probe' fits new columns (in sorted label "
                "order). Drop head_classes or use head_init='pretrained'."
            )
        classes = np.asarray(head_classes)
        if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
            raise ValueError(
                "head_classes must be a 1-d list of distinct labels, one per "
                f"output column of the head, got {head_classes!r}."
            )
        lookup = {label: j for j, label in enumerate(classes.tolist())}
        unknown = sorted({v for v in y.tolist() if v not in lookup}, key=str)
        if unknown:
            raise ValueError(
                f"y has labels {unknown[:10]} that are not in head_classes "
                f"{classes.tolist()}; every label must name a column of "
                "the pre-trained head."
            )
        y_enc = np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
    else:
        classes, y_enc = np.unique(y, return_inverse=True)
        y_enc = y_enc.astype(np.int64).ravel()
    if len(np.unique(y_enc)) < 2:
        raise ValueError(
            f"y contains only one class ({y[0]!r}); a classifier needs at "
            "least two classes, got 1 class."
        )
    return classes, y_enc


def warn_label_order(classes, head_classes, head_init):
    """Warn that column j of a pre-trained head is taken as the j-th sorted label."""
    k = len(classes)
    is_range = classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(k))
    implicit = head_init == "pretrained" and head_classes is None
    if implicit and not is_range:
        warn_user(
            f"The pre-trained head's output column j is taken to mean the "
            f"j-th sorted label of y: {classes.tolist()[:10]}. If the "
            "head was trained with another order, pass "
            "head_classes=[label of column 0, label of column 1, ...]; to "
            "silence this, pass head_classes in this order.",
            HeadClassesWarning,
        )


def uses_group_importance(est):
    """Whether the fit mixes per-group importances (``importance="neutral"``).

    Not with ``rank=None`` (nothing factorized) nor with
    ``target_modules`` and ``adapter_init="lora"`` (the adapters start from
    peft's LoRA init and the head trains in full: no importance is used).
    """
    lora = (getattr(est, "target_modules", None) is not None
            and getattr(est, "adapter_init", "svd") == "lora")
    return est.rank is not None and est.importance == "neutral" and not lora


def check_target_modules(est, head_name):
    """Resolve ``est.target_modules`` on the user's backbone; no forward pass.

    Returns
    -------
    names : list of str
        Qualified names of the layers that get an adapter (``[]`` for
        ``target_modules=None``: the head alone).

    Raises
    ------
    ValueError
        With ``rank=None`` (an adapter needs a rank), ``solver="lbfgs"``
        (the layers above the lowest adapter run at every step, so there
        are no cached features for a full-batch solver), a name that
        matches nothing or a layer that cannot take an adapter
        (:func:`~sklearn_winfair._adapters.match_target_modules`'s own
        messages), or a match inside the head (it trains in full).
    """
    targets = est.target_modules
    if targets is None:
        return []
    if est.rank is None:
        raise ValueError(
            f"target_modules={targets!r} puts a low-rank adapter on each "
            "matched layer, which needs a rank, but rank=None. Give a rank "
            "(e.g. rank=4), or target_modules=None to fine-tune the head alone."
        )
    if est.solver == "lbfgs":
        raise ValueError(
            f"solver='lbfgs' trains on cached features in full batches, but "
            f"with target_modules={targets!r} the layers above the lowest "
            "adapter run at every step, so there are no features to cache. "
            "Use solver='adam' (what 'auto' picks) or 'sgd'."
        )
    names = match_target_modules(est.backbone, targets)
    inside = [n for n in names
              if not head_name or n == head_name or n.startswith(head_name + ".")]
    if inside:
        raise ValueError(
            f"target_modules={targets!r} matched {inside}, which is the head "
            f"{head_name!r} or inside it; with target_modules the head trains "
            "in full (no adapter). Leave the head's layers out of "
            "target_modules, or choose another head with head=..."
        )
    return names


def group_reasons(est):
    """Return what needs ``sensitive_features`` here (a phrase, or "")."""
    reasons = []
    if uses_group_importance(est):
        reasons.append("importance='neutral'")
    if est.fairness_penalty is not None:
        reasons.append(f"fairness_penalty={est.fairness_penalty!r}")
    return " and ".join(reasons)


def check_groups(est, sensitive_features, y_enc, classes):
    """Validate the groups for ``est``; return ``(groups or None, codes or None)``."""
    reason = group_reasons(est)
    if sensitive_features is None:
        if reason:
            raise ValueError(_MISSING_SENSITIVE.format(reason=reason))
        return None, None
    labels = check_sensitive_features(sensitive_features, len(y_enc))
    groups, codes = encode_groups(labels)
    n_groups = len(groups)
    if reason and n_groups < 2:
        raise ValueError(
            _TOO_FEW_GROUPS.format(n=n_groups, groups=list(groups), reason=reason)
        )
    if reason:
        warn_small_groups(groups, classes, codes, y_enc, reason)
    uses_alpha = uses_group_importance(est)
    if uses_alpha and est.alpha != 0.5 and est.group_weights is not None:
        raise ValueError(
            f"alpha={est.alpha} and group_weights are both set; they say the "
            "same thing two ways. Set group_weights only (alpha=0.5) or "
            "alpha only (group_weights=None)."
        )
    if uses_alpha and n_groups > 2 and est.alpha != 0.5:
        raise ValueError(
            f"alpha={est.alpha} only applies to two groups, but "
            f"sensitive_features has {n_groups}. Leave alpha=0.5 and set "
            "group_weights={group: weight, ...} instead."
        )
    if est.group_weights is not None:
        check_group_weights(est.group_weights, groups)
    return groups, codes


def warn_small_groups(groups, classes, codes, y_enc, reason):
    """One warning naming the groups with too few rows of some class."""
    counts = np.zeros((len(groups), len(classes)), dtype=int)
    np.add.at(counts, (codes, y_enc), 1)
    small = np.flatnonzero(counts.min(axis=1) < MIN_ROWS_PER_CLASS)
    if small.size == 0:
        return
    shown = {
        str(groups[g]): dict(zip(map(str, classes), counts[g].tolist(), strict=True))
        for g in small[:5]
    }
    more = f" and {small.size - 5} more" if small.size > 5 else ""
    warn_user(
        f"{small.size} of {len(groups)} groups in sensitive_features "
        f"have fewer than {MIN_ROWS_PER_CLASS} rows of some class (rows per "
        f"class: {shown}{more}); their Fisher importance and {reason} rest "
        "on too few rows. Merge small groups, or bin a continuous column "
        "(e.g. with pandas.cut) before passing it.",
        SmallGroupWarning,
    )


def group_mix(groups, alpha, group_weights):
    """Weights of the groups in ``Ihat_N``, aligned with ``groups``."""
    if group_weights is not None:
        return check_group_weights(group_weights, groups)
    if len(groups) == 2:
        return np.array([alpha, 1.0 - alpha])
    return check_group_weights(None, groups)


def check_head(backbone, head, head_init, n_classes, *, needs_linear=True):
    """Resolve the head on the user's backbone and check its size; no forward pass.

    Returns
    -------
    head_name : str
    """
    check_not_lazy(backbone)
    name = resolve_head(backbone, head, require_linear=needs_linear)
    module = backbone.get_submodule(name)
    if head_init == "pretrained" and linear_layer_names(module):
        last_name = linear_layer_names(module)[-1]
        last = module.get_submodule(last_name) if last_name else module
        if last.out_features != n_classes:
            hint = ""
            if head is None:
                fits = [n for n, m in backbone.named_modules()
                        if isinstance(m, nn.Linear) and m.out_features == n_classes]
                hint = (
                    f" The head picked by default is {name!r} (the last nn.Linear "
                    f"registered); nn.Linear layers with out_features={n_classes}: "
                    f"{fits[-10:]}. If one of them is the classifier, pass "
                    "head='<name>'."
                )
            raise ValueError(
                f"The head's last layer has out_features={last.out_features} "
                f"but y has {n_classes} classes. Pass head_init='probe' to "
                "fit a new output layer on the frozen features first, or "
                "head_classes=[...] listing the label of every output column."
                + hint
            )
    return name


def check_fit(est, X, y, sensitive_features, sample_weight):
    """Every cheap check of a fit, in order; return ``(FitData, head_name)``.

    Sets ``n_features_in_``, ``feature_names_in_`` and ``input_shape_`` on
    ``est`` (scikit-learn's ``validate_data`` convention); the estimator
    restores its previous state if a later step raises.
    """
    data = check_input(est, X, reset=True)
    n = len(data)
    y = _check_y(y, estimator=est)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} rows but X has {n}; they must match.")
    check_classification_targets(y)
    classes, y_enc = encode_labels(y, est.head_classes, est.head_init)
    weights = raw_weights = None
    if sample_weight is not None:
        weights = _check_sample_weight(
            sample_weight, np.empty((n, 0)), dtype=np.float64,
            ensure_non_negative=True,
        )
        raw_weights, weights = weights, scale_weights(weights)
    groups, codes = check_groups(est, sensitive_features, y_enc, classes)
    if est.fairness_penalty is not None and len(classes) != 2:
        raise ValueError(
            f"fairness_penalty={est.fairness_penalty!r} needs a binary "
            f"target, but y has {len(classes)} classes."
        )
    head_name = check_head(
        est.backbone, est.head, est.head_init, len(classes),
        needs_linear=est.rank is not None or est.head_init == "probe",
    )
    if est.head_init == "pretrained":
        warn_label_order(classes, est.head_classes, est.head_init)
    fd = FitData(data, y_enc, classes, groups, codes, weights, raw_weights)
    return fd, head_name
