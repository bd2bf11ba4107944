"""Compare a ``winfair-bench adapters`` run with the committed script runs.

For every setting in the new run's ``runs.csv``, matches its rows to the
committed runs of the same seeds (``harness_copy.joined_runs``) on (method,
penalty, rank) and prints the largest absolute differences of Err, ΔDP,
ΔEO, trainable parameters and truncation error (times differ by nature)::

    winfair-bench adapters --seeds 1 --out /tmp/adapters-seed0
    PYTHONPATH=. python benchmarks/adapters/compare_seed.py /tmp/adapters-seed0/runs.csv
"""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from harness_copy import joined_runs  # noqa: E402

COLUMNS = ("err", "dp_gap", "eo_gap", "n_params", "truncation_error",
           "val_err")


def main(paths):
    old = joined_runs()
    for path in paths:
        new = pd.read_csv(path)
        for (setting, seed), part in new.groupby(["setting", "seed"],
                                                 sort=False):
            ref = old[(old.setting == setting) & (old.seed == seed)]
            m = ref.merge(part, on=["method", "penalty", "rank"],
                          suffixes=("_old", "_new"), how="outer",
                          indicator=True)
            print(f"{setting} seed {seed}: {len(ref)} committed rows, "
                  f"{len(part)} new, unmatched {(m._merge != 'both').sum()}")
            for c in COLUMNS:
                if f"{c}_new" in m and m[f"{c}_old"].notna().any():
                    d = (m[f"{c}_old"] - m[f"{c}_new"]).abs().max()
                    print(f"  max |committed - new| {c}: {d:.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])
