"""Frozen features: the head's input, extracted once.

Which library does what here: torch runs the frozen trunk without gradients
and a forward pre-hook on the head captures the head's input. The feature
store that keeps these features between fits (``memory=``) is in
:mod:`sklearn_winfair._store`; its names are re-exported here.
"""

import torch
from tqdm.auto import tqdm

from ._inputs import InputData
from ._outputs import find_logits
from ._store import FeatureStore, backbone_fingerprint, cached_features, row_keys

__all__ = [
    "FeatureExtractor",
    "FeatureStore",
    "check_finite_features",
    "backbone_fingerprint",
    "extract_features",
    "extract_head_inputs",
    "prefix_outputs",
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


@torch.no_grad()
def _run_prefix(prefix, data, batch_size, device, float_dtype, verbose):
    out = None
    for start in _batches(len(data), batch_size, verbose, "frozen prefix"):
        z = prefix(data.batch(start, start + batch_size, device, float_dtype))
        if out is None:
            out = torch.empty((len(data), *z.shape[1:]), dtype=z.dtype, device=z.device)
        out[start : start + len(z)] = z
    return out


def prefix_outputs(prefix, data, *, like, store, key, batch_size, device,
                   float_dtype, seed=None, verbose=False):
    """Run the frozen ``prefix`` over every row once, or read it from the store.

    Parameters
    ----------
    prefix : torch.nn.Module
        The frozen steps below the lowest adapted layer (eval mode), taking
        one tensor batch.
    data : InputData
        The rows (a tensor input).
    like : torch.Tensor
        The prefix's output on a few rows: the shape and dtype of a row.
    store : tuple of (location, torch.nn.Module) or None
        The feature-store folder and the user's backbone, or ``None`` for
        this fit only. Rows are stored under
        ``backbone_fingerprint(backbone, "frozen prefix", key)``, so another
        cut, another backbone or the head's own features never share them.
    key : sequence of str
        What identifies the prefix in the backbone (the cut's kind, node and
        the names of the modules it runs).
    batch_size : int
    device : torch.device
    float_dtype : torch.dtype
        The trunk's dtype; floating inputs are cast per batch.
    seed : int or None, default=None
        Seed of the store's verification sample.
    verbose : bool, default=False
        Progress bar.

    Returns
    -------
    outputs : torch.Tensor of shape (len(data), ...)
        In the dtype and row shape of ``like`` (the store holds them
        flattened as float32, exact for float16 / bfloat16 values), on
        ``device``.
    """
    def run(rows):
        return _run_prefix(prefix, rows, batch_size, device, float_dtype, verbose)

    if store is None:
        return run(data)
    location, backbone = store
    fingerprint = backbone_fingerprint(backbone, "frozen prefix", tuple(key))
    flat = cached_features(location, fingerprint, data,
                           lambda rows: run(rows).flatten(1).float(),
                           purpose="fit", random_state=seed)
    return flat.to(device).reshape(len(data), *like.shape[1:]).to(like.dtype)


def check_finite_features(features, batch_size, offset=0):
    """Raise a ValueError naming the rows and batches where the trunk gave NaN/inf."""
    finite = torch.isfinite(features.reshape(len(features), -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = torch.nonzero(~finite).flatten().cpu() + offset
    batches = sorted({int(i) // batch_size for i in bad[:1000]})
    raise ValueError(
        f"The backbone produced non-finite values (NaN or inf) in its features "
        f"(the head's input) for {len(bad)} rows, first in batch {batches[0]} "
        f"(batch_size={batch_size}; rows {bad[:10].tolist()}). The head cannot "
        "be trained on them: check those rows of X, or the backbone's "
        "numerics (an overflow in float16?)."
    )


class FeatureExtractor:
    """The frozen model's forward passes for one fit or predict.

    Holds what every pass needs (the model, its head, the device and dtype,
    the estimator's ``batch_size``, ``output`` and ``verbose``), so each step
    of the estimator's ``fit`` calls one method: every row's features (from
    the feature store when there is one), uncached batches for the Fisher,
    or the input of a layer of the head for the probe.
    """

    def __init__(self, est, model, head, device, trunk_dtype):
        self.model, self.head = model, head
        self.device, self.dtype = device, trunk_dtype
        self.batch_size, self.output = est.batch_size, est.output
        self.verbose = est.verbose > 0

    def _kwargs(self, check, desc="frozen features"):
        return dict(
            batch_size=self.batch_size, device=self.device, float_dtype=self.dtype,
            output=self.output, check_output=check, verbose=self.verbose, desc=desc,
        )

    def rows(self, data, check=True):
        """Features of ``data`` (an InputData), computed by the backbone."""
        features = extract_features(self.model, self.head, data,
                                    **self._kwargs(check))
        check_finite_features(features, self.batch_size)
        return features

    def all(self, data, store, *, purpose, seed, check=True):
        """Features of every row: from the feature store when there is one."""
        if store is None:
            return self.rows(data, check)
        features = cached_features(
            store[0], store[1], data, lambda rows: self.rows(rows, check),
            purpose=purpose, random_state=seed,
        )
        return features.to(self.device)

    def batches(self, fd, y_t, codes_t, w_t):
        """Uncached ``(features, y, codes, weights)`` batches (for the Fisher)."""
        step = self.batch_size
        starts = range(0, len(fd.y), step)
        feats = extract_head_inputs(self.model, self.head, fd.X,
                                    **self._kwargs(False, desc="Fisher"))
        for f, i in zip(feats, starts, strict=True):
            yield (f, y_t[i : i + len(f)], codes_t[i : i + len(f)],
                   None if w_t is None else w_t[i : i + len(f)])

    @torch.no_grad()
    def layer_inputs(self, work, last_name, features, data):
        """Return the input of ``work``'s layer ``last_name`` on every row (probe)."""
        last = work.get_submodule(last_name) if last_name else work
        if features is not None:
            sources = [features]
        else:
            sources = extract_head_inputs(self.model, self.head, data,
                                          **self._kwargs(True, desc="probe"))
        return torch.cat([
            torch.cat(list(extract_head_inputs(
                work, last, InputData(f), batch_size=self.batch_size,
                device=self.device, float_dtype=torch.float32, check_output=False,
            )))
            for f in sources
        ])
