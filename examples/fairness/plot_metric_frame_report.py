"""
==============================================
A by-group report with fairlearn's MetricFrame
==============================================

Audit a fitted :class:`~sklearn_winfair.FairLowRankFineTuner` group by group.
:func:`~sklearn_winfair.metrics.fairness_metric_frame` returns a fairlearn
:class:`~fairlearn.metrics.MetricFrame` of its test predictions: the error
(100 - weighted F1, %), accuracy, selection rate, true and false positive rates
and the count of each group, overall and by group, with the gaps between groups.
"""

# %%
# Fit a model on the new task
# ---------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import fairness_metric_frame, paper_metrics

torch.manual_seed(0)
adult = load_adult(dropna=True)
rows = np.random.RandomState(3).choice(len(adult.data), size=6000, replace=False)
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

clf = FairLowRankFineTuner(backbone, rank=1, max_epochs=10, random_state=0)
clf.fit(X_tr, y_tr, sensitive_features=s_tr)

# %%
# The MetricFrame
# ---------------
# ``overall`` is computed on every test row, ``by_group`` on each group's rows.
frame = fairness_metric_frame(clf, X_te, y_te, sensitive_features=s_te)
print(frame.overall.round(3).to_string())
frame.by_group.round(3)

# %%
# Gaps between the groups
# -----------------------
# ``difference()`` is the largest minus the smallest group value of each
# metric. The demographic-parity gap is the selection-rate row; the paper's
# equalized-odds gap is the *sum* of the ``tpr`` and ``fpr`` rows, which
# :func:`~sklearn_winfair.metrics.paper_metrics` reports as ``eo_gap``
# (fairlearn's ``equalized_odds_difference`` takes their maximum instead).
gaps = frame.difference().drop("count")
print(gaps.round(3).to_string())
metrics = paper_metrics(y_te, clf.predict(X_te), sensitive_features=s_te)
print({name: round(value, 3) for name, value in metrics.items()})

# %%
# The by-group plot
# -----------------
# One panel per metric, one bar per group.
axes = frame.by_group.plot.bar(
    subplots=True, layout=(2, 3), figsize=(9, 5), legend=False, rot=0,
    title=list(frame.by_group.columns),
)
plt.gcf().suptitle("Test metrics by sex")
plt.tight_layout()
