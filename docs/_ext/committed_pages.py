"""Pages and tables from the reports that the benchmarks commit under ``docs/``.

* ``docs/performance.md`` is written by the performance suite and committed;
  the home page's toctree lists it only when the file is there, so that the
  site builds (with warnings as errors) at every commit.
* ``.. results-tables:: PATTERN`` includes every committed table of
  ``docs/results`` that matches a glob pattern (``*/table2.md``), each under
  the name of its folder, as the benchmark wrote it. The user guide cites the
  tables this way, so they follow the files whatever the benchmark's folders
  are called; a pattern that matches nothing is a build error.
"""

from pathlib import Path

from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

MARKER = "@COMMITTED_REPORTS@"
REPORTS = ("performance",)


def _fill_toctree(app, docname, source):
    if docname != "index" or MARKER not in source[0]:
        return
    present = [
        name for name in REPORTS if (Path(app.srcdir) / f"{name}.md").exists()
    ]
    source[0] = source[0].replace(MARKER, "\n   ".join(present))


class ResultsTables(SphinxDirective):
    """Include the committed results tables matching a glob pattern."""

    required_arguments = 1

    def run(self):
        """Insert an include of each matching file, captioned with its path."""
        srcdir = Path(self.env.srcdir)
        paths = sorted((srcdir / "results").glob(self.arguments[0]))
        if not paths:
            logger.warning(
                "results-tables: no committed file matches results/%s",
                self.arguments[0],
                location=self.get_location(),
            )
            return []
        lines = []
        for path in paths:
            rel = path.relative_to(srcdir).as_posix()
            self.env.note_dependency(str(path))
            lines += [
                f"From ``docs/{rel}``:",
                "",
                f".. include:: /{rel}",
                "   :parser: myst_parser.sphinx_",
                "",
            ]
        source, _ = self.get_source_info()
        self.state_machine.insert_input(lines, source)
        return []


def setup(app):
    """Register the source-read hook and the results-tables directive."""
    app.connect("source-read", _fill_toctree)
    app.add_directive("results-tables", ResultsTables)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
