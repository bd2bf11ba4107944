"""Adapters inside a convolutional and a transformer backbone (issue 19).

A thin wrapper, kept for the commands the docs and
``results/README.md`` cite: the measurement now lives in the package
(:mod:`sklearn_winfair.reproduction._adapter_study`, the token task in
``_tokens``) and runs as ``winfair-bench adapters --setting images`` or
``--setting text``, with the same protocol and random draws (seed 0 of the
committed ``results/images_backbone`` and ``results/text_backbone`` runs is
reproduced to the bit). This wrapper maps the script's options onto it and
writes the harness's results folder (``runs.csv``, ``<setting>.md``,
``summary.md``, the plot) into ``--out``; the version that wrote the folders
under ``results/`` is ``measure_backbones.py`` of commit 0560425.
``--penalty P`` runs the plain fits and the ``P``-penalized ones::

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/measure_backbones.py --setting images
"""

import argparse

from sklearn_winfair.reproduction._adapter_study import run_adapter_study


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["images", "text"], required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--penalty", default="equalized_odds",
                        choices=["demographic_parity", "equalized_odds"])
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--out", default=None,
                        help="default winfair-results/adapters")
    args = parser.parse_args()
    run_adapter_study(args.setting, seeds=args.seeds, out=args.out,
                      penalty=args.penalty, strength=args.strength,
                      epochs=args.epochs, batch_size=args.batch_size,
                      ranks=(args.rank,))


if __name__ == "__main__":
    main()
