"""Kamiran-Calders reweighing (sklearn_winfair.preprocessing)."""

import numpy as np
import pytest
from conftest import mlp_backbone, mlp_head_backbone

# --------------------------------------------------------------------------
# penalties
# --------------------------------------------------------------------------


AT_INIT = dict(max_epochs=1, solver="sgd", lr=1e-12, random_state=0)
HEADS = {
    # (backbone factory, n_classes, extra parameters)
    "linear head, cached": (mlp_backbone, 2, dict(rank=1)),
    "mlp head, uncached": (
        mlp_head_backbone, 3, dict(rank=2, head="1", cache_features=False,
                                  batch_size=64),
    ),
}
FAIRLEARN_ON_PANDAS_3 = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:fairlearn.*"
)
REDUCTION_BASES = {
    "TL": dict(rank=None),
    "uniform": dict(rank=1, importance="uniform"),
    "fisher": dict(rank=1, importance="fisher"),
}


def test_reweighing_weights_equal_kamiran_calders_formula():
    from sklearn_winfair.preprocessing import reweighing_weights

    rng = np.random.default_rng(0)
    n = 500
    s = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < np.where(s == "a", 0.7, 0.3)).astype(int)
    w = reweighing_weights(y, sensitive_features=s)
    for g in "abc":
        for c in (0, 1):
            cell = (s == g) & (y == c)
            expected = (s == g).mean() * (y == c).mean() / cell.mean()
            np.testing.assert_allclose(w[cell], expected, rtol=1e-12)
    assert w.mean() == pytest.approx(1.0)
    # in the weighted data the label is independent of the group
    overall = np.average(y, weights=w)
    for g in "abc":
        assert np.average(y[s == g], weights=w[s == g]) == pytest.approx(overall)


def test_reweighing_weights_intersectional_and_errors():
    import pandas as pd

    from sklearn_winfair.preprocessing import reweighing_weights

    y = np.array([0, 1, 1, 0, 1, 0])
    frame = pd.DataFrame({"sex": list("mmmfff"), "race": list("xyxyxy")})
    merged = frame["sex"] + "," + frame["race"]
    np.testing.assert_array_equal(
        reweighing_weights(y, sensitive_features=frame),
        reweighing_weights(y, sensitive_features=merged),
    )
    with pytest.raises(ValueError, match="sensitive_features has 5 rows but y has 6"):
        reweighing_weights(y, sensitive_features=list("mmmff"))
    with pytest.raises(ValueError, match="Unknown label type"):
        reweighing_weights([0.5, 1.5], sensitive_features=["a", "b"])
    with pytest.raises(ValueError, match="y is empty"):
        reweighing_weights([], sensitive_features=[])
