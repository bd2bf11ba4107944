"""Tests for the weighted SVD and the low-rank layer (sklearn_winfair._factorize)."""

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_winfair._factorize import LowRankLinear, factorize_linear, weighted_svd


def test_uniform_weights_is_plain_truncated_svd():
    """With ihat = 1 the factorization equals numpy's truncated SVD."""
    rng = np.random.RandomState(0)
    W = rng.normal(size=(8, 5))
    A, B = weighted_svd(W, np.ones(8), rank=2)
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(A @ B, (U[:, :2] * S[:2]) @ Vt[:2], atol=1e-12)
    np.testing.assert_allclose(B, Vt[:2], atol=1e-12)


def test_weighted_svd_minimises_weighted_error():
    """The weighted truncation is best in the ihat-weighted norm, not the plain one."""
    rng = np.random.RandomState(1)
    W = rng.normal(size=(6, 4))
    ihat = np.array([10.0, 1, 1, 1, 1, 0.1])
    Aw, Bw = weighted_svd(W, ihat, 1)
    Au, Bu = weighted_svd(W, np.ones(6), 1)
    weighted = lambda M: np.linalg.norm(ihat[:, None] * (W - M))  # noqa: E731
    assert weighted(Aw @ Bw) < weighted(Au @ Bu)
    assert np.linalg.norm(W - Au @ Bu) < np.linalg.norm(W - Aw @ Bw)


@pytest.mark.parametrize("d,k", [(16, 2), (5, 9), (7, 7)])
def test_full_rank_reproduces_pretrained_logits(d, k):
    """At rank = min(d, k) the low-rank head gives the original logits."""
    torch.manual_seed(0)
    layer = nn.Linear(d, k)
    ihat = np.random.RandomState(0).uniform(0.01, 5, size=d)
    low, error = factorize_linear(layer, ihat, min(d, k))
    x = torch.randn(30, d)
    torch.testing.assert_close(low(x), layer(x), rtol=1e-5, atol=1e-5)
    assert low.rank == min(d, k)
    assert error < 1e-12


def test_factorize_does_not_modify_layer():
    """The pre-trained layer is left untouched."""
    layer = nn.Linear(4, 3)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    factorize_linear(layer, np.ones(4), 1)
    for k, v in layer.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_low_rank_parameter_count():
    """x -> xA (no bias) -> (xA)B + b has d*r + r*k + k parameters."""
    layer = LowRankLinear(np.ones((10, 3)), np.ones((3, 4)), torch.zeros(4))
    assert sum(p.numel() for p in layer.parameters()) == 10 * 3 + 3 * 4 + 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"weight": np.ones((3, 2)), "ihat": np.ones(2), "rank": 1}, "must be"),
        ({"weight": np.ones((3, 2)), "ihat": np.array([1, 0, 1.0]), "rank": 1},
         "strictly positive"),
        ({"weight": np.ones((3, 2)), "ihat": np.ones(3), "rank": 3}, "rank must"),
    ],
)
def test_bad_arguments(kwargs, match):
    """Shape, non-positive weights and out-of-range rank raise ValueError."""
    with pytest.raises(ValueError, match=match):
        weighted_svd(**kwargs)


def _decaying(d, k, seed=0):
    rng = np.random.RandomState(seed)
    U, _ = np.linalg.qr(rng.normal(size=(d, k)))
    V, _ = np.linalg.qr(rng.normal(size=(k, k)))
    return (U * (0.9 ** np.arange(k))) @ V.T + 1e-3 * rng.normal(size=(d, k))


@pytest.mark.parametrize("rank", [4, 16])
def test_randomized_svd_is_within_one_percent_of_the_full_svd(rank):
    """method='randomized' loses under 1 % more (weighted) Frobenius error."""
    from sklearn_winfair._factorize import truncation_error

    W = _decaying(600, 300)
    ihat = np.random.RandomState(1).uniform(0.5, 2.0, size=600)
    A, B = weighted_svd(W, ihat, rank, method="full")
    Ar, Br = weighted_svd(W, ihat, rank, method="randomized")
    full, fast = truncation_error(W, ihat, A, B), truncation_error(W, ihat, Ar, Br)
    assert full <= fast <= 1.01 * full


def test_auto_picks_the_randomized_svd_only_far_below_full_rank(monkeypatch):
    """'auto' takes the randomized SVD for rank <= min(d, k) / 10, from 256 up."""
    import sklearn_winfair._factorize as fz

    calls = []
    real = fz._lowrank_svd
    monkeypatch.setattr(fz, "_lowrank_svd", lambda M, r: calls.append(r) or real(M, r))
    W = _decaying(600, 300)
    weighted_svd(W, np.ones(600), 30)
    weighted_svd(W, np.ones(600), 31)  # above a tenth: full SVD
    weighted_svd(W[:200, :200], np.ones(200), 2)  # small layer: full SVD
    assert calls == [30]
    with pytest.raises(ValueError, match="method must be"):
        weighted_svd(W, np.ones(600), 3, method="fast")
