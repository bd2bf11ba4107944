"""Adapters on the paper's Adult MLP: LoRA, PiSSA, FWSVD and OURS inits (issue 19).

``--task age-shift`` runs the same comparison on the age-shift task
(pre-training on the youngest 60 %, new task on the oldest 40 %) with the
one-hot 64-10-2 backbone (``build_mlp``), adapting its 64 -> 10 layer
``"1.0"`` (use ``--ranks 1 2 4 8``) and training the head ``"1.2"``.

The paper's 13-20-20-2 ReLU MLP (``build_paper_mlp``), pre-trained per seed on
the pre-training part of the paper's Adult split exactly as ``winfair-bench
adult`` does (10 epochs, Adam lr 1e-2, batch 256). On the new task's train
part its 20 -> 20 layer (``"0.2"``) gets a low-rank adapter
(:func:`sklearn_winfair._adapters.inject_adapters`) at ranks 1-4 with each
init, and the head ``Linear(20, 2)`` (``"1"``) trains too:

* ``lora``: peft's default LoRA (A Kaiming-uniform, B = 0, W unchanged);
* ``uniform``: PiSSA (plain SVD split, residual frozen);
* ``fisher``: FWSVD-initialized adapter (pooled empirical Fisher of the
  layer, from per-sample gradients of the whole model's loss);
* ``neutral``: OURS (group-neutralized Fisher, alpha = 0.5 over sex).

``--penalty equalized_odds --strength 0.5`` adds the differentiable EO (or
DP) penalty to every method's loss (``train_torch``).

References per seed: ``TL`` (head only, the trunk frozen) and ``FT`` (every
parameter trains). Every method: same pre-trained model, same shuffling seed,
plain Adam (``train_torch``), fixed epochs and learning rate (no tuning, the
same for all). Metrics on the test part: Err, Delta_DP, Delta_EO
(``paper_metrics``). Paired differences OURS - PiSSA and OURS - LoRA are taken
per seed, then their mean and standard deviation over seeds.

Run from the repository root, e.g.::

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/measure_adult_mlp.py --seeds 10 --epochs 20

Writes ``runs.csv`` and ``summary.md`` into ``--out``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_winfair._adapters import inject_adapters, inner_group_fisher
from sklearn_winfair._importance import floor_importance, neutral_importance
from sklearn_winfair.metrics import paper_metrics
from sklearn_winfair.reproduction._data import make_adult_paper_task, make_adult_tasks
from sklearn_winfair.reproduction._pretrain import (
    build_mlp,
    build_paper_mlp,
    n_params,
    predict_torch,
    train_torch,
)

#: task -> (adapted layer, head, description); LAYER / HEAD set in main().
SETTINGS = {
    "paper": ("0.2", "1", "paper split, MLP 13-20-20-2, adapter on '0.2' (20->20)"),
    "age-shift": ("1.0", "1.2", "age shift, one-hot MLP d-64-10-2, adapter on "
                  "'1.0' (64->10)"),
}
LAYER, HEAD = SETTINGS["paper"][:2]
INITS = {"lora": "LoRA", "uniform": "PiSSA", "fisher": "FWSVD", "neutral": "OURS"}


def importances(model, X, y, s):
    """Neutral and pooled-Fisher ihat of LAYER on the train rows."""
    groups, codes = np.unique(s, return_inverse=True)
    X_t = torch.as_tensor(X)
    y_t, c_t = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(codes)
    batches = [(X_t[i : i + 1024], y_t[i : i + 1024], c_t[i : i + 1024])
               for i in range(0, len(y), 1024)]
    rows = inner_group_fisher(model, [LAYER], batches, len(groups))[LAYER]
    counts = np.bincount(codes, minlength=len(groups)).astype(float)
    pooled = (counts / counts.sum()) @ rows
    return {"neutral": {LAYER: neutral_importance(rows, [0.5, 0.5])},
            "fisher": {LAYER: floor_importance(np.sqrt(pooled))}}


def evaluate(model, split):
    m = paper_metrics(split.y, predict_torch(model, split.X),
                      sensitive_features=split.s)
    return {"err": m["err"], "dp": m["dp_gap"], "eo": m["eo_gap"]}


def run_seed(seed, args):
    if args.task == "paper":
        task = make_adult_paper_task(seed)
        model = build_paper_mlp(13, seed=seed)
    else:
        task = make_adult_tasks(seed)["income"]
        model = build_mlp(task.pre.X.shape[1], seed=seed)
    pre = train_torch(model, task.pre.X, task.pre.y, task.pre.s, epochs=10,
                      lr=1e-2, batch_size=256, seed=seed)
    tr = task.train
    fit = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
               seed=seed, penalty=args.penalty, strength=args.strength)
    rows = []

    def record(method, rank, model, seconds, n_train, trunc=np.nan):
        rows.append(dict(seed=seed, method=method, rank=rank, seconds=seconds,
                         n_trainable=n_train, truncation_error=trunc,
                         **evaluate(model, task.test),
                         val_err=evaluate(model, task.val)["err"]))

    t0 = time.perf_counter()
    tl = train_torch(pre, tr.X, tr.y, tr.s,
                     trainable=lambda m: m.get_submodule(HEAD).parameters(), **fit)
    record("TL", 0, tl, time.perf_counter() - t0, n_params(pre.get_submodule(HEAD)))
    t0 = time.perf_counter()
    ft = train_torch(pre, tr.X, tr.y, tr.s, **fit)
    record("FT", 0, ft, time.perf_counter() - t0, n_params(pre))
    record("pre-trained", 0, pre, 0.0, 0)

    t0 = time.perf_counter()
    ihats = importances(pre, tr.X, tr.y, tr.s)
    fisher_seconds = time.perf_counter() - t0
    for rank in args.ranks:
        for init, name in INITS.items():
            t0 = time.perf_counter()
            adapted, info = inject_adapters(pre, [LAYER], rank, ihats.get(init),
                                            init, random_state=seed)

            def trainable(m):
                adapter = m.get_submodule(LAYER)
                return [adapter.A, adapter.B, *m.get_submodule(HEAD).parameters()]

            trained = train_torch(adapted, tr.X, tr.y, tr.s, trainable=trainable,
                                  **fit)
            seconds = time.perf_counter() - t0
            if init in ihats:
                seconds += fisher_seconds
            n_train = info["n_trainable"] + n_params(pre.get_submodule(HEAD))
            record(name, rank, trained, seconds, n_train,
                   info["truncation_error"][LAYER])
    return rows


def _fmt(values):
    return f"{np.mean(values):+.4f} ± {np.std(values, ddof=1):.4f}" \
        if len(values) > 1 else f"{values[0]:+.4f}"


def summarize(df):
    lines = ["| method | rank | Err | ΔDP | ΔEO | trainable | s/fit | trunc. err |",
             "|---|---|---|---|---|---|---|---|"]
    order = ["pre-trained", "TL", "FT", *INITS.values()]
    g = df.groupby(["method", "rank"], sort=False)
    for (method, rank), part in sorted(g, key=lambda kv: (kv[0][1],
                                                          order.index(kv[0][0]))):
        cells = [f"{part[c].mean():.4f} ± {part[c].std(ddof=1):.4f}"
                 for c in ("err", "dp", "eo")]
        lines.append(f"| {method} | {rank or '-'} | " + " | ".join(cells)
                     + f" | {int(part.n_trainable.iloc[0])} | "
                     f"{part.seconds.mean():.2f} | "
                     f"{part.truncation_error.mean():.3f} |")
    lines += ["", "Paired differences over seeds (mean ± std of the per-seed "
              "difference):", "",
              "| contrast | rank | ΔErr | ΔΔDP | ΔΔEO |", "|---|---|---|---|---|"]
    wide = df.pivot_table(index=["seed", "rank"], columns="method",
                          values=["err", "dp", "eo"])
    for ref in ("PiSSA", "LoRA", "FWSVD"):
        for rank in sorted(df["rank"].unique()):
            if rank == 0:
                continue
            part = wide.xs(rank, level="rank")
            cells = [_fmt((part[(c, "OURS")] - part[(c, ref)]).to_numpy())
                     for c in ("err", "dp", "eo")]
            lines.append(f"| OURS - {ref} | {rank} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(SETTINGS), default="paper")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--penalty", default=None,
                        choices=["demographic_parity", "equalized_odds"],
                        help="fairness penalty added to every method's loss")
    parser.add_argument("--strength", type=float, default=0.0)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "adult_mlp")
    args = parser.parse_args()
    global LAYER, HEAD
    LAYER, HEAD, description = SETTINGS[args.task]
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for seed in range(args.seeds):
        rows += run_seed(seed, args)
        df = pd.DataFrame(rows)
        df.to_csv(args.out / "runs.csv", index=False)
        print(f"seed {seed} done, {time.perf_counter() - start:.0f} s", flush=True)
    header = (f"Adult, {description} + head '{HEAD}'; "
              f"{args.seeds} seeds, {args.epochs} epochs, Adam lr {args.lr}, "
              f"batch {args.batch_size}; penalty {args.penalty} x {args.strength}; "
              "test part; total "
              f"{time.perf_counter() - start:.0f} s on 1 CPU thread.\n\n")
    text = header + summarize(df)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
