"""
=============================================================
Search rank and alpha with a fairness scorer and a fair refit
=============================================================

:class:`~sklearn.model_selection.GridSearchCV` over ``rank`` and ``alpha`` of
:class:`~sklearn_winfair.FairLowRankFineTuner`, with plain fine-tuning
(``rank=None``) as a reference candidate. Each candidate is scored on accuracy
and on the demographic-parity gap
(:func:`~sklearn_winfair.metrics.make_fairness_scorer`), and the search refits
the fairest candidate among those within one accuracy point of the best
(:func:`~sklearn_winfair.model_selection.fairest_within_tolerance`).

``memory=`` keeps a feature store keyed by each row's content, so the whole
search (every candidate, every fold and the refit) runs the frozen backbone
once per distinct row.
"""

# %%
# A backbone with a two-layer head
# --------------------------------
# With a single 32 -> 2 head only ``rank=1`` would truncate anything. The head
# here, submodule ``"1"``, is 32 -> 8 -> 2, so ranks 1, 2 and 4 of its first
# layer keep different amounts of the pre-trained weights, and ``alpha`` decides
# whose importance counts more when they are truncated.
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import make_fairness_scorer, paper_metrics
from sklearn_winfair.model_selection import fairest_within_tolerance

torch.manual_seed(0)
adult = load_adult(dropna=True)
rows = np.random.RandomState(2).choice(len(adult.data), size=6000, replace=False)
X = adult.data.iloc[rows]
y = (adult.target.iloc[rows] == ">50K").astype(int).to_numpy()
sex = adult.sensitive_features.iloc[rows].to_numpy()
young = (X["age"] < 40).to_numpy()
prep = make_tabular_preprocessor(X, sensitive="sex").fit(X[young])
X_pre, y_pre = prep.transform(X[young]).astype("float32"), y[young]
X_new = prep.transform(X[~young]).astype("float32")
X_tr, X_te, y_tr, y_te, s_tr, s_te = train_test_split(
    X_new, y[~young], sex[~young], test_size=0.4, random_state=0, stratify=y[~young]
)

backbone = torch.nn.Sequential(
    torch.nn.Sequential(torch.nn.Linear(X_pre.shape[1], 32), torch.nn.ReLU()),
    torch.nn.Sequential(torch.nn.Linear(32, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
)
optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
features, labels = torch.from_numpy(X_pre), torch.from_numpy(y_pre)
for _ in range(60):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(backbone(features), labels).backward()
    optimizer.step()

# %%
# The search
# ----------
# Metadata routing carries ``sensitive_features`` to every fit (the
# neutralized importance needs the groups) and to the fairness scorer.
sklearn.set_config(enable_metadata_routing=True)
cache = tempfile.TemporaryDirectory()
tuner = FairLowRankFineTuner(
    backbone, head="1", max_epochs=5, batch_size=128, lr=1e-2,
    memory=cache.name, random_state=0,
).set_fit_request(sensitive_features=True)
grid = [
    {"rank": [1, 2, 4], "alpha": [0.25, 0.5, 0.75]},
    {"rank": [None]},  # plain fine-tuning of the head, for reference
]
search = GridSearchCV(
    tuner,
    grid,
    cv=3,
    scoring={"accuracy": "accuracy",
             "dp_gap": make_fairness_scorer("demographic_parity")},
    refit=fairest_within_tolerance(score="accuracy", fairness="dp_gap",
                                   tolerance=0.01),
)
search.fit(X_tr, y_tr, sensitive_features=s_tr)
cache.cleanup()

results = pd.DataFrame({
    "candidate": [
        f"rank={p['rank']}, alpha={p['alpha']}" if p["rank"] else "TL (rank=None)"
        for p in search.cv_results_["params"]
    ]
})
results["accuracy"] = search.cv_results_["mean_test_accuracy"]
results["dp_gap"] = -search.cv_results_["mean_test_dp_gap"]  # the scorer negates
print(results.round(3).to_string())
print("refitted:", search.best_params_)

# %%
# The chosen model on the held-out test part
# ------------------------------------------
test = paper_metrics(y_te, search.predict(X_te), sensitive_features=s_te)
print({name: round(value, 3) for name, value in test.items()})

# %%
# Accuracy against the gap, one point per candidate
# -------------------------------------------------
# The rule keeps the candidates within ``tolerance`` of the best accuracy
# (above the dashed line) and picks the one with the smallest gap among them.
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(results["dp_gap"], results["accuracy"])
for _, row in results.iterrows():
    ax.annotate(row["candidate"], (row["dp_gap"], row["accuracy"]), fontsize=7,
                xytext=(3, 3), textcoords="offset points")
best = search.best_index_
ax.scatter(results["dp_gap"][best], results["accuracy"][best], s=120,
           facecolors="none", edgecolors="red", label="refitted")
ax.axhline(results["accuracy"].max() - 0.01, color="grey", linestyle="--",
           label="tolerance")
ax.set_xlabel("demographic parity gap (CV mean)")
ax.set_ylabel("accuracy (CV mean)")
ax.legend(loc="lower right")
fig.tight_layout()
