"""Tables and findings of our untuned scenarios (adult-age-shift, german).

Every sentence of the findings is computed from ``runs.csv``; the statistics
come from :mod:`._stats`.
"""

from ._stats import (
    METRIC_NOTE,
    markdown_table,
    metric_cells,
    n_seeds,
    paired_difference,
    summarize,
)

__all__ = ["table_main", "table2", "fig4", "rank_sweep", "findings",
           "rank_note"]

#: What each configuration can show, keyed by the start of its label.
RANK_NOTES = {
    "a:": (
        "(a) the linear head 10→2 at rank 1 is the only factorization there, "
        "and for a binary task the decision depends only on the logit "
        "difference, a single direction of the 10-d features, which a rank-1 "
        "head expresses exactly; the importances only change the "
        "initialization, not the expressible decision rules."
    ),
    "b: 2-layer": (
        "(b) the 2-layer head 64→10→2 truncates real directions of its first "
        "layer (64→10) at ranks 1–8 (its 10→2 layer is factorized only at "
        "rank 1), so the importance weighting decides what is kept and can "
        "change the result."
    ),
    "c:": (
        "(c) the 4-class probe head at ranks 1–3 truncates real directions, "
        "so the importance weighting decides what is kept and can change the "
        "result."
    ),
}


def rank_note(runs):
    """Say which of the configurations in ``runs`` can separate importances."""
    configs = set(runs["config"])
    parts = [text for prefix, text in RANK_NOTES.items()
             if any(c.startswith(prefix) for c in configs)]
    return ("Which configurations can show a difference between importances: "
            + " ".join(parts))


def table_main(runs, title):
    """Render the main comparison (paper Table 3 layout), experiment "main"."""
    s = summarize(runs, "main")
    rows = [[r.method, r.family, *metric_cells(r), int(r.n_params),
             f"{r.fit_seconds:.2f}", "n/a"] for r in s.itertuples()]
    head = ["method", "family", "Err (%)", "ΔDP", "ΔEO (sum)", "params", "s",
            "paper"]
    config = s["config"].iloc[0] if len(s) else ""
    return (f"### {title} — config {config}\n\n"
            f"{METRIC_NOTE.format(n=n_seeds(runs))}\n\n"
            + markdown_table(head, rows))


def table2(runs):
    """Bias of (fair) pre-trained models before and after TL / OURS."""
    s = summarize(runs, "table2")
    if s.empty:
        return ""
    stage = {"Pretrained (no FT)": "before (no fine-tuning)",
             "TL": "after TL", "OURS": "after OURS"}
    rows = [[r.config, stage.get(r.method, r.method), *metric_cells(r), "n/a"]
            for r in s.itertuples()]
    head = ["pre-trained model", "stage", "Err (%)", "ΔDP", "ΔEO (sum)", "paper"]
    return ("### Table 2 — bias of fair pre-trained models before/after "
            "fine-tuning (Adult, config a)\n\n"
            "Fair models: pre-training loss = cross-entropy + λ · "
            "demographic_parity_penalty (DP) or equalized_odds_penalty (EO) on "
            "P(y=1), λ ∈ {0.1, 0.5, 0.9}. 'before' applies the pre-trained "
            "model to the new task's test part as is.\n\n"
            f"{METRIC_NOTE.format(n=n_seeds(runs))}\n\n"
            + markdown_table(head, rows))


def fig4(runs, alpha_rank, b_experiment="rank_sweep_b"):
    """TL vs f+SVD vs FWSVD vs OURS on config (a) and on config (b)."""
    rows = []
    main = summarize(runs, "main")
    for r in main.itertuples():
        if r.method in ("TL", "f+SVD", "FWSVD", "OURS"):
            rows.append([r.config, r.method, *metric_cells(r),
                         int(r.n_params), "n/a"])
    sweep = summarize(runs, b_experiment)
    for r in sweep.itertuples():
        if r.method == "TL" or r.method.endswith(f" r={alpha_rank}"):
            rows.append([r.config, r.method, *metric_cells(r),
                         int(r.n_params), "n/a"])
    head = ["config", "method", "Err (%)", "ΔDP", "ΔEO (sum)", "params", "paper"]
    return (f"### Fig. 4 — TL vs f+SVD vs FWSVD vs OURS\n\n"
            f"{METRIC_NOTE.format(n=n_seeds(runs))}\n\n"
            + markdown_table(head, rows))


def _spread_sentence(s):
    """Compare the spread between importances with the seed noise, per rank."""
    parts = []
    for rank, grp in s[s["importance"] != "none"].groupby("rank", sort=True):
        if len(grp) < 2:
            continue
        spread = grp["err_mean"].max() - grp["err_mean"].min()
        spread_dp = grp["dp_gap_mean"].max() - grp["dp_gap_mean"].min()
        noise = grp["err_std"].mean()
        if grp["n"].min() < 2:
            verdict = "one seed, no noise estimate"
        elif spread > noise:
            verdict = f"larger than the mean seed std {noise:.2f}"
        else:
            verdict = f"within the mean seed std {noise:.2f}"
        parts.append(f"r={int(rank)}: Err spread {spread:.2f} ({verdict}), "
                     f"ΔDP spread {spread_dp:.3f}")
    return "; ".join(parts)


def rank_sweep(runs):
    """Rank sweeps of configurations (b) and (c) (when present)."""
    blocks = []
    for exp in ("rank_sweep_b", "rank_sweep_c"):
        s = summarize(runs, exp)
        if s.empty:
            continue
        rows = [["—" if r.importance == "none" else int(r.rank),
                 r.importance if r.importance != "none" else "TL (rank=None)",
                 *metric_cells(r), int(r.n_params), f"{r.fit_seconds:.2f}"]
                for r in s.itertuples()]
        head = ["rank", "importance", "Err (%)", "ΔDP", "ΔEO (sum)", "params",
                "s"]
        note = METRIC_NOTE.format(n=n_seeds(runs))
        if exp == "rank_sweep_c":
            note += (" Multiclass: ΔDP and ΔEO are the MAX over the 4 classes "
                     "of the one-vs-rest gaps.")
        blocks.append(f"### Rank sweep — config {s['config'].iloc[0]}\n\n{note}"
                      f"\n\n{markdown_table(head, rows)}\n\nSpread between "
                      f"importances: {_spread_sentence(s)}.")
    if not blocks:
        return ""
    return "\n\n".join(blocks) + "\n\n" + rank_note(runs)


#: Differences below these are reported as negligible (Err in points).
_NEGLIGIBLE = {"Err": 0.1, "ΔDP": 0.005, "ΔEO": 0.005}


def _describe_diff(name, d, digits):
    mean, std, n = d
    if abs(mean) < _NEGLIGIBLE.get(name, 0.0):
        verdict = "negligible"
    elif n < 2:
        verdict = "one seed"
    elif abs(mean) <= std:
        verdict = "within seed noise"
    else:
        verdict = "lower" if mean < 0 else "higher"
    return f"{name} {mean:+.{digits}f} ± {std:.{digits}f} ({verdict})"


def findings(runs, settings):
    """Return a paragraph of findings computed from ``runs`` (no fixed claims)."""
    out = []
    main = summarize(runs, "main")
    if not main.empty:
        by = main.set_index("method")
        if {"Pretrained (no FT)", "TL"} <= set(by.index):
            p, t = by.loc["Pretrained (no FT)"], by.loc["TL"]
            out.append(
                f"Fine-tuning the head (TL) moved Err from {p.err_mean:.2f} to "
                f"{t.err_mean:.2f}, ΔDP from {p.dp_gap_mean:.3f} to "
                f"{t.dp_gap_mean:.3f} and ΔEO from {p.eo_gap_mean:.3f} to "
                f"{t.eo_gap_mean:.3f} relative to the pre-trained model.")
        main_config = runs.loc[runs["experiment"] == "main", "config"].iloc[0]
        for other in ("TL", "f+SVD", "FWSVD"):
            diffs = [paired_difference(runs, "main", "OURS", other, c)
                     for c in ("err", "dp_gap", "eo_gap")]
            if all(d is not None for d in diffs):
                out.append(
                    f"OURS − {other} (paired over seeds, config {main_config}): "
                    + ", ".join(_describe_diff(n, d, k) for n, d, k in zip(
                        ("Err", "ΔDP", "ΔEO"), diffs, (2, 3, 3), strict=False)) + ".")
        fair = main[main["family"] != "reference"]
        if len(fair):
            best_dp = fair.loc[fair["dp_gap_mean"].idxmin()]
            best_eo = fair.loc[fair["eo_gap_mean"].idxmin()]
            best_err = fair.loc[fair["err_mean"].idxmin()]
            out.append(
                f"Lowest ΔDP: {best_dp.method} ({best_dp.dp_gap_mean:.3f} at Err "
                f"{best_dp.err_mean:.2f}); lowest ΔEO: {best_eo.method} "
                f"({best_eo.eo_gap_mean:.3f} at Err {best_eo.err_mean:.2f}); "
                f"lowest Err: {best_err.method} ({best_err.err_mean:.2f}).")
        heads = main[main["method"].str.contains("head λ")]
        wholes = main[main["method"].str.contains("whole λ")]
        if len(heads) and len(wholes):
            out.append(
                f"Retrain head-only trains {int(heads['n_params'].iloc[0])} "
                f"parameters, whole-model {int(wholes['n_params'].iloc[0])}; "
                f"mean Err {heads['err_mean'].mean():.2f} vs "
                f"{wholes['err_mean'].mean():.2f}, mean ΔDP "
                f"{heads['dp_gap_mean'].mean():.3f} vs "
                f"{wholes['dp_gap_mean'].mean():.3f}.")
    t2 = summarize(runs, "table2")
    if not t2.empty:
        fair = t2[t2["config"].str.startswith("fair")]
        piv = fair.pivot_table(index="config", columns="method",
                               values="dp_gap_mean")
        if {"Pretrained (no FT)", "TL", "OURS"} <= set(piv.columns):
            up = int((piv["TL"] > piv["Pretrained (no FT)"]).sum())
            out.append(
                f"Table 2: after TL, ΔDP rose above the fair pre-trained "
                f"model's in {up} of {len(piv)} fair configurations (mean "
                f"{piv['Pretrained (no FT)'].mean():.3f} before, "
                f"{piv['TL'].mean():.3f} after TL, {piv['OURS'].mean():.3f} "
                f"after OURS).")
    for exp in ("rank_sweep_b", "rank_sweep_c"):
        s = summarize(runs, exp)
        if not s.empty:
            out.append(f"{exp}: {_spread_sentence(s)}.")
    n = n_seeds(runs)
    if n < 5:
        out.append(f"With {n} seed(s) these differences are indicative only.")
    return " ".join(out)
