"""What the feature store's checks cost: before (commit e1ed9dd) and after.

Issue 14. The store of commit ``e1ed9dd`` (``sklearn_winfair/_features.py``,
read with ``git show`` and imported from a temporary file) against today's
``sklearn_winfair._store``, in one process, on the same rows:

1. ``store_warm_search``: the store's work in a warm ``GridSearchCV`` (9
   candidates x 3 folds + refit, CNN on 3x32x32 images, ``head="head"``):
   28 backbone fingerprints and 55 feature look-ups (27 fits, 27 scorings,
   the refit) on a folder that already holds every row. Before: fingerprint,
   row keys, look-up. After: the same plus the checks (the backbone
   recomputes 32 stored rows the first time the process reads a shard, one
   row on every later call), with the fingerprint memoized.
   Training is not timed: it is the same code either way.
2. ``store_fingerprint``: one fingerprint of the CNN, before and after (a
   memo hit, as every fit of a search but the first).
3. ``store_many_predicts``: 400 ``predict``-sized calls of 2 new rows each on
   a small MLP (the issue's "400 calls of predict"): the mean time of the
   last 50 calls and the number of shard files left.
"""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from sklearn_winfair._features import extract_head_inputs
from sklearn_winfair._inputs import InputData
from sklearn_winfair._store import backbone_fingerprint, cached_features

BEFORE = "e1ed9dd"
ROOT = Path(__file__).resolve().parents[1]
N_CANDIDATES = 9


def _old_store():
    """Import ``_features.py`` of commit BEFORE as a module of the package."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:sklearn_winfair/_features.py"], cwd=ROOT,
        check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="winfair-old-")) / "_features_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(
        "sklearn_winfair._features_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _extractor(model, head, device):
    def extract(rows):
        out = [f for f in extract_head_inputs(
            model, head, rows, batch_size=128, device=device,
            float_dtype=torch.float32, check_output=False)]
        return torch.cat(out)
    return extract


def _old_features(old, location, key, data, extract, device):
    """The store branch of the estimator at commit BEFORE."""
    store = old.FeatureStore(location, key)
    keys = old.row_keys(data)
    stored, found = store.lookup(keys)
    missing = np.flatnonzero(~found)
    if missing.size == 0:
        return torch.from_numpy(stored).to(device)
    new = extract(data if missing.size == len(keys) else data.take(missing))
    store.add(keys[missing], new.cpu().numpy())
    if stored is None:
        return new
    features = torch.from_numpy(stored).to(device)
    features[torch.from_numpy(missing).to(device)] = new
    return features


def _calls(y, n):
    """(purpose, rows) of a 9 x 3-fold search and its refit, in sklearn's order."""
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0)
                  .split(np.zeros(n), y))
    calls = []
    for _ in range(N_CANDIDATES):
        for train, test in splits:
            calls += [("fit", train), ("predict", test)]
    calls.append(("fit", np.arange(n)))
    return calls


def _warm_search(features_fn, fingerprint_fn, calls, data):
    t0 = time.perf_counter()
    for purpose, rows in calls:
        if purpose == "fit":
            key = fingerprint_fn()
        features_fn(key, data.take(rows), purpose)
    return time.perf_counter() - t0


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    old = _old_store()
    n = 1_000 if args.quick else 5_000
    X, y, _ = c.image_data(n)
    backbone = c.cnn_backbone()
    model = backbone.to(device)
    extract = _extractor(model, model.head, device)
    data = InputData(X)
    calls = _calls(y, n)
    rows = []

    # 1. a warm search's store overhead
    folders = [tempfile.mkdtemp(prefix="winfair-store-") for _ in range(2)]
    try:
        def old_fp():
            return old.backbone_fingerprint(backbone, "head")

        def old_call(key, rows_data, purpose):
            return _old_features(old, folders[0], key, rows_data, extract, device)

        def new_fp():
            return backbone_fingerprint(backbone, "head")

        def new_call(key, rows_data, purpose):
            return cached_features(folders[1], key, rows_data, extract,
                                   purpose=purpose, random_state=0)

        old_call(old_fp(), data, "fit")  # warm: every row stored, cache loaded
        new_call(new_fp(), data, "fit")
        for _ in range(2):
            old_call(old_fp(), data, "fit")
            new_call(new_fp(), data, "fit")
        old_runs, new_runs = [], []
        for _ in range(3):  # alternated, so that both see the same load
            old_runs.append(_warm_search(old_call, old_fp, calls, data))
            new_runs.append(_warm_search(new_call, new_fp, calls, data))
        old_s, new_s = min(old_runs), min(new_runs)
        shards = [len(list(Path(f).rglob("*.npz"))) for f in folders]
    finally:
        for f in folders:
            shutil.rmtree(f, ignore_errors=True)
    ratio = new_s / old_s
    rows.append(c.make_row(
        "store_warm_search",
        "store work of a warm 9 x 3-fold search + refit (28 fingerprints, 55 "
        "look-ups), CNN, after / before",
        new_s, old_s, ratio, "<= 1.1x", ratio <= 1.1,
        measured_text=f"after {new_s:.3f} s", reference_text=f"before {old_s:.3f} s",
        notes=(f"N={n} 3x32x32 rows, best of 3 (the shard was checked "
               f"during the warm-up, so each call recomputes one row); shards "
               f"{shards[1]} after, {shards[0]} before; before = {BEFORE}"),
        params={"n": n, "calls": len(calls), "before": BEFORE},
    ))
    print(f"warm search store work: before {old_s:.3f} s, after {new_s:.3f} s, "
          f"ratio {ratio:.2f}", flush=True)

    # 2. one fingerprint (a memo hit after)
    def timing(fn):
        return lambda: c.timed(fn)[0]

    backbone_fingerprint(backbone, "head")
    old_fp_s = c.best_of(timing(lambda: old.backbone_fingerprint(backbone, "head")),
                         5)
    new_fp_s = c.best_of(timing(lambda: backbone_fingerprint(backbone, "head")), 5)

    def no_memo():
        _clear_memo()
        return backbone_fingerprint(backbone, "head")

    cold = c.best_of(timing(no_memo), 5)
    rows.append(c.make_row(
        "store_fingerprint", "one backbone fingerprint, CNN, after (memo hit) / before",
        new_fp_s, old_fp_s, new_fp_s / old_fp_s, "<= 1x", new_fp_s <= old_fp_s,
        notes=f"after without the memo (first fit of a search): {cold * 1e3:.1f} ms",
        params={"cold_after_s": cold},
    ))
    print(f"fingerprint: before {old_fp_s * 1e3:.2f} ms, after {new_fp_s * 1e3:.2f}"
          f" ms (memo), {cold * 1e3:.2f} ms (no memo)", flush=True)

    # 3. 400 small predicts
    mlp = c.small_mlp_backbone(n_in=16).to(device)
    mlp_extract = _extractor(mlp, mlp.head, device)
    base = InputData(np.random.default_rng(1).standard_normal((200, 16),
                                                              dtype=np.float32))
    times = {}
    counts = {}
    for label in ("before", "after"):
        folder = tempfile.mkdtemp(prefix="winfair-store-")
        try:
            if label == "before":
                key = old.backbone_fingerprint(mlp, "head")
                _old_features(old, folder, key, base, mlp_extract, device)
            else:
                key = backbone_fingerprint(mlp, "head")
                cached_features(folder, key, base, mlp_extract, purpose="fit")
            per_call = []
            for i in range(400):
                new = InputData(np.random.default_rng(100 + i).standard_normal(
                    (2, 16), dtype=np.float32))
                t0 = time.perf_counter()
                if label == "before":
                    _old_features(old, folder, key, new, mlp_extract, device)
                else:
                    cached_features(folder, key, new, mlp_extract,
                                    purpose="predict", random_state=i)
                per_call.append(time.perf_counter() - t0)
            times[label] = (np.mean(per_call[:50]), np.mean(per_call[-50:]))
            counts[label] = len(list(Path(folder).rglob("*.npz")))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    after_last, before_last = times["after"][1], times["before"][1]
    rows.append(c.make_row(
        "store_many_predicts",
        "400 predicts of 2 new rows: mean time of the last 50, after / before",
        after_last, before_last, after_last / before_last, "shards bounded",
        counts["after"] <= 17,
        notes=(f"first 50: before {times['before'][0] * 1e3:.2f} ms, after "
               f"{times['after'][0] * 1e3:.2f} ms; shard files left: before "
               f"{counts['before']}, after {counts['after']} (each call writes "
               "one shard; after merges past 16)"),
        params={"shards_before": counts["before"], "shards_after": counts["after"],
                "first50_before_s": times["before"][0],
                "first50_after_s": times["after"][0]},
    ))
    print(f"400 predicts: last 50 before {before_last * 1e3:.2f} ms, after "
          f"{after_last * 1e3:.2f} ms; shards {counts}", flush=True)
    c.emit(args, rows, "bench_store.py")


def _clear_memo():
    from sklearn_winfair import _store
    _store._WEIGHTS_MEMO.clear()


if __name__ == "__main__":
    main()
