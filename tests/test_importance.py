"""Tests for the empirical Fisher row importance (sklearn_winfair._importance)."""

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_winfair._importance import (
    _per_sample_rows_closed_form,
    _per_sample_rows_func,
    floor_importance,
    group_row_importance,
    neutral_importance,
)


def test_closed_form_matches_torch_func_per_sample_gradients():
    """The linear closed form x_j^2 ||p - y||^2 equals torch.func per-sample grads."""
    torch.manual_seed(0)
    layer = nn.Linear(7, 4).double()
    x = torch.randn(50, 7, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    closed = _per_sample_rows_closed_form(layer, x, y)
    func = _per_sample_rows_func(layer, [""], x, y)[""]
    torch.testing.assert_close(closed, func, rtol=1e-10, atol=1e-12)


def test_per_sample_not_batch_gradient():
    """Importance is the mean of squared per-sample grads, not the squared mean grad."""
    torch.manual_seed(1)
    layer = nn.Linear(3, 2).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    got = group_row_importance(layer, x, y, torch.zeros(20, dtype=torch.long), 1)[""]
    # reference: loop over rows with autograd
    ref = np.zeros(3)
    for i in range(20):
        layer.zero_grad()
        nn.functional.cross_entropy(layer(x[i : i + 1]), y[i : i + 1]).backward()
        ref += layer.weight.grad.square().sum(dim=0).numpy()
    np.testing.assert_allclose(got[0], ref / 20, rtol=1e-10)


def test_group_importance_is_mean_over_each_groups_rows():
    """Each group's row is the Fisher over that group's rows only."""
    torch.manual_seed(2)
    head = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    codes = torch.tensor([0] * 15 + [1] * 25)
    both = group_row_importance(head, x, y, codes, 2, batch_size=7)
    only0 = group_row_importance(head, x[:15], y[:15], codes[:15] * 0, 1)
    only1 = group_row_importance(head, x[15:], y[15:], codes[15:] * 0, 1)
    assert set(both) == {"0", "2"}
    for name in both:
        np.testing.assert_allclose(both[name][0], only0[name][0], rtol=1e-10)
        np.testing.assert_allclose(both[name][1], only1[name][0], rtol=1e-10)


def test_batch_size_does_not_change_result():
    """Streaming in batches gives the same numbers as one batch."""
    layer = nn.Linear(4, 2).double()
    x = torch.randn(33, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (33,))
    codes = torch.randint(0, 2, (33,))
    a = group_row_importance(layer, x, y, codes, 2, batch_size=5)[""]
    b = group_row_importance(layer, x, y, codes, 2, batch_size=100)[""]
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_neutral_importance_is_weighted_mean_of_square_roots():
    """Ihat_N = alpha sqrt(I_0) + (1 - alpha) sqrt(I_1), and alpha=1 keeps group 0."""
    I = np.array([[4.0, 9.0, 1.0], [16.0, 1.0, 0.25]])
    np.testing.assert_allclose(neutral_importance(I, [0.5, 0.5]), [3.0, 2.0, 0.75])
    np.testing.assert_allclose(neutral_importance(I, [1.0, 0.0]), [2.0, 3.0, 1.0])


def test_dead_features_are_floored_not_infinite():
    """Zero-importance rows give a finite positive floor, all-zero gives ones."""
    out = neutral_importance(np.array([[4.0, 0.0]]), [1.0])
    assert np.all(np.isfinite(1 / out)) and out[1] == pytest.approx(2e-6)
    np.testing.assert_array_equal(floor_importance(np.zeros(3)), np.ones(3))


def test_head_without_linear_is_rejected():
    """A head with no nn.Linear raises a clear error."""
    with pytest.raises(ValueError, match="no nn.Linear"):
        group_row_importance(nn.ReLU(), torch.zeros(2, 2), torch.zeros(2).long(),
                             torch.zeros(2).long(), 1)


def test_chain_rule_closed_form_matches_torch_func_on_an_mlp_head():
    """One batched backward gives every layer's per-sample rows, as vmap does."""
    from sklearn_winfair._importance import _per_sample_rows_chain

    torch.manual_seed(0)
    head = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3),
    ).double().eval()
    with torch.no_grad():  # non-trivial running statistics
        head[1].running_mean.uniform_(-1, 1)
        head[1].running_var.uniform_(0.5, 2)
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    names = ["0", "4", "6"]
    chain = _per_sample_rows_chain(head, names, x, y)
    func = _per_sample_rows_func(head, names, x, y)
    for n in names:
        torch.testing.assert_close(chain[n], func[n], rtol=1e-10, atol=1e-12)


class _SharedTwice(nn.Module):
    """A head that applies the same Linear twice (not a per-sample outer product)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(self.inner(torch.relu(self.inner(x)))))


def test_layer_used_twice_falls_back_to_torch_func():
    """group_row_importance stays exact when the closed form does not apply."""
    torch.manual_seed(0)
    head = _SharedTwice().double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    codes = torch.zeros(30, dtype=torch.long)
    got = group_row_importance(head, x, y, codes, 1)
    ref = _per_sample_rows_func(head, ["inner", "out"], x, y)
    np.testing.assert_allclose(got["inner"][0], ref["inner"].mean(0).numpy())
    np.testing.assert_allclose(got["out"][0], ref["out"].mean(0).numpy())
