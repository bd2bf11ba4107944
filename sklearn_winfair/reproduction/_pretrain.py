"""Backbones and a plain torch training loop (pre-training, whole-model retrain).

The tabular backbone is ``nn.Sequential(trunk, head)``:

* ``trunk`` (name ``"0"``): ``Linear(d, 64) -> ReLU``;
* ``head`` (name ``"1"``): ``Linear(64, 10) -> ReLU -> Linear(10, n_out)``.

So the *linear head* ``"1.2"`` (10 -> 2) and the *2-layer head* ``"1"``
(64 -> 10 -> 2) both exist and can be handed to
:class:`~sklearn_winfair.FairLowRankFineTuner` as ``head=...``. This one-hot
64-10-2 backbone is OURS (the age-shift scenario and config (b)).

The paper's backbone (:func:`build_paper_mlp`) is the 13-20-20-2 ReLU MLP
that Table 3's parameter counts imply: ``nn.Sequential(trunk, head)`` with
``trunk = Linear(13,20)-ReLU-Linear(20,20)-ReLU`` and ``head = Linear(20,2)``
(name ``"1"``): 742 parameters in all, 42 in the head.
"""

import copy

import numpy as np
import torch
from torch import nn

from .. import demographic_parity_penalty, equalized_odds_penalty

__all__ = [
    "LINEAR_HEAD",
    "MLP_HEAD",
    "ARCHITECTURE",
    "build_mlp",
    "build_paper_mlp",
    "PAPER_HEAD",
    "PAPER_ARCHITECTURE",
    "train_torch",
    "predict_torch",
    "head_inputs",
    "n_params",
]

LINEAR_HEAD = "1.2"
MLP_HEAD = "1"
ARCHITECTURE = (
    "MLP: trunk Linear(d,64)-ReLU, head Linear(64,10)-ReLU-Linear(10,2); "
    "linear head = '1.2' (10->2), 2-layer head = '1' (64->10->2)"
)


def build_mlp(n_in, *, n_out=2, hidden=64, bottleneck=10, seed=0):
    """Return the tabular backbone ``nn.Sequential(trunk, head)``.

    Parameters
    ----------
    n_in : int
        Number of input features.
    n_out : int, default=2
        Number of output logits.
    hidden, bottleneck : int, default=64, 10
        Widths of the two hidden layers.
    seed : int, default=0
        Seed of the initialization.

    Returns
    -------
    model : torch.nn.Sequential
        Float32 model in eval mode.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential(
            nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU()),
            nn.Sequential(
                nn.Linear(hidden, bottleneck), nn.ReLU(),
                nn.Linear(bottleneck, n_out),
            ),
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


PAPER_HEAD = "1"
PAPER_ARCHITECTURE = (
    "the paper's configuration: ReLU MLP 13-20-20-2 on the 13 raw columns "
    "(742 parameters); head = its last Linear(20, 2), factorized at rank 2 "
    "(full rank: 20*2 + 2*2 + 2 = 46 trainable parameters)"
)


def build_paper_mlp(n_in, *, hidden_layers=2, width=20, n_out=2, seed=0):
    """Return the paper's ReLU MLP ``nn.Sequential(trunk, head)``.

    Parameters
    ----------
    n_in : int
        Number of input features (13 on Adult's raw columns).
    hidden_layers : int, default=2
        Number of hidden layers of ``width`` units: 2 is the paper's
        "two-layer MLP" (13-20-20-2); 3, 4 and 5 are our reading of Table 4's
        MLP-3, MLP-4 and MLP-5.
    width : int, default=20
        Units per hidden layer.
    n_out : int, default=2
        Number of output logits.
    seed : int, default=0
        Seed of the initialization.

    Returns
    -------
    model : torch.nn.Sequential
        Float32 model in eval mode; its head ``"1"`` is ``Linear(width, n_out)``.

    Examples
    --------
    >>> model = build_paper_mlp(13)
    >>> n_params(model), n_params(model.get_submodule(PAPER_HEAD))
    (742, 42)
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers, d = [], n_in
        for _ in range(hidden_layers):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        model = nn.Sequential(nn.Sequential(*layers), nn.Linear(d, n_out))
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


def n_params(module, trainable_only=False):
    """Return the number of (trainable) parameters of ``module``."""
    return int(sum(p.numel() for p in module.parameters()
                   if p.requires_grad or not trainable_only))


def _codes(s):
    _, codes = np.unique(np.asarray(s).astype(str), return_inverse=True)
    return torch.from_numpy(codes.astype(np.int64))


def train_torch(model, X, y, s=None, *, epochs=5, lr=1e-3, batch_size=256,
                penalty=None, strength=0.0, trainable=None, seed=0,
                weight_decay=0.0, on_epoch_end=None):
    """Train ``model`` (a copy) with cross-entropy plus an optional fairness term.

    Parameters
    ----------
    model : torch.nn.Module
        Model mapping a batch of ``X`` to logits; not modified.
    X : ndarray
        Inputs (float32).
    y : ndarray of shape (n,)
        Integer labels.
    s : array-like of shape (n,), default=None
        Sensitive groups; needed with ``penalty``.
    epochs, lr, batch_size : int, float, int
        Adam settings.
    penalty : {None, "demographic_parity", "equalized_odds"}, default=None
        Differentiable gap added as ``strength * penalty`` to each batch loss
        (:func:`~sklearn_winfair.demographic_parity_penalty` /
        :func:`~sklearn_winfair.equalized_odds_penalty` on ``P(y=1)``).
    strength : float, default=0.0
        Weight of the penalty (the "intensity" of the paper's fair models).
    trainable : callable or None, default=None
        ``trainable(model) -> iterable of parameters`` to train; the others
        are frozen. None trains every parameter.
    seed : int, default=0
        Seed of the shuffling (in a forked RNG).
    weight_decay : float, default=0.0
        Adam weight decay.
    on_epoch_end : callable or None, default=None
        ``on_epoch_end(epoch, model)`` called after each epoch (1-based) with
        the model in eval mode (it is put back in train mode afterwards);
        used to evaluate checkpoints.

    Returns
    -------
    model : torch.nn.Module
        The trained copy, in eval mode.
    """
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(trainable is None)
    params = list(model.parameters() if trainable is None else trainable(model))
    for p in params:
        p.requires_grad_(True)
    X_t = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    g_t = _codes(s) if s is not None else torch.zeros(len(y_t), dtype=torch.long)
    n_groups = int(g_t.max()) + 1 if len(g_t) else 1
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(y_t))
            for start in range(0, len(y_t), batch_size):
                idx = order[start : start + batch_size]
                logits = model(X_t[idx])
                loss = loss_fn(logits, y_t[idx])
                if penalty is not None and strength > 0:
                    proba = torch.softmax(logits, dim=1)[:, 1]
                    if penalty == "demographic_parity":
                        pen = demographic_parity_penalty(
                            proba, g_t[idx], num_groups=n_groups,
                            validate_args=False)
                    else:
                        pen = equalized_odds_penalty(
                            proba, y_t[idx], g_t[idx], num_groups=n_groups,
                            validate_args=False)
                    loss = loss + strength * pen
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if on_epoch_end is not None:
                model.eval()
                on_epoch_end(epoch + 1, model)
                model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def predict_torch(model, X, batch_size=4096):
    """Return ``argmax`` predictions of ``model`` on ``X`` (ndarray of int)."""
    X_t = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
    out = [model(X_t[i : i + batch_size]).argmax(1)
           for i in range(0, len(X_t), batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def head_inputs(model, head_name, X, batch_size=4096):
    """Return the input of submodule ``head_name`` of ``model`` on ``X``.

    These are the frozen features the head-only methods (and the fairlearn
    peers) see, computed once per seed.
    """
    head = model.get_submodule(head_name)
    captured = []
    handle = head.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach()))
    try:
        X_t = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
        for i in range(0, len(X_t), batch_size):
            model(X_t[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).numpy()
