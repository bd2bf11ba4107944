"""Seconds per training step: our adapters against the same adapters in peft.

A BERT classifier built from a ``BertConfig`` (random weights, nothing
downloads) with adapters on every ``query`` and ``value`` layer at rank 8:

* ``ours``: :func:`sklearn_winfair._adapters.inject_adapters` (PiSSA split);
* ``peft``: the same factors exported by :func:`~sklearn_winfair._adapters.to_peft`
  (peft's LoRA layers; identical outputs, tested);
* ``head only``: the classifier alone trains (the trunk still runs each step:
  no feature cache here, so this is the cost of the forward, not of a fit);
* ``full``: every parameter trains.

One step = forward, cross-entropy, backward, Adam step on one batch.
Median over ``--steps`` steps after 3 warm-up steps, one CPU thread.

    export PYTHONPATH=. OMP_NUM_THREADS=1
    nice python benchmarks/adapters/time_adapters_vs_peft.py
"""

import argparse
import statistics
import time

import torch
import transformers
from torch.nn import functional as F

from sklearn_winfair._adapters import inject_adapters, match_target_modules, to_peft


def bert(hidden, layers):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=4 * hidden,
        max_position_embeddings=128, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def step_seconds(model, params, batch, y, steps):
    model.train()
    opt = torch.optim.Adam(params, lr=1e-4)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(**batch).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = bert(args.hidden, args.layers)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1, 1000, (args.batch, args.seq), generator=g),
             "attention_mask": torch.ones(args.batch, args.seq, dtype=torch.long)}
    y = torch.randint(0, 2, (args.batch,), generator=g)
    names = match_target_modules(base, ["query", "value"])
    ours, info = inject_adapters(base, names, args.rank, init="uniform")
    theirs = to_peft(ours)
    results = {}
    results["ours"] = step_seconds(
        ours, [p for p in ours.parameters() if p.requires_grad], batch, y, args.steps)
    results["peft"] = step_seconds(
        theirs, [p for p in theirs.parameters() if p.requires_grad], batch, y,
        args.steps)
    head = bert(args.hidden, args.layers)
    head.requires_grad_(False)
    head.classifier.requires_grad_(True)
    results["head only"] = step_seconds(head, list(head.classifier.parameters()),
                                        batch, y, args.steps)
    full = bert(args.hidden, args.layers)
    results["full"] = step_seconds(full, list(full.parameters()), batch, y,
                                   args.steps)
    print(f"BERT hidden {args.hidden}, {args.layers} layers, batch {args.batch} x "
          f"{args.seq} tokens, adapters rank {args.rank} on {len(names)} layers "
          f"({info['n_trainable']} trainable); median of {args.steps} steps, "
          "1 thread\n")
    print("| model | s/step | vs ours |\n|---|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v:.4f} | {v / results['ours']:.2f} |")


if __name__ == "__main__":
    main()
