"""``GridSearchCV`` on Dask: 1 worker against 2 workers.

Issue 8, item 3. The search of ``bench_grid.py`` (CNN, ``head="head"``, rank
2/4/8 x alpha 0.25/0.5/0.75, 3 folds + refit, 5 epochs,
``sensitive_features`` routed) runs through joblib's Dask backend on a
``distributed.LocalCluster`` of worker processes with 1 thread each, with
``memory=`` a folder every worker sees (here: a local temporary folder, as
all workers run on this machine). The cluster is started before the clock and
every worker imports torch, skorch and the package first. The figure
is the speed-up of 2 workers over 1; the ideal is 2x on 2 free cores.

With 1 worker of 1 thread, joblib's Dask backend sees one job slot and runs
the search sequentially in this process (its task stream stays empty), so
the reference is in effect the same search without Dask; the summed compute
time of the 2-worker tasks shows how much slower a fit runs on a worker.
"""

import shutil
import tempfile

import _common as c
import joblib
import sklearn
from sklearn.model_selection import GridSearchCV, StratifiedKFold

GRID = {"rank": [2, 4, 8], "alpha": [0.25, 0.5, 0.75]}


def search_on_cluster(n_workers, X, y, s, backbone, base):
    from distributed import Client, LocalCluster, get_task_stream

    folder = tempfile.mkdtemp(prefix="winfair-dask-")
    try:
        with LocalCluster(n_workers=n_workers, threads_per_worker=1,
                          processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            # workers up, with torch and the package imported (not timed)
            threads = sorted(set(client.run(_torch_threads).values()))
            with sklearn.config_context(enable_metadata_routing=True):
                est = c.estimator(backbone, **base, memory=folder)
                est.set_fit_request(sensitive_features=True)
                search = GridSearchCV(
                    est, GRID, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                    # joblib's Dask backend counts the cluster's threads: on a
                    # 1-thread cluster that is 1 job, run in this process
                    n_jobs=-1, error_score="raise",
                )
                with joblib.parallel_config(backend="dask"), \
                        get_task_stream(client) as stream:
                    t, _ = c.timed(lambda: search.fit(X, y, sensitive_features=s))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    compute = sum(ss["stop"] - ss["start"] for task in stream.data
                  for ss in task["startstops"] if ss["action"] == "compute")
    return t, search.best_params_, threads, (len(stream.data), compute)


def _torch_threads():
    import skorch  # noqa: F401
    import torch

    import sklearn_winfair  # noqa: F401

    return torch.get_num_threads()


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n = 600 if args.quick else 3_000
    X, y, s = c.image_data(n)
    backbone = c.cnn_backbone()
    base = dict(head="head", rank=4, alpha=0.5, max_epochs=5, batch_size=128,
                random_state=0, device="cpu")
    t1, best1, th1, st1 = search_on_cluster(1, X, y, s, backbone, base)
    print(f"1 worker: {t1:.1f} s, best {best1}", flush=True)
    t2, best2, th2, st2 = search_on_cluster(2, X, y, s, backbone, base)
    print(f"2 workers: {t2:.1f} s, best {best2}", flush=True)
    ratio = t1 / t2
    rows = [c.make_row(
        "dask_grid_search",
        "GridSearchCV on a Dask LocalCluster of 2 worker processes (1 thread "
        "each), speed-up over 1 worker (which joblib runs in-process)",
        t2, t1, ratio, ">= 1.6x (ideal 2x on 2 free cores)", ratio >= 1.6,
        measured_text=f"2 workers {t2:.1f} s", reference_text=f"1 worker {t1:.1f} s",
        notes=(f"N={n}, 5 epochs, memory= shared folder; best params 1 worker "
               f"{best1}, 2 workers {best2}; torch threads in the workers "
               f"{th1} and {th2}; tasks and their summed compute time: 1 worker "
               f"{st1[0]} tasks, {st1[1]:.1f} s; 2 workers {st2[0]} tasks, "
               f"{st2[1]:.1f} s; CPU device only"),
        params={"n": n, "best_1": best1, "best_2": best2},
    )]
    c.emit(args, rows, "bench_dask.py")


if __name__ == "__main__":
    main()
