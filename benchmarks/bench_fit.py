"""Fit time against one bare ``no_grad`` forward pass of the same backbone.

Rows 1-3 of issue 8: a fit's unavoidable cost is one forward pass of the
frozen backbone over the training rows; everything else should be small
beside it. Each configuration is timed as forward, fit, forward on the same
rows, and the reference is the mean of the two forward passes around the fit
(so load from other processes during the run shifts both sides alike).

Configurations (20 epochs, batch 128, default settings otherwise):

* ``fit_cnn``: CNN on 3x32x32 images, ``rank=None`` (the head is the last
  ``nn.Linear``, 64 -> 2).
* ``fit_mlp``: wide MLP 104-2048-2048-64-2, ``rank=None``.
* ``fit_cnn_mlp_head`` / ``fit_mlp_mlp_head``: ``head="head"``, the 2-layer
  head 2048 -> 64 -> 2, its 2048 -> 64 layer factorized to rank 4
  (``importance="neutral"``).

Each row also gives a floor: the forward pass plus 20 epochs of steps of a
plain torch loop (``randperm`` + slicing, Adam) training the fitted head on
features of its input width, timed here; no fit that trains through a torch
optimizer step per batch can go below it.

Run ``python benchmarks/bench_fit.py --quick``.
"""

import copy

import _common as c
import torch
from torch import nn
from torch.nn import functional as F


def loop_step_s(head, n, batch_size, device):
    """Seconds per step of a plain torch loop training ``head`` (a copy).

    The floor of head training: ``randperm`` + tensor slicing, Adam,
    cross-entropy, on random features of the head's input width (a step's
    cost does not depend on the values), one timed epoch over up to 20,000
    rows after a warm-up epoch.
    """
    head = copy.deepcopy(head).to(device).train()
    for p in head.parameters():
        p.requires_grad_(True)
    width = next(m for m in head.modules() if isinstance(m, nn.Linear)).in_features
    n = min(n, 20_000)
    feats = torch.relu(torch.randn(n, width)).to(device)
    y = torch.randint(0, 2, (n,)).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)

    def epoch():
        perm = torch.randperm(n).to(device)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            F.cross_entropy(head(feats[idx]), y[idx]).backward()
            opt.step()

    epoch()
    return c.timed(epoch, device)[0] / -(-n // batch_size)


SIZES = {"cnn": (10_000, 1_000), "mlp": (100_000, 20_000)}  # (full, quick)


def measure(kind, n, head, rank, args):
    if kind == "cnn":
        X, y, s = c.image_data(n)
        backbone = c.cnn_backbone()
    else:
        X, y, s = c.tabular_data(n)
        backbone = c.wide_mlp_backbone()
    params = dict(head=head, rank=rank, max_epochs=20, batch_size=128,
                  random_state=0, device=args.device)
    c.forward_pass(backbone, X[:256], device=args.device)  # warm-up
    # warm-up fit: the first fit in a process pays one-time set-up (imports,
    # torch kernels), not a cost of every fit
    c.estimator(backbone, **dict(params, max_epochs=1)).fit(
        X[:256], y[:256], sensitive_features=s[:256])
    f1 = c.forward_pass(backbone, X, device=args.device)
    est = c.estimator(backbone.cpu(), **params)
    seen = c.ThreadsSeen(backbone)  # the fit deep-copies: hook is copied too
    fit_s, _ = c.timed(lambda: est.fit(X, y, sensitive_features=s), args.device)
    threads = seen.remove()
    f2 = c.forward_pass(backbone, X, device=args.device)
    fwd = (f1 + f2) / 2
    steps = 20 * -(-n // 128)
    step_s = loop_step_s(est.model_.get_submodule(est.head_name_), n, 128,
                         args.device)
    floor = (fwd + steps * step_s) / fwd
    notes = (f"N={n}; forward passes {f1:.2f} s and {f2:.2f} s around the fit; "
             f"torch threads seen by the backbone during fit: {threads}; "
             f"floor (forward + {steps} steps of a plain torch loop training "
             f"the fitted head, {step_s * 1e6:,.0f} us a step) = {floor:.2f}x "
             f"the forward pass")
    return fit_s, fwd, notes, {"n": n, "head": head, "rank": rank, "epochs": 20,
                               "batch_size": 128, "fit_threads": threads,
                               "loop_step_s": step_s, "floor_ratio": floor}


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    rows = []
    configs = [
        ("fit_cnn", "cnn", None, None, 1.2,
         "fit / one bare no_grad forward pass, CNN 3x32x32, rank=None"),
        ("fit_mlp", "mlp", None, None, 1.3,
         "fit / one bare no_grad forward pass, wide MLP 104-2048-2048-64-2, "
         "rank=None"),
        ("fit_cnn_mlp_head", "cnn", "head", 4, 1.5,
         "fit / forward pass, CNN, 2-layer head (2048 -> 64 at rank 4)"),
        ("fit_mlp_mlp_head", "mlp", "head", 4, 1.5,
         "fit / forward pass, wide MLP, 2-layer head (2048 -> 64 at rank 4)"),
    ]
    for id_, kind, head, rank, target, what in configs:
        n = SIZES[kind][1 if args.quick else 0]
        fit_s, fwd, notes, params = measure(kind, n, head, rank, args)
        ratio = fit_s / fwd
        rows.append(c.make_row(
            id_, what, fit_s, fwd, ratio, f"<= {target}x", ratio <= target,
            measured_text=f"fit {fit_s:.2f} s",
            reference_text=f"forward {fwd:.2f} s",
            notes=notes, params=params,
        ))
        print(f"{id_}: fit {fit_s:.2f} s, forward {fwd:.2f} s, ratio {ratio:.2f}",
              flush=True)
    c.emit(args, rows, "bench_fit.py")


if __name__ == "__main__":
    main()
