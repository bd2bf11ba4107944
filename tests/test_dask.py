"""GridSearchCV on a small Dask cluster (joblib's Dask backend).

One module-scoped ``distributed.LocalCluster`` of 2 worker processes, 1
thread each. Checks that the search really runs on the workers with
``sensitive_features`` routed by metadata routing, that the estimator pickles
to a worker and back, and that the search picks what a local search picks.
"""

import os
import pickle

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from torch import nn

from sklearn_winfair import FairLowRankFineTuner

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

GRID = {"rank": [1, 2], "alpha": [0.2, 0.8]}


def _backbone():
    # nn.Sequential only: a worker unpickles it with nothing but torch
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(),
        nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)),
    )


def _data(n=120):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    s = np.where(rng.rand(n) < 0.5, "a", "b")
    return X, y, s


def _estimator(memory=None):
    return FairLowRankFineTuner(
        _backbone(), head="2", max_epochs=2, batch_size=32, random_state=0,
        memory=memory,
    )


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def _search(memory, n_jobs):
    est = _estimator(memory).set_fit_request(sensitive_features=True)
    return GridSearchCV(
        est, GRID, cv=StratifiedKFold(2, shuffle=True, random_state=0),
        n_jobs=n_jobs, error_score="raise",
    )


def test_grid_search_runs_on_dask_workers_with_routed_groups(client, tmp_path):
    X, y, s = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        local = _search(str(tmp_path / "local"), n_jobs=1).fit(
            X, y, sensitive_features=s)
        search = _search(str(tmp_path / "shared"), n_jobs=-1)
        with distributed.get_task_stream(client) as tasks:
            with joblib.parallel_config(backend="dask"):
                search.fit(X, y, sensitive_features=s)

    # the fits ran as tasks on the cluster's workers, not in this process
    workers = set(client.scheduler_info()["workers"])
    ran_on = {t["worker"] for t in tasks.data}
    assert tasks.data and ran_on <= workers
    assert len(ran_on) == 2, "both workers got work"
    # sensitive_features reached fit: importance="neutral" needs them (it
    # raises without), and the refit saw both groups
    np.testing.assert_array_equal(search.best_estimator_.groups_, ["a", "b"])
    # the same search as in this process
    assert search.best_params_ == local.best_params_
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    # the shared feature store was written by the workers
    assert any((tmp_path / "shared").rglob("*"))


def test_estimator_pickles_to_a_worker_and_back(client):
    X, y, s = _data()

    def _fit_on_worker(est, X, y, s):  # local: sent by value, not by import
        return est.fit(X, y, sensitive_features=s), os.getpid()

    est = _estimator()
    fitted, pid = client.submit(_fit_on_worker, est, X, y, s, pure=False).result()
    assert pid != os.getpid()
    here = _estimator().fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(fitted.predict_proba(X), here.predict_proba(X),
                               rtol=1e-5, atol=1e-6)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), here.predict(X))
