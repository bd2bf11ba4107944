"""Adapters on the Adult MLPs: LoRA, PiSSA, FWSVD and OURS inits (issue 19).

A thin wrapper, kept for the commands the docs and ``results/README.md``
cite: the measurement now lives in the package
(:mod:`sklearn_winfair.reproduction._adapter_study`) and runs as
``winfair-bench adapters --setting paper-mlp`` (``--task paper``: the paper's
13-20-20-2 MLP, adapter on its 20 -> 20 layer) or ``--setting age-shift``
(``--task age-shift``: the one-hot 64-10-2 MLP, adapter on its 64 -> 10
layer), with the same protocol and random draws (seed 0 of the committed
``results/adult_paper_mlp_all`` and ``results/age_shift_all`` runs is
reproduced to float noise). This wrapper maps the script's options onto it
and writes the harness's results folder into ``--out``; the version that
wrote the folders under ``results/`` is ``measure_adult_mlp.py`` of commit
0560425. Without ``--penalty`` only the plain fits run; with it, the plain
and the penalized ones::

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/measure_adult_mlp.py --seeds 10
"""

import argparse

from sklearn_winfair.reproduction._adapter_study import run_adapter_study


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["paper", "age-shift"],
                        default="paper")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--ranks", type=int, nargs="+", default=None,
                        help="default 1 2 3 4 (paper), 1 2 4 8 (age-shift)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--penalty", default=None,
                        choices=["demographic_parity", "equalized_odds"])
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--out", default=None,
                        help="default winfair-results/adapters")
    args = parser.parse_args()
    run_adapter_study("paper-mlp" if args.task == "paper" else "age-shift",
                      seeds=args.seeds, out=args.out,
                      penalty=args.penalty or "none", strength=args.strength,
                      epochs=args.epochs, batch_size=args.batch_size,
                      ranks=None if args.ranks is None else tuple(args.ranks))


if __name__ == "__main__":
    main()
