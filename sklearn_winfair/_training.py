"""The skorch net that trains the new head, and the data it iterates over.

Which library does what here: skorch runs the training loop (callbacks,
history, early stopping, ``optimizer__*`` parameters); torch computes the
loss and the fairness penalty (:mod:`sklearn_winfair.penalties`).

skorch's default data path indexes a ``Dataset`` one row at a time and
collates the rows into a batch. The cached features are already one tensor,
so :class:`TensorBatches` and :class:`BatchIterator` hand skorch whole
batches sliced from a shuffled index (``torch.randperm``), which is what a
plain torch loop does.
"""

import math

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochTimer, PassthroughScoring, PrintLog
from torch import nn
from torch.utils.data import Dataset, Subset

from .exceptions import TrainingDivergedError
from .penalties import demographic_parity_penalty, equalized_odds_penalty

__all__ = [
    "BatchIterator",
    "FloatHead",
    "HeadModule",
    "HeadNet",
    "StopOnNonFiniteLoss",
    "TensorBatches",
    "TrunkAndHead",
]


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
        Draw a new ``torch.randperm`` (global torch RNG) every epoch.
    """

    def __init__(self, dataset, batch_size, shuffle=False):
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

    def __len__(self):
        n = len(self.dataset) if self.indices is None else len(self.indices)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.dataset) if self.indices is None else len(self.indices)
        if self.shuffle:
            order = torch.randperm(n)
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
        return self.head(x)


class TrunkAndHead(nn.Module):
    """Whole model for training without a feature cache; the trunk stays in eval.

    Parameters
    ----------
    model : torch.nn.Module
        The frozen backbone with the new head in place.
    head : torch.nn.Module
        The trainable head inside ``model``.
    call : callable
        ``call(model, batch) -> logits`` (keyword arguments for a mapping,
        logits found in any output format).
    """

    def __init__(self, model, head, call):
        super().__init__()
        self.model = model
        self.head = head
        self.call = call

    def train(self, mode=True):
        super().train(mode)
        self.model.eval()
        self.head.train(mode)
        return self

    def forward(self, x, **_):
        return self.call(self.model, x)


class FloatHead(nn.Module):
    """Run a head in float32 inside a half-precision trunk.

    The frozen trunk keeps its dtype (fp16 / bf16); the trainable head,
    whose optimizer state and small gradients underflow in half precision,
    computes in float32 and returns float32 logits.

    Parameters
    ----------
    head : torch.nn.Module
        A float32 head.
    """

    #: :func:`~sklearn_winfair._factorize.merge_low_rank` removes this wrapper.
    _merge_unwrap = True

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x):
        """Return ``head(x.float())``."""
        return self.head(x.float())


class StopOnNonFiniteLoss(Callback):
    """Stop training with a clear error when the loss becomes NaN or inf."""

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if training and loss is not None and not math.isfinite(loss.item()):
            epoch = len(net.history)
            raise TrainingDivergedError(
                f"The training loss became {loss.item()} in epoch {epoch}. "
                "Lower lr (or penalty_strength), or check the features for "
                "extreme values."
            )


class HeadNet(NeuralNetClassifier):
    """skorch classifier for the head: weighted loss plus an optional penalty.

    Batches are dicts ``{"x": ..., "group": codes, "sample_weight": w}``.
    The loss is the ``sample_weight``-weighted mean of the per-row
    cross-entropy (the plain mean without weights); the penalty is computed
    per mini-batch on the predicted probability of the positive class.
    """

    def __init__(self, *args, fairness_penalty=None, penalty_strength=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength

    @property
    def _default_callbacks(self):
        # no valid_acc: it would re-collect y from a dataset skorch cannot read
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("print_log", PrintLog()),
        ]

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weight = X.get("sample_weight") if isinstance(X, dict) else None
        if weight is None:
            loss = nn.functional.cross_entropy(y_pred, y_true)
        else:
            per_row = nn.functional.cross_entropy(y_pred, y_true, reduction="none")
            loss = (per_row * weight).sum() / weight.sum().clamp(min=1e-12)
        if self.fairness_penalty is None or self.penalty_strength == 0:
            return loss
        proba = torch.softmax(y_pred, dim=1)[:, 1]
        groups = X["group"]
        if self.fairness_penalty == "demographic_parity":
            penalty = demographic_parity_penalty(proba, groups, sample_weight=weight)
        else:
            penalty = equalized_odds_penalty(
                proba, y_true, groups, sample_weight=weight
            )
        return loss + self.penalty_strength * penalty
