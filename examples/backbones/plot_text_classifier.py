"""
=======================================
Fine-tuning a Hugging Face text model
=======================================

A ``transformers`` sequence classifier is a backbone like any other: its
inputs are a dict (``input_ids``, ``attention_mask``), passed to ``forward``
as keyword arguments, its token ids stay ``int64``, and its output is a
``SequenceClassifierOutput`` whose ``.logits`` the estimator finds by itself.
The head is the model's last ``nn.Linear``, ``classifier``.

Nothing can be downloaded when this gallery is built, so the model here is a
tiny BERT built from a config with random weights, and the "text" is made of
token ids. With a real model you change one line (shown below) and feed
your tokenizer's output.
"""

# %%
# A model and a task with a spurious group cue
# --------------------------------------------
import numpy as np
import torch
import transformers
from skorch.helper import SliceDict

from sklearn_winfair import FairLowRankFineTuner
from sklearn_winfair.metrics import fairness_metric_frame

torch.manual_seed(0)
config = transformers.BertConfig(
    vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=64, num_labels=2,
)
model = transformers.BertForSequenceClassification(config)
# With a real model, the one line to change:
# model = transformers.AutoModelForSequenceClassification.from_pretrained(
#     "bert-base-uncased", num_labels=2)

rng = np.random.RandomState(0)
n = 1200
group = rng.choice(["female", "male"], size=n)
sentiment = rng.randint(0, 2, size=n)
ids = rng.randint(10, 200, size=(n, 16))
ids[:, 1] = np.where(sentiment == 1, 5, 6)  # the word that carries the label
ids[:, 2] = np.where(group == "male", 7, 8)  # a word that reveals the group
noisy = rng.uniform(size=n) < 0.15
y = np.where(noisy, (group == "male").astype(int), sentiment)  # biased labels
X = SliceDict(input_ids=ids.astype(np.int64), attention_mask=np.ones_like(ids))
train, test = np.arange(800), np.arange(800, n)

# %%
# Fine-tune the classifier head
# -----------------------------
# ``SliceDict`` (skorch) lets scikit-learn index the dict by rows, so the
# same ``X`` works in cross-validation. The head ``classifier`` (32 -> 2) is
# factorized at rank 2, its full rank, so it starts exactly from the
# pre-trained head; ``head_init="probe"`` fits it first on the frozen
# features, since this random model knows nothing about the task.
clf = FairLowRankFineTuner(
    model, rank=2, head_init="probe", max_epochs=5, random_state=0
)
clf.fit(X[train], y[train], sensitive_features=group[train])
print(clf.head_name_, clf.ranks_, f"{clf.n_trainable_params_} trainable parameters")

# %%
# The fairness report
# -------------------
# A random model's features carry little about the task, so the error is
# high here; the point is the workflow, which is the same with a real
# pre-trained model.
frame = fairness_metric_frame(
    clf, X[test], y[test], sensitive_features=group[test]
)
print(frame.by_group)
print(frame.difference())

# %%
# A merged export
# ---------------
# ``export_module()`` folds the two low-rank factors back into one
# ``nn.Linear``: the result is a plain ``BertForSequenceClassification``
# whose ``state_dict`` loads into the original architecture (and into
# ``save_pretrained`` / ``from_pretrained``).
merged = clf.export_module()
fresh = transformers.BertForSequenceClassification(config)
print(fresh.load_state_dict(merged.state_dict()))
with torch.no_grad():
    logits = merged(input_ids=torch.as_tensor(ids[test[:4]])).logits
print(logits.softmax(dim=1))
print(clf.predict_proba(X[test[:4]]))
