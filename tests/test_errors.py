"""Issue 17's cases: every bad input a clear error, every fitted model whole.

Each test reproduces one case a careful user hit and states what the
estimator does now; messages are matched with ``match=``.
"""

import io
import pickle

import joblib
import numpy as np
import pytest
import torch
from conftest import make_task, mlp_backbone
from torch import nn

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.exceptions import TrainingDivergedError

FAST = dict(random_state=0)


def test_early_stopping_model_pickles_and_joblib_dumps():
    """early_stopping's skorch callback holds no lambda: the fit pickles."""
    X, y, s = make_task(n=200)
    clf = FairLowRankFineTuner(mlp_backbone(), rank=1, importance="uniform",
                               early_stopping=True, max_epochs=3, **FAST).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    buf = io.BytesIO()
    joblib.dump(clf, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict_proba(X),
                                  clf.predict_proba(X))


def test_refit_that_raises_leaves_the_previous_fit_whole():
    """A refit with other labels that fails late keeps the old classes_ and model."""
    X, y, s = make_task(n=200)
    clf = FairLowRankFineTuner(mlp_backbone(), rank=None, **FAST).fit(X, y)
    before = clf.predict_proba(X)
    letters = np.array(["a", "b"])[y]
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X, letters, sample_weight=np.ones(5))
    assert clf.classes_.tolist() == [0, 1]
    np.testing.assert_array_equal(clf.predict_proba(X), before)


class _NaNFrom(nn.Module):
    """A backbone whose trunk returns NaN for rows whose first feature is > cut."""

    def __init__(self, cut):
        super().__init__()
        self.cut = cut
        self.body = nn.Linear(5, 16)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        h = torch.relu(self.body(x))
        h = torch.where((x[:, :1] > self.cut), torch.nan, h)
        return self.fc(h)


def test_backbone_nan_at_predict_is_an_error_naming_the_rows():
    """NaN logits are not turned into classes_[0]: the rows are named."""
    X, y, s = make_task(n=200)
    torch.manual_seed(0)
    model = _NaNFrom(cut=100.0)
    clf = FairLowRankFineTuner(model, rank=None, **FAST).fit(X, y)
    clf.model_.cut = 1.5  # now some rows come out NaN
    bad = np.flatnonzero(X[:, 0] > 1.5)
    with pytest.raises(ValueError, match=rf"non-finite .* rows \[{bad[0]}, "):
        clf.predict(X)


@pytest.mark.parametrize("cache", [True, False])
def test_backbone_nan_during_fit_says_so_and_where(cache):
    """Non-finite features are blamed on the backbone and located, not on lr."""
    X, y, s = make_task(n=200)
    torch.manual_seed(0)
    params = dict(rank=None, cache_features=cache, batch_size=64, **FAST)
    if not cache:
        params.update(solver="adam", max_epochs=1)
    with pytest.raises((ValueError, TrainingDivergedError),
                       match=r"backbone produced non-finite values.*batch 0"):
        FairLowRankFineTuner(_NaNFrom(cut=1.0), **params).fit(X, y)


@pytest.mark.parametrize("scale", [1e-30, 1e-14, 1e30, 1e38])
def test_weights_of_any_scale_give_the_result_of_weights_one(scale):
    """Weights are scaled to mean 1 in float64 before anything float32 sees them."""
    X, y, s = make_task(n=200)
    ones = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s, sample_weight=np.ones(len(y)))
    scaled = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s, sample_weight=np.full(len(y), scale))
    np.testing.assert_allclose(scaled.predict_proba(X), ones.predict_proba(X),
                               atol=1e-6)


def test_fit_inside_inference_mode_works_as_outside():
    """torch.inference_mode() around fit does not break training."""
    X, y, s = make_task(n=200)
    ref = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s)
    with torch.inference_mode():
        clf = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
            X, y, sensitive_features=s)
    np.testing.assert_array_equal(clf.predict_proba(X), ref.predict_proba(X))


@pytest.mark.parametrize("name", ["rank", "max_iter", "batch_size"])
def test_bool_for_an_int_parameter_is_rejected(name):
    """rank=True is not rank 1."""
    X, y, s = make_task(n=60)
    with pytest.raises(TypeError, match=rf"{name} must be an int.*got True"):
        FairLowRankFineTuner(mlp_backbone(), **{name: True}).fit(X, y)


def _image_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("transform, hint", [
    (lambda X: X.transpose(0, 2, 3, 1), r"channels-last .* X.transpose\(0, 3, 1, 2\)"),
    (lambda X: X.reshape(len(X), -1), r"flattened: pass X.reshape\(-1, 3, 8, 8\)"),
    (lambda X: X[0], r"single row without the row axis: pass X\[None\]"),
])
def test_image_shape_mistakes_at_predict_name_both_shapes_and_the_cause(transform,
                                                                        hint):
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 3, 8, 8)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > 0.5).astype(int)
    clf = FairLowRankFineTuner(_image_model(), rank=None, **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on rows of shape \(3, 8, 8\).*" + hint):
        clf.predict(transform(X))


def test_grayscale_without_channel_axis_is_named():
    rng = np.random.RandomState(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    X = rng.uniform(size=(40, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > 0.5).astype(int)
    clf = FairLowRankFineTuner(model, rank=None, **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"channel axis is missing: pass X\[:, None\]"):
        clf.predict(X[:, 0])


def test_wrong_number_of_columns_at_fit_names_both_widths():
    """A preprocessor that emits 93 columns to an 88-feature backbone: a ValueError."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(88, 16), nn.ReLU(), nn.Linear(16, 2))
    X = np.random.RandomState(0).normal(size=(50, 93)).astype(np.float32)
    with pytest.raises(ValueError, match="X has 93 features per row but the "
                                         "backbone's first layer expects 88"):
        FairLowRankFineTuner(model, rank=None).fit(X, np.arange(50) % 2)


@pytest.mark.parametrize("wrap", [
    nn.DataParallel,
    lambda m: torch.compile(m, backend="eager"),
])
def test_export_of_a_wrapped_backbone_loads_into_the_plain_architecture(wrap):
    X, y, s = make_task(n=200)
    clf = FairLowRankFineTuner(wrap(mlp_backbone()), rank=1, **FAST).fit(
        X, y, sensitive_features=s)
    exported = clf.export_module()
    fresh = mlp_backbone(seed=1)
    fresh.load_state_dict(exported.state_dict())  # no _orig_mod. / module. keys
    with torch.no_grad():
        proba = torch.softmax(fresh(torch.from_numpy(X)), 1).double().numpy()
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)


class _ConvClassifier(nn.Module):
    """SqueezeNet's shape: a 1x1 Conv2d classifier, pooled, flattened after it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def test_conv_classifier_head_is_fine_tuned_with_rank_none():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(60, 3, 8, 8)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > 0.5).astype(int)
    clf = FairLowRankFineTuner(_ConvClassifier(), head="classifier", rank=None,
                               **FAST).fit(X, y)
    assert clf.n_trainable_params_ == 8 * 2 + 2
    with torch.no_grad():
        proba = torch.softmax(clf.export_module()(torch.from_numpy(X)), 1)
    np.testing.assert_allclose(proba.double().numpy(), clf.predict_proba(X),
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"holds no torch.nn.Linear layer \(rank=None"):
        FairLowRankFineTuner(_ConvClassifier(), head="classifier", rank=2,
                             importance="uniform").fit(X, y)


def test_probe_on_features_of_tiny_scale_is_fitted_standardized():
    """Features of std 3e-4 no longer leave the probe at chance."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(5) * 3e-4)
        model[0].bias.zero_()
    clf = FairLowRankFineTuner(model, head_init="probe", rank=None, solver="sgd",
                               lr=1e-12, max_epochs=1, **FAST).fit(X, y)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("device, hint", [
    ("gpu", r"not a torch device name. Did you mean device='cuda'\?"),
    ("mps", r"not usable on this machine \(this torch build or machine has no mps"),
])
def test_unusable_device_is_one_line(device, hint):
    X, y, s = make_task(n=60)
    if device == "mps" and getattr(torch.backends, "mps", None) is not None \
            and torch.backends.mps.is_available():
        pytest.skip("this machine has mps")
    with pytest.raises(ValueError, match=hint) as info:
        FairLowRankFineTuner(mlp_backbone(), device=device).fit(X, y)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_verbose_off_a_terminal_is_plain_text_with_one_summary_line(capsys):
    X, y, s = make_task(n=200)
    FairLowRankFineTuner(mlp_backbone(), rank=1, verbose=1, **FAST).fit(
        X, y, sensitive_features=s)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "\x1b[" not in text and "\r" not in text
    summary = [line for line in text.splitlines() if "trainable parameters" in line]
    assert len(summary) == 1
    assert "head '2'" in summary[0] and "solver 'lbfgs'" in summary[0]


def test_bf16_export_is_the_users_dtype_and_close_to_predict():
    """The merged export is cast back to bf16 (documented); labels mostly agree."""
    X, y, s = make_task(n=256)
    clf = FairLowRankFineTuner(mlp_backbone().to(torch.bfloat16), rank=1,
                               **FAST).fit(X, y, sensitive_features=s)
    exported = clf.export_module()
    assert exported[2].weight.dtype == torch.bfloat16
    with torch.no_grad():
        labels = exported(torch.from_numpy(X).to(torch.bfloat16)).argmax(1).numpy()
    assert (labels == clf.predict(X)).mean() >= 0.98
    assert "rounding flips a near-tie" in type(clf).export_module.__doc__


class _ClassifierFirst(nn.Module):
    """The classifier is registered before the encoder: the last Linear is not the head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.classifier = nn.Linear(16, 2)
        self.encoder = nn.Linear(5, 16)

    def forward(self, x):
        return self.classifier(torch.relu(self.encoder(x)))


def test_default_head_that_is_not_last_is_named_with_shapes_and_candidates():
    X, y, s = make_task(n=60)
    # the size check names it before any forward pass
    with pytest.raises(ValueError, match=r"picked by default is 'encoder'.*"
                       r"out_features=2: \['classifier'\]"):
        FairLowRankFineTuner(_ClassifierFirst(), rank=None).fit(X, y)
    # with a probe the size fits, and the forward check names module and shapes
    with pytest.raises(ValueError, match=r"head picked is 'encoder' \(Linear\); its "
                       r"output has shape \(\d+, 16\) where the logits have shape "
                       r"\(\d+, 2\).*\['classifier'\]"):
        FairLowRankFineTuner(_ClassifierFirst(), rank=None, head_init="probe").fit(X, y)
    torch.manual_seed(0)
    normed = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2),
                           nn.LayerNorm(2))
    with pytest.raises(ValueError, match=r"head picked is '2' \(Linear\)"):
        FairLowRankFineTuner(normed, rank=None).fit(X, y)
