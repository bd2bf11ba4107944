"""
==============================================
Ask for the fairness you need: FairFrontierCV
==============================================

State a constraint and a tolerance, and get the most accurate fine-tuned model
whose gap is within it on held-out rows.
:class:`~sklearn_winfair.model_selection.FairFrontierCV` fits candidate heads
on one frozen backbone (here: penalty strengths x two importances), runs the
backbone once per row for all of them (a shared feature store), sweeps one
threshold per group on their held-out scores, puts every point on one front,
and refits the chosen candidate on all the training rows. Predictions are
deterministic, and the model exports as one torch module.

Adult (8,000 rows): a small MLP pre-trained on people under 40 is fine-tuned
on the others; the sensitive feature is sex.
"""

# %%
# Data and a pre-trained backbone
# -------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import paper_metrics
from sklearn_winfair.model_selection import FairFrontierCV

torch.manual_seed(0)
adult = load_adult(dropna=True)
rows = np.random.RandomState(4).choice(len(adult.data), size=8000, replace=False)
X = adult.data.iloc[rows]
y = (adult.target.iloc[rows] == ">50K").astype(int).to_numpy()
sex = adult.sensitive_features.iloc[rows].to_numpy()
young = (X["age"] < 40).to_numpy()
prep = make_tabular_preprocessor(X, sensitive="sex").fit(X[young])
X_pre, y_pre = prep.transform(X[young]).astype("float32"), y[young]
X_new = prep.transform(X[~young]).astype("float32")
X_tr, X_te, y_tr, y_te, s_tr, s_te = train_test_split(
    X_new, y[~young], sex[~young], test_size=0.3, random_state=0, stratify=y[~young]
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

# %%
# Ask for a demographic-parity gap of at most 0.05
# -------------------------------------------------
# Four penalty strengths (0 is plain fine-tuning) for each of two importances,
# thresholds per group on a 30 % validation split, 200 bootstrap resamples.
tuner = FairLowRankFineTuner(backbone, rank=2, max_epochs=10, random_state=0)
frontier = FairFrontierCV(
    tuner,
    constraint="demographic_parity",
    tolerance=0.05,
    penalty_strengths=[0.0, 0.5, 2.0, 8.0],
    importances=["neutral", "uniform"],
    cv=0.3,
    random_state=0,
)
frontier.fit(X_tr, y_tr, sensitive_features=s_tr)
print(frontier.best_params_)
chosen = frontier.front_.loc[frontier.best_index_]
print(chosen[["family", "post", "error", "gap", "gap_low", "gap_high"]])

# %%
# On the test rows
# ----------------
# The plain fine-tuner (the front's first candidate, refitted here for the
# comparison) beside the chosen point; the gap is measured with the groups the
# thresholds used.
plain = FairLowRankFineTuner(backbone, rank=2, max_epochs=10, random_state=0)
plain.fit(X_tr, y_tr, sensitive_features=s_tr)
results = pd.DataFrame({
    "fine-tuned": paper_metrics(y_te, plain.predict(X_te), sensitive_features=s_te),
    "FairFrontierCV (DP, 0.05)": paper_metrics(
        y_te, frontier.predict(X_te, sensitive_features=s_te),
        sensitive_features=s_te,
    ),
}).T
print(results.round(3).to_string())

# %%
# The front
# ---------
# Every candidate (large circles) and its threshold points (shared: squares;
# per group: triangles), error against gap on the validation rows; the black
# steps are the Pareto front, the red ring the chosen point with its bootstrap
# intervals, the dashed line the tolerance.
ax = frontier.plot_front()
ax.set_xlim(-0.01, 0.3)
ax.set_ylim(20, 35)
plt.tight_layout()

# %%
# Export
# ------
# The chosen thresholds depend on the group, so the export takes the group as
# a second input (each row's index in ``groups_``); it gives the same
# probabilities as ``predict_proba``.
module = frontier.export_module()
group = torch.as_tensor(np.searchsorted(frontier.groups_, s_te))
with torch.no_grad():
    proba = torch.softmax(module(torch.from_numpy(X_te), group).double(), dim=1)
print(type(module).__name__, frontier.groups_)
print(np.abs(proba.numpy() - frontier.predict_proba(X_te, s_te)).max())
