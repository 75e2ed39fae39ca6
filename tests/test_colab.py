"""The Colab set-up cell: it does nothing outside Colab, installs the library inside it, and every notebook
starts its code with it (hidden in the book)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import nbformat
import pytest
import yaml

from noether_lib import colab

ROOT = Path(__file__).resolve().parents[1]


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_the_cell_names_the_repository_of_the_launch_buttons():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert colab.REPOSITORY == config["repository"]["url"]
    assert colab.BRANCH == config["repository"]["branch"]
    assert f"git+{colab.REPOSITORY}@{colab.BRANCH}" in colab.SETUP_SOURCE


def test_the_cell_does_nothing_outside_colab():
    with mock.patch.object(subprocess, "run") as run:
        exec(compile(colab.SETUP_SOURCE, "setup-cell", "exec"), {})
    run.assert_not_called()


def test_the_cell_installs_inside_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", mock.MagicMock())
    with mock.patch.object(subprocess, "run") as run:
        exec(compile(colab.SETUP_SOURCE, "setup-cell", "exec"), {})
    commands = [call.args[0] for call in run.call_args_list]
    assert [c[1:4] for c in commands] == [["-m", "pip", "install"]] * 2
    assert "myst-nb" in commands[0] and f"git+{colab.REPOSITORY}@{colab.BRANCH}" in commands[1]
    assert "--no-deps" in commands[1], "Colab's own torch must not be replaced by the pinned one"


def test_the_cell_passes_the_book_rule_against_pip_cells():
    import re

    assert not re.search(r"^\s*[!%]\s*pip\b", colab.SETUP_SOURCE, re.M)


def _notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("import numpy")]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    return path


def test_add_setup_cell_inserts_before_the_first_code_cell_once(tmp_path):
    path = _notebook(tmp_path)
    assert colab.add_setup_cell(path) is True
    nb = nbformat.read(path, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[1].source == colab.SETUP_SOURCE and nb.cells[1].metadata["tags"] == ["remove-cell"]
    assert colab.has_setup_cell(nb)
    nbformat.validate(nb)
    assert colab.add_setup_cell(path) is False
    assert len(nbformat.read(path, as_version=4).cells) == 3


def test_add_setup_cell_replaces_an_older_version(tmp_path):
    path = _notebook(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(
        1,
        nbformat.v4.new_code_cell(
            "import sys\nif 'google.colab' in sys.modules: pass", metadata={"tags": ["remove-cell"]}
        ),
    )
    nbformat.write(nb, path)
    assert colab.add_setup_cell(path) is True
    nb = nbformat.read(path, as_version=4)
    assert colab.has_setup_cell(nb) and sum("google.colab" in c.source for c in nb.cells) == 1


def test_command_line(tmp_path, capsys):
    path = _notebook(tmp_path)
    assert colab.main([str(path)]) == 0
    assert colab.main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: set-up cell added", f"{path}: already set up"]
    assert colab.main([]) == 2
    with pytest.raises(ValueError, match="not a notebook"):
        colab.add_setup_cell(tmp_path / "x.md")


def test_every_notebook_starts_with_the_colab_setup_cell():
    """Without it, the Colab button opens a notebook that cannot import noether_lib."""
    lacking = [str(p.relative_to(ROOT)) for p in notebooks() if not colab.has_setup_cell(nbformat.read(p, 4))]
    assert not lacking, (
        f"notebooks without the Colab set-up cell: {lacking}; add it with "
        f"`.venv/bin/python -m noether_lib.colab {' '.join(lacking)}`"
    )
