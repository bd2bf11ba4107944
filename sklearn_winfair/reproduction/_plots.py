"""PNG figures of the benchmark (matplotlib, Agg backend).

matplotlib draws; the Pareto front comes from :mod:`._stats`, the module the
tables use too.
"""

import textwrap

import numpy as np

from ._stats import pareto_front

__all__ = ["plot_pareto", "plot_alpha", "plot_importance", "plot_pca",
           "plot_adapters"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError(
            "The benchmark plots need matplotlib: pip install "
            "'sklearn-winfair[benchmarks]', or pass --no-plots."
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, path, title):
    """Title, lay out, save at 120 dpi and close ``fig``."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FAMILY_COLOURS = {"reference": "0.45", "fine-tuning": "C0",
                  "in-processing": "C1", "post-processing": "C2",
                  "pre-processing": "C4"}


def _clip_limits(values, pad=0.06):
    """Axis limits holding the non-outlying values (Tukey's 3 IQR fences)."""
    v = np.asarray(values, float)
    q1, q3 = np.percentile(v, [25, 75])
    iqr = max(q3 - q1, 1e-9)
    keep = v[(v >= q1 - 3 * iqr) & (v <= q3 + 3 * iqr)]
    lo, hi = keep.min(), keep.max()
    span = max(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span


def plot_pareto(summary, path, title, paper_points=None):
    """Err vs ΔDP and Err vs ΔEO with the Pareto front, coloured by family.

    Each method is a numbered point (mean over seeds, bars = std) listed in
    the legend; OURS is a star; the paper's published points (if given) are
    open black diamonds; the dashed line is the Pareto front of our means
    (lower Err and lower gap are better). Points outside Tukey's 3-IQR
    fences are drawn on the border as triangles and named under the figure.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`._stats.summarize` with a
        ``family`` column.
    path : pathlib.Path
        Output PNG.
    title : str
        Figure title.
    paper_points : list of (label, err, dp_gap, eo_gap) or None
        Published points to overlay.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2))
    summary = summary.reset_index(drop=True)
    clipped = set()
    handles = {}
    for ax, gap, label in ((axes[0], "dp_gap", "ΔDP"),
                           (axes[1], "eo_gap", "ΔEO (TPR gap + FPR gap)")):
        x = summary[f"{gap}_mean"].to_numpy()
        y = summary["err_mean"].to_numpy()
        px = [p[2 if gap == "dp_gap" else 3] for p in paper_points or []]
        py = [p[1] for p in paper_points or []]
        xlo, xhi = _clip_limits(np.r_[x, px])
        ylo, yhi = _clip_limits(np.r_[y, py])
        xlo, ylo = min(xlo, 0.0) if xlo < 0.02 else xlo, ylo
        for i, row in summary.iterrows():
            colour = FAMILY_COLOURS.get(row.get("family"), "C7")
            ours = row["method"] == "OURS"
            xi = min(max(x[i], xlo), xhi)
            yi = min(max(y[i], ylo), yhi)
            out = (xi != x[i]) or (yi != y[i])
            if out:
                clipped.add(f"{i + 1} {row['method']} (Err {y[i]:.1f})")
            marker = "^" if out else ("*" if ours else "o")
            h = ax.errorbar(xi, yi, xerr=None if out else row[f"{gap}_std"],
                            yerr=None if out else row["err_std"], fmt=marker,
                            ms=13 if ours else 6, color=colour,
                            mec="black" if ours else colour, capsize=2,
                            elinewidth=0.8, alpha=0.9)
            ax.annotate(str(i + 1), (xi, yi), fontsize=8, xytext=(4, 3),
                        textcoords="offset points")
            handles.setdefault(f"{i + 1:>2} {row['method']}", h)
        cand = np.flatnonzero(summary["family"].to_numpy() != "reference") \
            if "family" in summary else np.arange(len(x))
        front = cand[pareto_front(x[cand], y[cand])]
        fx = np.clip(x[front], xlo, xhi)
        fy = np.clip(y[front], ylo, yhi)
        ax.step(fx, fy, where="post", ls="--", color="0.3", lw=1,
                label="Pareto front (ours)")
        for k, (lab, err, dp, eo) in enumerate(paper_points or []):
            gx = dp if gap == "dp_gap" else eo
            letter = chr(ord("a") + k)
            pxy = (min(max(gx, xlo), xhi), min(max(err, ylo), yhi))
            h = ax.plot(*pxy, "D", mfc="none", mec="black", ms=7)[0]
            ax.annotate(letter, pxy, fontsize=8, xytext=(4, -9),
                        textcoords="offset points", style="italic")
            handles.setdefault(f" {letter} paper: {lab}", h)
        ax.set_xlim(xlo, xhi)
        ax.set_ylim(ylo, yhi)
        ax.set_xlabel(label + " (lower is fairer)")
        ax.set_ylabel("Err = 100 - weighted F1 (%)")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles["Pareto front of our means"] = Line2D([], [], ls="--", color="0.3")
    fig.legend(list(handles.values()), list(handles.keys()), loc="center left",
               bbox_to_anchor=(0.79, 0.5), fontsize=7.5, frameon=False)
    note = ("colour = family (blue fine-tuning, orange in-processing, green "
            "post-processing, purple pre-processing, grey reference); "
            "star = OURS")
    if paper_points:
        note += "; open diamonds = the paper's published points (Table 3)"
    if clipped:
        note += "\n" + textwrap.fill(
            "outside the axes, drawn on the border as triangles: "
            + "; ".join(sorted(clipped)), 190)
    fig.text(0.01, 0.01, note, fontsize=7.5, va="bottom")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 0.79, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_alpha(summary, path, title):
    """Err, ΔDP and ΔEO of OURS against the neutralization weight alpha."""
    plt = _pyplot()
    alphas = summary["method"].str.extract(r"alpha=([\d.]+)")[0].astype(float)
    order = np.argsort(alphas.to_numpy())
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, col, label in zip(axes, ("err", "dp_gap", "eo_gap"),
                              ("Err (%)", "ΔDP", "ΔEO (sum)"), strict=False):
        ax.errorbar(alphas.to_numpy()[order],
                    summary[f"{col}_mean"].to_numpy()[order],
                    yerr=summary[f"{col}_std"].to_numpy()[order], marker="o",
                    capsize=3)
        ax.set_xlabel("alpha (weight of the first group)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _finish(plt, fig, path, title)


def plot_importance(estimator, path, title):
    """Per-group Fisher row importance of each factorized layer (paper Fig. 3).

    Parameters
    ----------
    estimator : FairLowRankFineTuner
        Fitted with ``importance="neutral"`` (has ``group_importance_``).
    path : pathlib.Path
    title : str
    """
    plt = _pyplot()
    layers = estimator.group_importance_ or {}
    fig, axes = plt.subplots(len(layers), 1, figsize=(10, 3 * max(len(layers), 1)),
                             squeeze=False)
    for ax, (name, rows) in zip(axes[:, 0], layers.items(), strict=False):
        d = rows.shape[1]
        width = 0.8 / len(rows)
        for g, row in enumerate(rows):
            ax.bar(np.arange(d) + g * width, row, width=width,
                   label=f"group {estimator.groups_[g]}")
        neutral = estimator.neutral_importance_.get(name)
        if neutral is not None:
            ax.plot(np.arange(d) + 0.4, neutral ** 2, "k.", ms=3,
                    label="neutralized (squared)")
        ax.set_title(f"layer {name}: I_s[j] per input row j")
        ax.set_xlabel("input index j")
        ax.set_ylabel("Fisher importance")
        ax.legend(fontsize=7)
    _finish(plt, fig, path, title)


def plot_pca(features, groups, path, title, max_points=3000, seed=0):
    """2-d PCA of head inputs coloured by group (paper Fig. 1).

    Parameters
    ----------
    features : dict of str to ndarray
        Panel title -> features (n, d).
    groups : ndarray of shape (n,)
    path : pathlib.Path
    title : str
    max_points : int, default=3000
        Random subsample drawn.
    seed : int, default=0
    """
    from sklearn.decomposition import PCA

    plt = _pyplot()
    rng = np.random.RandomState(seed)
    n = len(groups)
    idx = rng.choice(n, min(n, max_points), replace=False)
    fig, axes = plt.subplots(1, len(features), figsize=(5.5 * len(features), 4.5),
                             squeeze=False)
    for ax, (name, F) in zip(axes[0], features.items(), strict=False):
        Z = PCA(n_components=2, random_state=seed).fit_transform(F[idx])
        for g in np.unique(groups):
            mask = groups[idx] == g
            ax.scatter(Z[mask, 0], Z[mask, 1], s=4, alpha=0.4, label=str(g))
        ax.set_title(name)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.legend(markerscale=3)
    _finish(plt, fig, path, title)


#: Colour and marker of each method of the adapter study.
ADAPTER_STYLE = {"pre-trained": ("k", "X"), "TL": ("tab:gray", "s"),
                 "FT": ("tab:brown", "D"), "LoRA": ("tab:blue", "v"),
                 "PiSSA": ("tab:orange", "^"), "FWSVD": ("tab:green", "<"),
                 "OURS": ("tab:red", "o")}


def plot_adapters(runs, path, titles, rank_of):
    """Err against ΔEO of every method of the adapter study, one panel per setting.

    Each point is the mean over seeds with its standard deviation as error
    bars, adapters at the setting's reference rank; open markers: the same
    method with the EO penalty.

    Parameters
    ----------
    runs : pandas.DataFrame
        The study's rows (``setting, method, penalty, rank, err, eo_gap``).
    path : pathlib.Path
        Output PNG.
    titles : dict of str to str
        Setting -> panel title, in panel order.
    rank_of : callable
        ``rank_of(setting_runs) -> int``, the adapters' rank to draw.
    """
    plt = _pyplot()
    names = [n for n in titles if (runs["setting"] == n).any()]
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.25 * rows),
                             squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        df = runs[runs["setting"] == name]
        rank = rank_of(df)
        for method, (colour, marker) in ADAPTER_STYLE.items():
            for penalty, fill in (("none", colour), ("equalized_odds", "none")):
                part = df[(df["method"] == method) & (df["penalty"] == penalty)]
                if method in ("LoRA", "PiSSA", "FWSVD", "OURS"):
                    part = part[part["rank"] == rank]
                if part.empty:
                    continue
                ax.errorbar(part["eo_gap"].mean(), part["err"].mean(),
                            xerr=part["eo_gap"].std(ddof=1),
                            yerr=part["err"].std(ddof=1), color=colour,
                            marker=marker, mfc=fill, ms=7, ls="none",
                            capsize=2, alpha=0.85,
                            label=method if penalty == "none" else None)
        ax.set_title(f"{titles[name]} ({df['seed'].nunique()} seeds, "
                     f"adapters at rank {rank})", fontsize=10)
        ax.set_xlabel("ΔEO (sum of TPR and FPR gaps)")
        ax.set_ylabel("Err (100 - weighted F1, %)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, title="filled: no penalty\nopen: +EO",
                      title_fontsize=8)
    # one panel is 5 inches wide: the title then takes two lines
    sep = " " if cols > 1 else "\n"
    _finish(plt, fig, path, "Adapters against head-only TL and whole-model FT:"
            f"{sep}mean ± std over seeds; lower-left is better")
