"""
====================
Quick start on Adult
====================

Pre-train a small MLP on one part of the bundled UCI Adult data, then fine-tune
only its head on a shifted new task with
:class:`~sklearn_winfair.FairLowRankFineTuner`, and compare it with plain
fine-tuning of the head (``rank=None``, the paper's TL) on the paper's three
metrics: the error ``Err`` (100 - weighted F1, %), the demographic-parity gap
and the equalized-odds gap (a sum of the TPR and FPR gaps).

Data: the bundled Adult data (CC BY 4.0), income above 50K as the label, sex as
the sensitive feature (kept out of ``X``). The new task is a covariate shift:
the model is pre-trained on people younger than 40 and fine-tuned on the others.
"""

# %%
# Load the data and split it by age
# ---------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import paper_metrics

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
y_new, s_new = y[~young], sex[~young]
X_tr, X_te, y_tr, y_te, s_tr, s_te = train_test_split(
    X_new, y_new, s_new, test_size=0.5, random_state=0, stratify=y_new
)
print(f"pre-training rows: {len(X_pre)}, new task: {len(X_tr)} train, {len(X_te)} test")

# %%
# A pre-trained backbone
# ----------------------
# Any ``torch.nn.Module`` that maps ``X`` to logits. Here a two-layer MLP
# trained with plain torch; its head is the last ``nn.Linear``.
backbone = torch.nn.Sequential(
    torch.nn.Linear(X_pre.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
)
optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
features, labels = torch.from_numpy(X_pre), torch.from_numpy(y_pre)
for _ in range(60):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(backbone(features), labels).backward()
    optimizer.step()

# %%
# Fine-tune the head
# ------------------
# ``rank=1`` factorizes the 32 -> 2 head through the weighted SVD of its
# weight, with the two groups' Fisher importances neutralized (``alpha=0.5``).
# ``rank=None`` fine-tunes the dense head instead. The backbone itself is never
# modified: ``fit`` works on a copy.
common = dict(max_epochs=10, batch_size=128, lr=1e-2, random_state=0)
models = {
    "pre-trained, not fine-tuned": None,
    "TL (rank=None)": FairLowRankFineTuner(backbone, rank=None, **common),
    "OURS (rank=1, neutral)": FairLowRankFineTuner(backbone, rank=1, **common),
}
results = {}
for name, clf in models.items():
    if clf is None:
        with torch.no_grad():
            y_pred = backbone(torch.from_numpy(X_te)).argmax(1).numpy()
        params = 0
    else:
        clf.fit(X_tr, y_tr, sensitive_features=s_tr)
        y_pred = clf.predict(X_te)
        params = clf.n_trainable_params_
    results[name] = {**paper_metrics(y_te, y_pred, sensitive_features=s_te),
                     "trainable params": params}
results = pd.DataFrame(results).T.astype({"trainable params": int})
print(results.round(3).to_string())

# %%
# The fitted estimator
# --------------------
# It is a scikit-learn classifier: ``classes_``, ``predict_proba`` (float64),
# and the fitted attributes of the method.
print("classes:", clf.classes_, "groups:", clf.groups_)
print("factorized layers:", clf.factorized_layers_)
print("P(y=1) of two rows:", clf.predict_proba(X_te[:2])[:, 1].round(3))

# %%
# The three metrics side by side
# ------------------------------
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, column in zip(axes, ["err", "dp_gap", "eo_gap"], strict=True):
    ax.barh(results.index, results[column])
    ax.set_title(column)
for ax in axes[1:]:
    ax.set_yticklabels([])
fig.tight_layout()
