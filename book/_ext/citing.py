"""Sphinx extension of noether-book: make the book citable and its figures reusable.

* Every figure labelled ``fig-...`` whose exports exist (written by :func:`noether_lib.plotting.export_figure`
  into :func:`noether_lib.plotting.figure_dir`, under ``_build``, which the built site serves as ``_static/figures``) gets, under its caption,
  links to its PDF, SVG and PNG, to the numbers behind it (CSV) and to its axes description (JSON), and a
  suggested citation naming the book, its version and the figure's label. A ``fig-...`` figure without
  exports is a warning (so the strict build fails); give a figure the class ``no-exports`` to exempt it.
* The directive ``{book-bibtex}`` prints BibTeX for the book, built from ``CITATION.cff`` (so the version is
  never typed twice); with an argument it prints that entry of the book's ``references.bib`` verbatim.

Everything is read from the repository; nothing is fetched.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import yaml
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from noether_lib.plotting import export_root, figure_dir

LOGGER = logging.getLogger(__name__)

#: The exported files of a figure, in the order their links appear, with the link text.
EXPORTS: tuple[tuple[str, str], ...] = (
    ("pdf", "PDF"),
    ("svg", "SVG"),
    ("png", "PNG"),
    ("csv", "data (CSV)"),
    ("json", "axes (JSON)"),
)
EXEMPT_CLASS = "no-exports"


def _latex(text: str) -> str:
    return re.sub(r"([&%#_$])", r"\\\1", text)


def book_metadata(citation_file: Path) -> dict[str, str]:
    """Title, authors (as text and for BibTeX), version, year and URL of the book, from its ``CITATION.cff``."""
    cff = yaml.safe_load(citation_file.read_text(encoding="utf-8"))
    preferred = cff.get("preferred-citation", {})
    authors = preferred.get("authors") or cff["authors"]
    names = [a.get("name") or " ".join(filter(None, (a.get("given-names"), a.get("family-names")))) for a in authors]
    bib_names = [  # BibTeX: "Family, Given" for a person, a braced name for a collective
        f"{{{_latex(a['name'])}}}"
        if a.get("name")
        else _latex(", ".join(filter(None, (a.get("family-names"), a.get("given-names")))))
        for a in authors
    ]
    year = preferred.get("year") or str(cff.get("date-released", ""))[:4]
    url = preferred.get("url") or cff.get("url") or cff.get("repository-code", "")
    return {
        "title": str(preferred.get("title") or cff["title"]),
        "authors": ", ".join(names),
        "bibtex_authors": " and ".join(bib_names),
        "version": str(preferred.get("version") or cff["version"]),
        "year": str(year),
        "url": str(url),
    }


def book_bibtex(meta: dict[str, str], key: str = "noether_book") -> str:
    """A BibTeX ``@software`` entry for the book, its title braced whole (kept as written)."""
    return (
        f"@software{{{key},\n"
        f"  author  = {{{meta['bibtex_authors']}}},\n"
        f"  title   = {{{{{_latex(meta['title'])}}}}},\n"
        f"  version = {{{meta['version']}}},\n"
        f"  year    = {{{meta['year']}}},\n"
        f"  url     = {{{meta['url']}}}\n"
        f"}}"
    )


def figure_citation(meta: dict[str, str], label: str) -> str:
    """The suggested citation of one figure: the book, its version, and the figure's stable label."""
    return (
        f"{meta['authors']} ({meta['year']}). {meta['title']}, version {meta['version']}, figure {label}. {meta['url']}"
    )


def bib_entry(bib_file: Path, key: str) -> str:
    """The entry ``key`` of a ``.bib`` file, verbatim (from ``@type{key,`` to its closing brace)."""
    text = bib_file.read_text(encoding="utf-8")
    match = re.search(r"@\w+\s*\{\s*" + re.escape(key) + r"\s*,", text)
    if not match:
        raise KeyError(f"{key!r} is not in {bib_file.name}")
    depth = 0
    for end in range(text.index("{", match.start()), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[match.start() : end + 1]
    raise ValueError(f"unbalanced braces in the entry {key!r} of {bib_file.name}")


class BookBibtex(SphinxDirective):
    """``{book-bibtex}``: BibTeX of the book (no argument) or of one ``references.bib`` entry (its key)."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        if self.arguments:
            bib = root / self.config.bibtex_bibfiles[0]
            self.env.note_dependency(str(bib))
            try:
                text = bib_entry(bib, self.arguments[0])
            except (KeyError, ValueError) as error:
                raise self.error(str(error)) from error
        else:
            citation_file = root / self.config.citing_citation_file
            self.env.note_dependency(str(citation_file))
            text = book_bibtex(book_metadata(citation_file))
        block = nodes.literal_block(text, text, language="bibtex")
        self.set_source_info(block)
        return [block]


def _figure_labels(figure: nodes.figure) -> list[str]:
    return [name for name in figure["names"] if name.startswith("fig-")]


def add_export_links(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Under each ``fig-...`` figure's caption: links to its exports and its suggested citation."""
    if app.builder.format != "html":
        return
    root = Path(app.srcdir)
    exports = figure_dir()
    meta = book_metadata(root / app.config.citing_citation_file)
    page_dir = posixpath.dirname(app.builder.get_target_uri(docname)) or "."
    for figure in list(doctree.findall(nodes.figure)):
        for label in _figure_labels(figure):
            present = [(ext, text) for ext, text in EXPORTS if (exports / f"{label}.{ext}").is_file()]
            if not present:
                if EXEMPT_CLASS not in figure["classes"]:
                    LOGGER.warning(
                        f"figure {label} has no exported files in {exports}; "
                        f'export it with noether_lib.plotting.export_figure(fig, "{label}") (if its notebook '
                        "was not re-executed, its exports may be gone: python3.11 make.py book --fresh)",
                        location=figure,
                        type="citing",
                        subtype="figure_exports",
                    )
                continue
            links = nodes.paragraph(classes=["figure-exports"])
            links += nodes.strong("", "Download: ")
            for i, (ext, text) in enumerate(present):
                if i:
                    links += nodes.Text(" · ")
                uri = posixpath.relpath(f"{app.config.citing_figures_url}/{label}.{ext}", page_dir)
                links += nodes.reference("", text, refuri=uri, classes=["figure-export", f"figure-export-{ext}"])
            cite = nodes.paragraph(classes=["figure-citation"])
            cite += nodes.strong("", "Cite as: ")
            cite += nodes.Text(figure_citation(meta, label))
            legend = next(iter(figure.findall(nodes.legend)), None)
            if legend is None:
                legend = nodes.legend()
                figure += legend
            legend += [links, cite]


def serve_exports(app: Sphinx, config: Any) -> None:
    """Serve the folder the notebooks export figures into (under ``_build``) as the site's ``_static/figures``."""
    root = export_root()
    if root is None:
        return
    figure_dir().mkdir(parents=True, exist_ok=True)  # an empty folder still gives a clean static copy
    config.html_static_path = [*config.html_static_path, str(root)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("citing_citation_file", "CITATION.cff", "env")
    app.add_config_value("citing_figures_url", "_static/figures", "env")
    app.connect("config-inited", serve_exports)
    app.add_directive("book-bibtex", BookBibtex)
    app.connect("doctree-resolved", add_export_links)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
