"""Weighted SVD of a linear layer, the low-rank layer that replaces it, and the merge.

Which library does what here: numpy computes the full SVD; torch's
:func:`torch.svd_lowrank` (randomized, Halko et al. 2011) the truncated one
when the rank is far below the layer's size.
"""


import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import skip_init

from ._layers import merge_layers, replace_submodule

#: The randomized SVD is used when ``min(d, k)`` is at least this ...
LOWRANK_MIN_SIZE = 256
#: ... and ``rank`` at most this fraction of it. Below, the full SVD is cheap.
LOWRANK_MAX_FRACTION = 0.1


def _lowrank_svd(M, rank):
    """Top-``rank`` SVD of ``M`` by :func:`torch.svd_lowrank`, seeded.

    Oversampling ``q = rank + max(10, rank)`` and 4 power iterations; the
    RNG is forked and seeded so the result is reproducible and the caller's
    torch RNG is left alone.
    """
    q = min(rank + max(10, rank), min(M.shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        U, S, V = torch.svd_lowrank(torch.from_numpy(M), q=q, niter=4)
    return U[:, :rank].numpy(), S[:rank].numpy(), V[:, :rank].T.numpy()


def weighted_svd(weight, ihat, rank, *, method="auto"):
    """Factorize ``W`` through the SVD of ``diag(ihat) @ W`` (paper Sec. 3.3).

    ``diag(ihat) W = U S V^T``; keep the top ``rank`` terms and return
    ``A = diag(ihat)^{-1} U_r S_r`` (d x r) and ``B = V_r^T`` (r x k), so that
    ``A @ B`` approximates ``W``, exactly at ``rank = min(d, k)``.

    Parameters
    ----------
    weight : array-like of shape (d, k)
        ``W`` in the paper's orientation ``Z = X W + b`` (torch's
        ``nn.Linear.weight`` transposed).
    ihat : array-like of shape (d,)
        Strictly positive diagonal of the importance matrix; all ones gives
        plain truncated SVD.
    rank : int
        Number of singular triplets kept, ``1 <= rank <= min(d, k)``.
    method : {"auto", "full", "randomized"}, default="auto"
        ``"full"``: :func:`numpy.linalg.svd`. ``"randomized"``:
        :func:`torch.svd_lowrank` (4 power iterations). ``"auto"`` takes the
        randomized SVD when ``min(d, k) >= 256`` and ``rank <= min(d, k) / 10``,
        where it is much faster and its extra error was below 1 % of the
        full SVD's in our measurements (``benchmarks/``), and the full SVD
        otherwise.

    Returns
    -------
    A : ndarray of shape (d, rank)
        First factor, ``diag(ihat)^{-1} U_r S_r``.
    B : ndarray of shape (rank, k)
        Second factor, ``V_r^T``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._factorize import weighted_svd
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> A, B = weighted_svd(W, np.array([1.0, 2.0, 0.5]), rank=2)
    >>> bool(np.allclose(A @ B, W))
    True
    """
    W = np.asarray(weight, dtype=np.float64)
    ihat = np.asarray(ihat, dtype=np.float64)
    if W.ndim != 2 or ihat.shape != (W.shape[0],):
        raise ValueError(
            f"weight must be (d, k) and ihat (d,), got {W.shape} and {ihat.shape}."
        )
    if np.any(ihat <= 0) or not np.all(np.isfinite(ihat)):
        raise ValueError("ihat must be finite and strictly positive.")
    if not 1 <= rank <= min(W.shape):
        raise ValueError(f"rank must be in [1, {min(W.shape)}], got {rank}.")
    if method not in ("auto", "full", "randomized"):
        raise ValueError(
            f"method must be 'auto', 'full' or 'randomized', got {method!r}."
        )
    M = ihat[:, None] * W
    small = min(M.shape)
    if method == "auto":
        fast = small >= LOWRANK_MIN_SIZE and rank <= LOWRANK_MAX_FRACTION * small
        method = "randomized" if fast else "full"
    if method == "randomized":
        U, S, Vt = _lowrank_svd(M, rank)
    else:
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
    A = (U[:, :rank] * S[:rank]) / ihat[:, None]
    B = Vt[:rank]
    return A, B


def truncation_error(weight, ihat, A, B):
    """Relative Frobenius error of a factorization, in the weighted norm.

    ``||diag(ihat) (W - A B)||_F / ||diag(ihat) W||_F``: the share of the
    importance-weighted weight that the truncation discards (0 at full
    rank, up to float error).

    Parameters
    ----------
    weight : array-like of shape (d, k)
        ``W`` (paper orientation).
    ihat : array-like of shape (d,)
        Importance diagonal.
    A : array-like of shape (d, r)
        First factor.
    B : array-like of shape (r, k)
        Second factor.

    Returns
    -------
    error : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._factorize import truncation_error, weighted_svd
    >>> W = np.diag([3.0, 4.0])
    >>> A, B = weighted_svd(W, np.ones(2), rank=1)
    >>> round(truncation_error(W, np.ones(2), A, B), 3)
    0.6
    """
    W = np.asarray(weight, dtype=np.float64)
    ihat = np.asarray(ihat, dtype=np.float64)[:, None]
    total = np.linalg.norm(ihat * W)
    if total == 0:
        return 0.0
    return float(np.linalg.norm(ihat * (W - np.asarray(A) @ np.asarray(B))) / total)


class LowRankLinear(nn.Module):
    """Two linear maps ``x -> x A`` (no bias) then ``-> (x A) B + b``.

    Replaces an ``nn.Linear(d, k)`` by ``d*r + r*k + k`` trainable
    parameters instead of ``d*k + k``.

    Parameters
    ----------
    A : array-like of shape (d, rank)
        First factor (paper orientation).
    B : array-like of shape (rank, k)
        Second factor.
    bias : torch.Tensor of shape (k,) or None
        Bias of the replaced layer (copied).
    dtype : torch.dtype, default=torch.float32
        Parameter dtype.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair._factorize import LowRankLinear
    >>> layer = LowRankLinear(np.ones((3, 1)), np.ones((1, 2)), torch.zeros(2))
    >>> layer(torch.ones(1, 3))
    tensor([[3., 3.]], grad_fn=<AddmmBackward0>)
    """

    def __init__(self, A, B, bias, dtype=torch.float32):
        super().__init__()
        d, r = np.shape(A)
        k = np.shape(B)[1]
        # skip_init: no draw from torch's global generator (the values are
        # overwritten below, and a fit must leave the caller's RNG alone)
        self.first = skip_init(nn.Linear, d, r, bias=False, dtype=dtype)
        self.second = skip_init(nn.Linear, r, k, bias=bias is not None, dtype=dtype)
        with torch.no_grad():
            self.first.weight.copy_(torch.as_tensor(np.asarray(A).T, dtype=dtype))
            self.second.weight.copy_(torch.as_tensor(np.asarray(B).T, dtype=dtype))
            if bias is not None:
                self.second.bias.copy_(bias.detach().to(dtype))

    @property
    def rank(self):
        """Inner dimension ``r``."""
        return self.first.out_features

    def forward(self, x):
        """Return ``(x A) B + b``."""
        return self.second(self.first(x))

    def merge(self):
        """Return one ``nn.Linear`` with weight ``W = A B`` (grad off)."""
        w = self.second.weight.detach() @ self.first.weight.detach()
        lin = skip_init(nn.Linear, w.shape[1], w.shape[0],
                        bias=self.second.bias is not None, dtype=w.dtype,
                        device=w.device)
        with torch.no_grad():
            lin.weight.copy_(w)
            if self.second.bias is not None:
                lin.bias.copy_(self.second.bias.detach())
        return lin.requires_grad_(False)


def factorize_linear(layer, ihat, rank, dtype=None):
    """Return a :class:`LowRankLinear` built from ``layer`` by weighted SVD.

    Parameters
    ----------
    layer : torch.nn.Linear
        The pre-trained layer; not modified.
    ihat : ndarray of shape (layer.in_features,)
        Importance diagonal.
    rank : int
        Kept rank.

    dtype : torch.dtype or None, default=None
        Parameter dtype of the new layer; ``None`` keeps ``layer``'s.

    Returns
    -------
    low_rank : LowRankLinear
        On the same device as ``layer``.
    error : float
        Its :func:`truncation_error`.
    """
    W = layer.weight.detach().cpu().double().numpy().T
    A, B = weighted_svd(W, ihat, rank)
    new = LowRankLinear(A, B, layer.bias, dtype=dtype or layer.weight.dtype)
    return new.to(layer.weight.device), truncation_error(W, ihat, A, B)


def merge_low_rank(module, dtype=None):
    """Return a copy of ``module`` with every :class:`LowRankLinear` merged.

    Each ``x -> (x A) B + b`` becomes one ``nn.Linear`` with weight
    ``W = A B``, so the result has the original architecture again: its
    ``state_dict`` loads into a fresh copy of the pre-trained model. Wrappers
    that only run a head in float32 (``FloatHead``) are removed. Parameters
    of the copy do not require grad.

    Parameters
    ----------
    module : torch.nn.Module
        A fine-tuned model.
    dtype : torch.dtype or None, default=None
        Cast the whole result to this dtype; ``None`` keeps each layer's.

    Returns
    -------
    merged : torch.nn.Module
        In eval mode.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_winfair._factorize import LowRankLinear, merge_low_rank
    >>> model = torch.nn.Sequential(
    ...     LowRankLinear(np.ones((3, 1)), np.ones((1, 2)), torch.zeros(2)))
    >>> merge_low_rank(model)
    Sequential(
      (0): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    return merge_layers(module, dtype)


def factorize_head(head, names, ihats, rank):
    """Return a copy of ``head`` with each layer of ``names`` factorized (weighted SVD).

    Returns ``(new_head, {name: rank}, {name: truncation error})``.
    """
    new_head, ranks, errors = copy.deepcopy(head), {}, {}
    for name in names:
        layer = head.get_submodule(name) if name else head
        r = min(rank, layer.in_features, layer.out_features)
        low_rank, errors[name] = factorize_linear(layer, ihats[name], r)
        new_head = replace_submodule(new_head, name, low_rank)
        ranks[name] = r
    return new_head, ranks, errors
