"""Weighted SVD of a linear layer and the low-rank layer that replaces it."""

import numpy as np
import torch
from torch import nn


def weighted_svd(weight, ihat, rank):
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
    U, S, Vt = np.linalg.svd(ihat[:, None] * W, full_matrices=False)
    A = (U[:, :rank] * S[:rank]) / ihat[:, None]
    B = Vt[:rank]
    return A, B


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
        self.first = nn.Linear(d, r, bias=False, dtype=dtype)
        self.second = nn.Linear(r, k, bias=bias is not None, dtype=dtype)
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


def factorize_linear(layer, ihat, rank):
    """Return a :class:`LowRankLinear` built from ``layer`` by weighted SVD.

    Parameters
    ----------
    layer : torch.nn.Linear
        The pre-trained layer; not modified.
    ihat : ndarray of shape (layer.in_features,)
        Importance diagonal.
    rank : int
        Kept rank.

    Returns
    -------
    LowRankLinear
        On the same device and dtype as ``layer``.
    """
    W = layer.weight.detach().cpu().double().numpy().T
    A, B = weighted_svd(W, ihat, rank)
    new = LowRankLinear(A, B, layer.bias, dtype=layer.weight.dtype)
    return new.to(layer.weight.device)
