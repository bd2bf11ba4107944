"""The four scenarios of ``winfair-bench``, each a list of steps.

A scenario says, for one seed, which contexts exist (a task and a
pre-trained backbone, built on first use) and which steps run on them, in
order. A :class:`Run` step fits one method of the registry (:mod:`._methods`)
on one context and adds one row to ``runs.csv``; a :class:`Copy` step adds a
row copied from an earlier one (no fit). The progress bar's total is the
number of :class:`Run` steps (:func:`progress_units`), computed from the list.

* ``adult``: the paper's setting (Tables 2-4, Figs. 4-5), every method tuned
  on the validation part over ``Settings.grid``;
* ``adult-age-shift`` (ours): the age covariate shift, fixed epochs;
* ``german`` (ours): German credit, fixed epochs;
* ``images`` (ours): the constructed shapes task (:mod:`._shapes`) with a
  small ResNet pre-trained once per run, tuned like ``adult``.
"""

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from ._data import (
    Split,
    Task,
    make_adult_paper_task,
    make_adult_tasks,
    make_german_task,
)
from ._methods import (
    Context,
    Method,
    adversarial,
    expgrad,
    main_methods,
    pretrained,
    retrain_whole,
    select_methods,
    threshold,
    tuner_method,
)
from ._pretrain import (
    ARCHITECTURE,
    LINEAR_HEAD,
    MLP_HEAD,
    PAPER_ARCHITECTURE,
    PAPER_HEAD,
    build_mlp,
    build_paper_mlp,
    head_inputs,
    train_torch,
)
from ._resnet import RESNET_HEAD, build_resnet, resnet_description
from ._settings import (
    ALPHAS,
    CONFIG_A,
    CONFIG_B,
    CONFIG_C,
    IMAGES_CONFIG,
    IMPORTANCES,
    OURS_B_CONFIG,
    PAPER_ALPHAS,
    PAPER_CONFIG,
    PAPER_RANK,
    PENALTIES,
    PENALTY_STRENGTHS,
    TABLE4_DEPTHS,
)
from ._shapes import make_shapes_task, to_float, trunk_features

__all__ = ["Run", "Copy", "Scenario", "SCENARIOS", "progress_units", "pretrain"]


@dataclass(frozen=True)
class Run:
    """Fit ``method`` on the seed's context ``context``: one row, one unit.

    ``columns`` are added to the row (after the method's own columns).
    """

    experiment: str
    config: str
    method: Method
    context: str = "main"
    columns: dict = field(default_factory=dict)

    units = 1


@dataclass(frozen=True)
class Copy:
    """Copy the seed's last row of ``source`` = (experiment, method), renamed.

    Nothing is fitted (no progress unit); a missing source adds no row.
    ``config`` None keeps the source's; ``drop`` removes columns.
    """

    experiment: str
    method: str
    source: tuple
    config: str | None = None
    columns: dict = field(default_factory=dict)
    drop: tuple = ()

    units = 0


class Contexts:
    """The contexts of one seed by name, each built on first use.

    Building a context pre-trains its backbone, so only the contexts that a
    step uses are built, in the order the steps first use them.
    """

    def __init__(self, builders):
        self._builders, self._built = builders, {}

    def __getitem__(self, name):
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]


@dataclass(frozen=True)
class Scenario:
    """A scenario: its steps and, per seed, its contexts.

    Attributes
    ----------
    steps : callable
        ``steps(settings) -> list of Run or Copy``, the same for every seed.
    prepare : callable
        ``prepare(settings, seed, artifacts) -> (Contexts, finish)``; ``finish()``
        runs after the seed's steps and keeps in ``artifacts`` what the
        reports need (descriptions; seed 0's estimators and features).
    tuned : bool
        Whether its contexts search ``Settings.grid`` on the validation part.
    """

    steps: Callable
    prepare: Callable
    tuned: bool = False


def progress_units(scenario, settings):
    """Progress-bar units of one seed: the number of :class:`Run` steps."""
    return sum(step.units for step in scenario.steps(settings))


def pretrain(settings, model, X, y, s=None, *, seed, penalty=None, strength=0.0):
    """Pre-train a copy of ``model``: ``Settings.pretrain_*`` epochs, lr, batch."""
    return train_torch(model, X, y, s, epochs=settings.pretrain_epochs,
                       lr=settings.pretrain_lr,
                       batch_size=settings.pretrain_batch_size
                       or settings.batch_size,
                       penalty=penalty, strength=strength, seed=seed)


def _context(settings, task, backbone, seed, *, tuned, **kwargs):
    return Context(task, backbone, seed, epochs=settings.epochs,
                   batch_size=settings.batch_size, lr=settings.lr,
                   expgrad_max_iter=settings.expgrad_max_iter,
                   grid=settings.grid if tuned else None, solver=settings.solver,
                   **kwargs)


def _sweep(experiment, config, head, ranks, context="main", **params):
    """TL, then f+SVD / FWSVD / OURS at each rank of ``ranks``."""
    steps = [Run(experiment, config, tuner_method("TL", head=head, rank=None,
                                                  **params),
                 context, {"rank": np.nan, "importance": "none"})]
    steps += [Run(experiment, config, tuner_method(
        f"{label} r={r}", head=head, rank=r, importance=imp, **params),
        context, {"rank": r, "importance": label})
        for r in ranks for label, imp in IMPORTANCES.items()]
    return steps


def _fair_context_name(label, lam):
    return f"fair {label} λ={lam}"


def _fair_config(label, lam):
    return f"fair pre-trained {label} λ={lam}"


def _mlp_artifacts(artifacts, ctx, importance):
    """Keep what the importance and PCA plots need from seed 0 of an MLP run."""
    artifacts["importance"] = importance
    artifacts["pca"] = {
        "input of linear head (10-d)": ctx.features(LINEAR_HEAD, "test"),
        "input of 2-layer head (64-d)": ctx.features(MLP_HEAD, "test"),
        "groups": ctx.task.test.s,
    }


# ----------------------------------------------------------- adult (paper)
def _adult_steps(settings):
    cfg, rank, head = PAPER_CONFIG, PAPER_RANK, PAPER_HEAD
    tl = tuner_method("TL", head=head, rank=None)
    ours = tuner_method("OURS", head=head, rank=rank, importance="neutral")
    # main comparison (Table 3, Fig. 4, the Pareto plot)
    main = [pretrained(), tl]
    main += [tuner_method(label, head=head, rank=rank, importance=imp)
             for label, imp in IMPORTANCES.items()]
    steps = [Run("main", cfg, m) for m in main]
    steps += [Run("main", cfg, retrain_whole(f"Retrain+{label} λ={lam}",
                                             PENALTIES[label], lam),
                  columns={"intensity": lam})
              for label in ("EO", "DP") for lam in PENALTY_STRENGTHS]
    if settings.ours_b:
        steps += [Run("main", cfg, tuner_method(
            f"OURS+{label} λ=0.5", family="in-processing", head=head,
            rank=rank, importance="neutral", fairness_penalty=pen,
            penalty_strength=0.5)) for label, pen in PENALTIES.items()]
    steps += [Run("main", cfg, expgrad(c, head)) for c in PENALTIES]
    steps += [Run("main", cfg, threshold(base, c))
              for base in ("TL", "OURS") for c in PENALTIES]
    steps.append(Run("main", cfg, adversarial(head)))
    # Table 2: fair pre-trained models before / after fine-tuning (TL)
    for label in ("EO", "DP"):
        for lam in PENALTY_STRENGTHS:
            columns = {"constraint": label, "intensity": lam}
            name, config = _fair_context_name(label, lam), _fair_config(label, lam)
            steps += [Run("table2", config, pretrained(), name, columns),
                      Run("table2", config, tl, name, columns)]
    # Table 4: deeper MLPs, OURS
    for model_name in TABLE4_DEPTHS:
        steps += [Run("table4", model_name, pretrained(), model_name),
                  Run("table4", model_name, ours, model_name)]
    # Fig. 5: alpha ablation (alpha = 0.5 is OURS of the main comparison)
    steps.append(Copy("alpha", "OURS alpha=0.5", ("main", "OURS"),
                      columns={"alpha": 0.5}))
    steps += [Run("alpha", cfg, tuner_method(
        f"OURS alpha={a}", head=head, rank=rank, importance="neutral", alpha=a),
        columns={"alpha": a}) for a in PAPER_ALPHAS]
    # ours: the one-hot 64-10-2 backbone, 2-layer head (truncation bites)
    if settings.ours_b:
        steps.append(Run("ours_b", OURS_B_CONFIG, tuner_method(
            "TL", head=MLP_HEAD, rank=None), "onehot"))
        steps += [Run("ours_b", OURS_B_CONFIG, tuner_method(
            label, head=MLP_HEAD, rank=rank, importance=imp), "onehot")
            for label, imp in IMPORTANCES.items()]
    return steps


def _adult_prepare(settings, seed, artifacts):
    task, onehot = make_adult_paper_task(seed, n_rows=settings.n_rows,
                                         with_onehot=True)
    n_in = task.pre.X.shape[1]

    def paper_mlp(hidden_layers=2, penalty=None, strength=0.0):
        def build():
            model = pretrain(settings,
                             build_paper_mlp(n_in, hidden_layers=hidden_layers,
                                             seed=seed),
                             task.pre.X, task.pre.y, task.pre.s, seed=seed,
                             penalty=penalty, strength=strength)
            return _context(settings, task, model, seed, tuned=True)
        return build

    def onehot_mlp():
        model = pretrain(settings, build_mlp(onehot.pre.X.shape[1], seed=seed),
                         onehot.pre.X, onehot.pre.y, onehot.pre.s, seed=seed)
        return _context(settings, onehot, model, seed, tuned=True)

    builders = {"main": paper_mlp(), "onehot": onehot_mlp}
    for label in ("EO", "DP"):
        for lam in PENALTY_STRENGTHS:
            builders[_fair_context_name(label, lam)] = paper_mlp(
                penalty=PENALTIES[label], strength=lam)
    for model_name, depth in TABLE4_DEPTHS.items():
        builders[model_name] = paper_mlp(hidden_layers=depth)
    contexts = Contexts(builders)

    def finish():
        ctx = contexts["main"]
        if seed == 0:
            if settings.ours_b:
                artifacts["importance_b"] = contexts["onehot"].fitted.get("OURS")
            artifacts["importance"] = ctx.fitted.get("OURS")
            artifacts["pca"] = {
                "input of the head 20->2 (20-d)": head_inputs(
                    ctx.backbone, PAPER_HEAD, task.test.X),
                "groups": task.test.s,
            }
        artifacts.setdefault("descriptions", {}).update(
            {"adult-paper": task.description, "sizes": task.sizes(),
             "architecture": PAPER_ARCHITECTURE, "n_features": n_in,
             "onehot_features": onehot.pre.X.shape[1]})

    return contexts, finish


# ------------------------------------------------------- adult-age-shift
def _age_shift_steps(settings):
    main = main_methods(rank=settings.main_rank)
    steps = [Run("main", CONFIG_A, m) for m in select_methods(main,
                                                              settings.methods)]
    # rank sweep (b) and alpha ablation (alpha = 0.5 is OURS of the sweep)
    steps += _sweep("rank_sweep_b", CONFIG_B, MLP_HEAD, settings.ranks_b)
    steps.append(Copy("alpha", "OURS alpha=0.5",
                      ("rank_sweep_b", f"OURS r={settings.alpha_rank}"),
                      columns={"alpha": 0.5}))
    steps += [Run("alpha", CONFIG_B, tuner_method(
        f"OURS alpha={a}", head=MLP_HEAD, rank=settings.alpha_rank, alpha=a),
        columns={"rank": settings.alpha_rank, "alpha": a}) for a in ALPHAS[1:]]
    # Table 2: the plain model's rows, then fair pre-trained models
    t2 = [m for m in main if m.name in ("Pretrained (no FT)", "TL", "OURS")]
    steps += [Copy("table2", m.name, ("main", m.name),
                   config="plain pre-trained", drop=("family",)) for m in t2]
    for label in PENALTIES:
        for lam in PENALTY_STRENGTHS:
            steps += [Run("table2", _fair_config(label, lam), m,
                          _fair_context_name(label, lam)) for m in t2]
    # rank sweep (c): multiclass new task with a probe head
    steps += _sweep("rank_sweep_c", CONFIG_C, MLP_HEAD, settings.ranks_c,
                    context="education", head_init="probe")
    return steps


def _age_shift_prepare(settings, seed, artifacts):
    tasks = make_adult_tasks(seed, n_rows=settings.n_rows)
    task, edu = tasks["income"], tasks["education"]
    n_in = task.pre.X.shape[1]

    def mlp(task, s=None, penalty=None, strength=0.0):
        def build():
            model = pretrain(settings, build_mlp(task.pre.X.shape[1], seed=seed),
                             task.pre.X, task.pre.y, s, seed=seed,
                             penalty=penalty, strength=strength)
            return _context(settings, task, model, seed, tuned=False)
        return build

    builders = {"main": mlp(task), "education": mlp(edu)}
    for label, pen in PENALTIES.items():
        for lam in PENALTY_STRENGTHS:
            builders[_fair_context_name(label, lam)] = mlp(
                task, task.pre.s, penalty=pen, strength=lam)
    contexts = Contexts(builders)

    def finish():
        if seed == 0:
            ctx = contexts["main"]
            _mlp_artifacts(artifacts, ctx, ctx.fitted.get(
                f"OURS r={settings.alpha_rank}"))
        artifacts.setdefault("descriptions", {}).update(
            {"adult-income": task.description, "adult-education": edu.description,
             "sizes": task.sizes(), "architecture": ARCHITECTURE,
             "n_features": n_in})

    return contexts, finish


# ---------------------------------------------------------------- german
def _german_steps(settings):
    main = select_methods(main_methods(rank=settings.main_rank), settings.methods)
    return ([Run("main", CONFIG_A, m) for m in main]
            + _sweep("rank_sweep_b", CONFIG_B, MLP_HEAD, settings.ranks_b))


def _german_prepare(settings, seed, artifacts):
    task = make_german_task(seed, n_rows=settings.n_rows)
    n_in = task.pre.X.shape[1]

    def build():
        model = pretrain(settings, build_mlp(n_in, seed=seed), task.pre.X,
                         task.pre.y, seed=seed)
        return _context(settings, task, model, seed, tuned=False)

    contexts = Contexts({"main": build})

    def finish():
        if seed == 0:
            ctx = contexts["main"]
            _mlp_artifacts(artifacts, ctx, ctx.fitted.get(
                f"OURS r={settings.alpha_rank}"))
        artifacts.setdefault("descriptions", {}).update(
            {"german": task.description, "sizes": task.sizes(),
             "architecture": ARCHITECTURE, "n_features": n_in})

    return contexts, finish


# ---------------------------------------------------------------- images
def _images_steps(settings):
    cfg, head, rank = IMAGES_CONFIG, RESNET_HEAD, settings.main_rank
    methods = [pretrained(), tuner_method("TL", head=head, rank=None)]
    methods += [tuner_method(label, head=head, rank=rank, importance=imp)
                for label, imp in IMPORTANCES.items()]
    methods += [tuner_method(f"Retrain+{label} head λ=0.5",
                             family="in-processing", head=head, rank=None,
                             fairness_penalty=pen, penalty_strength=0.5)
                for label, pen in PENALTIES.items()]
    methods += [expgrad(c, head) for c in PENALTIES]
    methods += [threshold("OURS", c) for c in PENALTIES]
    steps = [Run("main", cfg, m) for m in methods]
    steps += [Run("rank_sweep_b", cfg, tuner_method(
        f"{label} r={r}", head=head, rank=r, importance=imp),
        columns={"rank": r, "importance": label})
        for r in settings.ranks_b for label, imp in IMPORTANCES.items()]
    return steps


def _pretrained_resnet(settings, artifacts):
    """Pre-train the ResNet once per run (the same for every seed)."""
    if "_resnet" not in artifacts:
        task = make_shapes_task(0, sizes=settings.n_images)
        start = time.perf_counter()
        artifacts["_resnet"] = pretrain(settings, build_resnet(seed=0),
                                        to_float(task.pre.X), task.pre.y,
                                        seed=0)
        artifacts["pretrain_seconds"] = time.perf_counter() - start
    return artifacts["_resnet"]


def _images_prepare(settings, seed, artifacts):
    sizes = settings.n_images
    raw = make_shapes_task(seed, sizes=sizes)

    def build():
        resnet = _pretrained_resnet(settings, artifacts)
        trunk = resnet.get_submodule("0")
        start = time.perf_counter()
        parts = {p: Split(trunk_features(trunk, getattr(raw, p).X),
                          getattr(raw, p).y, getattr(raw, p).s)
                 for p in ("train", "val", "test")}
        extract = time.perf_counter() - start
        task = Task(raw.name, Split(np.zeros((0, 1), np.float32), raw.pre.y[:0],
                                    raw.pre.s[:0]),
                    parts["train"], parts["val"], parts["test"],
                    classes=raw.classes, pre_classes=raw.pre_classes,
                    pos_label=1, description=raw.description)
        # the frozen trunk's output is the input of this model: same head
        model = nn.Sequential(OrderedDict(
            [("0", nn.Identity()),
             ("1", copy.deepcopy(resnet.get_submodule("1")))])).eval()
        return _context(settings, task, model, seed, tuned=True,
                        extract_seconds=extract)

    contexts = Contexts({"main": build})

    def finish():
        ctx = contexts["main"]
        if seed == 0:
            artifacts["importance"] = ctx.fitted.get("OURS")
            artifacts["pca"] = {"input of the head (32-d ResNet features)":
                                ctx.task.test.X, "groups": ctx.task.test.s}
        artifacts.setdefault("descriptions", {}).update(
            {"images": raw.description,
             "sizes": {"pre": sizes[0], "train": sizes[1], "val": sizes[2],
                       "test": sizes[3]},
             "architecture": resnet_description(),
             "pretrain_seconds": round(artifacts.get("pretrain_seconds", 0.0),
                                       1)})

    return contexts, finish


SCENARIOS = {
    "adult": Scenario(_adult_steps, _adult_prepare, tuned=True),
    "adult-age-shift": Scenario(_age_shift_steps, _age_shift_prepare),
    "german": Scenario(_german_steps, _german_prepare),
    "images": Scenario(_images_steps, _images_prepare, tuned=True),
}
