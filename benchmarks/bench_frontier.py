"""Cost and selection quality of ``FairFrontierCV`` (issue 18), side by side.

Rows:

* ``frontier_fit``: the whole ``FairFrontierCV.fit`` (8 penalty strengths x 2
  importances, per-group thresholds on, a 25 % validation split, 200
  bootstrap resamples, the refit) / one ``FairLowRankFineTuner.fit`` of the
  same estimator, on the CNN of ``bench_fit.py`` (3x32x32 images, head = the
  last ``nn.Linear``, 20 epochs, batch 128). Issue 18's target: <= 2x.
* ``frontier_vs_expgrad``: fairlearn's ``ExponentiatedGradient`` (DP,
  ``eps=0.05``) over the same estimator (``importance="fisher"``, which needs
  no groups in ``fit``; given a feature store as well, so its backbone also
  runs once per row) / the frontier's fit: the speed-up.
* ``frontier_adult``: on Adult (the gallery example's setting: an MLP
  pre-trained on people under 40, fine-tuned on the others, sex as the group;
  50 % train, 25 % validation, 25 % test), for DP and EO (our sum of the TPR
  and FPR gaps) at tolerances 0.01, 0.02, 0.05: the test error and test gap of
  the point ``FairFrontierCV`` selects (``refit=False``, so every method sees
  the same training rows and the same validation rows), beside fairlearn's
  ``ThresholdOptimizer`` (prefit on TL, ``tol`` = the tolerance for DP; for
  EO fairlearn 0.15 supports no ``tol``, so exact equalized odds; randomized
  predictions with ``random_state=0``) and OxonFair's ``FairPredictor`` on the
  same validation scores of TL (its EO is the *mean* of the two gaps, so it
  gets half the tolerance). A table, no ratio.

Run ``python benchmarks/bench_frontier.py --quick`` (N = 2,000 images, 10
``ExponentiatedGradient`` iterations, 2 Adult seeds).
"""

import tempfile
import time
import warnings

import _common as c
import numpy as np
import pandas as pd
import torch

SIZES = {"n": (10_000, 2_000), "expgrad_iter": (50, 10), "seeds": (5, 2)}
STRENGTHS = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]


def _size(key, args):
    return SIZES[key][1 if args.quick else 0]


def _cnn_setup(n, **extra):
    """The bench_fit CNN, ``n`` images and the estimator's parameters, warmed up."""
    X, y, s = c.image_data(n)
    backbone = c.cnn_backbone()
    params = dict(max_epochs=20, batch_size=128, random_state=0, **extra)
    c.estimator(backbone, **dict(params, max_epochs=1)).fit(  # warm-up
        X[:256], y[:256], sensitive_features=s[:256])
    return X, y, s, backbone, params


def cost_rows(args):
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient

    from sklearn_winfair.model_selection import FairFrontierCV

    n = _size("n", args)
    X, y, s, backbone, params = _cnn_setup(n, device=args.device)
    one_s, _ = c.timed(lambda: c.estimator(backbone, **params).fit(
        X, y, sensitive_features=s), args.device)
    frontier = FairFrontierCV(
        c.estimator(backbone, **params), constraint="demographic_parity",
        tolerance=0.05, penalty_strengths=STRENGTHS,
        importances=["neutral", "uniform"], cv=0.25, n_bootstrap=200,
        random_state=0)
    counter = c.RowCounter(backbone)
    front_s, _ = c.timed(lambda: frontier.fit(X, y, sensitive_features=s),
                         args.device)
    passes = counter.remove() / n
    n_points = len(frontier.front_)
    iters = _size("expgrad_iter", args)
    with tempfile.TemporaryDirectory() as memory:
        eg = ExponentiatedGradient(
            c.estimator(backbone, **dict(params, importance="fisher", memory=memory)),
            constraints=DemographicParity(difference_bound=0.05), eps=0.05,
            max_iter=iters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eg_s, _ = c.timed(lambda: eg.fit(X, y, sensitive_features=s),
                              args.device)
    n_eg_fits = int(eg.n_oracle_calls_)
    rows = [
        c.make_row(
            "frontier_fit",
            "FairFrontierCV.fit (8 strengths x 2 importances, thresholds) / one "
            "FairLowRankFineTuner.fit, CNN 3x32x32",
            front_s, one_s, front_s / one_s, "<= 2x", front_s / one_s <= 2,
            measured_text=f"frontier {front_s:.1f} s",
            reference_text=f"fit {one_s:.1f} s",
            notes=(f"N={n}; 16 candidates fitted on 75 % of the rows + the refit "
                   f"on all; {n_points} points on the front; backbone forward "
                   f"passes over the rows: {passes:.2f}"),
            params={"n": n, "candidates": 16, "front_points": n_points,
                    "backbone_passes": passes}),
        c.make_row(
            "frontier_vs_expgrad",
            "fairlearn ExponentiatedGradient(DP, eps=0.05) over the estimator / "
            "FairFrontierCV.fit",
            eg_s, front_s, eg_s / front_s, "report", None,
            measured_text=f"ExponentiatedGradient {eg_s:.1f} s",
            reference_text=f"frontier {front_s:.1f} s",
            notes=(f"N={n}; max_iter={iters}; {n_eg_fits} estimator fits (oracle "
                   "calls); its "
                   "estimator shares a feature store too"),
            params={"n": n, "expgrad_max_iter": iters, "expgrad_fits": n_eg_fits}),
    ]
    print(f"frontier {front_s:.1f} s, one fit {one_s:.1f} s, "
          f"ExponentiatedGradient {eg_s:.1f} s", flush=True)
    return rows


def cost_only(n=10_000, threads=1):
    """The ``frontier_fit`` row alone at ``n`` images (no ExponentiatedGradient).

    ``cd benchmarks; python -c "import bench_frontier as b; b.cost_only()"``
    prints one JSON line: the N = 10,000 run of ``results/frontier_cost_10k.json``
    (Adam era), and of ``results/frontier_cost_lbfgs.json`` (before and after
    the candidates on the features, alternated by ``frontier_cost_compare.py``).
    """
    import json
    import os

    from sklearn_winfair.model_selection import FairFrontierCV

    torch.set_num_threads(threads)
    X, y, s, backbone, params = _cnn_setup(n)
    load_start = os.getloadavg()
    forward = c.forward_pass(backbone, X)
    one_s, _ = c.timed(lambda: c.estimator(backbone, **params).fit(
        X, y, sensitive_features=s))
    frontier = FairFrontierCV(
        c.estimator(backbone, **params), tolerance=0.05,
        penalty_strengths=STRENGTHS, importances=["neutral", "uniform"], cv=0.25,
        n_bootstrap=200, random_state=0)
    counter = c.RowCounter(backbone)
    front_s, _ = c.timed(lambda: frontier.fit(X, y, sensitive_features=s))
    out = {"n": n, "threads": threads, "forward_s": forward, "one_fit_s": one_s,
           "frontier_s": front_s, "ratio": front_s / one_s,
           "backbone_passes": counter.remove() / n,
           "front_points": len(frontier.front_),
           "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    print(json.dumps(out))
    return out


def expgrad_only(n=10_000, threads=1, max_iter=50):
    """``FairFrontierCV.fit`` beside ``ExponentiatedGradient`` in one process.

    ExponentiatedGradient (DP, ``eps=0.05``, ``max_iter`` iterations) over the
    same estimator with ``importance="fisher"`` (no groups in ``fit``) and a
    feature store of its own, so its backbone too runs once per row. Prints
    one JSON line.
    """
    import json
    import os

    from fairlearn.reductions import DemographicParity, ExponentiatedGradient

    from sklearn_winfair.model_selection import FairFrontierCV

    torch.set_num_threads(threads)
    X, y, s, backbone, params = _cnn_setup(n)
    load_start = os.getloadavg()
    frontier = FairFrontierCV(
        c.estimator(backbone, **params), tolerance=0.05,
        penalty_strengths=STRENGTHS, importances=["neutral", "uniform"], cv=0.25,
        n_bootstrap=200, random_state=0)
    front_s, _ = c.timed(lambda: frontier.fit(X, y, sensitive_features=s))
    with tempfile.TemporaryDirectory() as memory:
        eg = ExponentiatedGradient(
            c.estimator(backbone, **dict(params, importance="fisher", memory=memory)),
            constraints=DemographicParity(difference_bound=0.05), eps=0.05,
            max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eg_s, _ = c.timed(lambda: eg.fit(X, y, sensitive_features=s))
    out = {"n": n, "threads": threads, "frontier_s": front_s, "expgrad_s": eg_s,
           "speedup": eg_s / front_s, "expgrad_max_iter": max_iter,
           "expgrad_fits": int(eg.n_oracle_calls_),
           "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    print(json.dumps(out))
    return out


def _adult(seed):
    from sklearn.model_selection import train_test_split

    from sklearn_winfair.datasets import load_adult, make_tabular_preprocessor

    adult = load_adult(dropna=True)
    rows = np.random.RandomState(seed).choice(len(adult.data), size=8000,
                                              replace=False)
    X = adult.data.iloc[rows]
    y = (adult.target.iloc[rows] == ">50K").astype(int).to_numpy()
    sex = adult.sensitive_features.iloc[rows].to_numpy()
    young = (X["age"] < 40).to_numpy()
    prep = make_tabular_preprocessor(X, sensitive="sex").fit(X[young])
    X_pre = prep.transform(X[young]).astype("float32")
    X_new = prep.transform(X[~young]).astype("float32")
    parts = train_test_split(np.arange(len(X_new)), test_size=0.5,
                             random_state=seed, stratify=y[~young])
    val, test = train_test_split(parts[1], test_size=0.5, random_state=seed,
                                 stratify=y[~young][parts[1]])
    torch.manual_seed(seed)
    backbone = torch.nn.Sequential(
        torch.nn.Linear(X_pre.shape[1], 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(backbone.parameters(), lr=1e-2)
    feats, labels = torch.from_numpy(X_pre), torch.from_numpy(y[young])
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(backbone(feats), labels).backward()
        opt.step()
    return backbone, X_new, y[~young], sex[~young], np.sort(parts[0]), val, test


def _gap(constraint, y, pred, s):
    from sklearn_winfair.metrics import demographic_parity_gap, equalized_odds_gap

    if constraint == "demographic_parity":
        return demographic_parity_gap(y, pred, sensitive_features=s)
    return equalized_odds_gap(y, pred, sensitive_features=s, agg="sum")


def _record(key, method, y_true, pred, groups, seconds):
    from sklearn_winfair.metrics import weighted_f1_error

    seed, constraint, tol = key
    return {"seed": seed, "constraint": constraint, "tolerance": tol,
            "method": method, "test_error": weighted_f1_error(y_true, pred),
            "test_gap": _gap(constraint, y_true, pred, groups), "seconds": seconds}


def adult_rows(args):
    import oxonfair
    from fairlearn.postprocessing import ThresholdOptimizer
    from oxonfair import group_metrics as gm

    from sklearn_winfair import FairLowRankFineTuner
    from sklearn_winfair.model_selection import FairFrontierCV

    records = []
    for seed in range(_size("seeds", args)):
        backbone, X, y, s, tr, va, te = _adult(seed)
        fit_rows = np.concatenate([tr, va])
        split = [(np.arange(len(tr)), np.arange(len(tr), len(fit_rows)))]
        tl = FairLowRankFineTuner(backbone, rank=None, max_epochs=10,
                                  random_state=seed).fit(X[tr], y[tr])
        p_val, p_te = tl.predict_proba(X[va]), tl.predict_proba(X[te])
        for constraint in ("demographic_parity", "equalized_odds"):
            for tol in (0.01, 0.02, 0.05):
                key = (seed, constraint, tol)
                t0 = time.perf_counter()
                frontier = FairFrontierCV(
                    FairLowRankFineTuner(backbone, rank=2, max_epochs=10,
                                         random_state=seed),
                    constraint=constraint, tolerance=tol,
                    penalty_strengths=[0.0, 0.5, 2.0, 8.0],
                    importances=[None, "neutral"], cv=split, refit=False,
                    n_bootstrap=0, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    frontier.fit(X[fit_rows], y[fit_rows],
                                 sensitive_features=s[fit_rows])
                records.append(_record(
                    key, "FairFrontierCV", y[te], frontier.predict(X[te], s[te]),
                    s[te], time.perf_counter() - t0))

                t0 = time.perf_counter()
                to = ThresholdOptimizer(  # tol: DP only in fairlearn 0.15
                    estimator=tl, constraints=constraint, prefit=True,
                    predict_method="predict_proba",
                    tol=tol if constraint == "demographic_parity" else None)
                to.fit(X[va], y[va], sensitive_features=s[va])
                records.append(_record(
                    key, "ThresholdOptimizer (TL)", y[te],
                    to.predict(X[te], sensitive_features=s[te], random_state=0),
                    s[te], time.perf_counter() - t0))

                t0 = time.perf_counter()
                fp = oxonfair.FairPredictor(
                    None, oxonfair.DataDict(y[va], p_val, s[va]))
                metric = (gm.demographic_parity if constraint == "demographic_parity"
                          else gm.equalized_odds)
                value = tol if constraint == "demographic_parity" else tol / 2
                fp.fit(gm.accuracy, metric, value)
                pred = np.asarray(fp.predict(oxonfair.DataDict(y[te], p_te, s[te])))
                records.append(_record(key, "OxonFair FairPredictor (TL)", y[te],
                                       pred, s[te], time.perf_counter() - t0))
        print(f"Adult seed {seed} done", flush=True)
    table = pd.DataFrame(records)
    summary = (table.groupby(["constraint", "tolerance", "method"])
               [["test_error", "test_gap", "seconds"]].agg(["mean", "std"]))
    within = (table.assign(within=table["test_gap"] <= table["tolerance"])
              .groupby(["constraint", "tolerance", "method"])["within"].mean())
    summary[("test_gap_within_tolerance", "share")] = within
    text = summary.round(4).to_string()
    print(text, flush=True)
    return [c.make_row(
        "frontier_adult",
        "Adult, test error / test gap of the selected point beside "
        "ThresholdOptimizer and OxonFair at tolerances 0.01/0.02/0.05",
        None, None, None, "report", None, measured_text="table",
        reference_text="table", notes=text,
        params={"seeds": _size("seeds", args), "records": records})]


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    rows = cost_rows(args) + adult_rows(args)
    c.emit(args, rows, "bench_frontier.py")


if __name__ == "__main__":
    main()
