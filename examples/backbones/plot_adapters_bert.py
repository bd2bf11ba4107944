"""
=====================================================
Adapters inside a Hugging Face model (target_modules)
=====================================================

Fine-tuning the head alone keeps the backbone's features as they are. When
those features were learned for another task, the head can only reweigh
them. ``target_modules`` (peft's word and rule) puts a low-rank adapter on
the layers you name: each weight is split ``W = W_res + A B`` by the
group-neutralized, Fisher-weighted SVD (the paper's Eq. 4 applied to that
layer), ``W_res`` is frozen, and ``A``, ``B`` and the head train. The model
at initialization computes exactly what the pre-trained one does, and the
merged export is the user's architecture again.

Nothing is downloaded here: the model is a tiny BERT built from a
``BertConfig``, pre-trained in a few seconds on one constructed token task
and fine-tuned on another, with a group attribute.
"""

# %%
# A tiny BERT, pre-trained on another task
# ----------------------------------------
# In pre-training the label is carried by the token at position 1 (ids 3 or
# 4). In the new task other words at that position carry it (ids 5 or 6), a
# token at position 2 reveals the group, and 15 % of the labels follow the
# group instead of the sentiment (biased labels).
import numpy as np
import torch
import transformers
from skorch.helper import SliceDict

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.metrics import fairness_metric_frame

torch.manual_seed(0)
config = transformers.BertConfig(
    vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=16, num_labels=2,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)
model = transformers.BertForSequenceClassification(config)

rng = np.random.RandomState(0)


def tokens(n):
    return rng.randint(10, 60, size=(n, 12)).astype(np.int64)


pre_ids = tokens(1000)
pre_y = rng.randint(0, 2, size=1000)
pre_ids[:, 1] = np.where(pre_y == 1, 3, 4)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
model.train()
for _ in range(3):
    for i in range(0, 1000, 50):
        out = model(input_ids=torch.as_tensor(pre_ids[i : i + 50]),
                    labels=torch.as_tensor(pre_y[i : i + 50]))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
model.eval()

n = 1200
group = rng.choice(["female", "male"], size=n)
sentiment = rng.randint(0, 2, size=n)
ids = tokens(n)
ids[:, 1] = np.where(sentiment == 1, 5, 6)  # the word that carries the label
ids[:, 2] = np.where(group == "male", 7, 8)  # a word that reveals the group
noisy = rng.uniform(size=n) < 0.15
y = np.where(noisy, (group == "male").astype(int), sentiment)
X = SliceDict(input_ids=ids, attention_mask=np.ones_like(ids))
train, test = np.arange(800), np.arange(800, n)

# %%
# Head only, then adapters on the last block
# ------------------------------------------
# ``rank=None`` fine-tunes the classifier head alone (the paper's TL). With
# ``target_modules`` the names match as in peft: ``"layer.1.attention.self.query"``
# matches every module whose qualified name ends with it. The head
# (``classifier``) trains in full beside the adapters.
common = dict(head_init="probe", solver="adam", lr=3e-3, max_epochs=10,
              batch_size=50, random_state=0)
head_only = FairLowRankFineTuner(model, rank=None, importance="uniform", **common)
head_only.fit(X[train], y[train], sensitive_features=group[train])

targets = ["layer.1.attention.self.query", "layer.1.attention.self.value",
           "layer.1.intermediate.dense"]
adapted = FairLowRankFineTuner(model, target_modules=targets, rank=4, **common)
adapted.fit(X[train], y[train], sensitive_features=group[train])
print(adapted.adapted_layers_)
print({k: round(v, 3) for k, v in adapted.truncation_error_.items()})
print(f"trainable parameters: head only {head_only.n_trainable_params_}, "
      f"adapters + head {adapted.n_trainable_params_}")

# %%
# The fairness report
# -------------------
# :func:`~sklearn_winfair.metrics.fairness_metric_frame` is fairlearn's
# ``MetricFrame`` of a fitted classifier: error (weighted F1), accuracy,
# selection rate, TPR and FPR, overall and by group. On this small task the
# pre-trained features already separate the new words, so the head alone
# does about as well as the adapters: what adapters add is the freedom to
# change the features, which matters where the frozen ones do not suit the
# new task (see :ref:`adapters` for measurements).
for name, clf in [("head only", head_only), ("adapters", adapted)]:
    frame = fairness_metric_frame(clf, X[test], y[test],
                                  sensitive_features=group[test])
    print(f"--- {name}")
    print(frame.by_group.round(3))
    print("difference:", frame.difference().round(3).to_dict())

# %%
# A merged export loads into a fresh copy
# ---------------------------------------
# ``export_module()`` folds every adapter back into its ``nn.Linear``
# (``W_res + A B``): a plain ``BertForSequenceClassification`` whose
# ``state_dict`` loads into a fresh copy of the architecture, and which
# predicts what the estimator predicts, to float32 rounding (the estimator
# runs the head in float64; the same float32 model run in float64 moves by
# about as much).
fresh = transformers.BertForSequenceClassification(config).eval()
print(fresh.load_state_dict(adapted.export_module().state_dict()))
with torch.no_grad():
    proba = fresh(input_ids=torch.as_tensor(ids[test])).logits.softmax(dim=1)
    proba64 = fresh.double()(input_ids=torch.as_tensor(ids[test])).logits.softmax(1)
print("largest difference from predict_proba:",
      float(np.abs(proba.numpy() - adapted.predict_proba(X[test])).max()))
print("the same model in float32 and float64:",
      float((proba.double() - proba64).abs().max()))
print("same predictions:",
      bool((proba.argmax(1).numpy() == adapted.predict(X[test])).all()))
