"""Adapters on inner layers and their per-group Fisher (sklearn_winfair._adapters).

Every model is built here from a config or a few layers (random weights stand
in for pre-trained ones; nothing is downloaded). References: peft's own
target matching and LoRA layers, :func:`torch.func.vmap` of
:func:`torch.func.grad` for per-sample gradients, an explicit loop over
single samples, and the head-only :func:`group_row_importance`.
"""

import numpy as np
import peft
import pytest
import torch
import transformers
from conftest import TinyResNet
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from sklearn_winfair._adapters import (
    LowRankAdapter,
    _row_sums,
    adaptable_layer_names,
    inject_adapters,
    inner_group_fisher,
    match_target_modules,
    merge_adapters,
    to_peft,
)
from sklearn_winfair._importance import group_row_importance, neutral_importance

INITS = ["neutral", "fisher", "uniform", "lora"]
SVD_INITS = ["neutral", "fisher", "uniform"]


# ------------------------------------------------------------------- models
def paper_mlp(seed=0):
    """The paper's 13-20-20-2 MLP layout: trunk "0", head "1"."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Linear(13, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU()),
        nn.Linear(20, 2),
    ).eval()


def tiny_bert(num_labels=2, seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=16, num_labels=num_labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config).eval()


def tiny_gpt2(seed=0):
    """Hugging Face model whose linear layers are ``Conv1D``."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2,
        num_labels=2, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2ForSequenceClassification(config).eval()


class TokenModel(nn.Module):
    """Embedding, a linear layer applied at every position, mean-pool, head."""

    def __init__(self, vocab=30, dim=6, hidden=5, n_out=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, hidden)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, ids):
        return self.head(torch.tanh(self.proj(self.embed(ids))).mean(1))


class SharedLayerModel(nn.Module):
    """One linear layer called twice (its gradient sums over both calls)."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.shared(torch.relu(self.shared(x))))


class FunctionalWeightModel(nn.Module):
    """Uses a Linear's weight without calling the module (hooks cannot see it)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.relu(F.linear(x, self.inner.weight, self.inner.bias)))


def tokens(n=12, T=7, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, T), generator=g)
    mask = torch.ones_like(ids)
    mask[: n // 2, -2:] = 0  # padding: masked positions still count as positions
    return ids, mask


def _call(model, X, params=None):
    if isinstance(X, dict):
        return functional_call(model, params, (), X) if params else model(**X)
    return functional_call(model, params, (X,)) if params else model(X)


def _logits(out):
    return out if isinstance(out, torch.Tensor) else out.logits


def vmap_rows(model, names, X, y):
    """Reference: per-sample torch.func gradients, squared, summed over outputs."""
    params = {f"{n}.weight": model.get_parameter(f"{n}.weight").detach()
              for n in names}

    def loss(p, xi, yi):
        xi = {k: v[None] for k, v in xi.items()} if isinstance(xi, dict) else xi[None]
        return F.cross_entropy(_logits(_call(model, xi, p)), yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, X, y)
    rows = {}
    for n in names:
        layer, g = model.get_submodule(n), grads[f"{n}.weight"]
        if isinstance(layer, nn.Conv2d):
            g = g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)  # (n, d, k)
        elif isinstance(layer, nn.Linear):
            g = g.transpose(1, 2)
        rows[n] = g.detach().square().sum(2)  # (n, d): sum over outputs c
    return rows


def loop_rows(model, names, X, y):
    """Reference: one autograd backward per single sample (vmap-free, for HF models)."""
    weights = [model.get_parameter(f"{n}.weight") for n in names]
    n_rows = len(y)
    rows = {n: [] for n in names}
    for i in range(n_rows):
        xi = {k: v[i : i + 1] for k, v in X.items()} if isinstance(X, dict) \
            else X[i : i + 1]
        loss = F.cross_entropy(_logits(_call(model, xi)), y[i : i + 1])
        for n, g in zip(names, torch.autograd.grad(loss, weights), strict=True):
            layer = model.get_submodule(n)
            if isinstance(layer, nn.Conv2d):
                g = g.reshape(g.shape[0], -1).T
            elif isinstance(layer, nn.Linear):
                g = g.T
            rows[n].append(g.square().sum(1))  # (d,): sum over outputs c
    return {n: torch.stack(v) for n, v in rows.items()}


def group_means(rows, codes, n_groups, w=None):
    w = torch.ones(len(codes), dtype=torch.float64) if w is None else w.double()
    out = np.zeros((n_groups, rows.shape[1]))
    for s in range(n_groups):
        m = codes == s
        out[s] = ((rows[m].double() * w[m, None]).sum(0) / w[m].sum()).numpy()
    return out


# ------------------------------------------------------------- target matching
@pytest.mark.parametrize("targets", [
    ["query", "value"], ["dense"], ["attention.self.key", "classifier"],
    ["bert.encoder.layer.1.output.dense"], r".*layer\.1\..*(query|value)",
    r"classifier", ["intermediate.dense"],
])
def test_matching_agrees_with_peft(targets):
    """The names we adapt are exactly those peft's LoraConfig would match."""
    model = tiny_bert()
    config = peft.LoraConfig(target_modules=targets)
    expected = [k for k, _ in model.named_modules()
                if k and check_target_module_exists(config, k)]
    assert match_target_modules(model, targets) == expected


def test_matching_is_suffix_at_a_dot_and_regex_is_whole_name():
    """ "ense" is no suffix at a dot; a regex must match the whole name."""
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"matched no module.*classifier"):
        match_target_modules(model, ["ense"])
    with pytest.raises(ValueError, match="matched no module"):
        match_target_modules(model, "query")  # fullmatch: no name is just "query"


def test_matching_errors_name_the_module_and_candidates():
    model = paper_mlp()
    with pytest.raises(ValueError, match=r"matched '0', a Sequential.*'0\.0', '0\.2'"):
        match_target_modules(model, ["0"])
    with pytest.raises(ValueError, match=r"matched '0\.1', a ReLU.*name suffix"):
        match_target_modules(model, ["1"])
    with pytest.raises(ValueError, match=r"Layers that can take.*'0\.2', '1'"):
        match_target_modules(model, ["fc"])
    with pytest.raises(TypeError, match="got int"):
        match_target_modules(model, 3)
    with pytest.raises(TypeError, match=r"list holding \['int'\]"):
        match_target_modules(model, ["0.0", 2])
    assert match_target_modules(model, r"0\.2|1") == ["0.2", "1"]
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match="a Conv2d, which cannot take"):
        match_target_modules(grouped, ["0"])
    assert adaptable_layer_names(grouped) == ["1"]


# -------------------------------------------------------------- the adapter
def _layers():
    torch.manual_seed(0)
    gpt = tiny_gpt2()
    return {
        "linear": (nn.Linear(7, 5), torch.randn(4, 3, 7)),
        "conv": (nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1),
                 torch.randn(2, 3, 6, 6)),
        "conv_dilated": (nn.Conv2d(2, 5, 2, padding=2, dilation=2, bias=False),
                         torch.randn(2, 2, 5, 5)),
        "conv1d": (gpt.transformer.h[0].mlp.c_fc, torch.randn(3, 4, 16)),
    }


@pytest.mark.parametrize("kind", ["linear", "conv", "conv_dilated", "conv1d"])
@pytest.mark.parametrize("init", INITS)
def test_adapter_equals_pretrained_layer_at_every_rank(kind, init):
    """W_res + A B = W, so at init the output is the layer's, at every rank."""
    layer, x = _layers()[kind]
    full = min(LowRankAdapter(layer, 1, init="uniform").A.shape[0],
               LowRankAdapter(layer, 1, init="uniform").B.shape[1])
    ihat = np.random.RandomState(0).uniform(0.2, 3.0, size=x.shape[-1] if kind in (
        "linear", "conv1d") else layer.weight[0].numel())
    with torch.no_grad():
        expected = layer(x)
    for rank in range(1, full + 1):
        adapter = LowRankAdapter(layer, rank, init=init,
                                 importance=None if init in ("uniform", "lora")
                                 else ihat)
        with torch.no_grad():
            torch.testing.assert_close(adapter(x), expected, atol=1e-5, rtol=1e-5)
        assert adapter.A.shape[1] == adapter.B.shape[0] == rank


@pytest.mark.parametrize("kind", ["linear", "conv", "conv1d"])
@pytest.mark.parametrize("init", SVD_INITS)
def test_full_rank_split_is_exact_with_zero_residual(kind, init):
    """At rank min(d, k) the weighted SVD reconstructs W: W_res = 0, error 0."""
    layer, _ = _layers()[kind]
    d = LowRankAdapter(layer, 1, init="uniform").A.shape[0]
    k = LowRankAdapter(layer, 1, init="uniform").B.shape[1]
    ihat = np.random.RandomState(1).uniform(0.1, 5.0, size=d)
    adapter = LowRankAdapter(layer, min(d, k), init=init,
                             importance=None if init == "uniform" else ihat)
    assert adapter.base_layer.weight.abs().max() < 1e-5
    assert adapter.truncation_error_ < 1e-6
    torch.testing.assert_close(adapter.get_delta_weight(), layer.weight.detach(),
                               atol=1e-5, rtol=1e-5)


def test_truncated_split_is_the_weighted_svd_and_lora_starts_at_zero():
    """Below full rank, A B is the weighted-SVD truncation; LoRA's B is 0."""
    layer = nn.Linear(6, 5)
    ihat = np.linspace(0.5, 2.0, 6)
    W = layer.weight.detach().double().numpy().T
    U, S, Vt = np.linalg.svd(ihat[:, None] * W)
    best = (U[:, :2] * S[:2]) @ Vt[:2] / ihat[:, None]
    adapter = LowRankAdapter(layer, 2, init="neutral", importance=ihat)
    np.testing.assert_allclose((adapter.A @ adapter.B).detach().numpy(), best,
                               atol=1e-6)
    assert 0 < adapter.truncation_error_ < 1
    lora = LowRankAdapter(layer, 2, init="lora")
    assert torch.equal(lora.B, torch.zeros(2, 5))
    assert lora.A.abs().max() <= 1 / np.sqrt(6) and lora.A.abs().min() > 0
    torch.testing.assert_close(lora.base_layer.weight, layer.weight)
    assert lora.truncation_error_ == pytest.approx(1.0)


def test_adapter_rejects_bad_arguments():
    layer = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"rank must be an int in \[1, 3\].*got 4"):
        LowRankAdapter(layer, 4, init="uniform")
    with pytest.raises(ValueError, match="init='fisher' needs importance"):
        LowRankAdapter(layer, 2, init="fisher")
    with pytest.raises(ValueError, match="4 finite, strictly positive"):
        LowRankAdapter(layer, 2, init="neutral", importance=[1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="init must be one of"):
        LowRankAdapter(layer, 2, init="pissa")
    with pytest.raises(TypeError, match="got ReLU"):
        LowRankAdapter(nn.ReLU(), 1)


# ---------------------------------------------------------- inject and merge
@pytest.mark.parametrize("init", INITS)
def test_only_adapter_factors_receive_gradients(init):
    """After injection, backward reaches A and B of each adapter and nothing else."""
    model = paper_mlp()
    names = ["0.0", "0.2"]
    ihats = {n: np.linspace(0.5, 1.5, 13 if n == "0.0" else 20) for n in names}
    adapted, info = inject_adapters(model, names, 3, ihats, init, random_state=0)
    F.cross_entropy(adapted(torch.randn(16, 13)), torch.arange(16) % 2).backward()
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {"0.0.A", "0.0.B", "0.2.A", "0.2.B"}
    for n, p in adapted.named_parameters():
        if n in trainable:
            assert p.grad is not None
        else:
            assert p.grad is None
    # LoRA's A gets no gradient at step 0 (B = 0); its B and every SVD factor do.
    assert adapted.get_parameter("0.2.B").grad.abs().sum() > 0
    if init != "lora":
        assert adapted.get_parameter("0.2.A").grad.abs().sum() > 0
    assert info["n_trainable"] == (13 * 3 + 3 * 20) + (20 * 3 + 3 * 20)
    assert info["ranks"] == {"0.0": 3, "0.2": 3}
    assert all(p.requires_grad for p in model.parameters())  # original untouched


def _d(model, name):
    """Number of rows d of a layer's paper-orientation weight."""
    return LowRankAdapter(model.get_submodule(name), 1, init="uniform").A.shape[0]


def _perturb(model, scale=0.5):
    """Stand in for training: move every adapter factor."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LowRankAdapter):
                m.A.add_(scale * torch.randn_like(m.A))
                m.B.add_(scale * torch.randn_like(m.B))


def _cnn(seed=0):
    torch.manual_seed(seed)
    return TinyResNet(n_classes=3, width=6).eval()


CASES = {
    # a regex: under peft's suffix rule the list ["0.2", "1"] also matches ReLU "0.1"
    "mlp": (paper_mlp, r"0\.2|1", lambda: torch.randn(8, 13)),
    "cnn": (_cnn, ["layer1.conv2", "fc"], lambda: torch.rand(4, 3, 8, 8)),
    "bert": (tiny_bert, ["query", "value", "intermediate.dense"],
             lambda: dict(zip(("input_ids", "attention_mask"), tokens(4),
                              strict=True))),
    "gpt2": (tiny_gpt2, ["c_attn", "c_fc"],
             lambda: {"input_ids": tokens(4)[0]}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("init", ["neutral", "lora"])
def test_merge_equals_forward_and_loads_into_a_fresh_copy(case, init):
    """Merged weights W_res + A B compute what the adapters computed, and the
    merged state_dict loads (strict) into a fresh copy of the user's model."""
    build, targets, make_x = CASES[case]
    model = build()
    X = make_x()
    names = match_target_modules(model, targets)
    ihats = {n: np.random.RandomState(0).uniform(0.5, 2, size=_d(model, n))
             for n in names}
    adapted, _ = inject_adapters(model, names, 2, ihats, init)
    with torch.no_grad():
        torch.testing.assert_close(_logits(_call(adapted, X)),
                                   _logits(_call(model, X)), atol=1e-5, rtol=1e-4)
    _perturb(adapted)
    merged = merge_adapters(adapted)
    assert not any(isinstance(m, LowRankAdapter) for m in merged.modules())
    fresh = build(seed=1)
    fresh.load_state_dict(merged.state_dict(), strict=True)
    fresh.eval()
    with torch.no_grad():
        out = _logits(_call(adapted, X))
        assert (out - _logits(_call(model, X))).abs().max() > 1e-3  # it moved
        torch.testing.assert_close(_logits(_call(merged, X)), out,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(_logits(_call(fresh, X)), out,
                                   atol=1e-5, rtol=1e-4)


def test_inject_caps_int_rank_and_reports_errors():
    model = paper_mlp()
    adapted, info = inject_adapters(model, ["0.0", "1"], 10**6, init="uniform")
    assert info["ranks"] == {"0.0": 13, "1": 2}
    assert max(info["truncation_error"].values()) < 1e-6
    with pytest.raises(ValueError, match=r"layer '1': rank must be an int in \[1, 2\]"):
        inject_adapters(model, ["1"], {"1": 3}, init="uniform")
    with pytest.raises(ValueError, match=r"needs importances\['0.2'\]"):
        inject_adapters(model, ["0.2"], 1, {"1": np.ones(20)}, "neutral")
    with pytest.raises(ValueError, match="not the model itself"):
        inject_adapters(nn.Linear(3, 2), [""], 1, init="lora")
    with pytest.raises(ValueError, match="matched '0.0', which already holds"):
        match_target_modules(adapted, ["0.0"])


def test_half_precision_trunk_keeps_its_dtype_factors_train_in_float32():
    model = paper_mlp().to(torch.bfloat16)
    adapted, _ = inject_adapters(model, ["0.2"], 2, init="uniform")
    adapter = adapted.get_submodule("0.2")
    assert adapter.A.dtype == torch.float32
    assert adapter.base_layer.weight.dtype == torch.bfloat16
    x = torch.randn(5, 13, dtype=torch.bfloat16)
    out = adapted(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, model(x), atol=0.05, rtol=0.05)
    assert merge_adapters(adapted).get_submodule("0.2").weight.dtype == torch.bfloat16


# ------------------------------------------------------- per-group Fisher
def _check_fisher(model, names, X, y, codes, n_groups, w=None, method="auto",
                  atol=1e-6, reference=vmap_rows):
    batch = (X, y, codes) if w is None else (X, y, codes, w)
    got = inner_group_fisher(model, names, [batch], n_groups, method=method)
    ref = reference(model, names, X, y)
    for n in names:
        expected = group_means(ref[n], codes, n_groups, w)
        np.testing.assert_allclose(got[n], expected, rtol=1e-4,
                                   atol=atol * np.abs(expected).max())
    return got


@pytest.mark.parametrize("method", ["hooks", "func"])
def test_inner_fisher_equals_vmap_per_sample_gradients_mlp(method):
    """MLP: every layer, inner and head, per group, with and without weights."""
    model = paper_mlp()
    X, y = torch.randn(40, 13), torch.randint(0, 2, (40,))
    codes = torch.randint(0, 3, (40,))
    names = ["0.0", "0.2", "1"]
    _check_fisher(model, names, X, y, codes, 3, method=method)
    _check_fisher(model, names, X, y, codes, 3, w=torch.rand(40), method=method)


@pytest.mark.parametrize("method", ["hooks", "func"])
def test_inner_fisher_equals_vmap_on_token_inputs(method):
    """Sequences: the per-sample gradient sums over positions before squaring."""
    model = TokenModel().eval()
    ids = torch.randint(0, 30, (24, 9))
    y, codes = torch.randint(0, 3, (24,)), torch.randint(0, 2, (24,))
    got = _check_fisher(model, ["proj", "head"], ids, y, codes, 2, method=method)
    assert got["proj"].shape == (2, 6)


def test_sum_over_positions_before_squaring_matters():
    """The closed form is not the sum of per-position squares (that is a bound)."""
    x, g = torch.randn(5, 4, 3), torch.randn(5, 4, 2)
    right = _row_sums(x, g)
    per_position = (x.square()[..., None] * g.square()[:, :, None, :]).sum((1, 3))
    assert not torch.allclose(right, per_position, rtol=1e-2)
    explicit = torch.einsum("ntd,ntk->ndk", x, g).square().sum(2)
    torch.testing.assert_close(right, explicit)


@pytest.mark.parametrize("shape", [(6, 3, 50, 40), (6, 40, 4, 3), (7, 1, 5, 2)])
def test_gram_and_outer_product_forms_agree_and_chunk(shape):
    """Both closed forms (picked by cost) and any chunk size give one answer."""
    n, T, d, k = shape
    x, g = torch.randn(n, T, d, dtype=torch.float64), torch.randn(n, T, k,
                                                                  dtype=torch.float64)
    explicit = torch.einsum("ntd,ntk->ndk", x, g).square().sum(2)
    for max_elements in (1, 100, 10**8):
        torch.testing.assert_close(_row_sums(x, g, max_elements), explicit)


def test_inner_fisher_equals_vmap_on_tiny_bert():
    """A real transformer, dict input with attention mask, several layers."""
    model = tiny_bert(num_labels=3)
    ids, mask = tokens(10)
    X = {"input_ids": ids, "attention_mask": mask}
    y, codes = torch.tensor([0, 1, 2] * 3 + [0]), torch.tensor([0, 1] * 5)
    names = match_target_modules(model, ["query", "value", "output.dense"])
    assert len(names) == 8  # "output.dense" is a suffix of "attention.output.dense"
    # vmap cannot run BERT (data-dependent mask code): loop over single samples.
    _check_fisher(model, names, X, y, codes, 2, method="hooks", atol=1e-5,
                  reference=loop_rows)


def test_inner_fisher_on_conv_layers_equals_vmap():
    """Conv2d through its unfold (matrix) view, stride and padding included."""
    model = _cnn()
    X, y = torch.rand(6, 3, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2])
    codes = torch.tensor([0, 0, 1, 1, 1, 0])
    _check_fisher(model, ["stem.0", "layer1.conv2", "fc"], X, y, codes, 2,
                  method="hooks", atol=1e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_inner_fisher_on_same_padded_dilated_conv_equals_vmap():
    """padding="same" (asymmetric for even kernels) through explicit padding."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(1, 2)),
                          nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 6, 2)).eval()
    X, y = torch.randn(5, 2, 5, 6), torch.tensor([0, 1, 1, 0, 1])
    codes = torch.zeros(5, dtype=torch.long)
    _check_fisher(model, ["0"], X, y, codes, 1, method="hooks", atol=1e-5)
    adapted, _ = inject_adapters(model, ["0"], 2, init="uniform")
    with torch.no_grad():
        torch.testing.assert_close(adapted(X), model(X), atol=1e-5, rtol=1e-5)


def test_inner_fisher_gpt2_conv1d_equals_vmap():
    model = tiny_gpt2()
    ids = tokens(6)[0]
    y, codes = torch.tensor([0, 1] * 3), torch.tensor([0, 1, 1, 0, 0, 1])
    _check_fisher(model, ["transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_proj"],
                  {"input_ids": ids}, y, codes, 2, method="hooks", atol=1e-5,
                  reference=loop_rows)


def test_layer_called_twice_and_weight_used_functionally():
    """Two calls: positions concatenated; no call: auto falls back to torch.func."""
    shared = SharedLayerModel().eval()
    X, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    codes = torch.zeros(10, dtype=torch.long)
    _check_fisher(shared, ["shared", "head"], X, y, codes, 1, method="hooks")
    functional = FunctionalWeightModel().eval()
    _check_fisher(functional, ["inner"], X, y, codes, 1, method="auto")
    with pytest.raises(ValueError, match="method='hooks' cannot compute"):
        inner_group_fisher(functional, ["inner"], [(X, y, codes)], 1, method="hooks")


def test_inner_fisher_of_the_head_equals_group_row_importance():
    """On the head, the inner-layer Fisher is the head-only Fisher of the paper."""
    model = paper_mlp()
    X, y = torch.randn(50, 13), torch.randint(0, 2, (50,))
    codes, w = torch.randint(0, 2, (50,)), torch.rand(50)
    got = inner_group_fisher(model, ["1"], [(X[:30], y[:30], codes[:30], w[:30]),
                                            (X[30:], y[30:], codes[30:], w[30:])], 2)
    with torch.no_grad():
        feats = model[0](X)
    ref = group_row_importance(model[1], feats, y, codes, 2, sample_weight=w)
    np.testing.assert_allclose(got["1"], ref[""], rtol=1e-5)


def test_integer_weights_are_copies_and_empty_groups_are_zero():
    model = paper_mlp()
    X, y = torch.randn(12, 13), torch.randint(0, 2, (12,))
    codes = torch.tensor([0] * 6 + [1] * 6)
    w = torch.tensor([2.0, 1, 0, 1, 3, 1, 1, 1, 1, 0, 2, 1])
    weighted = inner_group_fisher(model, ["0.2"], [(X, y, codes, w)], 3)["0.2"]
    rep = w.long()
    copies = inner_group_fisher(
        model, ["0.2"], [(X.repeat_interleave(rep, 0), y.repeat_interleave(rep),
                          codes.repeat_interleave(rep))], 3)["0.2"]
    np.testing.assert_allclose(weighted, copies, rtol=1e-5)
    assert np.all(weighted[2] == 0)


def test_inner_fisher_in_float32_under_bf16_trunk():
    """A bf16 model gives float64 importances close to the float32 model's."""
    model = paper_mlp()
    X, y = torch.randn(64, 13), torch.randint(0, 2, (64,))
    codes = torch.randint(0, 2, (64,))
    ref = inner_group_fisher(model, ["0.2"], [(X, y, codes)], 2)["0.2"]
    half = inner_group_fisher(model.to(torch.bfloat16), ["0.2"],
                              [(X.bfloat16(), y, codes)], 2)["0.2"]
    assert half.dtype == np.float64 and np.all(np.isfinite(half))
    np.testing.assert_allclose(half, ref, rtol=0.1, atol=0.02 * ref.max())


def test_inner_fisher_leaves_model_mode_and_rejects_bad_names():
    model = paper_mlp().train()
    X, y, codes = torch.randn(4, 13), torch.tensor([0, 1, 0, 1]), torch.zeros(4).long()
    inner_group_fisher(model, ["0.2"], [(X, y, codes)], 1)
    assert model.training
    with pytest.raises(ValueError, match="names holds '0.1', a ReLU"):
        inner_group_fisher(model, ["0.1"], [(X, y, codes)], 1)
    with pytest.raises(ValueError, match="batches is empty"):
        inner_group_fisher(model, ["0.2"], [], 1)
    with pytest.raises(ValueError, match="method must be"):
        inner_group_fisher(model, ["0.2"], [(X, y, codes)], 1, method="vmap")


def test_neutral_adapter_pipeline_on_inner_layer_end_to_end():
    """Fisher of an inner layer -> neutral ihat -> adapter: exact at init."""
    model = paper_mlp()
    X, y = torch.randn(30, 13), torch.randint(0, 2, (30,))
    codes = torch.randint(0, 2, (30,))
    rows = inner_group_fisher(model, ["0.2"], [(X, y, codes)], 2)
    ihat = {"0.2": neutral_importance(rows["0.2"], [0.5, 0.5])}
    adapted, info = inject_adapters(model, ["0.2"], 2, ihat, "neutral")
    with torch.no_grad():
        torch.testing.assert_close(adapted(X), model(X), atol=1e-5, rtol=1e-5)
    assert 0 < info["truncation_error"]["0.2"] < 1


# ----------------------------------------------------------------- peft export
@pytest.mark.parametrize("case", ["mlp", "cnn", "bert", "gpt2"])
def test_to_peft_computes_what_our_adapters_compute(case):
    """Our factors written into peft's lora_A / lora_B, residual in the base."""
    build, targets, make_x = CASES[case]
    model = build()
    X = make_x()
    names = match_target_modules(model, targets)
    rank = {n: 1 + i % 2 for i, n in enumerate(names)}  # ranks differ per layer
    adapted, _ = inject_adapters(model, names, rank, init="uniform")
    _perturb(adapted)
    peft_model = to_peft(adapted)
    peft_model.eval()
    with torch.no_grad():
        ours = _logits(_call(adapted, X))
        theirs = _logits(_call(peft_model.base_model.model, X))
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
        for n in names:
            lora = peft_model.base_model.model.get_submodule(n)
            assert lora.r["default"] == rank[n]
    n_lora = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert n_lora == sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    with torch.no_grad():
        merged = peft_model.merge_and_unload()
        torch.testing.assert_close(_logits(_call(merged, X)), ours,
                                   atol=1e-5, rtol=1e-4)


def test_to_peft_rejects_models_without_adapters_and_dilated_convs():
    with pytest.raises(ValueError, match="holds no LowRankAdapter"):
        to_peft(paper_mlp())
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, dilation=2))
    adapted, _ = inject_adapters(conv, ["0"], 1, init="uniform")
    with pytest.raises(ValueError, match="dilated Conv2d"):
        to_peft(adapted)


def test_to_peft_adapter_saves_and_reloads_on_the_residual_base(tmp_path):
    """PeftModel.save_pretrained / from_pretrained keep our adapter's output."""
    build, targets, make_x = CASES["cnn"]
    adapted, _ = inject_adapters(build(), match_target_modules(build(), targets), 2,
                                 init="uniform")
    _perturb(adapted)
    peft_model = to_peft(adapted)
    peft_model.save_pretrained(tmp_path)
    residual = to_peft(adapted).unload()  # the base layers hold W_res
    loaded = peft.PeftModel.from_pretrained(residual, tmp_path).eval()
    X = make_x()
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), adapted(X), atol=1e-5, rtol=1e-4)
