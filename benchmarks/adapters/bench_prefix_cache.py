"""Seconds per adapter fit: the frozen prefix cached, or the whole model each step.

Issue 19, item 3. Side by side in one process, on two backbones:

* ``cnn``: ``benchmarks/_common.py``'s CNN for 3x32x32 images (three conv
  blocks, head 2048 -> 64 -> 2), adapters on the last block's conv
  (``trunk.6``, 64 -> 128) and the layer before the head (``head.0``,
  2048 -> 64); the head is ``head.2``. The cached prefix is ``trunk.0-5``.
* ``mlp``: the paper's 13-20-20-2 MLP (``build_paper_mlp``), an adapter on
  its 20 -> 20 layer (``0.2``); the cached prefix is ``0.0-1`` (13 -> 20).

Rows, each ``max_epochs`` epochs of batch 128 (the training-loss stopping
rule off, so every fit runs them all), ``--repeats`` fits of each taken in
turn (so load from other processes shifts every row alike); the table gives
the fastest (the least disturbed by other processes on a shared machine)
and the median:

* ``head only``: ``rank=None``, no ``target_modules``, ``solver="adam"``
  (the same epochs; ``"auto"`` would pick L-BFGS);
* ``adapters, prefix cached`` / ``adapters, whole model``: the estimator
  with ``target_modules`` and ``cache_features=True`` / ``False``, for
  ``importance="uniform"`` (PiSSA: no Fisher) and ``"neutral"`` (the
  method: per-group Fisher of the adapted layers first);
* ``peft loop``: the same PiSSA factors in peft's LoRA layers
  (:func:`~sklearn_winfair._adapters.to_peft`), trained with the head by a
  plain torch loop (``randperm``, Adam, cross-entropy), the whole model each
  step as peft runs it; ``ours loop``: the same loop on our layers. Set-up
  (SVD, injection, export) included.

Then one training step alone (forward, backward, Adam step on one batch of
128; median of 30 after 5 warm-up steps; plain torch, no skorch): the
suffix on cached prefix outputs, the whole model with our layers, the
whole model with peft's, and the head alone on cached features.

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/bench_prefix_cache.py

Writes ``benchmarks/adapters/results/prefix_cache/result.json`` and
``result.md``.
"""

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _common as c  # noqa: E402

from sklearn_winfair import FairLowRankFineTuner  # noqa: E402
from sklearn_winfair._adapters import (  # noqa: E402
    find_prefix_cut,
    inject_adapters,
    split_at_cut,
    to_peft,
)
from sklearn_winfair.reproduction._pretrain import build_paper_mlp  # noqa: E402

OUT = HERE / "results" / "prefix_cache"
BATCH = 128


def settings(kind, quick):
    if kind == "cnn":
        n = 600 if quick else 3000
        X, y, s = c.image_data(n)
        return dict(backbone=c.cnn_backbone(), X=X, y=y, s=s, head="head.2",
                    targets=["trunk.6", "head.0"], rank=4)
    n = 4000 if quick else 20_000
    X, y, s = c.tabular_data(n, n_features=13)
    return dict(backbone=build_paper_mlp(13), X=X, y=y, s=s, head="1",
                targets=["0.2"], rank=2)


def estimator_fit(cfg, epochs, **params):
    est = FairLowRankFineTuner(
        cfg["backbone"], max_epochs=epochs, batch_size=BATCH, lr=1e-3,
        n_iter_no_change=epochs + 1, random_state=0, **params)
    t0 = time.perf_counter()
    est.fit(cfg["X"], cfg["y"], sensitive_features=cfg["s"])
    seconds = time.perf_counter() - t0
    assert est.n_iter_ == epochs, est.n_iter_
    return seconds, est


def _trainable(model, head):
    model.get_submodule(head).requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def loop_fit(cfg, epochs, use_peft):
    """PiSSA factors, then a plain torch loop over the whole model."""
    t0 = time.perf_counter()
    adapted, _ = inject_adapters(cfg["backbone"], cfg["targets"], cfg["rank"],
                                 init="uniform")
    model = to_peft(adapted) if use_peft else adapted
    inner = model.base_model.model if use_peft else model
    params = _trainable(inner, cfg["head"])
    model.eval()  # the trunk in eval mode, as the estimator runs it
    opt = torch.optim.Adam(params, lr=1e-3)
    X, y = torch.from_numpy(cfg["X"]), torch.from_numpy(cfg["y"])
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def step_seconds(module, params, x, y, steps=30, warmup=5):
    opt = torch.optim.Adam(params, lr=1e-3)
    times = []
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        loss = F.cross_entropy(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_step(cfg):
    """One training step of each kind on one batch of 128 rows."""
    X = torch.from_numpy(cfg["X"][:BATCH])
    y = torch.from_numpy(cfg["y"][:BATCH])
    out = {}
    adapted, _ = inject_adapters(cfg["backbone"], cfg["targets"], cfg["rank"],
                                 init="uniform")
    params = _trainable(adapted, cfg["head"])
    cut, _ = find_prefix_cut(adapted, cfg["targets"])
    prefix, suffix, _, _ = split_at_cut(adapted, cut)
    with torch.no_grad():
        z = prefix(X)
    out["suffix on cached prefix output"] = step_seconds(suffix, params, z, y)
    out["whole model, our layers"] = step_seconds(adapted, params, X, y)
    theirs = to_peft(adapted)
    _trainable(theirs.base_model.model, cfg["head"])
    out["whole model, peft layers"] = step_seconds(
        theirs, [p for p in theirs.parameters() if p.requires_grad], X, y)
    head = copy.deepcopy(cfg["backbone"].get_submodule(cfg["head"]))
    head.requires_grad_(True)
    feats = {}

    def grab(module, args):
        feats["x"] = args[0]

    hook = cfg["backbone"].get_submodule(cfg["head"]).register_forward_pre_hook(grab)
    with torch.no_grad():
        cfg["backbone"](X)
    hook.remove()
    out["head alone on cached features"] = step_seconds(
        head, list(head.parameters()), feats["x"], y)
    return out, len(z[0].flatten())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    result = {"epochs": args.epochs, "batch_size": BATCH, "repeats": args.repeats,
              "quick": args.quick, "models": {}}
    for kind in args.models.split(","):
        cfg = settings(kind, args.quick)
        n = len(cfg["y"])
        steps = args.epochs * -(-n // BATCH)
        ad = dict(target_modules=cfg["targets"], rank=cfg["rank"])
        rows = {
            "head only (rank=None, adam)": lambda cfg=cfg: estimator_fit(
                cfg, args.epochs, rank=None, solver="adam")[0],
            "adapters uniform, prefix cached": lambda cfg=cfg, ad=ad: estimator_fit(
                cfg, args.epochs, importance="uniform", **ad)[0],
            "adapters uniform, whole model": lambda cfg=cfg, ad=ad: estimator_fit(
                cfg, args.epochs, importance="uniform", cache_features=False,
                **ad)[0],
            "adapters neutral, prefix cached": lambda cfg=cfg, ad=ad: estimator_fit(
                cfg, args.epochs, importance="neutral", **ad)[0],
            "adapters neutral, whole model": lambda cfg=cfg, ad=ad: estimator_fit(
                cfg, args.epochs, importance="neutral", cache_features=False,
                **ad)[0],
            "peft loop (uniform, whole model)": lambda cfg=cfg: loop_fit(
                cfg, args.epochs, True),
            "ours loop (uniform, whole model)": lambda cfg=cfg: loop_fit(
                cfg, args.epochs, False),
        }
        # warm-up: one short fit of each estimator kind (imports, kernels)
        small = dict(cfg, X=cfg["X"][:256], y=cfg["y"][:256], s=cfg["s"][:256])
        estimator_fit(small, 1, importance="uniform", **ad)
        estimator_fit(small, 1, importance="uniform", cache_features=False, **ad)
        loop_fit(small, 1, True)
        _, est = estimator_fit(small, 1, importance="uniform", **ad)
        times = {k: [] for k in rows}
        for _ in range(args.repeats):
            for name, fn in rows.items():
                times[name].append(fn())
        steps_alone, width = per_step(cfg)
        result["models"][kind] = {
            "n": n, "targets": cfg["targets"], "rank": cfg["rank"],
            "head": cfg["head"], "frozen_prefix": est.frozen_prefix_,
            "prefix_output_width": width, "steps_per_fit": steps,
            "fit_s": {k: min(v) for k, v in times.items()},
            "fit_s_median": {k: statistics.median(v) for k, v in times.items()},
            "fit_s_all": times, "step_s": steps_alone,
        }
        print(f"{kind}: done", flush=True)
    result["load_average_start"] = load0
    result["load_average_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - t_start
    result["date"] = datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds")
    result["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=HERE).stdout.strip()
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, 1 torch thread"
    result["torch"] = torch.__version__
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    md = report(result)
    (out / "result.md").write_text(md)
    print(md)


def report(result):
    lines = [
        "# Adapters: the frozen prefix cached vs the whole model each step",
        "",
        f"{result['date']}, commit {result['commit']}, {result['machine']}, "
        f"torch {result['torch']}; {result['epochs']} epochs of batch "
        f"{result['batch_size']}; {result['repeats']} fits of each taken in "
        f"turn, fastest and median; load average "
        f"{result['load_average_start'][0]:.2f} at the start, "
        f"{result['load_average_end'][0]:.2f} at the end "
        f"({result['wall_s']:.0f} s in all). Written by "
        "`benchmarks/adapters/bench_prefix_cache.py`.",
        "",
    ]
    for kind, m in result["models"].items():
        fits = m["fit_s"]
        ref = fits["adapters uniform, prefix cached"]
        lines += [
            f"## {kind}: N = {m['n']}, adapters on {m['targets']} at rank "
            f"{m['rank']}, head {m['head']!r}",
            "",
            f"Cached prefix: {m['frozen_prefix']} ({m['prefix_output_width']} "
            f"values per row); {m['steps_per_fit']} steps per fit.",
            "",
            "| fit | s/fit, fastest | s/fit, median | ms/step (fastest s/fit / "
            "steps) | fastest vs prefix cached (uniform) |",
            "|---|---|---|---|---|",
        ]
        for name, v in fits.items():
            lines.append(f"| {name} | {v:.2f} | {m['fit_s_median'][name]:.2f} | "
                         f"{1e3 * v / m['steps_per_fit']:.2f} | {v / ref:.2f}x |")
        lines += ["", "| one training step (batch 128) | ms | vs suffix |",
                  "|---|---|---|"]
        base = m["step_s"]["suffix on cached prefix output"]
        for name, v in m["step_s"].items():
            lines.append(f"| {name} | {1e3 * v:.3f} | {v / base:.2f}x |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    np.random.seed(0)
    main()
