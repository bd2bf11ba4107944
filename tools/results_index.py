"""Write ``docs/results/README.md``, the index of the committed results.

Repository tooling, not part of the installed package: run it from the
repository root after re-running a benchmark into ``docs/results/``::

    python tools/results_index.py docs/results

One row per results folder holding a ``summary.md``: its command, mode, wall
time and code commit as its summary states them, plus the provenance notes
of :data:`INDEX_NOTES`.
"""

import re
import sys
from pathlib import Path

from sklearn_winfair.reproduction._stats import markdown_table

#: Provenance notes of results folders that were not written by this code.
INDEX_NOTES = {
    "adult": ("`winfair-bench adult`: the paper's setting, its published "
              "numbers beside ours (Tables 2-4, Figs. 4-5)."),
    "adult_age_shift": (
        "`winfair-bench adult-age-shift` (ours: age covariate shift, one-hot "
        "64-10-2 MLP, rank sweeps where truncation bites). Written by the "
        "harness of commit d32b871, when this scenario was `winfair-bench "
        "adult`, and kept as it was (its pareto.png redrawn from the same "
        "runs.csv by the current plotting code); no published counterpart, "
        "hence its 'n/a' paper cells."),
    "adapters": (
        "`winfair-bench adapters` (ours, issue 19: low-rank adapters inside "
        "the backbone against TL and FT, each with the EO / DP penalty; image "
        "task, tiny BERT, Adult age shift, the paper's MLP). Its runs were "
        "measured by the scripts of benchmarks/adapters/ (commit 0560425) and "
        "joined into this format by benchmarks/adapters/harness_copy.py; the "
        "tables, summary and plot are the harness's report code's. Seeds 0 "
        "and 1 re-run through `winfair-bench adapters` match them."),
    "images": ("`winfair-bench images`: the CONSTRUCTED shapes task with a "
               "small ResNet, a stand-in for CelebA / LFW+a."),
    "german": (
        "`winfair-bench german` (ours; about 180 training rows, so seed noise "
        "dominates), with fairlearn's reductions over the fine-tuner and "
        "reweighing + OURS."),
}


def results_index(root):
    """Return the markdown index of a results folder tree.

    One row per sub-folder holding a ``summary.md``: its command, mode,
    wall time and code commit as its summary states them, plus the
    provenance notes of :data:`INDEX_NOTES`.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder holding one folder per benchmark (``docs/results``).

    Returns
    -------
    text : str
    """
    rows = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        summary = folder / "summary.md"
        if not summary.is_file():
            continue
        text = summary.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").split(":")[0]
        wall = re.search(r"wall time: ([\d.]+) s", text)
        commit = re.search(r"code: commit (\w+)", text)
        mode = re.search(r"mode: (\w+)", text)
        rows.append([
            f"[`{folder.name}/`]({folder.name}/summary.md)", f"`{title}`",
            mode.group(1) if mode else "?",
            f"{float(wall.group(1)):,.0f} s" if wall else "?",
            commit.group(1)[:7] if commit else "d32b871 (not recorded)",
            INDEX_NOTES.get(folder.name, "")])
    return ("# Benchmark results\n\nWritten by `winfair-bench` "
            "(`sklearn_winfair/reproduction/`); every file here is written by "
            "code, nothing by hand: the results by the harness, this index "
            "by `tools/results_index.py`. Runs on a shared 2-core CPU "
            "machine, one torch thread.\n\n"
            + markdown_table(["folder", "benchmark", "mode", "wall time",
                              "code", "note"], rows) + "\n")


def main(argv=None):
    """Write ``<root>/README.md`` (root: ``argv[0]``, default docs/results)."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else "docs/results")
    (root / "README.md").write_text(results_index(root), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
