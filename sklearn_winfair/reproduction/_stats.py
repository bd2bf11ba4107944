"""Statistics over the runs, shared by the tables and the plots.

Everything here is a pure function of ``runs.csv`` rows (a DataFrame with one
row per experiment, config, method and seed) or of summary rows: the mean and
std over seeds, paired differences over seeds, the Pareto front, the
"published value inside our mean ± 2 std" check, and the markdown cells that
print them. pandas and numpy do the work; nothing here imports another
module of the harness.
"""

import numpy as np
import pandas as pd

__all__ = [
    "METRIC_NOTE",
    "summarize",
    "n_seeds",
    "paired_difference",
    "pareto_front",
    "inside_2std",
    "markdown_table",
    "mean_std",
    "metric_cell",
    "metric_cells",
]

METRIC_NOTE = (
    "Err = 100 − weighted F1 (%); ΔDP = gap in selection rates between the "
    "sensitive groups (sex; colour for images); ΔEO = TPR gap + FPR gap "
    "(the paper's SUM, in [0, 2], not fairlearn's max); mean ± std over {n} "
    "seed(s), test part of the new task; params = trainable parameters; "
    "s = median fit seconds."
)


def summarize(runs, experiment):
    """Mean and std over seeds of one experiment, one row per (config, method).

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs.csv`` rows.
    experiment : str
        Value of the ``experiment`` column.

    Returns
    -------
    summary : pandas.DataFrame
        Columns ``config, method, n, err_mean, err_std, dp_gap_mean, ...,
        n_params, fit_seconds`` in the order the runs appeared; empty when
        ``runs`` has no row of ``experiment``.

    Examples
    --------
    >>> runs = pd.DataFrame({"experiment": "main", "config": "a",
    ...                      "method": "TL", "seed": [0, 1], "err": [10., 12.],
    ...                      "dp_gap": 0.1, "eo_gap": 0.2, "n_params": 42,
    ...                      "fit_seconds": 1.0})
    >>> s = summarize(runs, "main")
    >>> s[["method", "n", "err_mean"]].to_dict("records")
    [{'method': 'TL', 'n': 2, 'err_mean': 11.0}]
    """
    df = runs[runs["experiment"] == experiment]
    if df.empty:
        return pd.DataFrame()
    keys = ["config", "method"]
    grouped = df.groupby(keys, sort=False)
    out = grouped.size().rename("n").reset_index()
    for col in ("err", "dp_gap", "eo_gap"):
        out[f"{col}_mean"] = grouped[col].mean().to_numpy()
        out[f"{col}_std"] = grouped[col].std(ddof=1).fillna(0.0).to_numpy()
    out["n_params"] = grouped["n_params"].median().to_numpy()
    out["fit_seconds"] = grouped["fit_seconds"].median().to_numpy()
    for extra in ("family", "rank", "importance", "alpha"):
        if extra in df:
            out[extra] = grouped[extra].first().to_numpy()
    return out


def n_seeds(runs):
    """Return the number of distinct seeds in ``runs`` (0 when empty)."""
    return int(runs["seed"].nunique()) if len(runs) else 0


def paired_difference(runs, experiment, a, b, col, *, config=None):
    """Mean and std over seeds of ``a - b`` on column ``col``.

    Parameters
    ----------
    runs : pandas.DataFrame
    experiment : str
    a, b : str
        Method names.
    col : str
        Metric column (``"err"``, ``"dp_gap"``, ``"eo_gap"``).
    config : str or None, default=None
        Keep only this configuration; None keeps every configuration.

    Returns
    -------
    (mean, std, n) or None
        None when one of the methods is missing or no seed has both; ``std``
        is 0.0 with a single seed.

    Examples
    --------
    >>> runs = pd.DataFrame({"experiment": "main", "seed": [0, 0, 1, 1],
    ...                      "method": ["A", "B", "A", "B"],
    ...                      "err": [10., 9., 12., 10.]})
    >>> paired_difference(runs, "main", "A", "B", "err")
    (1.5, 0.7071067811865476, 2)
    """
    mask = (runs["experiment"] == experiment) & runs["method"].isin([a, b])
    if config is not None:
        mask &= runs["config"] == config
    wide = runs[mask].pivot_table(index="seed", columns="method", values=col)
    if a not in wide or b not in wide:
        return None
    diff = (wide[a] - wide[b]).dropna()
    if diff.empty:
        return None
    std = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return float(diff.mean()), std, len(diff)


def pareto_front(x, y):
    """Return the points not dominated when both coordinates are minimized.

    A point is dominated when another is at least as good on both
    coordinates and strictly better on one.

    Parameters
    ----------
    x, y : array-like of shape (n,)

    Returns
    -------
    front : list of int
        Sorted by ``x``.

    Examples
    --------
    >>> pareto_front([1, 2, 3, 2.5], [3, 2, 1, 2.5])
    [0, 1, 2]
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    front = []
    for i in range(len(x)):
        dominated = np.any((x <= x[i]) & (y <= y[i])
                           & ((x < x[i]) | (y < y[i])))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (x[i], y[i]))


def inside_2std(paper_mean, mean, std):
    """Whether ``paper_mean`` lies in ``[mean - 2 std, mean + 2 std]``.

    Examples
    --------
    >>> inside_2std(16.0, 15.5, 0.3), inside_2std(16.2, 15.5, 0.3)
    (True, False)
    """
    return bool(abs(paper_mean - mean) <= 2 * std + 1e-12)


def markdown_table(header, rows):
    """Render a list of rows as a GitHub markdown table.

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [[1, 2]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(mean, std, digits):
    """``"mean ± std"`` with ``digits`` decimals.

    Examples
    --------
    >>> mean_std(16.0, 0.25, 2)
    '16.00 ± 0.25'
    """
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_cell(row, col, digits, ref=None):
    """Cell of a summary row's ``col``: mean ± std, then ``(mean - ref)``."""
    mean = getattr(row, col + "_mean")
    text = mean_std(mean, getattr(row, col + "_std"), digits)
    if ref is not None:
        text += f" ({mean - ref:+.{digits}f})"
    return text


def metric_cells(row):
    """Err, ΔDP and ΔEO cells of a summary row (2, 3 and 3 decimals)."""
    return [metric_cell(row, "err", 2), metric_cell(row, "dp_gap", 3),
            metric_cell(row, "eo_gap", 3)]
