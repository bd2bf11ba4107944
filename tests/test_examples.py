"""The gallery examples run end to end (so they cannot go stale)."""

import pathlib
import runpy

import pytest
import sklearn

EXAMPLES = sorted(
    (pathlib.Path(__file__).resolve().parents[1] / "examples").rglob("plot_*.py")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    """Execute the example script; it must finish without error or warning."""
    with sklearn.config_context():  # the example turns metadata routing on
        namespace = runpy.run_path(str(path), run_name="__main__")
    assert "search" in namespace or "clf" in namespace
