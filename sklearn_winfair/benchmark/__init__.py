"""Benchmark harness reproducing Zhang & Zhou (2024) with sklearn-winfair.

Run it from the command line (``winfair-bench adult --quick`` or
``python -m sklearn_winfair.benchmark adult --quick``) or from Python with
:func:`run_benchmark`. Nothing here is imported by the package root.
"""

from ._cli import main
from ._runner import BenchmarkResult, Settings, run_benchmark, task_metrics

__all__ = ["run_benchmark", "BenchmarkResult", "Settings", "task_metrics", "main"]
