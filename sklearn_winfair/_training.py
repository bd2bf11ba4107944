"""The solvers that train the new head: the skorch net, its data, its set-up.

Which library does what here: skorch runs the training loop of every solver
(callbacks, history, early stopping, ``optimizer__*`` parameters); torch
computes the loss and the fairness penalty (:mod:`sklearn_winfair.penalties`)
and runs the optimizers: :class:`torch.optim.LBFGS` (``solver="lbfgs"``:
full batch, one skorch epoch whose single step runs up to ``max_iter``
L-BFGS iterations with a strong-Wolfe line search, as scikit-learn's
``MLPClassifier(solver="lbfgs")`` runs scipy's), Adam or SGD (mini-batches);
scikit-learn fits the linear probe
(:class:`~sklearn.linear_model.LogisticRegression`) and splits the hold-out.

skorch's default data path indexes a ``Dataset`` one row at a time and
collates the rows into a batch. The cached features are already one tensor,
so :class:`TensorBatches` and :class:`BatchIterator` hand skorch whole
batches sliced from a shuffled index (``torch.randperm``), which is what a
plain torch loop does.
"""

import contextlib
import copy
import math
import sys

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)
from skorch.utils import Ansi
from torch import nn
from torch.nn.utils import skip_init
from torch.utils.data import Dataset, Subset

from ._inputs import call_backbone
from ._layers import FloatHead, replace_submodule  # noqa: F401 (FloatHead re-export)
from ._outputs import find_logits
from ._utils import warn_user
from .exceptions import TrainingDivergedError
from .penalties import demographic_parity_penalty, equalized_odds_penalty

__all__ = [
    "BatchIterator",
    "HeadModule",
    "HeadNet",
    "FitGenerator",
    "StopOnNonFiniteLoss",
    "TensorBatches",
    "TrunkAndHead",
    "fit_probe",
    "hold_out",
    "make_net",
    "resolve_solver",
    "torch_threads",
    "train",
    "training_threads",
]


class FitGenerator:
    """The random generator a fit owns: picklable, never torch's global one.

    Every random draw of a fit (mini-batch shuffles, the hold-out, the
    feature store's verification sample, the randomized SVD) comes from
    here, so fits in threads or Dask workers of one process, and sequential
    fits with the same ``random_state``, draw the same numbers, and the
    caller's global torch and numpy states are left alone.

    Parameters
    ----------
    seed : int or None, default=None
        ``None`` draws a fresh seed from the operating system.
    """

    def __init__(self, seed=None):
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.seed = int(seed)
        self._torch = None

    @property
    def torch(self):
        """The ``torch.Generator`` (CPU), created on first use."""
        if self._torch is None:
            self._torch = torch.Generator().manual_seed(self.seed)
        return self._torch

    def child_seed(self, k):
        """Return a seed for the ``k``-th independent draw (numpy, the store)."""
        return int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0])

    def __getstate__(self):
        state = {"seed": self.seed, "_torch": None}
        if self._torch is not None:
            state["_torch_state"] = self._torch.get_state()
        return state

    def __setstate__(self, state):
        torch_state = state.pop("_torch_state", None)
        self.__dict__.update(state)
        if torch_state is not None:
            self.torch.set_state(torch_state)


class TensorBatches(Dataset):
    """Rows of tensors that :class:`BatchIterator` slices whole batches from.

    Parameters
    ----------
    x : torch.Tensor or InputData
        Cached features, or the checked input (then each batch is copied to
        ``device`` and cast by ``InputData.batch``).
    y : torch.Tensor of shape (n_samples,)
        Encoded labels.
    extra : dict of str to torch.Tensor
        Per-row tensors passed along in the batch's ``X`` dict (group codes,
        sample weights).
    device : torch.device
        Where batches go.
    float_dtype : torch.dtype or None
        The trunk's floating dtype (``InputData`` only).
    """

    def __init__(self, x, y, extra, device, float_dtype=None):
        self.x, self.y, self.extra = x, y, extra
        self.device, self.float_dtype = device, float_dtype

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):  # pragma: no cover - BatchIterator never calls it
        return self.batch(torch.as_tensor([i]))

    def batch(self, idx):
        """Return the batch of rows ``idx`` (a 1-d long tensor), as skorch expects."""
        # index_select is several times cheaper than advanced indexing per call
        on = self.y.device
        idx_on = idx.to(on)
        if isinstance(self.x, torch.Tensor):
            x = self.x.index_select(0, idx_on)
        else:  # InputData: gather on the CPU, copy only the batch
            x = self.x.take(idx).batch(0, len(idx), self.device, self.float_dtype)
        Xb = {"x": x}
        for k, v in self.extra.items():
            Xb[k] = v.index_select(0, idx_on)
        return Xb, self.y.index_select(0, idx_on)


class BatchIterator:
    """Iterate over whole batches of a :class:`TensorBatches` (or a Subset).

    Parameters
    ----------
    dataset : TensorBatches or torch.utils.data.Subset of one
        What skorch passes (a Subset when a ``train_split`` split it).
    batch_size : int
        Rows per batch.
    shuffle : bool, default=False
        Draw a new ``torch.randperm`` every epoch, from ``generator``.
    generator : FitGenerator or None, default=None
        The fit's own generator (never torch's global one, so fits in
        threads do not interleave their draws); ``None`` uses a fresh,
        unseeded one.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        indices = None
        while isinstance(dataset, Subset):
            sub = torch.as_tensor(dataset.indices, dtype=torch.long)
            indices = sub if indices is None else sub[indices]
            dataset = dataset.dataset
        if not isinstance(dataset, TensorBatches):
            raise TypeError(
                "BatchIterator needs the estimator's TensorBatches; a custom "
                f"train_split returned {type(dataset).__name__}."
            )
        self.dataset, self.indices = dataset, indices
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = generator

    def __len__(self):
        n = len(self.dataset) if self.indices is None else len(self.indices)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.dataset) if self.indices is None else len(self.indices)
        if self.shuffle:
            gen = self.generator if self.generator is not None else FitGenerator()
            order = torch.randperm(n, generator=gen.torch)
        else:
            order = torch.arange(n)
        if self.indices is not None:
            order = self.indices[order]
        if isinstance(self.dataset.x, torch.Tensor):  # one copy an epoch, not a batch
            order = order.to(self.dataset.y.device)
        for start in range(0, n, self.batch_size):
            yield self.dataset.batch(order[start : start + self.batch_size])


class HeadModule(nn.Module):
    """Let skorch feed ``{"x": features, ...}`` to the head alone."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x, **_):
        out = self.head(x)
        # a convolutional classifier's (N, k, 1, 1) output, flattened after it
        return out if out.ndim == 2 else out.reshape(len(out), -1)


class TrunkAndHead(nn.Module):
    """Whole model for training without a feature cache; the trunk stays in eval.

    Parameters
    ----------
    model : torch.nn.Module
        The frozen backbone with the new head in place.
    head : torch.nn.Module
        The trainable head inside ``model``.
    output : None, str, int or callable
        Where the logits are in the backbone's output (see
        :func:`~sklearn_winfair._outputs.find_logits`).
    """

    def __init__(self, model, head, output=None):
        super().__init__()
        self.model = model
        self.head = head
        self.output = output
        self.nonfinite_input_ = False

    def train(self, mode=True):
        super().train(mode)
        self.model.eval()
        self.head.train(mode)
        return self

    def forward(self, x, **_):
        # watch the head's input: a NaN loss on finite X may be the trunk's
        handle = self.head.register_forward_pre_hook(self._watch)
        try:
            return find_logits(call_backbone(self.model, x), self.output)
        finally:
            handle.remove()

    def _watch(self, module, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            if not bool(torch.isfinite(args[0]).all()):
                self.nonfinite_input_ = True


class StopOnNonFiniteLoss(Callback):
    """Stop training with a clear error when the loss becomes NaN or inf."""

    def initialize(self):
        self.batches_ = 0
        return self

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training or loss is None:
            return
        self.batches_ += 1
        if math.isfinite(loss.item()):
            return
        epoch = len(net.history)
        Xb = batch[0] if batch is not None else None
        x = Xb.get("x") if isinstance(Xb, dict) else None
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(
            torch.isfinite(x).all()
        ):
            raise TrainingDivergedError(
                f"The backbone produced non-finite values (NaN or inf) in the "
                f"input of training batch {self.batches_ - 1} (epoch {epoch}); "
                "check those rows of X."
            )
        if getattr(net.module_, "nonfinite_input_", False):
            raise TrainingDivergedError(
                f"The backbone produced non-finite values (NaN or inf) in the "
                f"head's input on training batch {self.batches_ - 1} (epoch "
                f"{epoch}; batch 0 is the first); check those rows of X, or the "
                "backbone's numerics (an overflow in float16?)."
            )
        if self.batches_ == 1:
            raise TrainingDivergedError(
                f"The training loss became {loss.item()} on the first batch, "
                "before any update, on finite features: the head's logits "
                "overflow (pre-trained head weights of extreme scale?). Check "
                "the head's weights, or use head_init='probe'."
            )
        raise TrainingDivergedError(
            f"The training loss became {loss.item()} in epoch {epoch}. "
            "Lower lr (or penalty_strength), or check the features for "
            "extreme values."
        )


class PlainPrintLog(PrintLog):
    """skorch's per-epoch table, without ANSI colours when stdout is not a terminal.

    A log file or a CI console gets plain text; a terminal keeps skorch's
    colouring of the best values.
    """

    def format_row(self, row, key, color):
        if not _is_terminal():
            color = ""
        text = super().format_row(row, key, color)
        if not _is_terminal() and isinstance(text, str):
            text = text.replace(Ansi.ENDC.value, "")
        return text


def _is_terminal():
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class HeadNet(NeuralNetClassifier):
    """skorch classifier for the head: weighted loss plus an optional penalty.

    Batches are dicts ``{"x": ..., "group": codes, "sample_weight": w}``.
    The loss is the ``sample_weight``-weighted mean of the per-row
    cross-entropy (the plain mean without weights); the penalty is computed
    per mini-batch on the predicted probability of the positive class.
    """

    def __init__(self, *args, fairness_penalty=None, penalty_strength=0.0,
                 num_groups=None, finite_loss_check=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength
        self.num_groups = num_groups
        self.finite_loss_check = finite_loss_check

    def _check_finite(self, loss):
        """L-BFGS evaluates many times in one step: stop at the first NaN/inf."""
        if bool(torch.isfinite(loss)):
            return
        first = not getattr(self, "_evaluated_", False)
        raise TrainingDivergedError(
            f"The training loss became {loss.item()} "
            + ("at L-BFGS's first evaluation, before any update, on finite "
               "features: the head's logits overflow (pre-trained head weights "
               "of extreme scale?). Check the head's weights, or use "
               "head_init='probe'." if first else
               "during L-BFGS. Check the features for extreme values, or lower "
               "penalty_strength.")
        )

    @property
    def _default_callbacks(self):
        # no valid_acc: it would re-collect y from a dataset skorch cannot read
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("print_log", PlainPrintLog()),
        ]

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weight = X.get("sample_weight") if isinstance(X, dict) else None
        if weight is None:
            loss = nn.functional.cross_entropy(y_pred, y_true)
        else:
            per_row = nn.functional.cross_entropy(y_pred, y_true, reduction="none")
            loss = (per_row * weight).sum() / weight.sum().clamp(min=1e-12)
        if self.fairness_penalty is None or self.penalty_strength == 0:
            if training and self.finite_loss_check:
                self._check_finite(loss)
                self._evaluated_ = True
            return loss
        proba = torch.softmax(y_pred, dim=1)[:, 1]
        groups = X["group"]
        # the inputs were validated once in fit: no checks per mini-batch
        if self.fairness_penalty == "demographic_parity":
            penalty = demographic_parity_penalty(
                proba, groups, num_groups=self.num_groups, sample_weight=weight,
                validate_args=False,
            )
        else:
            penalty = equalized_odds_penalty(
                proba, y_true, groups, num_groups=self.num_groups,
                sample_weight=weight, validate_args=False,
            )
        loss = loss + self.penalty_strength * penalty
        if training and self.finite_loss_check:
            self._check_finite(loss)
            self._evaluated_ = True
        return loss


# --------------------------------------------------------------------------
# set-up of a fit's training: threads, hold-out, probe, solver, net
# --------------------------------------------------------------------------

#: A head with fewer trainable parameters than this trains on one CPU thread:
#: its matrix products are too small for more threads to pay their overhead.
_SMALL_HEAD_PARAMS = 1_000_000

#: Devices where torch's fused Adam / AdamW kernels run.
_FUSED = ("cpu", "cuda")


def training_threads(device, cached, n_params):
    """Torch CPU threads for training the head (None: leave them as they are)."""
    if device.type != "cpu" or not cached or n_params >= _SMALL_HEAD_PARAMS:
        return None
    return 1


@contextlib.contextmanager
def torch_threads(n):
    """Set torch's intra-op threads to ``n`` for the block, then restore them."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def hold_out(dataset, y, validation_fraction, seed):
    """Stratified ``(train, validation)`` Subsets of ``dataset`` for early stopping.

    Parameters
    ----------
    dataset : TensorBatches
    y : ndarray of shape (n_samples,)
        Encoded labels (the strata).
    validation_fraction : float
    seed : int
        From the fit's :class:`FitGenerator`.
    """
    rows = np.arange(len(y))
    try:
        train_rows, valid_rows = train_test_split(
            rows, test_size=validation_fraction, stratify=y, random_state=seed,
        )
    except ValueError as exc:
        raise ValueError(
            f"early_stopping could not hold out a stratified "
            f"validation_fraction={validation_fraction} of {len(rows)} "
            f"rows ({exc}). Raise validation_fraction or turn "
            "early_stopping off."
        ) from None
    return Subset(dataset, np.sort(train_rows)), Subset(dataset, np.sort(valid_rows))


def fit_probe(head, last_name, inputs, y, n_classes, sample_weight, device):
    """Return a copy of ``head`` whose last linear layer is a fitted logistic probe.

    Parameters
    ----------
    head : torch.nn.Module
        The float32 head; not modified.
    last_name : str
        Name of its last ``nn.Linear`` inside it (``""``: the head itself).
    inputs : torch.Tensor of shape (n_samples, d)
        The last layer's input on the training rows.
    y : ndarray of shape (n_samples,)
        Encoded labels.
    n_classes : int
    sample_weight : ndarray or None
    device : torch.device

    Returns
    -------
    head : torch.nn.Module
        With the probe in place of the last layer (grad off).
    """
    last = head.get_submodule(last_name) if last_name else head
    Z = inputs.cpu().double().numpy()
    # standardized, as a logistic regression should be fitted (its L2 penalty
    # assumes features of unit scale: on features of std 3e-4 the unscaled
    # probe stayed at chance), then folded back into the layer
    scaler = StandardScaler().fit(Z, sample_weight=sample_weight)
    probe = LogisticRegression(max_iter=1000)
    probe.fit(scaler.transform(Z), y, sample_weight=sample_weight)
    coef = probe.coef_ / scaler.scale_
    intercept = probe.intercept_ - coef @ scaler.mean_
    if n_classes == 2:  # one logit difference -> two symmetric columns
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    new_last = skip_init(nn.Linear, last.in_features, n_classes, device=device)
    with torch.no_grad():
        new_last.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        new_last.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
    new_last.requires_grad_(False)
    return replace_submodule(copy.deepcopy(head), last_name, new_last)


def resolve_solver(solver, *, cached, early_stopping, train_split, n_head_layers=1):
    """Return the solver a fit runs: ``"auto"`` is L-BFGS on cached features.

    ``"auto"`` takes L-BFGS only for a head of one linear layer (factorized or
    not): there it converges in tens of iterations. A head of several layers
    is non-convex in its own weights, L-BFGS ran it to ``max_iter`` (a fit of
    a 2048-64-2 head took 3.1x the forward pass instead of 1.2x with Adam), and
    its training optimum was not the better test point (decisions.md), so it
    gets Adam.

    Parameters
    ----------
    solver : {"auto", "lbfgs", "adam", "sgd"}
    cached : bool
        Whether the frozen features are cached (``cache_features=True``).
    early_stopping : bool
    train_split : callable or None
    n_head_layers : int, default=1
        ``nn.Linear`` layers in the trainable head.

    Returns
    -------
    solver : {"lbfgs", "adam", "sgd"}
    """
    needs_epochs = early_stopping or train_split is not None
    if solver == "auto":
        one_layer = n_head_layers <= 1
        return "lbfgs" if cached and one_layer and not needs_epochs else "adam"
    if solver == "lbfgs" and not cached:
        raise ValueError(
            "solver='lbfgs' trains on the cached features in full batches, but "
            "cache_features=False. Use solver='adam' or 'sgd' (mini-batches "
            "through the frozen trunk), or cache_features=True."
        )
    if solver == "lbfgs" and needs_epochs:
        which = "early_stopping=True" if early_stopping else "train_split"
        raise ValueError(
            f"{which} monitors a validation loss per epoch, which needs a "
            "mini-batch solver; solver='lbfgs' runs one full-batch "
            "optimization. Use solver='adam' or 'sgd', or drop "
            f"{which.split('=')[0]}."
        )
    return solver


#: skorch arguments the estimator sets itself (net_params may not).
RESERVED_NET_PARAMS = {
    "module": "backbone/head", "criterion": "(cross-entropy, fixed)",
    "optimizer": "optimizer", "lr": "lr", "max_epochs": "max_epochs",
    "batch_size": "batch_size", "train_split": "train_split",
    "callbacks": "callbacks", "device": "device", "verbose": "verbose",
    "classes": "(taken from y)", "iterator_train__shuffle": "(always True)",
    "iterator_train": "(batches sliced from tensors)",
    "iterator_valid": "(batches sliced from tensors)",
    "fairness_penalty": "fairness_penalty",
    "penalty_strength": "penalty_strength",
}


def _ignore_sink(*args):
    """Print nothing: skorch's ``EarlyStopping`` sink, picklable (not a lambda)."""


def make_net(module, est, *, solver, n_classes, n_groups, n_rows, train_split,
             generator, early_stop):
    """Build the skorch net that trains ``module`` for the estimator ``est``.

    Parameters
    ----------
    module : torch.nn.Module
        :class:`HeadModule` or :class:`TrunkAndHead`.
    est : FairLowRankFineTuner
        Read for its training parameters (never modified).
    solver : {"lbfgs", "adam", "sgd"}
        From :func:`resolve_solver`.
    n_classes, n_groups, n_rows : int
    train_split : callable or None
    generator : FitGenerator
    early_stop : bool
        Add skorch's ``EarlyStopping`` on the validation loss (the hold-out).
    """
    net_params = dict(est.net_params or {})
    callbacks = list(copy.deepcopy(est.callbacks) if est.callbacks else [])
    if early_stop:
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss", patience=est.n_iter_no_change,
            load_best=True, sink=_ignore_sink,
        )))
    elif solver != "lbfgs":
        # scikit-learn's rule for its stochastic solvers: stop when the
        # training loss has not improved by tol for n_iter_no_change epochs
        callbacks.append(("train_loss_stopping", EarlyStopping(
            monitor="train_loss", patience=est.n_iter_no_change,
            threshold=est.tol, threshold_mode="abs", load_best=False,
            sink=_ignore_sink,
        )))
    callbacks.append(("stop_on_nonfinite", StopOnNonFiniteLoss()))
    if est.verbose > 1 and _is_terminal():  # a bar is noise in a log file
        callbacks.append(("progress_bar", ProgressBar()))
    if solver == "lbfgs":
        optimizer, lr, max_epochs, batch_size = torch.optim.LBFGS, 1.0, 1, n_rows
        net_params.setdefault("optimizer__max_iter", est.max_iter)
        net_params.setdefault("optimizer__tolerance_grad", est.tol)
        # also converged when an iteration moves the loss (or every parameter)
        # by less than tol / 100: on separable data the gradient never reaches
        # tol while the loss creeps towards 0
        net_params.setdefault("optimizer__tolerance_change", est.tol * 1e-2)
        net_params.setdefault("optimizer__history_size", 10)
        net_params.setdefault("optimizer__line_search_fn", "strong_wolfe")
    else:
        optimizer = torch.optim.SGD if solver == "sgd" else est.optimizer
        lr, max_epochs, batch_size = est.lr, est.max_epochs, est.batch_size
        fusable = optimizer in (torch.optim.Adam, torch.optim.AdamW)
        user_set = {"optimizer__fused", "optimizer__foreach"} & set(net_params)
        if fusable and not user_set and torch.device(est.device).type in _FUSED:
            # one fused kernel per step instead of ~10 small ops per parameter:
            # the head's step took half the time in our measurements
            net_params["optimizer__fused"] = True
    return HeadNet(
        module,
        criterion=nn.CrossEntropyLoss,
        optimizer=optimizer,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=train_split,
        callbacks=callbacks,
        device=est.device,
        verbose=int(est.verbose > 0),
        classes=list(range(n_classes)),
        iterator_train=BatchIterator,
        iterator_valid=BatchIterator,
        iterator_train__shuffle=solver != "lbfgs",
        iterator_train__generator=generator,
        fairness_penalty=est.fairness_penalty,
        penalty_strength=est.penalty_strength,
        num_groups=n_groups,
        finite_loss_check=solver == "lbfgs",
        **net_params,
    )


def train(net, dataset, *, solver, max_iter, max_epochs, threads):
    """Fit ``net`` on ``dataset``; return the number of iterations run.

    L-BFGS counts its iterations (``n_iter_``, as scikit-learn's), the
    stochastic solvers their epochs. A run that stops at its limit without
    meeting ``tol`` warns with scikit-learn's ``ConvergenceWarning``.
    """
    with torch_threads(threads):
        net.fit(dataset, None)
    if solver == "lbfgs":
        state = net.optimizer_.state[net.optimizer_.param_groups[0]["params"][0]]
        n_iter = int(state.get("n_iter", 0))
        limit, what = max_iter, "max_iter"
        max_eval = net.optimizer_.param_groups[0]["max_eval"]
        if state.get("func_evals", 0) >= max_eval and n_iter < max_iter:
            # torch's L-BFGS also stops at max_eval (1.25 max_iter) evaluations
            n_iter, limit = max_iter, max_iter
        # skorch records the loss of L-BFGS's first evaluation; the history
        # should say where the optimization ended
        with torch.no_grad(), torch_threads(threads):
            Xb, yb = dataset.batch(torch.arange(len(dataset)))
            net.module_.eval()
            loss = net.get_loss(net.infer(Xb), yb, X=Xb, training=False)
        net.history.record("train_loss", float(loss))
    else:
        # max_epochs is a training budget (fine-tuning recipes fix it), not a
        # convergence limit: no warning when it is used up
        n_iter, limit, what = len(net.history), np.inf, "max_epochs"
    if n_iter >= limit:
        warn_user(
            f"solver={solver!r} reached {what}={limit} without converging "
            f"(tol not met). Raise {what}, or check the features' scale.",
            ConvergenceWarning,
        )
    return n_iter
