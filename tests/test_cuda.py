"""The estimator on a CUDA device (skipped where there is none, as in CI).

Run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
"""

import numpy as np
import pytest
import torch
from conftest import TinyResNet, make_task, mlp_backbone, mlp_head_backbone

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair import _training as training

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)
KW = dict(max_epochs=5, lr=1e-2, batch_size=64, random_state=0)


def test_cuda_fit_matches_the_cpu_fit():
    """Same seed, same batches (the order is drawn on the CPU): same model."""
    X, y, s = make_task(n_classes=3)
    cpu = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=2, **KW)
    cpu.fit(X, y, sensitive_features=s)
    gpu = FairLowRankFineTuner(mlp_head_backbone(), head="1", rank=2, device="cuda",
                               **KW)
    gpu.fit(X, y, sensitive_features=s)
    assert next(gpu.model_.parameters()).is_cuda
    for name in cpu.importance_:
        np.testing.assert_allclose(gpu.importance_[name], cpu.importance_[name],
                                   rtol=1e-4)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-4)


def test_cached_features_go_to_the_device_once(monkeypatch):
    """Training batches are sliced on the GPU: no host-to-device copy per step."""
    X, y, s = make_task()
    sliced_on = []
    real = training.TensorBatches.batch

    def spy(self, idx):
        Xb, yb = real(self, idx)
        sliced_on.append((idx.device.type, Xb["x"].device.type, yb.device.type))
        return Xb, yb

    monkeypatch.setattr(training.TensorBatches, "batch", spy)
    FairLowRankFineTuner(mlp_backbone(), rank=1, device="cuda", **KW).fit(
        X, y, sensitive_features=s
    )
    assert sliced_on and set(sliced_on) == {("cuda", "cuda", "cuda")}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_cnn_on_cuda(dtype):
    """A half-precision CNN trains its float32 head on the GPU without NaN."""
    rng = np.random.RandomState(0)
    X = (rng.uniform(0, 1, size=(128, 3, 16, 16)) * 255).astype(np.uint8)
    y = (X[:, 0].mean(axis=(1, 2)) > 127).astype(int)
    s = rng.choice(["a", "b"], size=128)
    torch.manual_seed(0)
    clf = FairLowRankFineTuner(TinyResNet().to(dtype), rank=2, device="cuda", **KW)
    clf.fit(X, y, sensitive_features=s)
    assert np.all(np.isfinite(clf.predict_proba(X)))
    assert clf.export_module().fc.weight.dtype == dtype


def test_feature_store_on_cuda(tmp_path):
    """memory= works on the GPU and a second fit extracts nothing."""
    X, y, s = make_task()
    backbone = mlp_backbone()
    rows = []
    backbone.register_forward_hook(lambda m, a, out: rows.append(len(a[0])))
    for alpha in (0.5, 0.8):
        FairLowRankFineTuner(backbone, rank=1, alpha=alpha, memory=str(tmp_path),
                             device="cuda", **KW).fit(X, y, sensitive_features=s)
    assert sum(rows) == len(X)
