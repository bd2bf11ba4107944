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

Run ``python benchmarks/bench_fit.py --quick``.
"""

import _common as c

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
    f1 = c.forward_pass(backbone, X, device=args.device)
    est = c.estimator(backbone.cpu(), **params)
    seen = c.ThreadsSeen(backbone)  # the fit deep-copies: hook is copied too
    fit_s, _ = c.timed(lambda: est.fit(X, y, sensitive_features=s), args.device)
    threads = seen.remove()
    f2 = c.forward_pass(backbone, X, device=args.device)
    fwd = (f1 + f2) / 2
    notes = (f"N={n}; forward passes {f1:.2f} s and {f2:.2f} s around the fit; "
             f"torch threads seen by the backbone during fit: {threads}")
    return fit_s, fwd, notes, {"n": n, "head": head, "rank": rank, "epochs": 20,
                               "batch_size": 128, "fit_threads": threads}


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
