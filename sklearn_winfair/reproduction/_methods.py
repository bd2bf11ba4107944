"""Registry of the compared methods: name -> fit on a task, predict its test part.

Every method is written once here, as a factory returning a :class:`Method`;
the scenarios (:mod:`._scenarios`) only list which methods they run, with
which head, rank and name. A method gets a :class:`Context` (the task, the
frozen pre-trained backbone, the seed and the training settings) and returns
a :class:`FitResult` with its test predictions, its number of trainable
parameters and its fit time.

Two regimes, chosen by the context, not by the method:

* ``ctx.grid is None`` (``adult-age-shift``, ``german``): fixed epochs and
  learning rate (``ctx.epochs``, ``ctx.lr``);
* ``ctx.grid`` set (``adult``, ``images``): each trained method searches the
  grid on the validation part (:mod:`._tuning`) and its row gets the chosen
  ``lr``, ``epochs`` and ``val_err``.

Who does what: :class:`~sklearn_winfair.FairLowRankFineTuner` is ours;
ExponentiatedGradient, GridSearch, ThresholdOptimizer and
AdversarialFairnessClassifier are fairlearn's; whole-model retraining is a
plain torch loop (:func:`._pretrain.train_torch`). Frozen features are
computed once per context and shared by the fairlearn peers; fitted
estimators are kept in ``Context.fitted`` so that post-processing
(ThresholdOptimizer) reuses the TL and OURS models instead of refitting them.
"""

import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from .. import FairLowRankFineTuner
from ..preprocessing import reweighing_weights
from ._data import Task
from ._pretrain import LINEAR_HEAD, head_inputs, n_params, predict_torch, train_torch
from ._settings import ADV_HIDDEN, IMPORTANCES, PENALTIES, PENALTY_STRENGTHS
from ._tuning import Grid, tune_adversarial, tune_torch, tune_tuner

__all__ = [
    "Context",
    "FitResult",
    "Method",
    "pretrained",
    "tuner_method",
    "retrain_whole",
    "expgrad",
    "tuner_reduction",
    "reweighed",
    "threshold",
    "adversarial",
    "main_methods",
    "select_methods",
]


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
        Fine-tuning epochs (untuned regime).
    batch_size : int
        Mini-batch size of every torch loop.
    lr : float
        Learning rate of head fine-tuning (whole-model retraining uses
        ``lr / 10``) in the untuned regime.
    expgrad_max_iter : int
        ``max_iter`` of fairlearn's ExponentiatedGradient (its default, 50,
        unless a smoke test lowers it).
    grid : Grid or None
        When set, every trained method searches this grid on the validation
        part instead of using ``epochs`` and ``lr``.
    solver : str
        ``solver`` of every FairLowRankFineTuner (see ``Settings.solver``).
    extract_seconds : float or None
        Seconds spent extracting the task's features through a frozen trunk
        before this context existed (images); recorded on the pre-trained row.
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
    grid: Grid | None = None
    solver: str = "auto"
    extract_seconds: float | None = None
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
    """Outcome of one method on one context.

    ``columns`` are extra ``runs.csv`` columns of its row (the chosen grid
    point of a tuned method).
    """

    y_pred: np.ndarray
    n_params: int
    seconds: float
    estimator: object = None
    columns: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A named method of the benchmark.

    Attributes
    ----------
    name : str
        Row label in the tables.
    family : str
        ``"reference"``, ``"fine-tuning"``, ``"in-processing"``,
        ``"pre-processing"`` or ``"post-processing"``.
    fit : callable
        ``fit(ctx) -> FitResult``.
    description : str
        One line saying what runs.
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


def _grid_columns(choice):
    return {"lr": choice.lr, "epochs": choice.epochs, "val_err": choice.val_err}


def _constraint(label):
    from fairlearn.reductions import DemographicParity, EqualizedOdds

    return {"DP": DemographicParity, "EO": EqualizedOdds}[label]()


# --------------------------------------------------------------- reference
def pretrained():
    """Apply the pre-trained backbone to the new task as is."""

    def fit(ctx):
        columns = ({} if ctx.extract_seconds is None
                   else {"extract_seconds": ctx.extract_seconds})
        return FitResult(predict_torch(ctx.backbone, ctx.task.test.X), 0, 0.0,
                         columns=columns)

    return Method("Pretrained (no FT)", "reference", fit,
                  "pre-trained backbone applied to the new task as is")


# --------------------------------------------------------------- fine-tuning
def _fit_tuner(ctx, name, params):
    train = ctx.task.train
    if ctx.grid is not None:
        choice = tune_tuner(ctx, ctx.grid, solver=ctx.solver, **params)
        est = choice.estimator
        result = FitResult(choice.y_pred, est.n_trainable_params_,
                           choice.seconds, est, _grid_columns(choice))
    else:
        est = FairLowRankFineTuner(
            backbone=ctx.backbone, max_epochs=ctx.epochs, lr=ctx.lr,
            batch_size=ctx.batch_size, random_state=ctx.seed, solver=ctx.solver,
            **params,
        )
        _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                            sensitive_features=train.s))
        result = FitResult(est.predict(ctx.task.test.X),
                           est.n_trainable_params_, seconds, est)
    ctx.fitted[name] = est
    return result


def tuner_method(name, description="", family="fine-tuning", **params):
    """Return a :class:`Method` that fits a FairLowRankFineTuner with ``params``.

    The fitted estimator is kept in ``ctx.fitted[name]``.

    Examples
    --------
    >>> m = tuner_method("OURS", head="1.2", rank=1, importance="neutral")
    >>> m.name, m.family
    ('OURS', 'fine-tuning')
    """
    return Method(name, family, lambda ctx: _fit_tuner(ctx, name, params),
                  description)


def retrain_whole(name, penalty, strength):
    """Every backbone parameter trained with the penalty (plain torch loop).

    Untuned, it trains ``ctx.epochs`` epochs at ``ctx.lr / 10``.
    """

    def fit(ctx):
        train = ctx.task.train
        if ctx.grid is not None:
            choice = tune_torch(ctx, ctx.grid, penalty=penalty,
                                strength=strength)
            return FitResult(choice.y_pred, n_params(ctx.backbone),
                             choice.seconds, choice.estimator,
                             _grid_columns(choice))
        model, seconds = _timed(lambda: train_torch(
            ctx.backbone, train.X, train.y, train.s, epochs=ctx.epochs,
            lr=ctx.lr / 10, batch_size=ctx.batch_size, penalty=penalty,
            strength=strength, seed=ctx.seed))
        return FitResult(predict_torch(model, ctx.task.test.X),
                         n_params(model), seconds, model)

    return Method(name, "in-processing", fit,
                  "all backbone parameters unfrozen, torch loop")


# ------------------------------------------------------------ fairlearn peers
def expgrad(constraint, head):
    """Fairlearn ExponentiatedGradient(LogisticRegression) on frozen features.

    The features are the input of ``head``; the parameter count is that of
    the logistic models with a positive weight.
    """

    def fit(ctx):
        from fairlearn.reductions import ExponentiatedGradient

        F_train = ctx.features(head, "train")
        train = ctx.task.train
        est = ExponentiatedGradient(LogisticRegression(max_iter=1000),
                                    constraints=_constraint(constraint),
                                    max_iter=ctx.expgrad_max_iter)
        with _quiet_peers():
            _, seconds = _timed(lambda: est.fit(F_train, train.y,
                                                sensitive_features=train.s))
            y_pred = est.predict(ctx.features(head, "test"),
                                 random_state=ctx.seed)
        n_models = int(np.sum(np.asarray(est.weights_) > 0))
        return FitResult(np.asarray(y_pred).astype(int),
                         n_models * (F_train.shape[1] + 1), seconds, est)

    return Method(f"ExpGrad {constraint}", "in-processing", fit,
                  "fairlearn ExponentiatedGradient(LogisticRegression) on the "
                  "frozen input of the head")


#: Bases of the reductions over the fine-tuner. OURS (importance="neutral")
#: needs the groups in fit, which fairlearn's reductions do not pass to the
#: estimator (fit(X, y, sample_weight=w)), so FWSVD, the same low-rank head
#: with the pooled Fisher, stands in for it there.
_REDUCTION_BASES = {"TL": {"rank": None}, "FWSVD": {"importance": "fisher"}}


def tuner_reduction(kind, constraint, base, rank, head):
    """Fairlearn ExponentiatedGradient or GridSearch over FairLowRankFineTuner.

    Untuned only (fixed epochs and lr): a reduction refits its estimator
    many times, and a grid around it would multiply that.
    """

    def fit(ctx):
        from fairlearn.reductions import ExponentiatedGradient, GridSearch

        params = dict(_REDUCTION_BASES[base])
        params.setdefault("rank", rank)
        tuner = FairLowRankFineTuner(
            backbone=ctx.backbone, head=head, max_epochs=ctx.epochs,
            lr=ctx.lr, batch_size=ctx.batch_size, random_state=ctx.seed, solver=ctx.solver,
            **params,
        )
        if kind == "ExpGrad":
            est = ExponentiatedGradient(tuner, constraints=_constraint(constraint),
                                        max_iter=ctx.expgrad_max_iter)
        else:
            est = GridSearch(tuner, constraints=_constraint(constraint))
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

    return Method(f"{kind} {constraint} ({base})", "in-processing", fit,
                  f"fairlearn {kind} over FairLowRankFineTuner ({base}; OURS "
                  "needs groups in fit, which reductions do not pass)")


def reweighed(rank, head):
    """OURS fitted with Kamiran-Calders weights (untuned only)."""

    def fit(ctx):
        train = ctx.task.train
        est = FairLowRankFineTuner(
            backbone=ctx.backbone, head=head, max_epochs=ctx.epochs,
            lr=ctx.lr, batch_size=ctx.batch_size, random_state=ctx.seed,
            solver=ctx.solver, rank=rank, importance="neutral",
        )
        w = reweighing_weights(train.y, sensitive_features=train.s)
        _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                            sensitive_features=train.s,
                                            sample_weight=w))
        return FitResult(est.predict(ctx.task.test.X), est.n_trainable_params_,
                         seconds, est)

    return Method("Reweighing + OURS", "pre-processing", fit,
                  "OURS fitted with Kamiran-Calders weights "
                  "(sklearn_winfair.preprocessing.reweighing_weights)")


def threshold(base, constraint, fallback=None):
    """Fairlearn ThresholdOptimizer(prefit=True) over the fitted ``base``.

    Parameters
    ----------
    base : str
        Name of the method whose fitted estimator (``ctx.fitted[base]``) is
        post-processed.
    constraint : {"DP", "EO"}
    fallback : Method or None, default=None
        Run first when ``base`` has not run on this context (``--methods``
        left it out); None requires it to have run.
    """

    def fit(ctx):
        from fairlearn.postprocessing import ThresholdOptimizer

        if base not in ctx.fitted:
            if fallback is None:
                raise ValueError(
                    f"ThrOpt {constraint} ({base}) post-processes the fitted "
                    f"{base!r}, which has not run on this context: list the "
                    f"{base!r} method before it, or pass fallback=.")
            fallback.fit(ctx)
        est_base = ctx.fitted[base]
        train, test = ctx.task.train, ctx.task.test
        est = ThresholdOptimizer(estimator=est_base,
                                 constraints=PENALTIES[constraint], prefit=True,
                                 predict_method="predict_proba")
        with _quiet_peers():
            _, seconds = _timed(lambda: est.fit(train.X, train.y,
                                                sensitive_features=train.s))
            y_pred = est.predict(test.X, sensitive_features=test.s,
                                 random_state=ctx.seed)
        return FitResult(np.asarray(y_pred).astype(int),
                         est_base.n_trainable_params_, seconds, est)

    return Method(f"ThrOpt {constraint} ({base})", "post-processing", fit,
                  f"fairlearn ThresholdOptimizer(prefit=True) over {base}")


def adversarial(head):
    """Fairlearn AdversarialFairnessClassifier (DP) on the input of ``head``.

    Predictor ``d-ADV_HIDDEN-1`` (leaky ReLU), logistic adversary. Tuned, it
    warm-starts across the grid's epoch checkpoints.
    """

    def make(ctx, lr, **params):
        from fairlearn.adversarial import AdversarialFairnessClassifier

        return AdversarialFairnessClassifier(
            backend="torch", predictor_model=[ADV_HIDDEN, "leaky_relu"],
            adversary_model=[], constraints="demographic_parity",
            learning_rate=lr, alpha=1.0, batch_size=ctx.batch_size,
            shuffle=True, random_state=ctx.seed, **params)

    def fit(ctx):
        F = {p: ctx.features(head, p) for p in ("train", "test")}
        d = F["train"].shape[1]
        n = (d + 1) * ADV_HIDDEN + ADV_HIDDEN + 1
        train = ctx.task.train
        with _quiet_peers():
            if ctx.grid is not None:
                choice = tune_adversarial(
                    ctx, ctx.grid, F["train"], ctx.features(head, "val"),
                    F["test"], lambda lr: make(ctx, lr, warm_start=True))
                return FitResult(choice.y_pred, n, choice.seconds, None,
                                 _grid_columns(choice))
            est = make(ctx, ctx.lr, epochs=ctx.epochs)
            _, seconds = _timed(lambda: est.fit(F["train"], train.y,
                                                sensitive_features=train.s))
            y_pred = est.predict(F["test"])
        return FitResult(np.asarray(y_pred).astype(int), n, seconds, est)

    return Method("AdvFair DP", "in-processing", fit,
                  "fairlearn AdversarialFairnessClassifier (torch, predictor "
                  "d-16-1) on the frozen input of the head")


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

    Examples
    --------
    >>> [m.name for m in main_methods()][:5]
    ['Pretrained (no FT)', 'TL', 'f+SVD', 'FWSVD', 'OURS']
    """
    head = LINEAR_HEAD
    tl = tuner_method("TL", "fine-tune the linear head (rank=None)",
                      head=head, rank=None)
    lowrank = {label: tuner_method(
        label, f"rank-{rank} weighted SVD of the head, importance="
        f"{importance!r}", head=head, rank=rank, importance=importance)
        for label, importance in IMPORTANCES.items()}
    methods = [pretrained(), tl, *lowrank.values()]
    for label, pen in PENALTIES.items():
        for lam in strengths:
            methods.append(tuner_method(
                f"Retrain+{label} head λ={lam}",
                f"head only, fairness_penalty={pen!r}", family="in-processing",
                head=head, rank=None, fairness_penalty=pen, penalty_strength=lam))
        for lam in strengths:
            methods.append(retrain_whole(f"Retrain+{label} whole λ={lam}", pen,
                                         lam))
    for label, pen in PENALTIES.items():
        methods.append(tuner_method(
            f"OURS+{label} λ=0.5", "OURS plus the penalty",
            family="in-processing", head=head, rank=rank, importance="neutral",
            fairness_penalty=pen, penalty_strength=0.5))
    methods += [expgrad(c, head) for c in PENALTIES]
    methods += [tuner_reduction(kind, c, base, rank, head)
                for kind in ("ExpGrad", "GridSearch") for c in PENALTIES
                for base in _REDUCTION_BASES]
    methods.append(reweighed(rank, head))
    bases = {"TL": tl, "OURS": lowrank["OURS"]}
    methods += [threshold(base, c, fallback=bases[base])
                for base in bases for c in PENALTIES]
    methods.append(adversarial(head))
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
    if patterns is None:
        return list(methods)
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    patterns = [p.lower() for p in patterns]
    return [m for m in methods
            if any(fnmatch(m.name.lower(), p) for p in patterns)]
