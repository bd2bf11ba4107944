"""The seed loop of every scenario and the Python entry point.

:func:`run_benchmark` runs the steps of one scenario (:mod:`._scenarios`)
for each seed, one row of ``runs.csv`` per step, then writes the results
folder (:mod:`._report`).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import (
    demographic_parity_gap,
    equalized_odds_gap,
    paper_metrics,
    weighted_f1_error,
)
from ._report import write_reports
from ._scenarios import SCENARIOS, Copy, progress_units
from ._settings import DATASETS, Settings

__all__ = ["BenchmarkResult", "run_benchmark", "task_metrics"]


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per (experiment, config, method, seed), as in ``runs.csv``.
    tables : dict of str to str
        Markdown tables by file name (``"table3.md"``...).
    files : list of pathlib.Path
        Files written.
    wall_seconds : float
        Wall time of the whole run.
    settings : Settings
    artifacts : dict
        What the seed-0 run kept for the plots, and the descriptions of the
        data and backbones.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_winfair.reproduction import BenchmarkResult, Settings
    >>> result = BenchmarkResult(pd.DataFrame(), {}, [], 0.0,
    ...                          Settings.defaults("adult", quick=True))
    >>> result.settings.seeds, result.artifacts
    (3, {})
    """

    runs: pd.DataFrame
    tables: dict
    files: list
    wall_seconds: float
    settings: Settings
    artifacts: dict = field(default_factory=dict, repr=False)


def task_metrics(task, y_pred):
    """Err, ΔDP and ΔEO (sum of TPR and FPR gaps) of ``y_pred`` on the test part.

    Binary tasks use :func:`~sklearn_winfair.paper_metrics` with the task's
    favourable class. Multiclass tasks report, for ΔDP and ΔEO, the *maximum
    over classes* of the one-vs-rest gaps.

    Parameters
    ----------
    task : Task
    y_pred : ndarray of shape (n_test,)

    Returns
    -------
    dict
        ``{"err", "dp_gap", "eo_gap"}``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair.reproduction import task_metrics
    >>> from sklearn_winfair.reproduction._data import Split, Task
    >>> y, s = np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"])
    >>> part = Split(np.zeros((4, 1), np.float32), y, s)
    >>> task = Task("toy", part, part, part, part, classes=["no", "yes"],
    ...             pre_classes=["no", "yes"])
    >>> m = task_metrics(task, np.array([0, 1, 1, 1]))
    >>> round(m["dp_gap"], 2), round(m["eo_gap"], 2)
    (0.5, 1.0)
    """
    y, s = task.test.y, task.test.s
    if task.n_classes == 2:
        return paper_metrics(y, y_pred, sensitive_features=s,
                             pos_label=task.pos_label)
    dp, eo = [], []
    for c in range(task.n_classes):
        yc, pc = (y == c).astype(int), (y_pred == c).astype(int)
        dp.append(demographic_parity_gap(yc, pc, sensitive_features=s))
        eo.append(equalized_odds_gap(yc, pc, sensitive_features=s, agg="sum"))
    return {"err": weighted_f1_error(y, y_pred), "dp_gap": float(max(dp)),
            "eo_gap": float(max(eo))}


class _Recorder:
    """Run the steps of one seed and collect their rows."""

    def __init__(self, bar):
        self.rows = []
        self.bar = bar

    def add(self, step, ctx, method, result):
        row = dict(experiment=step.experiment, config=step.config,
                   method=method.name, seed=ctx.seed,
                   **task_metrics(ctx.task, result.y_pred),
                   n_params=result.n_params, fit_seconds=result.seconds)
        extra = {"family": method.family, **result.columns, **step.columns}
        if "rank" not in extra:
            rank = getattr(result.estimator, "rank_", None)
            row["rank"] = np.nan if rank is None else rank
        row.update(extra)
        self.rows.append(row)
        return row

    def copy(self, step, seed_rows):
        experiment, method = step.source
        source = next((r for r in reversed(seed_rows)
                       if r["experiment"] == experiment
                       and r["method"] == method), None)
        if source is None:
            return None
        row = dict(source, experiment=step.experiment, method=step.method,
                   **step.columns)
        if step.config is not None:
            row["config"] = step.config
        for key in step.drop:
            row.pop(key, None)
        self.rows.append(row)
        return row

    def run_seed(self, scenario, settings, seed, artifacts):
        contexts, finish = scenario.prepare(settings, seed, artifacts)
        seed_rows = []
        for step in scenario.steps(settings):
            if isinstance(step, Copy):
                row = self.copy(step, seed_rows)
            else:
                if self.bar is not None:
                    self.bar.set_postfix_str(
                        f"seed {seed} {step.experiment}: {step.method.name}"[:60])
                ctx = contexts[step.context]
                row = self.add(step, ctx, step.method, step.method.fit(ctx))
                if self.bar is not None:
                    self.bar.update(1)
            if row is not None:
                seed_rows.append(row)
        finish()


def run_benchmark(dataset="adult", *, quick=False, seeds=None, epochs=None,
                  out=None, methods=None, plots=True, n_rows=None,
                  progress=True, verbose=True, **overrides):
    """Run one benchmark and write its results folder.

    Parameters
    ----------
    dataset : {"adult", "adult-age-shift", "german", "images"}, default="adult"
        Which benchmark.
    quick : bool, default=False
        Quick mode: 3 seeds and few epochs (see :meth:`Settings.defaults`).
    seeds : int or None, default=None
        Number of seeds; None uses the mode's default (3 quick, 10 full).
    epochs : int or None, default=None
        Fine-tuning epochs; None uses the mode's default.
    out : str, pathlib.Path or None, default=None
        Results folder; None is ``winfair-results/<dataset>``.
    methods : str, list of str or None, default=None
        Patterns selecting the methods of the main comparison.
    plots : bool, default=True
        Write the PNG plots (matplotlib, Agg backend).
    n_rows : int or None, default=None
        Subsample the data set (for smoke tests).
    progress : bool, default=True
        Show a tqdm progress bar.
    verbose : bool, default=True
        Print the markdown tables at the end.
    **overrides
        Other :class:`Settings` fields (``batch_size``, ``pretrain_epochs``,
        ``ranks_b``...).

    Returns
    -------
    BenchmarkResult

    Examples
    --------
    A smoke-sized run (one seed, one epoch, 600 rows, two methods):

    >>> import tempfile
    >>> from sklearn_winfair.reproduction import run_benchmark
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = run_benchmark(
    ...         "adult-age-shift", out=out, seeds=1, epochs=1,
    ...         pretrain_epochs=1, n_rows=600, methods="TL,OURS", ranks_b=(),
    ...         ranks_c=(), plots=False, progress=False, verbose=False)
    >>> sorted(result.tables)
    ['fig4.md', 'rank_sweep.md', 'summary.md', 'table2.md', 'table3.md']
    >>> result.runs.loc[result.runs["experiment"] == "main", "method"].tolist()
    ['TL', 'OURS']
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    settings = Settings.defaults(dataset, quick=quick, seeds=seeds,
                                 epochs=epochs, methods=methods, n_rows=n_rows,
                                 **overrides)
    out = Path(out) if out is not None else Path("winfair-results") / dataset
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scenario = SCENARIOS[dataset]
    total = settings.seeds * progress_units(scenario, settings)
    bar = tqdm(total=total, desc=f"winfair-bench {dataset}", unit="fit",
               disable=not progress)
    rec, artifacts = _Recorder(bar), {}
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        for seed in range(settings.seeds):
            rec.run_seed(scenario, settings, seed, artifacts)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    runs = pd.DataFrame(rec.rows)
    wall = time.perf_counter() - start
    tables, files = write_reports(runs, settings, out, artifacts, wall,
                                  plots=plots)
    result = BenchmarkResult(runs, tables, files, wall, settings, artifacts)
    if verbose:
        for name, text in tables.items():
            if name != "summary.md":
                print(f"\n## {name}\n\n{text}")
        print(f"\nWall time: {wall:.1f} s. Results in {out}/")
    return result
