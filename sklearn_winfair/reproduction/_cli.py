"""Command line interface: ``winfair-bench <subcommand> [options]``.

Subcommands: ``adult``, ``adult-age-shift``, ``german``, ``images``
(:mod:`._runner`) and ``adapters`` (:mod:`._adapter_study`).
"""

import argparse
import sys

from ._runner import run_benchmark

__all__ = ["build_parser", "main"]

_DESCRIPTION = (
    "Reproduce the experiments of Yixuan Zhang and Feng Zhou, \"Bias "
    "Mitigation in Fine-tuning Pre-trained Models for Enhanced Fairness and "
    "Efficiency\", arXiv:2403.00625, 2024, with sklearn-winfair: fine-tune a "
    "frozen pre-trained backbone on a new task by TL, f+SVD, FWSVD, OURS and "
    "fairness-aware peers, tuned on the validation part, and write runs.csv, "
    "markdown tables beside the paper's numbers, a summary and plots. "
    "'adapters' (ours) puts low-rank adapters inside the backbone beside "
    "head-only and whole-model fine-tuning, under one fixed, untuned protocol."
)


def build_parser():
    """Return the ``argparse`` parser of ``winfair-bench``.

    Examples
    --------
    >>> build_parser().parse_args(["german", "--quick"]).seeds is None
    True
    """
    parser = argparse.ArgumentParser(prog="winfair-bench",
                                     description=_DESCRIPTION)
    sub = parser.add_subparsers(
        dest="dataset", required=True,
        metavar="{adult,adult-age-shift,german,images,adapters}")
    helps = {
        "adult": "the paper's setting: Adult income (sex), random 60/40 split, "
                 "MLP 13-20-20-2, Tables 2-4 and Figs. 4-5 beside the paper's "
                 "numbers",
        "adult-age-shift": "ours: Adult with an age covariate shift, one-hot "
                           "MLP 64-10-2, rank sweeps",
        "german": "ours: German credit (sex)",
        "images": "constructed shapes task with a small ResNet (a stand-in, "
                  "not CelebA/LFW+a)",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--quick", action="store_true",
                       help="3 seeds, a smaller grid and fewer epochs (adult: "
                            "a few minutes on one CPU core)")
        p.add_argument("--seeds", type=int, default=None,
                       help="number of seeds (default 10, or 3 with --quick)")
        p.add_argument("--epochs", type=int, default=None,
                       help="fine-tuning epochs of the untuned scenarios "
                            "(adult-age-shift, german); adult and images tune "
                            "epochs on the validation part")
        p.add_argument("--out", default=None,
                       help="results folder (default winfair-results/<subcommand>)")
        p.add_argument("--methods", default=None,
                       help="comma-separated shell patterns selecting the "
                            "methods of the main comparison, e.g. "
                            "'TL,OURS*,ThrOpt*'")
        p.add_argument("--no-plots", action="store_true",
                       help="do not write the PNG plots")
        p.add_argument("--batch-size", type=int, default=None,
                       help="mini-batch size of every torch loop")
        p.add_argument("--n-rows", type=int, default=None,
                       help="subsample the data set (smoke tests)")
        p.add_argument("--solver", default=None,
                       choices=["auto", "lbfgs", "adam", "sgd"],
                       help="solver of every FairLowRankFineTuner (default: the "
                            "estimator's, 'auto': L-BFGS on cached features; "
                            "'adam' is the paper's lr x epochs protocol)")
        p.add_argument("--no-progress", action="store_true",
                       help="hide the progress bar")
    _add_adapters(sub)
    return parser


def _add_adapters(sub):
    """Add the ``adapters`` subcommand (issue 19's adapter study)."""
    from ._adapter_study import PENALTY_CHOICES, SETTINGS

    text = ("ours: low-rank adapters inside the backbone (LoRA, PiSSA, FWSVD, "
            "OURS) against head-only TL and whole-model FT, each with the "
            "EO / DP penalty: image task (ResNet), token task (tiny BERT, "
            "needs transformers), Adult age shift (64-10-2 MLP), the paper's "
            "13-20-20-2 MLP; untuned, fixed protocol")
    p = sub.add_parser("adapters", help=text, description=text)
    p.add_argument("--setting", default="all", choices=[*SETTINGS, "all"],
                   help="which setting (default all four)")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, smaller image / token data, fewer epochs, "
                        "Adult at rank 4 only")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (default 10, or 3 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="fine-tuning epochs of every method (default 5 for "
                        "images / text, 20 for Adult)")
    p.add_argument("--out", default=None,
                   help="results folder (default winfair-results/adapters)")
    p.add_argument("--methods", default=None,
                   help="comma-separated shell patterns among TL, FT, LoRA, "
                        "PiSSA, FWSVD, OURS, e.g. 'TL,OURS'")
    p.add_argument("--penalty", default="both", choices=list(PENALTY_CHOICES),
                   help="penalties run beside the plain fits, in every "
                        "method's loss (default both: EO and DP)")
    p.add_argument("--strength", type=float, default=0.5,
                   help="weight of the penalty (default 0.5)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size of every method (default 128 for "
                        "images / text, 256 for Adult)")
    p.add_argument("--n-rows", type=int, default=None,
                   help="subsample Adult in the age-shift and paper-mlp "
                        "settings (smoke tests)")
    p.add_argument("--no-plots", action="store_true",
                   help="do not write adapters_err_eo.png")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar")


def main(argv=None):
    """Run ``winfair-bench``; return the exit status.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success.

    Examples
    --------
    >>> import contextlib, io
    >>> from sklearn_winfair.reproduction import main
    >>> printed = io.StringIO()
    >>> with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
    ...     main(["adult", "--help"])
    >>> printed.getvalue().split()[:3]
    ['usage:', 'winfair-bench', 'adult']
    """
    args = build_parser().parse_args(argv)
    if args.dataset == "adapters":
        from ._adapter_study import run_adapter_study

        run_adapter_study(
            args.setting, quick=args.quick, seeds=args.seeds, out=args.out,
            penalty=args.penalty, strength=args.strength,
            methods=args.methods, plots=not args.no_plots,
            progress=not args.no_progress, epochs=args.epochs,
            batch_size=args.batch_size, n_rows=args.n_rows)
        return 0
    run_benchmark(
        args.dataset, quick=args.quick, seeds=args.seeds, epochs=args.epochs,
        out=args.out, methods=args.methods, plots=not args.no_plots,
        n_rows=args.n_rows, progress=not args.no_progress,
        batch_size=args.batch_size,
        **({} if args.solver is None else {"solver": args.solver}),
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
