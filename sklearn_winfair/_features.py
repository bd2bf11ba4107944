"""Frozen features: the head's input, extracted once, and the feature store.

Which library does what here: torch runs the frozen trunk without gradients
and a forward pre-hook on the head captures its input; joblib hashes the
backbone's content; numpy writes the store's shards.

The feature store (``memory=``) keys features by the backbone's content and
by **each row's** content, so a ``GridSearchCV`` whose folds and refit see
overlapping rows runs the backbone once per distinct row over the whole
search. Each fit adds one shard file (written to a temporary name, then
renamed), so several processes or Dask workers can share one folder without
locks.
"""

import hashlib
import os
import uuid
from collections import OrderedDict
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ._outputs import find_logits

__all__ = [
    "FeatureStore",
    "backbone_fingerprint",
    "extract_features",
    "extract_head_inputs",
    "row_keys",
]

_NOT_LAST = (
    "The head's output is not the logits of the backbone's output. The head "
    "must be the last step of forward and return the class logits (no "
    "softmax or other layer after it); if the logits are elsewhere in the "
    "output, say where with output=..."
)


def _batches(n, batch_size, verbose, desc):
    starts = range(0, n, batch_size)
    if verbose:
        # disable=None: no bar when stderr is not a terminal (a log file gets
        # no carriage returns and no "0%" leftovers)
        starts = tqdm(starts, desc=desc, unit="batch", leave=False, disable=None)
    return starts


@torch.no_grad()
def extract_head_inputs(model, head, data, *, batch_size, device, float_dtype,
                        output=None, check_output=True, verbose=False,
                        desc="frozen features"):
    """Run ``model`` over ``data`` in batches; yield the head's input per batch.

    Parameters
    ----------
    model : torch.nn.Module
        The frozen backbone (eval mode), on ``device``.
    head : torch.nn.Module
        A submodule of ``model`` called once per forward pass.
    data : InputData
        The checked input (see :mod:`sklearn_winfair._inputs`).
    batch_size : int
        Rows per forward pass.
    device : torch.device
        Where each batch is copied.
    float_dtype : torch.dtype
        The trunk's floating dtype; floating inputs are cast per batch.
    output : None, str, int or callable, default=None
        Where the logits are in the output (see
        :func:`~sklearn_winfair._outputs.find_logits`).
    check_output : bool, default=True
        On the first batch, check that the head's output is the logits.
    verbose : bool, default=False
        Show a progress bar.
    desc : str, default="frozen features"
        Its label.

    Yields
    ------
    features : torch.Tensor of shape (batch, d), float32, on ``device``
    """
    captured = {}

    def pre_hook(module, args):
        if not captured.get("active"):  # the head called outside our forward
            return
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            raise ValueError(
                "The head must take a single tensor as input; got "
                f"{len(args)} positional argument(s)."
            )
        if "x" in captured:
            raise ValueError(
                "The head is called more than once per forward pass; name a "
                "head that is applied once (head=...)."
            )
        captured["x"] = args[0]

    def post_hook(module, args, out):
        if captured.get("active"):
            captured["out"] = out

    handles = [head.register_forward_pre_hook(pre_hook)]
    if check_output:
        handles.append(head.register_forward_hook(post_hook))
    try:
        for i, start in enumerate(_batches(len(data), batch_size, verbose, desc)):
            captured.clear()
            captured["active"] = True
            try:
                batch = data.batch(start, start + batch_size, device, float_dtype)
                out = data.forward(model, batch)
            finally:
                captured["active"] = False
            if "x" not in captured:
                raise ValueError(
                    "The head was not called in the backbone's forward pass."
                )
            if check_output and i == 0:
                check_head_is_last(model, head, find_logits(out, output),
                                   captured["out"], captured["x"])
            yield captured["x"].detach().float()
    finally:
        for h in handles:
            h.remove()


def _candidates(model, logits_width):
    """Modules whose output could be the logits: linear layers of that width."""
    return [
        name for name, m in model.named_modules()
        if name and getattr(m, "out_features", getattr(m, "out_channels", None))
        == logits_width
    ]


def check_head_is_last(model, head, logits, head_out, head_in):
    """Raise a ValueError unless ``head``'s output is the backbone's logits.

    A head whose output is only flattened after it (a 1x1 convolution
    classifier, ``(N, k, 1, 1)`` -> ``(N, k)``) counts as last. NaN in the
    head's input is blamed on the backbone, not on the head's position.
    """
    if not bool(torch.isfinite(head_in).all()):
        return  # the caller's finiteness check names the rows
    if isinstance(head_out, torch.Tensor) and head_out.ndim > 2 and len(head_out):
        head_out = head_out.reshape(len(head_out), -1)
    if (
        isinstance(head_out, torch.Tensor)
        and logits.shape == head_out.shape
        and torch.equal(logits, head_out)
    ):
        return
    name = next((n for n, m in model.named_modules() if m is head), "?")
    got = tuple(head_out.shape) if isinstance(head_out, torch.Tensor) else type(
        head_out).__name__
    width = logits.shape[-1] if logits.ndim else None
    raise ValueError(
        f"{_NOT_LAST} The head picked is {name!r} ({type(head).__name__}); its "
        f"output has shape {got} where the logits have shape "
        f"{tuple(logits.shape)}. Modules whose output width matches the "
        f"logits: {_candidates(model, width)[-10:]}; pass head='<name>'."
    )


def extract_features(model, head, data, **kwargs):
    """Every row's frozen features as one tensor (see :func:`extract_head_inputs`).

    Filled in place: a list of batches and its concatenation would hold the
    features twice at the peak.

    Returns
    -------
    features : torch.Tensor of shape (n_samples, d), float32
    """
    out, start = None, 0
    for f in extract_head_inputs(model, head, data, **kwargs):
        if out is None:
            out = torch.empty((len(data), *f.shape[1:]), dtype=f.dtype, device=f.device)
        out[start : start + len(f)] = f
        start += len(f)
    return out


def backbone_fingerprint(backbone, *parts):
    """Content hash of a backbone's architecture and weights, plus ``parts``.

    joblib's own hash of a torch module changes with every deep copy (its
    pickle holds storage addresses), so the weights are hashed as arrays.

    Parameters
    ----------
    backbone : torch.nn.Module
        The user's model.
    *parts : hashable by joblib
        Whatever else identifies the features (the head's name, say).

    Returns
    -------
    key : str
    """
    state = []
    for k, v in backbone.state_dict().items():
        v = v.detach().cpu()
        values = v.float() if v.is_floating_point() else v
        state.append((k, str(v.dtype), values.numpy()))
    return joblib.hash((repr(backbone), state, parts))


def row_keys(data):
    """Return a 16-byte content hash of every row of ``data`` (an ``InputData``).

    Parameters
    ----------
    data : InputData
        The checked input.

    Returns
    -------
    keys : ndarray of shape (n_samples,), dtype S16
    """
    tensors = data.tensors()
    n = len(data)
    keys = np.empty(n, dtype="S16")
    step = 4096
    for start in range(0, n, step):
        chunks = [
            np.ascontiguousarray(
                t[start : start + step].reshape(min(step, n - start), -1).numpy()
            )
            for _, t in tensors
        ]
        for i in range(len(chunks[0])):
            h = hashlib.blake2b(digest_size=16)
            for (name, t), c in zip(tensors, chunks, strict=True):
                h.update(name.encode())
                h.update(str(t.dtype).encode())
                h.update(c[i].tobytes())
            keys[start + i] = h.digest()
    return keys


#: Shards read in this process, by path: a shard never changes once written, so
#: the fits of a search (and the scoring of each fold) read each file once.
_SHARD_CACHE = OrderedDict()
#: Bytes of features the cache may hold before it forgets the oldest shards.
_SHARD_CACHE_BYTES = 512 * 2**20


def _load_shard(path):
    """Return ``(pandas.Index of row keys, features)`` of a shard, cached."""
    key = str(path)
    if key in _SHARD_CACHE:
        _SHARD_CACHE.move_to_end(key)
        return _SHARD_CACHE[key]
    with np.load(path) as f:
        entry = (pd.Index(f["keys"]), f["features"])
    _SHARD_CACHE[key] = entry
    while len(_SHARD_CACHE) > 1 and sum(
        v[1].nbytes for v in _SHARD_CACHE.values()
    ) > _SHARD_CACHE_BYTES:
        _SHARD_CACHE.popitem(last=False)
    return entry


class FeatureStore:
    """Features of rows, keyed by row content, in one folder per backbone.

    Parameters
    ----------
    location : str or path-like
        Parent folder (``joblib.Memory``'s ``location``).
    key : str
        The backbone's :func:`backbone_fingerprint`.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn_winfair._features import FeatureStore
    >>> store = FeatureStore(tempfile.mkdtemp(), "backbone")
    >>> keys = np.array([b"a" * 16, b"b" * 16], dtype="S16")
    >>> store.add(keys[:1], np.ones((1, 3), dtype="float32"))
    >>> feats, found = store.lookup(keys)
    >>> found.tolist()
    [True, False]
    """

    def __init__(self, location, key):
        self.folder = Path(location) / "sklearn_winfair_features" / key

    def _shards(self):
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.npz"))

    def lookup(self, keys):
        """Return ``(features or None, found mask)`` for the rows ``keys``."""
        found = np.zeros(len(keys), dtype=bool)
        features = None
        for shard in self._shards():
            index, stored = _load_shard(shard)
            where = index.get_indexer(keys)
            hit = (where >= 0) & ~found
            if not hit.any():
                continue
            if features is None:
                features = np.zeros((len(keys), stored.shape[1]), dtype=np.float32)
            features[hit] = stored[where[hit]]
            found |= hit
        return features, found

    def add(self, keys, features):
        """Write the rows ``keys`` with their ``features`` as a new shard."""
        if len(keys) == 0:
            return
        # identical rows share a key; a shard's index must be unique to be read
        keys, first = np.unique(np.asarray(keys), return_index=True)
        features = np.asarray(features)[first]
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.asarray(keys), features=np.asarray(features))
        os.replace(tmp, self.folder / f"{name}.npz")
