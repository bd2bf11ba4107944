"""Shared pieces of the performance suite: backbones, data, timers, reporting.

Every benchmark script imports this module, measures one or more rows of the
table of issue 8 (our figure and its reference side by side, in the same
process), prints the rows and ends with one line ``ratio <id> = <value>`` per
row. With ``--json PATH`` it also writes the rows for ``benchmarks/run.py``.

Nothing here asserts a timing: these are benchmarks, not tests.
"""

import argparse
import json
import os
import sys
import threading
import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn


# --------------------------------------------------------------------- CLI
def parse_args(description, argv=None):
    """Parse the options shared by every benchmark script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes: the whole suite in a few minutes")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for the run (default 1)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.load_start = os.getloadavg()
    args.t_start = time.perf_counter()
    return args


# -------------------------------------------------------------- backbones
def cnn_backbone(seed=0):
    """Random-weight CNN for 3x32x32 images; ``head`` is 2048 -> 64 -> 2."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(2048, 64), nn.ReLU(), nn.Linear(64, 2))
    return nn.Sequential(OrderedDict(trunk=trunk, head=head)).eval()


def wide_mlp_backbone(seed=0, n_in=104):
    """Random-weight MLP 104-2048-2048-64-2; ``head`` is 2048 -> 64 -> 2."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Linear(n_in, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
    )
    head = nn.Sequential(nn.Linear(2048, 64), nn.ReLU(), nn.Linear(64, 2))
    return nn.Sequential(OrderedDict(trunk=trunk, head=head)).eval()


def small_mlp_backbone(seed=0, n_in=104):
    """Random-weight MLP 104-256-256-64-2 (for the growth-in-N row)."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
    )
    head = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 2))
    return nn.Sequential(OrderedDict(trunk=trunk, head=head)).eval()


# -------------------------------------------------------------------- data
def tabular_data(n, n_features=104, seed=0):
    """float32 X, binary y and a binary sensitive feature correlated with y."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features), dtype=np.float32)
    score = X[:, :8].sum(axis=1) + rng.standard_normal(n)
    y = (score > 0).astype(np.int64)
    s = np.where(rng.random(n) < 0.3 + 0.4 * y, "a", "b")
    return X, y, s


def image_data(n, seed=0):
    """float32 N x 3 x 32 x 32 images, binary y, binary sensitive feature."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
    score = X[:, 0, :8, :8].mean(axis=(1, 2)) * 8 + rng.standard_normal(n)
    y = (score > 0).astype(np.int64)
    s = np.where(rng.random(n) < 0.3 + 0.4 * y, "a", "b")
    return X, y, s


# ---------------------------------------------------------------- timing
def sync(device):
    """Wait for queued device work so a timer sees it."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device="cpu"):
    """Run ``fn()``; return (seconds, result)."""
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - t0, result


@torch.no_grad()
def forward_pass(model, X, batch_size=128, device="cpu"):
    """One bare ``no_grad`` forward pass of ``model`` over ``X`` in batches.

    The reference of the fit-time rows: the unavoidable cost of a fit. The
    model is put on ``device`` before the clock starts; each batch of the CPU
    array is copied to the device, as a fit must.
    """
    model = model.to(device).eval()
    X_t = torch.from_numpy(X)

    def run():
        out = None
        for i in range(0, len(X_t), batch_size):
            out = model(X_t[i : i + batch_size].to(device))
        return out

    return timed(run, device)[0]


def best_of(fn, repeat):
    """Smallest of ``repeat`` timings of ``fn()`` (seconds)."""
    return min(fn() for _ in range(repeat))


_THREADS_SEEN = set()


def _record_threads(module, args):
    _THREADS_SEEN.add(torch.get_num_threads())


class ThreadsSeen:
    """Record ``torch.get_num_threads()`` whenever ``module`` runs forward.

    A fit may change the thread count for its own duration; the rows report
    what the backbone saw, so a ratio never compares different thread counts
    unknowingly. The hook is a module-level function, so the deep copy a fit
    makes of the backbone keeps recording into the same set.
    """

    def __init__(self, module):
        _THREADS_SEEN.clear()
        self._handle = module.register_forward_pre_hook(_record_threads)

    def remove(self):
        self._handle.remove()
        return sorted(_THREADS_SEEN)


_ROWS_SEEN = [0]


def _count_rows(module, args):
    _ROWS_SEEN[0] += int(args[0].shape[0]) if args else 0


class RowCounter:
    """Count the rows that go through ``module`` (a module-level hook, so the
    deep copies a fit or a search makes keep counting into the same total)."""

    def __init__(self, module):
        _ROWS_SEEN[0] = 0
        self._handle = module.register_forward_pre_hook(_count_rows)

    @property
    def rows(self):
        return _ROWS_SEEN[0]

    def reset(self):
        _ROWS_SEEN[0] = 0

    def remove(self):
        self._handle.remove()
        return _ROWS_SEEN[0]


class PeakRSS:
    """Sample the process RSS in a thread; ``peak`` is the largest seen (bytes)."""

    def __init__(self, interval=0.002):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def rss(self):
        return self._proc.memory_info().rss

    def __enter__(self):
        self.start = self.rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def above_start(self):
        return self.peak - self.start


# ------------------------------------------------------- estimator access
def estimator(backbone, **params):
    """A ``FairLowRankFineTuner`` with the parameters this code version knows.

    The suite runs on the baseline (d32b871) and on the current code; a
    parameter that one of them lacks is dropped (and listed in the row's
    notes by the caller through :func:`dropped_params`).
    """
    from sklearn_winfair import FairLowRankFineTuner

    known = FairLowRankFineTuner._get_param_names()
    kept = {k: v for k, v in params.items() if k in known}
    return FairLowRankFineTuner(backbone, **kept)


def dropped_params(params):
    """Names in ``params`` that this code version's estimator does not take."""
    from sklearn_winfair import FairLowRankFineTuner

    known = FairLowRankFineTuner._get_param_names()
    return sorted(k for k in params if k not in known)


# ---------------------------------------------------------------- output
def make_row(id, what, measured, reference, ratio, target, met, *, unit="s",
             measured_text=None, reference_text=None, notes="", params=None):
    """One row of the report (a dict that survives JSON)."""
    return {
        "id": id,
        "what": what,
        "measured": float(measured) if measured is not None else None,
        "reference": float(reference) if reference is not None else None,
        "unit": unit,
        "measured_text": measured_text or fmt(measured, unit),
        "reference_text": reference_text or fmt(reference, unit),
        "ratio": float(ratio) if ratio is not None else None,
        "target": target,
        "met": None if met is None else bool(met),
        "notes": notes,
        "params": params or {},
    }


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3g} s" if value >= 0.01 else f"{value * 1e3:.3g} ms"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.3g} {unit}".strip()


def emit(args, rows, script):
    """Print the rows, write them to ``--json``, print each ratio last."""
    load_end = os.getloadavg()
    payload = {
        "script": script,
        "quick": args.quick,
        "device": args.device,
        "threads": args.threads,
        "loadavg_start": list(args.load_start),
        "loadavg_end": list(load_end),
        "wall_s": time.perf_counter() - args.t_start,
        "rows": rows,
    }
    for r in rows:
        print(f"{r['id']}: {r['what']}")
        print(f"    measured {r['measured_text']}  reference {r['reference_text']}"
              f"  target {r['target']}  met {r['met']}")
        if r["notes"]:
            print(f"    {r['notes']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    sys.stdout.flush()
    for r in rows:
        ratio = "nan" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(f"ratio {r['id']} = {ratio}")
