"""Tests for sklearn_winfair.penalties: differentiable DP and EO gaps (torch)."""

import numpy as np
import pytest
import torch

from sklearn_winfair.metrics import demographic_parity_gap, equalized_odds_gap
from sklearn_winfair.penalties import (
    demographic_parity_penalty,
    equalized_odds_penalty,
)


def _random_binary(seed, n=300, n_groups=3):
    """Random 0/1 labels and predictions, groups where every group has both labels."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=n)
    # bias the predictions by group so the gaps are not all near 0
    p = 0.2 + 0.6 * groups / max(n_groups - 1, 1)
    y_true = rng.integers(0, 2, size=n)
    y_pred = (rng.random(n) < p).astype(int)
    for g in range(n_groups):  # make sure every (group, class) cell is non-empty
        idx = np.flatnonzero(groups == g)
        y_true[idx[:2]] = [0, 1]
    weights = rng.random(n) + 0.5
    return y_true, y_pred, groups, weights


# --------------------------------------------------------------------------
# torch penalties
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_penalties_on_hard_predictions_equal_metrics(seed, n_groups):
    """On 0/1 probabilities the penalties equal the DP gap and the summed EO gap."""
    y_true, y_pred, groups, _ = _random_binary(seed, n_groups=n_groups)
    proba = torch.as_tensor(y_pred, dtype=torch.float64)
    g = torch.as_tensor(groups)
    y = torch.as_tensor(y_true)

    dp = demographic_parity_penalty(proba, g)
    eo = equalized_odds_penalty(proba, y, g)
    assert dp.ndim == 0 and eo.ndim == 0
    assert dp.item() == pytest.approx(
        demographic_parity_gap(y_true, y_pred, sensitive_features=groups), abs=1e-12
    )
    assert eo.item() == pytest.approx(
        equalized_odds_gap(y_true, y_pred, sensitive_features=groups), abs=1e-12
    )


def test_penalties_on_soft_predictions_equal_group_mean_ranges():
    """On soft probabilities the penalties are ranges of group means (pandas ref)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 64
    proba = rng.random(n)
    groups = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({"p": proba, "g": groups, "y": y})
    means = df.groupby("g")["p"].mean()
    cell_means = df.groupby(["y", "g"])["p"].mean()
    expected_eo = sum(
        cell_means[c].max() - cell_means[c].min() for c in cell_means.index.levels[0]
    )
    t = torch.as_tensor(proba)
    dp = demographic_parity_penalty(t, torch.as_tensor(groups))
    eo = equalized_odds_penalty(t, torch.as_tensor(y), torch.as_tensor(groups))
    assert dp.item() == pytest.approx(means.max() - means.min())
    assert eo.item() == pytest.approx(expected_eo)


def test_penalties_are_differentiable():
    """backward() yields finite, non-zero gradients w.r.t. the probabilities."""
    torch.manual_seed(0)
    logits = torch.randn(32, requires_grad=True)
    groups = torch.arange(32) % 3
    y = (torch.arange(32) // 3) % 2
    for penalty in (
        demographic_parity_penalty(torch.sigmoid(logits), groups),
        equalized_odds_penalty(torch.sigmoid(logits), y, groups),
    ):
        logits.grad = None
        penalty.backward()
        assert torch.isfinite(logits.grad).all()
        assert logits.grad.abs().sum() > 0


def test_penalties_are_zero_with_one_group_present():
    """With a single group present (even among several codes) both penalties are 0.

    The gradient is still defined (zeros), so a batch drawn from one group does
    not break training.
    """
    proba = torch.tensor([0.1, 0.9, 0.4, 0.7], requires_grad=True)
    groups = torch.full((4,), 2)
    y = torch.tensor([0, 1, 1, 0])
    dp = demographic_parity_penalty(proba, groups, num_groups=4)
    eo = equalized_odds_penalty(proba, y, groups, num_groups=4)
    assert dp.item() == 0.0 and eo.item() == 0.0
    (dp + eo).backward()
    assert torch.equal(proba.grad, torch.zeros(4))


def test_equalized_odds_penalty_skips_groups_absent_from_a_class():
    """A group with no positives only takes part in the y=0 stratum."""
    proba = torch.tensor([0.9, 0.2, 0.6, 0.1])
    y = torch.tensor([1, 0, 0, 0])
    groups = torch.tensor([0, 0, 1, 1])
    # y=1: only group 0 present -> 0; y=0: |0.2 - mean(0.6, 0.1)| = 0.15
    assert equalized_odds_penalty(proba, y, groups).item() == pytest.approx(0.15)


def test_penalties_empty_batch_is_zero():
    """An empty mini-batch gives a 0 penalty instead of an error."""
    empty = torch.zeros(0)
    codes = torch.zeros(0, dtype=torch.long)
    assert demographic_parity_penalty(empty, codes).item() == 0.0
    assert equalized_odds_penalty(empty, codes, codes).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_penalties_keep_dtype_and_accept_int32_and_bool(dtype):
    """The result has the input dtype/device; int32 groups and bool y are fine."""
    proba = torch.tensor([0.2, 0.8, 0.5, 0.3], dtype=dtype)
    groups = torch.tensor([0, 1, 0, 1], dtype=torch.int32)
    y = torch.tensor([True, False, True, False])
    for penalty in (
        demographic_parity_penalty(proba, groups),
        equalized_odds_penalty(proba, y, groups),
    ):
        assert penalty.dtype == dtype
        assert penalty.device == proba.device
        assert penalty.shape == ()


def test_penalties_validate_args_false_gives_same_value():
    """Skipping validation (hot loop) does not change the value."""
    proba = torch.tensor([0.2, 0.8, 0.5, 0.3, 0.9])
    groups = torch.tensor([0, 1, 2, 1, 0])
    y = torch.tensor([1, 0, 1, 1, 0])
    for kwargs in ({}, {"num_groups": 3}):
        assert torch.equal(
            demographic_parity_penalty(proba, groups, validate_args=False, **kwargs),
            demographic_parity_penalty(proba, groups),
        )
        assert torch.equal(
            equalized_odds_penalty(proba, y, groups, validate_args=False, **kwargs),
            equalized_odds_penalty(proba, y, groups),
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_penalties_on_cuda_match_cpu():
    """On a GPU the penalties match the CPU values and stay on the device."""
    proba = torch.rand(100, dtype=torch.float64)
    groups = torch.randint(0, 3, (100,))
    y = torch.randint(0, 2, (100,))
    cpu = equalized_odds_penalty(proba, y, groups)
    gpu = equalized_odds_penalty(proba.cuda(), y.cuda(), groups.cuda(), num_groups=3)
    assert gpu.device.type == "cuda"
    assert gpu.item() == pytest.approx(cpu.item())


def test_penalty_invalid_arguments():
    """Bad dtypes, shapes, group codes and labels raise with clear messages."""
    proba = torch.tensor([0.2, 0.8, 0.5])
    groups = torch.tensor([0, 1, 1])
    y = torch.tensor([0, 1, 1])
    with pytest.raises(TypeError, match=r"proba_pos must be a floating point"):
        demographic_parity_penalty(torch.tensor([0, 1, 1]), groups)
    with pytest.raises(TypeError, match=r"groups must be an integer tensor"):
        demographic_parity_penalty(proba, groups.float())
    with pytest.raises(ValueError, match=r"proba_pos must be a 1-d tensor"):
        demographic_parity_penalty(proba[:, None], groups)
    with pytest.raises(ValueError, match=r"groups must have the same length"):
        demographic_parity_penalty(proba, groups[:2])
    with pytest.raises(ValueError, match=r"groups must hold codes in \[0, 2\)"):
        demographic_parity_penalty(proba, torch.tensor([0, 1, 2]), num_groups=2)
    with pytest.raises(ValueError, match=r"groups must hold codes in"):
        demographic_parity_penalty(proba, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"y must hold only 0 and 1"):
        equalized_odds_penalty(proba, torch.tensor([0, 2, 1]), groups)
    with pytest.raises(ValueError, match=r"y must have the same length"):
        equalized_odds_penalty(proba, y[:2], groups)
