"""A constructed Colored-MNIST-style image task from ``load_digits``.

This is *not* the paper's CelebA / LFW+a experiment: it is a small,
offline stand-in that exercises the same code path (a CNN backbone, inputs
of shape N x C x H x W, a 2-layer head factorized by the weighted SVD).

* Images: the 1,797 8x8 digits of :func:`sklearn.datasets.load_digits`,
  upsampled to 16x16 (each pixel repeated 2x2), scaled to [0, 1], with small
  Gaussian pixel noise, painted into the red or the green channel of a 3
  channel image. The colour is the sensitive group.
* Pre-training task: ``digit < 5``; red for 80 % of the positives and 20 % of
  the negatives (colour correlated with the label one way).
* New task: digit parity (``digit is even`` is class 1); red for 20 % of the
  positives and 80 % of the negatives (correlation flipped).
* 60 % of the images (at random) for pre-training, the other 40 % split in the
  paper's Table 1 ratio.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from ._data import PRETRAIN_FRACTION, Split, Task, ratio_sizes

__all__ = ["CNN_HEAD", "CNN_ARCHITECTURE", "make_digits_task", "build_cnn"]

CNN_HEAD = "1"
CNN_ARCHITECTURE = (
    "CNN: trunk Conv(3,8,3)-ReLU-MaxPool-Conv(8,16,3)-ReLU-MaxPool-Flatten "
    "(256 features), head Linear(256,32)-ReLU-Linear(32,2) = '1'"
)


def _colour(images, red, rng):
    n = len(images)
    X = np.zeros((n, 3, 16, 16), dtype=np.float32)
    big = np.kron(images, np.ones((1, 2, 2))) / 16.0
    big = np.clip(big + rng.normal(scale=0.05, size=big.shape), 0, 1)
    X[red, 0] = big[red]
    X[~red, 1] = big[~red]
    return X


def make_digits_task(seed, *, n_rows=None, correlation=0.8):
    """Build the constructed coloured-digits transfer task.

    Parameters
    ----------
    seed : int
        Seed of the colours, noise and split.
    n_rows : int or None, default=None
        Use a random subset of this many images; None uses all 1,797.
    correlation : float, default=0.8
        ``P(red | y = 1)`` on the pre-training task (``1 - correlation`` on
        the new task, where the correlation is flipped).

    Returns
    -------
    task : Task
        X of shape (n, 3, 16, 16), float32; groups ``"red"`` / ``"green"``.
    """
    digits = load_digits()
    rng = np.random.RandomState(seed)
    rows = np.arange(len(digits.target))
    if n_rows is not None and n_rows < len(rows):
        rows = np.sort(rng.choice(rows, n_rows, replace=False))
    images, digit = digits.images[rows], digits.target[rows]
    order = rng.permutation(len(rows))
    n_pre = int(round(PRETRAIN_FRACTION * len(rows)))
    pre, new = order[:n_pre], order[n_pre:]

    y_pre = (digit[pre] < 5).astype(np.int64)
    red_pre = rng.uniform(size=len(pre)) < np.where(y_pre == 1, correlation,
                                                    1 - correlation)
    y_new = (digit[new] % 2 == 0).astype(np.int64)
    red_new = rng.uniform(size=len(new)) < np.where(y_new == 1, 1 - correlation,
                                                    correlation)

    def split(idx, y, red):
        X = _colour(images[idx], red, rng)
        return Split(X, y, np.where(red, "red", "green"))

    n_train, n_val, _ = ratio_sizes(len(new))
    parts = [slice(0, n_train), slice(n_train, n_train + n_val),
             slice(n_train + n_val, None)]
    return Task(
        "digits-colour", split(pre, y_pre, red_pre),
        *[split(new[p], y_new[p], red_new[p]) for p in parts],
        classes=["odd", "even"], pre_classes=[">=5", "<5"], pos_label=1,
        description=(
            "CONSTRUCTED task, not the paper's CelebA / LFW+a: load_digits "
            "upsampled to 3x16x16, colour (red/green) = group. Pre-train on "
            f"digit<5 with P(red|y=1)={correlation}; fine-tune on digit parity "
            f"with the correlation flipped (P(red|even)={1 - correlation:.1f})."
        ),
    )


def build_cnn(*, n_out=2, seed=0):
    """Return the image backbone ``nn.Sequential(trunk, head)`` (eval mode)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(),
            ),
            nn.Sequential(nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, n_out)),
        )
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
