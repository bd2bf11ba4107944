"""Adapters inside a convolutional and a transformer backbone (issue 19).

Two settings where the frozen features were learned for something else, so
adapting layers inside the backbone can change what head-only fine-tuning
cannot:

``--setting images``
    The constructed shapes task (``reproduction._shapes``): a horizontal
    (y = 1) or vertical bar on a warm or cool background (the group). The
    small ResNet of ``reproduction._resnet`` is pre-trained once (seed 0) on
    pre-training images where the tint is a shortcut for the label
    (P(warm | y=1) = 0.8, P(warm | y=0) = 0.2) exactly as ``winfair-bench
    images`` does (5 epochs, Adam lr 3e-3, batch 128); in the new task the
    shortcut is reversed and weaker (0.3 / 0.7). Each seed draws new new-task
    images. Adapters on the last block's two convolutions ``0.5.conv1``,
    ``0.5.conv2`` (through their matrix view) and on the layer before the
    head ``1.0`` (Linear 32 -> 32); the head is ``1.2`` (Linear 32 -> 2).

``--setting text``
    A tiny ``BertForSequenceClassification`` built from a ``BertConfig``
    (2 layers, hidden 32, 2 heads, intermediate 64, no dropout), pre-trained
    here. A sequence is ``[CLS] g t_1 .. t_14`` with a group token ``g`` (id 2
    or 3; the group) and 14 content tokens from ids 4..63. Pre-training task
    (20 000 sequences, 5 epochs, Adam lr 1e-3, batch 128, every parameter):
    y = 1 draws each content token from the "positive" set P = 4..33 with
    probability 0.6 (else from 34..63), y = 0 with probability 0.4, and the
    group token is a shortcut, P(g=3 | y=1) = 0.8, P(g=3 | y=0) = 0.2. New
    task (per seed): the positive set is another one, P' = 4..18 and 34..48
    (half of it overlaps P), drawn the same way, and the group shortcut is
    reversed and weaker, P(g=3 | y=1) = 0.3, P(g=3 | y=0) = 0.7. Adapters on
    the last block's attention (query, key, value, attention output dense)
    and feed-forward (intermediate dense, output dense); the head is
    ``classifier`` (Linear 32 -> 2; the pooler stays frozen).

Methods, every one with the same protocol (chosen once, before any run, the
same for all methods; not tuned): Adam, ``--lr``, ``--batch-size``,
``--epochs`` epochs, the training-loss stopping rule off
(``n_iter_no_change`` above ``max_epochs``), backbone in eval mode
(batch-norm statistics frozen, no dropout), each also with the
equalized-odds penalty at strength ``--strength`` (suffix ``+EO``; with
``--penalty demographic_parity`` the DP penalty, suffix ``+DP``;
``--skip-plain`` runs only the penalized fits):

* ``TL``: the head ``FairLowRankFineTuner(rank=None)`` (trunk frozen);
* ``FT``: whole-model fine-tuning, every parameter, a plain torch loop
  with the same optimizer, lr, batch size, epochs and penalty;
* ``LoRA`` / ``PiSSA`` / ``FWSVD`` / ``OURS``:
  ``FairLowRankFineTuner(target_modules=..., rank=--rank, adapter_init=
  "lora" / "svd", importance="uniform" / "uniform" / "fisher" /
  "neutral")``, adapters and the head trained.

Metrics on the seed's test part: Err (100 - weighted F1, %), Delta_DP,
Delta_EO (sum of the TPR and FPR gaps; ``paper_metrics``), trainable
parameters (``n_trainable_params_``; FT: all), seconds per fit (wall clock,
one CPU thread, shared machine). Paired differences are per seed.

Run from the repository root::

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/measure_backbones.py --setting images
    nice python benchmarks/adapters/measure_backbones.py --setting text

Writes ``runs.csv`` (after every seed) and ``summary.md`` into ``--out``;
``--summarize`` only rewrites ``summary.md`` from an existing ``runs.csv``.
"""

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_winfair import (
    FairLowRankFineTuner,
    demographic_parity_penalty,
    equalized_odds_penalty,
)
from sklearn_winfair.metrics import paper_metrics

HERE = Path(__file__).parent
#: adapter method -> (importance, adapter_init)
ADAPTERS = {"LoRA": ("uniform", "lora"), "PiSSA": ("uniform", "svd"),
            "FWSVD": ("fisher", "svd"), "OURS": ("neutral", "svd")}
ORDER = ["pre-trained", "TL", "FT", *ADAPTERS]
SUFFIX = {"none": "", "equalized_odds": "+EO", "demographic_parity": "+DP"}


# ------------------------------------------------------------------ data
#: the pre-trained backbone of each setting, built once per process
_PRETRAINED = {"images": {}, "text": {}}


def _images(seed, args):
    from sklearn_winfair.reproduction._pretrain import train_torch
    from sklearn_winfair.reproduction._resnet import build_resnet
    from sklearn_winfair.reproduction._shapes import make_shapes_task, to_float

    cache = _PRETRAINED["images"]
    sizes = (args.n_pre, args.n_train, 0, args.n_test)
    task = make_shapes_task(seed, sizes=sizes)
    if "model" not in cache:
        pre = make_shapes_task(0, sizes=sizes).pre
        t0 = time.perf_counter()
        cache["model"] = train_torch(build_resnet(seed=0), to_float(pre.X), pre.y,
                                     epochs=5, lr=3e-3, batch_size=128, seed=0)
        cache["seconds"] = time.perf_counter() - t0
        print(f"pre-trained the ResNet in {cache['seconds']:.0f} s", flush=True)
    model = cache["model"]
    targets = r"0\.5\.conv[12]|1\.0"
    return (model, targets, (to_float(task.train.X), task.train.y, task.train.s),
            (to_float(task.test.X), task.test.y, task.test.s))


P_PRE = np.arange(4, 34)
P_NEW = np.r_[4:19, 34:49]


def _sequences(n, positive, p_group, rng, p_pos=(0.4, 0.6)):
    """``[CLS] g t_1..t_14``: content from ``positive`` w.p. p_pos[y]."""
    y = (rng.uniform(size=n) < 0.5).astype(np.int64)
    g = rng.uniform(size=n) < np.where(y == 1, p_group[1], p_group[0])
    negative = np.setdiff1d(np.arange(4, 64), positive)
    from_pos = rng.uniform(size=(n, 14)) < np.where(y == 1, p_pos[1],
                                                     p_pos[0])[:, None]
    ids = np.where(from_pos, rng.choice(positive, (n, 14)),
                   rng.choice(negative, (n, 14)))
    ids = np.c_[np.ones(n, np.int64), np.where(g, 3, 2), ids].astype(np.int64)
    s = np.where(g, "g3", "g2")
    return ids, y, s


def _text(seed, args):
    import transformers

    cache = _PRETRAINED["text"]
    if "model" not in cache:
        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
        model = transformers.BertForSequenceClassification(config)
        ids, y, _ = _sequences(args.n_pre, P_PRE, {1: 0.8, 0: 0.2},
                               np.random.RandomState(10_000))
        t0 = time.perf_counter()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        ids_t, y_t = torch.as_tensor(ids), torch.as_tensor(y)
        model.train()
        for _ in range(5):
            order = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), 128):
                idx = order[i : i + 128]
                loss = model(input_ids=ids_t[idx], labels=y_t[idx]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        cache["model"] = model.eval()
        cache["seconds"] = time.perf_counter() - t0
        print(f"pre-trained the BERT in {cache['seconds']:.0f} s", flush=True)
    rng = np.random.RandomState(30_000 + seed)
    parts = []
    for n in (args.n_train, args.n_test):
        ids, y, s = _sequences(n, P_NEW, {1: 0.3, 0: 0.7}, rng)
        parts.append(({"input_ids": ids, "attention_mask": np.ones_like(ids)},
                      y, s))
    targets = (r"bert\.encoder\.layer\.1\.(attention\.self\.(query|key|value)"
               r"|attention\.output\.dense|intermediate\.dense|output\.dense)")
    return cache["model"], targets, parts[0], parts[1]


SETTINGS = {"images": _images, "text": _text}


# --------------------------------------------------------------- methods
def _to_tensor(X):
    if isinstance(X, dict):
        return {k: torch.as_tensor(v) for k, v in X.items()}
    return torch.as_tensor(X)


def _index(X, idx):
    return {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]


def _logits(model, X):
    out = model(**X) if isinstance(X, dict) else model(X)
    return getattr(out, "logits", out)


def _codes(s):
    return torch.as_tensor(np.unique(s, return_inverse=True)[1])


def finetune_whole(model, X, y, s, *, lr, batch_size, epochs, penalty,
                   strength, seed):
    """Every parameter with Adam; the model in eval mode as for the others."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    X_t, y_t, g_t = _to_tensor(X), torch.as_tensor(y), _codes(s)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y_t), generator=gen)
        for i in range(0, len(y_t), batch_size):
            idx = order[i : i + batch_size]
            logits = _logits(model, _index(X_t, idx))
            loss = torch.nn.functional.cross_entropy(logits, y_t[idx])
            if penalty is not None:
                proba = logits.softmax(1)[:, 1]
                if penalty == "demographic_parity":
                    pen = demographic_parity_penalty(proba, g_t[idx],
                                                     num_groups=2,
                                                     validate_args=False)
                else:
                    pen = equalized_odds_penalty(proba, y_t[idx], g_t[idx],
                                                 num_groups=2,
                                                 validate_args=False)
                loss = loss + strength * pen
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.requires_grad_(False)


@torch.no_grad()
def predict_model(model, X, batch_size=1000):
    X_t = _to_tensor(X)
    n = len(next(iter(X_t.values())) if isinstance(X_t, dict) else X_t)
    return torch.cat([_logits(model, _index(X_t, slice(i, i + batch_size)))
                      .argmax(1) for i in range(0, n, batch_size)]).numpy()


def run_seed(seed, args):
    model, targets, (X, y, s), (Xt, yt, st) = SETTINGS[args.setting](seed, args)
    common = dict(solver="adam", lr=args.lr, batch_size=args.batch_size,
                  max_epochs=args.epochs, n_iter_no_change=args.epochs + 1,
                  random_state=seed)
    rows = []

    def record(method, penalty, pred, seconds, n_trainable, trunc=np.nan):
        m = paper_metrics(yt, pred, sensitive_features=st)
        rows.append(dict(seed=seed, method=method, penalty=penalty or "none",
                         rank=args.rank if method in ADAPTERS else 0,
                         seconds=seconds, n_trainable=n_trainable,
                         truncation_error=trunc, err=m["err"], dp=m["dp_gap"],
                         eo=m["eo_gap"]))
        print(f"  seed {seed} {method}{SUFFIX[penalty or 'none']}: "
              f"Err {m['err']:.2f} DP {m['dp_gap']:.3f} EO {m['eo_gap']:.3f} "
              f"{seconds:.1f} s", flush=True)

    record("pre-trained", None, predict_model(model, Xt), 0.0, 0)
    for penalty in ((() if args.skip_plain else (None,)) + (args.penalty,)):
        pen = dict(fairness_penalty=penalty, penalty_strength=args.strength) \
            if penalty else {}
        t0 = time.perf_counter()
        clf = FairLowRankFineTuner(model, rank=None, importance="uniform",
                                   **common, **pen).fit(X, y,
                                                        sensitive_features=s)
        record("TL", penalty, clf.predict(Xt), time.perf_counter() - t0,
               clf.n_trainable_params_)
        t0 = time.perf_counter()
        ft = finetune_whole(model, X, y, s, lr=args.lr,
                            batch_size=args.batch_size, epochs=args.epochs,
                            penalty=penalty, strength=args.strength, seed=seed)
        record("FT", penalty, predict_model(ft, Xt), time.perf_counter() - t0,
               sum(p.numel() for p in model.parameters()))
        for method, (importance, init) in ADAPTERS.items():
            t0 = time.perf_counter()
            clf = FairLowRankFineTuner(
                model, target_modules=targets, rank=args.rank,
                importance=importance, adapter_init=init, **common, **pen,
            ).fit(X, y, sensitive_features=s)
            trunc = (np.mean(list(clf.truncation_error_.values()))
                     if clf.truncation_error_ else np.nan)
            record(method, penalty, clf.predict(Xt), time.perf_counter() - t0,
                   clf.n_trainable_params_, trunc)
    return rows


# --------------------------------------------------------------- summary
def _ms(v, fmt=".4f"):
    return f"{np.mean(v):{fmt}} ± {np.std(v, ddof=1):{fmt}}"


def _pd(v):
    return f"{np.mean(v):+.4f} ± {np.std(v, ddof=1):.4f}"


def summarize(df, header):
    df = df.copy()
    df["label"] = df.method + df.penalty.map(SUFFIX)
    pen = [SUFFIX[p] for p in ("equalized_odds", "demographic_parity")
           if p in set(df.penalty)]
    lines = [header, "", "Mean ± std over seeds (test part).", "",
             "| method | Err | ΔDP | ΔEO | trainable | s/fit | trunc. err |",
             "|---|---|---|---|---|---|---|"]
    labels = [m for m in ORDER if m in set(df.label)]
    labels += [f"{m}{x}" for x in pen for m in ORDER
               if f"{m}{x}" in set(df.label)]
    for label in labels:
        part = df[df.label == label]
        lines.append(
            f"| {label} | {_ms(part.err, '.2f')} | {_ms(part.dp)} | "
            f"{_ms(part.eo)} | {int(part.n_trainable.iloc[0])} | "
            f"{part.seconds.mean():.1f} | "
            + (f"{part.truncation_error.mean():.3f}"
               if part.truncation_error.notna().any() else "-") + " |")
    wide = df.pivot_table(index="seed", columns="label",
                          values=["err", "dp", "eo"])
    lines += ["", "Paired differences over seeds (mean ± std of the per-seed "
              "difference; ΔErr in points of Err):", "",
              "| contrast | ΔErr | ΔΔDP | ΔΔEO |", "|---|---|---|---|"]
    contrasts = []
    for suffix in ("", *pen):
        contrasts += [(f"OURS{suffix}", f"{ref}{suffix}")
                      for ref in ("PiSSA", "LoRA", "FWSVD")]
        contrasts += [(f"{m}{suffix}", f"TL{suffix}")
                      for m in ("FT", *ADAPTERS)]
    contrasts += [(f"{m}{x}", m) for x in pen for m in ("TL", "FT", *ADAPTERS)]
    for a, b in contrasts:
        if a not in labels or b not in labels:
            continue
        cells = [_pd((wide[(c, a)] - wide[(c, b)]).dropna().to_numpy())
                 for c in ("err", "dp", "eo")]
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=list(SETTINGS), required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--penalty", default="equalized_odds",
                        choices=["demographic_parity", "equalized_odds"])
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--n-pre", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--skip-plain", action="store_true",
                        help="only the penalized fits (and the pre-trained "
                        "row)")
    args = parser.parse_args()
    defaults = {"images": (10_000, 3_000, 2_000), "text": (20_000, 3_000, 4_000)}
    for name, value in zip(("n_pre", "n_train", "n_test"),
                           defaults[args.setting], strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    out = args.out or HERE / "results" / f"{args.setting}_backbone"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    header = (f"Setting {args.setting!r}: {args.n_pre} pre-training, "
              f"{args.n_train} train and {args.n_test} test rows; adapters at "
              f"rank {args.rank}; Adam lr {args.lr}, batch {args.batch_size}, "
              f"{args.epochs} epochs for every method; "
              f"'{SUFFIX[args.penalty]}': "
              f"{args.penalty} penalty x {args.strength}. See "
              "measure_backbones.py for the construction.")
    if args.summarize:
        df = pd.read_csv(out / "runs.csv")
        n = df.seed.nunique()
        (out / "summary.md").write_text(summarize(df, header + f" {n} seeds."))
        return
    rows, start = [], time.perf_counter()
    for seed in range(args.seeds):
        rows += run_seed(seed, args)
        df = pd.DataFrame(rows)
        df.to_csv(out / "runs.csv", index=False)
        elapsed = time.perf_counter() - start
        (out / "summary.md").write_text(summarize(
            df, header + f" {seed + 1} seeds, {elapsed:.0f} s so far on one "
            "CPU thread of a shared machine."))
        print(f"seed {seed} done, {elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
