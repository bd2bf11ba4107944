"""Run the performance suite and write ``docs/performance.md``.

Usage (from the repository root)::

    python benchmarks/run.py --quick                      # a few minutes
    python benchmarks/run.py                              # the issue's sizes
    python benchmarks/run.py --quick --out benchmarks/results/before.json
    python benchmarks/run.py --report-only                # rebuild the report
    python benchmarks/run.py --quick --device cuda --out benchmarks/results/gpu.json

Each ``bench_*.py`` script runs in its own process (torch threads set by
``--threads``, 1 by default, also through ``OMP_NUM_THREADS``), measures our
figure and its reference side by side and writes its rows as JSON. The runner
stores all rows with the machine, the library versions, the date, the git
commit of the ``sklearn_winfair`` that ran (the one on ``PYTHONPATH`` if set,
e.g. a worktree of the baseline) and the load average, in ``--out``
(``benchmarks/results/after.json`` by default). Then it writes
``docs/performance.md`` from ``benchmarks/results/before.json`` and
``after.json`` (and ``gpu.json`` when present): the report can always be
regenerated from the committed JSON files with ``--report-only``.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
REPORT = ROOT / "docs" / "performance.md"

SCRIPTS = [
    "bench_fit.py",
    "bench_head.py",
    "bench_solver.py",
    "bench_fisher.py",
    "bench_grid.py",
    "bench_svd.py",
    "bench_memory.py",
    "bench_naive.py",
    "bench_growth.py",
    "bench_dask.py",
    "bench_store.py",
]
#: Scripts that say nothing about a GPU (Dask here runs CPU workers).
CPU_ONLY = {"bench_dask.py"}


# ------------------------------------------------------------------ metadata
def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def _code_under_test():
    """Path, commit and dirty flag of the sklearn_winfair that the scripts import."""
    code = (
        "import sklearn_winfair, os; "
        "print(os.path.dirname(os.path.dirname(sklearn_winfair.__file__)))"
    )
    root = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True, cwd=HERE).stdout.strip()

    def git(*a):
        out = subprocess.run(["git", "-C", root, *a], capture_output=True,
                             text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    subject = git("log", "-1", "--format=%s")
    dirty = git("status", "--porcelain", "--", "sklearn_winfair")
    return {"path": root, "commit": commit, "subject": subject,
            "uncommitted_changes_in_package": bool(dirty)}


def metadata(args):
    import psutil

    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "device": args.device,
        "threads": args.threads,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            **{k: _version(k) for k in ("torch", "skorch", "scikit-learn",
                                        "fairlearn", "numpy", "joblib", "dask",
                                        "distributed")},
        },
        "code": _code_under_test(),
        "loadavg_before": list(os.getloadavg()),
    }
    if args.device.startswith("cuda"):
        import torch

        meta["gpu"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                       else "cuda not available")
    return meta


# ---------------------------------------------------------------------- run
def run_suite(args):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    scripts = args.only.split(",") if args.only else SCRIPTS
    results = {}
    for script in scripts:
        if args.device != "cpu" and script in CPU_ONLY:
            print(f"== {script}: skipped on {args.device}", flush=True)
            continue
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        cmd = [sys.executable, str(HERE / script), "--json", out,
               "--device", args.device, "--threads", str(args.threads)]
        if args.quick:
            cmd.append("--quick")
        print(f"== {script}", flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=HERE, timeout=args.timeout,
                                  capture_output=True, text=True)
            print(proc.stdout[-4000:], end="", flush=True)
            if proc.returncode == 0:
                results[script] = json.loads(Path(out).read_text())
            else:
                print(proc.stderr[-4000:], flush=True)
                results[script] = {"error": proc.stderr[-2000:]}
        except subprocess.TimeoutExpired:
            results[script] = {"error": f"timed out after {args.timeout} s"}
            print(f"   timed out after {args.timeout} s", flush=True)
        finally:
            Path(out).unlink(missing_ok=True)
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results


# ------------------------------------------------------------------- report
def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _rows(run):
    rows = {}
    if run is None:
        return rows
    for script, res in run["results"].items():
        for r in res.get("rows", []):
            rows[r["id"]] = dict(r, script=script, load=(res["loadavg_start"],
                                                         res["loadavg_end"]),
                                 threads=res["threads"])
    return rows


def _errors(run):
    if run is None:
        return {}
    return {s: r["error"] for s, r in run["results"].items() if "error" in r}


def _met(value):
    return {True: "yes", False: "no", None: "-"}[value]


def _cell(r):
    if r is None:
        return "-", "-"
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    return f"{r['measured_text']} / {r['reference_text']}", ratio


def _commit(run):
    code = run["meta"]["code"]
    c = (code["commit"] or "unknown")[:7]
    c += " + uncommitted changes" if code["uncommitted_changes_in_package"] else ""
    later = [(r["code"] or "unknown")[:7] for r in run.get("reruns", [])]
    later = [x for x in dict.fromkeys(later) if x != c]
    return c + (f", reruns at {', '.join(later)}" if later else "")


def _meta_lines(label, run):
    m = run["meta"]
    loads = [tuple(r["loadavg_start"]) for r in run["results"].values()
             if "loadavg_start" in r]
    load_1min = [round(x[0], 2) for x in loads]
    v = m["versions"]
    lines = [
        f"- **{label}**: code `{_commit(run)}` ({m['code']['subject']}), run "
        f"{m['date']}, {m['mode']} mode, device `{m['device']}`"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f", torch threads {m['threads']}",
        f"  - machine: {m['machine']['cpu']}, {m['machine']['cores']} cores, "
        f"{m['machine']['ram_gib']} GiB RAM ({m['machine']['platform']})",
        f"  - python {v['python']}, torch {v['torch']}, skorch {v['skorch']}, "
        f"scikit-learn {v['scikit-learn']}, fairlearn {v['fairlearn']}, numpy "
        f"{v['numpy']}, joblib {v['joblib']}, dask {v['dask']}, distributed "
        f"{v['distributed']}",
        f"  - load average (1 min) at the start of each script: {load_1min}; "
        f"whole run {run.get('wall_s', 0):.0f} s",
    ]
    for r in run.get("reruns", []):
        lines.append(f"  - rerun {r['date']} of {', '.join(r['scripts'])} "
                     f"(code `{(r['code'] or 'unknown')[:7]}`), replacing "
                     "those rows")
    return lines


#: (title, before file, after file) of each before/after table, in order.
PAIRS = [
    ("Issues 14-16 (solver, store, layout): quick mode, e1ed9dd (before) and now",
     "before_e1ed9dd.json", "after.json"),
    ("Results at the issue's sizes (full mode; issue 8, d32b871 -> fef0512)",
     "before_full.json", "after_full.json"),
    ("Quick mode of issue 8 (d32b871 -> fef0512)", "before.json",
     "after_issue8.json"),
]


def _pair_table(title, before, after):
    b_rows, a_rows = _rows(before), _rows(after)
    ids = list(dict.fromkeys([*b_rows, *a_rows]))
    b_label = f"before ({_commit(before)})" if before else "before"
    a_label = f"after ({_commit(after)})" if after else "after"
    modes = {r["meta"]["mode"] for r in (before, after) if r}
    out = [
        f"## {title}",
        "",
        f"Mode: {', '.join(sorted(modes))}. Runs:",
        "",
    ]
    for label, run in ((b_label, before), (a_label, after)):
        if run is not None:
            out += _meta_lines(label, run)
    out += [
        "",
        f"| row | target | {b_label}: ours / reference | ratio | "
        f"{a_label}: ours / reference | ratio | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in ids:
        b, a = b_rows.get(i), a_rows.get(i)
        any_r = a or b
        bm, br = _cell(b)
        am, ar = _cell(a)
        out.append(
            f"| `{i}`: {any_r['what']} | {any_r['target']} | {bm} | {br} | {am} | "
            f"{ar} | {_met(a['met']) if a else '-'} |"
        )
    out += ["", "Details (sizes, the references' repeats, load):", ""]
    for i in ids:
        any_r = a_rows.get(i) or b_rows.get(i)
        out.append(f"- `{i}` ({any_r['script']})")
        for label, rows in ((b_label, b_rows), (a_label, a_rows)):
            r = rows.get(i)
            if r is not None:
                load = r["load"][0][0]
                out.append(f"  - {label}: {r['notes']} (load {load:.2f} at start, "
                           f"torch threads {r['threads']})")
    errors = {**{f"{b_label} {k}": v for k, v in _errors(before).items()},
              **{f"{a_label} {k}": v for k, v in _errors(after).items()}}
    for k, v in errors.items():
        last = v.strip().splitlines()[-1] if v.strip() else "?"
        out.append(f"- failed: {k}: `{last}`")
    return out


def write_report(path=REPORT):
    runs = [(title, _load(b), _load(a)) for title, b, a in PAIRS]
    gpu = _load("gpu.json")
    if not any(b or a for _, b, a in runs):
        raise SystemExit("no results in benchmarks/results/: run the suite first")
    out = [
        "# Performance",
        "",
        "Written by `benchmarks/run.py` from the JSON files in "
        "`benchmarks/results/` (regenerate with `python benchmarks/run.py "
        "--report-only`; rerun the suite with `python benchmarks/run.py "
        "[--quick]`). Each row is measured side by side with its reference in "
        "the same process; the ratio is the row's figure of merit (what it "
        "divides is in the row's name). \"met\" is judged on the after run. "
        "\"before\" is the baseline commit named in each section's title, run "
        "from a git worktree with `PYTHONPATH` pointing at it; the current "
        "scripts run against it (a parameter the old estimator lacks is "
        "dropped and named in the row's notes).",
        "",
        "These are wall-clock timings on a shared machine: other processes ran "
        "at the same time (see the load averages), so single figures move by "
        "tens of percent between runs; the references are measured around our "
        "figure to share the same load.",
        "",
    ]
    for title, before, after in runs:
        if before or after:
            out += _pair_table(title, before, after) + [""]
    if gpu is not None:
        g_rows = _rows(gpu)
        out += [
            "## GPU",
            "",
            f"Same scripts with `--device {gpu['meta']['device']}`.",
            "",
            *_meta_lines(f"GPU run ({_commit(gpu)})", gpu),
            "",
            "| row | target | ours / reference | ratio | met |",
            "|---|---|---|---|---|",
        ]
        for i, g in g_rows.items():
            gm, gr = _cell(g)
            out.append(f"| `{i}`: {g['what']} | {g['target']} | {gm} | {gr} | "
                       f"{_met(g['met'])} |")
        out += [""] + [f"- `{i}`: {g['notes']}" for i, g in g_rows.items()]
        for k, v in _errors(gpu).items():
            last = v.strip().splitlines()[-1] if v.strip() else "?"
            out.append(f"- failed: {k}: `{last}`")
        out.append("")
    notes = RESULTS / "notes.md"
    if notes.exists():
        out += [notes.read_text().strip(), ""]
    path.write_text("\n".join(out))
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "after.json"))
    parser.add_argument("--only", default=None,
                        help="comma-separated scripts (default: all)")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds per script")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        t0 = time.perf_counter()
        meta = metadata(args)
        results = run_suite(args)
        run = {"meta": meta, "results": results,
               "wall_s": time.perf_counter() - t0,
               "loadavg_after": list(os.getloadavg())}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.only and out.exists():  # merge into an earlier run
            old = json.loads(out.read_text())
            old["results"].update(results)
            old.setdefault("reruns", []).append(
                {"date": meta["date"], "scripts": sorted(results),
                 "code": meta["code"]["commit"]})
            run = old
        out.write_text(json.dumps(run, indent=1) + "\n")
        print(f"wrote {out}")
    if not args.no_report:
        write_report()


if __name__ == "__main__":
    main()
