"""
==========================================================
ExponentiatedGradient and reweighing around the fine-tuner
==========================================================

:meth:`~sklearn_winfair.FairLowRankFineTuner.fit` takes a ``sample_weight``,
so the fine-tuner can be the base estimator of fairlearn's in-processing
reductions: :class:`~fairlearn.reductions.ExponentiatedGradient` fits it again
and again on reweighted (and relabelled) rows, and predicts with a randomized
mixture of the fitted heads that meets a demographic-parity constraint. The
same argument takes Kamiran-Calders reweighing weights
(:func:`~sklearn_winfair.preprocessing.reweighing_weights`), which make the
label independent of the group in the weighted training data.

The reductions call ``fit(X, y, sample_weight=w)`` without the groups, so the
base estimator must not need them: plain fine-tuning of the head
(``rank=None``, the paper's TL) or a factorization with a group-free
importance (``importance="fisher"`` or ``"uniform"``). The neutralized
importance (the paper's method, ``"neutral"``) needs ``sensitive_features``
and raises a clear error inside a reduction.

Data: the bundled Adult data (CC BY 4.0), the same covariate shift as in the
quick start (pre-trained on people younger than 40, fine-tuned on the others),
sex as the sensitive feature.
"""

# %%
# Data and a pre-trained backbone
# -------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from fairlearn.reductions import DemographicParity, ExponentiatedGradient
from sklearn.model_selection import train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import paper_metrics
from sklearn_winfair.preprocessing import reweighing_weights

torch.manual_seed(0)
adult = load_adult(dropna=True)
rows = np.random.RandomState(0).choice(len(adult.data), size=8000, replace=False)
X = adult.data.iloc[rows]
y = (adult.target.iloc[rows] == ">50K").astype(int).to_numpy()
sex = adult.sensitive_features.iloc[rows].to_numpy()

young = (X["age"] < 40).to_numpy()
prep = make_tabular_preprocessor(X, sensitive="sex").fit(X[young])
X_pre, y_pre = prep.transform(X[young]).astype("float32"), y[young]
X_new = prep.transform(X[~young]).astype("float32")
X_tr, X_te, y_tr, y_te, s_tr, s_te = train_test_split(
    X_new, y[~young], sex[~young], test_size=0.5, random_state=0, stratify=y[~young]
)

backbone = torch.nn.Sequential(
    torch.nn.Linear(X_pre.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
)
optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
features, labels = torch.from_numpy(X_pre), torch.from_numpy(y_pre)
for _ in range(60):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(backbone(features), labels).backward()
    optimizer.step()
print(f"new task: {len(X_tr)} training rows, {len(X_te)} test rows")


def tuner(**params):
    """The fine-tuner with the settings shared by every row of the table."""
    return FairLowRankFineTuner(
        backbone, max_epochs=10, batch_size=128, lr=1e-2, random_state=0, **params
    )


results = {}

# %%
# The plain fine-tuner
# --------------------
# TL fine-tunes the dense head; OURS factorizes it at rank 1 with the two
# groups' Fisher importances neutralized.
for name, params in {
    "TL (rank=None)": dict(rank=None),
    "OURS (rank=1, neutral)": dict(rank=1),
}.items():
    clf = tuner(**params).fit(X_tr, y_tr, sensitive_features=s_tr)
    results[name] = paper_metrics(y_te, clf.predict(X_te), sensitive_features=s_te)

# %%
# ExponentiatedGradient over the fine-tuner
# -----------------------------------------
# fairlearn gets the groups; each oracle call fits a fresh clone of the tuner
# with ``fit(X, y', sample_weight=w)``. ``max_iter`` bounds the number of
# fits. The mixture predicts at random between its heads, so ``predict`` is
# given a seed.
for name, params in {
    "ExpGrad(DP) + TL": dict(rank=None),
    "ExpGrad(DP) + rank=1, fisher": dict(rank=1, importance="fisher"),
}.items():
    mitigator = ExponentiatedGradient(
        tuner(**params), constraints=DemographicParity(), max_iter=15
    )
    with warnings.catch_warnings():
        # fairlearn 0.15 uses pandas idioms that pandas 3 deprecates
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module="fairlearn")
        mitigator.fit(X_tr, y_tr, sensitive_features=s_tr)
    y_pred = mitigator.predict(X_te, random_state=0)
    results[name] = paper_metrics(y_te, y_pred, sensitive_features=s_te)
    print(f"{name}: {mitigator.n_oracle_calls_} oracle fits, "
          f"{len(mitigator.predictors_)} heads")

# %%
# Reweighing + the fine-tuner
# ---------------------------
# One weight per (group, class) cell, ``P(s) P(y) / P(s, y)``: the rare cells
# (here women with income above 50K) weigh more.
weights = reweighing_weights(y_tr, sensitive_features=s_tr)
cells = pd.DataFrame({"sex": s_tr, "y": y_tr, "weight": weights})
print(cells.groupby(["sex", "y"])["weight"].first().round(3).to_string())
for name, params in {
    "reweighing + TL": dict(rank=None),
    "reweighing + OURS": dict(rank=1),
}.items():
    clf = tuner(**params).fit(
        X_tr, y_tr, sensitive_features=s_tr, sample_weight=weights
    )
    results[name] = paper_metrics(y_te, clf.predict(X_te), sensitive_features=s_te)

# %%
# The paper's three metrics
# -------------------------
# ``err`` is 100 - weighted F1 (%), the gaps are in [0, 1] (EO sums the TPR
# and FPR gaps); lower is better for all three.
results = pd.DataFrame(results).T
print(results.round(3).to_string())

fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
for ax, column in zip(axes, ["err", "dp_gap", "eo_gap"], strict=True):
    ax.barh(results.index, results[column])
    ax.set_title(column)
    ax.invert_yaxis()
for ax in axes[1:]:
    ax.set_yticklabels([])
fig.tight_layout()
