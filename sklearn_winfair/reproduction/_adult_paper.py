"""The paper's Adult setting: its MLP, its splits, its Tables 2-4 and Figs. 4-5.

One seed of ``winfair-bench adult`` (see :func:`adult_paper_seed`):

* task: :func:`~sklearn_winfair.reproduction._data.make_adult_paper_task`
  (random stratified 60/40, 13 raw standardized columns);
* backbone: the paper's 13-20-20-2 ReLU MLP (742 parameters), pre-trained
  on the pre-training part; its head ``Linear(20, 2)`` is factorized at
  rank 2, which is full rank there (46 trainable parameters, exact at
  initialization);
* every fine-tuning method is tuned on the validation part over the same
  :class:`~sklearn_winfair.reproduction._tuning.Grid`.

Experiments (the ``experiment`` column of ``runs.csv``): ``main`` (Table 3,
Fig. 4 and the Pareto plot), ``table2`` (fair pre-trained models before and
after fine-tuning), ``table4`` (deeper MLPs), ``alpha`` (Fig. 5) and
``ours_b`` (OURS, not the paper: the one-hot 64-10-2 backbone with its
2-layer head 64->10->2 at rank 2, where the factorization truncates).
"""

import time

import numpy as np

from ._data import make_adult_paper_task
from ._methods import Context, FitResult, _quiet_peers
from ._pretrain import (
    MLP_HEAD,
    PAPER_HEAD,
    build_mlp,
    build_paper_mlp,
    head_inputs,
    n_params,
    predict_torch,
    train_torch,
)
from ._tuning import tune_adversarial, tune_torch, tune_tuner

__all__ = ["PAPER_CONFIG", "OURS_B_CONFIG", "PAPER_ARCHITECTURE",
           "TABLE4_DEPTHS", "PAPER_ALPHAS", "adult_paper_seed"]

PAPER_CONFIG = "paper: MLP 13-20-20-2, head 20->2 at rank 2"
OURS_B_CONFIG = "ours: one-hot MLP d-64-10-2, 2-layer head 64->10->2 at rank 2"
PAPER_ARCHITECTURE = (
    "the paper's configuration: ReLU MLP 13-20-20-2 on the 13 raw columns "
    "(742 parameters); head = its last Linear(20, 2), factorized at rank 2 "
    "(full rank: 20*2 + 2*2 + 2 = 46 trainable parameters)"
)
#: Table 4: MLP-k read as k hidden layers of 20 units (the main model has 2).
TABLE4_DEPTHS = {"MLP-3": 3, "MLP-4": 4, "MLP-5": 5}
PAPER_ALPHAS = (0.6, 0.7, 0.8, 0.9)
RANK = 2
STRENGTHS = (0.1, 0.5, 0.9)
_PEN = {"EO": "equalized_odds", "DP": "demographic_parity"}
_IMPORTANCES = {"f+SVD": "uniform", "FWSVD": "fisher", "OURS": "neutral"}


def _pretrain(settings, task, model, seed, penalty=None, strength=0.0):
    return train_torch(model, task.pre.X, task.pre.y, task.pre.s,
                       epochs=settings.pretrain_epochs, lr=settings.pretrain_lr,
                       batch_size=settings.batch_size, penalty=penalty,
                       strength=strength, seed=seed)


def _result(choice, n):
    return FitResult(choice.y_pred, n, choice.seconds, choice.estimator)


def _choice_cols(choice):
    return {"lr": choice.lr, "epochs": choice.epochs,
            "val_err": choice.val_err}


def _run_tuner(rec, experiment, config, ctx, name, family, grid, **params):
    choice = tune_tuner(ctx, grid, **params)
    res = _result(choice, choice.estimator.n_trainable_params_)
    ctx.fitted[name] = choice.estimator
    rec.add(experiment, config, name, ctx.seed, ctx.task, res, family=family,
            **_choice_cols(choice))
    _tick(rec, f"{experiment}: {name}")
    return choice


def _tick(rec, label):
    if rec.bar is not None:
        rec.bar.set_postfix_str(label[:60])
        rec.bar.update(1)


def _pretrained_row(rec, experiment, config, ctx, **extra):
    y_pred = predict_torch(ctx.backbone, ctx.task.test.X)
    rec.add(experiment, config, "Pretrained (no FT)", ctx.seed, ctx.task,
            FitResult(y_pred, 0, 0.0), family="reference", **extra)
    _tick(rec, f"{experiment}: pretrained")


def _peers(rec, ctx, grid):
    from fairlearn.adversarial import AdversarialFairnessClassifier
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import (
        DemographicParity,
        EqualizedOdds,
        ExponentiatedGradient,
    )
    from sklearn.linear_model import LogisticRegression

    task, seed = ctx.task, ctx.seed
    F = {p: head_inputs(ctx.backbone, PAPER_HEAD, getattr(task, p).X)
         for p in ("train", "val", "test")}
    for label, constraint in (("DP", DemographicParity), ("EO", EqualizedOdds)):
        est = ExponentiatedGradient(LogisticRegression(max_iter=1000),
                                    constraints=constraint(),
                                    max_iter=ctx.expgrad_max_iter)
        start = time.perf_counter()
        with _quiet_peers():
            est.fit(F["train"], task.train.y, sensitive_features=task.train.s)
            y_pred = np.asarray(est.predict(F["test"], random_state=seed))
        n_models = int(np.sum(np.asarray(est.weights_) > 0))
        rec.add("main", PAPER_CONFIG, f"ExpGrad {label}", seed, task,
                FitResult(y_pred.astype(int), n_models * (F["train"].shape[1] + 1),
                          time.perf_counter() - start),
                family="in-processing")
        _tick(rec, f"ExpGrad {label}")
    for base in ("TL", "OURS"):
        for label, constraint in (("DP", "demographic_parity"),
                                  ("EO", "equalized_odds")):
            est = ThresholdOptimizer(estimator=ctx.fitted[base],
                                     constraints=constraint, prefit=True,
                                     predict_method="predict_proba")
            start = time.perf_counter()
            with _quiet_peers():
                est.fit(task.train.X, task.train.y,
                        sensitive_features=task.train.s)
                y_pred = est.predict(task.test.X, sensitive_features=task.test.s,
                                     random_state=seed)
            rec.add("main", PAPER_CONFIG, f"ThrOpt {label} ({base})", seed, task,
                    FitResult(np.asarray(y_pred).astype(int),
                              ctx.fitted[base].n_trainable_params_,
                              time.perf_counter() - start),
                    family="post-processing")
            _tick(rec, f"ThrOpt {label} ({base})")
    hidden = 16

    def make(lr):
        return AdversarialFairnessClassifier(
            backend="torch", predictor_model=[hidden, "leaky_relu"],
            adversary_model=[], constraints="demographic_parity",
            learning_rate=lr, alpha=1.0, batch_size=ctx.batch_size,
            shuffle=True, warm_start=True, random_state=seed)

    with _quiet_peers():
        choice = tune_adversarial(ctx, grid, F["train"], F["val"], F["test"],
                                  make)
    d = F["train"].shape[1]
    rec.add("main", PAPER_CONFIG, "AdvFair DP", seed, task,
            _result(choice, (d + 1) * hidden + hidden + 1),
            family="in-processing", **_choice_cols(choice))
    _tick(rec, "AdvFair DP")


def count_units(settings):
    """Return the number of progress-bar steps per seed."""
    n = 1 + 4 + 6 + 2 + 4 + 1  # main
    n += 2 if settings.ours_b else 0
    n += 6 * 2  # table 2
    n += 2 * len(TABLE4_DEPTHS)
    n += len(PAPER_ALPHAS)
    n += 4 if settings.ours_b else 0
    return n


def adult_paper_seed(settings, seed, rec, artifacts):
    """Run every experiment of the paper's Adult setting for one seed."""
    task, onehot = make_adult_paper_task(seed, n_rows=settings.n_rows,
                                         with_onehot=True)
    grid = settings.grid
    n_in = task.pre.X.shape[1]
    kw = dict(batch_size=settings.batch_size,
              expgrad_max_iter=settings.expgrad_max_iter)
    backbone = _pretrain(settings, task, build_paper_mlp(n_in, seed=seed), seed)
    ctx = Context(task, backbone, seed, **kw)
    cfg = PAPER_CONFIG

    # ---- main comparison (Table 3, Fig. 4, Pareto)
    _pretrained_row(rec, "main", cfg, ctx)
    _run_tuner(rec, "main", cfg, ctx, "TL", "fine-tuning", grid,
               head=PAPER_HEAD, rank=None)
    for label, imp in _IMPORTANCES.items():
        _run_tuner(rec, "main", cfg, ctx, label, "fine-tuning", grid,
                   head=PAPER_HEAD, rank=RANK, importance=imp)
    for pen_label in ("EO", "DP"):
        for lam in STRENGTHS:
            choice = tune_torch(ctx, grid, penalty=_PEN[pen_label],
                                strength=lam)
            rec.add("main", cfg, f"Retrain+{pen_label} λ={lam}", seed, task,
                    _result(choice, n_params(backbone)),
                    family="in-processing", intensity=lam,
                    **_choice_cols(choice))
            _tick(rec, f"Retrain+{pen_label} λ={lam}")
    for pen_label in ("DP", "EO") if settings.ours_b else ():
        _run_tuner(rec, "main", cfg, ctx, f"OURS+{pen_label} λ=0.5",
                   "in-processing", grid, head=PAPER_HEAD, rank=RANK,
                   importance="neutral", fairness_penalty=_PEN[pen_label],
                   penalty_strength=0.5)
    _peers(rec, ctx, grid)

    # ---- Table 2: fair pre-trained models before / after fine-tuning (TL)
    for pen_label in ("EO", "DP"):
        for lam in STRENGTHS:
            fair = _pretrain(settings, task, build_paper_mlp(n_in, seed=seed),
                             seed, penalty=_PEN[pen_label], strength=lam)
            ctx_f = Context(task, fair, seed, **kw)
            name = f"fair pre-trained {pen_label} λ={lam}"
            _pretrained_row(rec, "table2", name, ctx_f, constraint=pen_label,
                            intensity=lam)
            _run_tuner(rec, "table2", name, ctx_f, "TL", "fine-tuning", grid,
                       head=PAPER_HEAD, rank=None)
            rec.rows[-1].update(constraint=pen_label, intensity=lam)

    # ---- Table 4: deeper MLPs, OURS
    for model_name, depth in TABLE4_DEPTHS.items():
        bb = _pretrain(settings, task,
                       build_paper_mlp(n_in, hidden_layers=depth, seed=seed), seed)
        ctx_d = Context(task, bb, seed, **kw)
        _pretrained_row(rec, "table4", model_name, ctx_d)
        _run_tuner(rec, "table4", model_name, ctx_d, "OURS", "fine-tuning", grid,
                   head=PAPER_HEAD, rank=RANK, importance="neutral")

    # ---- Fig. 5: alpha ablation (alpha = 0.5 is OURS of the main comparison)
    ours = next(r for r in reversed(rec.rows)
                if r["experiment"] == "main" and r["method"] == "OURS"
                and r["seed"] == seed)
    rec.rows.append(dict(ours, experiment="alpha", method="OURS alpha=0.5",
                         alpha=0.5))
    for a in PAPER_ALPHAS:
        _run_tuner(rec, "alpha", cfg, ctx, f"OURS alpha={a}", "fine-tuning",
                   grid, head=PAPER_HEAD, rank=RANK, importance="neutral",
                   alpha=a)
        rec.rows[-1]["alpha"] = a

    # ---- ours: the one-hot 64-10-2 backbone, 2-layer head (truncation bites)
    if settings.ours_b:
        bb = _pretrain(settings, onehot, build_mlp(onehot.pre.X.shape[1],
                                                   seed=seed), seed)
        ctx_b = Context(onehot, bb, seed, **kw)
        _run_tuner(rec, "ours_b", OURS_B_CONFIG, ctx_b, "TL", "fine-tuning",
                   grid, head=MLP_HEAD, rank=None)
        for label, imp in _IMPORTANCES.items():
            _run_tuner(rec, "ours_b", OURS_B_CONFIG, ctx_b, label,
                       "fine-tuning", grid, head=MLP_HEAD, rank=RANK,
                       importance=imp)
        if seed == 0:
            artifacts["importance_b"] = ctx_b.fitted.get("OURS")

    if seed == 0:
        artifacts["importance"] = ctx.fitted.get("OURS")
        artifacts["pca"] = {
            "input of the head 20->2 (20-d)": head_inputs(
                backbone, PAPER_HEAD, task.test.X),
            "groups": task.test.s,
        }
    artifacts.setdefault("descriptions", {}).update(
        {"adult-paper": task.description, "sizes": task.sizes(),
         "architecture": PAPER_ARCHITECTURE, "n_features": n_in,
         "onehot_features": onehot.pre.X.shape[1]})
