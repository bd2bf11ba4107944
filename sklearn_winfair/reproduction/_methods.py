"""Registry of the compared methods: name -> fit on a task, predict its test part.

Every method gets a :class:`Context` (the task, the frozen pre-trained
backbone, the seed and the training settings) and returns a
:class:`FitResult` with its test predictions, its number of trainable
parameters and its fit time. Frozen features are computed once per context
and shared by the fairlearn peers; fitted estimators are kept in
``Context.fitted`` so that post-processing (ThresholdOptimizer) reuses the TL
and OURS models instead of refitting them.
"""

import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from .. import FairLowRankFineTuner
from ._data import Task
from ._pretrain import (
    LINEAR_HEAD,
    head_inputs,
    n_params,
    predict_torch,
    train_torch,
)

__all__ = [
    "Context",
    "FitResult",
    "Method",
    "PENALTY_STRENGTHS",
    "IMPORTANCES",
    "main_methods",
    "tuner_method",
    "select_methods",
]

#: Intensities of the fairness regularizers (paper Sec. 4.3).
PENALTY_STRENGTHS = (0.1, 0.5, 0.9)
#: Importance of each low-rank method, as FairLowRankFineTuner spells it.
IMPORTANCES = {"f+SVD": "uniform", "FWSVD": "fisher", "OURS": "neutral"}
#: Hidden width of the adversarial peer's predictor. With a purely logistic
#: predictor (``predictor_model=[]``) it collapsed to a constant prediction in
#: our trials, so it gets one small hidden layer.
_ADV_HIDDEN = 16
_PENALTIES = {"DP": "demographic_parity", "EO": "equalized_odds"}


@dataclass
class Context:
    """What a method needs to run on one task and seed.

    Attributes
    ----------
    task : Task
        The data.
    backbone : torch.nn.Module
        The pre-trained model (never modified).
    seed : int
        Seed of the run (also the estimators' ``random_state``).
    epochs : int
        Fine-tuning epochs.
    batch_size : int
        Mini-batch size of every torch loop.
    lr : float
        Learning rate of head fine-tuning (whole-model retraining uses
        ``lr / 10``).
    expgrad_max_iter : int
        ``max_iter`` of fairlearn's ExponentiatedGradient (its default, 50,
        unless a smoke test lowers it).
    fitted : dict
        Fitted estimators by method name (filled while running).
    """

    task: Task
    backbone: nn.Module
    seed: int
    epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-2
    expgrad_max_iter: int = 50
    fitted: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict, repr=False)

    def features(self, head_name, part):
        """Frozen input of ``head_name`` on ``part`` ("train", "test", ...)."""
        key = (head_name, part)
        if key not in self._features:
            X = getattr(self.task, part).X
            self._features[key] = head_inputs(self.backbone, head_name, X)
        return self._features[key]


@dataclass
class FitResult:
    """Outcome of one method on one context."""

    y_pred: np.ndarray
    n_params: int
    seconds: float
    estimator: object = None


@dataclass(frozen=True)
class Method:
    """A named method of the benchmark.

    Attributes
    ----------
    name : str
        Row label in the tables.
    family : str
        ``"reference"``, ``"fine-tuning"``, ``"in-processing"`` or
        ``"post-processing"``.
    fit : callable
        ``fit(ctx) -> FitResult``.
    description : str
        One line for the reports.
    """

    name: str
    family: str
    fit: Callable
    description: str = ""


@contextmanager
def _quiet_peers():
    """Silence warnings of third-party peers that say nothing about results.

    * ``ConvergenceWarning``: LogisticRegression on the reweighted rows of
      ExponentiatedGradient may stop at ``max_iter``; usual for that peer.
    * ``DeprecationWarning`` (pandas ``Pandas4Warning``): fairlearn 0.15's
      moments and post-processing use ``Series.at`` patterns that pandas 3
      deprecates; the numbers are unaffected.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# --------------------------------------------------------------- fine-tuning
def fit_tuner(ctx, *, name=None, **params):
    """Fit a :class:`FairLowRankFineTuner` on the new task's train part.

    Parameters
    ----------
    ctx : Context
        Task, backbone and settings.
    name : str or None, default=None
        Store the fitted estimator under this key of ``ctx.fitted``.
    **params
        Parameters of the estimator (``head``, ``rank``, ``importance``...).

    Returns
    -------
    FitResult
    """
    est = FairLowRankFineTuner(
        backbone=ctx.backbone, max_epochs=ctx.epochs, lr=ctx.lr,
        batch_size=ctx.batch_size, random_state=ctx.seed, **params,
    )
    train = ctx.task.train
    _, seconds = _timed(lambda: est.fit(train.X, train.y, sensitive_features=train.s))
    if name is not None:
        ctx.fitted[name] = est
    return FitResult(est.predict(ctx.task.test.X), est.n_trainable_params_,
                     seconds, est)


def tuner_method(name, description="", family="fine-tuning", **params):
    """Return a :class:`Method` that fits a FairLowRankFineTuner with ``params``."""
    return Method(name, family, lambda ctx: fit_tuner(ctx, name=name, **params),
                  description)


def _pretrained(ctx):
    return FitResult(predict_torch(ctx.backbone, ctx.task.test.X), 0, 0.0)


def _retrain_whole(penalty, strength):
    def fit(ctx):
        train = ctx.task.train
        model, seconds = _timed(lambda: train_torch(
            ctx.backbone, train.X, train.y, train.s, epochs=ctx.epochs,
            lr=ctx.lr / 10, batch_size=ctx.batch_size, penalty=penalty,
            strength=strength, seed=ctx.seed))
        return FitResult(predict_torch(model, ctx.task.test.X),
                         n_params(model), seconds, model)
    return fit


# ------------------------------------------------------------ fairlearn peers
def _expgrad(constraint_name):
    def fit(ctx):
        from fairlearn.reductions import (
            DemographicParity,
            EqualizedOdds,
            ExponentiatedGradient,
        )

        constraint = {"DP": DemographicParity, "EO": EqualizedOdds}[constraint_name]
        F_train = ctx.features(LINEAR_HEAD, "train")
        train = ctx.task.train
        est = ExponentiatedGradient(LogisticRegression(max_iter=1000),
                                    constraints=constraint(),
                                    max_iter=ctx.expgrad_max_iter)
        with _quiet_peers():
            _, seconds = _timed(lambda: est.fit(F_train, train.y,
                                                sensitive_features=train.s))
            y_pred = est.predict(ctx.features(LINEAR_HEAD, "test"),
                                 random_state=ctx.seed)
        n_models = int(np.sum(np.asarray(est.weights_) > 0))
        return FitResult(np.asarray(y_pred).astype(int),
                         n_models * (F_train.shape[1] + 1), seconds, est)
    return fit


#: Bases of the reductions over the fine-tuner. OURS (importance="neutral")
#: needs the groups in fit, which fairlearn's reductions do not pass to the
#: estimator (fit(X, y, sample_weight=w)), so FWSVD, the same low-rank head
#: with the pooled Fisher, stands in for it there.
_REDUCTION_BASES = {"TL": {"rank": None}, "FWSVD": {"importance": "fisher"}}


def _tuner_reduction(kind, constraint_name, base, rank):
    def fit(ctx):
        from fairlearn.reductions import (
            DemographicParity,
            EqualizedOdds,
            ExponentiatedGradient,
            GridSearch,
        )

        constraint = {"DP": DemographicParity, "EO": EqualizedOdds}[constraint_name]
        params = dict(_REDUCTION_BASES[base])
        params.setdefault("rank", rank)
        tuner = FairLowRankFineTuner(
            backbone=ctx.backbone, head=LINEAR_HEAD, max_epochs=ctx.epochs,
            lr=ctx.lr, batch_size=ctx.batch_size, random_state=ctx.seed, **params,
        )
        if kind == "ExpGrad":
            est = ExponentiatedGradient(tuner, constraints=constraint(),
                                        max_iter=ctx.expgrad_max_iter)
        else:
            est = GridSearch(tuner, constraints=constraint())
        train = ctx.task.train
        with _quiet_peers():
            _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                                sensitive_features=train.s))
            if kind == "ExpGrad":
                y_pred = est.predict(ctx.task.test.X, random_state=ctx.seed)
                fitted = [p for p, w in zip(est.predictors_, est.weights_,
                                            strict=True) if w > 0]
            else:
                y_pred = est.predict(ctx.task.test.X)
                fitted = [est.predictors_[est.best_idx_]]
        n = sum(p.n_trainable_params_ for p in fitted)
        return FitResult(np.asarray(y_pred).astype(int), n, seconds, est)
    return fit


def _reweighed(rank):
    def fit(ctx):
        from ..preprocessing import reweighing_weights

        train = ctx.task.train
        est = FairLowRankFineTuner(
            backbone=ctx.backbone, head=LINEAR_HEAD, max_epochs=ctx.epochs,
            lr=ctx.lr, batch_size=ctx.batch_size, random_state=ctx.seed,
            rank=rank, importance="neutral",
        )
        w = reweighing_weights(train.y, sensitive_features=train.s)
        _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                            sensitive_features=train.s,
                                            sample_weight=w))
        return FitResult(est.predict(ctx.task.test.X), est.n_trainable_params_,
                         seconds, est)
    return fit


def _threshold(base_name, constraint):
    def fit(ctx):
        from fairlearn.postprocessing import ThresholdOptimizer

        if base_name not in ctx.fitted:
            params = {"TL": {"rank": None},
                      "OURS": {"rank": 1, "importance": "neutral"}}[base_name]
            fit_tuner(ctx, name=base_name, head=LINEAR_HEAD, **params)
        base = ctx.fitted[base_name]
        train, test = ctx.task.train, ctx.task.test
        est = ThresholdOptimizer(estimator=base, constraints=constraint,
                                 prefit=True, predict_method="predict_proba")
        with _quiet_peers():
            _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                                sensitive_features=train.s))
            y_pred = est.predict(test.X, sensitive_features=test.s,
                                 random_state=ctx.seed)
        return FitResult(np.asarray(y_pred).astype(int),
                         base.n_trainable_params_, seconds, est)
    return fit


def _adversarial(ctx):
    from fairlearn.adversarial import AdversarialFairnessClassifier

    F_train = ctx.features(LINEAR_HEAD, "train")
    train = ctx.task.train
    est = AdversarialFairnessClassifier(
        backend="torch", predictor_model=[_ADV_HIDDEN, "leaky_relu"],
        adversary_model=[],
        constraints="demographic_parity", learning_rate=ctx.lr, alpha=1.0,
        epochs=ctx.epochs, batch_size=ctx.batch_size, shuffle=True,
        random_state=ctx.seed,
    )
    with _quiet_peers():
        _, seconds = _timed(lambda: est.fit(F_train, train.y,
                                            sensitive_features=train.s))
        y_pred = est.predict(ctx.features(LINEAR_HEAD, "test"))
    d = F_train.shape[1]
    return FitResult(np.asarray(y_pred).astype(int),
                     (d + 1) * _ADV_HIDDEN + _ADV_HIDDEN + 1, seconds, est)


# ------------------------------------------------------------------ registry
def main_methods(strengths=PENALTY_STRENGTHS, rank=1):
    """Return the methods of the main comparison (config (a), linear head).

    Parameters
    ----------
    strengths : sequence of float, default=PENALTY_STRENGTHS
        Intensities of the Retrain+DP/EO baselines.
    rank : int, default=1
        Rank of f+SVD / FWSVD / OURS on the 10 -> 2 linear head.

    Returns
    -------
    methods : list of Method
    """
    head = LINEAR_HEAD
    methods = [
        Method("Pretrained (no FT)", "reference", _pretrained,
               "pre-trained backbone applied to the new task as is"),
        tuner_method("TL", "fine-tune the linear head (rank=None)",
                     head=head, rank=None),
    ]
    for label, importance in IMPORTANCES.items():
        methods.append(tuner_method(
            label, f"rank-{rank} weighted SVD of the head, importance="
            f"{importance!r}", head=head, rank=rank, importance=importance))
    for pen_label, pen in _PENALTIES.items():
        for lam in strengths:
            methods.append(tuner_method(
                f"Retrain+{pen_label} head λ={lam}",
                f"head only, fairness_penalty={pen!r}", family="in-processing",
                head=head, rank=None, fairness_penalty=pen, penalty_strength=lam))
        for lam in strengths:
            methods.append(Method(
                f"Retrain+{pen_label} whole λ={lam}", "in-processing",
                _retrain_whole(pen, lam),
                "all MLP parameters unfrozen, torch loop, lr/10"))
    for pen_label, pen in _PENALTIES.items():
        methods.append(tuner_method(
            f"OURS+{pen_label} λ=0.5", "OURS plus the penalty",
            family="in-processing", head=head, rank=rank, importance="neutral",
            fairness_penalty=pen, penalty_strength=0.5))
    for c in ("DP", "EO"):
        methods.append(Method(
            f"ExpGrad {c}", "in-processing", _expgrad(c),
            "fairlearn ExponentiatedGradient(LogisticRegression) on the "
            "frozen penultimate features"))
    for kind in ("ExpGrad", "GridSearch"):
        for c in ("DP", "EO"):
            for base in _REDUCTION_BASES:
                methods.append(Method(
                    f"{kind} {c} ({base})", "in-processing",
                    _tuner_reduction(kind, c, base, rank),
                    f"fairlearn {kind} over FairLowRankFineTuner ({base}; OURS "
                    "needs groups in fit, which reductions do not pass)"))
    methods.append(Method(
        "Reweighing + OURS", "pre-processing", _reweighed(rank),
        "OURS fitted with Kamiran-Calders weights "
        "(sklearn_winfair.preprocessing.reweighing_weights)"))
    for base in ("TL", "OURS"):
        for c_label, c in (("DP", "demographic_parity"), ("EO", "equalized_odds")):
            methods.append(Method(
                f"ThrOpt {c_label} ({base})", "post-processing",
                _threshold(base, c),
                f"fairlearn ThresholdOptimizer(prefit=True) over {base}"))
    methods.append(Method(
        "AdvFair DP", "in-processing", _adversarial,
        "fairlearn AdversarialFairnessClassifier (torch, predictor d-16-1) "
        "on the frozen penultimate features"))
    return methods


def select_methods(methods, patterns):
    """Keep the methods whose name matches one of ``patterns`` (fnmatch).

    Parameters
    ----------
    methods : list of Method
    patterns : str, sequence of str or None
        Comma-separated string or list of shell patterns, matched case
        insensitively (``"TL,OURS*,ThrOpt*"``); None keeps everything.

    Returns
    -------
    methods : list of Method

    Examples
    --------
    >>> names = [m.name for m in select_methods(main_methods(), "TL,OURS*")]
    >>> names[:3]
    ['TL', 'OURS', 'OURS+DP λ=0.5']
    """
    from fnmatch import fnmatch

    if patterns is None:
        return list(methods)
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    patterns = [p.lower() for p in patterns]
    return [m for m in methods
            if any(fnmatch(m.name.lower(), p) for p in patterns)]
