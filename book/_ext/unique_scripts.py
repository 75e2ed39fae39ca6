"""Sphinx extension of noether-book: include each page script once.

With Jupyter Book 1.0.4 and Sphinx 7.4, the inline scripts that sphinx-thebe and sphinx-togglebutton register
reach every page twice (once from the builder, once from the extension registry, as ``_JavaScript(None, ...)``
and ``_JavaScript('', ...)``, which Sphinx does not see as equal). sphinx-thebe's declares
``const THEBE_JS_URL``, so its copy throws ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``
in every reader's console (the browser test, ``tests/test_browser.py``, found it). This drops such duplicates
from each page's script list, keeping the first of each and the order.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {})
    filename = getattr(script, "filename", script) or ""
    return (str(filename), getattr(script, "priority", 500), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            unique.append(script)
    scripts[:] = unique  # in place: the builder restores its own list after each page


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
