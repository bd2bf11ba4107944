"""
=============================
A Pipeline with preprocessing
=============================

A pre-trained model expects the features it was trained on. Keep the
preprocessor that made them, frozen, in front of
:class:`~sklearn_winfair.FairLowRankFineTuner` in a scikit-learn
:class:`~sklearn.pipeline.Pipeline`: the pipeline then takes the raw DataFrame,
and cross-validation refits only the head, never the preprocessing the backbone
depends on. ``sensitive_features`` reaches the estimator and a fairness scorer
through scikit-learn's metadata routing.
"""

# %%
# Raw data, a preprocessor and a backbone pre-trained on its output
# -----------------------------------------------------------------
# :func:`~sklearn_winfair.datasets.make_tabular_preprocessor` one-hot encodes
# the categorical columns, scales the numeric ones and drops ``sex``.
import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor
from sklearn_winfair.metrics import make_fairness_scorer

torch.manual_seed(0)
adult = load_adult(dropna=True)
rows = np.random.RandomState(1).choice(len(adult.data), size=6000, replace=False)
X = adult.data.iloc[rows].reset_index(drop=True)
y = (adult.target.iloc[rows] == ">50K").astype(int).to_numpy()
sex = adult.sensitive_features.iloc[rows].to_numpy()
X_pre, y_pre = X.iloc[:3000], y[:3000]
X_new, y_new, s_new = X.iloc[3000:], y[3000:], sex[3000:]

prep = make_tabular_preprocessor(X_pre, sensitive="sex").fit(X_pre)
features = torch.as_tensor(prep.transform(X_pre), dtype=torch.float32)
backbone = torch.nn.Sequential(
    torch.nn.Linear(features.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
)
optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
for _ in range(60):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(backbone(features), torch.tensor(y_pre))
    loss.backward()
    optimizer.step()

# %%
# The pipeline
# ------------
# :class:`~sklearn.frozen.FrozenEstimator` keeps the fitted preprocessor as it
# is when the pipeline is fitted or cloned. ``set_fit_request`` asks the
# pipeline to route ``sensitive_features`` to the estimator's ``fit``.
sklearn.set_config(enable_metadata_routing=True)
pipe = make_pipeline(
    FrozenEstimator(prep),
    FairLowRankFineTuner(
        backbone, rank=1, max_epochs=5, batch_size=128, random_state=0
    ).set_fit_request(sensitive_features=True),
)
pipe.fit(X_new, y_new, sensitive_features=s_new)
print("P(>50K) of three raw rows:", pipe.predict_proba(X_new.iloc[:3])[:, 1].round(3))
pipe  # noqa: B018 (the last expression of a cell is shown as the pipeline diagram)

# %%
# Cross-validate accuracy and the demographic-parity gap
# ------------------------------------------------------
# The fairness scorer receives each test fold's slice of the groups; it is
# made with ``greater_is_better=False``, so the scores are negated gaps.
scores = cross_validate(
    pipe,
    X_new,
    y_new,
    cv=3,
    scoring={"accuracy": "accuracy",
             "dp_gap": make_fairness_scorer("demographic_parity")},
    params={"sensitive_features": s_new},
)
table = pd.DataFrame(
    {"accuracy": scores["test_accuracy"], "dp_gap": -scores["test_dp_gap"]}
)
print(table.round(3))
print(table.mean().round(3).to_dict())
