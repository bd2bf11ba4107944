"""The per-seed loops of the three benchmarks and their Python entry point."""

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
from ._data import make_adult_tasks, make_german_task
from ._methods import (
    IMPORTANCES,
    PENALTY_STRENGTHS,
    Context,
    main_methods,
    select_methods,
    tuner_method,
)
from ._pretrain import ARCHITECTURE, LINEAR_HEAD, MLP_HEAD, build_mlp, train_torch
from ._tuning import Grid

__all__ = ["Settings", "BenchmarkResult", "run_benchmark", "task_metrics",
           "DATASETS"]

DATASETS = ("adult", "adult-age-shift", "german", "images")
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

CONFIG_A = "a: linear head 10->2"
CONFIG_B = "b: 2-layer head 64->10->2"
CONFIG_C = "c: multiclass, probe head 64->10->4"


@dataclass
class Settings:
    """Settings of one benchmark run (what ``winfair-bench`` options set).

    Attributes
    ----------
    dataset : {"adult", "adult-age-shift", "german", "images"}
        ``"adult"`` is the paper's setting; ``"adult-age-shift"`` our age
        covariate-shift scenario.
    seeds : int
        Number of seeds (0 .. seeds - 1).
    epochs : int
        Fine-tuning epochs.
    pretrain_epochs : int
        Epochs of the backbones' pre-training.
    batch_size : int
        Mini-batch size of every torch loop.
    lr : float
        Learning rate of head fine-tuning (pre-training uses it too; whole
        model retraining uses ``lr / 10``).
    quick : bool
        Quick mode (recorded in the outputs).
    methods : str or None
        ``--methods`` patterns for the main comparison.
    n_rows : int or None
        Subsample the data set (smoke tests).
    main_rank : int
        Rank of f+SVD / FWSVD / OURS on the linear head (config (a)).
    ranks_b, ranks_c : tuple of int
        Rank sweeps of configurations (b) and (c).
    alpha_rank : int
        Rank of the alpha ablation and of the (b) rows of ``fig4.md``.
    expgrad_max_iter : int
        ``max_iter`` of the ExponentiatedGradient peers.
    grid : Grid
        lr x epochs grid searched on the validation part by every tuned
        method (``adult`` and ``images``).
    pretrain_lr : float
        Learning rate of the backbones' pre-training (``adult``, ``images``).
    ours_b : bool
        Also run our extras in ``adult``: the one-hot 64-10-2 configuration
        and OURS+DP/EO (off in quick mode, for time).
    n_images : tuple of 4 int or None
        Pre-training, train, validation and test images (``images``).
    pretrain_batch_size : int or None
        Mini-batch of the pre-training (None: ``batch_size``).
    torch_threads : int
        Torch intra-op threads during the run (restored afterwards). The
        models are tiny, so one thread is as fast as several on an idle
        machine and tens of times faster on a busy one (thread
        oversubscription: a fair pre-training took 0.5 s with one thread and
        43 s with two while another process used the second core).
    """

    dataset: str = "adult"
    seeds: int = 3
    epochs: int = 5
    pretrain_epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-2
    quick: bool = True
    methods: object = None
    n_rows: object = None
    main_rank: int = 1
    ranks_b: tuple = (1, 2, 4, 8)
    ranks_c: tuple = (1, 2, 3)
    alpha_rank: int = 2
    expgrad_max_iter: int = 50
    grid: Grid = Grid()
    pretrain_lr: float = 1e-2
    ours_b: bool = True
    n_images: object = None
    pretrain_batch_size: object = None
    torch_threads: int = 1

    @classmethod
    def defaults(cls, dataset, *, quick=False, **overrides):
        """Per-data-set defaults for quick and full mode, then ``overrides``."""
        base = {
            "adult": dict(pretrain_epochs=5, batch_size=256, seeds=3,
                          grid=Grid((1e-3, 1e-2), (2, 5)), ours_b=False)
            if quick else dict(pretrain_epochs=10, batch_size=256, seeds=10,
                               grid=Grid((1e-3, 1e-2), (2, 5, 10)),
                               ours_b=True),
            "adult-age-shift": dict(epochs=5, pretrain_epochs=5, batch_size=512,
                                    seeds=3)
            if quick else dict(epochs=20, pretrain_epochs=10, batch_size=256,
                               seeds=10),
            "german": dict(epochs=20, pretrain_epochs=30, batch_size=32,
                           seeds=3, lr=5e-3)
            if quick else dict(epochs=50, pretrain_epochs=60, batch_size=32,
                               seeds=10, lr=5e-3),
            "images": dict(seeds=3, pretrain_epochs=3, pretrain_lr=3e-3,
                           batch_size=512, pretrain_batch_size=128,
                           n_images=(3000, 3000, 600, 1200),
                           grid=Grid((1e-3, 1e-2), (2, 5)), ranks_b=(),
                           main_rank=4)
            if quick else dict(seeds=10, pretrain_epochs=5, pretrain_lr=3e-3,
                               batch_size=512, pretrain_batch_size=128,
                               grid=Grid((1e-3, 1e-2), (2, 5, 10)),
                               ranks_b=(1, 8), main_rank=4),
        }[dataset]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(dataset=dataset, quick=quick, **base)


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
    """Collect run rows; run methods with progress reporting."""

    def __init__(self, bar):
        self.rows = []
        self.bar = bar

    def add(self, experiment, config, method, seed, task, result, **extra):
        row = dict(experiment=experiment, config=config, method=method,
                   seed=seed, **task_metrics(task, result.y_pred),
                   n_params=result.n_params, fit_seconds=result.seconds)
        if "rank" not in extra:
            rank = getattr(result.estimator, "rank_", None)
            row["rank"] = np.nan if rank is None else rank
        row.update(extra)
        self.rows.append(row)
        return row

    def run(self, experiment, config, ctx, methods, **extra):
        results = {}
        for m in methods:
            if self.bar is not None:
                self.bar.set_postfix_str(f"seed {ctx.seed} {experiment}: {m.name}"[:60])
            res = m.fit(ctx)
            results[m.name] = res
            self.add(experiment, config, m.name, ctx.seed, ctx.task, res,
                     family=m.family, **extra)
            if self.bar is not None:
                self.bar.update(1)
        return results


def _sweep_methods(head, ranks, **params):
    methods = []
    for r in ranks:
        for label, imp in IMPORTANCES.items():
            methods.append((r, label, tuner_method(
                f"{label} r={r}", head=head, rank=r, importance=imp, **params)))
    return methods


def _run_sweep(rec, experiment, config, ctx, head, ranks, **params):
    tl = tuner_method("TL", head=head, rank=None, **params)
    rec.run(experiment, config, ctx, [tl], rank=np.nan, importance="none")
    fitted = {}
    for r, label, m in _sweep_methods(head, ranks, **params):
        rec.run(experiment, config, ctx, [m], rank=r, importance=label)
        fitted[(r, label)] = ctx.fitted[m.name]
    return fitted


def _context_kwargs(settings):
    return dict(epochs=settings.epochs, batch_size=settings.batch_size,
                lr=settings.lr, expgrad_max_iter=settings.expgrad_max_iter)


def _pretrain(settings, X, y, s=None, *, n_in=None, builder=None, seed=0,
              penalty=None, strength=0.0):
    model = builder(seed=seed) if builder else build_mlp(n_in, seed=seed)
    return train_torch(model, X, y, s, epochs=settings.pretrain_epochs,
                       lr=settings.lr, batch_size=settings.batch_size,
                       penalty=penalty, strength=strength, seed=seed)


def _count_units(settings):
    """Return the number of method fits per seed (for the progress bar)."""
    n_main = len(select_methods(main_methods(), settings.methods))
    n_b = 1 + 3 * len(settings.ranks_b)
    if settings.dataset == "adult":
        from ._adult_paper import count_units

        return count_units(settings)
    if settings.dataset == "images":
        from ._images import count_units

        return count_units(settings)
    if settings.dataset == "adult-age-shift":
        return (n_main + n_b + (len(ALPHAS) - 1) + 6 * 3
                + 1 + 3 * len(settings.ranks_c))
    if settings.dataset == "german":
        return n_main + n_b
    return 5 + n_b


def _adult_seed(settings, seed, rec, artifacts):
    tasks = make_adult_tasks(seed, n_rows=settings.n_rows)
    task = tasks["income"]
    kw = _context_kwargs(settings)
    n_in = task.pre.X.shape[1]
    backbone = _pretrain(settings, task.pre.X, task.pre.y, n_in=n_in, seed=seed)
    ctx = Context(task, backbone, seed, **kw)

    # main comparison, config (a)
    methods = select_methods(main_methods(rank=settings.main_rank),
                             settings.methods)
    main = rec.run("main", CONFIG_A, ctx, methods)

    # rank sweep (b) and alpha ablation
    fitted_b = _run_sweep(rec, "rank_sweep_b", CONFIG_B, ctx, MLP_HEAD,
                          settings.ranks_b)
    alpha_methods = [tuner_method(f"OURS alpha={a}", head=MLP_HEAD,
                                  rank=settings.alpha_rank, alpha=a)
                     for a in ALPHAS[1:]]
    ours_b = next((r for r in rec.rows[::-1]
                   if r["experiment"] == "rank_sweep_b" and r["seed"] == seed
                   and r["method"] == f"OURS r={settings.alpha_rank}"), None)
    if ours_b is not None:
        rec.rows.append(dict(ours_b, experiment="alpha",
                             method="OURS alpha=0.5", alpha=0.5))
    for a, m in zip(ALPHAS[1:], alpha_methods, strict=False):
        rec.run("alpha", CONFIG_B, ctx, [m], rank=settings.alpha_rank, alpha=a)

    # Table 2: fair pre-trained models before / after fine-tuning
    t2 = [m for m in main_methods(rank=settings.main_rank)
          if m.name in ("Pretrained (no FT)", "TL", "OURS")]
    for name, res in main.items():
        if name in ("Pretrained (no FT)", "TL", "OURS"):
            rec.add("table2", "plain pre-trained", name, seed, task, res)
    for pen_label, pen in (("DP", "demographic_parity"), ("EO", "equalized_odds")):
        for lam in PENALTY_STRENGTHS:
            fair = _pretrain(settings, task.pre.X, task.pre.y, task.pre.s,
                             n_in=n_in, seed=seed, penalty=pen, strength=lam)
            ctx_f = Context(task, fair, seed, **kw)
            rec.run("table2", f"fair pre-trained {pen_label} λ={lam}", ctx_f, t2)

    # rank sweep (c): multiclass new task with a probe head
    edu = tasks["education"]
    backbone_e = _pretrain(settings, edu.pre.X, edu.pre.y,
                           n_in=edu.pre.X.shape[1], seed=seed)
    ctx_e = Context(edu, backbone_e, seed, **kw)
    _run_sweep(rec, "rank_sweep_c", CONFIG_C, ctx_e, MLP_HEAD,
               settings.ranks_c, head_init="probe")

    if seed == 0:
        _mlp_plot_artifacts(artifacts, settings, ctx, task, fitted_b)
    artifacts.setdefault("descriptions", {}).update(
        {"adult-income": task.description, "adult-education": edu.description,
         "sizes": task.sizes(), "architecture": ARCHITECTURE,
         "n_features": n_in})


def _mlp_plot_artifacts(artifacts, settings, ctx, task, fitted_b):
    """Keep what the importance and PCA plots need from seed 0 of an MLP run."""
    artifacts["importance"] = fitted_b.get((settings.alpha_rank, "OURS"))
    artifacts["pca"] = {
        "input of linear head (10-d)": ctx.features(LINEAR_HEAD, "test"),
        "input of 2-layer head (64-d)": ctx.features(MLP_HEAD, "test"),
        "groups": task.test.s,
    }


def _german_seed(settings, seed, rec, artifacts):
    task = make_german_task(seed, n_rows=settings.n_rows)
    n_in = task.pre.X.shape[1]
    backbone = _pretrain(settings, task.pre.X, task.pre.y, n_in=n_in, seed=seed)
    ctx = Context(task, backbone, seed, **_context_kwargs(settings))
    methods = select_methods(main_methods(rank=settings.main_rank),
                             settings.methods)
    rec.run("main", CONFIG_A, ctx, methods)
    fitted_b = _run_sweep(rec, "rank_sweep_b", CONFIG_B, ctx, MLP_HEAD,
                          settings.ranks_b)
    if seed == 0:
        _mlp_plot_artifacts(artifacts, settings, ctx, task, fitted_b)
    artifacts.setdefault("descriptions", {}).update(
        {"german": task.description, "sizes": task.sizes(),
         "architecture": ARCHITECTURE, "n_features": n_in})


def _paper_seed(settings, seed, rec, artifacts):
    from ._adult_paper import adult_paper_seed

    adult_paper_seed(settings, seed, rec, artifacts)


def _images_seed(settings, seed, rec, artifacts):
    from ._images import images_seed

    images_seed(settings, seed, rec, artifacts)


_SEED_LOOPS = {"adult": _paper_seed, "adult-age-shift": _adult_seed,
               "german": _german_seed, "images": _images_seed}


def run_benchmark(dataset="adult", *, quick=False, seeds=None, epochs=None,
                  out=None, methods=None, plots=True, n_rows=None,
                  progress=True, verbose=True, **overrides):
    """Run one benchmark and write its results folder.

    Parameters
    ----------
    dataset : {"adult", "german", "images"}, default="adult"
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
    """
    from ._report import write_reports

    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    settings = Settings.defaults(dataset, quick=quick, seeds=seeds,
                                 epochs=epochs, methods=methods, n_rows=n_rows,
                                 **overrides)
    out = Path(out) if out is not None else Path("winfair-results") / dataset
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    total = settings.seeds * _count_units(settings)
    bar = tqdm(total=total, desc=f"winfair-bench {dataset}", unit="fit",
               disable=not progress)
    rec, artifacts = _Recorder(bar), {}
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        for seed in range(settings.seeds):
            _SEED_LOOPS[dataset](settings, seed, rec, artifacts)
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
