"""Hyperparameter choice on the validation part: a grid over lr and epochs.

Every tuned method gets the same budget: for each learning rate of the grid
it is trained once for ``max(epochs)`` epochs, and the model is evaluated on
the validation part at each epoch count of the grid (checkpoints of that one
run). The (lr, epochs) pair with the lowest validation Err (100 - weighted
F1, the paper's error) is kept, ties going to the earlier grid point (smaller
lr, fewer epochs), and its test predictions are reported.

* :class:`~sklearn_winfair.FairLowRankFineTuner` fits: a skorch callback
  snapshots the trainable module's ``state_dict`` at each checkpoint epoch;
  after the fit each snapshot is loaded back and the fitted estimator
  predicts. That relies on the fitted ``model_`` sharing its trainable head
  with ``net_.module_``; :func:`tune_tuner` checks it (the last snapshot
  must reproduce the final predictions) and otherwise refits once per grid
  point, which gives the same choice at a higher cost.
* Plain torch loops (whole-model retraining): evaluated in
  ``train_torch(on_epoch_end=...)``.
* fairlearn's AdversarialFairnessClassifier: ``warm_start=True`` and one
  ``fit`` call per checkpoint interval.
"""

import copy
import time
from dataclasses import dataclass

import numpy as np
from skorch.callbacks import Callback

from .. import FairLowRankFineTuner, weighted_f1_error
from ._pretrain import predict_torch, train_torch

__all__ = ["Grid", "Choice", "tune_tuner", "tune_torch", "tune_adversarial"]


@dataclass(frozen=True)
class Grid:
    """Learning rates and epoch checkpoints searched for every method.

    Examples
    --------
    >>> Grid(lrs=(1e-3, 1e-2), epochs=(5, 20)).size
    4
    """

    lrs: tuple = (1e-3, 1e-2)
    epochs: tuple = (5, 10, 20)

    @property
    def size(self):
        """Number of (lr, epochs) points."""
        return len(self.lrs) * len(self.epochs)

    @property
    def max_epochs(self):
        """Epochs of each training run (the largest checkpoint)."""
        return max(self.epochs)

    def describe(self):
        """One line for the reports."""
        return (f"lr in {list(self.lrs)} x epochs in {list(self.epochs)} "
                f"({self.size} points; one run of {self.max_epochs} epochs per "
                "lr, evaluated at each epoch checkpoint)")


@dataclass
class Choice:
    """The chosen grid point of one method and what it predicts."""

    lr: float
    epochs: int
    val_err: float
    y_pred: np.ndarray
    seconds: float
    estimator: object = None


_SNAPSHOTS = "winfair_snapshots"


class _Snapshots(Callback):
    """Keep a copy of the module's state at the listed epochs.

    The estimator deep-copies its callbacks, so the snapshots are read back
    from the fitted net's own copy (:func:`_snapshots_of`), not from the
    instance passed in.
    """

    def __init__(self, epochs):
        self.epochs = epochs

    def initialize(self):
        self.states_ = {}
        return self

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch in set(self.epochs):
            self.states_[epoch] = copy.deepcopy(net.module_.state_dict())


def _snapshots_of(est):
    """Return the states that the fitted net's ``_Snapshots`` copy kept."""
    return dict(est.net_.callbacks_)[_SNAPSHOTS].states_


def _err(y, y_pred):
    """Err in percent (100 - weighted F1), as the tables report it."""
    return float(weighted_f1_error(y, y_pred))


def _better(err, best):
    return best is None or err < best.val_err - 1e-12


def tune_tuner(ctx, grid, **params):
    """Fit a FairLowRankFineTuner over ``grid``; keep the best validation point.

    Parameters
    ----------
    ctx : Context
        Task (train / val / test parts), backbone, seed, batch size.
    grid : Grid
    **params
        Parameters of the estimator (``head``, ``rank``, ``importance``...).

    Returns
    -------
    Choice
        With the fitted estimator restored to the chosen checkpoint.
    """
    task = ctx.task
    start = time.perf_counter()
    if params.get("solver", "auto") in ("auto", "lbfgs"):
        # L-BFGS solves the head on the cached features: no lr, no epochs
        est = FairLowRankFineTuner(backbone=ctx.backbone, batch_size=ctx.batch_size,
                                   random_state=ctx.seed, **params)
        est.fit(task.train.X, task.train.y, sensitive_features=task.train.s)
        err = _err(task.val.y, est.predict(task.val.X))
        return Choice(np.nan, np.nan, err, est.predict(task.test.X),
                      time.perf_counter() - start, est)
    best, best_state = None, None
    for lr in grid.lrs:
        est = FairLowRankFineTuner(
            backbone=ctx.backbone, max_epochs=grid.max_epochs, lr=lr,
            batch_size=ctx.batch_size, random_state=ctx.seed,
            callbacks=[(_SNAPSHOTS, _Snapshots(grid.epochs))], **params)
        est.fit(task.train.X, task.train.y, sensitive_features=task.train.s)
        states = _snapshots_of(est)
        final_val = est.predict(task.val.X)
        module = est.net_.module_
        module.load_state_dict(states[grid.max_epochs])
        shared = np.array_equal(est.predict(task.val.X), final_val) and \
            _shares(est)
        for e in sorted(grid.epochs):
            if shared:
                module.load_state_dict(states[e])
                cand = est
            elif e == grid.max_epochs:
                cand = est
            else:
                cand = FairLowRankFineTuner(
                    backbone=ctx.backbone, max_epochs=e, lr=lr,
                    batch_size=ctx.batch_size, random_state=ctx.seed, **params)
                cand.fit(task.train.X, task.train.y,
                         sensitive_features=task.train.s)
            err = _err(task.val.y, cand.predict(task.val.X))
            if _better(err, best):
                best = Choice(lr, e, err, None, 0.0, cand)
                best_state = (copy.deepcopy(module.state_dict())
                              if shared else None)
        if shared:
            module.load_state_dict(states[grid.max_epochs])
    if best_state is not None:
        best.estimator.net_.module_.load_state_dict(best_state)
    best.y_pred = best.estimator.predict(task.test.X)
    best.seconds = time.perf_counter() - start
    return best


def _shares(est):
    """Whether ``model_`` holds the very parameters that ``net_`` trains."""
    net = {p.data_ptr() for p in est.net_.module_.parameters()}
    model = {p.data_ptr() for p in est.model_.parameters()}
    return bool(net) and net <= model


def tune_torch(ctx, grid, *, penalty=None, strength=0.0, trainable=None):
    """Train a copy of the backbone with a torch loop over ``grid``.

    Parameters
    ----------
    ctx : Context
    grid : Grid
    penalty, strength, trainable
        As in :func:`._pretrain.train_torch`.

    Returns
    -------
    Choice
        ``estimator`` is the trained model at the chosen checkpoint.
    """
    task = ctx.task
    best, start = None, time.perf_counter()
    for lr in grid.lrs:
        def on_epoch_end(epoch, model, lr=lr):
            nonlocal best
            if epoch not in grid.epochs:
                return
            err = _err(task.val.y, predict_torch(model, task.val.X))
            if _better(err, best):
                best = Choice(lr, epoch, err, predict_torch(model, task.test.X),
                              0.0, copy.deepcopy(model))

        train_torch(ctx.backbone, task.train.X, task.train.y, task.train.s,
                    epochs=grid.max_epochs, lr=lr, batch_size=ctx.batch_size,
                    penalty=penalty, strength=strength, trainable=trainable,
                    seed=ctx.seed, on_epoch_end=on_epoch_end)
    best.seconds = time.perf_counter() - start
    return best


def tune_adversarial(ctx, grid, F_train, F_val, F_test, make):
    """Tune fairlearn's AdversarialFairnessClassifier over ``grid``.

    Parameters
    ----------
    ctx : Context
    grid : Grid
    F_train, F_val, F_test : ndarray
        Frozen features of the three parts.
    make : callable
        ``make(lr) -> AdversarialFairnessClassifier`` (``warm_start=True``).

    Returns
    -------
    Choice
    """
    task = ctx.task
    best, start = None, time.perf_counter()
    for lr in grid.lrs:
        est, done = make(lr), 0
        for e in sorted(grid.epochs):
            est.set_params(epochs=e - done)
            est.fit(F_train, task.train.y, sensitive_features=task.train.s)
            done = e
            err = _err(task.val.y, np.asarray(est.predict(F_val)).astype(int))
            if _better(err, best):
                best = Choice(lr, e, err,
                              np.asarray(est.predict(F_test)).astype(int), 0.0,
                              None)
    best.seconds = time.perf_counter() - start
    return best
