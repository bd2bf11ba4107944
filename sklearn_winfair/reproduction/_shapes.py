"""A constructed image task: shapes on tinted backgrounds.

This is a CONSTRUCTED stand-in for the paper's CelebA (WavyHair / Male) and
LFW+a experiments, which cannot be downloaded here. What it keeps: 3 x 32 x 32
colour images, a visual target, a visual group attribute that is spuriously
correlated with the target, a correlation that differs between pre-training
and the new task, a convolutional backbone (a small ResNet written in the
package, :mod:`._resnet`) pre-trained on the pre-training part and frozen.
What it does not show: anything about faces, real-world bias, ResNet-18/50
or DenseNet, or the paper's numbers.

* Image: a light bar, horizontal (target ``y = 1``) or vertical (``y = 0``),
  3-14 px long and 2.5-4 px thick at a random place (the short ones are
  nearly square, hence ambiguous), on a background
  tinted warm (group ``"warm"``) or cool (group ``"cool"``), with a random
  brightness and Gaussian pixel noise (std 0.2).
* Pre-training part: P(warm | y=1) = 0.8, P(warm | y=0) = 0.2: the group is a
  shortcut for the target.
* New task: P(warm | y=1) = 0.3, P(warm | y=0) = 0.7: the shortcut is
  reversed and weaker.
* The backbone is pre-trained once (pre-training images drawn with seed 0),
  like a downloaded pre-trained model; each seed draws new new-task images,
  extracts their features once through the frozen trunk
  (:func:`trunk_features`) and shares them with every method (head-only
  methods see exactly what they would see through the whole frozen network).
  The scenario itself is in :mod:`._scenarios`.
"""

import numpy as np
import torch

from ._data import Split, Task
from ._settings import IMAGE_SIZES

__all__ = ["make_shapes", "make_shapes_task", "to_float", "trunk_features",
           "GROUPS"]

GROUPS = np.array(["cool", "warm"])
_TINT = {1: (0.62, 0.40, 0.36), 0: (0.36, 0.40, 0.62)}


def make_shapes(y, warm, seed, *, size=32, noise=0.2, chunk=2000):
    """Draw the images of :mod:`._shapes` for labels ``y`` and groups ``warm``.

    Parameters
    ----------
    y : ndarray of shape (n,)
        1 draws a horizontal bar, 0 a vertical one.
    warm : ndarray of bool, shape (n,)
        Background tint (the group attribute).
    seed : int
        Seed of positions, sizes, brightness and noise.
    size : int, default=32
    noise : float, default=0.2
        Std of the Gaussian pixel noise.
    chunk : int, default=2000
        Images drawn at once (memory).

    Returns
    -------
    X : ndarray of shape (n, 3, size, size), dtype uint8

    Examples
    --------
    >>> X = make_shapes(np.array([0, 1]), np.array([True, False]), seed=0)
    >>> X.shape, X.dtype.name
    ((2, 3, 32, 32), 'uint8')
    """
    rng = np.random.RandomState(seed)
    y, warm = np.asarray(y), np.asarray(warm, dtype=bool)
    n = len(y)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        m = sl.stop - sl.start
        length = rng.uniform(3.0, 14.0, m).astype(np.float32)
        thick = rng.uniform(2.5, 4.0, m).astype(np.float32)
        cx, cy = rng.uniform(9, size - 9, (2, m)).astype(np.float32)
        dx = np.abs(xx[None] - cx[:, None, None])
        dy = np.abs(yy[None] - cy[:, None, None])
        half_l = (length / 2)[:, None, None]
        half_t = (thick / 2)[:, None, None]
        horizontal = (dx <= half_l) & (dy <= half_t)
        vertical = (dx <= half_t) & (dy <= half_l)
        mask = np.where(y[sl, None, None] == 1, horizontal, vertical)
        tint = np.where(warm[sl, None], np.array(_TINT[1]), np.array(_TINT[0]))
        tint = tint + rng.uniform(-0.1, 0.1, (m, 1))
        img = np.broadcast_to(tint[:, :, None, None], (m, 3, size, size)).copy()
        fg = rng.uniform(0.6, 0.95, m)[:, None, None]
        for c in range(3):
            img[:, c][mask] = np.broadcast_to(fg, mask.shape)[mask]
        img += rng.normal(0.0, noise, img.shape)
        out[sl] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return out


def _draw(n, p_warm_given_y, seed):
    rng = np.random.RandomState(seed)
    y = (rng.uniform(size=n) < 0.5).astype(np.int64)
    p = np.where(y == 1, p_warm_given_y[1], p_warm_given_y[0])
    warm = rng.uniform(size=n) < p
    return y, warm


def make_shapes_task(seed, *, sizes=IMAGE_SIZES, pre_seed=0):
    """Build the constructed shapes task (images as uint8 N x 3 x 32 x 32).

    Parameters
    ----------
    seed : int
        Seed of the new task's images (train / val / test).
    sizes : tuple of 4 int, default=IMAGE_SIZES
        Pre-training, train, validation and test sizes.
    pre_seed : int, default=0
        Seed of the pre-training images (fixed: one pre-trained backbone).

    Returns
    -------
    task : Task
        Groups ``"warm"`` / ``"cool"``; class 1 = horizontal bar.
    """
    n_pre, n_train, n_val, n_test = sizes
    y_pre, w_pre = _draw(n_pre, {1: 0.8, 0: 0.2}, 10_000 + pre_seed)
    X_pre = make_shapes(y_pre, w_pre, 20_000 + pre_seed)
    n_new = n_train + n_val + n_test
    y_new, w_new = _draw(n_new, {1: 0.3, 0: 0.7}, 30_000 + seed)
    X_new = make_shapes(y_new, w_new, 40_000 + seed)
    cuts = np.cumsum([0, n_train, n_val, n_test])
    parts = [Split(X_new[a:b], y_new[a:b], GROUPS[w_new[a:b].astype(int)])
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return Task(
        "shapes", Split(X_pre, y_pre, GROUPS[w_pre.astype(int)]), *parts,
        classes=["vertical", "horizontal"],
        pre_classes=["vertical", "horizontal"],
        pos_label=1,
        description=(
            "CONSTRUCTED task, not the paper's CelebA / LFW+a: 3x32x32 noisy "
            "images of a horizontal (y=1) or vertical bar, 3-14 px long, on a "
            "warm or cool background (the group). Pre-training: "
            "P(warm|y=1)=0.8, P(warm|y=0)=0.2; new task: P(warm|y=1)=0.3, "
            "P(warm|y=0)=0.7 "
            "(the shortcut is reversed and weaker)."
        ),
    )


def to_float(X):
    """uint8 images to float32 in [0, 1]."""
    return X.astype(np.float32) / 255.0


@torch.no_grad()
def trunk_features(trunk, X, batch_size=500):
    """Output of the frozen ``trunk`` on uint8 images ``X`` (float32 ndarray)."""
    trunk.eval()
    out = [trunk(torch.from_numpy(to_float(X[i : i + batch_size])))
           for i in range(0, len(X), batch_size)]
    return torch.cat(out).numpy()
