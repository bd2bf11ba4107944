"""Shared fixtures: fixed seeds and tiny backbones so the suite runs fast on CPU."""

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _seed():
    """Fix numpy's and torch's global seeds for every test."""
    np.random.seed(0)
    torch.manual_seed(0)


class PadTo(nn.Module):
    """Pad or truncate the feature axis to ``width`` (accepts any n_features)."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def forward(self, x):
        x = x.float()  # the model's own first step: integer X arrives as is
        n = x.shape[1]
        if n >= self.width:
            return x[:, : self.width]
        return nn.functional.pad(x, (0, self.width - n))


def mlp_backbone(n_in=5, hidden=16, n_out=2, seed=0):
    """Two-layer ReLU MLP; its head is the last Linear (hidden -> n_out)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def deep_mlp(seed=0):
    """5-16-8-2 ReLU MLP (eval); head "4", inner layers "0" (5->16), "2" (16->8)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                         nn.Linear(8, 2)).eval()


def two_channel_image_task(n=96, seed=0):
    """3x8x8 images whose label is which of channels 0 and 1 is brighter."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(size=(n, 3, 8, 8)).astype(np.float32)
    y = (X[:, 0].mean((1, 2)) > X[:, 1].mean((1, 2))).astype(int)
    s = np.where(rng.uniform(size=n) < 0.5 + 0.3 * y, "a", "b")
    return X, y, s


def mlp_head_backbone(n_in=5, seed=0, n_out=3):
    """Backbone whose submodule "head" is a 2-layer MLP head 16 -> 8 -> n_out."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Linear(n_in, 16), nn.ReLU()),
        nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, n_out)),
    )


class PadOnly(nn.Module):
    """Pad or truncate the feature axis to ``width``; no cast (a plain model)."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def forward(self, x):
        n = x.shape[1]
        if n >= self.width:
            return x[:, : self.width]
        return nn.functional.pad(x, (0, self.width - n))


def plain_any_width_backbone(seed=0):
    """Like :func:`any_width_backbone` with nothing in forward that casts X."""
    torch.manual_seed(seed)
    return nn.Sequential(PadOnly(10), nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))


def any_width_backbone(seed=0):
    """Accepts any number of features (for scikit-learn's common checks)."""
    torch.manual_seed(seed)
    return nn.Sequential(PadTo(10), nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))


def make_task(n=300, n_features=5, n_classes=2, seed=0):
    """A learnable task with a group attribute correlated with the label."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1]
    if n_classes == 2:
        y = (score > 0).astype(int)
    else:
        cuts = np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])
        y = np.digitize(score, cuts)
    s = np.where(rng.uniform(size=n) < 0.5 + 0.3 * (y > 0), "a", "b")
    return X, y, s


@pytest.fixture
def task():
    """Binary task: (X, y, sensitive_features)."""
    return make_task()


class BasicBlock(nn.Module):
    """A ResNet basic block (two 3x3 convolutions and a skip connection)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class TinyResNet(nn.Module):
    """torchvision-style classifier: uint8 or float images in, ``fc`` head out.

    Like torchvision's transforms, its first step converts uint8 images to
    floats in [0, 1]; the head is ``fc``, as in ``torchvision.models.resnet18``.
    """

    def __init__(self, n_classes=2, width=8, stride=1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.layer1 = BasicBlock(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        if x.dtype == torch.uint8:  # to the model's own dtype (fp16 / bf16 too)
            x = x.to(self.stem[0].weight.dtype) / 255.0
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class DropoutClassifierNet(nn.Module):
    """A model whose head is ``classifier = Sequential(Dropout, Linear)``."""

    def __init__(self, n_in=5, n_classes=2):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(n_in, 12), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(12, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# shared by test_backbones, test_inputs, test_layers and test_outputs
def tiny_bert(num_labels=2, seed=0):
    """A 1-layer BertForSequenceClassification (stands in for from_pretrained)."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=num_labels,
    )
    return transformers.BertForSequenceClassification(config)


def text_task(n=96, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 100, size=(n, 10)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[:, 8:] = rng.randint(0, 2, size=(n, 2))
    y = (ids[:, 0] > 50).astype(int)
    s = np.where(rng.uniform(size=n) < 0.5 + 0.3 * y, "f", "m")
    return {"input_ids": ids, "attention_mask": mask}, y, s


class BagOfIds(nn.Module):
    """An EmbeddingBag text model; ids are hashed so huge ids stay small."""

    def __init__(self, buckets=97):
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, 8, mode="mean")
        self.fc = nn.Linear(8, 2)

    def forward(self, ids):
        return self.fc(self.bag(ids % self.buckets))


def image_task(n=64, size=8, dtype=np.float32, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 1, size=(n, 3, size, size))
    y = (X[:, 0].mean(axis=(1, 2)) > 0.5).astype(int)
    s = rng.choice(["a", "b"], size=n)
    if dtype == np.uint8:
        X = (X * 255).astype(np.uint8)
    return X.astype(dtype), y, s


class _Wrapped(nn.Module):
    """Return the logits of an MLP wrapped in another output format."""

    def __init__(self, kind):
        super().__init__()
        self.body = mlp_backbone()
        self.kind = kind

    def forward(self, x):
        logits = self.body(x)
        features = self.body[:2](x)
        if self.kind == "tuple":
            return logits, features
        if self.kind == "tuple_second":
            return features, logits
        if self.kind == "dict":
            return {"logits": logits, "features": features}
        if self.kind == "scores":
            return {"scores": logits}
        if self.kind == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=logits)
        return object()
