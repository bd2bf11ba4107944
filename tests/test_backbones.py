"""Real backbones and input/output formats (sklearn_winfair._inputs, _outputs).

Every model is built here from a config or a few layers (random weights
stand in for pre-trained ones; nothing is downloaded).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
from conftest import (
    DropoutClassifierNet,
    TinyResNet,
    image_task,
    make_task,
    mlp_backbone,
    text_task,
    tiny_bert,
)
from sklearn.model_selection import GridSearchCV
from skorch.helper import SliceDict
from torch import nn

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair._factorize import LowRankLinear
from sklearn_winfair._store import SPOT_ROWS, VERIFY_ROWS
from sklearn_winfair.exceptions import HeadClassesWarning

FAST = dict(max_epochs=3, batch_size=32, random_state=0)


# --------------------------------------------------------------- text models


def test_bert_with_dict_input_fits_and_predicts():
    """Token ids reach BERT as int64 through forward's keyword arguments."""
    X, y, s = text_task()
    clf = FairLowRankFineTuner(tiny_bert(), rank=4, solver="adam", **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.head_name_ == "classifier" and clf.ranks_ == {"classifier": 2}
    assert clf.input_shape_ == {"X['input_ids']": (10,), "X['attention_mask']": (10,)}
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2) and np.all(np.isfinite(proba))
    # without a cache, the trunk runs every step and gives the same kind of model
    nocache = FairLowRankFineTuner(tiny_bert(), rank=4, cache_features=False,
                                   solver="adam", **FAST)
    nocache.fit(SliceDict(**X), y, sensitive_features=s)
    np.testing.assert_allclose(nocache.predict_proba(X), proba, atol=1e-5)


def test_bert_grid_search_with_slicedict_and_routed_groups():
    """GridSearchCV over rank and alpha indexes a SliceDict and routes groups."""
    X, y, s = text_task(n=80)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(tiny_bert(), max_epochs=2, random_state=0)
        clf.set_fit_request(sensitive_features=True)
        search = GridSearchCV(clf, {"rank": [1, 2], "alpha": [0.3, 0.5]}, cv=2)
        search.fit(SliceDict(**X), y, sensitive_features=s)
    assert set(search.best_params_) == {"rank", "alpha"}
    assert search.predict(SliceDict(**X)).shape == (80,)


def test_bert_probe_head_for_three_string_classes():
    """A 2-label BERT head becomes a 3-class probe; labels are strings."""
    X, y, s = text_task(n=90)
    labels = np.array(["neg", "neu", "pos"])[X["input_ids"][:, 1] % 3]
    clf = FairLowRankFineTuner(tiny_bert(), head_init="probe", rank=2,
                               solver="adam", **FAST)
    clf.fit(X, labels, sensitive_features=s)
    assert list(clf.classes_) == ["neg", "neu", "pos"]
    assert set(clf.predict(X)) <= {"neg", "neu", "pos"}


# ------------------------------------------------------------- image models


def test_resnet_style_cnn_with_fc_head_on_uint8_images():
    """uint8 images reach the model as uint8 (its first step converts them)."""
    X, y, s = image_task(dtype=np.uint8)
    seen = []
    torch.manual_seed(0)
    model = TinyResNet()
    model.stem.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    clf = FairLowRankFineTuner(model, rank=4, **FAST).fit(X, y, sensitive_features=s)
    assert clf.head_name_ == "fc" and torch.float32 in seen
    assert clf.predict_proba(X).shape == (64, 2)
    model_seen = []
    clf.model_.register_forward_pre_hook(lambda m, a: model_seen.append(a[0].dtype))
    clf.predict(X)
    assert model_seen == [torch.uint8, torch.uint8]


def test_classifier_sequential_dropout_linear_head(task):
    """head="classifier" (Dropout, Linear) is factorized; dropout stays off in eval."""
    X, y, s = task
    torch.manual_seed(0)
    clf = FairLowRankFineTuner(DropoutClassifierNet(), head="classifier", rank=4,
                               **FAST)
    clf.fit(X, y, sensitive_features=s)
    assert clf.factorized_layers_ == ["classifier.1"]
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))


def _rss_anon_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise OSError("no RssAnon")  # pragma: no cover


# ------------------------------------------------------- output formats


# ------------------------------------------------------- mixed precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_trunk_trains_a_float32_head(task, dtype):
    """fp16 / bf16 trunks keep their dtype; the head trains in float32 with Adam."""
    X, y, s = task
    kw = dict(rank=4, lr=1e-2, max_epochs=10, random_state=0)  # Adam's default eps
    ref = FairLowRankFineTuner(mlp_backbone(), **kw).fit(X, y, sensitive_features=s)
    backbone = mlp_backbone().to(dtype)
    clf = FairLowRankFineTuner(backbone, **kw).fit(X, y, sensitive_features=s)
    assert clf.model_[0].weight.dtype == dtype
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba))
    assert np.mean(clf.predict(X) == ref.predict(X)) > 0.95  # rounding aside
    merged = clf.export_module()
    assert merged[2].weight.dtype == dtype  # the original architecture and dtype
    fresh = mlp_backbone().to(dtype)
    fresh.load_state_dict(merged.state_dict())


# --------------------------------------------------------------- deployment
def test_merged_export_loads_into_a_fresh_model_and_without_the_package(tmp_path):
    """The merged export is the user's architecture: state_dict and torch.save."""
    X, y, s = image_task()
    torch.manual_seed(0)
    clf = FairLowRankFineTuner(TinyResNet(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    merged = clf.export_module()
    assert not any(p.requires_grad for p in merged.parameters())
    out = merged(torch.from_numpy(X))  # no no_grad needed
    np.testing.assert_allclose(
        torch.softmax(out, 1).double().numpy(), clf.predict_proba(X), rtol=1e-4
    )
    fresh = TinyResNet()
    fresh.load_state_dict(merged.state_dict())
    torch.save(merged, tmp_path / "model.pt")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", out.detach().numpy())
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('sklearn_winfair', 'skorch', 'sklearn'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np, torch
model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)
out = model(torch.from_numpy(np.load({str(tmp_path / 'X.npy')!r})))
np.testing.assert_allclose(out.numpy(), np.load({str(tmp_path / 'expected.npy')!r}),
                           rtol=1e-5)
print('ok', type(model.fc).__name__)
"""
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "Linear"]


def test_pickled_estimator_stores_the_trunk_once(task):
    """Pickling stores the backbone once; the model is rebuilt on load."""
    import pickle

    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(5, 1024), nn.ReLU(), nn.Linear(1024, 512),
                        nn.ReLU(), nn.Linear(512, 2))
    X, y, s = task
    clf = FairLowRankFineTuner(big, rank=1, **FAST).fit(X, y, sensitive_features=s)
    size = len(pickle.dumps(clf))
    backbone_size = len(pickle.dumps(big))
    assert size < 1.2 * backbone_size, (size, backbone_size)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert isinstance(loaded.model_[4], LowRankLinear)


# --------------------------------------------------------------- label order
def test_head_classes_maps_columns_to_labels():
    """A 10-class head for "zero".."nine" keeps its accuracy with head_classes."""
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
             "nine"]
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 10)).astype(np.float32)
    digit = X.argmax(axis=1)
    torch.manual_seed(0)
    head = nn.Linear(10, 10)
    with torch.no_grad():  # a "pre-trained" head: column j scores digit j
        head.weight.copy_(torch.eye(10) * 5)
        head.bias.zero_()
    labels = np.array(names)[digit]
    clf = FairLowRankFineTuner(nn.Sequential(head), head_classes=names, rank=None,
                               solver="adam", lr=1e-6, max_epochs=1, random_state=0)
    clf.fit(X, labels)
    assert clf.score(X, labels) == 1.0
    assert list(clf.classes_) == names
    with pytest.warns(HeadClassesWarning, match="sorted label"):
        wrong = FairLowRankFineTuner(nn.Sequential(head), rank=None, lr=1e-6,
                                     solver="adam", max_epochs=1,
                                     random_state=0).fit(X, labels)
    assert wrong.score(X, labels) < 0.5
    match = r"labels \['ten'\] that are not in head_classes"
    with pytest.raises(ValueError, match=match):
        FairLowRankFineTuner(nn.Sequential(head), head_classes=names, rank=None).fit(
            X, np.r_[labels[:-1], ["ten"]]
        )


def test_grid_search_with_memory_extracts_each_row_once(tmp_path):
    """A 4 x 3-fold search, its scoring and refit run the backbone once a row."""
    X, y, s = make_task(n=150)
    backbone = mlp_backbone()
    rows = []
    backbone.register_forward_hook(lambda m, a, out: rows.append(len(a[0])))
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairLowRankFineTuner(backbone, memory=str(tmp_path), max_epochs=2,
                                   random_state=0)
        clf.set_fit_request(sensitive_features=True)
        search = GridSearchCV(clf, {"rank": [1, 2], "alpha": [0.3, 0.7]}, cv=3)
        search.fit(X, y, sensitive_features=s)
    # fits, the scoring of every held-out fold and the refit all read the
    # store: beyond one pass, only its checks (23 calls find stored rows: 11
    # fits, 11 scorings, the refit; the first checks both shards, the others
    # recompute SPOT_ROWS rows each)
    assert sum(rows) == len(X) + VERIFY_ROWS + 22 * SPOT_ROWS
    np.testing.assert_allclose(
        search.predict_proba(X),
        FairLowRankFineTuner(backbone, max_epochs=2, random_state=0,
                             **search.best_params_)
        .fit(X, y, sensitive_features=s).predict_proba(X),
        atol=1e-6,
    )


