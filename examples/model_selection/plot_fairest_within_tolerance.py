"""
=====================================================
Pick the fairest model within a tolerance of the best
=====================================================

``GridSearchCV`` compares the method and its baselines (they are all
``FairLowRankFineTuner`` parameters), scores each candidate on accuracy and on
the demographic-parity gap (the groups reach the scorer through metadata
routing), and refits the candidate with the smallest gap among those whose
accuracy is within ``tolerance`` of the best, with
:func:`~sklearn_winfair.model_selection.fairest_within_tolerance`.

Data: the bundled UCI Adult data (CC BY 4.0), a 6,000-row sample, sex as the
sensitive feature (kept out of ``X``).
"""

# %%
# A small pre-trained model
# -------------------------
# A two-layer ReLU MLP is pre-trained on half of the sample with plain torch;
# the other half is the new task. Its head, submodule ``"1"``, is itself a
# small MLP (32 -> 8 -> 2), so a low rank truncates information.
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

sklearn.set_config(enable_metadata_routing=True)
bunch = load_adult(dropna=True)
X_all, y_all, s_all = bunch.data, bunch.target, bunch.sensitive_features
idx = np.random.RandomState(0).choice(len(X_all), size=6000, replace=False)
X_all, y_all, s_all = X_all.iloc[idx], y_all.iloc[idx], s_all.iloc[idx]
y_all = (y_all == ">50K").astype(int).to_numpy()

X_pre, X_new, y_pre, y_new, s_pre, s_new = train_test_split(
    X_all, y_all, s_all, test_size=0.5, random_state=0, stratify=y_all
)
prep = make_tabular_preprocessor(X_pre, sensitive="sex").fit(X_pre)
X_pre = prep.transform(X_pre).astype(np.float32)
X_new = prep.transform(X_new).astype(np.float32)

torch.manual_seed(0)
backbone = torch.nn.Sequential(
    torch.nn.Sequential(torch.nn.Linear(X_pre.shape[1], 32), torch.nn.ReLU()),
    torch.nn.Sequential(
        torch.nn.Linear(32, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    ),
)
opt = torch.optim.Adam(backbone.parameters(), lr=1e-2)
Xt, yt = torch.from_numpy(X_pre), torch.from_numpy(y_pre)
for _ in range(30):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(backbone(Xt), yt).backward()
    opt.step()

# %%
# Search rank and importance, select by fairness within tolerance
# -----------------------------------------------------------------
X_tr, X_te, y_tr, y_te, s_tr, s_te = train_test_split(
    X_new, y_new, s_new.to_numpy(), test_size=0.4, random_state=0, stratify=y_new
)
tuner = FairLowRankFineTuner(
    backbone, head="1", max_epochs=5, batch_size=256, lr=1e-2, random_state=0
).set_fit_request(sensitive_features=True)
grid = {"rank": [1, 4, None], "importance": ["neutral", "uniform"]}
scoring = {
    "accuracy": "accuracy",
    "dp_gap": make_fairness_scorer("demographic_parity"),
}
search = GridSearchCV(
    tuner, grid, cv=3, scoring=scoring,
    refit=fairest_within_tolerance(score="accuracy", fairness="dp_gap",
                                   tolerance=0.01),
)
search.fit(X_tr, y_tr, sensitive_features=s_tr)

results = pd.DataFrame(search.cv_results_["params"])
results["accuracy"] = search.cv_results_["mean_test_accuracy"]
results["dp_gap"] = -search.cv_results_["mean_test_dp_gap"]  # scorer negates
print(results.round(3).to_string())
print("chosen:", search.best_params_)
print("test:", {k: round(v, 3) for k, v in paper_metrics(
    y_te, search.predict(X_te), sensitive_features=s_te).items()})

# %%
# The trade-off the rule navigates
# --------------------------------
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(results["dp_gap"], results["accuracy"])
best = search.best_index_
ax.scatter(results["dp_gap"][best], results["accuracy"][best], color="red",
           label="chosen")
ax.set_xlabel("demographic parity gap (CV mean)")
ax.set_ylabel("accuracy (CV mean)")
ax.legend()
fig.tight_layout()
