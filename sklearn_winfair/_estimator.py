"""The public estimator: weight-importance-neutralized low-rank fine-tuning.

This module keeps the scikit-learn contract (parameters, validation, the
order of the steps of a fit, prediction, export); each step lives in a module
of its own:

* :mod:`._inputs`: X in every form, batched and cast per batch.
* :mod:`._outputs`: where the logits are in the backbone's output.
* :mod:`._features`: frozen-feature extraction and the feature store.
* :mod:`._importance`: per-group empirical Fisher, neutralization.
* :mod:`._factorize`: weighted SVD, ``LowRankLinear``, the merge on export.
* :mod:`._training`: the skorch net that trains the head.

Which library does what: scikit-learn validates parameters, labels and
weights, routes metadata and fits the linear probe
(:class:`~sklearn.linear_model.LogisticRegression`); torch runs the backbone
and computes gradients and SVDs; skorch trains the head (with its
``EarlyStopping``); fairlearn computes the metrics (:mod:`sklearn_winfair.metrics`).
"""

import contextlib
import copy
import difflib
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_is_fitted,
    check_memory,
)
from skorch.callbacks import EarlyStopping, ProgressBar
from skorch.helper import predefined_split
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils.data import Subset

from ._factorize import factorize_linear, merge_low_rank
from ._features import extract_head_inputs
from ._importance import (
    floor_importance,
    group_row_importance,
    linear_layer_names,
    neutral_importance,
)
from ._inputs import InputData, call_backbone, check_input
from ._outputs import check_output_spec, find_logits
from ._store import backbone_fingerprint, cached_features
from ._training import (
    BatchIterator,
    FloatHead,
    HeadModule,
    HeadNet,
    StopOnNonFiniteLoss,
    TensorBatches,
    TrunkAndHead,
)
from ._validation import (
    _MISSING_SENSITIVE,
    _TOO_FEW_GROUPS,
    check_group_weights,
    check_random_seed,
    check_sensitive_features,
    encode_groups,
)
from .exceptions import HeadClassesWarning, SmallGroupWarning

__all__ = ["FairLowRankFineTuner"]

#: Devices where torch's fused Adam / AdamW kernels run.
_FUSED = ("cpu", "cuda")

#: A group with fewer rows than this of some class is named in a warning.
_MIN_ROWS_PER_CLASS = 2


# --------------------------------------------------------------------------
# torch helpers that need the estimator's parameters
# --------------------------------------------------------------------------
def _check_device(device):
    """Return ``torch.device(device)`` or a ValueError naming what is there."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, AttributeError) as exc:
        raise ValueError(
            f"device={device!r} is not usable on this machine ({exc}). Devices "
            f"available here: {available}."
        ) from None
    return dev


def _modules_holding_linear(model):
    """Names of the submodules that are or contain an ``nn.Linear``."""
    holders = []
    for name, m in model.named_modules():
        if name and any(isinstance(sub, nn.Linear) for sub in m.modules()):
            holders.append(name)
    return holders


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
        close = difflib.get_close_matches(head, names, n=3, cutoff=0.5)
        holders = _modules_holding_linear(model)
        shown = holders[-15:]
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"head={head!r} is not a submodule of backbone.{hint} Submodules "
            f"that hold an nn.Linear (the last {len(shown)} of "
            f"{len(holders)}): {shown}."
        )
    if not linear_layer_names(model.get_submodule(head)):
        raise ValueError(
            f"head={head!r} holds no torch.nn.Linear layer; name a module that "
            f"does: {_modules_holding_linear(model)[-15:]}."
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


def _float_dtype(module):
    """Return the floating dtype of ``module``'s parameters (float32 if none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


#: A head with fewer trainable parameters than this trains on one CPU thread:
#: its matrix products are too small for more threads to pay their overhead.
_SMALL_HEAD_PARAMS = 1_000_000


def _training_threads(device, features, n_params):
    """Torch CPU threads for training the head (None: leave them as they are)."""
    if device.type != "cpu" or features is None or n_params >= _SMALL_HEAD_PARAMS:
        return None
    return 1


@contextlib.contextmanager
def _torch_threads(n):
    """Set torch's intra-op threads to ``n`` for the block, then restore them."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------
class FairLowRankFineTuner(ClassifierMixin, BaseEstimator):
    """Fine-tune a frozen backbone's head through a neutralized low-rank factorization.

    The head (by default the backbone's last ``nn.Linear``) is replaced by
    two smaller layers found by a weighted SVD of its weight, whose weights
    are the square roots of each group's empirical Fisher importance, mixed
    so that no group's importance dominates (Zhang & Zhou, 2024). Only the
    new layers are trained, through skorch; everything else stays frozen.

    Read more in the :ref:`User Guide <method>` and, for backbones and input
    formats, :ref:`backbones`.

    Parameters
    ----------
    backbone : torch.nn.Module
        Pre-trained model whose forward maps a batch of ``X`` to class
        logits (any output format, see ``output``). Never modified: ``fit``
        works on a deep copy. Its floating dtype (float32, float16,
        bfloat16) is kept for the frozen trunk; the trainable head, the
        Fisher and the SVD work in float32.
    head : str or None, default=None
        Name of the submodule to fine-tune (as in ``named_modules``). ``None``
        means the last ``nn.Linear`` by registration order. A module with
        several ``nn.Linear`` layers (an MLP head) has each layer factorized
        with its own importance. The head's output must be the backbone's
        logits.
    rank : int or None, default=4
        Rank kept by the weighted SVD: each head layer is factorized at
        ``min(rank, in_features, out_features)``. At full rank the
        factorization is exact at initialization and only changes how the
        head is parametrized in training (the paper's 20 -> 2 head at rank
        2). ``None``: no factorization, plain fine-tuning of the head (the
        paper's TL baseline).
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
    head_classes : array-like or None, default=None
        With ``head_init="pretrained"``, the label that each output column
        of the pre-trained head means, in column order; every label of ``y``
        must be among them, and ``classes_`` follows this order. ``None``
        takes column ``j`` as the ``j``-th sorted label, and warns
        (:class:`~sklearn_winfair.exceptions.HeadClassesWarning`) when the
        labels are not the integers ``0 .. k-1``.
    output : None, str, int or callable, default=None
        Where the logits are in the backbone's output. ``None``: a tensor, a
        Hugging Face ``ModelOutput``'s ``.logits``, a dict's ``"logits"`` or
        a tuple's first element. A ``str``: that attribute or key; an
        ``int``: that tuple index; a callable: ``output(out)``.
    fairness_penalty : {"demographic_parity", "equalized_odds"} or None, default=None
        Add a differentiable group-gap penalty on predicted probabilities to
        each mini-batch loss (the paper's Retrain+DP/EO). Binary targets only.
        Combinable with any ``importance``.
    penalty_strength : float >= 0, default=1.0
        Multiplier of the penalty.
    max_epochs : int, default=10
        Training epochs of the new head (an upper bound with
        ``early_stopping``).
    lr : float, default=1e-3
        Learning rate.
    batch_size : int, default=128
        Mini-batch size for training; also used for feature extraction and
        prediction.
    optimizer : type, default=torch.optim.Adam
        Optimizer class.
    callbacks : list or None, default=None
        Extra skorch callbacks (copied before use).
    train_split : callable or None, default=None
        The ``train_split`` of skorch; ``None`` trains on every row. Use
        ``early_stopping`` for a held-out fraction.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training rows
        and stop when their loss has not improved for ``n_iter_no_change``
        epochs, keeping the best epoch's weights (skorch's ``EarlyStopping``
        with ``load_best=True``).
    validation_fraction : float in (0, 1), default=0.1
        Share of the rows held out with ``early_stopping``.
    n_iter_no_change : int, default=5
        Patience of ``early_stopping``, in epochs.
    cache_features : bool, default=True
        Compute the frozen features once per fit (in batches, without
        gradients) and train the head on them. ``False`` runs the frozen
        backbone at each training step instead, for data that do not fit in
        memory (``head_init="probe"`` still collects them once).
    memory : str, joblib.Memory or None, default=None
        A folder (or a :class:`joblib.Memory`'s location) for a feature
        store: features keyed by the backbone's content and each row's
        content, so every fit of a ``GridSearchCV`` (any parameter, every
        fold and the refit) runs the backbone once per distinct row. Shared
        safely by processes and Dask workers that see the same folder.
        Used with ``cache_features=True``; ``None`` caches within a fit only.
    device : str or torch.device, default="cpu"
        Torch device for the backbone and the head; checked at the start of
        ``fit``.
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
        Class labels, in the order of the logits' columns.
    n_features_in_ : int
        ``X.shape[1]`` (not set for mapping inputs).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    input_shape_ : dict of str to tuple
        Shape of one row of each input (``{"X": (3, 32, 32)}`` for images,
        one entry per key of a mapping), checked at predict.
    groups_ : ndarray of shape (n_groups,) or None
        Sorted groups of ``sensitive_features`` (``None`` when not given).
    head_name_ : str
        Qualified name of the head in the backbone.
    factorized_layers_ : list of str
        Qualified names of the ``nn.Linear`` layers that were factorized.
    ranks_ : dict of str to int
        Rank used for each factorized layer, ``min(rank, in, out)``.
    rank_ : int or None
        The largest of ``ranks_`` (``None`` when nothing was factorized).
    truncation_error_ : dict of str to float
        For each factorized layer, the share of the importance-weighted
        weight that truncation discarded,
        ``||Ihat (W - A B)||_F / ||Ihat W||_F`` (0 at full rank).
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
        The skorch net that trained the head (its history, callbacks and
        optimizer); its ``module_`` is the head alone.
    model_ : torch.nn.Module
        Frozen trunk with the new head; see :meth:`export_module`.

    See Also
    --------
    sklearn_winfair.metrics.fairness_metric_frame : Audit the fitted estimator by group.

    Notes
    -----
    The empirical Fisher (paper Eq. 1) is computed on the pre-trained head
    evaluated on the new task's training rows with their true labels, from
    per-sample squared gradients of the cross-entropy. For a binary target and
    a single linear head, ``min(d, k) = 2``: rank 2 is exact and a rank-1
    head can still express every linear decision rule, so the importances
    mostly move the starting point; truncation (and so the method) matters
    with multi-layer heads and multiclass targets.

    References
    ----------
    .. [1] Y. Zhang and F. Zhou, "Bias Mitigation in Fine-tuning Pre-trained
       Models for Enhanced Fairness and Efficiency", arXiv:2403.00625, 2024.

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
    >>> clf.fit(X, y, sensitive_features=s).ranks_
    {'2': 1}
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
        "head_classes": ["array-like", None],
        "output": [None, str, Integral, callable],
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
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
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
        head_classes=None,
        output=None,
        fairness_penalty=None,
        penalty_strength=1.0,
        max_epochs=10,
        lr=1e-3,
        batch_size=128,
        optimizer=torch.optim.Adam,
        callbacks=None,
        train_split=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
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
        self.head_classes = head_classes
        self.output = output
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.train_split = train_split
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
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
    def fit(self, X, y, *, sensitive_features=None, sample_weight=None):
        """Fit the new low-rank head on the frozen backbone's features.

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone: a 2-d array or DataFrame, an n-d array
            (e.g. ``N x C x H x W`` images, not flattened; uint8 is passed
            as uint8), integer token ids (kept as integers), a memmap (read
            one batch at a time), or a mapping of equal-length arrays passed
            to ``forward`` as keyword arguments (wrap it in
            :class:`skorch.helper.SliceDict` for cross-validation).
        y : array-like of shape (n_samples,)
            Class labels (strings or integers; two or more classes).
        sensitive_features : array-like, Series or DataFrame, default=None
            Group membership of each row; several columns are merged into
            intersectional groups. Required for ``importance="neutral"`` (when
            ``rank`` is set) and for a ``fairness_penalty``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights for the training loss (a weighted mean
            of the per-row cross-entropy), the fairness penalty's group means,
            the Fisher importance (a weighted mean within each group) and the
            linear probe. A weight of 0 drops the row; all zero is an error.

        Returns
        -------
        self : FairLowRankFineTuner
            The fitted estimator.
        """
        device = _check_device(self.device)
        check_output_spec(self.output)
        if not isinstance(self.backbone, nn.Module):
            raise TypeError("backbone must be a torch.nn.Module.")
        if self.early_stopping and self.train_split is not None:
            raise ValueError(
                "early_stopping=True holds out validation_fraction of the rows "
                "itself; it cannot be combined with train_split. Set one of them."
            )
        data = check_input(self, X, reset=True)
        n = len(data)
        y = _check_y(y, estimator=self)
        if len(y) != n:
            raise ValueError(f"y has {len(y)} rows but X has {n}; they must match.")
        check_classification_targets(y)
        y_enc, n_classes = self._encode_labels(y)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(
                sample_weight, np.empty((n, 0)), dtype=np.float64,
                ensure_non_negative=True,
            )
        codes, n_groups = self._check_groups(sensitive_features, n, y_enc)
        if self.fairness_penalty is not None and n_classes != 2:
            raise ValueError(
                f"fairness_penalty={self.fairness_penalty!r} needs a binary "
                f"target, but y has {n_classes} classes."
            )

        seed = check_random_seed(self.random_state)
        on_cpu = device.type == "cpu"
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
            self._fit(data, y_enc, codes, n_groups, n_classes, weights, device, seed)
        return self

    def _encode_labels(self, y):
        """Set ``classes_``; return the labels as column indices of the head."""
        if self.head_classes is not None:
            if self.head_init == "probe":
                raise ValueError(
                    "head_classes names the columns of a pre-trained head, but "
                    "head_init='probe' fits new columns (in sorted label "
                    "order). Drop head_classes or use head_init='pretrained'."
                )
            classes = np.asarray(self.head_classes)
            if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
                raise ValueError(
                    "head_classes must be a 1-d list of distinct labels, one per "
                    f"output column of the head, got {self.head_classes!r}."
                )
            lookup = {label: j for j, label in enumerate(classes.tolist())}
            unknown = sorted({v for v in y.tolist() if v not in lookup}, key=str)
            if unknown:
                raise ValueError(
                    f"y has labels {unknown[:10]} that are not in head_classes "
                    f"{classes.tolist()}; every label must name a column of "
                    "the pre-trained head."
                )
            self.classes_ = classes
            y_enc = np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
        else:
            self.classes_, y_enc = np.unique(y, return_inverse=True)
            y_enc = y_enc.astype(np.int64).ravel()
        if len(np.unique(y_enc)) < 2:
            raise ValueError(
                f"y contains only one class ({y[0]!r}); a classifier needs at "
                "least two classes, got 1 class."
            )
        return y_enc, len(self.classes_)

    def _warn_label_order(self):
        """Warn once that column j of a pre-trained head is taken as label j."""
        k = len(self.classes_)
        is_range = self.classes_.dtype.kind in "iu" and np.array_equal(
            self.classes_, np.arange(k)
        )
        implicit = self.head_init == "pretrained" and self.head_classes is None
        if implicit and not is_range:
            warnings.warn(
                f"The pre-trained head's output column j is taken to mean the "
                f"j-th sorted label of y: {self.classes_.tolist()[:10]}. If the "
                "head was trained with another order, pass "
                "head_classes=[label of column 0, label of column 1, ...]; to "
                "silence this, pass head_classes in this order.",
                HeadClassesWarning,
                stacklevel=4,  # _fit < fit < _fit_context < caller
            )

    def _check_groups(self, sensitive_features, n_samples, y_enc):
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
        if reasons:
            self._warn_small_groups(codes, y_enc, reason)
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

    def _warn_small_groups(self, codes, y_enc, reason):
        """One warning naming the groups with too few rows of some class."""
        counts = np.zeros((len(self.groups_), len(self.classes_)), dtype=int)
        np.add.at(counts, (codes, y_enc), 1)
        small = np.flatnonzero(counts.min(axis=1) < _MIN_ROWS_PER_CLASS)
        if small.size == 0:
            return
        shown = {
            str(self.groups_[g]): dict(
                zip(map(str, self.classes_), counts[g].tolist(), strict=True)
            )
            for g in small[:5]
        }
        more = f" and {small.size - 5} more" if small.size > 5 else ""
        warnings.warn(
            f"{small.size} of {len(self.groups_)} groups in sensitive_features "
            f"have fewer than {_MIN_ROWS_PER_CLASS} rows of some class (rows per "
            f"class: {shown}{more}); their Fisher importance and {reason} rest "
            "on too few rows. Merge small groups, or bin a continuous column "
            "(e.g. with pandas.cut) before passing it.",
            SmallGroupWarning,
            stacklevel=5,  # _warn < _check_groups < fit < _fit_context < caller
        )

    def _group_mix(self):
        """Weights of the groups in ``Ihat_N``, aligned with ``groups_``."""
        if self.group_weights is not None:
            return check_group_weights(self.group_weights, self.groups_)
        if len(self.groups_) == 2:
            return np.array([self.alpha, 1.0 - self.alpha])
        return check_group_weights(None, self.groups_)

    def _forward_logits(self, model, batch):
        """Return the logits of ``model`` on one batch (kwargs for a dict)."""
        return find_logits(call_backbone(model, batch), self.output)

    def _features(self, model, head, data, device, float_dtype, check=True):
        """Frozen features of every row: extracted, or from the feature store."""
        verbose = self.verbose > 0

        def extract(rows):
            # filled in place: a list of batches and its concatenation would
            # hold the features twice at the peak
            out, start = None, 0
            for f in extract_head_inputs(
                model, head, rows, batch_size=self.batch_size, device=device,
                float_dtype=float_dtype, output=self.output, verbose=verbose,
                check_output=check,
            ):
                if out is None:
                    out = torch.empty((len(rows), *f.shape[1:]), dtype=f.dtype,
                                      device=f.device)
                out[start : start + len(f)] = f
                start += len(f)
            return out

        if self._feature_key is None:
            return extract(data)
        seed = self.random_state if isinstance(self.random_state, Integral) else None
        return cached_features(
            check_memory(self.memory).location, self._feature_key, data, extract,
            purpose="fit" if check else "predict", random_state=seed,
        )

    def _fit(self, data, y_enc, codes, n_groups, n_classes, weights, device, seed):
        lazy = [n for n, p in self.backbone.named_parameters() if is_lazy(p)]
        if lazy:
            raise ValueError(
                f"backbone has uninitialized lazy parameters {lazy[:5]} (a "
                "torch.nn.LazyLinear or similar that has never run). Run one "
                "batch through it first, e.g. backbone(X[:1]), so its shapes "
                "are known."
            )
        model = _freeze(copy.deepcopy(self.backbone).to(device))
        self.head_name_ = _resolve_head(model, self.head)
        head = model.get_submodule(self.head_name_)
        float_dtype = _float_dtype(model)
        self._head_dtype = _float_dtype(head)
        y_t = torch.from_numpy(y_enc).to(device)
        codes_t = torch.from_numpy(
            codes if codes is not None else np.zeros(len(y_enc), dtype=np.int64)
        ).to(device)
        w_t = None if weights is None else torch.tensor(weights, device=device)

        def head_inputs(desc, check=True):
            # late binding: the current `model` and `head` (after a probe)
            return extract_head_inputs(
                model, head, data, batch_size=self.batch_size, device=device,
                float_dtype=float_dtype, output=self.output,
                check_output=check, verbose=self.verbose > 0, desc=desc,
            )

        features = None
        self._feature_key = None
        if self.cache_features:
            memory = check_memory(self.memory)
            if getattr(memory, "location", None) is not None:
                self._feature_key = backbone_fingerprint(self.backbone, self.head_name_)
            features = self._features(model, head, data, device, float_dtype)

        # 1. the head to decompose, in float32: pre-trained, or a probe's
        work = copy.deepcopy(head).float()
        linear_names = linear_layer_names(work)
        last_name = linear_names[-1]
        last = work.get_submodule(last_name) if last_name else work
        if self.head_init == "probe":
            source = [features] if features is not None else head_inputs("probe")
            work = self._fit_probe(work, last_name, last, source, y_enc, n_classes,
                                   weights, device)
            # the trunk's own head becomes the probe too (for uncached Fisher)
            head = copy.deepcopy(work).to(self._head_dtype)
            model = _replace_submodule(model, self.head_name_, head)
        else:
            if last.out_features != n_classes:
                raise ValueError(
                    f"The head's last layer has out_features={last.out_features} "
                    f"but y has {n_classes} classes. Pass head_init='probe' to "
                    "fit a new output layer on the frozen features first, or "
                    "head_classes=[...] listing the label of every output column."
                )
            self._warn_label_order()

        # 2. importances and the weighted SVD, every layer at min(rank, in, out)
        self.group_importance_ = None
        self.neutral_importance_ = None
        self.importance_, self.ranks_, self.truncation_error_ = {}, {}, {}
        new_head = copy.deepcopy(work)
        names = list(linear_names) if self.rank is not None else []
        if names:
            ihats, group_rows = self._importances(
                work, names, features, head_inputs, y_t, codes_t, codes, n_groups,
                w_t,
            )
            for name in names:
                layer = work.get_submodule(name) if name else work
                r = min(self.rank, layer.in_features, layer.out_features)
                low_rank, error = factorize_linear(layer, ihats[name], r)
                new_head = _replace_submodule(new_head, name, low_rank)
                self.ranks_[self._qualified(name)] = r
                self.truncation_error_[self._qualified(name)] = error
            self.importance_ = {self._qualified(n): ihats[n] for n in names}
            if group_rows is not None:
                self.group_importance_ = {
                    self._qualified(n): group_rows[n] for n in names
                }
            if self.importance == "neutral":
                self.neutral_importance_ = dict(self.importance_)
        self.factorized_layers_ = [self._qualified(n) for n in names]
        self.rank_ = max(self.ranks_.values()) if self.ranks_ else None
        new_head.requires_grad_(True)
        placed = new_head if float_dtype == torch.float32 else FloatHead(new_head)
        model = _replace_submodule(model, self.head_name_, placed)
        self.n_trainable_params_ = int(sum(p.numel() for p in new_head.parameters()))

        # 3. train the new head through skorch
        # only what get_loss reads travels with each batch
        extra = {"group": codes_t} if self.fairness_penalty is not None else {}
        if w_t is not None:
            extra["sample_weight"] = w_t.float()
        if features is not None:
            module = HeadModule(new_head)
            dataset = TensorBatches(features, y_t, extra, device)
        else:
            module = TrunkAndHead(model, new_head, self._forward_logits)
            dataset = TensorBatches(data, y_t, extra, device, float_dtype)
        train_split, callbacks = self.train_split, []
        if self.early_stopping:
            dataset, valid = self._hold_out(dataset, y_enc, seed)
            train_split = predefined_split(valid)
            callbacks.append(("early_stopping", EarlyStopping(
                monitor="valid_loss", patience=self.n_iter_no_change,
                load_best=True, sink=lambda *args: None,
            )))
        self.net_ = self._make_net(module, n_classes, train_split, callbacks)
        threads = _training_threads(device, features, self.n_trainable_params_)
        with _torch_threads(threads):
            self.net_.fit(dataset, None)
        if features is None:  # keep the trunk out of the net (pickled once)
            self.net_.module_ = HeadModule(new_head)
        self.model_ = _freeze(model)

    def _hold_out(self, dataset, y_enc, seed):
        """Stratified (train, validation) Subsets for early stopping."""
        rows = np.arange(len(y_enc))
        try:
            train, valid = train_test_split(
                rows, test_size=self.validation_fraction, stratify=y_enc,
                random_state=seed,
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping could not hold out a stratified "
                f"validation_fraction={self.validation_fraction} of {len(rows)} "
                f"rows ({exc}). Raise validation_fraction or turn "
                "early_stopping off."
            ) from None
        return Subset(dataset, np.sort(train)), Subset(dataset, np.sort(valid))

    def _qualified(self, inner_name):
        return ".".join(p for p in (self.head_name_, inner_name) if p)

    def _fit_probe(self, head, last_name, last, source, y_enc, n_classes, weights,
                   device):
        """Replace the head's last linear layer by a fitted logistic regression."""
        with torch.no_grad():
            inputs = torch.cat([
                torch.cat(list(extract_head_inputs(
                    head, last, InputData(f), batch_size=self.batch_size,
                    device=device, float_dtype=torch.float32, check_output=False,
                )))
                for f in source
            ])
        probe = LogisticRegression(max_iter=1000)
        probe.fit(inputs.cpu().double().numpy(), y_enc, sample_weight=weights)
        coef, intercept = probe.coef_, probe.intercept_
        if n_classes == 2:  # one logit difference -> two symmetric columns
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        new_last = nn.Linear(last.in_features, n_classes).to(device)
        with torch.no_grad():
            new_last.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
            new_last.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
        new_last.requires_grad_(False)
        return _replace_submodule(copy.deepcopy(head), last_name, new_last)

    def _importances(self, head, names, features, head_inputs, y_t, codes_t,
                     codes, n_groups, w_t):
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
                (f, y_t[i : i + len(f)], codes_t[i : i + len(f)],
                 None if w_t is None else w_t[i : i + len(f)])
                for f, i in zip(head_inputs("Fisher", check=False),
                                range(0, len(y_t), step), strict=True)
            )
        rows = group_row_importance(
            head, source, y_t, codes_t, n_groups, batch_size=self.batch_size,
            sample_weight=w_t,
        )
        rows = {n: rows[n] for n in names}
        if self.importance == "fisher":
            # pooled Fisher = (weighted) row-count-weighted mean of the groups'
            counts = np.bincount(
                codes if codes is not None else np.zeros(len(y_t), dtype=int),
                weights=None if w_t is None else w_t.cpu().numpy(),
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
        "iterator_train": "(batches sliced from tensors)",
        "iterator_valid": "(batches sliced from tensors)",
        "fairness_penalty": "fairness_penalty",
        "penalty_strength": "penalty_strength",
    }

    def _make_net(self, module, n_classes, train_split, extra_callbacks):
        clash = sorted(set(self.net_params or {}) & set(self._RESERVED_NET_PARAMS))
        if clash:
            hints = {k: self._RESERVED_NET_PARAMS[k] for k in clash}
            raise ValueError(
                f"net_params sets {clash}, which the estimator sets itself; use "
                f"its own parameter instead: {hints}."
            )
        net_params = dict(self.net_params or {})
        fusable = self.optimizer in (torch.optim.Adam, torch.optim.AdamW)
        user_set = {"optimizer__fused", "optimizer__foreach"} & set(net_params)
        if fusable and not user_set and torch.device(self.device).type in _FUSED:
            # one fused kernel per step instead of ~10 small ops per parameter:
            # the head's step took half the time in our measurements
            net_params["optimizer__fused"] = True
        callbacks = list(copy.deepcopy(self.callbacks) if self.callbacks else [])
        callbacks += extra_callbacks
        callbacks.append(("stop_on_nonfinite", StopOnNonFiniteLoss()))
        if self.verbose > 1:
            callbacks.append(("progress_bar", ProgressBar()))
        return HeadNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=train_split,
            callbacks=callbacks,
            device=self.device,
            verbose=int(self.verbose > 0),
            classes=list(range(n_classes)),
            iterator_train=BatchIterator,
            iterator_valid=BatchIterator,
            iterator_train__shuffle=True,
            fairness_penalty=self.fairness_penalty,
            penalty_strength=self.penalty_strength,
            **net_params,
        )

    # -------------------------------------------------------------- predict
    @torch.no_grad()
    def _logits(self, X):
        check_is_fitted(self)
        data = check_input(self, X, reset=False)
        device = torch.device(self.device)
        float_dtype = _float_dtype(self.model_)
        self.model_.eval()
        if getattr(self, "_feature_key", None) is not None:
            # the feature store knows the trunk's output for rows it has seen
            # (a grid search's validation folds): run only the head on them
            head = self.model_.get_submodule(self.head_name_)
            features = self._features(self.model_, head, data, device, float_dtype,
                                      check=False)
            return torch.cat([
                head(features[i : i + self.batch_size]).double()
                for i in range(0, len(features), self.batch_size)
            ])
        out = [
            self._forward_logits(
                self.model_, data.batch(i, i + self.batch_size, device, float_dtype)
            ).double()
            for i in range(0, len(data), self.batch_size)
        ]
        return torch.cat(out)

    def predict_proba(self, X):
        """Return class probabilities (softmax of the logits), as float64.

        Parameters
        ----------
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone, in the form used in ``fit``.

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
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone, in the form used in ``fit``.

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
        X : array-like, torch.Tensor or mapping of shape (n_samples, ...)
            Input of the backbone, in the form used in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        indices = self._logits(X).argmax(dim=1).cpu().numpy()
        return self.classes_[indices]

    def export_module(self, merge=True):
        """Return a plain torch module (frozen trunk + fine-tuned head).

        Parameters
        ----------
        merge : bool, default=True
            Fold every factorized layer back into one ``nn.Linear`` with
            ``W = A B`` (and the head back into the backbone's dtype), so
            the result has the user's original architecture: its
            ``state_dict`` loads into a fresh copy of the pre-trained model,
            and a ``torch.save``-d module loads where only torch is
            installed. ``False`` keeps the low-rank layers (fewer
            parameters; needs ``sklearn_winfair`` to unpickle).

        Returns
        -------
        module : torch.nn.Module
            A copy in eval mode whose parameters do not require grad, mapping
            a batch of ``X`` to the backbone's output.

        Examples
        --------
        >>> import numpy as np, torch
        >>> from sklearn_winfair import FairLowRankFineTuner
        >>> backbone = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> X = np.random.RandomState(0).normal(size=(64, 4)).astype("float32")
        >>> y = (X[:, 0] > 0).astype(int)
        >>> clf = FairLowRankFineTuner(backbone, importance="uniform", rank=1,
        ...                            max_epochs=2, random_state=0).fit(X, y)
        >>> fresh = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> fresh.load_state_dict(clf.export_module().state_dict())
        <All keys matched successfully>
        """
        check_is_fitted(self)
        module = copy.deepcopy(self.model_)
        if merge:
            head = module.get_submodule(self.head_name_)
            merged = merge_low_rank(head, dtype=self._head_dtype)
            module = _replace_submodule(module, self.head_name_, merged)
        return _freeze(module)

    # --------------------------------------------------------------- pickle
    def _trunk_is_backbone(self):
        """Whether ``model_`` outside the head still equals ``backbone``."""
        prefix = self.head_name_ + "." if self.head_name_ else None
        ours = {
            k: v for k, v in self.model_.state_dict().items()
            if prefix is not None and not k.startswith(prefix)
        }
        theirs = {
            k: v for k, v in self.backbone.state_dict().items()
            if prefix is not None and not k.startswith(prefix)
        }
        if ours.keys() != theirs.keys():
            return False
        return all(
            v.dtype == theirs[k].dtype and torch.equal(v.cpu(), theirs[k].cpu())
            for k, v in ours.items()
        )

    def __getstate__(self):
        """Pickle the frozen trunk once: ``model_`` is rebuilt from ``backbone``."""
        state = super().__getstate__()
        model = state.get("model_")
        if model is not None and self.head_name_ and self._trunk_is_backbone():
            state = dict(state)
            state["model_"] = None
            state["_model_head"] = model.get_submodule(self.head_name_)
        return state

    def __setstate__(self, state):
        head = state.pop("_model_head", None)
        super().__setstate__(state)
        if head is not None:
            device = next(head.parameters()).device
            model = _freeze(copy.deepcopy(self.backbone).to(device))
            self.model_ = _freeze(_replace_submodule(model, self.head_name_, head))
