"""The public estimator: weight-importance-neutralized low-rank fine-tuning.

This module keeps the scikit-learn contract only: parameters, fitted
attributes, and ``fit`` as a table of contents of the steps, each of which
lives in a module of its own (``ARCHITECTURE.md``'s flow, top to bottom):

* :mod:`._validation`: every cheap check, before any forward pass.
* :mod:`._layers`: find, freeze, replace, wrap and merge back the layers.
* :mod:`._inputs`: X in every form, batched and cast per batch.
* :mod:`._features`: frozen-feature extraction; :mod:`._store` the feature store.
* :mod:`._importance`: per-group empirical Fisher, neutralization.
* :mod:`._factorize`: weighted SVD and ``LowRankLinear``.
* :mod:`._training`: the solvers (L-BFGS, Adam, SGD through skorch), the probe.

Which library does what: scikit-learn validates parameters, labels and
weights, routes metadata and fits the linear probe; torch runs the backbone
and computes gradients and SVDs; skorch runs the training loop; fairlearn
computes the metrics (:mod:`sklearn_winfair.metrics`).
"""

import copy
import time
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from skorch.helper import predefined_split
from torch import nn

from . import _repr
from ._adapters import adapt_for_fit, merge_adapters
from ._factorize import factorize_head
from ._features import FeatureExtractor
from ._importance import layer_importances
from ._inputs import check_input
from ._layers import (
    FloatHead,
    float_dtype,
    freeze,
    linear_layer_names,
    merge_layers,
    replace_submodule,
    same_state_outside,
    unwrap,
)
from ._store import backbone_fingerprint
from ._training import (
    RESERVED_NET_PARAMS,
    FitGenerator,
    HeadModule,
    TensorBatches,
    TrunkAndHead,
    fit_probe,
    hold_out,
    make_net,
    resolve_solver,
    train,
    training_threads,
)
from ._validation import (
    check_device,
    check_fit,
    check_params,
    check_random_seed,
    check_target_modules,
    group_mix,
)

__all__ = ["FairLowRankFineTuner"]


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
    With ``target_modules``, the same weighted SVD splits layers inside the
    backbone into a frozen residual and a trainable low-rank adapter, and
    the head trains in full beside them (:ref:`adapters`).

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
    target_modules : str, list of str or None, default=None
        Layers of the backbone that get a low-rank adapter, by peft's word
        and rule: a list of names, each matching every module whose
        qualified name equals it or ends with ``"." + name``, or a ``str``
        regular expression that must match the whole qualified name.
        ``nn.Linear``, ``nn.Conv2d`` (``groups=1``, zero padding) and
        transformers' ``Conv1D`` can take one. Each matched layer's weight
        is split ``W = W_res + A B`` with ``A B`` of rank ``min(rank, d,
        k)`` (see ``adapter_init``), ``W_res`` frozen; ``A``, ``B`` and the
        head (trained in full, *not* factorized, whatever ``rank``) train
        in mini-batches (``solver="auto"`` is ``"adam"``; ``"lbfgs"`` is an
        error). When the frozen computation below the lowest adapted layer
        can be cut off (a chain of ``nn.Sequential``, else a ``torch.fx``
        trace with one value that everything above reads), it runs once
        per fit (``cache_features``, ``memory``) and each step runs only
        the layers above; otherwise the whole model runs at every step
        (``frozen_prefix_`` says which). ``None``: the head alone, as
        described above. Read more in :ref:`adapters`.
    adapter_init : {"svd", "lora"}, default="svd"
        How the adapters of ``target_modules`` start (ignored without).
        ``"svd"``: ``A B`` is the rank-``r`` truncation of the
        importance-weighted SVD of ``W`` (paper Eq. 4,
        ``diag(ihat) W = U S V^T``, ``A = diag(ihat)^{-1} U_r S_r``,
        ``B = V_r^T``), with ``ihat`` from ``importance``: ``"uniform"`` is
        PiSSA, ``"fisher"`` an FWSVD-initialized adapter, ``"neutral"`` the
        method, the per-group Fisher of each layer coming from per-sample
        gradients of the whole model's loss on the training rows.
        ``"lora"``: peft's default LoRA (``A`` Kaiming-uniform, ``B = 0``,
        ``W_res = W``); ``importance`` is then not used. Either way the
        model at initialization computes what the pre-trained one does.
    rank : int or None, default=4
        Rank kept by the weighted SVD: each head layer is factorized at
        ``min(rank, in_features, out_features)``. At full rank the
        factorization is exact at initialization and only changes how the
        head is parametrized in training (the paper's 20 -> 2 head at rank
        2). ``None``: no factorization, plain fine-tuning of the head (the
        paper's TL baseline). With ``target_modules``: the adapters'
        rank (``None`` is then an error).
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
    solver : {"auto", "lbfgs", "adam", "sgd"}, default="auto"
        How the new head is trained, named as scikit-learn's
        ``MLPClassifier`` names its solvers. ``"lbfgs"``: full-batch
        L-BFGS (:class:`torch.optim.LBFGS`, strong-Wolfe line search) on the
        cached features, deterministic; it converges to the optimum of a
        linear head and to a stationary point of a factorized one, stopping
        when the largest gradient entry is below ``tol``, when an iteration
        changes the loss and the parameters by less than ``tol / 100``, or
        after ``max_iter`` iterations. ``"adam"`` (the ``optimizer`` class) and
        ``"sgd"``: mini-batches of ``batch_size`` for ``max_epochs`` epochs,
        stopping early when the training loss has not improved by ``tol``
        for ``n_iter_no_change`` epochs. ``"auto"``: ``"lbfgs"`` for a head
        of one linear layer with ``cache_features=True`` (and no
        ``early_stopping`` or ``train_split``), ``"adam"`` otherwise (a head
        of several layers is non-convex; L-BFGS ran it to ``max_iter``).
    max_iter : int, default=1000
        L-BFGS iterations at most (``solver="lbfgs"``).
    tol : float, default=1e-4
        Convergence tolerance: of the largest gradient entry for L-BFGS, of
        the training loss's improvement per epoch for Adam and SGD. Reaching
        ``max_iter`` (or ``max_epochs``) without meeting it warns with
        :class:`~sklearn.exceptions.ConvergenceWarning`.
    max_epochs : int, default=10
        Training epochs of the new head with ``solver="adam"`` or ``"sgd"``
        (an upper bound with ``early_stopping``).
    lr : float, default=1e-3
        Learning rate of ``"adam"`` and ``"sgd"`` (L-BFGS uses its line
        search).
    batch_size : int, default=128
        Mini-batch size for training with ``"adam"`` and ``"sgd"``; also
        used for feature extraction and prediction.
    optimizer : type, default=torch.optim.Adam
        Optimizer class of ``solver="adam"``.
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
        Patience in epochs: of ``early_stopping`` (validation loss), or of the
        training-loss rule of ``"adam"`` and ``"sgd"``.
    cache_features : bool, default=True
        Compute the frozen features once per fit (in batches, without
        gradients) and train the head on them. ``False`` runs the frozen
        backbone at each training step instead, for data that do not fit in
        memory (``head_init="probe"`` still collects them once). With
        ``target_modules``: cache the output of the frozen steps below the
        lowest adapted layer (``frozen_prefix_``; found along a chain of
        ``nn.Sequential`` or in a ``torch.fx`` trace, and checked on a few
        rows against the whole model) and train the layers above it on
        that; ``False`` runs the whole model at every step, with the same
        results to float rounding.
    memory : str, joblib.Memory or None, default=None
        A folder (or a :class:`joblib.Memory`'s location) for a feature
        store: features keyed by the backbone's content and each row's
        content, so every fit of a ``GridSearchCV`` (any parameter, every
        fold and the refit) runs the backbone once per distinct row. Shared
        safely by processes and Dask workers that see the same folder.
        Used with ``cache_features=True``; ``None`` caches within a fit
        only. With ``target_modules`` the store holds the frozen prefix's
        output instead (keyed by the backbone and the cut, apart from the
        head's features), so a grid search over ``rank``,
        ``alpha`` or ``importance`` runs the prefix once per distinct row;
        what the adapters change (the head's input) is never stored.
    device : str or torch.device, default="cpu"
        Torch device for the backbone and the head; checked at the start of
        ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seeds the fit's own generator, from which every random draw of the
        fit comes (mini-batch shuffles, the hold-out, the feature store's
        verification sample); torch's and numpy's global generators are
        neither read nor changed, so fits with the same int give
        bit-identical predictions, also when they run in threads.
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
        Qualified names of the ``nn.Linear`` layers that were factorized
        (with ``target_modules``: the adapted layers).
    adapted_layers_ : list of str
        Qualified names of the layers that got an adapter (``[]`` without
        ``target_modules``).
    frozen_prefix_ : list of str or None
        With ``target_modules``: qualified names of the frozen modules
        below the lowest adapted layer whose output was computed once and
        cached (training ran only the part above them). ``None`` when the
        whole model ran at every step (``cache_features=False``, a backbone
        that neither is an ``nn.Sequential`` chain down to that layer nor
        traces with ``torch.fx`` to one value crossing the cut, nothing
        below it, mapping ``X``, or a split that did not reproduce the
        model's logits on the probe rows or mixed their rows, a traced
        module registered under two names, a cache above 2 GiB;
        ``verbose=1`` prints which), and without ``target_modules`` (the
        head's input is cached then, see ``cache_features``).
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
        Number of parameters trained (with ``target_modules``: the
        adapters' ``A`` and ``B`` plus the whole head).
    cast_integers_ : bool
        Whether integer ``X`` is cast to the trunk's float dtype (one batch
        at a time), because the backbone's first batch rejected integers
        (a float MLP fed integer features); token ids the backbone takes
        stay integers.
    solver_ : {"lbfgs", "adam", "sgd"}
        The solver that ran (``solver="auto"`` resolved).
    n_iter_ : int
        L-BFGS iterations, or epochs of ``"adam"`` / ``"sgd"``, that ran.
    net_ : skorch.NeuralNetClassifier
        The skorch net that trained the head (its history, callbacks and
        optimizer; one epoch for L-BFGS); its ``module_`` is the head alone.
    model_ : torch.nn.Module
        Frozen trunk with the new head (and the trained adapters, as
        ``LowRankAdapter`` layers); see :meth:`export_module`.

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
        "target_modules": [list, tuple, str, None],
        "adapter_init": [StrOptions({"svd", "lora"})],
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
        "solver": [StrOptions({"auto", "lbfgs", "adam", "sgd"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
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
        target_modules=None,
        adapter_init="svd",
        rank=4,
        alpha=0.5,
        importance="neutral",
        group_weights=None,
        head_init="pretrained",
        head_classes=None,
        output=None,
        fairness_penalty=None,
        penalty_strength=1.0,
        solver="auto",
        max_iter=1000,
        tol=1e-4,
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
        self.target_modules = target_modules
        self.adapter_init = adapter_init
        self.rank = rank
        self.alpha = alpha
        self.importance = importance
        self.group_weights = group_weights
        self.head_init = head_init
        self.head_classes = head_classes
        self.output = output
        self.fairness_penalty = fairness_penalty
        self.penalty_strength = penalty_strength
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
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

    # the notebook repr: a backbone summary and the API page's "?" link
    _doc_link_module = "sklearn_winfair"
    _doc_link_template = _repr.doc_link_template()  # "" until a site is published

    def _sk_visual_block_(self):
        return _repr.visual_block(self)

    def _get_params_html(self, deep=True, doc_link=""):
        return _repr.params_html(super()._get_params_html(deep, doc_link))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, sensitive_features=None, sample_weight=None):
        """Fit the new low-rank head (and the adapters of ``target_modules``).

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
        before = dict(self.__dict__)
        try:
            # training needs autograd, also when the caller is inside
            # torch.no_grad() or torch.inference_mode()
            with torch.inference_mode(False), torch.enable_grad():
                self._fit(X, y, sensitive_features, sample_weight)
        except BaseException:
            # a fit that raises leaves the estimator as it was
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    def _fit(self, X, y, sensitive_features, sample_weight):
        start = time.perf_counter()
        # 1. everything cheap, before the backbone runs once
        device = check_device(self.device)
        check_params(self, RESERVED_NET_PARAMS)
        fd, head_name = check_fit(self, X, y, sensitive_features, sample_weight)
        adapted = check_target_modules(self, head_name)
        cached = self.cache_features and not adapted  # adapters change the features
        solver = resolve_solver(
            self.solver, cached=cached,
            early_stopping=self.early_stopping, train_split=self.train_split,
            n_head_layers=len(linear_layer_names(self.backbone.get_submodule(head_name))),
        )
        rng = FitGenerator(check_random_seed(self.random_state))

        # 2. the layers: a frozen copy of the backbone, the head in float32
        model = freeze(copy.deepcopy(self.backbone).to(device))
        head = model.get_submodule(head_name)
        trunk_dtype, head_dtype = float_dtype(model), float_dtype(head)
        work = copy.deepcopy(head).float()
        names = linear_layer_names(work)
        y_t, codes_t, w_t = fd.tensors(device)

        # 3. the frozen features (the head's input), once, or per batch later
        store = None
        if cached and check_memory(self.memory).location is not None:
            store = (check_memory(self.memory).location,
                     backbone_fingerprint(self.backbone, head_name))
        extract = FeatureExtractor(self, model, head, device, trunk_dtype)
        features = (
            extract.all(fd.X, store, purpose="fit", seed=rng.child_seed(1))
            if cached else None
        )

        # 4. a new task's output layer: the probe on the frozen features
        if self.head_init == "probe":
            last = names[-1]
            inputs = extract.layer_inputs(work, last, features, fd.X)
            work = fit_probe(work, last, inputs, fd.y, fd.n_classes,
                             fd.raw_sample_weight, device)
            head = copy.deepcopy(work).to(head_dtype)  # the trunk's own head too
            model = replace_submodule(model, head_name, head)
            extract = FeatureExtractor(self, model, head, device, trunk_dtype)

        # 5. importances and the weighted SVD, every layer at min(rank, in, out):
        # of the head's layers, or of the adapted layers (the head then in full)
        to_factorize = names if self.rank is not None and not adapted else []
        ihats, group_rows, n_adapter_params = {}, None, 0
        prefix, no_prefix = None, None
        if adapted:
            mix = (group_mix(fd.groups, self.alpha, self.group_weights)
                   if self.importance == "neutral" and fd.groups is not None
                   else None)
            # the frozen steps below the lowest adapter run once (their output
            # in the feature store with memory=); the rest runs at each step
            location = check_memory(self.memory).location
            model, info, ihats, group_rows, prefix, no_prefix = adapt_for_fit(
                self, model, head, adapted, extract, fd, (y_t, codes_t, w_t), rng,
                mix, cache=self.cache_features,
                store=None if location is None else (location, self.backbone))
            ranks, errors = info["ranks"], info["truncation_error"]
            n_adapter_params = info["n_trainable"]
        elif to_factorize:
            source = features
            if source is None:
                source = extract.batches(fd, y_t, codes_t, w_t)
            mix = (group_mix(fd.groups, self.alpha, self.group_weights)
                   if fd.groups is not None else None)
            ihats, group_rows = layer_importances(
                work, to_factorize, self.importance, source, y_t, codes_t,
                fd.n_groups, sample_weight=w_t, mix=mix, batch_size=self.batch_size,
            )
        if not adapted:
            new_head, ranks, errors = factorize_head(work, to_factorize, ihats,
                                                      self.rank)
        else:
            new_head = work

        # 6. train the new head
        new_head.requires_grad_(True)
        placed = new_head if trunk_dtype == torch.float32 else FloatHead(new_head)
        model = replace_submodule(model, head_name, placed)
        n_params = int(sum(p.numel() for p in new_head.parameters()))
        n_params += n_adapter_params
        extra = {"group": codes_t} if self.fairness_penalty is not None else {}
        if w_t is not None:
            extra["sample_weight"] = w_t.float()
        if prefix is not None and not prefix.check(model, self.output):
            prefix, no_prefix = None, ("the split did not give the adapted "
                                       "model's logits on the probe rows")
        if features is not None:
            module = HeadModule(new_head)
            dataset = TensorBatches(features, y_t, extra, device)
        elif prefix is not None:  # the layers above the cut, on its cached output
            module = TrunkAndHead(prefix.suffix(model)[0], new_head, self.output)
            dataset = TensorBatches(prefix.outputs, y_t, extra, device)
        else:
            module = TrunkAndHead(model, new_head, self.output)
            dataset = TensorBatches(fd.X, y_t, extra, device, trunk_dtype)
        train_split = self.train_split
        if self.early_stopping:
            dataset, valid = hold_out(dataset, fd.y, self.validation_fraction,
                                      rng.child_seed(2))
            train_split = predefined_split(valid)
        net = make_net(
            module, self, solver=solver, n_classes=fd.n_classes,
            n_groups=fd.n_groups, n_rows=len(fd.y), train_split=train_split,
            generator=rng, early_stop=self.early_stopping,
        )
        n_iter = train(
            net, dataset, solver=solver, max_iter=self.max_iter,
            max_epochs=self.max_epochs,
            threads=training_threads(device, features is not None, n_params),
        )
        if features is None:  # keep the trunk out of the net (pickled once)
            net.module_ = HeadModule(new_head)

        # 7. fitted attributes
        self.classes_, self.groups_, self.head_name_ = fd.classes, fd.groups, head_name
        self.cast_integers_ = fd.X.cast_integers
        self._head_dtype = head_dtype
        self._feature_key = store
        self._trunk_dtype = trunk_dtype
        if adapted:  # already qualified names of the backbone
            qualified = {n: n for n in adapted}
            to_factorize = adapted
        else:
            qualified = {n: ".".join(p for p in (head_name, n) if p) for n in names}
        self.ranks_ = {qualified[n]: r for n, r in ranks.items()}
        self.truncation_error_ = {qualified[n]: e for n, e in errors.items()}
        self.importance_ = {qualified[n]: v for n, v in ihats.items()}
        self.group_importance_ = (
            {qualified[n]: r for n, r in group_rows.items()}
            if group_rows is not None and fd.groups is not None else None
        )
        self.neutral_importance_ = (
            dict(self.importance_)
            if to_factorize and self.importance == "neutral"
            and not (adapted and self.adapter_init == "lora") else None
        )
        self.factorized_layers_ = [qualified[n] for n in to_factorize]
        self.adapted_layers_ = list(adapted)
        self.frozen_prefix_ = None if prefix is None else list(prefix.names)
        self._no_prefix = no_prefix
        self.rank_ = max(self.ranks_.values()) if self.ranks_ else None
        self.n_trainable_params_ = n_params
        self.solver_, self.n_iter_ = solver, n_iter
        self.net_ = net
        self.model_ = freeze(model)
        if self.verbose > 0:
            print(self._summary(time.perf_counter() - start), flush=True)

    def _summary(self, seconds):
        """One line saying what was fitted (printed with ``verbose >= 1``)."""
        ranks = ", ".join(f"{k}: {v}" for k, v in self.ranks_.items()) or "none"
        what = "adapter ranks" if self.adapted_layers_ else "ranks"
        cached = ""
        if self.adapted_layers_:
            cached = (
                f"frozen prefix {self.frozen_prefix_} run once, "
                if self.frozen_prefix_ else
                f"whole model at each step ({getattr(self, '_no_prefix', None)}), ")
        return (
            f"{type(self).__name__}: head {self.head_name_!r}, {what} {{{ranks}}}, "
            f"{cached}"
            f"{self.n_trainable_params_} trainable parameters, solver "
            f"{self.solver_!r}, {self.n_iter_} "
            f"{'iterations' if self.solver_ == 'lbfgs' else 'epochs'}, "
            f"{seconds:.2f} s."
        )

    # -------------------------------------------------------------- predict
    @torch.no_grad()
    def _head_features(self, X):
        """Return the fitted head's input on every row of ``X`` (the trunk's output).

        From the feature store for rows it has seen (e.g. a grid search's
        validation folds), extracted in batches otherwise.
        """
        check_is_fitted(self)
        data = check_input(self, X, reset=False)
        data.cast_integers = getattr(self, "cast_integers_", False)
        self.model_.eval()
        head = self.model_.get_submodule(self.head_name_)
        trunk_dtype = getattr(self, "_trunk_dtype", None) or float_dtype(self.model_)
        extract = FeatureExtractor(self, self.model_, head,
                                   torch.device(self.device), trunk_dtype)
        return extract.all(data, getattr(self, "_feature_key", None),
                           purpose="predict", seed=0, check=False)

    @torch.no_grad()
    def _logits(self, X):
        # the trunk's features, then the head alone, in float64: the fitted
        # head is the last step of forward (checked in fit), and float64
        # keeps a row's scores independent of the batch it is in
        # (scikit-learn's check_methods_subset_invariance)
        features = self._head_features(X)
        head = self.model_.get_submodule(self.head_name_)
        inner = head.head if isinstance(head, FloatHead) else head  # casts to f32
        head64 = copy.deepcopy(inner).double()
        logits = torch.cat([
            head64(features[i : i + self.batch_size].double()).flatten(1)
            for i in range(0, len(features), self.batch_size)
        ])
        bad = torch.nonzero(~torch.isfinite(logits).all(dim=1)).flatten()
        if len(bad):
            rows = bad[:10].tolist()
            raise ValueError(
                f"The backbone produced non-finite values (NaN or inf) for "
                f"{len(bad)} of {len(logits)} rows of X (rows {rows}"
                f"{' ...' if len(bad) > 10 else ''}), so they have no prediction. "
                "Check those rows, or the backbone's numerics (an overflow in "
                "float16?)."
            )
        return logits

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
            parameters; needs ``sklearn_winfair`` to unpickle). A backbone
            wrapped by ``torch.compile`` or ``nn.DataParallel`` is unwrapped
            either way, so the keys carry no ``_orig_mod.`` / ``module.``
            prefix.

        Notes
        -----
        With a float16 / bfloat16 backbone the merged head is cast back to
        the backbone's dtype, so the export is exactly the user's
        architecture; :meth:`predict_proba` runs the head in float64 on the
        trunk's features, so the two can disagree where the half-precision
        head's rounding flips a near-tie (1 of 256 rows in our bf16 test). To
        serve the estimator's exact predictions, keep the head in float32:
        ``export_module()`` then ``module.<head>.float()`` with an input cast,
        or call :meth:`predict_proba`.

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
            if getattr(self, "adapted_layers_", None):
                module = merge_adapters(module)  # W_res + A B, the layer's own type
            head = module.get_submodule(self.head_name_)
            merged = merge_layers(head, dtype=getattr(self, "_head_dtype", None))
            module = replace_submodule(module, self.head_name_, merged)
            module = unwrap(module)  # the user's architecture: no compile/DP prefix
        return freeze(module)

    # --------------------------------------------------------------- pickle
    def __getstate__(self):
        """Pickle the frozen trunk once: ``model_`` is rebuilt from ``backbone``."""
        state = super().__getstate__()
        model = state.get("model_")
        if model is not None and same_state_outside(model, self.backbone,
                                                    self.head_name_):
            state = dict(state)
            state["model_"] = None
            state["_model_head"] = model.get_submodule(self.head_name_)
        return state

    def __setstate__(self, state):
        head = state.pop("_model_head", None)
        super().__setstate__(state)
        if head is not None:
            device = next(head.parameters()).device
            model = freeze(copy.deepcopy(self.backbone).to(device))
            self.model_ = freeze(replace_submodule(model, self.head_name_, head))
