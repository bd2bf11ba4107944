"""A whole ``GridSearchCV`` against one fit.

Row 6 of issue 8. CNN on 3x32x32 images, ``head="head"`` (2048 -> 64 -> 2),
5 epochs, batch 128: 9 candidates (rank in 2, 4, 8 x alpha in 0.25, 0.5,
0.75) x 3 folds + refit, ``sensitive_features`` routed by metadata routing,
``n_jobs=1``; against one fit of the same estimator (rank 4, alpha 0.5) on
all rows. Twice: with ``memory=None`` and with ``memory=`` a fresh folder.

A hook counts the rows that go through the frozen trunk during the search
(fits and scoring), divided by N: 1 would be "the backbone runs once over the
rows for the whole search".
"""

import shutil
import tempfile

import _common as c
import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV, StratifiedKFold

GRID = {"rank": [2, 4, 8], "alpha": [0.25, 0.5, 0.75]}


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n = 1_000 if args.quick else 5_000
    X, y, s = c.image_data(n)
    backbone = c.cnn_backbone()
    base = dict(head="head", rank=4, alpha=0.5, max_epochs=5, batch_size=128,
                random_state=0, device=args.device)
    c.estimator(backbone, **base).fit(X[:256], y[:256],
                                      sensitive_features=s[:256])  # warm-up
    rows = []
    for use_memory in (False, True):
        folder = tempfile.mkdtemp(prefix="winfair-bench-") if use_memory else None
        try:
            one_s, _ = c.timed(
                lambda: c.estimator(backbone, **base).fit(X, y,
                                                          sensitive_features=s),
                args.device)
            counter = c.RowCounter(backbone.trunk)
            with sklearn.config_context(enable_metadata_routing=True):
                est = c.estimator(backbone, **base, memory=folder)
                est.set_fit_request(sensitive_features=True)
                search = GridSearchCV(
                    est, GRID, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                    n_jobs=1, error_score="raise",
                )
                search_s, _ = c.timed(
                    lambda: search.fit(X, y, sensitive_features=s), args.device)  # noqa: B023
            passes = counter.remove() / n
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        ratio = search_s / one_s
        label = "memory=<folder>" if use_memory else "memory=None"
        fit_times = search.cv_results_["mean_fit_time"]
        rows.append(c.make_row(
            "grid_search_memory" if use_memory else "grid_search",
            f"GridSearchCV 9 candidates x 3 folds + refit / one fit, CNN, {label}",
            search_s, one_s, ratio, "<= 3x", ratio <= 3,
            measured_text=f"search {search_s:.1f} s",
            reference_text=f"one fit {one_s:.2f} s",
            notes=(f"N={n}, 5 epochs; {passes:.1f} passes of the trunk over N "
                   f"rows during the search (fits and scoring); mean fit time "
                   f"of a candidate {np.mean(fit_times):.2f} s, mean score time "
                   f"{np.mean(search.cv_results_['mean_score_time']):.2f} s; "
                   f"best {search.best_params_}"),
            params={"n": n, "epochs": 5, "trunk_passes": passes,
                    "best_params": search.best_params_,
                    "memory": use_memory},
        ))
        print(f"{label}: search {search_s:.1f} s, one fit {one_s:.2f} s, "
              f"ratio {ratio:.1f}, trunk passes {passes:.1f}", flush=True)
    c.emit(args, rows, "bench_grid.py")


if __name__ == "__main__":
    main()
