"""Head training in the estimator against a plain torch loop, per step.

Row 4 of issue 8. The "backbone" is the 64 -> 2 head itself, fed 64-d
features, so a fit is (almost) only head training; ``rank=None`` trains the
plain ``nn.Linear``. The reference is a plain torch loop over the same
tensors: ``randperm`` + tensor slicing, Adam, cross-entropy, same epochs and
batch size. Raw skorch (``NeuralNetClassifier`` on the tensors) is printed
beside them for information.

The measured figure is the whole fit divided by its optimizer steps; the
notes also give the training-only time per step from skorch's history.
"""

import copy

import _common as c
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def plain_loop(model, X, y, epochs, batch_size, lr, device):
    model = copy.deepcopy(model).to(device).train()
    X, y = X.to(device), y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g).to(device)
        for i in range(0, len(X), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
    return model


def raw_skorch(model, X, y, epochs, batch_size, lr, device):
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(
        copy.deepcopy(model), criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam, lr=lr, max_epochs=epochs,
        batch_size=batch_size, train_split=None, device=device, verbose=0,
        iterator_train__shuffle=True, classes=[0, 1],
    )
    return net.fit(X, y)


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n, epochs = (20_000, 3) if args.quick else (100_000, 5)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 64), dtype=np.float32)
    y = (X[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(0)
    head = nn.Linear(64, 2)
    lr = 1e-2
    rows = []
    for bs, target in ((128, 1.3), (1024, 1.3)):
        steps = epochs * -(-n // bs)
        # the mini-batch solver (solver="auto" would solve these cached
        # features with full-batch L-BFGS: bench_solver.py measures that)
        est = c.estimator(head, rank=None, solver="adam", max_epochs=epochs,
                          batch_size=bs, lr=lr, random_state=0, device=args.device)
        plain_loop(head, Xt[:2048], yt[:2048], 1, bs, lr, args.device)  # warm-up
        c.estimator(head, rank=None, solver="adam", max_epochs=1, batch_size=bs,
                    device=args.device).fit(X[:2048], y[:2048])  # warm-up
        loop1, _ = c.timed(lambda: plain_loop(head, Xt, yt, epochs, bs, lr,  # noqa: B023
                                              args.device), args.device)
        fit_s, _ = c.timed(lambda: est.fit(X, y), args.device)  # noqa: B023
        loop2, _ = c.timed(lambda: plain_loop(head, Xt, yt, epochs, bs, lr,  # noqa: B023
                                              args.device), args.device)
        sk_s, _ = c.timed(lambda: raw_skorch(head, Xt, yt, epochs, bs, lr,  # noqa: B023
                                             args.device), args.device)
        train_only = float(np.sum(est.net_.history[:, "dur"]))
        loop = (loop1 + loop2) / 2
        ours_us, ref_us = fit_s / steps * 1e6, loop / steps * 1e6
        ratio = ours_us / ref_us
        notes = (f"N={n}, {epochs} epochs, {steps} steps; training only (skorch "
                 f"history) {train_only / steps * 1e6:,.0f} us a step; raw "
                 f"skorch {sk_s / steps * 1e6:,.0f} us a step "
                 f"({sk_s / loop:.1f}x the loop); loop runs {loop1:.2f} s and "
                 f"{loop2:.2f} s around the fit")
        rows.append(c.make_row(
            f"head_train_bs{bs}",
            f"head training in the estimator / plain torch loop, 64 -> 2, "
            f"batch {bs}",
            ours_us, ref_us, ratio, f"<= {target}x", ratio <= target, unit="us",
            measured_text=f"{ours_us:,.0f} us/step",
            reference_text=f"{ref_us:,.0f} us/step",
            notes=notes,
            params={"n": n, "epochs": epochs, "batch_size": bs, "lr": lr,
                    "raw_skorch_us": sk_s / steps * 1e6,
                    "train_only_us": train_only / steps * 1e6},
        ))
        print(f"batch {bs}: estimator {ours_us:,.0f} us/step, loop "
              f"{ref_us:,.0f} us/step, raw skorch {sk_s / steps * 1e6:,.0f}",
              flush=True)
    c.emit(args, rows, "bench_head.py")


if __name__ == "__main__":
    main()
