"""The naive way (skorch on the whole model, backbone frozen) against our fit.

Row 9 of issue 8. CNN on 3x32x32 images, 20 epochs, batch 128, Adam, lr
0.01. The naive way trains skorch's ``NeuralNetClassifier`` on the whole
model with everything but the last ``nn.Linear`` (``head.2``) frozen by
skorch's ``Freezer``, so the frozen backbone runs at every step of every
epoch. Ours: ``FairLowRankFineTuner(rank=None)`` (plain fine-tuning of the
same layer: the same trainable parameters), which runs the backbone once.
With 20 epochs the speed-up is bounded by about 20x.
"""

import copy

import _common as c
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Freezer
from torch import nn


def naive_fit(backbone, X, y, epochs, device):
    net = NeuralNetClassifier(
        copy.deepcopy(backbone), criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam, lr=1e-2, max_epochs=epochs, batch_size=128,
        train_split=None, device=device, verbose=0,
        iterator_train__shuffle=True, classes=[0, 1],
        callbacks=[Freezer(lambda name: not name.startswith("head.2."))],
    )
    return net.fit(X, y)


def main(argv=None):
    args = c.parse_args(__doc__.splitlines()[0], argv)
    n = 1_000 if args.quick else 10_000
    epochs = 20
    X, y, s = c.image_data(n)
    backbone = c.cnn_backbone()
    c.forward_pass(backbone, X[:256], device=args.device)  # warm-up
    c.estimator(backbone, rank=None, max_epochs=1, device=args.device).fit(
        X[:256], y[:256])  # warm-up: one-time set-up is not a cost of a fit
    est = c.estimator(backbone, rank=None, max_epochs=epochs, batch_size=128,
                      lr=1e-2, random_state=0, device=args.device)
    ours1, _ = c.timed(lambda: est.fit(X, y, sensitive_features=s), args.device)
    naive_s, net = c.timed(
        lambda: naive_fit(backbone, torch.from_numpy(X), torch.from_numpy(y),
                          epochs, args.device), args.device)
    ours2, _ = c.timed(lambda: est.fit(X, y, sensitive_features=s), args.device)
    trainable = sum(p.numel() for p in net.module_.parameters() if p.requires_grad)
    ours = (ours1 + ours2) / 2
    ratio = naive_s / ours
    rows = [c.make_row(
        "naive_skorch_cnn",
        "naive skorch on the whole model (Freezer) / our fit, CNN, speed-up",
        ours, naive_s, ratio, ">= 18x (bound about 20x at 20 epochs)",
        ratio >= 18,
        measured_text=f"ours {ours:.2f} s", reference_text=f"naive {naive_s:.2f} s",
        notes=(f"N={n}, {epochs} epochs; our fits {ours1:.2f} s and {ours2:.2f} s "
               f"around the naive one; {trainable} trainable parameters in both"),
        params={"n": n, "epochs": epochs, "trainable": trainable},
    )]
    c.emit(args, rows, "bench_naive.py")


if __name__ == "__main__":
    main()
