"""The feature store: frozen features keyed by backbone and row content.

Which library does what here: hashlib hashes rows and backbones; numpy
writes and parses the ``.npy`` members of each shard; zipfile holds the two
members of a shard (``keys.npy``, ``features.npy``, both stored uncompressed);
pandas indexes a shard's keys.

``memory=`` makes a search cost one backbone pass per distinct row: features
are kept in ``<location>/sklearn_winfair_features/<backbone key>/``, one
shard file per write, keyed by each row's content (its bytes, dtype and
shape). Several processes, threads or Dask workers share a folder without
locks:

* a write goes to a hidden temporary name, is ``fsync``-ed, then renamed; a
  reader lists only finished regular files named ``*.npz``;
* a shard that is damaged, foreign or oversized is skipped with one
  :class:`~sklearn_winfair.exceptions.FeatureStoreWarning` naming it, and its
  rows are recomputed; nothing is read before the sizes and dtypes declared
  by its headers are checked, and nothing is unpickled;
* stored rows are used only after a random sample of them is recomputed with
  the live backbone and matches: 32 rows (at least one per shard) the first
  time this process reads a shard, one row on every later call;
* ``predict`` never needs to write (a read-only store works); many small
  shards are merged into one, and the oldest shards go when the folder holds
  more than :data:`MAX_BYTES`.

See ``docs/user_guide/feature_store.rst`` for what is guaranteed and what is
not.
"""

import contextvars
import errno
import hashlib
import marshal
import os
import stat
import threading
import time
import types
import uuid
import warnings
import weakref
import zipfile
from collections import OrderedDict
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from .exceptions import FeatureStoreWarning

__all__ = [
    "FeatureStore",
    "backbone_fingerprint",
    "cached_features",
    "row_keys",
]

#: Rows recomputed to check shards this process has not checked yet (at least
#: one per such shard).
VERIFY_ROWS = 32
#: Rows recomputed by every call that finds stored rows, checked shards or not.
SPOT_ROWS = 1
#: More shards than this in a folder and a writer merges the smallest ones.
MAX_SHARDS = 16
#: Shards left after a merge (the largest ones are not rewritten).
MERGED_SHARDS = 8
#: Bytes a backbone's folder may hold; past it a writer removes the oldest shards.
MAX_BYTES = 8 * 2**30
#: A hidden temporary file older than this is a killed writer's: removed.
STALE_TMP_SECONDS = 24 * 3600

_ROOT = "sklearn_winfair_features"
_MEMBERS = ("keys.npy", "features.npy")


# ------------------------------------------------------------ fingerprints
#: id -> (object, description) of the objects described in this call
_REPRS = contextvars.ContextVar("sklearn_winfair_reprs", default=None)


def _describe(value, depth=0):
    """Describe a module attribute deterministically (hashable)."""
    if depth > 4:
        return ("deep", type(value).__qualname__)
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if isinstance(value, torch.Tensor):
        v = value.detach().cpu()
        return ("tensor", str(v.dtype), tuple(v.shape),
                hashlib.blake2b(_tensor_bytes(v), digest_size=16).digest())
    if isinstance(value, (torch.dtype, torch.device, torch.Size)):
        return ("torch", str(value))
    if isinstance(value, (tuple, list, set, frozenset)):
        items = [_describe(v, depth + 1) for v in value]
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=repr)
        return (type(value).__name__, tuple(items))
    if isinstance(value, dict):
        return ("dict", tuple(sorted(
            ((repr(k), _describe(v, depth + 1)) for k, v in value.items()),
            key=lambda kv: kv[0],
        )))
    if isinstance(value, types.MethodType):
        return ("method", _describe(value.__func__, depth + 1))
    code = getattr(value, "__code__", None)
    if isinstance(code, types.CodeType):
        return ("function", getattr(value, "__qualname__", ""), _code_digest(code))
    if callable(value) and hasattr(value, "__qualname__"):  # builtins, classes
        return ("callable", getattr(value, "__module__", None), value.__qualname__)
    # anything else: its type and repr (an address in the repr makes the key
    # differ between processes: the store is then not shared, never wrong);
    # one object held by many submodules (a transformers config) once a call
    seen = _REPRS.get()
    if seen is not None and id(value) in seen:
        return seen[id(value)][1]
    out = ("object", type(value).__module__, type(value).__qualname__, repr(value))
    if seen is not None:
        seen[id(value)] = (value, out)  # keeps value alive: ids stay unique
    return out


def _code_digest(code):
    """Hash of a function's code object (bytecode, constants, names)."""
    try:
        return hashlib.blake2b(marshal.dumps(code), digest_size=16).digest()
    except ValueError:  # a constant marshal cannot write
        return repr((code.co_code, code.co_consts, code.co_names))


def _tensor_bytes(v):
    if v.dtype in (torch.bfloat16,) or not v.is_contiguous():
        v = v.contiguous()
    return v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b""


def _structure(backbone):
    """Describe all of ``backbone`` but its weights.

    Classes, ``forward`` code, plain attributes and ``repr``.
    """
    token = _REPRS.set({})
    try:
        return _structure_parts(backbone)
    finally:
        _REPRS.reset(token)


def _structure_parts(backbone):
    parts = [repr(backbone)]
    for name, module in backbone.named_modules():
        cls = type(module)
        forward = getattr(cls, "forward", None)
        code = getattr(forward, "__code__", None)
        attributes = {
            k: _describe(v) for k, v in vars(module).items()
            if k not in ("_parameters", "_buffers", "_modules", "training")
            and not k.endswith("_hooks") and not k.endswith("_hooks_with_kwargs")
            and not k.startswith("_forward_") and not k.startswith("_backward_")
            and not k.startswith("_state_dict") and not k.startswith("_load_state")
        }
        parts.append((name, cls.__module__, cls.__qualname__,
                      _code_digest(code) if code is not None else None,
                      tuple(sorted(attributes.items()))))
    return parts


def _tensors(backbone):
    """Every parameter and buffer (persistent or not), by name."""
    seen = {}
    for name, t in backbone.named_parameters(remove_duplicate=False):
        seen.setdefault("p:" + name, t)
    for name, t in backbone.named_buffers(remove_duplicate=False):
        seen.setdefault("b:" + name, t)
    return [(k, v) for k, v in seen.items() if v is not None]


def _weights_digest(tensors):
    h = hashlib.blake2b(digest_size=16)
    for name, t in tensors:
        v = t.detach().cpu()
        h.update(name.encode())
        h.update(str(v.dtype).encode())
        h.update(repr(tuple(v.shape)).encode())
        h.update(_tensor_bytes(v))
    return h.hexdigest()


#: id(backbone) -> (weakref to it, its tensors' weakrefs and versions, digest)
_WEIGHTS_MEMO = OrderedDict()
_WEIGHTS_MEMO_SIZE = 64
_MEMO_LOCK = threading.Lock()


def _memo_state(tensors):
    return tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype),
                  str(t.device)) for name, t in tensors)


def _weights_key(backbone):
    """Return the weights' digest, memoized while no tensor changes."""
    tensors = _tensors(backbone)
    state = _memo_state(tensors)
    with _MEMO_LOCK:
        entry = _WEIGHTS_MEMO.get(id(backbone))
    if entry is not None:
        module_ref, refs, old_state, digest = entry
        if (module_ref() is backbone and old_state == state
                and len(refs) == len(tensors)
                and all(r() is t for r, (_, t) in zip(refs, tensors, strict=True))):
            with _MEMO_LOCK:
                _WEIGHTS_MEMO.move_to_end(id(backbone), last=True)
            return digest
    digest = _weights_digest(tensors)
    entry = (weakref.ref(backbone), [weakref.ref(t) for _, t in tensors], state,
             digest)
    with _MEMO_LOCK:
        _WEIGHTS_MEMO[id(backbone)] = entry
        while len(_WEIGHTS_MEMO) > _WEIGHTS_MEMO_SIZE:
            _WEIGHTS_MEMO.popitem(last=False)
    return digest


#: fingerprint -> id(backbone) whose memo made it (to forget it on a mismatch)
_FINGERPRINT_OWNER = {}


def forget_fingerprint(fingerprint):
    """Drop the memo behind ``fingerprint``: the next call hashes the weights.

    Called when stored rows do not match the live backbone, which is what a
    weight changed in place through ``.data`` (that torch does not count as a
    write) looks like.
    """
    owner = _FINGERPRINT_OWNER.pop(fingerprint, None)
    if owner is not None:
        with _MEMO_LOCK:
            _WEIGHTS_MEMO.pop(owner, None)


def backbone_fingerprint(backbone, *parts):
    """Content hash of a backbone's architecture, code and weights, plus ``parts``.

    Hashed: every parameter and buffer (non-persistent ones too) with its
    name, dtype and shape; the class, ``forward`` bytecode and plain
    attributes of every submodule; ``repr(backbone)``; ``parts``. The
    weights' hash is memoized per process and reused while every tensor is
    the same object at the same address with the same version counter (any
    in-place write under ``torch.no_grad``, an optimizer step or
    ``load_state_dict`` bumps it), so the fits of a search hash the weights
    once.

    Parameters
    ----------
    backbone : torch.nn.Module
        The user's model.
    *parts : hashable by joblib
        Whatever else identifies the features (the head's name, say).

    Returns
    -------
    key : str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> from sklearn_winfair._store import backbone_fingerprint
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> key = backbone_fingerprint(net, "0")
    >>> key == backbone_fingerprint(net, "0"), key == backbone_fingerprint(net, "1")
    (True, False)
    >>> with torch.no_grad():
    ...     _ = net[0].weight.add_(1)
    >>> key == backbone_fingerprint(net, "0")
    False
    """
    h = hashlib.blake2b(digest_size=32)
    h.update(_weights_key(backbone).encode())
    # repr of nested tuples of str, bytes and numbers is deterministic, and
    # much faster than joblib's pure-Python pickler on a large model
    h.update(repr(_structure(backbone)).encode())
    h.update(joblib.hash(parts).encode())
    key = h.hexdigest()
    if len(_FINGERPRINT_OWNER) > 4096:
        _FINGERPRINT_OWNER.clear()
    _FINGERPRINT_OWNER[key] = id(backbone)
    return key


# ---------------------------------------------------------------- row keys
def row_keys(data):
    """Return a 16-byte content hash of every row of ``data`` (an ``InputData``).

    Each row's hash covers, for every input tensor, its name, dtype, the
    row's shape and its bytes: image rows of shape 1x4x4 and 1x2x8 with the
    same bytes get different keys.

    Parameters
    ----------
    data : InputData
        The checked input.

    Returns
    -------
    keys : ndarray of shape (n_samples,), dtype S16

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_winfair._inputs import InputData
    >>> from sklearn_winfair._store import row_keys
    >>> x = np.zeros((1, 1, 4, 4), dtype="float32")
    >>> a = row_keys(InputData(x))
    >>> b = row_keys(InputData(x.reshape(1, 1, 2, 8)))
    >>> a.dtype, bool(a[0] == b[0])
    (dtype('S16'), False)
    """
    tensors = data.tensors()
    n = len(data)
    keys = np.empty(n, dtype="S16")
    prefixes = [
        f"{name}\0{t.dtype}\0{tuple(t.shape[1:])}\0".encode() for name, t in tensors
    ]
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
            for prefix, c in zip(prefixes, chunks, strict=True):
                h.update(prefix)
                h.update(c[i].tobytes())
            keys[start + i] = h.digest()
    return keys


# ------------------------------------------------------------- shard files
class _BadShard(Exception):
    """A shard that cannot be used; the message says why."""


#: Shards read in this process, by (path, inode, size, mtime): the fits of a
#: search (and the scoring of each fold) read and check each file once.
_SHARD_CACHE = OrderedDict()
#: Bytes of features the cache may hold before it forgets the oldest shards.
_SHARD_CACHE_BYTES = 512 * 2**20
_CACHE_LOCK = threading.Lock()
_cache_bytes = 0
#: Files already warned about in this process, by the same identity.
_WARNED = set()
#: Folders whose permissions were checked in this process.
_CHECKED_FOLDERS = set()


def _warn(message):
    warnings.warn(message, FeatureStoreWarning, stacklevel=3)


def _warn_once(ident, message):
    with _CACHE_LOCK:
        if ident in _WARNED:
            return
        _WARNED.add(ident)
    _warn(message)


def _read_member(zf, info, name, dtype, ndim, limit):
    """Check one ``.npy`` member's header against its size, then read it."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise _BadShard(f"member {name} is compressed (this store writes "
                        "uncompressed shards)")
    if info.file_size != info.compress_size or info.file_size > limit:
        raise _BadShard(f"member {name} declares {info.file_size} bytes, more "
                        "than the file holds")
    with zf.open(info) as m:
        version = np.lib.format.read_magic(m)
        if version == (1, 0):
            shape, fortran, got = np.lib.format.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, fortran, got = np.lib.format.read_array_header_2_0(m)
        else:
            raise _BadShard(f"member {name} has .npy format version {version}")
        if got != dtype or len(shape) != ndim or fortran:
            raise _BadShard(f"member {name} holds {got} of shape {shape} "
                            f"(fortran={fortran}); expected {dtype}, {ndim}-d")
        nbytes = int(np.prod(shape, dtype=np.int64)) * got.itemsize
        header = m.tell()
        if header + nbytes != info.file_size:
            raise _BadShard(f"member {name} declares shape {shape} "
                            f"({nbytes} bytes) in {info.file_size - header} bytes")
        buf = m.read(nbytes)
        if len(buf) != nbytes or m.read(1):  # the last read checks the CRC
            raise _BadShard(f"member {name} is shorter than declared")
    return np.frombuffer(buf, dtype=got).reshape(shape)


def _parse_shard(fh, size, max_bytes):
    """Return ``(keys, features)`` of the open shard file ``fh``, checked."""
    if size > max_bytes:
        raise _BadShard(f"{size} bytes, more than the store's bound of {max_bytes}")
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        names = sorted(i.filename for i in infos)
        if names != sorted(_MEMBERS):
            raise _BadShard(f"members {names}; expected {list(_MEMBERS)}")
        by_name = {i.filename: i for i in infos}
        keys = _read_member(zf, by_name["keys.npy"], "keys.npy",
                            np.dtype("S16"), 1, size)
        features = _read_member(zf, by_name["features.npy"], "features.npy",
                                np.dtype("<f4"), 2, size)
    if len(keys) != len(features):
        raise _BadShard(f"{len(keys)} keys for {len(features)} rows of features")
    if not np.isfinite(features).all():
        raise _BadShard("non-finite features (NaN or infinity)")
    return keys, features


def _open_regular(path):
    """Open ``path`` without following a link or blocking on a pipe.

    Returns ``(file object, stat)``; raises ``_BadShard`` if not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _BadShard("a symbolic link, not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _BadShard("not a regular file")
    return os.fdopen(fd, "rb"), st


def _cache_put(ident, entry):
    global _cache_bytes
    with _CACHE_LOCK:
        if ident in _SHARD_CACHE:
            return
        _SHARD_CACHE[ident] = entry
        _cache_bytes += entry[1].nbytes
        while len(_SHARD_CACHE) > 1 and _cache_bytes > _SHARD_CACHE_BYTES:
            ident_old, old = _SHARD_CACHE.popitem(last=False)
            _cache_bytes -= old[1].nbytes
            _VERIFIED.pop(ident_old, None)


def _cache_get(ident):
    with _CACHE_LOCK:
        entry = _SHARD_CACHE.get(ident)
        if entry is not None:
            _SHARD_CACHE.move_to_end(ident)
        return entry


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _others_can_write(st):
    if not hasattr(os, "geteuid"):  # Windows: permissions are ACLs, not checked
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by its group or by others"
    if st.st_uid not in (os.geteuid(), 0):
        return f"is owned by another user (uid {st.st_uid})"
    return None


class FeatureStore:
    """Features of rows, keyed by row content, in one folder per backbone.

    Parameters
    ----------
    location : str or path-like
        Parent folder (``joblib.Memory``'s ``location``).
    key : str
        The backbone's :func:`backbone_fingerprint`.
    max_bytes : int, default=None
        Bound on the folder's size (larger shards are refused); ``None``
        means :data:`MAX_BYTES`.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn_winfair._store import FeatureStore
    >>> store = FeatureStore(tempfile.mkdtemp(), "backbone")
    >>> keys = np.array([b"a" * 16, b"b" * 16], dtype="S16")
    >>> store.add(keys[:1], np.ones((1, 3), dtype="float32"))
    >>> [hit.tolist() for *_, hit in store.lookup(keys)]
    [[True, False]]
    """

    def __init__(self, location, key, *, max_bytes=None):
        self.location = Path(location)
        self.folder = self.location / _ROOT / key
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes

    # ----------------------------------------------------------- reading
    def _check_folder(self):
        """Warn once per process if others can write to the store's folders."""
        for folder in (self.folder.parent, self.folder):
            if folder in _CHECKED_FOLDERS:
                continue
            try:
                st = os.stat(folder)
            except OSError:
                continue
            _CHECKED_FOLDERS.add(folder)
            why = _others_can_write(st)
            if why:
                _warn(
                    f"The feature store folder {folder} {why}: whoever can "
                    "write there can plant features that this process uses "
                    "after a sampled check (see the user guide, 'Feature "
                    "store'). Use a private folder (chmod 700), or silence "
                    "FeatureStoreWarning if the folder is shared on purpose."
                )

    def shards(self):
        """Finished shard files: ``(path, identity)`` sorted by name.

        Hidden names (a writer's temporary files) and names not ending in
        ``.npz`` are never listed; anything else is checked when read.
        """
        try:
            entries = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        self._check_folder()
        out = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(".npz"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # merged and removed meanwhile
                continue
            out.append((Path(entry.path), (entry.path, st.st_ino, st.st_size,
                                           st.st_mtime_ns, st.st_mode)))
        out.sort(key=lambda item: item[0].name)
        return out

    def load(self, path, ident):
        """Return ``(pandas.Index of keys, features)`` of a shard, or ``None``.

        ``None`` when the file vanished (merged by another writer) or cannot
        be used; in the latter case one warning per process names the file
        and says why.
        """
        entry = _cache_get(ident)
        if entry is not None:
            return entry
        if ident in _WARNED:
            return None
        try:
            if not stat.S_ISREG(ident[4]):
                raise _BadShard("not a regular file")
            fh, st = _open_regular(path)
            with fh:
                keys, features = _parse_shard(fh, st.st_size, self.max_bytes)
            index = pd.Index(keys)
            if not index.is_unique:
                raise _BadShard("repeated row keys")
        except FileNotFoundError:
            return None
        except (_BadShard, OSError, ValueError, EOFError, KeyError, SyntaxError,
                zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            _warn_once(ident, (
                f"Skipped the feature store file {path}: {exc}. Its rows are "
                "recomputed; delete the file if it stays."
            ))
            return None
        entry = (index, features)
        _cache_put(ident, entry)
        return entry

    def lookup(self, keys):
        """Find the stored rows of ``keys``, per shard that has any.

        Returns
        -------
        hits : list of (path, identity, features, where, hit)
            For each shard holding a row that no earlier shard holds: its
            path, its identity (path, inode, size, mtime, mode), its feature
            matrix, per row of ``keys`` the row of that matrix holding it
            (``-1``: not from this shard) and the mask ``where >= 0``.
        """
        found = np.zeros(len(keys), dtype=bool)
        hits = []
        for path, ident in self.shards():
            loaded = self.load(path, ident)
            if loaded is None:
                continue
            index, stored = loaded
            where = index.get_indexer(keys)
            where[found] = -1
            hit = where >= 0
            if hit.any():
                hits.append((path, ident, stored, where))
                found |= hit
                if found.all():
                    break
        return [(path, ident, stored, where, where >= 0)
                for path, ident, stored, where in hits]

    # ----------------------------------------------------------- writing
    def _make_folder(self):
        os.makedirs(self.location, mode=0o700, exist_ok=True)
        for folder in (self.folder.parent, self.folder):
            try:
                os.mkdir(folder, mode=0o700)
            except FileExistsError:
                pass

    def _write(self, keys, features):
        """Write one shard atomically; return its path."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        tmp = self.folder / f".{name}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=keys, features=features)
                fh.flush()
                os.fsync(fh.fileno())
            final = self.folder / f"{name}.npz"
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_folder(self.folder)
        return final

    def add(self, keys, features):
        """Write the rows ``keys`` with their ``features`` as a new shard.

        Repeated keys are written once; rows with non-finite features are
        not written. Then the folder is compacted if it holds more than
        :data:`MAX_SHARDS` shards or more than ``max_bytes``.

        Raises
        ------
        OSError
            The folder cannot be written (read-only, full, ...).
        """
        keys = np.asarray(keys, dtype="S16")
        features = np.ascontiguousarray(features, dtype=np.float32)
        _, first = np.unique(keys, return_index=True)
        first.sort()
        first = first[np.isfinite(features[first]).all(axis=1)]
        if first.size == 0:
            return
        if first.size < len(keys):
            keys, features = keys[first], features[first]
        if features.nbytes + keys.nbytes > self.max_bytes:
            raise OSError(errno.EFBIG, f"{features.nbytes} bytes of features "
                          f"exceed the store's bound of {self.max_bytes} bytes")
        self._make_folder()
        self._check_folder()
        written = self._write(keys, features)
        self.compact(keep=written)

    def compact(self, keep=None):
        """Merge small shards and remove the oldest past ``max_bytes``.

        With more than :data:`MAX_SHARDS` shards, the smallest are merged
        into one (written like any shard, then the merged files removed) so
        that :data:`MERGED_SHARDS` remain; then, while the folder holds more
        than ``max_bytes``, the oldest shard (by name: write time) other
        than ``keep`` is removed. A writer killed meanwhile leaves duplicate
        rows, never lost or partial ones; two writers compacting at once
        merge the same files twice, which the next merge undoes. Damaged
        files are left as they are (they are warned about and skipped).
        """
        self._remove_stale_tmp()
        shards = self.shards()
        if len(shards) > MAX_SHARDS:
            by_size = sorted(shards, key=lambda s: s[1][2])
            merge = by_size[: len(shards) - MERGED_SHARDS + 1]
            loaded = [(p, self.load(p, ident)) for p, ident in merge]
            loaded = [(p, e) for p, e in loaded if e is not None]
            widths = {e[1].shape[1] for _, e in loaded}
            if len(loaded) > 1 and len(widths) == 1:
                loaded.sort(key=lambda pe: pe[0].name, reverse=True)  # newest first
                keys = np.concatenate([np.asarray(e[0], dtype="S16")
                                       for _, e in loaded])
                features = np.concatenate([e[1] for _, e in loaded])
                _, first = np.unique(keys, return_index=True)
                first.sort()
                self._write(keys[first], features[first])
                for p, _ in loaded:
                    _unlink(p)
            shards = self.shards()
        total = sum(ident[2] for _, ident in shards)
        for path, ident in shards:  # oldest first
            if total <= self.max_bytes:
                break
            if path != keep:
                _unlink(path)
                total -= ident[2]

    def _remove_stale_tmp(self):
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > \
                            STALE_TMP_SECONDS:
                        os.unlink(entry.path)
                except OSError:
                    pass


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ----------------------------------------------------- the estimator's door
#: Folders whose stored rows failed a check in this process: not used again.
_UNTRUSTED = set()
#: shard identity -> fingerprints it was checked under in this process. Its
#: rows are then those of the in-process cache, so later changes to the file
#: are unseen; an entry goes when the cache forgets the shard.
_VERIFIED = {}

def _tolerance(fresh):
    """Relative tolerance for recomputed rows, from the trunk's precision.

    Features of a float16 or bfloat16 trunk are exactly representable in
    that dtype; batch composition and device change their rounding by a few
    units in the last place (and cuDNN's TF32 convolutions change float32
    results by about 1e-3).
    """
    if torch.equal(fresh, fresh.bfloat16().float()):
        eps = 2.0**-8
    elif torch.equal(fresh, fresh.half().float()):
        eps = 2.0**-11
    else:
        eps = 2.0**-24
    return max(1e-3, 8 * eps)


def _mismatched(stored, fresh):
    """Return the rows of ``stored`` that differ from ``fresh`` (numpy).

    The tolerance is relative to each row's largest value.
    """
    if stored.shape != fresh.shape:
        return np.ones(len(stored), dtype=bool)
    rtol = _tolerance(torch.from_numpy(fresh))
    scale = np.abs(fresh).max(axis=1)
    floor = max(float(scale.max(initial=0.0)) * 1e-2, np.finfo(np.float32).tiny)
    err = np.abs(stored - fresh).max(axis=1)
    return ~(err <= rtol * np.maximum(scale, floor))


def _sample(hits, fingerprint, rng):
    """Rows to recompute, and the shards they check for the first time.

    One row of each shard not yet checked under ``fingerprint`` in this
    process, then uniform among those shards' rows, :data:`VERIFY_ROWS` in
    all; when every shard was checked, :data:`SPOT_ROWS` uniform rows.
    """
    new = [h for h in hits if fingerprint not in _VERIFIED.get(h[1], ())]
    pool = new if new else hits
    mask = np.zeros(len(hits[0][4]), dtype=bool)
    for h in pool:
        mask |= h[4]
    budget = min(int(mask.sum()), VERIFY_ROWS if new else SPOT_ROWS)
    chosen = [rng.choice(np.flatnonzero(h[4])) for h in new]
    chosen = np.unique(np.asarray(chosen, dtype=np.int64))
    mask[chosen] = False
    rest = budget - chosen.size
    if rest > 0:
        chosen = np.concatenate(
            [chosen, rng.choice(np.flatnonzero(mask), size=rest, replace=False)])
    return np.sort(chosen), [h[1] for h in new]


def cached_features(location, fingerprint, data, extract, *, purpose,
                    random_state=None):
    """Return the features of every row of ``data``, stored ones verified.

    Steps: look the rows up; recompute a random sample of the hits with
    ``extract`` and compare (the first time this process reads a shard under
    ``fingerprint``: one of its rows, then uniformly up to
    :data:`VERIFY_ROWS`; otherwise :data:`SPOT_ROWS` rows); on a mismatch
    warn and extract every row, the store not used (nor written) for this
    call nor, in this process, for any later call with this
    ``fingerprint``; extract the missing rows; write them (a failed write
    warns at ``purpose="fit"`` and is silent at ``purpose="predict"``, so a
    read-only store works); merge. Stored rows keep their stored values,
    checked ones included, so a warm call returns what the cold one did.

    Parameters
    ----------
    location : str or path-like
        The store's parent folder (``check_memory(memory).location``).
    fingerprint : str
        The backbone's :func:`backbone_fingerprint`.
    data : InputData
        The rows.
    extract : callable
        ``extract(rows: InputData) -> torch.Tensor`` of shape
        ``(len(rows), d)``, float32: runs the frozen backbone.
    purpose : {"fit", "predict"}
        Whether a failed write is worth a warning.
    random_state : int or None, default=None
        Seed of the verification sample (a local generator; the global
        random state is not touched).

    Returns
    -------
    features : torch.Tensor of shape (len(data), d)
        On the device ``extract`` returns.

    Examples
    --------
    >>> import tempfile, numpy as np, torch
    >>> from sklearn_winfair._inputs import InputData
    >>> from sklearn_winfair._store import cached_features
    >>> calls = []
    >>> def extract(rows):
    ...     calls.append(len(rows))
    ...     return rows.data.float() * 2
    >>> data = InputData(np.arange(80, dtype="float32").reshape(40, 2))
    >>> folder = tempfile.mkdtemp()
    >>> a = cached_features(folder, "key", data, extract, purpose="fit")
    >>> b = cached_features(folder, "key", data, extract, purpose="predict",
    ...                     random_state=0)
    >>> c = cached_features(folder, "key", data, extract, purpose="predict")
    >>> calls, torch.equal(a, b), torch.equal(a, c)  # 32 rows checked, then 1
    ([40, 32, 1], True, True)
    """
    if purpose not in ("fit", "predict"):
        raise ValueError(f"purpose must be 'fit' or 'predict'; got {purpose!r}.")
    store = FeatureStore(location, fingerprint)
    if store.folder in _UNTRUSTED:
        return extract(data)
    keys = row_keys(data)
    n = len(keys)
    hits = store.lookup(keys)
    found = np.zeros(n, dtype=bool)
    for *_, hit in hits:
        found |= hit
    stored = fresh = sample = None
    if found.any():
        rng = np.random.default_rng(random_state)
        sample, checked = _sample(hits, fingerprint, rng)
        fresh = extract(data.take(sample))
        width = fresh.shape[1]
        kept = []
        for path, ident, matrix, where, hit in hits:
            if matrix.shape[1] != width:
                _warn_once((str(path), "width", width), (
                    f"Skipped the feature store file {path}: its rows have "
                    f"{matrix.shape[1]} features, the backbone gives {width}. "
                    "Its rows are recomputed; delete the file if it stays."))
                found &= ~hit
                continue
            kept.append((path, ident, matrix, where, hit))
        hits = kept
        stored = np.zeros((n, width), dtype=np.float32)
        owner = np.full(n, -1)
        for i, (_, _, matrix, where, hit) in enumerate(hits):
            stored[hit] = matrix[where[hit]]
            owner[hit] = i
        in_store = found[sample]
        bad = _mismatched(stored[sample[in_store]],
                          fresh[torch.from_numpy(in_store).to(fresh.device)]
                          .cpu().numpy())
        if bad.any():
            names = sorted({str(hits[owner[r]][0])
                            for r in sample[in_store][bad]})
            _warn(
                f"{int(bad.sum())} of {int(in_store.sum())} sampled stored rows "
                f"did not match the live backbone (files {', '.join(names)}): "
                "another model's features, tampered files, or weights changed "
                "in place through .data. This process no longer uses the "
                f"folder {store.folder}. If the backbone is not deterministic "
                "(dropout in train mode, say), use memory=None."
            )
            forget_fingerprint(fingerprint)
            _UNTRUSTED.add(store.folder)
            return extract(data)
        with _CACHE_LOCK:
            for ident in checked:
                if ident in _SHARD_CACHE:
                    _VERIFIED.setdefault(ident, set()).add(fingerprint)
    # rows neither stored nor in the sample (whose fresh values are known)
    missing = np.flatnonzero(~found)
    if sample is not None:
        missing = np.setdiff1d(missing, sample, assume_unique=True)
    if missing.size == n:
        new = extract(data)
    elif missing.size:
        new = extract(data.take(missing))
    else:
        new = None
    rows, values = [], []
    if new is not None:
        rows.append(missing)
        values.append(new)
    if sample is not None and not found[sample].all():  # from a skipped file
        unstored = ~found[sample]
        rows.append(sample[unstored])
        values.append(fresh[torch.from_numpy(unstored).to(fresh.device)])
    if rows:
        try:
            store.add(keys[np.concatenate(rows)],
                      torch.cat(values).cpu().numpy())
        except OSError as exc:
            if purpose == "fit":
                _warn(f"Could not write to the feature store {store.folder} "
                      f"({exc}); this fit's new features are not stored.")
    if stored is None:
        return new
    device = fresh.device
    features = torch.from_numpy(stored).to(device)
    if new is not None:
        features[torch.from_numpy(missing).to(device)] = new
    # checked rows keep their stored values (a warm fit equals a cold one bit
    # for bit); the sample's rows that were not stored take the fresh ones
    unstored = ~found[sample]
    if unstored.any():
        mask = torch.from_numpy(unstored).to(device)
        features[torch.from_numpy(sample[unstored]).to(device)] = fresh[mask]
    return features
