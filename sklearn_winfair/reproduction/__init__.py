"""Benchmark harness reproducing Zhang & Zhou (2024) with sklearn-winfair.

Yixuan Zhang and Feng Zhou, "Bias Mitigation in Fine-tuning Pre-trained
Models for Enhanced Fairness and Efficiency", arXiv:2403.00625, 2024.
``winfair-bench adult`` runs the paper's own setting with its published
numbers beside ours; ``adult-age-shift``, ``german`` and ``images`` are our
scenarios; ``adapters`` is our study of low-rank adapters inside the backbone
(issue 19; :mod:`._adapter_study`).

Run it from the command line (``winfair-bench adult --quick`` or
``python -m sklearn_winfair.reproduction adult --quick``) or from Python with
:func:`run_benchmark`. Nothing here is imported by the package root.
"""

from ._cli import main
from ._runner import BenchmarkResult, run_benchmark, task_metrics
from ._settings import Settings

__all__ = ["run_benchmark", "BenchmarkResult", "Settings", "task_metrics", "main"]
