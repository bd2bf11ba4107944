"""Tests for sklearn_winfair._persistence: save_fitted / load_fitted, no pickle."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_task, mlp_backbone, mlp_head_backbone
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_winfair import FairLowRankFineTuner, load_fitted, save_fitted


def _fitted(**params):
    X, y, s = make_task(n=120)
    names = np.array(["deny", "grant"])
    params = {
        "rank": 1,
        "max_epochs": 3,
        "random_state": 0,
        "head_classes": ["deny", "grant"],
        **params,
    }
    clf = FairLowRankFineTuner(mlp_backbone(), **params)
    return clf.fit(X, names[y], sensitive_features=s), X, names[y], s


@pytest.fixture
def saved(tmp_path):
    clf, X, y, s = _fitted()
    path = tmp_path / "clf.safetensors"
    save_fitted(clf, path)
    return clf, X, y, s, path


def _export_proba(clf, X):
    with torch.no_grad():
        logits = clf.export_module()(torch.as_tensor(X)).double()
    return torch.softmax(logits, dim=1).numpy()


def test_round_trip_predicts_as_the_export_and_restores_fitted_attributes(saved):
    """Loaded: proba equals the export's exactly, the original's to 1e-6; same state.

    The original predicts through the factorized head (x A) B, the loaded one
    through the merged W = A B, so only float32 rounding separates them.
    """
    clf, X, y, s, path = saved
    loaded = load_fitted(path, mlp_backbone(seed=5))
    # predict runs the head in float64, the export in float32
    np.testing.assert_allclose(loaded.predict_proba(X), _export_proba(clf, X),
                               rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(
        loaded.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))

    for name in ["classes_", "groups_"]:
        assert getattr(loaded, name).dtype == getattr(clf, name).dtype
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clf, name))
    for name in [
        "head_name_",
        "n_features_in_",
        "input_shape_",
        "ranks_",
        "rank_",
        "factorized_layers_",
        "truncation_error_",
        "n_trainable_params_",
    ]:
        assert getattr(loaded, name) == getattr(clf, name), name
    for name in ["importance_", "neutral_importance_", "group_importance_"]:
        ours, theirs = getattr(loaded, name), getattr(clf, name)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key].dtype == theirs[key].dtype
            np.testing.assert_array_equal(ours[key], theirs[key])
    assert not hasattr(loaded, "net_")

    ours, theirs = loaded.get_params(deep=False), clf.get_params(deep=False)
    assert ours.pop("backbone") is not theirs.pop("backbone")
    assert ours == theirs


def test_loaded_backbone_is_pretrained_so_a_refit_matches(saved):
    """backbone gets the pre-trained head back: clone + fit equals the original's."""
    clf, X, y, s, path = saved
    loaded = load_fitted(path, mlp_backbone(seed=5))
    pretrained = mlp_backbone().state_dict()
    for key, value in loaded.backbone.state_dict().items():
        assert torch.equal(value, pretrained[key]), key
    refit_loaded = clone(loaded).fit(X, y, sensitive_features=s)
    refit_original = clone(clf).fit(X, y, sensitive_features=s)
    np.testing.assert_array_equal(
        refit_loaded.predict_proba(X), refit_original.predict_proba(X)
    )


def test_loaded_export_module_equals_the_original_export(saved):
    """export_module() of the loaded estimator has the original export's weights."""
    clf, _, _, _, path = saved
    loaded = load_fitted(path, mlp_backbone(seed=5))
    ours, theirs = loaded.export_module().state_dict(), clf.export_module().state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype
        assert torch.equal(ours[key], theirs[key]), key


def test_mlp_head_multiclass_dataframe_round_trip(tmp_path):
    """A 2-layer head, 3 classes and DataFrame column names survive the round trip."""
    X, y, s = make_task(n=150, n_classes=3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = FairLowRankFineTuner(
        mlp_head_backbone(), head="1", rank=2, solver="adam", max_epochs=2,
        random_state=0,
    ).fit(frame, y, sensitive_features=s)
    path = tmp_path / "mlp.safetensors"
    save_fitted(clf, path)
    loaded = load_fitted(path, mlp_head_backbone(seed=3))
    assert loaded.feature_names_in_.tolist() == clf.feature_names_in_.tolist()
    assert loaded.factorized_layers_ == clf.factorized_layers_ == ["1.0", "1.2"]
    np.testing.assert_allclose(loaded.predict_proba(frame), _export_proba(clf, X),
                               rtol=1e-4, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))


def test_tampered_metadata_is_refused(saved, tmp_path):
    """Editing the JSON (here classes_) after saving gives the digest error."""
    _, _, _, _, path = saved
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    doc = json.loads(metadata["sklearn_winfair"])
    doc["fitted"]["classes_"]["data"] = ["grant", "deny"]
    metadata["sklearn_winfair"] = json.dumps(doc, sort_keys=True)
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, tampered, metadata=metadata)
    with pytest.raises(ValueError, match=r"was modified after save_fitted wrote it"):
        load_fitted(tampered, mlp_backbone())

    # a changed weight is caught the same way
    key = next(k for k in tensors if k.startswith("model/"))
    tensors[key] = tensors[key] + 1.0
    with safe_open(str(path), framework="pt") as f:
        save_file(tensors, tampered, metadata=f.metadata())
    with pytest.raises(ValueError, match=r"was modified after save_fitted wrote it"):
        load_fitted(tampered, mlp_backbone())


def test_files_not_written_by_save_fitted_are_refused(tmp_path):
    """A plain safetensors file and a non-safetensors file name what is wrong."""
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(
        ValueError,
        match=r"not a file written by .*save_fitted: "
        r"its header has no 'sklearn_winfair'",
    ):
        load_fitted(plain, mlp_backbone())
    garbage = tmp_path / "model.pkl"
    garbage.write_bytes(b"\x80\x04not safetensors at all")
    with pytest.raises(ValueError, match=r"not a file written by .*safetensors says"):
        load_fitted(garbage, mlp_backbone())


@pytest.mark.parametrize(
    "backbone, message",
    [
        (
            lambda: mlp_backbone(hidden=12),
            r"'0.weight' has shape \(12, 5\), saved "
            r"\(16, 5\)",
        ),
        (
            lambda: torch.nn.Sequential(torch.nn.Linear(5, 2)),
            r"keys the backbone lacks \['2.bias', '2.weight'\]",
        ),
        (
            lambda: mlp_backbone().double(),
            r"'0.bias' has dtype torch.float64, saved "
            r"torch.float32",
        ),
    ],
    ids=["shape", "keys", "dtype"],
)
def test_wrong_architecture_is_refused(saved, backbone, message):
    """Another width, another layout or another dtype is a ValueError naming it."""
    _, _, _, _, path = saved
    with pytest.raises(
        ValueError,
        match=r"backbone does not match the saved model: "
        r".*" + message,
    ):
        load_fitted(path, backbone())
    with pytest.raises(TypeError, match=r"backbone must be a torch.nn.Module"):
        load_fitted(path, "mlp")


def test_unsaved_and_unknown_parameters(tmp_path):
    """A callable parameter is not saved: load_fitted asks for it by name."""

    def logits(out):
        return out

    clf, X, _, _ = _fitted(output=logits)
    path = tmp_path / "callable.safetensors"
    save_fitted(clf, path)
    with pytest.raises(
        ValueError,
        match=r"Parameters \['output'\] could not be "
        r"stored in JSON.*\(types: \['function'\]\)",
    ):
        load_fitted(path, mlp_backbone())
    loaded = load_fitted(path, mlp_backbone(), output=logits)
    assert loaded.output is logits
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    with pytest.raises(ValueError, match=r"unknown parameters \['ranks'\]"):
        load_fitted(path, mlp_backbone(), output=logits, ranks=2)


def test_parameters_can_be_overridden_and_optimizer_is_stored_by_name(saved):
    """device and other parameters passed to load_fitted win over the saved ones."""
    clf, X, _, _, path = saved
    loaded = load_fitted(path, mlp_backbone(), batch_size=7, device="cpu")
    assert loaded.batch_size == 7 and loaded.optimizer is torch.optim.Adam
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_unfitted_and_missing_package(tmp_path, monkeypatch):
    """Unfitted estimators raise NotFittedError; without safetensors, name it."""
    with pytest.raises(NotFittedError):
        save_fitted(FairLowRankFineTuner(mlp_backbone()), tmp_path / "x.safetensors")
    clf, _, _, _ = _fitted()
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(
        ImportError,
        match=r"save_fitted needs the package "
        r"'safetensors'.*pip install safetensors",
    ):
        save_fitted(clf, tmp_path / "x.safetensors")


def test_bfloat16_backbone_round_trip(tmp_path):
    """A bf16 trunk loads into a fresh bf16 copy; its proba equals the export's.

    The merged export runs the head in bf16 (issue 17), so the loaded estimator
    agrees with the original's export exactly and with its float32-head
    predict_proba only to bf16 rounding.
    """
    X, y, s = make_task(n=120)
    clf = FairLowRankFineTuner(
        mlp_backbone().to(torch.bfloat16), rank=1, max_epochs=2, random_state=0
    ).fit(X, y, sensitive_features=s)
    path = tmp_path / "bf16.safetensors"
    save_fitted(clf, path)
    loaded = load_fitted(path, mlp_backbone(seed=4).to(torch.bfloat16))
    with torch.no_grad():
        logits = clf.export_module()(torch.as_tensor(X).to(torch.bfloat16))
    expected = torch.softmax(logits.double(), dim=1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-2)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-2)
    with pytest.raises(
        ValueError, match=r"'0.bias' has dtype torch.float32, saved torch.bfloat16"
    ):
        load_fitted(path, mlp_backbone())


def test_early_stopping_fit_round_trips(tmp_path):
    """A fit with early_stopping (whose skorch net holds a lambda) saves and loads."""
    clf, X, _, _ = _fitted(early_stopping=True, n_iter_no_change=1)
    path = tmp_path / "early.safetensors"
    save_fitted(clf, path)
    loaded = load_fitted(path, mlp_backbone())
    assert loaded.early_stopping is True
    # predict runs the head in float64, the export in float32
    np.testing.assert_allclose(loaded.predict_proba(X), _export_proba(clf, X),
                               rtol=1e-4, atol=1e-12)


def test_export_with_other_keys_than_the_backbone_is_refused(tmp_path, monkeypatch):
    """A wrapped export (keys 'module.*') cannot be stored as a diff: say so."""
    clf, _, _, _ = _fitted()
    export = clf.export_module()
    wrapped = torch.nn.Sequential()
    wrapped.add_module("module", export)
    monkeypatch.setattr(clf, "export_module", lambda: wrapped)
    with pytest.raises(
        ValueError,
        match=r"backbone and its export have different state_dict keys \(only in "
        r"the backbone: \['0.bias'.*only in the export: \['module.0.bias'.*"
        r"torch.compile or nn.DataParallel",
    ):
        save_fitted(clf, tmp_path / "wrapped.safetensors")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_names_the_override(saved):
    """Loading onto a device this machine lacks says to pass device='cpu'."""
    _, _, _, _, path = saved
    with pytest.raises(
        ValueError,
        match=r"device='cuda' \(saved, or passed to load_fitted\) is not "
        r"available here.*"
        r"device='cpu'",
    ):
        load_fitted(path, mlp_backbone(), device="cuda")


def test_loaded_estimator_pickles_and_clones(saved):
    """The loaded estimator behaves like any fitted one: pickle round trip."""
    import pickle

    clf, X, _, _, path = saved
    loaded = load_fitted(path, mlp_backbone())
    again = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(again.predict_proba(X), loaded.predict_proba(X))
