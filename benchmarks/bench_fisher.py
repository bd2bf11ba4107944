"""Per-sample Fisher of an MLP head: the package against a batched closed form.

Row 5 of issue 8. The package's per-group empirical Fisher row importance
(``sklearn_winfair._importance.group_row_importance``, ``torch.func.vmap`` at
the baseline) of the 2-layer head 2048 -> 64 -> ReLU -> 2, on features of N
rows, batch 128 (the estimator's default), against the reference written
here: one forward and one backward of the *summed* loss per batch. Rows of a
batch are independent (eval mode), so the gradient of the summed loss with
respect to a layer's output ``g_i`` is row i's own; the per-sample gradient of
``W`` is ``g_i x_i^T`` and its squared row sums are
``x_ij^2 * ||g_i||^2`` -- no per-sample graph at all. The two must agree; the
largest relative difference is printed.
"""

import _common as c
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def closed_form_fisher(head, features, y, codes, n_groups, batch_size):
    """Per-group mean over rows of ``sum_c (dL_i/dW[j, c])**2`` per Linear layer."""
    linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
    store = {}
    handles = []
    for name, layer in linears:
        def hook(module, args, out, name=name):
            store[name] = (args[0].detach(), out)
        handles.append(layer.register_forward_hook(hook))
    dev = features.device
    sums = {n: torch.zeros(n_groups, m.in_features, dtype=torch.float64, device=dev)
            for n, m in linears}
    counts = torch.bincount(codes, minlength=n_groups).to(torch.float64)
    params = [p for p in head.parameters()]
    req = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    head.eval()
    try:
        for i in range(0, len(features), batch_size):
            xb = features[i : i + batch_size]
            yb, cb = y[i : i + batch_size], codes[i : i + batch_size]
            store.clear()
            with torch.enable_grad():
                xb = xb.detach().requires_grad_(True)  # so the graph exists
                loss = F.cross_entropy(head(xb), yb, reduction="sum")
                outs = [store[n][1] for n, _ in linears]
                grads = torch.autograd.grad(loss, outs)
            for (name, _), g in zip(linears, grads, strict=True):
                x = store[name][0]
                rows = x.square() * g.square().sum(dim=1, keepdim=True)
                sums[name].index_add_(0, cb, rows.to(torch.float64))
    finally:
        for h in handles:
            h.remove()
        for p, r in zip(params, req, strict=True):
            p.requires_grad_(r)
    denom = counts.clamp(min=1).unsqueeze(1).to(dev)
    return {n: (s / denom).cpu().numpy() for n, s in sums.items()}


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    from sklearn_winfair._importance import group_row_importance

    n = 5_000 if args.quick else 20_000
    bs = 128
    dev = args.device
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(2048, 64), nn.ReLU(), nn.Linear(64, 2)).to(dev)
    feats = torch.relu(torch.randn(n, 2048)).to(dev)
    y = torch.randint(0, 2, (n,)).to(dev)
    codes = torch.randint(0, 2, (n,)).to(dev)

    def ours():
        return group_row_importance(head, feats, y, codes, 2, batch_size=bs)

    def ref():
        return closed_form_fisher(head, feats, y, codes, 2, bs)

    @torch.no_grad()
    def forward():
        for i in range(0, n, bs):
            head(feats[i : i + bs])

    ours(), ref(), forward()  # warm-up on the whole set (small)
    t_ref1, r = c.timed(ref, dev)
    t_ours, o = c.timed(ours, dev)
    t_ref2, _ = c.timed(ref, dev)
    t_fwd = min(c.timed(forward, dev)[0] for _ in range(3))
    t_ref = (t_ref1 + t_ref2) / 2
    rel = max(
        float(np.max(np.abs(o[k] - r[k])) / np.max(np.abs(r[k]))) for k in r
    )
    ratio = t_ours / t_ref
    rows = [c.make_row(
        "fisher_mlp_head",
        "per-sample Fisher of an MLP head 2048-64-2 / batched closed form",
        t_ours, t_ref, ratio, "<= 2x", ratio <= 2,
        notes=(f"N={n}, batch {bs}; closed form {t_ref1:.3f} s and {t_ref2:.3f} s "
               f"around ours; ours = {t_ours / t_fwd:.1f}x and closed form = "
               f"{t_ref / t_fwd:.1f}x a no_grad forward pass of the head "
               f"({t_fwd * 1e3:.0f} ms); largest relative difference ours vs "
               f"closed form {rel:.1e}"),
        params={"n": n, "batch_size": bs, "head_forward_s": t_fwd,
                "max_rel_diff": rel},
    )]
    c.emit(args, rows, "bench_fisher.py")


if __name__ == "__main__":
    main()
