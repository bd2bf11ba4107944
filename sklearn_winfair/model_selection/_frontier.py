"""The fairness frontier: ask for a constraint and a tolerance, get a model.

Which library does what here: scikit-learn clones the estimator, validates
parameters, splits the rows (:func:`~sklearn.model_selection.train_test_split`,
:func:`~sklearn.model_selection.check_cv`) and routes metadata; the
:class:`~sklearn_winfair.FairLowRankFineTuner` candidates share one feature
store (``memory=``), so the frozen backbone runs once per distinct row for all
of them and the refit; numpy sweeps the thresholds and bootstraps the
held-out metrics (:mod:`._sweep`); pandas holds the front; matplotlib draws
it; torch carries the exported module.
"""

# Authors: sklearn-winfair developers
# License: BSD 3 clause

import copy
import numbers
import os
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.model_selection import check_cv, train_test_split
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
)
from torch import nn

from .._validation import check_sensitive_features, encode_groups
from ..preprocessing import reweighing_weights
from ._sweep import (
    CONSTRAINTS,
    bootstrap_metrics,
    confusion,
    metrics_from_confusion,
    pareto_mask,
    sweep_class_offsets,
    sweep_thresholds,
)

__all__ = ["FairFrontierCV"]

_MESSAGE_BINARY_ONLY = (
    "constraint={constraint!r} is defined for a binary target, but y has "
    "{n_classes} classes. With more than two classes use "
    "constraint='demographic_parity' (the largest one-vs-rest gap)."
)
_MESSAGE_PENALTY_MULTICLASS = (
    "penalty_strengths={strengths!r} asks for the estimator's fairness_penalty, "
    "which needs a binary target, but y has {n_classes} classes. Use "
    "penalty_strengths=[0.0] (post-processing by class offsets still applies)."
)
_MESSAGE_NO_GROUPS = (
    "sensitive_features is required: FairFrontierCV measures the gap of "
    "constraint={constraint!r} between groups. Got None."
)
_MESSAGE_ONE_GROUP = (
    "sensitive_features has {n} distinct group ({groups}); a fairness gap needs "
    "at least two groups."
)
_MESSAGE_PREDICT_GROUPS = (
    "The chosen point uses per-group thresholds, so predict needs "
    "sensitive_features (one group per row of X). Pass it, or fit with "
    "groups_at_predict='inferred' to infer the group from the features."
)
_MESSAGE_UNKNOWN_GROUP = (
    "sensitive_features has groups {unknown} that were not seen in fit; the "
    "fitted groups are {groups}."
)
_MESSAGE_REFIT_CV = (
    "refit=False keeps the candidate fitted on the training part of one "
    "validation split, so cv must be a float or a single (train, test) split; "
    "got cv={cv!r}. Use refit=True with cross-validation."
)
_MESSAGE_OVERLAP = (
    "cv={cv!r} gives test folds that share rows; the frontier pools out-of-fold "
    "scores, so each row may be held out once at most (KFold-like splitters)."
)
_MESSAGE_NONE_FEASIBLE = (
    "No point of the front has a held-out {constraint} gap within "
    "tolerance={tolerance} (the smallest is {smallest:.4f}); taking the point "
    "with the smallest gap. Raise the tolerance, add penalty strengths, or "
    "turn thresholds on."
)

#: Post-processing kinds, simplest first (ties in error go to the simpler).
_POST = ("none", "shared", "per_group")
#: The estimator's penalty that matches each constraint.
_PENALTY = {
    "demographic_parity": "demographic_parity",
    "equalized_odds": "equalized_odds",
    "equalized_odds_max": "equalized_odds",
    "equal_opportunity": "equalized_odds",
}
#: Names of the importances in the paper's tables.
_FAMILY = {None: "TL", "neutral": "OURS", "fisher": "FWSVD", "uniform": "f+SVD"}


def _take(X, rows):
    """Rows ``rows`` of X: an array, DataFrame, tensor or mapping of them."""
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(rows, device=X.device)]
    if isinstance(X, Mapping) and not hasattr(X, "shape"):
        return {k: _take(v, rows) for k, v in X.items()}
    return _safe_indexing(X, rows)


def _n_samples(X):
    if isinstance(X, Mapping) and not hasattr(X, "shape"):
        return len(next(iter(X.values())))
    return len(X)


def _all_float32(module):
    return all(p.dtype == torch.float32 for p in module.parameters()
               if p.is_floating_point())


class _GroupShift(nn.Module):
    """The head, plus a class offset per group (the group set per call)."""

    def __init__(self, head, offsets):
        super().__init__()
        self.head = head
        self.register_buffer("offsets", offsets)
        self.group = None

    def forward(self, z):
        if self.group is None:
            raise ValueError("call the wrapping module with (x, group).")
        out = self.head(z)
        return out + self.offsets[self.group.to(self.offsets.device)].to(out.dtype)


class GroupOffsetModule(nn.Module):
    """An exported model whose class offsets depend on the group of each row.

    ``forward(x, group)``: ``x`` is the backbone's input (a mapping is passed
    as keyword arguments), ``group`` an integer tensor of shape ``(batch,)``
    holding each row's index in the frontier's ``groups_``. The output has
    the backbone's format, with the per-group offsets added to the logits.
    """

    def __init__(self, module, head_name):
        super().__init__()
        self.module = module
        self.head_name = head_name

    def forward(self, x, group):
        shift = self.module.get_submodule(self.head_name)
        shift.group = torch.as_tensor(group, dtype=torch.long)
        try:
            return self.module(**x) if isinstance(x, Mapping) else self.module(x)
        finally:
            shift.group = None


class _InferredGroupShift(nn.Module):
    """Two heads on one trunk: the class offsets of the group the second infers."""

    def __init__(self, head, group_head, offsets):
        super().__init__()
        self.head = head
        self.group_head = group_head
        self.register_buffer("offsets", offsets)

    def forward(self, z):
        out = self.head(z)
        group = self.group_head(z).argmax(dim=1)
        return out + self.offsets[group].to(out.dtype)


def _set_submodule(model, name, new):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model


def _fold_bias(head, offset):
    """Add ``offset`` to the bias of the head's last ``nn.Linear`` (in place)."""
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    last = layers[-1]
    shift = torch.as_tensor(offset, dtype=last.weight.dtype, device=last.weight.device)
    with torch.no_grad():
        if last.bias is None:
            last.bias = nn.Parameter(shift.clone(), requires_grad=False)
        else:
            last.bias.add_(shift)
    return head


class FairFrontierCV(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Most accurate fine-tuned model whose held-out fairness gap is within tolerance.

    Candidate heads are fitted on one frozen backbone (penalty strengths x
    importances, and reweighing if asked), each sharing one feature store so
    the backbone runs once per distinct row; their held-out scores are
    post-processed by per-group thresholds (binary) or per-group class
    offsets (multiclass demographic parity), swept by cumulative counts as
    OxonFair does; every candidate and threshold point goes on one front of
    held-out error against held-out gap, with bootstrap intervals; the most
    accurate point whose gap is within ``tolerance`` is chosen and refitted on
    all the training rows. Predictions are deterministic.

    Read more in the :ref:`User Guide <fairness_frontier>`.

    .. versionadded:: 0.2

    Parameters
    ----------
    estimator : FairLowRankFineTuner
        The fine-tuner to clone for every candidate. Its ``memory``, if set,
        is the shared feature store; otherwise the frontier owns a temporary
        folder, removed when the frontier is garbage-collected.
    constraint : {"demographic_parity", "equalized_odds", "equalized_odds_max", \
            "equal_opportunity"}, default="demographic_parity"
        The gap to keep within ``tolerance``: selection rates; the *sum* of
        the TPR and FPR gaps (``equalized_odds_gap``, the paper's
        ``Delta_EO``); their *max* (fairlearn's
        ``equalized_odds_difference``); the TPR gap. Only
        ``"demographic_parity"`` applies to more than two classes (the
        largest one-vs-rest gap).
    tolerance : float >= 0, default=0.05
        Largest held-out gap accepted, in the gap's units (``[0, 1]``).
    penalty_strengths : list of float or None, default=None
        Strengths of the estimator's ``fairness_penalty`` (the one matching
        the constraint); 0 is plain fine-tuning. ``None``:
        ``[0, 0.5, 2, 8]`` for a binary target, ``[0]`` otherwise.
    importances : list of {"neutral", "fisher", "uniform", None} or None, \
            default=None
        The estimator's ``importance`` for each candidate family; ``None``
        in the list is plain fine-tuning (``rank=None``, the paper's TL).
        ``None``: the estimator's own setting only.
    reweighing : bool, default=False
        Add, for each importance, a candidate trained with Kamiran-Calders
        :func:`~sklearn_winfair.preprocessing.reweighing_weights` (times any
        ``sample_weight``) and no penalty.
    thresholds : {"per_group", "shared", "none"}, default="per_group"
        Post-processing swept for each candidate: ``"per_group"`` sweeps
        one threshold (binary) or one class offset vector (multiclass) per
        group, and also one shared threshold; ``"shared"`` only the shared
        threshold (no group needed at predict); ``"none"`` uses the
        candidates as they are.
    groups_at_predict : {"given", "inferred"}, default="given"
        Where per-group thresholds find the group: ``sensitive_features``
        passed to ``predict``, or a second head (a linear probe on the frozen
        features, fitted by the estimator with ``head_init="probe"``) that
        infers it; the thresholds are then swept on the inferred groups and
        the gap measured on the true ones, as OxonFair's two-head trick.
    cv : float, int, cross-validation generator or iterable, default=0.25
        A float in ``(0, 1)``: the share of rows held out once (stratified
        by label x group). An int or a splitter: cross-validation; every
        candidate is fitted on each fold and its out-of-fold scores are
        pooled (stratified by label x group for an int).
    n_bootstrap : int >= 0, default=200
        Bootstrap resamples of the held-out rows for the intervals of error
        and gap (0: no intervals).
    threshold_steps : int >= 1, default=25
        Cut-offs per group in the coarse threshold grid (refined once around
        its front). Multiclass: number of points on the offsets' path.
    refit : bool, default=True
        Refit the chosen candidate on all rows. ``False`` (one split only:
        a float ``cv`` or a single ``(train, test)`` pair) keeps the one
        fitted on the training part.
    random_state : int, RandomState instance or None, default=None
        Seeds the split and the bootstrap; candidates use the estimator's
        own ``random_state``.

    Attributes
    ----------
    front_ : pandas.DataFrame
        One row per point: ``candidate``, ``family``, ``importance``,
        ``penalty_strength``, ``reweighing``, ``post`` ("none", "shared",
        "per_group"), ``offsets`` (array of shape ``(n_groups, n_classes)``
        added to the logits), ``error`` (weighted-F1 error in percent),
        ``gap``, ``error_low``/``error_high``/``gap_low``/``gap_high``
        (95 % bootstrap intervals), ``feasible``, ``pareto``, ``chosen``.
    best_index_ : int
        Row of ``front_`` that was chosen.
    best_params_ : dict
        Estimator parameters of the chosen candidate.
    best_estimator_ : FairLowRankFineTuner
        The chosen candidate, refitted on all rows when ``refit=True``.
    offsets_ : ndarray of shape (n_groups, n_classes)
        Per-group offsets added to the logits (binary: ``[0, -t_g]`` for a
        threshold ``t_g`` on the logit difference).
    group_dependent_ : bool
        Whether ``offsets_`` differ between groups.
    group_estimator_ : FairLowRankFineTuner or None
        The second head (``groups_at_predict="inferred"``).
    group_accuracy_ : float or None
        Its held-out accuracy on the group.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    groups_ : ndarray of shape (n_groups,)
        Sorted groups.

    See Also
    --------
    sklearn_winfair.model_selection.fairest_within_tolerance : Refit rule for a search.
    fairlearn.postprocessing.ThresholdOptimizer : Randomized thresholds.

    Notes
    -----
    Held-out error is ``100 - weighted F1`` (``paper_metrics``'s ``err``),
    computed like every gap from weighted confusion matrices. If no point is
    within tolerance, a :class:`UserWarning` is emitted and the point with
    the smallest gap is taken. The thresholds are chosen on the held-out
    scores of models fitted without those rows, then applied to the refit.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> from sklearn_winfair.model_selection import FairFrontierCV
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> backbone = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(400, 4)).astype("float32")
    >>> s = rng.choice(["a", "b"], size=400)
    >>> y = (X[:, 0] + (s == "a") > 0.5).astype(int)
    >>> tuner = FairLowRankFineTuner(backbone, rank=2, max_epochs=3,
    ...                              random_state=0)
    >>> frontier = FairFrontierCV(tuner, tolerance=0.05,
    ...                           penalty_strengths=[0.0], n_bootstrap=0,
    ...                           random_state=0)
    >>> frontier = frontier.fit(X, y, sensitive_features=s)
    >>> bool(frontier.front_.loc[frontier.best_index_, "gap"] <= 0.05)
    True
    >>> frontier.predict(X[:3], sensitive_features=s[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "decision_function", "export_module"])],
        "constraint": [StrOptions(set(CONSTRAINTS))],
        "tolerance": [Interval(numbers.Real, 0, None, closed="left")],
        "penalty_strengths": ["array-like", None],
        "importances": [list, tuple, None],
        "reweighing": ["boolean"],
        "thresholds": [StrOptions({"per_group", "shared", "none"})],
        "groups_at_predict": [StrOptions({"given", "inferred"})],
        "cv": [Interval(numbers.Real, 0, 1, closed="neither"), "cv_object"],
        "n_bootstrap": [Interval(numbers.Integral, 0, None, closed="left")],
        "threshold_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "refit": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        constraint="demographic_parity",
        tolerance=0.05,
        penalty_strengths=None,
        importances=None,
        reweighing=False,
        thresholds="per_group",
        groups_at_predict="given",
        cv=0.25,
        n_bootstrap=200,
        threshold_steps=25,
        refit=True,
        random_state=None,
    ):
        self.estimator = estimator
        self.constraint = constraint
        self.tolerance = tolerance
        self.penalty_strengths = penalty_strengths
        self.importances = importances
        self.reweighing = reweighing
        self.thresholds = thresholds
        self.groups_at_predict = groups_at_predict
        self.cv = cv
        self.n_bootstrap = n_bootstrap
        self.threshold_steps = threshold_steps
        self.refit = refit
        self.random_state = random_state

    # ------------------------------------------------------------ candidates
    def _candidates(self, n_classes):
        """List of (description dict, estimator params) of every candidate."""
        if self.penalty_strengths is None:
            strengths = [0.0, 0.5, 2.0, 8.0] if n_classes == 2 else [0.0]
        else:
            strengths = [float(v) for v in np.ravel(self.penalty_strengths)]
            if any(v < 0 for v in strengths) or not strengths:
                raise ValueError(
                    "penalty_strengths must be a non-empty list of non-negative "
                    f"floats, got {self.penalty_strengths!r}."
                )
            if n_classes > 2 and any(v > 0 for v in strengths):
                raise ValueError(_MESSAGE_PENALTY_MULTICLASS.format(
                    strengths=self.penalty_strengths, n_classes=n_classes))
        if self.importances is None:
            importances = ["keep"]
        else:
            importances = list(self.importances)
            bad = [v for v in importances if v not in _FAMILY]
            if bad or not importances:
                raise ValueError(
                    "importances must list values among ['neutral', 'fisher', "
                    f"'uniform', None], got {self.importances!r}."
                )
        own = self.estimator.get_params()
        out = []
        for imp in importances:
            if imp == "keep":  # the estimator as it is
                base = {}
                label = _FAMILY.get(
                    None if own.get("rank") is None else own.get("importance"),
                    "estimator")
            elif imp is None:
                base, label = {"rank": None}, "TL"
                if "target_modules" in own:  # TL: the head alone, no adapters
                    base["target_modules"] = None
            else:
                base, label = {"importance": imp}, _FAMILY[imp]
                if own.get("rank") is None:  # an importance needs a factorization
                    base["rank"] = 4
            kinds = [(v, False) for v in strengths]
            if self.reweighing:
                kinds.append((0.0, True))
            for strength, rw in kinds:
                params = dict(base)
                params["fairness_penalty"] = (
                    _PENALTY[self.constraint] if strength > 0 else None)
                params["penalty_strength"] = strength if strength > 0 else 1.0
                family = label + (" + reweighing" if rw else
                                  " + penalty" if strength > 0 else "")
                out.append(({"family": family, "importance": label,
                             "penalty_strength": strength, "reweighing": rw},
                            params))
        return out

    def _fit_one(self, params, reweigh, X, y, groups, weight, rows, memory,
                 base=None):
        """Clone ``base`` (the estimator), set ``params`` and the store, fit."""
        base = self.estimator if base is None else base
        est = clone(base).set_params(memory=memory, **params)
        w = None if weight is None else weight[rows]
        if reweigh:
            rw = reweighing_weights(y[rows], sensitive_features=groups[rows])
            w = rw if w is None else w * rw
        kwargs = {"sensitive_features": groups[rows]}
        if w is not None:
            kwargs["sample_weight"] = w
        return est.fit(_take(X, rows), y[rows], **kwargs)

    def _feature_estimator(self, est):
        """Return an estimator to clone for fits on the frozen features, or None.

        A candidate whose head sees the frozen trunk's output (features
        cached, no adapters, a float32 backbone) is fitted exactly as on X
        when its backbone is the pre-trained head alone and X is the
        trunk's output: the same head, the same features, the same solver.
        That skips hashing and reading every row per candidate.
        """
        own = self.estimator.get_params()
        backbone = own.get("backbone")
        if (not own.get("cache_features", False) or own.get("target_modules")
                or not isinstance(backbone, nn.Module)
                or not _all_float32(backbone)
                or not hasattr(est, "head_name_")
                or getattr(est, "adapted_layers_", None)):
            return None
        head = copy.deepcopy(backbone.get_submodule(est.head_name_))
        only = nn.Sequential(OrderedDict(head=head)).eval()
        # set on a copy whose backbone is swapped first: clones of it then
        # copy the head, not the whole backbone
        base = copy.copy(self.estimator)
        base.backbone = None
        base = clone(base).set_params(backbone=only, head="head", output=None)
        return base

    def _fit_group_head(self, X, codes, rows, memory):
        est = clone(self.estimator).set_params(
            memory=memory, head_init="probe", rank=None, fairness_penalty=None,
            head_classes=None)
        if "target_modules" in est.get_params():  # a probe on the frozen trunk
            est.set_params(target_modules=None)
        return est.fit(_take(X, rows), codes[rows])

    @staticmethod
    def _logits(est, X):
        """Full logits from the public ``decision_function`` (binary: [0, d])."""
        d = np.asarray(est.decision_function(X), dtype=float)
        if d.ndim == 1:
            return np.stack([np.zeros_like(d), d], axis=1)
        return d

    def _splits(self, y_enc, codes, n):
        strata = y_enc * (codes.max() + 1) + codes
        if isinstance(self.cv, numbers.Real) and not isinstance(self.cv, bool) \
                and 0 < self.cv < 1:
            try:
                train, test = train_test_split(
                    np.arange(n), test_size=self.cv, stratify=strata,
                    random_state=self.random_state)
            except ValueError:  # a (label, group) cell too small: label only
                train, test = train_test_split(
                    np.arange(n), test_size=self.cv, stratify=y_enc,
                    random_state=self.random_state)
            return [(np.sort(train), np.sort(test))]
        cv = check_cv(self.cv, strata, classifier=True)
        return list(cv.split(np.zeros((n, 1)), strata))

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, sensitive_features=None, sample_weight=None):
        """Fit the candidates, sweep the front, choose and refit.

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the estimator's backbone.
        y : array-like of shape (n_samples,)
            Class labels.
        sensitive_features : array-like, Series or DataFrame
            Group of each row (several columns are merged). Required.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights for every candidate's fit and for the held-out metrics.

        Returns
        -------
        self : FairFrontierCV
            The fitted frontier.
        """
        n = _n_samples(X)
        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(f"y has {len(y)} rows but X has {n}; they must match.")
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        y_enc = y_enc.ravel().astype(np.int64)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError("y has one class; a classifier needs two or more.")
        if n_classes > 2 and CONSTRAINTS[self.constraint]:
            raise ValueError(_MESSAGE_BINARY_ONLY.format(
                constraint=self.constraint, n_classes=n_classes))
        if sensitive_features is None:
            raise ValueError(_MESSAGE_NO_GROUPS.format(constraint=self.constraint))
        labels = check_sensitive_features(sensitive_features, n)
        self.groups_, codes = encode_groups(labels)
        codes = np.asarray(codes, dtype=np.int64)
        n_groups = len(self.groups_)
        if n_groups < 2:
            raise ValueError(_MESSAGE_ONE_GROUP.format(
                n=n_groups, groups=list(self.groups_)))
        weight = None
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, np.empty((n, 0)),
                                          dtype=np.float64, ensure_non_negative=True)
        candidates = self._candidates(n_classes)
        splits = self._splits(y_enc, codes, n)
        if not self.refit and len(splits) != 1:
            raise ValueError(_MESSAGE_REFIT_CV.format(cv=self.cv))
        self._memory = self._shared_memory()

        held = np.concatenate([test for _, test in splits])
        if len(np.unique(held)) != len(held):
            raise ValueError(_MESSAGE_OVERLAP.format(cv=self.cv))
        oof = np.zeros((len(candidates), n, n_classes))
        assigned = codes.copy()
        fitted = []
        # the first candidate is fitted on X; its trunk's output on every row
        # (one backbone pass, through the store) then feeds all the others
        features = on_features = None
        for train, test in splits:
            X_test = _take(X, test)
            for c, (info, params) in enumerate(candidates):
                if features is None:
                    est = self._fit_one(params, info["reweighing"], X, y, labels,
                                        weight, train, self._memory)
                    oof[c, test] = self._logits(est, X_test)
                    on_features = self._feature_estimator(est)
                    if on_features is not None:
                        features = est._head_features(X).cpu()
                else:
                    est = self._fit_one(params, info["reweighing"], features,
                                        y, labels, weight, train, None,
                                        base=on_features)
                    oof[c, test] = self._logits(est, features[test])
                fitted.append(est)
            if self.groups_at_predict == "inferred":
                head = self._fit_group_head(X, codes, train, self._memory)
                assigned[test] = np.asarray(head.predict(X_test), dtype=np.int64)
        self.group_accuracy_ = None
        if self.groups_at_predict == "inferred":
            self.group_accuracy_ = float(np.mean(assigned[held] == codes[held]))

        y_h, g_h, a_h = y_enc[held], codes[held], assigned[held]
        w_h = None if weight is None else weight[held]
        rows = []
        for c, (info, _) in enumerate(candidates):
            rows += self._sweep(oof[c, held], y_h, g_h, a_h, w_h, n_groups,
                                n_classes, info, c)
        front = pd.DataFrame(rows)
        front["feasible"] = front["gap"] <= self.tolerance
        front["pareto"] = pareto_mask(front["error"], front["gap"])
        self._add_intervals(front, oof[:, held], y_h, g_h, a_h, w_h, n_groups,
                            n_classes)
        self.best_index_ = self._select(front)
        front["chosen"] = front.index == self.best_index_
        self.front_ = front
        best = front.loc[self.best_index_]
        c = int(best["candidate"])
        self.best_params_ = dict(candidates[c][1])
        self.offsets_ = np.asarray(best["offsets"], dtype=float)
        self.group_dependent_ = bool(np.ptp(self.offsets_, axis=0).max() > 0)
        if self.refit:
            self.best_estimator_ = self._fit_one(
                candidates[c][1], candidates[c][0]["reweighing"], X, y, labels,
                weight, np.arange(n), self._memory)
        elif c == 0 or features is None:
            self.best_estimator_ = fitted[c]
        else:  # fitted on the features: the same fit on X, its rows stored
            self.best_estimator_ = self._fit_one(
                candidates[c][1], candidates[c][0]["reweighing"], X, y, labels,
                weight, splits[0][0], self._memory)
        self.group_estimator_ = None
        if self.groups_at_predict == "inferred" and self.group_dependent_:
            self.group_estimator_ = self._fit_group_head(
                X, codes, np.arange(n) if self.refit else splits[0][0], self._memory)
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(self.best_estimator_, name):
                setattr(self, name, getattr(self.best_estimator_, name))
        return self

    def _shared_memory(self):
        """Return the feature store's folder: the estimator's, or one we own."""
        memory = self.estimator.get_params().get("memory")
        if memory is not None:
            self._owned_memory = None
            return memory
        path = getattr(self, "_owned_memory", None)
        if path is None or not os.path.isdir(path):  # a refit reuses its own
            path = tempfile.mkdtemp(prefix="winfair_frontier_")
            weakref.finalize(self, shutil.rmtree, path, True)
            self._owned_memory = path
        return path

    def _sweep(self, logits, y, groups, assigned, weight, n_groups, n_classes,
               info, c):
        """Front rows of one candidate: as it is, and its post-processed points."""
        k = n_classes
        pred = logits.argmax(1)
        err, gap = metrics_from_confusion(
            confusion(y, pred, groups, n_groups, k, weight), self.constraint)
        rows = [dict(candidate=c, **info, post="none",
                     offsets=np.zeros((n_groups, k)), error=float(err),
                     gap=float(gap))]
        if self.thresholds == "none":
            return rows
        shared = np.zeros(len(y), dtype=np.int64)
        if k == 2:
            score = logits[:, 1] - logits[:, 0]
            sweeps = [("shared", shared, 1, None)]
            if self.thresholds == "per_group":
                sweeps.append(("per_group", assigned, n_groups, self.threshold_steps))
            for post, assign, n_assign, steps in sweeps:
                t, e, g = sweep_thresholds(
                    score, y, groups, assign, n_groups, n_assign,
                    constraint=self.constraint, weight=weight, steps=steps)
                keep = pareto_mask(e, g)
                for ti, ei, gi in zip(t[keep], e[keep], g[keep], strict=True):
                    per = np.broadcast_to(ti, (n_groups,)) if n_assign == 1 else ti
                    off = np.stack([np.zeros(n_groups), -per], axis=1)
                    rows.append(dict(candidate=c, **info, post=post, offsets=off,
                                     error=float(ei), gap=float(gi)))
            return rows
        if self.thresholds == "per_group":
            o, e, g = sweep_class_offsets(
                logits, y, groups, assigned, n_groups, n_groups, weight=weight,
                n_points=self.threshold_steps)
            keep = pareto_mask(e, g)
            for oi, ei, gi in zip(o[keep], e[keep], g[keep], strict=True):
                rows.append(dict(candidate=c, **info, post="per_group", offsets=oi,
                                 error=float(ei), gap=float(gi)))
        return rows

    def _add_intervals(self, front, logits, y, groups, assigned, weight, n_groups,
                       n_classes):
        cols = ["error_low", "error_high", "gap_low", "gap_high"]
        if self.n_bootstrap == 0:
            for col in cols:
                front[col] = np.nan
            return
        preds = []
        for c, off in zip(front["candidate"], front["offsets"], strict=True):
            preds.append((logits[c] + off[assigned]).argmax(1))
        seed = check_random_state(self.random_state).randint(2**31 - 1)
        bounds = bootstrap_metrics(y, preds, groups, n_groups, n_classes, weight,
                                   self.constraint, self.n_bootstrap, seed)
        for col, values in zip(cols, bounds, strict=True):
            front[col] = values

    def _select(self, front):
        """Most accurate feasible point; ties: simpler post-processing, smaller gap."""
        post_rank = front["post"].map(_POST.index).to_numpy()
        feasible = front["feasible"].to_numpy()
        if feasible.any():
            keys = (np.arange(len(front)), front["gap"].to_numpy(), post_rank,
                    front["error"].to_numpy())
            order = np.lexsort(keys)
            return int(order[feasible[order]][0])
        warnings.warn(_MESSAGE_NONE_FEASIBLE.format(
            constraint=self.constraint, tolerance=self.tolerance,
            smallest=front["gap"].min()), UserWarning, stacklevel=3)
        keys = (np.arange(len(front)), post_rank, front["error"].to_numpy(),
                front["gap"].to_numpy())
        return int(np.lexsort(keys)[0])

    # -------------------------------------------------------------- predict
    def _group_codes(self, X, sensitive_features, n):
        if not self.group_dependent_:
            return np.zeros(n, dtype=np.int64)
        if self.group_estimator_ is not None:
            return np.asarray(self.group_estimator_.predict(X), dtype=np.int64)
        if sensitive_features is None:
            raise ValueError(_MESSAGE_PREDICT_GROUPS)
        labels = check_sensitive_features(sensitive_features, n)
        codes = np.searchsorted(self.groups_, labels)
        codes = np.minimum(codes, len(self.groups_) - 1)
        unknown = np.unique(labels[self.groups_[codes] != labels])
        if unknown.size:
            raise ValueError(_MESSAGE_UNKNOWN_GROUP.format(
                unknown=unknown.tolist()[:10], groups=self.groups_.tolist()))
        return codes

    def decision_function(self, X, sensitive_features=None):
        """Logits of the chosen model plus the chosen per-group offsets.

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone.
        sensitive_features : array-like of shape (n_samples,), default=None
            Group of each row; needed only when the chosen thresholds depend
            on the group and ``groups_at_predict="given"`` (ignored otherwise).

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes the shifted logit difference (positive predicts
            ``classes_[1]``), else the shifted logits.
        """
        check_is_fitted(self)
        logits = self._logits(self.best_estimator_, X)
        codes = self._group_codes(X, sensitive_features, len(logits))
        shifted = logits + self.offsets_[codes]
        if shifted.shape[1] == 2:
            return shifted[:, 1] - shifted[:, 0]
        return shifted

    def predict_proba(self, X, sensitive_features=None):
        """Softmax of :meth:`decision_function`'s logits (what the export outputs).

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone.
        sensitive_features : array-like of shape (n_samples,), default=None
            As in :meth:`decision_function`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; the argmax is :meth:`predict`.
        """
        scores = self.decision_function(X, sensitive_features=sensitive_features)
        if scores.ndim == 1:
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X, sensitive_features=None):
        """Deterministic labels of the chosen point.

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone.
        sensitive_features : array-like of shape (n_samples,), default=None
            As in :meth:`decision_function`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        scores = self.decision_function(X, sensitive_features=sensitive_features)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)
        return self.classes_[index]

    def score(self, X, y, sample_weight=None, sensitive_features=None):
        """Accuracy of :meth:`predict` (with the groups when they are needed).

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.
        sensitive_features : array-like of shape (n_samples,), default=None
            As in :meth:`decision_function`; a search routes it here with
            ``set_score_request(sensitive_features=True)``.

        Returns
        -------
        score : float
            Mean accuracy.
        """
        from sklearn.metrics import accuracy_score

        pred = self.predict(X, sensitive_features=sensitive_features)
        return float(accuracy_score(y, pred, sample_weight=sample_weight))

    def export_module(self):
        """Return the chosen model as one torch module.

        Returns
        -------
        module : torch.nn.Module
            When the offsets do not depend on the group: the backbone's
            architecture (from ``best_estimator_.export_module()``) with the
            offsets folded into the bias of the head's last ``nn.Linear``.
            With inferred groups: the same trunk whose head is replaced by two
            heads (the task head and the group head) that add the inferred
            group's offsets; called as ``module(x)``. With given groups: a
            small wrapper (``GroupOffsetModule``) called as
            ``module(x, group)``, ``group`` holding each row's index in
            ``groups_``.
        """
        check_is_fitted(self)
        module = self.best_estimator_.export_module()
        name = self.best_estimator_.head_name_
        head = module.get_submodule(name)
        offsets = torch.as_tensor(self.offsets_, dtype=torch.float32)
        if not self.group_dependent_:
            _fold_bias(head, offsets[0])
            return module
        if self.group_estimator_ is not None:
            if getattr(self.best_estimator_, "adapted_layers_", None):
                raise ValueError(
                    "The chosen model has adapters inside its trunk "
                    f"({self.best_estimator_.adapted_layers_}), so the group "
                    "head, fitted on the frozen trunk's features, cannot share "
                    "its trunk in one module. Use predict(X), or "
                    "groups_at_predict='given'."
                )
            group_head = self.group_estimator_.export_module().get_submodule(
                self.group_estimator_.head_name_)
            new = _InferredGroupShift(head, group_head, offsets)
            return _set_submodule(module, name, new).eval()
        module = _set_submodule(module, name, _GroupShift(head, offsets))
        return GroupOffsetModule(module, name).eval()

    # ----------------------------------------------------------------- plot
    def plot_front(self, ax=None):
        """Draw held-out error against gap: every point, the front, the choice.

        Parameters
        ----------
        ax : matplotlib.axes.Axes or None, default=None
            Where to draw; ``None`` makes a new figure.

        Returns
        -------
        ax : matplotlib.axes.Axes
        """
        check_is_fitted(self)
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        from matplotlib.lines import Line2D

        front = self.front_
        markers = {"none": "o", "shared": "s", "per_group": "^"}
        sizes = {"none": 60, "shared": 10, "per_group": 14}
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        handles = []
        for i, (family, part) in enumerate(front.groupby("family", sort=False)):
            color = colors[i % len(colors)]
            for post, sub in part.groupby("post", sort=False):
                ax.scatter(sub["gap"], sub["error"], s=sizes[post],
                           marker=markers[post], color=color,
                           alpha=0.9 if post == "none" else 0.35,
                           edgecolors="black" if post == "none" else "none",
                           linewidths=0.5)
            handles.append(Line2D([], [], color=color, marker="o", linestyle="",
                                  label=family))
        for post in front["post"].unique():
            handles.append(Line2D([], [], color="grey", marker=markers[post],
                                  linestyle="", label={
                                      "none": "candidate as fitted",
                                      "shared": "one shared threshold",
                                      "per_group": "thresholds per group",
                                  }[post]))
        pareto = front[front["pareto"]].sort_values("gap")
        (line,) = ax.step(pareto["gap"], pareto["error"], where="post",
                          color="black", linewidth=1.2, label="Pareto front")
        best = front.loc[self.best_index_]
        if not np.isnan(best["gap_low"]):
            ax.errorbar(best["gap"], best["error"],
                        xerr=[[best["gap"] - best["gap_low"]],
                              [best["gap_high"] - best["gap"]]],
                        yerr=[[best["error"] - best["error_low"]],
                              [best["error_high"] - best["error"]]],
                        color="red", capsize=3, linewidth=1)
        ring = ax.scatter([best["gap"]], [best["error"]], s=160, facecolors="none",
                          edgecolors="red", linewidths=2, label="chosen", zorder=5)
        tol = ax.axvline(self.tolerance, color="grey", linestyle="--",
                         label=f"tolerance {self.tolerance:g}")
        ax.set_xlabel(f"held-out {self.constraint.replace('_', ' ')} gap")
        ax.set_ylabel("held-out error (100 - weighted F1, %)")
        ax.legend(handles=[*handles, line, ring, tol], fontsize="x-small",
                  loc="upper right")
        return ax

    # --------------------------------------------------------------- pickle
    def __setstate__(self, state):
        super().__setstate__(state)
        owned = state.get("_owned_memory")
        if owned is not None:
            # a copy owns a store of its own (the original's may be removed)
            path = tempfile.mkdtemp(prefix="winfair_frontier_")
            weakref.finalize(self, shutil.rmtree, path, True)
            self._owned_memory = self._memory = path
            for name in ("best_estimator_", "group_estimator_"):
                est = getattr(self, name, None)
                if est is not None:
                    est.set_params(memory=path)
