"""Adapters inside the backbone against head-only and whole-model fine-tuning.

``winfair-bench adapters`` (issue 19): low-rank adapters on layers inside a
frozen pre-trained backbone, with the paper's group-neutralized importance
(OURS) beside plain LoRA, PiSSA (uniform importance) and FWSVD (pooled
Fisher), head-only TL and whole-model FT, each also with a fairness penalty.
Four settings (:data:`SETTINGS`), where the frozen features were learned
for something else:

``images``
    The constructed shapes task (:mod:`._shapes`): the small ResNet
    (:mod:`._resnet`) pre-trained once (seed 0; 5 epochs, Adam lr 3e-3,
    batch 128) on images whose tint shortcut the new task reverses; each seed
    draws new new-task images. Adapters on the last block's two convolutions
    ``0.5.conv1``, ``0.5.conv2`` (their matrix view) and the layer before the
    head ``1.0``; head ``1.2``.
``text``
    The constructed token task with a tiny BERT pre-trained here
    (:mod:`._tokens`); adapters on the last block's attention (query, key,
    value, output dense) and feed-forward dense layers; head ``classifier``.
``age-shift``
    Adult, pre-training on the youngest 60 %, new task on the oldest 40 %,
    the one-hot 64-10-2 MLP pre-trained per seed (10 epochs, Adam lr 1e-2,
    batch 256); adapter on its 64 -> 10 layer ``1.0``, head ``1.2``.
``paper-mlp``
    Adult, the paper's split and 13-20-20-2 MLP pre-trained per seed as
    ``winfair-bench adult`` does; adapter on its 20 -> 20 layer ``0.2``,
    head ``1``.

Protocol (fixed before any run, the same for every method of a setting, not
tuned): Adam, lr 1e-3, a fixed number of epochs (5 for the backbones, 20 for
Adult) with no stopping rule, batch 128 (backbones) or 256 (Adult), the
backbone in eval mode. The backbone settings fit through
:class:`~sklearn_winfair.FairLowRankFineTuner` (``target_modules=...``,
``adapter_init="lora"`` / ``"svd"``) and FT through a plain torch loop; the
Adult settings through :func:`~sklearn_winfair._adapters.inject_adapters`
and :func:`._pretrain.train_torch` (the hand loop the estimator equals on
these seeds for the SVD inits). The random draws are those of the scripts
that first measured it (``benchmarks/adapters/measure_backbones.py`` and
``measure_adult_mlp.py`` of commit 0560425), so a seed gives their numbers.
"""

import copy
import fnmatch
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import (
    FairLowRankFineTuner,
    demographic_parity_penalty,
    equalized_odds_penalty,
)
from .._adapters import inject_adapters, inner_group_fisher
from .._importance import floor_importance, neutral_importance
from ..metrics import paper_metrics

__all__ = ["SETTINGS", "STUDY_METHODS", "ADAPTERS", "SUFFIX", "StudySetting",
           "study_settings", "run_adapter_study", "finetune_whole"]

#: adapter method -> (importance, adapter_init)
ADAPTERS = {"LoRA": ("uniform", "lora"), "PiSSA": ("uniform", "svd"),
            "FWSVD": ("fisher", "svd"), "OURS": ("neutral", "svd")}
#: Every method of the study, in the order of the tables.
STUDY_METHODS = ("pre-trained", "TL", "FT", *ADAPTERS)
#: Method-name suffix of each penalty.
SUFFIX = {"none": "", "equalized_odds": "+EO", "demographic_parity": "+DP"}
#: ``--penalty`` choices -> penalties run beside the plain fits.
PENALTY_CHOICES = {"none": (), "equalized_odds": ("equalized_odds",),
                   "demographic_parity": ("demographic_parity",),
                   "both": ("equalized_odds", "demographic_parity")}


@dataclass(frozen=True)
class StudySetting:
    """One setting of the study and its protocol.

    Attributes
    ----------
    name : str
        ``"images"``, ``"text"``, ``"age-shift"`` or ``"paper-mlp"``.
    title : str
        One line naming the task, backbone and adapted layers.
    epochs, batch_size : int
        Fine-tuning epochs and batch size of every method.
    ranks : tuple of int
        Adapter ranks.
    lr : float, default=1e-3
        Adam learning rate of every method.
    sizes : tuple of int
        Backbones: (pre-training, train, test) rows; empty for Adult.
    n_rows : int or None
        Adult: subsample the data set (smoke tests); None keeps every row.
    pretrain_epochs : int
        Epochs of the backbone's pre-training.
    short : str
        A few words naming the setting (figure panels).
    """

    name: str
    title: str
    epochs: int
    batch_size: int
    ranks: tuple
    lr: float = 1e-3
    sizes: tuple = ()
    n_rows: int | None = None
    pretrain_epochs: int = field(default=5)
    short: str = ""

    @property
    def is_backbone(self):
        """Whether the setting fits through the estimator (images, text)."""
        return self.name in ("images", "text")


SETTINGS = {
    "images": StudySetting(
        "images", "Constructed image task, small ResNet, adapters on the last "
        "block's two convolutions and the 32 -> 32 layer before the head",
        epochs=5, batch_size=128, ranks=(4,), sizes=(10_000, 3_000, 2_000),
        short="image task, ResNet"),
    "text": StudySetting(
        "text", "Constructed token task, tiny BERT (2 layers, hidden 32), "
        "adapters on the last block's attention and feed-forward layers",
        epochs=5, batch_size=128, ranks=(4,), sizes=(20_000, 3_000, 4_000),
        short="token task, tiny BERT"),
    "age-shift": StudySetting(
        "age-shift", "Adult age shift, one-hot MLP d-64-10-2, adapter on the "
        "64 -> 10 layer", epochs=20, batch_size=256, ranks=(1, 2, 4, 8),
        pretrain_epochs=10, short="Adult age shift, 64-10-2 MLP"),
    "paper-mlp": StudySetting(
        "paper-mlp", "Adult, the paper's 13-20-20-2 MLP, adapter on the "
        "20 -> 20 layer", epochs=20, batch_size=256, ranks=(1, 2, 3, 4),
        pretrain_epochs=10, short="Adult, paper 13-20-20-2 MLP"),
}
#: Quick mode: smaller data and fewer epochs (3 seeds).
_QUICK = {"images": dict(sizes=(2_000, 1_000, 1_000), epochs=2),
          "text": dict(sizes=(4_000, 1_000, 1_000), epochs=2),
          "age-shift": dict(epochs=5, ranks=(4,)),
          "paper-mlp": dict(epochs=5, ranks=(4,))}


def study_settings(setting="all", *, quick=False, **overrides):
    """Return the :class:`StudySetting` of each setting to run.

    Parameters
    ----------
    setting : str, default="all"
        A key of :data:`SETTINGS`, or ``"all"``.
    quick : bool, default=False
        Smaller data and fewer epochs.
    **overrides
        :class:`StudySetting` fields set in every chosen setting
        (``epochs``, ``batch_size``, ``ranks``, ``sizes``, ``n_rows``,
        ``pretrain_epochs``); None values are ignored.

    Returns
    -------
    list of StudySetting

    Examples
    --------
    >>> [s.name for s in study_settings()]
    ['images', 'text', 'age-shift', 'paper-mlp']
    >>> study_settings("paper-mlp", quick=True, epochs=1)[0].epochs
    1
    """
    names = list(SETTINGS) if setting == "all" else [setting]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise ValueError(f"setting must be one of {[*SETTINGS, 'all']}, got "
                         f"{setting!r}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    out = []
    for name in names:
        s = SETTINGS[name]
        if quick:
            s = replace(s, **_QUICK[name])
        keep = {k: v for k, v in overrides.items()
                if not (k == "sizes" and not s.is_backbone)
                and not (k == "n_rows" and s.is_backbone)}
        out.append(replace(s, **keep))
    return out


# ---------------------------------------------------------------- helpers
def _to_tensor(X):
    if isinstance(X, dict):
        return {k: torch.as_tensor(v) for k, v in X.items()}
    return torch.as_tensor(X)


def _index(X, idx):
    return {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]


def _logits(model, X):
    out = model(**X) if isinstance(X, dict) else model(X)
    return getattr(out, "logits", out)


def _codes(s):
    return torch.as_tensor(np.unique(s, return_inverse=True)[1])


def finetune_whole(model, X, y, s, *, lr, batch_size, epochs, penalty,
                   strength, seed):
    """Fine-tune every parameter of a copy of ``model`` with Adam (FT).

    The model stays in eval mode (batch-norm statistics frozen, no dropout),
    as for the other methods.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch (a tensor, or a dict of tensors passed as keywords) to
        logits or to an output with ``.logits``; not modified.
    X : ndarray or dict of str to ndarray
    y : ndarray of shape (n,)
    s : ndarray of shape (n,)
        Sensitive groups (two).
    lr : float
    batch_size, epochs : int
    penalty : {None, "demographic_parity", "equalized_odds"}
    strength : float
        Weight of the penalty.
    seed : int
        Seed of the shuffling (a private ``torch.Generator``).

    Returns
    -------
    model : torch.nn.Module
        The trained copy, frozen.
    """
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    X_t, y_t, g_t = _to_tensor(X), torch.as_tensor(y), _codes(s)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y_t), generator=gen)
        for i in range(0, len(y_t), batch_size):
            idx = order[i : i + batch_size]
            logits = _logits(model, _index(X_t, idx))
            loss = torch.nn.functional.cross_entropy(logits, y_t[idx])
            if penalty is not None:
                proba = logits.softmax(1)[:, 1]
                if penalty == "demographic_parity":
                    pen = demographic_parity_penalty(
                        proba, g_t[idx], num_groups=2, validate_args=False)
                else:
                    pen = equalized_odds_penalty(
                        proba, y_t[idx], g_t[idx], num_groups=2,
                        validate_args=False)
                loss = loss + strength * pen
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.requires_grad_(False)


@torch.no_grad()
def _predict(model, X, batch_size=1000):
    X_t = _to_tensor(X)
    n = len(next(iter(X_t.values())) if isinstance(X_t, dict) else X_t)
    return torch.cat([_logits(model, _index(X_t, slice(i, i + batch_size)))
                      .argmax(1) for i in range(0, n, batch_size)]).numpy()


def _metrics(y, pred, s):
    m = paper_metrics(y, pred, sensitive_features=s)
    return {"err": m["err"], "dp_gap": m["dp_gap"], "eo_gap": m["eo_gap"]}


# ------------------------------------------------------------- backbones
_IMAGE_TARGETS = r"0\.5\.conv[12]|1\.0"
_TEXT_TARGETS = (r"bert\.encoder\.layer\.1\.(attention\.self\.(query|key|value)"
                 r"|attention\.output\.dense|intermediate\.dense|output\.dense)")


def _images_data(seed, setting, cache):
    from ._pretrain import train_torch
    from ._resnet import build_resnet
    from ._shapes import make_shapes_task, to_float

    n_pre, n_train, n_test = setting.sizes
    sizes = (n_pre, n_train, 0, n_test)
    task = make_shapes_task(seed, sizes=sizes)
    key = ("images", n_pre, setting.pretrain_epochs)
    if key not in cache:
        pre = make_shapes_task(0, sizes=sizes).pre
        t0 = time.perf_counter()
        model = train_torch(build_resnet(seed=0), to_float(pre.X), pre.y,
                            epochs=setting.pretrain_epochs, lr=3e-3,
                            batch_size=128, seed=0)
        cache[key] = (model, time.perf_counter() - t0)
    return (cache[key][0], _IMAGE_TARGETS,
            (to_float(task.train.X), task.train.y, task.train.s),
            (to_float(task.test.X), task.test.y, task.test.s))


def _text_data(seed, setting, cache):
    from ._tokens import make_token_task, pretrain_tiny_bert

    n_pre, n_train, n_test = setting.sizes
    key = ("text", n_pre, setting.pretrain_epochs)
    if key not in cache:
        cache[key] = pretrain_tiny_bert(n_pre, epochs=setting.pretrain_epochs)
    train, test = make_token_task(seed, n_train, n_test)
    return cache[key][0], _TEXT_TARGETS, train, test


def _backbone_seed(setting, seed, penalties, strength, methods, cache, emit):
    data = _images_data if setting.name == "images" else _text_data
    model, targets, (X, y, s), (Xt, yt, st) = data(seed, setting, cache)
    common = dict(solver="adam", lr=setting.lr, batch_size=setting.batch_size,
                  max_epochs=setting.epochs,
                  n_iter_no_change=setting.epochs + 1, random_state=seed)
    rank = setting.ranks[0] if len(setting.ranks) == 1 else None
    if rank is None:
        raise ValueError("the backbone settings take one rank, got "
                         f"{setting.ranks}.")

    def record(method, penalty, pred, seconds, n_trainable, trunc=np.nan):
        emit(dict(setting=setting.name, seed=seed, method=method,
                  penalty=penalty or "none",
                  rank=rank if method in ADAPTERS else 0,
                  **_metrics(yt, pred, st), n_params=int(n_trainable),
                  fit_seconds=seconds, truncation_error=trunc))

    record("pre-trained", None, _predict(model, Xt), 0.0, 0)
    for penalty in (None, *penalties):
        pen = dict(fairness_penalty=penalty, penalty_strength=strength) \
            if penalty else {}
        if "TL" in methods:
            t0 = time.perf_counter()
            clf = FairLowRankFineTuner(model, rank=None, importance="uniform",
                                       **common, **pen).fit(
                                           X, y, sensitive_features=s)
            record("TL", penalty, clf.predict(Xt), time.perf_counter() - t0,
                   clf.n_trainable_params_)
        if "FT" in methods:
            t0 = time.perf_counter()
            ft = finetune_whole(model, X, y, s, lr=setting.lr,
                                batch_size=setting.batch_size,
                                epochs=setting.epochs, penalty=penalty,
                                strength=strength, seed=seed)
            record("FT", penalty, _predict(ft, Xt), time.perf_counter() - t0,
                   sum(p.numel() for p in model.parameters()))
        for method, (importance, init) in ADAPTERS.items():
            if method not in methods:
                continue
            t0 = time.perf_counter()
            clf = FairLowRankFineTuner(
                model, target_modules=targets, rank=rank,
                importance=importance, adapter_init=init, **common, **pen,
            ).fit(X, y, sensitive_features=s)
            trunc = (np.mean(list(clf.truncation_error_.values()))
                     if clf.truncation_error_ else np.nan)
            record(method, penalty, clf.predict(Xt), time.perf_counter() - t0,
                   clf.n_trainable_params_, trunc)


# ----------------------------------------------------------------- Adult
#: Adult setting -> (adapted layer, head)
_ADULT_LAYERS = {"paper-mlp": ("0.2", "1"), "age-shift": ("1.0", "1.2")}


def _adult_importances(model, layer, X, y, s):
    """Neutral and pooled-Fisher ``ihat`` of ``layer`` on the train rows."""
    groups, codes = np.unique(s, return_inverse=True)
    X_t = torch.as_tensor(X)
    y_t, c_t = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(codes)
    batches = [(X_t[i : i + 1024], y_t[i : i + 1024], c_t[i : i + 1024])
               for i in range(0, len(y), 1024)]
    rows = inner_group_fisher(model, [layer], batches, len(groups))[layer]
    counts = np.bincount(codes, minlength=len(groups)).astype(float)
    pooled = (counts / counts.sum()) @ rows
    return {"neutral": {layer: neutral_importance(rows, [0.5, 0.5])},
            "fisher": {layer: floor_importance(np.sqrt(pooled))}}


def _adult_seed(setting, seed, penalties, strength, methods, cache, emit):
    from ._data import make_adult_paper_task, make_adult_tasks
    from ._pretrain import (
        build_mlp,
        build_paper_mlp,
        n_params,
        predict_torch,
        train_torch,
    )

    layer, head = _ADULT_LAYERS[setting.name]
    if setting.name == "paper-mlp":
        task = make_adult_paper_task(seed, n_rows=setting.n_rows)
        model = build_paper_mlp(13, seed=seed)
    else:
        task = make_adult_tasks(seed, n_rows=setting.n_rows)["income"]
        model = build_mlp(task.pre.X.shape[1], seed=seed)
    pre = train_torch(model, task.pre.X, task.pre.y, task.pre.s,
                      epochs=setting.pretrain_epochs, lr=1e-2, batch_size=256,
                      seed=seed)
    tr = task.train

    def record(method, penalty, rank, model, seconds, n_train, trunc=np.nan):
        emit(dict(setting=setting.name, seed=seed, method=method,
                  penalty=penalty or "none", rank=rank,
                  **_metrics(task.test.y, predict_torch(model, task.test.X),
                             task.test.s),
                  n_params=int(n_train), fit_seconds=seconds,
                  truncation_error=trunc,
                  val_err=_metrics(task.val.y, predict_torch(model, task.val.X),
                                   task.val.s)["err"]))

    record("pre-trained", None, 0, pre, 0.0, 0)
    ihats, fisher_seconds = {}, 0.0
    if {"FWSVD", "OURS"} & set(methods):
        t0 = time.perf_counter()
        ihats = _adult_importances(pre, layer, tr.X, tr.y, tr.s)
        fisher_seconds = time.perf_counter() - t0

    def trainable(m):
        adapter = m.get_submodule(layer)
        return [adapter.A, adapter.B, *m.get_submodule(head).parameters()]

    n_head = n_params(pre.get_submodule(head))
    for penalty in (None, *penalties):
        fit = dict(epochs=setting.epochs, lr=setting.lr,
                   batch_size=setting.batch_size, seed=seed, penalty=penalty,
                   strength=strength if penalty else 0.0)
        if "TL" in methods:
            t0 = time.perf_counter()
            tl = train_torch(pre, tr.X, tr.y, tr.s, trainable=lambda m:
                             m.get_submodule(head).parameters(), **fit)
            record("TL", penalty, 0, tl, time.perf_counter() - t0, n_head)
        if "FT" in methods:
            t0 = time.perf_counter()
            ft = train_torch(pre, tr.X, tr.y, tr.s, **fit)
            record("FT", penalty, 0, ft, time.perf_counter() - t0,
                   n_params(pre))
        for rank in setting.ranks:
            for method, (importance, init) in ADAPTERS.items():
                if method not in methods:
                    continue
                key = init if init == "lora" else importance
                t0 = time.perf_counter()
                adapted, info = inject_adapters(pre, [layer], rank,
                                                ihats.get(key), key,
                                                random_state=seed)
                trained = train_torch(adapted, tr.X, tr.y, tr.s,
                                      trainable=trainable, **fit)
                seconds = time.perf_counter() - t0
                if key in ihats:
                    seconds += fisher_seconds
                record(method, penalty, rank, trained, seconds,
                       info["n_trainable"] + n_head,
                       info["truncation_error"][layer])


# ------------------------------------------------------------------ runner
def _select(methods):
    if methods is None:
        return list(STUDY_METHODS[1:])
    patterns = ([p.strip() for p in methods.split(",") if p.strip()]
                if isinstance(methods, str) else list(methods))
    chosen = [m for m in STUDY_METHODS[1:]
              if any(fnmatch.fnmatchcase(m, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no method of {list(STUDY_METHODS[1:])} matches "
                         f"{methods!r}.")
    return chosen


def run_adapter_study(setting="all", *, quick=False, seeds=None, out=None,
                      penalty="both", strength=0.5, methods=None, plots=True,
                      progress=True, verbose=True, **overrides):
    """Run the adapter study and write its results folder.

    Parameters
    ----------
    setting : {"images", "text", "age-shift", "paper-mlp", "all"}, default="all"
    quick : bool, default=False
        3 seeds, smaller data and fewer epochs (see :func:`study_settings`).
    seeds : int or None, default=None
        Number of seeds (0, 1, ...); None: 10, or 3 with ``quick``.
    out : str, pathlib.Path or None, default=None
        Results folder; None is ``winfair-results/adapters``.
    penalty : {"both", "equalized_odds", "demographic_parity", "none"}, \
default="both"
        Penalties run beside the plain fits, each in every method's loss.
    strength : float, default=0.5
        Weight of the penalty.
    methods : str, list of str or None, default=None
        Shell patterns selecting among TL, FT, LoRA, PiSSA, FWSVD and OURS
        (the pre-trained model is always evaluated); None runs them all.
    plots : bool, default=True
        Write ``adapters_err_eo.png``.
    progress : bool, default=True
        Show a tqdm bar over (setting, seed).
    verbose : bool, default=True
        Print the summary's tables at the end.
    **overrides
        :class:`StudySetting` fields for every chosen setting (``epochs``,
        ``batch_size``, ``ranks``, ``sizes``, ``n_rows``,
        ``pretrain_epochs``).

    Returns
    -------
    runs : pandas.DataFrame
        One row per (setting, seed, method, penalty, rank), as in
        ``runs.csv``.
    """
    from tqdm.auto import tqdm

    from ._adapter_report import write_adapter_reports

    if penalty not in PENALTY_CHOICES:
        raise ValueError(f"penalty must be one of {list(PENALTY_CHOICES)}, "
                         f"got {penalty!r}.")
    chosen = study_settings(setting, quick=quick, **overrides)
    if any(s.name == "text" for s in chosen):
        from ._tokens import require_transformers

        require_transformers()
    names = _select(methods)
    seeds = seeds if seeds is not None else (3 if quick else 10)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}.")
    out = Path(out) if out is not None else Path("winfair-results") / "adapters"
    out.mkdir(parents=True, exist_ok=True)
    rows, cache, start = [], {}, time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = tqdm(total=len(chosen) * seeds, desc="winfair-bench adapters",
               unit="seed", disable=not progress)
    try:
        for s in chosen:
            run = _backbone_seed if s.is_backbone else _adult_seed
            for seed in range(seeds):
                bar.set_postfix_str(f"{s.name} seed {seed}")
                run(s, seed, PENALTY_CHOICES[penalty], strength, names, cache,
                    rows.append)
                pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    runs = pd.DataFrame(rows)
    wall = time.perf_counter() - start
    pretrain = {k[0]: v[1] for k, v in cache.items()}
    tables = write_adapter_reports(
        runs, out, settings=chosen, plots=plots,
        lines=[f"- mode: {'quick' if quick else 'full'}; seeds: {seeds}; "
               f"penalty: {penalty} x {strength}; wall time: {wall:.1f} s; "
               f"code: commit {_commit()}"]
        + [f"- pre-training of the {k} backbone (once per run): {v:.1f} s"
           for k, v in pretrain.items()])
    if verbose:
        for name, text in tables.items():
            if name != "summary.md":
                print(f"\n## {name}\n\n{text}")
        print(f"\nWall time: {wall:.1f} s. Results in {out}/")
    return runs


def _commit():
    from ._report import git_commit

    return git_commit()
