"""Copy the committed 10-seed adapter runs into the harness's results format.

The adapter study was first measured by standalone scripts (the
``measure_backbones.py`` / ``measure_adult_mlp.py`` / ``combine_adult.py``
of commit 0560425); ``winfair-bench adapters`` now runs the same protocol
with the same random draws from the package. This joins those scripts'
committed ``runs.csv`` files (``results/images_backbone`` +
``images_backbone_dp``, ``text_backbone`` + ``text_backbone_dp``,
``age_shift_all``, ``adult_paper_mlp_all``), renames their columns to the
harness's (``seconds`` -> ``fit_seconds``, ``n_trainable`` -> ``n_params``,
``dp`` / ``eo`` -> ``dp_gap`` / ``eo_gap``, plus ``setting``) and writes
``docs/results/adapters/`` with the harness's own report code
(:func:`sklearn_winfair.reproduction._adapter_report.write_adapter_reports`):
nothing is re-run and no number is typed by hand. From the repository root::

    PYTHONPATH=. python benchmarks/adapters/harness_copy.py
"""

import os
import re
from pathlib import Path

import pandas as pd

from sklearn_winfair.reproduction._adapter_report import write_adapter_reports
from sklearn_winfair.reproduction._adapter_study import SETTINGS
from sklearn_winfair.reproduction._report import git_commit

HERE = Path(__file__).parent
RESULTS = HERE / "results"
OUT = Path(os.environ.get("WINFAIR_ADAPTERS_OUT",
                          HERE.parent.parent / "docs" / "results" / "adapters"))
#: setting -> (folders joined, the folders whose summary states the wall time)
SOURCES = {
    "images": (("images_backbone", "images_backbone_dp"),
               ("images_backbone", "images_backbone_dp")),
    "text": (("text_backbone", "text_backbone_dp"),
             ("text_backbone", "text_backbone_dp")),
    "age-shift": (("age_shift_all",), ("age_shift", "age_shift_eo",
                                       "age_shift_dp")),
    "paper-mlp": (("adult_paper_mlp_all",), ("adult_mlp", "adult_mlp_eo",
                                             "adult_mlp_dp")),
}
RENAME = {"seconds": "fit_seconds", "n_trainable": "n_params", "dp": "dp_gap",
          "eo": "eo_gap"}
PENALTY_ORDER = {"none": 0, "equalized_odds": 1, "demographic_parity": 2}


def _wall(folder):
    """Total seconds the script's summary.md states for its run."""
    text = (RESULTS / folder / "summary.md").read_text(encoding="utf-8")
    found = re.search(r"(\d+) s so far|total (\d+) s", text)
    return float(next(g for g in found.groups() if g))


def joined_runs():
    """The committed runs of the four settings, in the harness's columns."""
    parts = []
    for setting, (folders, _) in SOURCES.items():
        for i, folder in enumerate(folders):
            df = pd.read_csv(RESULTS / folder / "runs.csv")
            if i:
                df = df[df.method != "pre-trained"]
            parts.append(df.rename(columns=RENAME).assign(setting=setting))
    runs = pd.concat(parts, ignore_index=True)
    runs["_p"] = runs["penalty"].map(PENALTY_ORDER)
    runs["_s"] = runs["setting"].map({s: i for i, s in enumerate(SOURCES)})
    runs = runs.sort_values(["_s", "seed", "_p"], kind="stable")
    columns = ["setting", "seed", "method", "penalty", "rank", "err", "dp_gap",
               "eo_gap", "n_params", "fit_seconds", "truncation_error",
               "val_err"]
    return runs[columns].reset_index(drop=True)


def main():
    runs = joined_runs()
    wall = sum(_wall(f) for _, walls in SOURCES.values() for f in walls)
    folders = sorted({f for fs, _ in SOURCES.values() for f in fs})
    lines = [
        f"- mode: full; seeds: {runs.seed.nunique()}; penalty: both x 0.5; "
        f"wall time: {wall:.0f} s (the sum of the totals the scripts' "
        "summaries state, one process per penalty; each backbone "
        "pre-trained once per process); code: commit 0560425 (the runs: "
        "benchmarks/adapters/measure_backbones.py and measure_adult_mlp.py, "
        "committed in 8af113e, c05af92, ae68f2c, a7a0cfa, d3d5e69, 307c872 "
        "and the Adult commits before them)",
        "- these runs were NOT re-run by `winfair-bench adapters`: they are "
        "the committed runs.csv of benchmarks/adapters/results/"
        f"{{{', '.join(folders)}}}, joined and renamed by "
        "benchmarks/adapters/harness_copy.py; every table, the summary and "
        "the plot are written from them by the harness's report code of "
        f"commit {git_commit()[:7]}. Re-run through `winfair-bench "
        "adapters --setting all --seeds 2`, seeds 0 and 1 gave the same Err, "
        "ΔDP and ΔEO as these runs in every setting, to float noise "
        "(benchmarks/adapters/results/harness_check/comparison.txt).",
    ]
    write_adapter_reports(runs, OUT, settings=list(SETTINGS.values()),
                          lines=lines)
    print("wrote", OUT, len(runs), "rows")


if __name__ == "__main__":
    main()
