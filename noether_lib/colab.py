"""The set-up cell that lets a chapter notebook run on Google Colab.

Colab opens a notebook straight from the repository, without this library. Every notebook of the book therefore
starts its code with the same cell, :data:`SETUP_SOURCE`, tagged ``remove-cell`` (the built book hides it):
inside Colab it installs the library from the repository (without its pinned dependencies: Colab's own torch,
numpy and friends are used) together with ``myst-nb`` (for ``glue``); anywhere else it does nothing. The cell
cannot call this module, because on Colab the module is not there yet: its text is kept here, once, and
:func:`add_setup_cell` writes it into notebooks::

    python -m noether_lib.colab book/ch1/*.ipynb

The cell installs with ``subprocess`` rather than ``%pip`` so that no notebook contains a line that installs
packages unconditionally.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

__all__ = ["REPOSITORY", "BRANCH", "SETUP_TAGS", "SETUP_SOURCE", "has_setup_cell", "add_setup_cell", "main"]

#: The repository the book is built from (the same as ``repository.url`` in ``_config.yml``).
REPOSITORY = "https://github.com/noether-book/noether-book"
#: The branch the launch buttons open (``repository.branch`` in ``_config.yml``).
BRANCH = "main"
#: The tags of the set-up cell, which hide its input and output in the built book.
SETUP_TAGS: tuple[str, ...] = ("remove-cell",)

#: The source of the set-up cell, the same in every notebook.
SETUP_SOURCE = f"""\
# Google Colab only: install the book's library from its repository (this cell does nothing elsewhere).
import subprocess
import sys

if "google.colab" in sys.modules:
    for packages in (["myst-nb"], ["--no-deps", "git+{REPOSITORY}@{BRANCH}"]):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *packages], check=True)"""


def has_setup_cell(notebook: Mapping[str, Any]) -> bool:
    """Whether the notebook's first code cell is the set-up cell, with its tags."""
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    if not code:
        return False
    tags = set(code[0].get("metadata", {}).get("tags", []))
    return code[0]["source"].strip() == SETUP_SOURCE.strip() and set(SETUP_TAGS) <= tags


def add_setup_cell(path: Path | str) -> bool:
    """Insert the set-up cell before the first code cell of the notebook at ``path``.

    A previous, different version of the cell (one tagged ``remove-cell`` mentioning ``google.colab``) is
    replaced. Returns whether the file changed; a notebook that already has the cell is left untouched.
    """
    path = Path(path)
    if path.suffix != ".ipynb":
        raise ValueError(f"not a notebook: {path}")
    notebook = nbformat.read(path, as_version=4)
    if has_setup_cell(notebook):
        return False
    notebook.cells = [
        c
        for c in notebook.cells
        if not (c.cell_type == "code" and "google.colab" in c.source and "remove-cell" in c.metadata.get("tags", []))
    ]
    position = next((i for i, c in enumerate(notebook.cells) if c.cell_type == "code"), len(notebook.cells))
    cell = nbformat.v4.new_code_cell(SETUP_SOURCE, metadata={"tags": list(SETUP_TAGS)})
    if notebook.nbformat_minor < 5:  # cell ids exist from format 4.5 on
        cell.pop("id", None)
    notebook.cells.insert(position, cell)
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m noether_lib.colab NOTEBOOK...``: add the set-up cell where it is missing."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m noether_lib.colab NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path}: {'set-up cell added' if add_setup_cell(path) else 'already set up'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
