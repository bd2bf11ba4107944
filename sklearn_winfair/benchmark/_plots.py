"""PNG figures of the benchmark (matplotlib, Agg backend)."""

import numpy as np

__all__ = ["plot_pareto", "plot_alpha", "plot_importance", "plot_pca"]


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

def plot_pareto(summary, path, title):
    """Err vs ΔDP and Err vs ΔEO of every method (mean ± std over seeds).

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`~sklearn_winfair.benchmark._report.summarize`.
    path : pathlib.Path
        Output PNG.
    title : str
        Figure title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, gap, label in ((axes[0], "dp_gap", "ΔDP"),
                           (axes[1], "eo_gap", "ΔEO (TPR gap + FPR gap)")):
        for i, row in enumerate(summary.itertuples()):
            ax.errorbar(getattr(row, f"{gap}_mean"), row.err_mean,
                        xerr=getattr(row, f"{gap}_std"), yerr=row.err_std,
                        fmt="o", ms=4, color=f"C{i % 10}", capsize=2)
            ax.annotate(row.method, (getattr(row, f"{gap}_mean"), row.err_mean),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label + " (lower is fairer)")
        ax.set_ylabel("Err = 100 - weighted F1 (%)")
        ax.grid(alpha=0.3)
    _finish(plt, fig, path, title)


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
