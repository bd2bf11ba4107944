"""The paper-MLP adapter comparison run through ``FairLowRankFineTuner``.

Same setting as ``measure_adult_mlp.py --task paper`` (the paper's 13-20-20-2
MLP pre-trained per seed as there; adapter on its 20 -> 20 layer ``"0.2"`` at
ranks 1-4; the head ``"1"`` trained too; Adam lr 1e-3, batch 256, 20 epochs),
but each method is one estimator fit::

    FairLowRankFineTuner(pre, target_modules=[r"0.2"], rank=r,
                         importance=..., adapter_init=..., solver="adam")

and head-only TL is ``rank=None`` (the head trained in full, no adapter).
The training-loss stopping rule is switched off (``n_iter_no_change`` above
``max_epochs``) so every fit runs the same 20 epochs as the hand loop. The
estimator's shuffles come from its own generator, so a seed's numbers are not
the hand loop's; the comparison is of the means over seeds and of the paired
OURS - PiSSA / OURS - LoRA differences, against the hand loop's committed
``results/adult_mlp/runs.csv`` on the same seeds.

Run from the repository root::

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/measure_adult_mlp_estimator.py --seeds 5
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.metrics import paper_metrics
from sklearn_winfair.reproduction._data import make_adult_paper_task
from sklearn_winfair.reproduction._pretrain import build_paper_mlp, train_torch

HERE = Path(__file__).parent
#: method -> (importance, adapter_init)
METHODS = {"LoRA": ("uniform", "lora"), "PiSSA": ("uniform", "svd"),
           "FWSVD": ("fisher", "svd"), "OURS": ("neutral", "svd")}


def run_seed(seed, args):
    task = make_adult_paper_task(seed)
    pre = train_torch(build_paper_mlp(13, seed=seed), task.pre.X, task.pre.y,
                      task.pre.s, epochs=10, lr=1e-2, batch_size=256, seed=seed)
    tr, te = task.train, task.test
    common = dict(solver="adam", lr=args.lr, batch_size=args.batch_size,
                  max_epochs=args.epochs, n_iter_no_change=args.epochs + 1,
                  random_state=seed)
    rows = []

    def run(method, label, **params):
        t0 = time.perf_counter()
        clf = FairLowRankFineTuner(pre, **common, **params)
        clf.fit(tr.X, tr.y, sensitive_features=tr.s)
        seconds = time.perf_counter() - t0
        m = paper_metrics(te.y, clf.predict(te.X), sensitive_features=te.s)
        rows.append(dict(seed=seed, method=method, rank=label, seconds=seconds,
                         n_trainable=clf.n_trainable_params_,
                         truncation_error=clf.truncation_error_.get("0.2", np.nan),
                         err=m["err"], dp=m["dp_gap"], eo=m["eo_gap"]))

    run("TL", 0, rank=None, importance="uniform")
    for rank in args.ranks:
        for method, (importance, init) in METHODS.items():
            run(method, rank, target_modules=[r"0.2"], rank=rank,
                importance=importance, adapter_init=init)
    return rows


def compare(ours, hand):
    """Means over the common seeds, estimator vs hand loop, and paired diffs."""
    seeds = sorted(set(ours.seed))
    hand = hand[hand.seed.isin(seeds) & hand.method.isin(["TL", *METHODS])]
    lines = [f"Seeds {seeds}; mean ± std over seeds; 'hand' is the committed "
             "results/adult_mlp/runs.csv of measure_adult_mlp.py.", "",
             "| method | rank | Err est. | Err hand | ΔDP est. | ΔDP hand "
             "| ΔEO est. | ΔEO hand | trainable est./hand | s/fit est./hand |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (method, rank), part in ours.groupby(["method", "rank"], sort=False):
        ref = hand[(hand.method == method) & (hand["rank"] == rank)]
        cells = []
        for c in ("err", "dp", "eo"):
            cells += [f"{part[c].mean():.4f} ± {part[c].std(ddof=1):.4f}",
                      f"{ref[c].mean():.4f} ± {ref[c].std(ddof=1):.4f}"]
        lines.append(
            f"| {method} | {rank or '-'} | " + " | ".join(cells)
            + f" | {int(part.n_trainable.iloc[0])}/{int(ref.n_trainable.iloc[0])}"
            f" | {part.seconds.mean():.2f}/{ref.seconds.mean():.2f} |")
    lines += ["", "Paired differences over seeds (mean ± std):", "",
              "| contrast | rank | ΔErr est. | ΔErr hand | ΔΔDP est. | ΔΔDP hand "
              "| ΔΔEO est. | ΔΔEO hand |", "|---|---|---|---|---|---|---|---|"]
    for ref_method in ("PiSSA", "LoRA"):
        for rank in sorted(r for r in set(ours["rank"]) if r):
            cells = []
            for c in ("err", "dp", "eo"):
                for df in (ours, hand):
                    w = df[df["rank"] == rank].pivot_table(index="seed",
                                                           columns="method",
                                                           values=c)
                    d = (w["OURS"] - w[ref_method]).to_numpy()
                    cells.append(f"{d.mean():+.4f} ± {d.std(ddof=1):.4f}")
            lines.append(f"| OURS - {ref_method} | {rank} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path,
                        default=HERE / "results" / "adult_mlp_estimator")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for seed in range(args.seeds):
        rows += run_seed(seed, args)
        pd.DataFrame(rows).to_csv(args.out / "runs.csv", index=False)
        print(f"seed {seed} done, {time.perf_counter() - start:.0f} s", flush=True)
    ours = pd.DataFrame(rows)
    hand = pd.read_csv(HERE / "results" / "adult_mlp" / "runs.csv")
    text = (f"Adult, paper MLP 13-20-20-2, adapter on '0.2' through "
            f"FairLowRankFineTuner(target_modules=...); {args.epochs} epochs, "
            f"Adam lr {args.lr}, batch {args.batch_size}; test part; total "
            f"{time.perf_counter() - start:.0f} s on 1 CPU thread.\n\n"
            + compare(ours, hand))
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
