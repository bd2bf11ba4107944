"""X in every form (sklearn_winfair._inputs): dtypes kept or cast, batches, shapes, memmaps."""


import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    BagOfIds,
    TinyResNet,
    image_task,
    mlp_backbone,
    text_task,
    tiny_bert,
)
from torch import nn

from sklearn_winfair import (
    FairLowRankFineTuner,
)

FAST = dict(max_epochs=5, lr=0.05, batch_size=64, random_state=0)


class _InPlaceFirst(nn.Module):
    """Backbone whose first step writes into its input (x -= 1, in place)."""

    def __init__(self):
        super().__init__()
        self.body = mlp_backbone()

    def forward(self, x):
        x.sub_(1.0)
        return self.body(x)


def test_nan_or_inf_in_X(task):
    """NaN or inf in X raise a ValueError naming X."""
    X, y, s = task
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[0, 0] = bad
        with pytest.raises(ValueError, match="Input X contains"):
            FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
                Xb, y, sensitive_features=s
            )


def test_image_input_is_not_flattened():
    """An N x C x H x W array reaches a conv backbone unchanged."""
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2),
    )
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3, 6, 6)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > 0).astype(int)
    s = rng.choice([0, 1], size=80)
    clf = FairLowRankFineTuner(backbone, rank=1, **FAST).fit(X, y, sensitive_features=s)
    assert clf.n_features_in_ == 3
    assert clf.predict_proba(X).shape == (80, 2)


def test_in_place_backbone_does_not_touch_callers_X(task):
    """fit and predict copy each batch, so an in-place backbone cannot edit X."""
    X, y, s = task
    X_before = X.copy()
    clf = FairLowRankFineTuner(_InPlaceFirst(), rank=1, **FAST)
    clf.fit(X, y, sensitive_features=s)
    clf.predict_proba(X)
    FairLowRankFineTuner(_InPlaceFirst(), rank=1, cache_features=False, **FAST).fit(
        X, y, sensitive_features=s
    )
    np.testing.assert_array_equal(X, X_before)


# --------------------------------------------------------------- text models


# ------------------------------------------------------------- image models


def _rss_anon_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise OSError("no RssAnon")  # pragma: no cover


def test_embedding_bag_gets_exact_int64_ids_above_2_24():
    """Ids above 2**24 (not representable in float32) arrive exactly."""
    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    ids = (2**24 + rng.randint(0, 10_000, size=(120, 6))).astype(np.int64)
    y = (ids[:, 0] % 2).astype(int)
    model = BagOfIds()
    clf = FairLowRankFineTuner(model, rank=None, **FAST).fit(ids, y)
    exported = clf.export_module()
    with torch.no_grad():
        direct = torch.softmax(exported(torch.from_numpy(ids)), 1).double().numpy()
    np.testing.assert_allclose(clf.predict_proba(ids), direct, rtol=1e-6)
    # float32 would have rounded the odd ids, and changed the hashed buckets
    as_float = torch.from_numpy(ids).float().long()
    assert not torch.equal(as_float % 97, torch.from_numpy(ids) % 97)


def test_integer_features_into_a_float_layer_are_cast_once_and_remembered(task):
    """Numeric X is numeric: a float MLP fed int64 X fits as on the same floats."""
    X, y, s = task
    X_int = (X * 10).astype(np.int64)
    clf = FairLowRankFineTuner(mlp_backbone(), rank=None, **FAST).fit(X_int, y)
    assert clf.cast_integers_
    ref = FairLowRankFineTuner(mlp_backbone(), rank=None, **FAST).fit(
        X_int.astype(np.float32), y
    )
    assert not ref.cast_integers_
    np.testing.assert_array_equal(clf.predict_proba(X_int),
                                  ref.predict_proba(X_int.astype(np.float32)))


def test_integer_token_ids_in_a_mapping_are_never_cast():
    """Ids passed by keyword stay integers: a float layer there still says why."""
    X = {"x": np.arange(40, dtype=np.int64).reshape(20, 2)}

    class KwModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(TypeError, match=r"X.astype\('float32'\)"):
        FairLowRankFineTuner(KwModel(), rank=None).fit(X, np.arange(20) % 2)


def test_image_shape_mismatch_is_stated_as_shapes():
    """Predicting on other image sizes names both shapes."""
    X, y, s = image_task()
    clf = FairLowRankFineTuner(TinyResNet(), rank=None, **FAST).fit(X, y)
    X_big, _, _ = image_task(size=10)
    with pytest.raises(ValueError, match=r"rows of shape \(3, 10, 10\).*\(3, 8, 8\)"):
        clf.predict(X_big)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_read_only_memmap_is_read_one_batch_at_a_time(tmp_path, dtype):
    """A read-only memmap is never copied whole: peak anonymous memory stays small.

    A float32 copy of the uint8 file would add 4x its size; we allow a fifth.
    """
    n = 8192 if dtype == np.uint8 else 2048
    path = tmp_path / "images.bin"
    rng = np.random.RandomState(0)
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=(n, 3, 32, 32))
    for start in range(0, n, 1024):
        block = rng.uniform(0, 1, size=(min(1024, n - start), 3, 32, 32))
        mm[start : start + 1024] = (block * 255) if dtype == np.uint8 else block
    mm.flush()
    del mm
    X = np.memmap(path, dtype=dtype, mode="r", shape=(n, 3, 32, 32))
    size_mib = X.nbytes / 2**20
    y = np.arange(n) % 2
    torch.manual_seed(0)
    model = TinyResNet(width=4, stride=4)
    peak, done = [0.0], threading.Event()

    def sample(base):
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon_mib() - base)
            time.sleep(0.002)

    clf = FairLowRankFineTuner(model, rank=None, max_epochs=1, batch_size=128,
                               cache_features=False, random_state=0)
    clf.fit(X[:256], y[:256])  # warm up: lazy imports and allocator pools
    base = _rss_anon_mib()
    thread = threading.Thread(target=sample, args=(base,))
    thread.start()
    try:
        clf.fit(X, y)
    finally:
        done.set()
        thread.join()
    assert peak[0] < max(size_mib / 5, 8), (peak[0], size_mib)


def test_mapping_input_errors():
    X, y, s = text_task(n=20)
    bad = dict(X, attention_mask=X["attention_mask"][:10])
    with pytest.raises(ValueError, match="lengths differ"):
        FairLowRankFineTuner(tiny_bert(), rank=None).fit(bad, y)
    clf = FairLowRankFineTuner(tiny_bert(), rank=None, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict({"input_ids": X["input_ids"]})
