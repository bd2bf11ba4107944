"""The feature store (``memory=``) under faults: issue 14's table, row by row.

Most tests drive :func:`sklearn_winfair._store.cached_features` with a linear
"backbone" (``rows @ W``), so the features every call must return are known
exactly; a few go through the estimator end to end.
"""

import errno
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_winfair import FairLowRankFineTuner, _store
from sklearn_winfair._inputs import InputData
from sklearn_winfair._store import (
    MAX_SHARDS,
    SPOT_ROWS,
    VERIFY_ROWS,
    backbone_fingerprint,
    cached_features,
    row_keys,
)
from sklearn_winfair.exceptions import FeatureStoreWarning

ROOT = Path(__file__).resolve().parents[1]
KEY = "k" * 64
D_IN, D = 6, 4
FAST = dict(max_epochs=2, random_state=0, head_classes=[0, 1])


def _rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D_IN)).astype("float32")


def _weights(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(D_IN, D))
                            .astype("float32"))


class Linear:
    """``extract`` of a linear backbone, counting the rows it runs on."""

    def __init__(self, seed=0):
        self.W = _weights(seed)
        self.rows = 0

    def __call__(self, rows):
        self.rows += len(rows)
        return rows.data.float().reshape(len(rows), -1) @ self.W

    def truth(self, X):
        return torch.from_numpy(X) @ self.W


def _call(location, X, extract, purpose="fit", seed=0):
    return cached_features(str(location), KEY, InputData(X), extract,
                           purpose=purpose, random_state=seed)


def _folder(location):
    return Path(location) / "sklearn_winfair_features" / KEY


def _shard_files(location):
    return sorted(p for p in _folder(location).iterdir()
                  if p.suffix == ".npz" and not p.name.startswith("."))


def _write_npz(path, keys, features, compression=zipfile.ZIP_STORED):
    """A shard written by hand (as an attacker or a damaged disk would)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, arr in (("keys.npy", keys), ("features.npy", features)):
            with zf.open(name, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=True)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D_IN, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def _task(n=120, seed=0):
    X = _rows(n, seed)
    rng = np.random.default_rng(seed)
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
    s = rng.integers(0, 2, size=n)
    return X, y, s


# --------------------------------------------------------------- basics
def test_hits_are_verified_on_a_sample_and_equal_the_backbone(tmp_path):
    """The first warm call runs the backbone on VERIFY_ROWS rows, later ones
    on SPOT_ROWS, and all return exactly what the backbone gives."""
    X = _rows(200)
    extract = Linear()
    cold = _call(tmp_path, X, extract)
    assert extract.rows == 200
    warm = _call(tmp_path, X, extract, seed=1)
    assert extract.rows == 200 + VERIFY_ROWS
    torch.testing.assert_close(cold, extract.truth(X))
    torch.testing.assert_close(warm, extract.truth(X))
    # some new rows: only they and the spot check run (the shard is checked)
    X2 = np.vstack([X[:50], _rows(7, seed=5)])
    mixed = _call(tmp_path, X2, extract)
    assert extract.rows == 200 + VERIFY_ROWS + 7 + SPOT_ROWS
    torch.testing.assert_close(mixed, extract.truth(X2))


def test_purpose_is_checked(tmp_path):
    """A purpose other than fit or predict is refused, naming the argument."""
    with pytest.raises(ValueError, match="purpose must be 'fit' or 'predict'"):
        _call(tmp_path, _rows(3), Linear(), purpose="score")


def test_repeated_rows_are_stored_once(tmp_path):
    """Duplicate rows in one call give one stored key (a shard's keys are
    unique, so a later lookup cannot fail on them)."""
    X = np.vstack([_rows(10)] * 3)
    extract = Linear()
    _call(tmp_path, X, extract)
    [shard] = _shard_files(tmp_path)
    with np.load(shard) as f:
        assert len(f["keys"]) == 10
    torch.testing.assert_close(_call(tmp_path, X, extract), extract.truth(X))


def test_the_random_state_of_the_sample_is_local(tmp_path):
    """The verification sample never draws from numpy's global state."""
    X = _rows(100)
    _call(tmp_path, X, Linear())
    np.random.seed(3)
    expected = np.random.random_sample()
    np.random.seed(3)
    _call(tmp_path, X, Linear(), seed=None)
    assert np.random.random_sample() == expected


# --------------------------------------------------- concurrency (row 1)
_WORKER = textwrap.dedent("""
    import sys, numpy as np, torch
    sys.path.insert(0, {root!r})
    from sklearn_winfair._inputs import InputData
    from sklearn_winfair._store import cached_features
    W = torch.from_numpy(np.random.default_rng(0).normal(size=(6, 4))
                         .astype("float32"))
    role = sys.argv[1]
    base = np.random.default_rng(0).normal(size=(60, 6)).astype("float32")
    for i in range(40):
        if role == "writer":
            X = np.random.default_rng(100 + i).normal(size=(5, 6)).astype("float32")
        else:
            X = base
        out = cached_features({loc!r}, {key!r}, InputData(X),
                              lambda r: r.data.float() @ W,
                              purpose="fit" if role == "writer" else "predict")
        assert torch.allclose(out, torch.from_numpy(X) @ W, atol=1e-5), i
    print("ok", role)
""")


def test_two_processes_read_while_another_writes(tmp_path, monkeypatch):
    """A reader lists the folder while a writer adds (and compacts) shards:
    40 + 40 calls each, in two processes, all correct, no error."""
    _call(tmp_path, _rows(60), Linear())  # the rows the reader reads
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(root=str(ROOT), loc=str(tmp_path), key=KEY))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONWARNINGS="error::UserWarning")
    procs = [subprocess.Popen([sys.executable, str(script), role], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for role in ("writer", "reader", "writer")]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert len(_shard_files(tmp_path)) <= MAX_SHARDS + 2


def test_two_threads_fit_and_predict_with_compaction(tmp_path, monkeypatch):
    """Two threads, each 60 calls that read, write and compact (every third
    shard) one folder: every result is the backbone's, nothing raises."""
    monkeypatch.setattr(_store, "MAX_SHARDS", 3)
    monkeypatch.setattr(_store, "MERGED_SHARDS", 2)
    extract = Linear()
    base = _rows(80)

    def work(t):
        for i in range(60):
            X = np.vstack([base[(i * 7) % 60 :][:20], _rows(3, seed=1000 * t + i)])
            out = _call(tmp_path, X, extract, purpose=("fit", "predict")[i % 2],
                        seed=i)
            torch.testing.assert_close(out, extract.truth(X))
        return t

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(work, [1, 2])) == [1, 2]
    assert len(_shard_files(tmp_path)) <= 3 + 2


# ------------------------------------------------- kill -9, ENOSPC (row 2)
_KILLED = textwrap.dedent("""
    import os, sys, time, numpy as np
    sys.path.insert(0, {root!r})
    from sklearn_winfair import _store
    real_savez = np.savez
    def slow_savez(fh, **arrays):
        fh.write(b"PK\\x03\\x04 half a shard")
        fh.flush()
        print("writing", flush=True)
        time.sleep(600)
    _store.np.savez = slow_savez
    _store.FeatureStore({loc!r}, {key!r}).add(
        np.array([b"x" * 16], dtype="S16"), np.ones((1, 4), dtype="float32"))
""")


def test_a_writer_killed_mid_write_leaves_the_store_usable(tmp_path):
    """kill -9 in the middle of a write: its half-written temporary file is
    never listed; later calls are correct and warn about nothing."""
    X = _rows(40)
    extract = Linear()
    _call(tmp_path, X, extract)
    script = tmp_path / "killed.py"
    script.write_text(_KILLED.format(root=str(ROOT), loc=str(tmp_path), key=KEY))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    leftovers = [p for p in _folder(tmp_path).iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp")
    torch.testing.assert_close(_call(tmp_path, X, extract), extract.truth(X))
    X2 = _rows(5, seed=9)
    torch.testing.assert_close(_call(tmp_path, X2, extract), extract.truth(X2))
    # a day later a writer removes the orphan
    old = time.time() - _store.STALE_TMP_SECONDS - 60
    os.utime(leftovers[0], (old, old))
    _call(tmp_path, _rows(5, seed=10), extract)
    assert not leftovers[0].exists()


def test_a_full_disk_warns_at_fit_is_silent_at_predict_and_leaves_nothing(
        tmp_path, monkeypatch):
    """ENOSPC in the middle of a write: the call still returns the backbone's
    features, the temporary file is removed, and the store keeps working."""
    X = _rows(30)
    extract = Linear()

    def full_disk(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_store.np, "savez", full_disk)
    with pytest.warns(FeatureStoreWarning,
                      match=r"Could not write to the feature store .*No space left"):
        out = _call(tmp_path, X, extract)
    torch.testing.assert_close(out, extract.truth(X))
    out = _call(tmp_path, X, extract, purpose="predict")  # no warning
    torch.testing.assert_close(out, extract.truth(X))
    assert list(_folder(tmp_path).iterdir()) == []
    monkeypatch.undo()
    _call(tmp_path, X, extract)
    assert len(_shard_files(tmp_path)) == 1


# -------------------------------------------- damaged and foreign (row 3)
def _damage(kind, folder, keys, features):
    """Write a damaged shard ``0000.npz`` (sorting before the genuine one)."""
    path = folder / "0000.npz"
    good = folder / "good.npz"
    np.savez(good, keys=keys, features=features)
    raw = good.read_bytes()
    good.unlink()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bit-flipped":
        raw = bytearray(raw)
        raw[len(raw) // 2] ^= 0x10  # inside the features' data: bad CRC
        path.write_bytes(bytes(raw))
    elif kind == "wrong-width":
        np.savez(path, keys=keys, features=np.ones((len(keys), D + 1), "float32"))
    elif kind == "missing-member":
        np.savez(path, keys=keys)
    elif kind == "wrong-dtype":
        np.savez(path, keys=keys, features=features.astype("float64"))
    elif kind == "row-count":
        np.savez(path, keys=keys, features=features[:-1])
    elif kind == "repeated-keys":
        np.savez(path, keys=np.r_[keys, keys[:1]],
                 features=np.r_[features, features[:1]])
    elif kind == "non-finite":
        np.savez(path, keys=keys, features=np.full_like(features, np.nan))
    elif kind == "header-lies":  # a valid zip whose .npy header lies
        member = io.BytesIO()
        np.lib.format.write_array_header_1_0(member, {
            "descr": "<f4", "fortran_order": False, "shape": (len(keys), 10**9)})
        member.write(features.tobytes())
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("features.npy", member.getvalue())
            with zf.open("keys.npy", "w") as f:
                np.lib.format.write_array(f, keys)
    return path


DAMAGE = {
    "truncated": "",
    "empty": "",
    "bit-flipped": "CRC",
    "wrong-width": "its rows have 5 features, the backbone gives 4",
    "missing-member": "members",
    "wrong-dtype": "float64",
    "row-count": "keys for",
    "repeated-keys": "repeated row keys",
    "non-finite": "non-finite features",
    "header-lies": "declares shape",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_shard_is_skipped_with_one_warning_naming_it(tmp_path, kind):
    """Each kind of damaged file: one warning naming it, its rows recomputed,
    results exact; the next call in this process does not warn again."""
    X = _rows(50)
    extract = Linear()
    keys = row_keys(InputData(X))
    _folder(tmp_path).mkdir(parents=True, mode=0o700)
    path = _damage(kind, _folder(tmp_path), keys, extract.truth(X).numpy())
    with pytest.warns(FeatureStoreWarning,
                      match=rf"Skipped the feature store file .*{path.name}.*"
                            rf"{DAMAGE[kind]}") as record:
        out = _call(tmp_path, X, extract)
    assert len(record) == 1
    torch.testing.assert_close(out, extract.truth(X))
    torch.testing.assert_close(_call(tmp_path, X, extract), extract.truth(X))


def test_a_pickle_payload_is_never_loaded(tmp_path):
    """An object array (a pickle) in a shard is refused before unpickling."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    X = _rows(10)
    _folder(tmp_path).mkdir(parents=True, mode=0o700)
    keys = row_keys(InputData(X))
    obj = np.empty(len(keys), dtype=object)
    obj[:] = [Payload() for _ in keys]
    _write_npz(_folder(tmp_path) / "0000.npz", keys, obj.reshape(-1, 1))
    with pytest.warns(FeatureStoreWarning, match="0000.npz.*object"):
        _call(tmp_path, X, Linear())
    assert not marker.exists()


# ----------------------------------------------------------- FIFO (row 4)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_does_not_block(tmp_path):
    """A FIFO called 0000.npz (and a symlink to it) is skipped at once."""
    X = _rows(20)
    extract = Linear()
    _call(tmp_path, X, extract)
    os.mkfifo(_folder(tmp_path) / "0000.npz")
    os.symlink(_folder(tmp_path) / "0000.npz", _folder(tmp_path) / "0001.npz")
    result = {}

    def run():
        with pytest.warns(FeatureStoreWarning) as record:
            result["out"] = _call(tmp_path, X, extract)
        result["messages"] = [str(w.message) for w in record]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "reading the store blocked on a named pipe"
    torch.testing.assert_close(result["out"], extract.truth(X))
    assert any("0000.npz: not a regular file" in m for m in result["messages"])
    assert any("0001.npz" in m for m in result["messages"])


# ---------------------------------------------------- oversized (row 5)
def test_a_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    """A 32 MiB member deflated to a few KiB: refused from its header, and
    the call allocates far less than the member would expand to."""
    X = _rows(10)
    keys = row_keys(InputData(X))
    _folder(tmp_path).mkdir(parents=True, mode=0o700)
    bomb = np.zeros((len(keys), 2**23 // len(keys)), dtype="float32")
    _write_npz(_folder(tmp_path) / "0000.npz", keys, bomb, zipfile.ZIP_DEFLATED)
    assert (_folder(tmp_path) / "0000.npz").stat().st_size < 2**20
    del bomb
    tracemalloc.start()
    try:
        with pytest.warns(FeatureStoreWarning, match="0000.npz.*compressed"):
            _call(tmp_path, X, Linear())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
    assert not _store._SHARD_CACHE or all(
        e[1].nbytes < 2**20 for e in _store._SHARD_CACHE.values())


def test_a_shard_over_the_bound_is_refused_and_not_written(tmp_path, monkeypatch):
    """The store's bound applies to reading (skip, warn) and writing (a fit
    warns, nothing written)."""
    X = _rows(100)
    extract = Linear()
    _call(tmp_path, X, extract)
    monkeypatch.setattr(_store, "MAX_BYTES", 1000)
    with pytest.warns(FeatureStoreWarning, match=r"exceed the store's bound"), \
            pytest.warns(FeatureStoreWarning, match=r"more than the store's bound"):
        out = _call(tmp_path, X, extract)
    torch.testing.assert_close(out, extract.truth(X))
    assert len(_shard_files(tmp_path)) == 1


# -------------------------------------------- tampered features (row 6)
def test_tampered_features_are_caught_and_not_used(tmp_path):
    """An attacker copies a shard's keys and writes crafted features under a
    name that sorts first: predict warns and returns the fitted model's own
    probabilities (the crafted shard always has a row in the sample)."""
    X, y, s = _task()
    clf = FairLowRankFineTuner(_mlp(), rank=1, memory=str(tmp_path), **FAST)
    clf.fit(X, y, sensitive_features=s)
    reference = FairLowRankFineTuner(_mlp(), rank=1, **FAST).fit(
        X, y, sensitive_features=s).predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba(X), reference, atol=1e-6)
    [shard] = Path(tmp_path).glob("sklearn_winfair_features/*/*.npz")
    with np.load(shard) as f:
        keys, feats = f["keys"], f["features"]
    # every row crafted: the crafted shard always has a row in the sample
    crafted = np.random.default_rng(0).normal(scale=10, size=feats.shape)
    np.savez(shard.parent / "0000.npz", keys=keys,
             features=crafted.astype("float32"))
    with pytest.warns(FeatureStoreWarning,
                      match=r"did not match the live backbone \(files .*0000.npz"):
        tampered = clf.predict_proba(X)
    np.testing.assert_allclose(tampered, reference, atol=1e-6)
    # the process leaves that folder alone from then on: no second warning
    np.testing.assert_allclose(clf.predict_proba(X), reference, atol=1e-6)


def test_sampling_catches_a_few_tampered_rows_with_the_stated_odds(tmp_path):
    """k of n hit rows tampered inside one shard: each call catches them with
    probability 1 - C(n-k, m) / C(n, m), m = VERIFY_ROWS (0.86 for k=5 of
    n=100); over 200 seeds the observed rate is within 0.08 of it."""
    from math import comb
    n, k, m = 100, 5, VERIFY_ROWS
    X = _rows(n)
    extract = Linear()
    keys = row_keys(InputData(X))
    feats = extract.truth(X).numpy().copy()
    feats[:k] += 5.0
    _folder(tmp_path).mkdir(parents=True, mode=0o700)
    np.savez(_folder(tmp_path) / "a.npz", keys=keys, features=feats)
    caught = 0
    for seed in range(200):
        _store._UNTRUSTED.clear()  # a caught folder is otherwise left alone
        _store._VERIFIED.clear()  # each call is the process's first look
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            _call(tmp_path, X, extract, purpose="predict", seed=seed)
        caught += any(issubclass(w.category, FeatureStoreWarning) for w in record)
    expected = 1 - comb(n - k, m) / comb(n, m)
    assert abs(caught / 200 - expected) < 0.08, (caught, expected)


# -------------------------------- another model, same key space (row 7)
class _Act(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.l1 = nn.Linear(D_IN, 8)
        self.l2 = nn.Linear(8, 2)
        self.act = act

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)) if self.act == "relu"
                       else torch.tanh(self.l1(x)))


class _Relu(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(D_IN, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


def _same_weights(a, b):
    b.load_state_dict(a.state_dict())
    return b


def _tanh_class():
    class _Relu(nn.Module):  # the same name and repr as the module-level one
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(D_IN, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.l2(torch.tanh(self.l1(x)))

    return _Relu


def _relu_tanh_pairs():
    torch.manual_seed(0)
    relu = _Relu()
    tanh_cls = _tanh_class()
    yield "forward", relu, _same_weights(relu, tanh_cls())
    a = _Act("relu")
    yield "plain attribute", a, _same_weights(a, _Act("tanh"))
    b, c = _Relu(), _Relu()
    c.load_state_dict(b.state_dict())
    b.register_buffer("scale", torch.ones(1), persistent=False)
    c.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
    yield "non-persistent buffer", b, c


@pytest.mark.parametrize("case", ["forward", "plain attribute",
                                  "non-persistent buffer"])
def test_models_that_differ_beyond_their_state_dict_get_other_keys(case):
    """Equal weights and repr, but another forward, a plain attribute or a
    non-persistent buffer: other fingerprints."""
    pairs = {name: (a, b) for name, a, b in _relu_tanh_pairs()}
    a, b = pairs[case]
    assert repr(a) == repr(b)
    assert backbone_fingerprint(a, "l2") != backbone_fingerprint(b, "l2")


def test_relu_and_tanh_models_with_equal_weights_train_on_their_own_features(
        tmp_path):
    """The second model's probabilities are those of a fit without a store."""
    _, relu, tanh = next(_relu_tanh_pairs())
    X, y, s = _task()
    FairLowRankFineTuner(relu, head="l2", rank=1, memory=str(tmp_path),
                         **FAST).fit(X, y, sensitive_features=s)
    got = FairLowRankFineTuner(tanh, head="l2", rank=1, memory=str(tmp_path),
                               **FAST).fit(X, y, sensitive_features=s)
    ref = FairLowRankFineTuner(tanh, head="l2", rank=1, **FAST).fit(
        X, y, sensitive_features=s)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X),
                               atol=1e-6)


def test_a_colliding_key_is_caught_by_the_verification(tmp_path, monkeypatch):
    """Backstop: two models forced onto one key (a fingerprint blind spot):
    the second call warns and returns its own backbone's features."""
    X = _rows(60)
    _call(tmp_path, X, Linear(seed=0))
    other = Linear(seed=1)
    with pytest.warns(FeatureStoreWarning, match="did not match the live backbone"):
        out = _call(tmp_path, X, other)
    torch.testing.assert_close(out, other.truth(X))
    assert other.rows == VERIFY_ROWS + 60


def test_a_colliding_model_is_caught_after_the_shard_was_checked(tmp_path):
    """Once a shard passed its check, each call still recomputes SPOT_ROWS
    rows: a model forced onto the same key differs on them, and is caught."""
    X = _rows(60)
    first = Linear(seed=0)
    _call(tmp_path, X, first)
    _call(tmp_path, X, first)  # the shard is checked now
    first.rows = 0
    _call(tmp_path, X, first)
    assert first.rows == SPOT_ROWS
    other = Linear(seed=1)
    with pytest.warns(FeatureStoreWarning, match="did not match the live backbone"):
        out = _call(tmp_path, X, other)
    torch.testing.assert_close(out, other.truth(X))


def test_weights_changed_in_place_change_the_key_and_the_memo_is_cheap():
    """The memo never returns a stale key: an in-place write, a replaced
    parameter and a deep copy all hash again (or give the right key)."""
    net = _mlp()
    key = backbone_fingerprint(net, "2")
    with torch.no_grad():
        net[0].weight.mul_(2)
    changed = backbone_fingerprint(net, "2")
    assert changed != key
    net[0].weight = nn.Parameter(net[0].weight.detach() / 2)
    assert backbone_fingerprint(net, "2") == key  # back to the same content
    clone = _same_weights(net, _mlp(seed=1))
    assert backbone_fingerprint(clone, "2") == key


def test_a_change_through_data_is_caught_then_rehashed(tmp_path):
    """``param.data.add_`` bypasses torch's version counter, so the memo keeps
    the old key once; the verification catches it, drops the memo, and the
    next fit uses a fresh key without a warning."""
    X, y, s = _task()
    net = _mlp()
    FairLowRankFineTuner(net, rank=1, memory=str(tmp_path), **FAST).fit(
        X, y, sensitive_features=s)
    net[0].weight.data.add_(1.0)
    with pytest.warns(FeatureStoreWarning, match="did not match"):
        got = FairLowRankFineTuner(net, rank=1, memory=str(tmp_path),
                                   **FAST).fit(X, y, sensitive_features=s)
    ref = FairLowRankFineTuner(net, rank=1, **FAST).fit(X, y, sensitive_features=s)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X),
                               atol=1e-6)
    again = FairLowRankFineTuner(net, rank=1, memory=str(tmp_path), **FAST).fit(
        X, y, sensitive_features=s)  # no warning: filterwarnings=error
    np.testing.assert_allclose(again.predict_proba(X), ref.predict_proba(X),
                               atol=1e-6)


# --------------------------------------------------------- shape (row 8)
def test_rows_of_other_shapes_with_the_same_bytes_get_other_keys(tmp_path):
    """1x4x4 and 1x2x8 images with the same bytes: other keys, and each call
    gets its own backbone's features."""
    x = np.arange(32, dtype="float32").reshape(2, 1, 4, 4)
    a, b = InputData(x), InputData(x.reshape(2, 1, 2, 8))
    assert not (row_keys(a) == row_keys(b)).any()

    def extract(rows):
        t = rows.data.float()
        return t.sum(dim=-1).reshape(len(rows), -1)[:, :2]

    first = cached_features(str(tmp_path), KEY, a, extract, purpose="fit")
    second = cached_features(str(tmp_path), KEY, b, extract, purpose="fit")
    torch.testing.assert_close(first, extract(a))
    torch.testing.assert_close(second, extract(b))


# ----------------------------------------------------- read-only (row 9)
def _read_only(monkeypatch):
    """Make every create/mkdir in the store's folder fail with EROFS (tests
    run as root, where chmod does not stop writes)."""
    real_open = os.open

    def ro_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        if os.path.exists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path))
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(_store.os, "open", ro_open)
    monkeypatch.setattr(_store.os, "mkdir", ro_mkdir)
    def ro_makedirs(path, mode=0o777, exist_ok=False):
        if not (exist_ok and os.path.isdir(path)):
            ro_mkdir(path)

    monkeypatch.setattr(_store.os, "makedirs", ro_makedirs)


def test_predict_on_new_rows_with_a_read_only_store(tmp_path, monkeypatch):
    """A fitted model predicts old and new rows from a read-only store: no
    error and no warning; a fit there warns that it stored nothing."""
    X, y, s = _task()
    clf = FairLowRankFineTuner(_mlp(), rank=1, memory=str(tmp_path), **FAST)
    clf.fit(X, y, sensitive_features=s)
    new = _rows(30, seed=7)
    expected_old, expected_new = clf.predict_proba(X), None
    ref = FairLowRankFineTuner(_mlp(), rank=1, **FAST).fit(
        X, y, sensitive_features=s)
    expected_new = ref.predict_proba(new)
    before = sorted(Path(tmp_path).rglob("*"))
    _read_only(monkeypatch)
    np.testing.assert_allclose(clf.predict_proba(X), expected_old, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(new), expected_new, atol=1e-6)
    assert sorted(Path(tmp_path).rglob("*")) == before
    with pytest.warns(FeatureStoreWarning, match="Read-only file system"):
        FairLowRankFineTuner(_mlp(), rank=1, memory=str(tmp_path), **FAST).fit(
            new, y[:30], sensitive_features=s[:30])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through chmod")
def test_predict_with_a_chmod_read_only_store(tmp_path):  # pragma: no cover
    """The same with a real chmod 555 folder (when not run as root)."""
    X = _rows(20)
    extract = Linear()
    _call(tmp_path, X, extract)
    _folder(tmp_path).chmod(0o555)
    try:
        X2 = _rows(5, seed=1)
        torch.testing.assert_close(_call(tmp_path, X2, extract, purpose="predict"),
                                   extract.truth(X2))
    finally:
        _folder(tmp_path).chmod(0o700)


# ------------------------------------------- permissions (issue item 4)
def test_the_folder_is_private_and_a_shared_one_warns(tmp_path):
    """Folders are created owner-only; a folder others can write warns once."""
    _call(tmp_path / "a", _rows(5), Linear())
    for folder in (_folder(tmp_path / "a"), _folder(tmp_path / "a").parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    _call(tmp_path / "b", _rows(5), Linear())
    _folder(tmp_path / "b").chmod(0o777)
    _store._CHECKED_FOLDERS.discard(_folder(tmp_path / "b"))
    with pytest.warns(FeatureStoreWarning,
                      match=r"sklearn_winfair_features/k+ is writable by its group"):
        _call(tmp_path / "b", _rows(5), Linear())
    _call(tmp_path / "b", _rows(5), Linear())  # once per process


# ---------------------------------------- many predicts, bound (row 10)
def test_400_predicts_keep_the_shard_count_bounded(tmp_path):
    """400 predicts on new rows each: never more than MAX_SHARDS + 1 shards,
    every row still found (a warm call on all of them runs the sample only)."""
    X, y, s = _task(60)
    clf = FairLowRankFineTuner(_mlp(), rank=1, memory=str(tmp_path), **FAST)
    clf.fit(X, y, sensitive_features=s)
    rows = []
    clf.model_.register_forward_hook(lambda m, a, out: rows.append(len(a[0])))
    seen = [X]
    most = 0
    for i in range(400):
        new = _rows(2, seed=10_000 + i)
        seen.append(new)
        clf.predict_proba(new)
        most = max(most, len(list(Path(tmp_path).glob(
            "sklearn_winfair_features/*/*.npz"))))
    assert most <= MAX_SHARDS + 1
    rows.clear()
    clf.predict_proba(np.vstack(seen))
    assert sum(rows) == VERIFY_ROWS


def test_the_oldest_shards_go_past_the_size_bound(tmp_path, monkeypatch):
    """With the bound at about three shards, the newest rows stay stored
    and the folder stays under the bound."""
    extract = Linear()
    batches = [_rows(50, seed=i) for i in range(6)]
    for X in batches:
        _call(tmp_path, X, extract)
    size = _shard_files(tmp_path)[0].stat().st_size
    monkeypatch.setattr(_store, "MAX_BYTES", int(3.5 * size))
    _call(tmp_path, _rows(50, seed=99), extract)
    assert sum(p.stat().st_size for p in _shard_files(tmp_path)) <= 3.5 * size
    extract.rows = 0
    _call(tmp_path, batches[-1], extract)
    assert extract.rows == VERIFY_ROWS  # still stored
    extract.rows = 0
    _call(tmp_path, batches[0], extract)
    assert extract.rows == 50  # evicted: recomputed


def test_compaction_merges_into_one_atomic_shard_with_every_row(tmp_path):
    """MAX_SHARDS + 1 writes leave MERGED_SHARDS shards holding every row."""
    extract = Linear()
    batches = [_rows(4, seed=i) for i in range(MAX_SHARDS + 1)]
    for X in batches:
        _call(tmp_path, X, extract)
    assert len(_shard_files(tmp_path)) == _store.MERGED_SHARDS
    extract.rows = 0
    out = _call(tmp_path, np.vstack(batches), extract)
    torch.testing.assert_close(out, extract.truth(np.vstack(batches)))
    assert extract.rows == VERIFY_ROWS
