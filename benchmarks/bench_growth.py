"""Growth of fit time in N: the exponent of a log-log fit.

Row 10 of issue 8. MLP 104-256-256-64-2, ``rank=None``, batch 128, fitted on
N = 1e4, 3e4, 1e5, 3e5 rows (quick: 1e4, 3e4, 1e5) for 5 epochs (quick: 2).
The reference is the exponent of one bare ``no_grad`` forward pass over the
same rows, which is linear in N by construction. Target: keep ~1 (0.9 to 1.1).
"""

import _common as c
import numpy as np


def exponent(ns, ts):
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    ns = (10_000, 30_000, 100_000) if args.quick else (10_000, 30_000, 100_000,
                                                        300_000)
    epochs = 2 if args.quick else 5
    X_all, y_all, s_all = c.tabular_data(max(ns))
    backbone = c.small_mlp_backbone()
    c.forward_pass(backbone, X_all[:1024], device=args.device)  # warm-up
    c.estimator(backbone, rank=None, max_epochs=1, random_state=0,
                device=args.device).fit(X_all[:1024], y_all[:1024])  # warm-up
    fits, fwds = [], []
    for n in ns:
        X, y, s = X_all[:n], y_all[:n], s_all[:n]
        est = c.estimator(backbone, rank=None, max_epochs=epochs, batch_size=128,
                          random_state=0, device=args.device)
        fwds.append(c.forward_pass(backbone, X, device=args.device))
        fits.append(c.timed(lambda: est.fit(X, y, sensitive_features=s),  # noqa: B023  # noqa: B023  # noqa: B023  # noqa: B023
                            args.device)[0])
        print(f"N={n}: fit {fits[-1]:.2f} s, forward {fwds[-1]:.3f} s", flush=True)
    e_fit, e_fwd = exponent(ns, fits), exponent(ns, fwds)
    rows = [c.make_row(
        "growth_in_n", "growth of fit time in N (exponent of a log-log fit)",
        e_fit, e_fwd, e_fit, "~1 (0.9 to 1.1)", abs(e_fit - 1) <= 0.1, unit="",
        measured_text=f"exponent {e_fit:.3f}",
        reference_text=f"forward pass exponent {e_fwd:.3f}",
        notes="; ".join(f"N={n}: fit {f:.2f} s, forward {w:.3f} s"
                        for n, f, w in zip(ns, fits, fwds, strict=True))
        + f"; {epochs} epochs",
        params={"ns": list(ns), "fit_s": fits, "forward_s": fwds,
                "epochs": epochs},
    )]
    c.emit(args, rows, "bench_growth.py")


if __name__ == "__main__":
    main()
