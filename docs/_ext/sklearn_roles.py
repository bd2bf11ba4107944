"""Make docstrings written for other sites, or for plain text, render here.

* The ``set_*_request`` methods that scikit-learn adds to the estimator carry
  docstrings written for scikit-learn's own site (``:term:`` entries of its
  glossary, ``:ref:`` labels of its user guide). Here they become text and a
  link to scikit-learn's page, so that the API page keeps the methods.
* A fitted attribute's name in a parameter type, as in
  ``ndarray of shape (n_features_in_,)``, would be an rst link reference
  (``name_``); it is set as a literal.
"""

import re

SKLEARN_REFS = {
    "metadata_routing": "https://scikit-learn.org/stable/metadata_routing.html",
}
_TERM = re.compile(r":term:`([^`<]+?)(?:\s*<[^`>]+>)?`")
_REF = re.compile(r":ref:`([^`<]+?)\s*<([^`>]+)>`")
# "name : type" lines of numpydoc sections, and a bare word ending in "_" there
_TYPE_LINE = re.compile(r"^(\s*\*{0,2}\w+\s+:\s)(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _literal_attribute_names(lines):
    for i, line in enumerate(lines):
        match = _TYPE_LINE.match(line)
        if match and "_" in match.group(2):
            kind = _TRAILING_UNDERSCORE.sub(r"``\1``", match.group(2))
            lines[i] = match.group(1) + kind


def _rewrite(app, what, name, obj, options, lines):
    _literal_attribute_names(lines)
    text = "\n".join(lines)
    if ":term:" not in text and ":ref:" not in text:
        return
    text = _TERM.sub(r"\1", text)

    def ref(match):
        label, target = match.group(1), match.group(2)
        url = SKLEARN_REFS.get(target)
        return f"`{label} <{url}>`__" if url else match.group(0)

    text = _REF.sub(ref, text)
    lines[:] = text.split("\n")


def setup(app):
    """Register the docstring hook."""
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", _rewrite)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
