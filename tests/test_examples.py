"""The gallery examples run end to end (so they cannot go stale).

The documentation build runs them too (sphinx-gallery); this test also covers
a checkout without the ``docs`` extra.
"""

import importlib.util
import pathlib
import re
import runpy

import matplotlib
import pytest
import sklearn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("plot_*.py"))
# Packages that only some examples need (the docs extra installs them, the
# tests extra does not): such an example is skipped where they are missing.
OPTIONAL = ("transformers", "distributed", "dask")


def _missing_optional(text):
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", text, flags=re.M))
    return sorted(
        name for name in OPTIONAL
        if name in imported and importlib.util.find_spec(name) is None
    )


def test_every_example_folder_is_in_the_gallery():
    """sphinx-gallery only builds folders with a README.txt; none is left out."""
    folders = {path.parent for path in EXAMPLES}
    missing = sorted(
        str(folder.relative_to(ROOT))
        for folder in folders
        if not (folder / "README.txt").exists()
    )
    assert not missing, f"example folders without README.txt: {missing}"
    assert (ROOT / "examples" / "README.txt").exists()


@pytest.mark.parametrize(
    "path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples"))
)
def test_example_runs(path):
    """Execute the example script; it must finish without error or warning."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith('"""\n'), "a gallery script starts with its title docstring"
    missing = _missing_optional(text)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[docs]')")
    try:
        with sklearn.config_context():  # examples may turn metadata routing on
            runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
