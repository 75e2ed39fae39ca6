"""The book's own guarantees: every notebook is in the TOC and under test, none stores outputs,
the two dependency lists agree, the pins hold, and the built HTML needs no network."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def toc_files() -> set[str]:
    files: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root"):
                    files.add(str(Path(value).with_suffix("")))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    return files


def test_there_are_notebooks():
    assert notebooks(), "the book has no notebooks"


def test_every_notebook_is_in_the_toc():
    listed = toc_files()
    missing = [str(p.relative_to(ROOT)) for p in notebooks() if str(p.relative_to(ROOT).with_suffix("")) not in listed]
    assert not missing, f"notebooks not in _toc.yml (they would escape the build): {missing}"


def test_every_toc_entry_exists():
    for entry in toc_files():
        assert any((ROOT / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb")), f"_toc.yml lists missing {entry}"


def test_every_notebook_is_collected_by_nbval():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:xdist",
            "book",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    missing = [str(p.relative_to(ROOT)) for p in notebooks() if str(p.relative_to(ROOT)) not in collected]
    assert not missing, f"notebooks that nbval does not collect: {missing}"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    stored = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stored, f"{path.name}: cells {stored} store outputs; clear them before committing"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_no_pip_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*[!%]\s*pip\b", cell.source, re.M), f"{path.name} installs packages in a cell"


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pip_list() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_runtime_dependencies_are_ranges():
    """The library installs beside another torch: pyproject declares ranges, the exact pins live in constraints."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [spec for spec in project["dependencies"] if "==" in spec]
    assert not pinned, f"pyproject.toml pins {pinned}; declare a range and pin in requirements/constraints.txt"


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(s): s.replace(" ", "") for s in project["dependencies"]}
    declared |= {_requirement_name(s): s.replace(" ", "") for s in project["optional-dependencies"]["book"]}
    assert "-crequirements/constraints.txt" in [s.replace(" ", "") for s in _pip_list()], (
        "environment.yml must use the pins"
    )
    listed = {_requirement_name(s): s.replace(" ", "") for s in _pip_list() if not s.startswith("-")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert listed == declared, f"environment.yml and pyproject.toml differ: {set(listed) ^ set(declared)} or pins"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"


def test_constraints_pin_every_declared_package():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, ver = line.split("==")
            pins[name.lower().replace("_", "-")] = ver
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["book"]:
        assert _requirement_name(spec) in pins, f"{spec} is not pinned in requirements/constraints.txt"
    assert pins["torch"] == "2.13.0" and pins["jupyter-book"] == "1.0.4.post1"


def test_installed_versions_are_the_pinned_ones():
    """Guard against Jupyter Book 2 (Node-based, cannot build offline) or another torch sneaking in."""
    assert version("jupyter-book") == "1.0.4.post1"
    assert version("torch").split("+")[0] == "2.13.0"
    assert version("sphinx").startswith("7.")


def test_make_py_refuses_the_wrong_python(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("make_py", ROOT / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    monkeypatch.setattr(make, "REQUIRED", (3, 99))
    with pytest.raises(SystemExit) as exc:
        make.check_python()
    assert exc.value.code == 2
    assert "python3.99 make.py" in capsys.readouterr().err


class _AssetParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        url = None
        if tag == "script":
            url = a.get("src")
        elif tag == "link" and any(r in (a.get("rel") or "") for r in ("stylesheet", "preload", "modulepreload")):
            url = a.get("href")
        elif tag in ("img", "iframe"):
            url = a.get("src")
        if url and re.match(r"^(https?:)?//", url):
            self.external.append(f"<{tag}> {url}")


def external_assets(html_dir: Path) -> dict[str, list[str]]:
    found = {}
    for page in html_dir.rglob("*.html"):
        parser = _AssetParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        if parser.external:
            found[str(page.relative_to(html_dir))] = parser.external
    return found


def test_asset_checker_catches_a_cdn(tmp_path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')
    (tmp_path / "b.html").write_text('<link rel="stylesheet" href="_static/x.css"><script src="_static/y.js"></script>')
    assert list(external_assets(tmp_path)) == ["a.html"]


@pytest.fixture(scope="session")
def html_without_execution(tmp_path_factory) -> Path:
    """Build the book's HTML with notebook execution off: the theme, extensions and static assets are the
    real ones, so any page that would load from another host shows up."""
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # Jupyter Book resolves local extensions relative to the config file: point them at the repository.
    local = config["sphinx"].get("local_extensions") or {}
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in local.items()}
    cfg = out / "_config.yml"
    cfg.write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jb), "build", str(ROOT), "--config", str(cfg), "--path-output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "_build" / "html"


def test_built_html_loads_nothing_from_other_hosts(html_without_execution: Path):
    pages = list(html_without_execution.rglob("*.html"))
    assert len(pages) >= 3
    assert (html_without_execution / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not served locally"
    external = external_assets(html_without_execution)
    assert not external, f"pages load scripts or styles from other hosts: {external}"


def test_full_build_if_present_loads_nothing_from_other_hosts():
    """The last full build (python3.11 make.py book), if there is one, must be offline too."""
    html = ROOT / "_build" / "html"
    if not html.is_dir():
        pytest.skip("no full build in _build/html yet; .ci/run builds it and runs this file again")
    assert not external_assets(html)
