"""Link the committed report pages that exist into the site's table of contents.

``docs/performance.md`` is written by the performance suite and committed; the
home page's toctree lists it only when the file is there, so that the site
builds (with warnings as errors) at every commit.
"""

from pathlib import Path

MARKER = "@COMMITTED_REPORTS@"
REPORTS = ("performance",)


def _fill_toctree(app, docname, source):
    if docname != "index" or MARKER not in source[0]:
        return
    present = [
        name for name in REPORTS if (Path(app.srcdir) / f"{name}.md").exists()
    ]
    source[0] = source[0].replace(MARKER, "\n   ".join(present))


def setup(app):
    """Register the source-read hook."""
    app.connect("source-read", _fill_toctree)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
