"""One table per Adult setting: every method without and with the EO / DP penalty.

``measure_adult_mlp.py`` runs one penalty setting per call; this joins the
committed no-penalty, equalized-odds and (where run) demographic-parity runs of
the same setting (same seeds, same pre-trained model per seed, same protocol)
into ``runs.csv`` and writes ``summary.md`` with the paired differences (per
seed, then mean ± std)::

    results/adult_mlp + adult_mlp_eo + adult_mlp_dp -> results/adult_paper_mlp_all
    results/age_shift + age_shift_eo + age_shift_dp -> results/age_shift_all

Regenerate the inputs with (from the repository root, ``PYTHONPATH=.``)::

    python benchmarks/adapters/measure_adult_mlp.py --seeds 10
    python benchmarks/adapters/measure_adult_mlp.py --seeds 10 \
        --penalty equalized_odds --strength 0.5 --out .../results/adult_mlp_eo
    python benchmarks/adapters/measure_adult_mlp.py --task age-shift \
        --ranks 1 2 4 8 --seeds 10 --out .../results/age_shift
    python benchmarks/adapters/measure_adult_mlp.py --task age-shift \
        --ranks 1 2 4 8 --seeds 10 --penalty equalized_odds --strength 0.5 \
        --out .../results/age_shift_eo

and the same two with ``--penalty demographic_parity`` into ``..._dp``,

then ``python benchmarks/adapters/combine_adult.py``.
"""

from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
COMBINE = {
    "adult_paper_mlp_all": ("adult_mlp", "adult_mlp_eo", "adult_mlp_dp",
                            "Adult, the paper's 13-20-20-2 MLP (pre-trained per "
                            "seed on the paper split's pre-training part), "
                            "adapter on '0.2' (20->20) + head '1' (20->2)"),
    "age_shift_all": ("age_shift", "age_shift_eo", "age_shift_dp",
                      "Adult age shift (pre-trained on the youngest 60 %, new "
                      "task on the oldest 40 %), one-hot MLP d-64-10-2, adapter "
                      "on '1.0' (64->10) + head '1.2' (10->2)"),
}
ADAPTERS = ["LoRA", "PiSSA", "FWSVD", "OURS"]
ORDER = ["pre-trained", "TL", "FT", *ADAPTERS]
SUFFIX = {"none": "", "equalized_odds": "+EO", "demographic_parity": "+DP"}


def _ms(v, fmt=".4f"):
    return f"{np.mean(v):{fmt}} ± {np.std(v, ddof=1):{fmt}}"


def _pd(v):
    return f"{np.mean(v):+.4f} ± {np.std(v, ddof=1):.4f}"


def summarize(df, header):
    df = df.copy()
    df["label"] = df.method + df.penalty.map(SUFFIX)
    pen = [SUFFIX[p] for p in ("equalized_odds", "demographic_parity")
           if p in set(df.penalty)]
    ranks = sorted(r for r in df["rank"].unique() if r)
    lines = [header, "", "Mean ± std over seeds (test part).", "",
             "| method | rank | Err | ΔDP | ΔEO | trainable | s/fit |",
             "|---|---|---|---|---|---|---|"]
    for suffix in ("", *pen):
        for rank in [0, *ranks]:
            for m in ORDER:
                part = df[(df.label == m + suffix) & (df["rank"] == rank)]
                if part.empty:
                    continue
                lines.append(
                    f"| {m + suffix} | {rank or '-'} | {_ms(part.err, '.2f')} | "
                    f"{_ms(part.dp)} | {_ms(part.eo)} | "
                    f"{int(part.n_trainable.iloc[0])} | "
                    f"{part.seconds.mean():.2f} |")
    lines += ["", "Paired differences over seeds (mean ± std of the per-seed "
              "difference; ΔErr in points of Err):", "",
              "| contrast | rank | ΔErr | ΔΔDP | ΔΔEO |", "|---|---|---|---|---|"]

    def value(label, rank, col):
        part = df[(df.label == label) & (df["rank"] == rank)]
        return part.set_index("seed")[col]

    for suffix in ("", *pen):
        for a, b in [("OURS", "PiSSA"), ("OURS", "LoRA"), ("OURS", "FWSVD"),
                     *[(m, "TL") for m in ADAPTERS]]:
            for rank in ranks:
                cells = [_pd((value(a + suffix, rank, c)
                              - value(b + suffix, 0, c) if b == "TL" else
                              value(a + suffix, rank, c)
                              - value(b + suffix, rank, c)).dropna())
                         for c in ("err", "dp", "eo")]
                lines.append(f"| {a}{suffix} - {b}{suffix} | {rank} | "
                             + " | ".join(cells) + " |")
        cells = [_pd((value("FT" + suffix, 0, c) - value("TL" + suffix, 0, c))
                     .dropna()) for c in ("err", "dp", "eo")]
        lines.append(f"| FT{suffix} - TL{suffix} | - | " + " | ".join(cells)
                     + " |")
    for x in pen:
        for m in ("TL", "FT"):
            cells = [_pd((value(m + x, 0, c) - value(m, 0, c)).dropna())
                     for c in ("err", "dp", "eo")]
            lines.append(f"| {m}{x} - {m} | - | " + " | ".join(cells) + " |")
        for m in ADAPTERS:
            for rank in ranks:
                cells = [_pd((value(m + x, rank, c) - value(m, rank, c))
                             .dropna()) for c in ("err", "dp", "eo")]
                lines.append(f"| {m}{x} - {m} | {rank} | " + " | ".join(cells)
                             + " |")
    return "\n".join(lines) + "\n"


def main():
    for out, (plain, eo, dp, description) in COMBINE.items():
        parts = [pd.read_csv(RESULTS / plain / "runs.csv").assign(penalty="none")]
        joined = [plain]
        for folder, penalty in ((eo, "equalized_odds"),
                                (dp, "demographic_parity")):
            if not (RESULTS / folder / "runs.csv").exists():
                continue
            b = pd.read_csv(RESULTS / folder / "runs.csv").assign(
                penalty=penalty)
            parts.append(b[b.method != "pre-trained"])
            joined.append(folder)
        df = pd.concat(parts, ignore_index=True)
        (RESULTS / out).mkdir(exist_ok=True)
        df.to_csv(RESULTS / out / "runs.csv", index=False)
        n = df.seed.nunique()
        header = (f"{description}; {n} seeds; every method: Adam lr 1e-3, batch "
                  "256, 20 epochs (the same for all, not tuned); '+EO' / "
                  "'+DP': the equalized-odds / demographic-parity penalty x "
                  "0.5 in every method's loss. Joined from "
                  + ", ".join(f"results/{f}" for f in joined)
                  + " by combine_adult.py.")
        (RESULTS / out / "summary.md").write_text(summarize(df, header))
        print(out, len(df), "rows")


if __name__ == "__main__":
    main()
