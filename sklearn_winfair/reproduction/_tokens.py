"""A constructed token task and the tiny BERT pre-trained on it.

A CONSTRUCTED text-like task for the adapter study (:mod:`._adapter_study`),
not a real corpus. A sequence is ``[CLS] g t_1 .. t_14``: the ``[CLS]`` id 1,
a group token ``g`` (id 2 or 3; the group, ``"g2"`` / ``"g3"``) and 14
content tokens from ids 4..63.

* The label ``y`` (P(y = 1) = 0.5) says whether the content leans to a
  "positive" set of ids: each content token is drawn from it with
  probability 0.6 when y = 1 and 0.4 when y = 0 (else from the other ids).
* Pre-training task: positive set :data:`P_PRE` = 4..33, and the group token
  is a shortcut, P(g = 3 | y = 1) = 0.8, P(g = 3 | y = 0) = 0.2.
* New task (per seed): positive set :data:`P_NEW` = 4..18 and 34..48 (half of
  it overlaps :data:`P_PRE`), the group shortcut reversed and weaker,
  P(g = 3 | y = 1) = 0.3, P(g = 3 | y = 0) = 0.7.
* The backbone (:func:`pretrain_tiny_bert`) is a
  ``transformers.BertForSequenceClassification`` built from a ``BertConfig``
  (2 layers, hidden 32, 2 heads, intermediate 64, no dropout), pre-trained
  once here on every parameter; ``transformers`` is an optional dependency.
"""

import time

import numpy as np
import torch

__all__ = ["P_PRE", "P_NEW", "make_token_sequences", "make_token_task",
           "build_tiny_bert", "pretrain_tiny_bert", "require_transformers",
           "TOKEN_DESCRIPTION"]

#: Positive content ids of the pre-training task.
P_PRE = np.arange(4, 34)
#: Positive content ids of the new task (half of them in :data:`P_PRE`).
P_NEW = np.r_[4:19, 34:49]
#: Vocabulary size: ``[PAD]`` 0, ``[CLS]`` 1, group ids 2-3, content 4..63.
VOCAB = 64
#: Content tokens per sequence.
LENGTH = 14

TOKEN_DESCRIPTION = (
    "CONSTRUCTED token task: sequences [CLS] g t_1..t_14, group token g in "
    "{2, 3}, 14 content ids in 4..63 drawn from a positive set with "
    "probability 0.6 (y=1) or 0.4 (y=0). Pre-training: positive set 4..33, "
    "P(g=3|y=1)=0.8, P(g=3|y=0)=0.2; new task: positive set 4..18 and 34..48, "
    "P(g=3|y=1)=0.3, P(g=3|y=0)=0.7 (the group shortcut reversed and weaker)."
)


def require_transformers():
    """Import and return ``transformers``, or say which extra installs it.

    Returns
    -------
    module
        The ``transformers`` module.

    Raises
    ------
    ImportError
        When ``transformers`` is not installed.
    """
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            "The adapter study's 'text' setting builds a tiny BERT with "
            "Hugging Face transformers, which is not installed: pip install "
            "'sklearn-winfair[tests]' (or pip install transformers), or run "
            "another setting (--setting images, age-shift or paper-mlp)."
        ) from exc
    return transformers


def make_token_sequences(n, positive, p_group, rng, p_pos=(0.4, 0.6)):
    """Draw ``n`` sequences ``[CLS] g t_1..t_14`` of the token task.

    Parameters
    ----------
    n : int
        Number of sequences.
    positive : ndarray of int
        The positive content ids.
    p_group : dict of int to float
        ``P(g = 3 | y)`` for ``y`` in 0 and 1.
    rng : numpy.random.RandomState
        Source of every draw (label, group, then content).
    p_pos : tuple of 2 float, default=(0.4, 0.6)
        Probability that a content token is positive, for y = 0 and y = 1.

    Returns
    -------
    ids : ndarray of shape (n, 16), int64
    y : ndarray of shape (n,), int64
    s : ndarray of shape (n,) of str
        ``"g3"`` or ``"g2"``.

    Examples
    --------
    >>> ids, y, s = make_token_sequences(4, P_PRE, {1: 0.8, 0: 0.2},
    ...                                  np.random.RandomState(0))
    >>> ids.shape, bool((ids[:, 0] == 1).all()), bool(np.isin(ids[:, 1], [2, 3]).all())
    ((4, 16), True, True)
    """
    y = (rng.uniform(size=n) < 0.5).astype(np.int64)
    g = rng.uniform(size=n) < np.where(y == 1, p_group[1], p_group[0])
    negative = np.setdiff1d(np.arange(4, VOCAB), positive)
    from_pos = rng.uniform(size=(n, LENGTH)) < np.where(
        y == 1, p_pos[1], p_pos[0])[:, None]
    ids = np.where(from_pos, rng.choice(positive, (n, LENGTH)),
                   rng.choice(negative, (n, LENGTH)))
    ids = np.c_[np.ones(n, np.int64), np.where(g, 3, 2), ids].astype(np.int64)
    s = np.where(g, "g3", "g2")
    return ids, y, s


def make_token_task(seed, n_train, n_test):
    """Draw the new task's train and test parts for ``seed``.

    Parameters
    ----------
    seed : int
        Seed of the draws (``RandomState(30_000 + seed)``, train then test).
    n_train, n_test : int
        Sizes.

    Returns
    -------
    train, test : tuple of (dict, ndarray, ndarray)
        ``({"input_ids", "attention_mask"}, y, s)`` each.
    """
    rng = np.random.RandomState(30_000 + seed)
    parts = []
    for n in (n_train, n_test):
        ids, y, s = make_token_sequences(n, P_NEW, {1: 0.3, 0: 0.7}, rng)
        parts.append(({"input_ids": ids, "attention_mask": np.ones_like(ids)},
                      y, s))
    return parts[0], parts[1]


def build_tiny_bert(seed=0):
    """Build a fresh tiny ``BertForSequenceClassification`` (2 labels).

    Parameters
    ----------
    seed : int, default=0
        ``torch.manual_seed`` before building (global torch RNG).

    Returns
    -------
    model : transformers.BertForSequenceClassification
    """
    transformers = require_transformers()
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


def pretrain_tiny_bert(n_pre=20_000, *, epochs=5, lr=1e-3, batch_size=128):
    """Pre-train the tiny BERT on the pre-training task (every parameter).

    ``n_pre`` sequences drawn with ``RandomState(10_000)``, Adam, shuffling
    from ``torch.Generator().manual_seed(0)``.

    Parameters
    ----------
    n_pre : int, default=20_000
    epochs : int, default=5
    lr : float, default=1e-3
    batch_size : int, default=128

    Returns
    -------
    model : transformers.BertForSequenceClassification
        In eval mode.
    seconds : float
        Wall time of the pre-training.
    """
    model = build_tiny_bert(seed=0)
    ids, y, _ = make_token_sequences(n_pre, P_PRE, {1: 0.8, 0: 0.2},
                                     np.random.RandomState(10_000))
    t0 = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    ids_t, y_t = torch.as_tensor(ids), torch.as_tensor(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = model(input_ids=ids_t[idx], labels=y_t[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), time.perf_counter() - t0
