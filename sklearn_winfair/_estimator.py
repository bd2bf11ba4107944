"""The public estimator: weight-importance-neutralized low-rank fine-tuning.

Which library does what:

* scikit-learn: parameter validation, input checks (``validate_data``),
  label encoding, metadata routing, the linear probe
  (:class:`~sklearn.linear_model.LogisticRegression`).
* torch: the backbone, per-sample gradients (:mod:`torch.func`), the SVD.
* skorch: the training loop of the new head (:class:`NeuralNetClassifier`).
* fairlearn: the fairness metrics (see :mod:`sklearn_winfair._fairness`).
"""

import copy
from numbers import Integral, Real

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, ProgressBar
from torch import nn
from tqdm.auto import tqdm

from ._factorize import factorize_linear
from ._fairness import demographic_parity_penalty, equalized_odds_penalty
from ._importance import (
    floor_importance,
    group_row_importance,
    linear_layer_names,
    neutral_importance,
)
from ._validation import (
    _MISSING_SENSITIVE,
    _TOO_FEW_GROUPS,
    check_group_weights,
    check_random_seed,
    check_sensitive_features,
    encode_groups,
)
from .exceptions import TrainingDivergedError

__all__ = ["FairLowRankFineTuner"]


# --------------------------------------------------------------------------
# torch helpers
# --------------------------------------------------------------------------
def _resolve_head(model, head):
    """Return the qualified name of the head inside ``model``."""
    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if head is None:
        if not linear_names:
            raise ValueError(
                "backbone contains no torch.nn.Linear layer, so there is no "
                "default head. Pass head='<name of the submodule that maps "
                "features to logits>'."
            )
        return linear_names[-1]
    if not isinstance(head, str):
        raise TypeError(
            f"head must be None or the name of a submodule, got "
            f"{type(head).__name__}."
        )
    names = [n for n, _ in model.named_modules() if n]
    if head not in names:
        raise ValueError(
            f"head={head!r} is not a submodule of backbone. Submodules: "
            f"{names[:20]}{' ...' if len(names) > 20 else ''}."
        )
    if not linear_layer_names(model.get_submodule(head)):
        raise ValueError(
            f"head={head!r} holds no torch.nn.Linear layer; name a module that "
            "does."
        )
    return head


def _replace_submodule(model, name, new):
    """Put ``new`` at ``name`` in ``model`` (in place) and return ``model``."""
    if name == "":
        return new
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model


def _to_tensor(X, dtype):
    """Return X as a CPU tensor (sharing memory when possible; never written to).

    Batches are copied to the device one at a time (:func:`_batch`), so a
    backbone that works in place never touches the caller's array, and X
    never has to fit on the device as a whole.
    """
    arr = np.asarray(X)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, copy=True, order="C")
    return torch.from_numpy(arr).to(dtype=dtype)


def _batch(X, start, batch_size, device):
    """Rows ``start:start + batch_size`` of X, copied onto ``device``."""
    return X[start : start + batch_size].to(device, copy=True)


def _batches(n, batch_size, verbose, desc):
    starts = range(0, n, batch_size)
    if verbose:
        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    return starts


@torch.no_grad()
def _layer_inputs(model, layer, X, batch_size, verbose, desc, check_output=False,
                  device=None):
    """Run ``model`` over ``X`` in batches and yield the inputs of ``layer``.

    With ``check_output``, also check on the first batch that ``layer``'s
    output is ``model``'s output (the head must produce the logits).
    """
    captured = {}

    def pre_hook(module, args):
        if not captured.get("active"):  # the head called outside our forward
            return
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            raise ValueError(
                "The head must take a single tensor as input; got "
                f"{len(args)} positional argument(s)."
            )
        if "x" in captured:  # pragma: no cover - exotic backbones
            raise ValueError(
                "The head is called more than once per forward pass; name a "
                "head that is applied once (head=...)."
            )
        captured["x"] = args[0]

    def post_hook(module, args, output):
        if captured.get("active"):
            captured["out"] = output

    handles = [layer.register_forward_pre_hook(pre_hook)]
    if check_output:
        handles.append(layer.register_forward_hook(post_hook))
    try:
        for i, start in enumerate(_batches(len(X), batch_size, verbose, desc)):
            captured.clear()
            captured["active"] = True
            try:
                xb = X[start : start + batch_size]
                if device is not None:
                    xb = _batch(X, start, batch_size, device)
                out = model(xb)
            finally:
                captured["active"] = False
            if "x" not in captured:
                raise ValueError(
                    "The head was not called in the backbone's forward pass."
                )
            if check_output and i == 0 and not (
                isinstance(out, torch.Tensor)
                and out.shape == captured["out"].shape
                and torch.equal(out, captured["out"])
            ):
                raise ValueError(
                    "The head's output is not the backbone's output. The head "
                    "must be the last step of forward and return the class "
                    "logits (no softmax or other layer after it)."
                )
            yield captured["x"].detach()
    finally:
        for h in handles:
            h.remove()


def _extract_features(fingerprint, model, head, X, batch_size, verbose, device):
    """Frozen features of ``X`` (the head's input), as a numpy array.

    ``fingerprint`` identifies ``(backbone weights, head, X)`` for
    :class:`joblib.Memory`, which ignores the other arguments.
    """
    batches = _layer_inputs(
        model, head, X, batch_size, verbose, "frozen features", check_output=True,
        device=device,
    )
    # float32 on disk: numpy has no bfloat16
    return torch.cat(list(batches)).float().cpu().numpy()


def _fingerprint(backbone, head_name, X):
    """Content hash of the backbone (architecture and weights), head and X."""
    state = []
    for k, v in backbone.state_dict().items():
        v = v.detach().cpu()
        values = v.float() if v.is_floating_point() else v
        state.append((k, str(v.dtype), values.numpy()))
    return joblib.hash((repr(backbone), state, head_name, X))


class _HeadModule(nn.Module):
    """Let skorch feed ``{"x": features, "group": codes}`` to the head."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x, group=None):
        return self.head(x)


class _TrunkAndHead(nn.Module):
    """Whole model for training without a feature cache; the trunk stays in eval."""

    def __init__(self, model, head):
        super().__init__()
        self.model = model
        self.head = head

    def train(self, mode=True):
        super().train(mode)
        self.model.eval()
        self.head.train(mode)
        return self

    def forward(self, x, group=None):
        return self.model(x)


class _StopOnNonFiniteLoss(Callback):
    """Stop training with a clear error when the loss becomes NaN or inf."""

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if training and loss is not None and not torch.isfinite(loss).all():
            epoch = len(net.history)
            raise TrainingDivergedError(
                f"The training loss became {loss.item()} in epoch {epoch}. "
                "Lower lr (or penalty_strength), or check the features for "
                "extreme values."
            )


class _HeadNet(NeuralNetClassifier):
    """skorch classifier that adds the optional fairness penalty to the loss.

    The penalty is computed per mini-batch on predicted probabilities of the
    positive class, with the batch's group codes read from ``X["group"]``.
    """

    def __init__(self, *args, fairness_penalty=None, penalty_strength=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if self.fairness_penalty is None or self.penalty_strength == 0:
            return loss
        proba = torch.softmax(y_pred, dim=1)[:, 1]
        groups = torch.as_tensor(X["group"], device=proba.device)
        if self.fairness_penalty == "demographic_parity":
            penalty = demographic_parity_penalty(proba, groups)
        else:
            y_true = torch.as_tensor(y_true, device=proba.device)
            penalty = equalized_odds_penalty(proba, y_true, groups)
        return loss + self.penalty_strength * penalty


# --------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------
class FairLowRankFineTuner(ClassifierMixin, BaseEstimator):
    """Fine-tune a frozen backbone's head through a neutralized low-rank factorization.

    The head (by default the backbone's last ``nn.Linear``) is replaced by two
    smaller layers found by a weighted SVD of its weight, whose weights are the
    square roots of each group's empirical Fisher importance, mixed so that no
    group's importance dominates (Zhang & Zhou, 2024). Only the new layers are
    trained, through skorch; everything else stays frozen.

    Read more in the README's "The method in brief".

    Parameters
    ----------
    backbone : torch.nn.Module
        Pre-trained model whose forward maps a batch of ``X`` to class logits.
        Never modified: ``fit`` works on a deep copy.
    head : str or None, default=None
        Name of the submodule to fine-tune (as in ``named_modules``). ``None``
        means the last ``nn.Linear`` by registration order. A module with
        several ``nn.Linear`` layers (an MLP head) has each layer with
        ``min(in, out) > rank`` factorized with its own importance. The head's
        output must be the backbone's output, and its output column ``j`` is
        taken to be ``classes_[j]``.
    rank : int or None, default=4
        Rank ``r`` kept by the weighted SVD. ``None``: no factorization, plain
        fine-tuning of the head (the paper's TL baseline).
    alpha : float in [0, 1], default=0.5
        Neutralization weight with two groups:
        ``Ihat_N = alpha * Ihat_g0 + (1 - alpha) * Ihat_g1`` where ``g0`` is the
        first group in sorted order (``groups_[0]``). With more than two groups
        it must stay 0.5; use ``group_weights`` instead.
    importance : {"neutral", "fisher", "uniform"}, default="neutral"
        ``"neutral"``: per-group empirical Fisher, neutralized (the paper).
        ``"fisher"``: pooled empirical Fisher over all rows (FWSVD).
        ``"uniform"``: identity weights, plain truncated SVD (f+SVD).
    group_weights : dict or None, default=None
        With more than two groups, ``group -> weight`` for the weighted mean of
        the groups' ``sqrt(I_s)``; ``None`` is the uniform mean.
    head_init : {"pretrained", "probe"}, default="pretrained"
        ``"pretrained"`` decomposes the backbone's head as it is; its output
        size must equal the number of classes. ``"probe"`` first replaces the
        head's last ``nn.Linear`` by a multinomial logistic regression fitted
        on its (frozen) input, for a new task with other classes.
    fairness_penalty : {"demographic_parity", "equalized_odds"} or None, default=None
        Add a differentiable group-gap penalty on predicted probabilities to
        each mini-batch loss (the paper's Retrain+DP/EO). Binary targets only.
        Combinable with any ``importance``.
    penalty_strength : float >= 0, default=1.0
        Multiplier of the penalty.
    max_epochs : int, default=20
        Training epochs of the new head.
    lr : float, default=1e-2
        Learning rate.
    batch_size : int, default=128
        Mini-batch size for training; also used for feature extraction and
        prediction.
    optimizer : type, default=torch.optim.Adam
        Optimizer class.
    callbacks : list or None, default=None
        Extra skorch callbacks (copied before use).
    train_split : callable or None, default=None
        The ``train_split`` of skorch; ``None`` trains on every row.
    cache_features : bool, default=True
        Compute the frozen features once per fit (in batches, without
        gradients) and train the head on them. ``False`` runs the frozen
        backbone at each training step instead, for data that do not fit in
        memory (``head_init="probe"`` still collects them once).
    memory : str, joblib.Memory or None, default=None
        Where to cache the frozen features across fits, as
        :class:`~sklearn.pipeline.Pipeline` caches transformers: a folder path
        or a :class:`joblib.Memory`. The key is a hash of the backbone's
        architecture and weights, the head name and ``X``, so the fits of a
        ``GridSearchCV`` over ``rank`` or ``alpha`` on the same fold extract
        the features once. ``None`` caches within a fit only.
    device : str, default="cpu"
        Torch device for the backbone and the head.
    random_state : int, RandomState instance or None, default=None
        Seeds torch (in a forked RNG, so the global state is left alone) for
        the shuffling of mini-batches. Two fits with the same int give
        identical predictions.
    verbose : int, default=0
        ``0`` prints nothing; ``1`` shows a progress bar for feature
        extraction and skorch's per-epoch log; ``2`` adds a per-batch bar.
    net_params : dict or None, default=None
        More keyword arguments for the skorch net, e.g.
        ``{"optimizer__weight_decay": 1e-4}``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features (``X.shape[1]``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    groups_ : ndarray of shape (n_groups,) or None
        Sorted groups of ``sensitive_features`` (``None`` when not given).
    head_name_ : str
        Qualified name of the head in the backbone.
    factorized_layers_ : list of str
        Qualified names of the ``nn.Linear`` layers that were factorized.
    rank_ : int or None
        The rank used (``None`` when nothing was factorized).
    group_importance_ : dict of str to ndarray of shape (n_groups, d) or None
        Raw row importance ``I_s`` of each factorized layer, one row per
        group; ``None`` without ``sensitive_features`` or factorization.
    importance_ : dict of str to ndarray of shape (d,)
        Diagonal of the importance matrix used in each weighted SVD (ones for
        ``"uniform"``).
    neutral_importance_ : dict of str to ndarray of shape (d,) or None
        Diagonal of ``Ihat_N`` (``importance="neutral"`` only).
    n_trainable_params_ : int
        Number of parameters trained.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch net that trained the head.
    model_ : torch.nn.Module
        Frozen trunk with the new head; see :meth:`export_module`.

    See Also
    --------
    sklearn_winfair.fairness_metric_frame : Audit the fitted estimator by group.

    Notes
    -----
    The empirical Fisher (paper Eq. 1) is computed on the pre-trained head
    evaluated on the new task's training rows with their true labels, from
    per-sample squared gradients of the cross-entropy. For a binary target and
    a single linear head, ``min(d, k) = 2`` allows only ``rank=1``, and a
    rank-1 head can still express every linear decision rule, so the
    importances mostly move the starting point; truncation (and so the
    method) matters with multi-layer heads and multiclass targets.

    References
    ----------
    .. [1] Z. Zhang and J. Zhou, "Fair low-rank fine-tuning via weight
       importance neutralization" (arXiv:2403.00625), 2024.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair import FairLowRankFineTuner
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> backbone = torch.nn.Sequential(
    ...     torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 5)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> s = rng.choice(["a", "b"], size=200)
    >>> clf = FairLowRankFineTuner(backbone, rank=1, random_state=0)
    >>> clf.fit(X, y, sensitive_features=s).factorized_layers_
    ['2']
    >>> clf.predict_proba(X[:2]).dtype
    dtype('float64')
    """

    _parameter_constraints = {
        "backbone": [nn.Module],
        "head": [str, None],
        "rank": [Interval(Integral, 1, None, closed="left"), None],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "importance": [StrOptions({"neutral", "fisher", "uniform"})],
        "group_weights": [dict, None],
        "head_init": [StrOptions({"pretrained", "probe"})],
        "fairness_penalty": [
            StrOptions({"demographic_parity", "equalized_odds"}),
            None,
        ],
        "penalty_strength": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [type],
        "callbacks": [list, None],
        "train_split": [callable, None],
        "cache_features": ["boolean"],
        "memory": [None, str, HasMethods(["cache"])],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "net_params": [dict, None],
    }

    def __init__(
        self,
        backbone,
        *,
        head=None,
        rank=4,
        alpha=0.5,
        importance="neutral",
        group_weights=None,
        head_init="pretrained",
        fairness_penalty=None,
        penalty_strength=1.0,
        max_epochs=20,
        lr=1e-2,
        batch_size=128,
        optimizer=torch.optim.Adam,
        callbacks=None,
        train_split=None,
        cache_features=True,
        memory=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.backbone = backbone
        self.head = head
        self.rank = rank
        self.alpha = alpha
        self.importance = importance
        self.group_weights = group_weights
        self.head_init = head_init
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.train_split = train_split
        self.cache_features = cache_features
        self.memory = memory
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, sensitive_features=None):
        """Fit the new low-rank head on the frozen backbone's features.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Input of the backbone: a 2-d array or DataFrame, or an n-d array
            (e.g. ``N x C x H x W`` images, not flattened).
        y : array-like of shape (n_samples,)
            Class labels (strings or integers; two or more classes).
        sensitive_features : array-like, Series or DataFrame, default=None
            Group membership of each row; several columns are merged into
            intersectional groups. Required for ``importance="neutral"`` (when
            ``rank`` is set) and for a ``fairness_penalty``.

        Returns
        -------
        self : FairLowRankFineTuner
            The fitted estimator.
        """
        X, y = validate_data(
            self, X, y, allow_nd=True, dtype=[np.float32, np.float64],
            ensure_all_finite=True,
        )
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"y contains only one class ({self.classes_[0]!r}); a classifier "
                "needs at least two classes, got 1 class."
            )
        y_enc = encoder.transform(y).astype(np.int64)
        codes, n_groups = self._check_groups(sensitive_features, len(X), n_classes)
        if self.fairness_penalty is not None and n_classes != 2:
            raise ValueError(
                f"fairness_penalty={self.fairness_penalty!r} needs a binary "
                f"target, but y has {n_classes} classes."
            )
        if not isinstance(self.backbone, nn.Module):
            raise TypeError("backbone must be a torch.nn.Module.")

        seed = check_random_seed(self.random_state)
        on_cpu = torch.device(self.device).type == "cpu"
        # fork the RNGs we seed, so the caller's global state is left alone;
        # on CPU only the CPU generator is seeded (torch.manual_seed would
        # also reseed every accelerator)
        with torch.random.fork_rng(
            devices=[] if on_cpu else None, enabled=seed is not None
        ):
            if seed is not None and on_cpu:
                torch.default_generator.manual_seed(seed)
            elif seed is not None:
                torch.manual_seed(seed)
            self._fit(X, y_enc, codes, n_groups, n_classes)
        return self

    def _check_groups(self, sensitive_features, n_samples, n_classes):
        """Validate the groups; return (codes or None, n_groups)."""
        reasons = []
        if self.rank is not None and self.importance == "neutral":
            reasons.append("importance='neutral'")
        if self.fairness_penalty is not None:
            reasons.append(f"fairness_penalty={self.fairness_penalty!r}")
        reason = " and ".join(reasons)
        if sensitive_features is None:
            if reasons:
                raise ValueError(_MISSING_SENSITIVE.format(reason=reason))
            self.groups_ = None
            return None, 1
        labels = check_sensitive_features(sensitive_features, n_samples)
        self.groups_, codes = encode_groups(labels)
        n_groups = len(self.groups_)
        if reasons and n_groups < 2:
            raise ValueError(
                _TOO_FEW_GROUPS.format(
                    n=n_groups, groups=list(self.groups_), reason=reason
                )
            )
        uses_alpha = self.rank is not None and self.importance == "neutral"
        if uses_alpha and self.alpha != 0.5 and self.group_weights is not None:
            raise ValueError(
                f"alpha={self.alpha} and group_weights are both set; they say the "
                "same thing two ways. Set group_weights only (alpha=0.5) or "
                "alpha only (group_weights=None)."
            )
        if uses_alpha and n_groups > 2 and self.alpha != 0.5:
            raise ValueError(
                f"alpha={self.alpha} only applies to two groups, but "
                f"sensitive_features has {n_groups}. Leave alpha=0.5 and set "
                "group_weights={group: weight, ...} instead."
            )
        if self.group_weights is not None:
            check_group_weights(self.group_weights, self.groups_)
        return codes, n_groups

    def _group_mix(self):
        """Weights of the groups in ``Ihat_N``, aligned with ``groups_``."""
        if self.group_weights is not None:
            return check_group_weights(self.group_weights, self.groups_)
        if len(self.groups_) == 2:
            return np.array([self.alpha, 1.0 - self.alpha])
        return check_group_weights(None, self.groups_)

    def _fit(self, X, y_enc, codes, n_groups, n_classes):
        device = torch.device(self.device)
        model = copy.deepcopy(self.backbone).to(device)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.head_name_ = _resolve_head(model, self.head)
        head = model.get_submodule(self.head_name_)
        dtype = next(model.parameters()).dtype  # what the trunk takes
        X_t = _to_tensor(X, dtype)
        y_t = torch.from_numpy(y_enc).to(device)
        codes_t = torch.from_numpy(
            codes if codes is not None else np.zeros(len(X), dtype=np.int64)
        ).to(device)
        verbose = self.verbose > 0

        def head_inputs(desc):
            # late binding: uses the current `model` and `head` (after a probe)
            return _layer_inputs(
                model, head, X_t, self.batch_size, verbose, desc, check_output=True,
                device=device,
            )

        features = None
        if self.cache_features:
            if self.memory is None:
                features = torch.cat(list(head_inputs("frozen features")))
            else:
                extract = check_memory(self.memory).cache(
                    _extract_features,
                    ignore=["model", "head", "X", "batch_size", "verbose", "device"],
                )
                key = _fingerprint(self.backbone, self.head_name_, X)
                cached = extract(key, model, head, X_t, self.batch_size, verbose,
                                 device)
                head_dtype = next(head.parameters()).dtype
                features = torch.from_numpy(cached).to(device, head_dtype)

        # 1. the head to decompose: pre-trained, or a linear probe in its place
        linear_names = linear_layer_names(head)
        last_name = linear_names[-1]
        last = head.get_submodule(last_name) if last_name else head
        if self.head_init == "probe":
            head = self._fit_probe(head, last_name, last, features, head_inputs,
                                   y_enc, n_classes, dtype, device)
            model = _replace_submodule(model, self.head_name_, head)
        elif last.out_features != n_classes:
            raise ValueError(
                f"The head's last layer has out_features={last.out_features} "
                f"but y has {n_classes} classes. Pass head_init='probe' to fit "
                "a new output layer on the frozen features first."
            )

        # 2. which layers to factorize: every linear layer, at min(rank, in, out)
        to_factorize = list(linear_names) if self.rank is not None else []
        ranks = {}
        for name in to_factorize:
            layer = head.get_submodule(name) if name else head
            ranks[name] = min(self.rank, layer.in_features, layer.out_features)

        # 3. importances and the weighted SVD
        self.group_importance_ = None
        self.neutral_importance_ = None
        self.importance_ = {}
        new_head = copy.deepcopy(head)
        if to_factorize:
            ihats, group_rows = self._importances(
                head, to_factorize, features, head_inputs, y_t, codes_t, codes,
                n_groups,
            )
            for name in to_factorize:
                layer = head.get_submodule(name) if name else head
                low_rank = factorize_linear(layer, ihats[name], ranks[name])
                new_head = _replace_submodule(new_head, name, low_rank)
            self.importance_ = {self._qualified(n): ihats[n] for n in to_factorize}
            if group_rows is not None:
                self.group_importance_ = {
                    self._qualified(n): group_rows[n] for n in to_factorize
                }
            if self.importance == "neutral":
                self.neutral_importance_ = dict(self.importance_)
        self.factorized_layers_ = [self._qualified(n) for n in to_factorize]
        self.ranks_ = {self._qualified(n): r for n, r in ranks.items()}
        self.rank_ = max(ranks.values()) if ranks else None
        for p in new_head.parameters():
            p.requires_grad_(True)
        model = _replace_submodule(model, self.head_name_, new_head)
        self.n_trainable_params_ = int(sum(p.numel() for p in new_head.parameters()))

        # 4. train the new head through skorch
        if self.cache_features:
            module = _HeadModule(new_head)
            X_train = {"x": features, "group": codes_t}
        else:
            module = _TrunkAndHead(model, new_head)
            X_train = {"x": X_t, "group": codes_t.cpu()}
        self.net_ = self._make_net(module, n_classes)
        self.net_.fit(X_train, y_t)
        model.eval()
        self.model_ = model

    def _qualified(self, inner_name):
        return ".".join(p for p in (self.head_name_, inner_name) if p)

    def _fit_probe(self, head, last_name, last, features, head_inputs, y_enc,
                   n_classes, dtype, device):
        """Replace the head's last linear layer by a fitted logistic regression."""
        if features is not None:
            source = [features]
        else:
            source = list(head_inputs("probe features"))
        with torch.no_grad():
            inputs = torch.cat(
                [
                    torch.cat(list(_layer_inputs(head, last, f, self.batch_size,
                                                 False, "")))
                    for f in source
                ]
            )
        probe = LogisticRegression(max_iter=1000)
        probe.fit(inputs.cpu().double().numpy(), y_enc)
        coef, intercept = probe.coef_, probe.intercept_
        if n_classes == 2:  # one logit difference -> two symmetric columns
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        new_last = nn.Linear(last.in_features, n_classes, dtype=dtype).to(device)
        with torch.no_grad():
            new_last.weight.copy_(torch.as_tensor(coef, dtype=dtype))
            new_last.bias.copy_(torch.as_tensor(intercept, dtype=dtype))
        new_last.requires_grad_(False)
        head = copy.deepcopy(head)
        return _replace_submodule(head, last_name, new_last)

    def _importances(self, head, names, features, head_inputs, y_t, codes_t,
                     codes, n_groups):
        """Return ({layer: ihat diagonal}, {layer: per-group I_s} or None)."""
        if self.importance == "uniform":
            ihats = {}
            for n in names:
                layer = head.get_submodule(n) if n else head
                ihats[n] = np.ones(layer.in_features)
            return ihats, None
        if features is not None:
            source = features
        else:
            step = self.batch_size
            source = (
                (f, y_t[i : i + len(f)], codes_t[i : i + len(f)])
                for f, i in zip(head_inputs("Fisher"), range(0, len(y_t), step),
                                strict=True)
            )
        rows = group_row_importance(
            head, source, y_t, codes_t, n_groups, batch_size=self.batch_size
        )
        rows = {n: rows[n] for n in names}
        if self.importance == "fisher":
            # pooled Fisher = row-count-weighted mean of the groups' Fisher
            counts = np.bincount(
                codes if codes is not None else np.zeros(len(y_t), dtype=int),
                minlength=n_groups,
            ).astype(float)
            pooled = {n: (counts / counts.sum()) @ r for n, r in rows.items()}
            ihats = {n: floor_importance(np.sqrt(v)) for n, v in pooled.items()}
        else:
            mix = self._group_mix()
            ihats = {n: neutral_importance(r, mix) for n, r in rows.items()}
        return ihats, (rows if codes is not None else None)

    #: skorch arguments the estimator sets itself (net_params may not).
    _RESERVED_NET_PARAMS = {
        "module": "backbone/head", "criterion": "(cross-entropy, fixed)",
        "optimizer": "optimizer", "lr": "lr", "max_epochs": "max_epochs",
        "batch_size": "batch_size", "train_split": "train_split",
        "callbacks": "callbacks", "device": "device", "verbose": "verbose",
        "classes": "(taken from y)", "iterator_train__shuffle": "(always True)",
        "fairness_penalty": "fairness_penalty",
        "penalty_strength": "penalty_strength",
    }

    def _make_net(self, module, n_classes):
        clash = sorted(set(self.net_params or {}) & set(self._RESERVED_NET_PARAMS))
        if clash:
            hints = {k: self._RESERVED_NET_PARAMS[k] for k in clash}
            raise ValueError(
                f"net_params sets {clash}, which the estimator sets itself; use "
                f"its own parameter instead: {hints}."
            )
        callbacks = copy.deepcopy(self.callbacks) if self.callbacks else []
        callbacks = list(callbacks) + [("stop_on_nonfinite", _StopOnNonFiniteLoss())]
        if self.verbose > 1:
            callbacks.append(("progress_bar", ProgressBar()))
        return _HeadNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=self.train_split,
            callbacks=callbacks,
            device=self.device,
            verbose=int(self.verbose > 0),
            classes=list(range(n_classes)),
            iterator_train__shuffle=True,
            fairness_penalty=self.fairness_penalty,
            penalty_strength=self.penalty_strength,
            **(self.net_params or {}),
        )

    # -------------------------------------------------------------- predict
    @torch.no_grad()
    def _logits(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, allow_nd=True, dtype=[np.float32, np.float64],
            ensure_all_finite=True,
        )
        device = torch.device(self.device)
        dtype = next(self.model_.parameters()).dtype
        X_t = _to_tensor(X, dtype)
        self.model_.eval()
        out = [
            self.model_(_batch(X_t, i, self.batch_size, device))
            for i in range(0, len(X_t), self.batch_size)
        ]
        return torch.cat(out).double()

    def predict_proba(self, X):
        """Return class probabilities (softmax of the logits), as float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Input of the backbone.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float64
            Columns follow ``classes_``.
        """
        return torch.softmax(self._logits(X), dim=1).cpu().numpy()

    def decision_function(self, X):
        """Return the logits (for binary targets, the logit difference).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Input of the backbone.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, ``logit[:, 1] - logit[:, 0]`` (positive favours
            ``classes_[1]``), as scikit-learn's binary classifiers do.
        """
        logits = self._logits(X).cpu().numpy()
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict(self, X):
        """Return the class with the largest probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Input of the backbone.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        indices = self._logits(X).argmax(dim=1).cpu().numpy()
        return self.classes_[indices]

    def export_module(self):
        """Return a plain torch module (frozen trunk + fine-tuned head).

        Returns
        -------
        module : torch.nn.Module
            A copy in eval mode, mapping a batch of ``X`` to logits; no
            scikit-learn or skorch needed to use it.
        """
        check_is_fitted(self)
        module = copy.deepcopy(self.model_)
        module.eval()
        return module
