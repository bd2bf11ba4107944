"""Compact tables of the four adapter settings for the user guide (issue 19).

Reads each setting's committed ``runs.csv`` and writes ``table.md`` beside it:
every method at one adapter rank (4 in every setting; the other ranks are in
``summary.md``), without and with the EO penalty (and the DP penalty, read
from ``<setting>_dp/runs.csv`` for the two backbone settings), then the paired
differences
per seed, then a "Measured" line computed from these numbers: which paired
differences lie more than two standard errors (``2 std / sqrt(n_seeds)``)
from zero. Run ``python benchmarks/adapters/compact_tables.py`` from the
repository root after the measurements.
"""

from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
SETTINGS = {
    "images_backbone": "Constructed image task, small ResNet, adapters on the "
                       "last block's two convolutions and the 32 -> 32 layer "
                       "before the head",
    "text_backbone": "Constructed token task, tiny BERT (2 layers, hidden 32), "
                     "adapters on the last block's attention and feed-forward "
                     "layers",
    "age_shift_all": "Adult age shift, one-hot MLP d-64-10-2, adapter on the "
                     "64 -> 10 layer",
    "adult_paper_mlp_all": "Adult, the paper's 13-20-20-2 MLP, adapter on the "
                           "20 -> 20 layer",
}
RANK = 4
ORDER = ["pre-trained", "TL", "FT", "LoRA", "PiSSA", "FWSVD", "OURS"]
PENALTIES = (("none", ""), ("equalized_odds", "+EO"),
             ("demographic_parity", "+DP"))
METRICS = (("err", "Err", ".2f"), ("dp", "ΔDP", ".3f"), ("eo", "ΔEO", ".3f"))


def _select(df, method, penalty):
    part = df[(df.method == method) & (df.penalty == penalty)]
    if method in ORDER[3:]:
        part = part[part["rank"] == RANK]
    return part.set_index("seed")


def table(df, title):
    n = df.seed.nunique()
    lines = [f"**{title}** ({n} seeds; adapters at rank {RANK}; mean ± std "
             "over seeds)", "",
             "| method | Err | ΔDP | ΔEO | trainable | s/fit |",
             "|---|---|---|---|---|---|"]
    present = [(p, x) for p, x in PENALTIES if p in set(df.penalty)]
    for penalty, suffix in present:
        for m in ORDER:
            part = _select(df, m, penalty)
            if part.empty:
                continue
            cells = [f"{part[c].mean():{f}} ± {part[c].std(ddof=1):{f}}"
                     for c, _, f in METRICS]
            lines.append(f"| {m}{suffix} | " + " | ".join(cells)
                         + f" | {int(part.n_trainable.iloc[0])} | "
                         f"{part.seconds.mean():.1f} |")
    lines += ["", "Paired differences (per seed, then mean ± std):", "",
              "| contrast | ΔErr | ΔΔDP | ΔΔEO |", "|---|---|---|---|"]
    beyond, pairs, n_tests = [], [], 0
    for penalty, suffix in present:
        pairs += [(f"OURS{suffix} - PiSSA{suffix}", ("OURS", penalty),
                   ("PiSSA", penalty)),
                  (f"OURS{suffix} - LoRA{suffix}", ("OURS", penalty),
                   ("LoRA", penalty)),
                  (f"OURS{suffix} - TL{suffix}", ("OURS", penalty),
                   ("TL", penalty)),
                  (f"FT{suffix} - TL{suffix}", ("FT", penalty), ("TL", penalty))]
    pairs += [(f"{m}{x} - {m}", (m, p), (m, "none"))
              for p, x in present[1:] for m in ("TL", "OURS")]
    for name, a, b in pairs:
        pa, pb = _select(df, *a), _select(df, *b)
        cells = []
        for c, label, _ in METRICS:
            if name.startswith("OURS") and ("PiSSA" in name or "LoRA" in name):
                n_tests += 1
            d = (pa[c] - pb[c]).dropna().to_numpy()
            mean, std = d.mean(), d.std(ddof=1)
            cells.append(f"{mean:+.3f} ± {std:.3f}")
            if abs(mean) > 2 * std / np.sqrt(len(d)) and (
                    name.startswith("OURS") and ("PiSSA" in name
                                                 or "LoRA" in name)):
                beyond.append(f"{name} {label} {mean:+.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Measured: OURS - PiSSA and OURS - LoRA differences more than "
              "two standard errors from zero: "
              + ("; ".join(beyond) if beyond else "none")
              + f" (of {n_tests} such tests; at a 5 % level about "
              f"{0.05 * n_tests:.1f} would cross by chance)."]
    return "\n".join(lines) + "\n"


def main():
    for folder, title in SETTINGS.items():
        path = RESULTS / folder / "runs.csv"
        if not path.exists():
            print("missing", path)
            continue
        df = pd.read_csv(path)
        dp = RESULTS / f"{folder}_dp" / "runs.csv"
        if dp.exists():
            extra = pd.read_csv(dp)
            df = pd.concat([df, extra[extra.method != "pre-trained"]],
                           ignore_index=True)
        text = table(df, title)
        (RESULTS / folder / "table.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
