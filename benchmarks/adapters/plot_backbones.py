"""Err against Delta_EO of every method in the four adapter settings.

One panel per setting (adapters at rank 4), each point the mean over seeds
with its standard deviation as error bars; open markers: the same method with
the EO penalty. Reads the committed ``runs.csv`` files and writes
``results/adapters_err_eo.png``::

    python benchmarks/adapters/plot_backbones.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PANELS = {"images_backbone": "image task, ResNet",
          "text_backbone": "token task, tiny BERT",
          "age_shift_all": "Adult age shift, 64-10-2 MLP",
          "adult_paper_mlp_all": "Adult, paper 13-20-20-2 MLP"}
STYLE = {"pre-trained": ("k", "X"), "TL": ("tab:gray", "s"),
         "FT": ("tab:brown", "D"), "LoRA": ("tab:blue", "v"),
         "PiSSA": ("tab:orange", "^"), "FWSVD": ("tab:green", "<"),
         "OURS": ("tab:red", "o")}
RANK = 4


def main():
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5))
    axes = axes.ravel()
    for ax, (folder, title) in zip(axes, PANELS.items(), strict=True):
        path = RESULTS / folder / "runs.csv"
        if not path.exists():
            ax.set_title(title + " (not run)")
            continue
        df = pd.read_csv(path)
        n = df.seed.nunique()
        for method, (color, marker) in STYLE.items():
            for penalty, fill in (("none", color), ("equalized_odds", "none")):
                part = df[(df.method == method) & (df.penalty == penalty)]
                if method in ("LoRA", "PiSSA", "FWSVD", "OURS"):
                    part = part[part["rank"] == RANK]
                if part.empty:
                    continue
                label = method if penalty == "none" else None
                ax.errorbar(part.eo.mean(), part.err.mean(),
                            xerr=part.eo.std(ddof=1), yerr=part.err.std(ddof=1),
                            color=color, marker=marker, mfc=fill, ms=7,
                            ls="none", capsize=2, label=label, alpha=0.85)
        ax.set_title(f"{title} ({n} seeds)", fontsize=10)
        ax.set_xlabel("ΔEO (sum of TPR and FPR gaps)")
        ax.set_ylabel("Err (100 - weighted F1, %)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="filled: no penalty\nopen: +EO x 0.5",
                   title_fontsize=8)
    fig.suptitle("Adapters (rank 4) against head-only TL and whole-model FT: "
                 "mean ± std over seeds; lower-left is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(RESULTS / "adapters_err_eo.png", dpi=110)
    print("wrote", RESULTS / "adapters_err_eo.png")


if __name__ == "__main__":
    main()
