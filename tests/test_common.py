"""scikit-learn's estimator checks on FairLowRankFineTuner."""

from conftest import any_width_backbone, plain_any_width_backbone
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_winfair import FairLowRankFineTuner

# The checks fit without sensitive_features, so "neutral" (which needs groups)
# is checked through its group-free siblings; the neutral path is covered by
# test_estimator.py. head_init="probe" lets one backbone serve the 2- and
# 3-class checks; the backbone pads or truncates to 10 features so any width
# works.
ESTIMATORS = [
    FairLowRankFineTuner(
        any_width_backbone(), rank=1, importance=importance, head_init="probe",
        max_epochs=5, lr=0.05, batch_size=32, random_state=0,
    )
    for importance in ("fisher", "uniform")
] + [
    FairLowRankFineTuner(
        any_width_backbone(), rank=None, head_init="probe", max_epochs=5,
        lr=0.05, batch_size=32, random_state=0,
    )
] + [
    # a plain float backbone (nothing in forward casts X: the checks' integer
    # X is cast by the estimator, cast_integers_), with the default solver
    FairLowRankFineTuner(
        plain_any_width_backbone(), rank=None, head_init="probe", random_state=0,
    )
]

EXPECTED_FAILED = {
    "check_estimators_overwrite_params": (
        "compares joblib.hash of a deep copy of each parameter; pickling a "
        "torch module embeds its storages' memory addresses, so a copied "
        "backbone never hashes equal. test_estimator.py::"
        "test_trunk_is_frozen_and_caller_backbone_untouched proves fit leaves "
        "the backbone's state_dict unchanged."
    ),
    "check_methods_subset_invariance": (
        "the trunk runs in float32 torch; a batch of another size takes another "
        "BLAS path, so its features, and so decision_function, differ by up to "
        "~5e-7 relative, above the check's 1e-7 (the head itself runs in "
        "float64 at predict; predictions and probabilities agree to 1e-5)."
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "float32 rounding of the training arithmetic: a weighted sum against a "
        "sum over repeated rows made predict_proba differ by up to 1.1e-7 "
        "(relative 3.7e-7; L-BFGS's line search can amplify such differences "
        "further), above the check's rtol of 1e-7. The deterministic parts (Fisher importance, SVD, "
        "probe) are proven equal exactly in test_sample_weight.py."
    ),
}
RANK1_THREE_CLASSES = {
    "check_classifiers_train": (
        "plain SVD truncated to rank 1 of a 3-class probe head discards one "
        "logit direction, so accuracy on the check's 3 blobs can fall below its "
        "0.83 threshold; that is the truncation the method is about."
    ),
}


def _expected_failed_checks(estimator):
    failed = dict(EXPECTED_FAILED)
    if estimator.importance == "uniform" and estimator.rank == 1:
        failed.update(RANK1_THREE_CLASSES)
    return failed


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    """The estimator passes scikit-learn's common API checks."""
    check(estimator)
