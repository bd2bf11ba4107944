"""Where the logits are (sklearn_winfair._outputs): every output format a backbone returns."""


import numpy as np
import pytest
from conftest import _Wrapped, mlp_backbone

from sklearn_winfair import FairLowRankFineTuner

FAST = dict(max_epochs=3, batch_size=32, random_state=0)


# --------------------------------------------------------------- text models


# ------------------------------------------------------- output formats


@pytest.mark.parametrize(
    "kind,output",
    [("tuple", None), ("tuple_second", 1), ("dict", None), ("scores", "scores"),
     ("model_output", None), ("tuple", lambda out: out[0])],
)
def test_logits_are_found_in_any_output_format(task, kind, output):
    """Tuple, dict, ModelOutput (or where output= says) all give the logits."""
    X, y, s = task
    ref = FairLowRankFineTuner(mlp_backbone(), rank=1, **FAST).fit(
        X, y, sensitive_features=s
    )
    clf = FairLowRankFineTuner(_Wrapped(kind), rank=1, output=output, **FAST)
    clf.fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_unreadable_output_names_its_type_and_the_parameter(task):
    X, y, s = task
    with pytest.raises(TypeError, match=r"output of type builtins.object.*output="):
        FairLowRankFineTuner(_Wrapped("object"), rank=None, **FAST).fit(X, y)


def test_wrong_output_index_is_caught_by_the_last_step_check(task):
    """output=1 on (logits, features) finds features, not the head's output."""
    X, y, s = task
    with pytest.raises(ValueError, match="head's output is not the logits"):
        FairLowRankFineTuner(_Wrapped("tuple"), rank=None, output=1, **FAST).fit(X, y)
