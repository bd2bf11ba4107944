"""Results folder of ``winfair-bench adapters``: tables, summary and plot.

:func:`write_adapter_reports` writes, from the study's runs
(:mod:`._adapter_study`), ``runs.csv``; per setting ``<setting>.md`` (every
method at the reference rank, without and with each penalty, the paired
OURS - PiSSA, OURS - LoRA, OURS - TL and FT - TL differences per seed, the
penalties' own effects, and which OURS - PiSSA / OURS - LoRA differences lie
more than two standard errors from zero) and ``<setting>_all_ranks.md``
(every rank and more contrasts); ``summary.md``; and
``adapters_err_eo.png``. The mean ± std cells and the paired differences
come from :mod:`._stats`, the figure from :mod:`._plots`.
"""

import numpy as np
from scipy import stats

from ._stats import markdown_table, mean_std, n_seeds, paired_difference

__all__ = ["write_adapter_reports", "setting_table", "all_ranks_table",
           "reference_rank", "PROTOCOL_NOTE"]

_ADAPTERS = ("LoRA", "PiSSA", "FWSVD", "OURS")
_ORDER = ("pre-trained", "TL", "FT", *_ADAPTERS)
_PENALTIES = (("none", ""), ("equalized_odds", "+EO"),
              ("demographic_parity", "+DP"))
_METRICS = (("err", "Err", 2), ("dp_gap", "ΔDP", 3), ("eo_gap", "ΔEO", 3))
#: Reference rank of the compact tables and the plot (present in every setting).
REFERENCE_RANK = 4

PROTOCOL_NOTE = (
    "Protocol (fixed before the runs, the same for every method of a "
    "setting, not tuned): Adam lr 1e-3, no stopping rule; image and token "
    "tasks batch 128, 5 epochs, the backbone in eval mode (FT too); Adult "
    "batch 256, 20 epochs. TL = the head only (trunk frozen); FT = every "
    "parameter; LoRA / PiSSA / FWSVD / OURS = adapters (B = 0 / plain SVD / "
    "pooled-Fisher SVD / group-neutralized-Fisher SVD, residual frozen) "
    "and the head; '+EO' / '+DP' = the equalized-odds / demographic-parity "
    "penalty in every method's loss. Err = 100 - weighted F1 (%), ΔDP, ΔEO = "
    "TPR gap + FPR gap (paper_metrics), on the seed's test part; trainable = "
    "trainable parameters; s/fit = mean wall-clock seconds per fit on one CPU "
    "thread of a shared machine (compare within a table only)."
)


def reference_rank(runs):
    """Rank of the compact table: 4 where run, else the largest adapter rank.

    Examples
    --------
    >>> import pandas as pd
    >>> reference_rank(pd.DataFrame({"rank": [0, 1, 2, 4, 8]}))
    4
    """
    ranks = sorted(int(r) for r in runs["rank"].unique() if r)
    return REFERENCE_RANK if REFERENCE_RANK in ranks or not ranks else ranks[-1]


def _labelled(runs):
    df = runs.copy()
    df["method"] = df["method"] + df["penalty"].map(dict(_PENALTIES))
    df["experiment"] = "adapters"
    return df


def _at_rank(df, rank):
    """Rows of the adapters at ``rank`` and of the rank-free methods."""
    return df[(df["rank"] == rank) | (df["rank"] == 0)]


def _rows(df, label):
    return df[df["method"] == label]


def _mean_row(part, digits):
    return [mean_std(part[c].mean(), part[c].std(ddof=1), d)
            for c, _, d in _METRICS[:1]] + [
        mean_std(part[c].mean(), part[c].std(ddof=1), digits)
        for c, _, _ in _METRICS[1:]]


def _present(runs):
    return [(p, x) for p, x in _PENALTIES if p in set(runs["penalty"])]


def _diff_cell(d):
    return f"{d[0]:+.3f} ± {d[1]:.3f}" if d is not None else "n/a"


def setting_table(runs, title):
    """Compact markdown table of one setting at :func:`reference_rank`.

    Parameters
    ----------
    runs : pandas.DataFrame
        The study's rows of one setting.
    title : str

    Returns
    -------
    text : str
    """
    rank = reference_rank(runs)
    df = _at_rank(_labelled(runs), rank)
    present = _present(runs)
    rows = []
    for _, suffix in present:
        for m in _ORDER:
            part = _rows(df, m + suffix)
            if part.empty:
                continue
            rows.append([m + suffix, *_mean_row(part, 3),
                         int(part["n_params"].iloc[0]),
                         f"{part['fit_seconds'].mean():.1f}"])
    lines = [f"**{title}** ({n_seeds(runs)} seeds; adapters at rank {rank}; "
             "mean ± std over seeds)", "",
             markdown_table(["method", "Err", "ΔDP", "ΔEO", "trainable",
                             "s/fit"], rows),
             "", "Paired differences (per seed, then mean ± std):", ""]
    pairs = []
    for _, x in present:
        pairs += [(f"OURS{x}", f"PiSSA{x}"), (f"OURS{x}", f"LoRA{x}"),
                  (f"OURS{x}", f"TL{x}"), (f"FT{x}", f"TL{x}")]
    pairs += [(f"{m}{x}", m) for _, x in present[1:] for m in ("TL", "OURS")]
    beyond, n_tests, by_chance, rows = [], 0, 0.0, []
    for a, b in pairs:
        if _rows(df, a).empty or _rows(df, b).empty:
            continue
        cells = []
        tested = a.startswith("OURS") and b.split("+")[0] in ("PiSSA", "LoRA")
        for col, label, _ in _METRICS:
            d = paired_difference(df, "adapters", a, b, col)
            cells.append(_diff_cell(d))
            if tested and d is not None:
                n_tests += 1
                if d[2] > 1:
                    # |mean| > 2 standard errors: with n seeds the paired t
                    # statistic crosses 2 by chance with probability
                    # 2 P(T_{n-1} > 2) (7.7 % at 10 seeds, 18 % at 3)
                    by_chance += 2 * stats.t.sf(2.0, d[2] - 1)
                    if abs(d[0]) > 2 * d[1] / np.sqrt(d[2]):
                        beyond.append(f"{a} - {b} {label} {d[0]:+.3f}")
        rows.append([f"{a} - {b}", *cells])
    lines += [markdown_table(["contrast", "ΔErr", "ΔΔDP", "ΔΔEO"], rows), "",
              "Measured: OURS - PiSSA and OURS - LoRA differences more than "
              "two standard errors from zero: "
              + ("; ".join(beyond) if beyond else "none")
              + f" (of {n_tests} such tests; with no true difference about "
              f"{by_chance:.1f} would cross by chance, from the t distribution "
              "of the seeds' paired differences)."]
    return "\n".join(lines) + "\n"


def all_ranks_table(runs, title):
    """Every method at every rank, and the paired contrasts at each rank.

    Parameters
    ----------
    runs : pandas.DataFrame
        The study's rows of one setting.
    title : str

    Returns
    -------
    text : str
    """
    df = _labelled(runs)
    present = _present(runs)
    ranks = sorted(int(r) for r in runs["rank"].unique() if r)
    rows = []
    for _, x in present:
        for rank in [0, *ranks]:
            for m in _ORDER:
                part = df[(df["method"] == m + x) & (df["rank"] == rank)]
                if part.empty:
                    continue
                trunc = part["truncation_error"]
                rows.append([m + x, rank or "-", *_mean_row(part, 4),
                             int(part["n_params"].iloc[0]),
                             f"{part['fit_seconds'].mean():.2f}",
                             f"{trunc.mean():.3f}" if trunc.notna().any()
                             else "-"])
    lines = [f"**{title}**: every rank ({n_seeds(runs)} seeds; mean ± std "
             "over seeds)", "",
             markdown_table(["method", "rank", "Err", "ΔDP", "ΔEO",
                             "trainable", "s/fit", "trunc. err"], rows),
             "", "Paired differences over seeds (mean ± std of the per-seed "
             "difference; ΔErr in points of Err):", ""]
    rows = []
    contrasts = []
    for _, x in present:
        contrasts += [(f"OURS{x}", f"{r}{x}") for r in ("PiSSA", "LoRA", "FWSVD")]
        contrasts += [(f"{m}{x}", f"TL{x}") for m in ("FT", *_ADAPTERS)]
    contrasts += [(f"{m}{x}", m) for _, x in present[1:]
                  for m in ("TL", "FT", *_ADAPTERS)]
    for a, b in contrasts:
        free = a.split("+")[0] in ("TL", "FT")
        for rank in ([0] if free else ranks):
            sub = _at_rank(df, rank)
            if _rows(sub, a).empty or _rows(sub, b).empty:
                continue
            cells = [_diff_cell(paired_difference(sub, "adapters", a, b, c))
                     for c, _, _ in _METRICS]
            rows.append([f"{a} - {b}", rank or "-", *cells])
    lines.append(markdown_table(["contrast", "rank", "ΔErr", "ΔΔDP", "ΔΔEO"],
                                rows))
    return "\n".join(lines) + "\n"


def _findings(runs, titles):
    out = []
    for name, title in titles.items():
        part = runs[runs["setting"] == name]
        if part.empty:
            continue
        df = _at_rank(_labelled(part), reference_rank(part))
        bits = []
        for a, b in (("OURS", "TL"), ("OURS", "PiSSA"), ("OURS", "LoRA"),
                     ("FT", "TL")):
            d = paired_difference(df, "adapters", a, b, "err")
            e = paired_difference(df, "adapters", a, b, "eo_gap")
            if d is not None and e is not None:
                bits.append(f"{a} - {b}: Err {d[0]:+.2f} ± {d[1]:.2f}, ΔEO "
                            f"{e[0]:+.3f} ± {e[1]:.3f}")
        text = setting_table(part, title).rsplit("\n\n", 1)[-1].strip()
        out.append(f"- **{name}** (rank {reference_rank(part)}, "
                   f"{n_seeds(part)} seeds, paired per seed): "
                   + "; ".join(bits) + ". " + text)
    return "\n".join(out)


def write_adapter_reports(runs, out, *, settings, lines=(), plots=True):
    """Write the study's results folder.

    Parameters
    ----------
    runs : pandas.DataFrame
        The study's rows (columns ``setting, seed, method, penalty, rank,
        err, dp_gap, eo_gap, n_params, fit_seconds, truncation_error``).
    out : pathlib.Path
        Results folder.
    settings : list of StudySetting
        The settings run (their titles and protocol).
    lines : sequence of str, default=()
        Lines of the summary's "Settings and decisions" (mode, seeds, wall
        time, code commit, provenance).
    plots : bool, default=True
        Write ``adapters_err_eo.png``.

    Returns
    -------
    tables : dict of str to str
        Markdown text by file name, ``summary.md`` included.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    titles = {s.name: s.title for s in settings}
    tables = {}
    for s in settings:
        part = runs[runs["setting"] == s.name]
        if part.empty:
            continue
        tables[f"{s.name}.md"] = setting_table(part, s.title)
        tables[f"{s.name}_all_ranks.md"] = all_ranks_table(part, s.title)
    figure = None
    if plots and len(runs):
        from ._plots import plot_adapters

        figure = out / "adapters_err_eo.png"
        plot_adapters(runs, figure, {s.name: s.short or s.title
                                     for s in settings}, reference_rank)
    text = ["# winfair-bench adapters: summary\n", "## Settings and decisions\n",
            *lines,
            *[f"- {s.name}: {s.title}; {s.epochs} epochs, batch "
              f"{s.batch_size}, lr {s.lr}, adapter ranks "
              f"{', '.join(map(str, s.ranks))}"
              + (f"; rows (pre-training, train, test): "
                 f"{', '.join(map(str, s.sizes))}" if s.sizes else "")
              for s in settings],
            f"- {PROTOCOL_NOTE}",
            "\n## Findings\n", _findings(runs, titles) or "n/a", "",
            "## Tables\n"]
    text += [tables[f"{s.name}.md"] for s in settings
             if f"{s.name}.md" in tables]
    text.append("Every rank and more contrasts: " + ", ".join(
        f"`{n}`" for n in tables if n.endswith("_all_ranks.md"))
        + " (beside this file).\n")
    if figure is not None:
        text.append(f"## Plots\n\n![{figure.stem}]({figure.name})")
    tables["summary.md"] = "\n".join(text)
    for name, body in tables.items():
        (out / name).write_text(body + ("" if body.endswith("\n") else "\n"),
                                encoding="utf-8")
    return tables
