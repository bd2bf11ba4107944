"""Sphinx configuration of the sklearn-winfair documentation site.

Build (from the repository root, warnings are errors, the gallery runs)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

The results and performance pages are the markdown files that ``winfair-bench``
and the performance suite commit under ``docs/`` (``docs/results/**``,
``docs/performance.md``), rendered as they are by myst-parser.
"""

import os
import sys
from pathlib import Path

# 2 shared cores: keep torch and BLAS at one thread while the gallery runs.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import sklearn_winfair  # noqa: E402

# -- project -------------------------------------------------------------------
project = "sklearn-winfair"
author = "sklearn-winfair developers"
copyright = "2024-2026, sklearn-winfair developers"  # noqa: A001
release = sklearn_winfair.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ----------------------------------------------------------------
extensions = [
    "committed_pages",
    "sklearn_roles",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_templates",
    "_ext",
    "Thumbs.db",
    ".DS_Store",
    # sphinx-gallery writes these; they are included from the example pages
    "auto_examples/**/*.ipynb",
    "auto_examples/**/*.py",
    "auto_examples/**/*.zip",
    "auto_examples/**/*.md5",
    "auto_examples/**/*.codeobj.json",
]
templates_path = ["_templates"]


def _is_page(markdown):
    """Whether a committed markdown file is a page (it starts with an H1 title)."""
    return markdown.read_text(encoding="utf-8").lstrip().startswith("# ")


# The benchmark writes each table twice: in its summary.md page and as a bare
# fragment (table2.md, fig4.md, ... starting at an H3). Only pages are built.
exclude_patterns += [
    str(path.relative_to(HERE))
    for path in sorted((HERE / "results").rglob("*.md"))
    if not _is_page(path)
]

# -- autodoc, autosummary, numpydoc -------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Types are parsed as cross-references, so that ``(n_features_in_,)`` in a
# type is text, not an rst link target; unknown words stay plain text.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
# numpydoc's default aliases point into the Python and numpy glossaries through
# intersphinx, which needs the network; link to plain names instead.
numpydoc_xref_aliases = {
    name: name
    for name in (
        "array-like", "array_like", "iterable", "sequence", "generator", "scalar",
        "None", "True", "False", "list", "tuple", "str", "dict", "float", "int",
        "callable",
    )
} | {"bool": "bool", "boolean": "bool", "string": "str"}

# -- math ----------------------------------------------------------------------
# MathJax 3 ships with pydata-sphinx-theme's CDN default; keep the default URL.

# -- myst (the committed markdown results pages) --------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# The benchmark's table fragments start at an H3 heading; the user guide
# includes them inside its own sections.
suppress_warnings = ["myst.header"]

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "ignore_pattern": r"__init__\.py",
    # first steps first; any other folder (backbones/, scaling/, ...) after
    "subsection_order": [
        "../examples/quick_start",
        "../examples/fairness",
        "../examples/model_selection",
        "*",
    ],
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_winfair",),
    "backreferences_dir": "api/generated/backreferences",
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib", "gallery_reset.reset_sklearn_and_torch"),
    "remove_config_comments": True,
    "show_memory": False,
    "download_all_examples": False,
    "plot_gallery": "True",
}

# -- html ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-winfair {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "install": [], "citation": [], "changelog": []}
html_show_sourcelink = True
