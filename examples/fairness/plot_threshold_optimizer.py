"""
================================================
Post-process with fairlearn's ThresholdOptimizer
================================================

:class:`~sklearn_winfair.FairLowRankFineTuner` is a scikit-learn classifier
with a float64 ``predict_proba``, so fairlearn's
:class:`~fairlearn.postprocessing.ThresholdOptimizer` can sit on top of a
fitted one (``prefit=True``) and choose one threshold per group that equalizes
the selection rates (demographic parity), fitted on a validation part. It is
the strongest lever on the gap, and it costs accuracy.

fairlearn 0.15's ``ThresholdOptimizer`` wants 0/1 labels, as here.
"""

# %%
# Fit the fine-tuner
# ------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from fairlearn.postprocessing import ThresholdOptimizer, plot_threshold_optimizer
from sklearn.model_selection import train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import paper_metrics

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
X_tr, X_rest, y_tr, y_rest, s_tr, s_rest = train_test_split(
    X_new, y[~young], sex[~young], test_size=0.6, random_state=0, stratify=y[~young]
)
X_val, X_te, y_val, y_te, s_val, s_te = train_test_split(
    X_rest, y_rest, s_rest, test_size=0.5, random_state=0, stratify=y_rest
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
# Thresholds per group, fitted on the validation part
# ---------------------------------------------------
post = ThresholdOptimizer(
    estimator=clf,
    constraints="demographic_parity",
    objective="accuracy_score",
    prefit=True,
    predict_method="predict_proba",
)
post.fit(X_val, y_val, sensitive_features=s_val)

results = pd.DataFrame({
    "fine-tuned": paper_metrics(y_te, clf.predict(X_te), sensitive_features=s_te),
    "+ ThresholdOptimizer (DP)": paper_metrics(
        y_te,
        post.predict(X_te, sensitive_features=s_te, random_state=0),
        sensitive_features=s_te,
    ),
}).T
print(results.round(3).to_string())

# %%
# The thresholds it chose
# -----------------------
# fairlearn's own plot: for each group, the trade-off curve of its threshold
# and the point chosen so that both groups have the same selection rate.
plot_threshold_optimizer(post, show_plot=False)
plt.gcf().set_size_inches(6, 4.5)
plt.tight_layout()
