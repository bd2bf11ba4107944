"""Issue 18's cost row before and after a change, side by side in one run.

``python benchmarks/frontier_cost_compare.py BEFORE_TREE [REPEATS]`` runs
``bench_frontier.cost_only()`` (N = 10,000, one thread) from the tree
``BEFORE_TREE`` (e.g. ``git archive <commit> | tar -x -C BEFORE_TREE``) and
from this one, alternating (before, after, before, after, ...) so that the
load of a shared machine falls on both alike, then
``bench_frontier.expgrad_only()`` from this tree; prints every JSON line and
a summary, and writes them to ``results/frontier_cost_lbfgs.json``.
"""

import json
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def run(tree, call):
    env = {"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", f"import bench_frontier as b; b.{call}"],
        cwd=tree / "benchmarks", env=env, capture_output=True, text=True,
        check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    print(f"{tree.name}: {line}", flush=True)
    return json.loads(line)


def main():
    before = pathlib.Path(sys.argv[1]).resolve()
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    after = HERE.parent
    runs = {"before": [], "after": []}
    for _ in range(repeats):
        runs["before"].append(run(before, "cost_only()"))
        runs["after"].append(run(after, "cost_only()"))
    expgrad = run(after, "expgrad_only()")
    summary = {k: {"ratio_median": statistics.median(r["ratio"] for r in v),
                   "ratios": [r["ratio"] for r in v],
                   "frontier_s": [r["frontier_s"] for r in v],
                   "one_fit_s": [r["one_fit_s"] for r in v]}
               for k, v in runs.items()}
    print(json.dumps(summary, indent=1))
    out = {"before_tree": str(before), "runs": runs, "expgrad": expgrad,
           "summary": summary}
    (HERE / "results" / "frontier_cost_lbfgs.json").write_text(
        json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
