"""The head's L-BFGS solve on cached features against scikit-learn's LogisticRegression.

Issue 15: a new head fitted to convergence, fast. The "backbone" is a frozen
random 64 -> 64 ReLU trunk with a random 64 -> 2 head whose labels come from
a linear rule on the trunk's features (the head does not fit the task
before training). ``FairLowRankFineTuner(rank=None)`` with the default
solver (full-batch L-BFGS) is timed against
``LogisticRegression(solver="lbfgs")`` on the same features, measured side by
side in this run; the features' extraction is timed apart and left out of
both, so the row compares the two solves. Test accuracy of both is reported
(target: within 0.005). The estimator's fit includes its fixed costs
(validation, Fisher-free set-up, skorch); its own training time (skorch's
history) is in the notes.
"""

import _common as c
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n = 20_000 if args.quick else 100_000
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    head = nn.Linear(64, 2)
    backbone = nn.Sequential(trunk, head)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2 * n, 64), dtype=np.float32)
    with torch.no_grad():
        F = trunk(torch.from_numpy(X)).numpy()
    y = (F @ rng.standard_normal(64) + 0.3 * rng.standard_normal(2 * n) > 0)
    y = y.astype(np.int64)
    tr, te = slice(0, n), slice(n, 2 * n)
    # the estimator's features come from its cache: give it the features
    # themselves with the head as the backbone, so both solve the same problem
    Ftr, Fte = F[tr], F[te]
    est = c.estimator(head, rank=None, random_state=0, device=args.device)
    c.estimator(head, rank=None, random_state=0).fit(Ftr[:2048], y[tr][:2048])
    lr1, ref1 = c.timed(lambda: LogisticRegression(max_iter=1000).fit(Ftr, y[tr]))
    fit_s, _ = c.timed(lambda: est.fit(Ftr, y[tr]), args.device)
    lr2, ref2 = c.timed(lambda: LogisticRegression(max_iter=1000).fit(Ftr, y[tr]))
    ref = (lr1 + lr2) / 2
    ours_acc, ref_acc = est.score(Fte, y[te]), ref2.score(Fte, y[te])
    train_only = float(np.sum(est.net_.history[:, "dur"]))
    ratio = fit_s / ref
    notes = (f"N={n} x 64; estimator: {est.solver_}, {est.n_iter_} iterations, "
             f"training only {train_only:.3f} s; LogisticRegression "
             f"{ref2.n_iter_[0]} iterations, {lr1:.3f} s and {lr2:.3f} s around "
             f"the fit; test accuracy {ours_acc:.4f} vs {ref_acc:.4f} "
             f"(difference {ours_acc - ref_acc:+.4f}, target within 0.005)")
    met = ratio <= 1.5 and abs(ours_acc - ref_acc) <= 0.005
    row = c.make_row(
        "head_solve_vs_logreg",
        "head solve on cached features (rank=None, L-BFGS) / scikit-learn "
        "LogisticRegression(lbfgs) on the same features",
        fit_s, ref, ratio, "<= 1.5x, accuracy within 0.005", met,
        notes=notes,
        params={"n": n, "ours_acc": ours_acc, "ref_acc": ref_acc,
                "n_iter": est.n_iter_, "train_only_s": train_only},
    )
    print(f"estimator {fit_s:.3f} s ({ours_acc:.4f}), LogisticRegression "
          f"{ref:.3f} s ({ref_acc:.4f})", flush=True)
    c.emit(args, [row], "bench_solver.py")


if __name__ == "__main__":
    main()
