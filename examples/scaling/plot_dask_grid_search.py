"""
=========================================
Grid search on a Dask cluster with joblib
=========================================

A grid search is where users outgrow one machine: every candidate is a fit.
scikit-learn runs the fits of ``GridSearchCV`` through joblib, and joblib's
Dask backend sends them to the workers of a ``distributed`` cluster. Nothing
in the estimator changes:

* the estimator (backbone included) is pickled to the workers;
* ``sensitive_features`` reaches each fit by metadata routing, sliced to the
  fold's rows like ``X`` and ``y``;
* ``memory=`` names a feature store on a path every worker can read and
  write (a shared file system on a real cluster), so the frozen features
  are computed once and shared by the fits.

Here the cluster is a :class:`distributed.LocalCluster` of two worker
processes on this machine; on a real cluster only the line that creates it
changes (``Client("scheduler-address:8786")``).

Data: the bundled UCI Adult data (CC BY 4.0), a 4,000-row sample, sex as the
sensitive feature (kept out of ``X``).
"""

# %%
# A small pre-trained model and the search
# ----------------------------------------
# A two-layer ReLU MLP is pre-trained on half of the sample with plain torch;
# the other half is the new task. Its head, submodule ``"1"``, is a small MLP
# (32 -> 8 -> 2), so ``rank`` truncates information.
#
# Worker processes import this script again when they start, without
# running the blocks guarded by ``if __name__ == "__main__":``; that guard
# keeps them from starting clusters of their own. The code above it is cheap.
import shutil
import tempfile

import joblib
import numpy as np
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor

sklearn.set_config(enable_metadata_routing=True)
bunch = load_adult(dropna=True)
X_all, y_all, s_all = bunch.data, bunch.target, bunch.sensitive_features
idx = np.random.RandomState(0).choice(len(X_all), size=4000, replace=False)
X_all, y_all, s_all = X_all.iloc[idx], y_all.iloc[idx], s_all.iloc[idx]
y_all = (y_all == ">50K").astype(int).to_numpy()
X_pre, X_new, y_pre, y_new, s_pre, s_new = train_test_split(
    X_all, y_all, s_all, test_size=0.5, random_state=0, stratify=y_all
)
prep = make_tabular_preprocessor(X_pre, sensitive="sex").fit(X_pre)
X_pre = prep.transform(X_pre).astype(np.float32)
X_new = prep.transform(X_new).astype(np.float32)
s_new = s_new.to_numpy()

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


def make_search(memory, n_jobs):
    """rank x alpha, 3 folds, groups routed to fit."""
    tuner = FairLowRankFineTuner(
        backbone, head="1", max_epochs=5, batch_size=256, random_state=0,
        memory=memory,
    ).set_fit_request(sensitive_features=True)
    grid = {"rank": [1, 2, 4], "alpha": [0.25, 0.5, 0.75]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    return GridSearchCV(tuner, grid, cv=cv, n_jobs=n_jobs)


# %%
# Run the search on the cluster
# -----------------------------
# ``joblib.parallel_config(backend="dask")`` sends the fits to the client's
# cluster; ``n_jobs=-1`` lets it use every worker. The task stream records
# where each task ran (the refit runs in this process). The feature store is
# a temporary folder here: all workers of a ``LocalCluster`` share this
# machine's disk. How the search's time scales with workers is measured in
# ``benchmarks/bench_dask.py`` (see the performance page).
if __name__ == "__main__":
    from distributed import Client, LocalCluster, get_task_stream

    store = tempfile.mkdtemp(prefix="winfair-features-")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        search = make_search(memory=store, n_jobs=-1)
        with get_task_stream(client) as tasks, joblib.parallel_config(
            backend="dask"
        ):
            search.fit(X_new, y_new, sensitive_features=s_new)
        per_worker = {}
        for task in tasks.data:
            per_worker[task["worker"]] = per_worker.get(task["worker"], 0) + 1
    print("tasks per worker:", sorted(per_worker.values()))
    print("best:", search.best_params_,
          f"accuracy {search.best_score_:.3f}")
    print("groups seen by the refit:", list(search.best_estimator_.groups_))

# %%
# The same search in this process
# -------------------------------
# The cluster changes where the fits run, not what they compute: with
# ``random_state`` fixed, the local search scores every candidate the same
# and picks the same parameters.
if __name__ == "__main__":
    local = make_search(memory=store, n_jobs=1)
    local.fit(X_new, y_new, sensitive_features=s_new)
    print("same best parameters:", local.best_params_ == search.best_params_)
    print("largest difference of a mean CV score:",
          np.abs(local.cv_results_["mean_test_score"]
                 - search.cv_results_["mean_test_score"]).max())
    shutil.rmtree(store, ignore_errors=True)
