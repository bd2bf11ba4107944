"""Peak memory of a fit above the process just before it.

Row 8 of issue 8: wide MLP 104-2048-2048-64-2, ``rank=None``, float32 X of
N x 104 (N = 100,000: X = 40 MiB, the cached 64-d features 24 MiB). Each case
runs in its own fresh process: build X and the backbone, run a warm-up fit on
256 rows (one-time library set-up is not a cost of the fit), then sample the
resident set size (psutil, every 2 ms, in a thread) during the fit. numpy's
own allocations are also traced (``tracemalloc``; torch's are not visible
there).

Reference: what the fit has to hold, X plus the features (with the cache) or
X alone (without). Target: at most that plus a few batches (16 MiB here: a
batch of 128 rows of the 2048-wide layers is 1 MiB).

``max_epochs=2``: the peak does not grow with epochs.
"""

import json
import subprocess
import sys
import tracemalloc

import _common as c

MiB = 2**20
SLACK = 16 * MiB


def one_case(n, cache, device):
    X, y, s = c.tabular_data(n)
    backbone = c.wide_mlp_backbone()
    params = dict(rank=None, max_epochs=2, batch_size=128, random_state=0,
                  cache_features=cache, device=device)
    c.estimator(backbone, **params).fit(X[:256], y[:256])  # warm-up
    est = c.estimator(backbone, **params)
    cuda = str(device).startswith("cuda")
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_start = torch.cuda.memory_allocated()
    tracemalloc.start()
    with c.PeakRSS() as mem:
        est.fit(X, y, sensitive_features=s)
    _, np_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    extra = {}
    if cuda:
        extra["cuda_peak_above_start"] = torch.cuda.max_memory_allocated() - cuda_start
    return {**extra, "above_start": mem.above_start, "start": mem.start,
            "tracemalloc_peak": np_peak, "x_bytes": X.nbytes,
            "feature_bytes": n * 64 * 4}


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--case":
        _, _, n, cache, device = sys.argv
        print(json.dumps(one_case(int(n), cache == "1", device)))
        return
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n = 20_000 if args.quick else 100_000
    rows = []
    for cache in (True, False):
        out = subprocess.run(
            [sys.executable, __file__, "--case", str(n), str(int(cache)),
             args.device],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        need = r["x_bytes"] + (r["feature_bytes"] if cache else 0)
        measured = r["above_start"] / MiB
        ratio = r["above_start"] / need
        what = ("peak memory of a fit above the process, wide MLP, "
                + ("cache_features=True" if cache else "cache_features=False"))
        target = (f"<= X + features + 16 MiB = {(need + SLACK) / MiB:.0f} MiB"
                  if cache else f"<= X + 16 MiB = {(need + SLACK) / MiB:.0f} MiB")
        rows.append(c.make_row(
            "memory_cache" if cache else "memory_nocache", what,
            measured, need / MiB, ratio, target,
            r["above_start"] <= need + SLACK, unit="MiB",
            reference_text=(f"X {r['x_bytes'] / MiB:.1f} + features "
                            f"{r['feature_bytes'] / MiB:.1f} MiB" if cache
                            else f"X {r['x_bytes'] / MiB:.1f} MiB"),
            notes=(f"N={n}; RSS before the fit {r['start'] / MiB:.0f} MiB; "
                   f"numpy peak (tracemalloc) {r['tracemalloc_peak'] / MiB:.1f} "
                   "MiB"
                   + (f"; CUDA peak above start "
                      f"{r['cuda_peak_above_start'] / MiB:.1f} MiB"
                      if "cuda_peak_above_start" in r else "")),
            params={"n": n, **r},
        ))
        print(f"cache={cache}: {measured:.1f} MiB above start "
              f"(needs {need / MiB:.1f} MiB)", flush=True)
    c.emit(args, rows, "bench_memory.py")


if __name__ == "__main__":
    main()
