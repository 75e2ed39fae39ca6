"""The book's style rules that a machine can check, over the notebooks and pages under ``book/`` and the
library ``noether_lib/``:

* no plot titles (``set_title``, ``suptitle``, ``plt.title``): the caption is the title;
* no ``\\tag`` in equations: they are labelled and referenced with ``{eq}``;
* no package installs in notebooks (``!pip``, ``%pip``, ``%conda``, ``pip install`` through ``subprocess``),
  except the one Colab set-up cell of :mod:`noether_lib.colab`;
* no hard-coded device (``cuda:0``);
* no warnings silenced globally (``warnings.filterwarnings("ignore", ...)`` or ``simplefilter("ignore")``
  outside a ``with warnings.catch_warnings():`` block, or ``PYTHONWARNINGS`` set to ignore);
* no notebook with stored outputs, execution counts or widget state;
* every figure cell (``mystnb.figure.name``) exports its figure under that label with ``export_figure``;
* no unglued numbers in the prose of notebooks and chapter pages (see :func:`unglued_numbers`);
* no number typed in a notebook's prose that its code computes or sets (see :func:`typed_settings`);
* the book speaks of the paper and its versions, never of "the digest" it was summarised in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from noether_lib import colab

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

#: Numbers a page may type in its prose although they look computed, by page, each with the reason.
#: Example: ``{"book/ch5/experiments.ipynb": {"58.3": "the paper's reported accuracy, quoted"}}``.
ALLOWED_NUMBERS: dict[str, dict[str, str]] = {
    "book/ch5/ablations.ipynb": {
        "0.001": "the paper's small learning rate, quoted from the paper (claim 18)",
        "0.03": "the paper's large learning rate, quoted from the paper (claim 19)",
        "0.9": "the paper's high momentum, quoted from the paper (claim 20)",
    },
}


def notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def library_files() -> list[Path]:
    return sorted((ROOT / "noether_lib").rglob("*.py"))


def pages() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.md") if ".ipynb_checkpoints" not in p.parts)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def markdown_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]


def _python(source: str) -> str:
    """A notebook cell as plain Python: IPython magics and shell escapes are commented out."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


# ------------------------------------------------------------------------------------------------ checkers
TITLE = re.compile(r"\.(set_title|suptitle)\s*\(|\bplt\.title\s*\(")
TAG = re.compile(r"\\tag\b")
DEVICE = re.compile(r"""["']cuda:\d+["']""")  # fallback for cells that do not parse
INSTALL_MAGIC = re.compile(r"^\s*[!%]\s*(pip|pip3|conda|mamba)\b", re.M)
INSTALL_CALL = re.compile(r"""pip["'\s,]+install""")


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def hard_coded_devices(source: str) -> list[str]:
    """String literals naming one GPU (``"cuda:0"``) in code; docstrings and comments may mention them."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return [m.group(0) for m in DEVICE.finditer(source)]
    docstrings = _docstrings(tree)
    return [
        repr(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and re.fullmatch(r"cuda:\d+", node.value.strip())
    ]


def global_warning_filters(source: str) -> list[str]:
    """Calls that make Python ignore warnings for the whole process (not inside ``catch_warnings``)."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []
    protected: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            "catch_warnings" in ast.unparse(item.context_expr) for item in node.items
        ):
            protected.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in protected:
            continue
        name = ast.unparse(node.func)
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "action"), None)
        if (
            name.split(".")[-1] in ("filterwarnings", "simplefilter")
            and isinstance(first, ast.Constant)
            and first.value == "ignore"
        ):
            found.append(ast.unparse(node))
    found += re.findall(r"""PYTHONWARNINGS["']\]?\s*[=,:]\s*["']ignore[^"']*["']""", source)
    return found


_FENCE = re.compile(r"^(```+|:::+)\s*(\{[^}]*\})?.*?$(.*?)^\1\s*$", re.M | re.S)
_PROSE_DIRECTIVES = (
    "{prf:",
    "{admonition",
    "{note",
    "{tip",
    "{warning",
    "{important",
    "{caution",
    "{hint",
    "{attention",
    "{seealso",
    "{dropdown",
    "{figure",
    "{margin",
    "{sidebar",
    "{epigraph",
)
_STRIP = [
    re.compile(r"<!--.*?-->", re.S),  # HTML comments
    re.compile(r"^%.*$", re.M),  # MyST comments
    re.compile(r"\$\$.*?\$\$", re.S),  # display maths
    re.compile(r"\$[^$\n]+\$"),  # inline maths
    re.compile(r"\\\(.*?\\\)|\\\[.*?\\\]", re.S),  # LaTeX-style maths
    re.compile(r"\{[\w:-]+\}`[^`]*`"),  # roles: {glue:text}`...`, {math}`...`, {eq}`...`
    re.compile(r"`[^`]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),  # bare URLs
    re.compile(r"^\s*:[\w-]+:.*$", re.M),  # directive options (:label:, :class:)
    re.compile(r"\(eq-[\w-]+\)|\((?:fig|tab|sec)-[\w-]+\)="),  # labels
]
#: A decimal number (0.25), a number in scientific notation (1e-3, 2.5E+4) or a percentage (12 %, 3.5%).
NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+(?:\.\d+)?\s?%)(?![\w.]*\w)")
#: Words after which a number names something rather than measures it (Eq. 3.2, Python 3.11, CC BY 4.0).
NAMING = re.compile(
    r"(?:Eqs?\.|Equations?|Sections?|Sec\.|§|Fig(?:ure)?s?\.?|Tables?|Appendix|Theorem|Lemma|"
    r"Definition|Chapter|Python|version|v|arXiv:?|CC[ -]BY(?:-SA|-NC|-ND)*)\s*$",
    re.I,
)


def prose(markdown: str) -> str:
    """The text a reader reads as sentences: code and maths blocks, roles, labels and URLs removed; the
    bodies of prose directives (theorems, admonitions, figures' captions) kept."""

    def keep_prose(match: re.Match[str]) -> str:
        opener = match.group(2) or ""
        return prose(match.group(3)) if opener.startswith(_PROSE_DIRECTIVES) else "\n"

    text = _FENCE.sub(keep_prose, markdown)
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    return text


def unglued_numbers(markdown: str) -> list[str]:
    """Numbers typed in prose that look measured rather than named.

    The heuristic: every result the book states is computed, so in prose it must come from ``glue``
    (``{glue:text}``) rather than be typed. After removing what is not prose (maths, code, roles such as
    ``{glue:text}``, labels, URLs, directive options), it flags decimals (``0.0123``), scientific notation
    (``1e-3``) and percentages: the shapes a measured value has. Integers are not flagged: they are years,
    equation and section numbers, sizes and counts chosen by design, and flagging them would bury the real
    cases. A decimal that names something (``Eq. 3.2``, ``Section 4.1``, ``Python 3.11``) is not flagged.
    Constants inside equations are maths and not checked. A number that must be typed (a value quoted from
    the paper, say) goes into :data:`ALLOWED_NUMBERS` with its reason.
    """
    text = prose(markdown)
    return [m.group(1) for m in NUMBER.finditer(text) if not NAMING.search(text[: m.start()])]


_INLINE_MATH = re.compile(r"(?<!\$)\$([^$\n]+)\$(?!\$)")
#: A number in prose or inline maths: an integer or a decimal, not part of a word, a label or a longer number.
_ANY_NUMBER = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.]*\w)")
DIGEST = re.compile(r"\bdigest\b", re.I)


def code_numbers(sources: list[str]) -> set[float]:
    """The numeric literals of a notebook's code cells (the settings it chooses and the constants it uses)."""
    found: set[float] = set()
    for source in sources:
        try:
            tree = ast.parse(_python(source))
        except SyntaxError:
            continue
        found |= {
            float(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and type(node.value) in (int, float)
        }
    return found


def typed_settings(markdown: str, numbers: set[float]) -> list[str]:
    """Numbers typed in prose or inline maths that the notebook's code also holds as a literal (``numbers``).

    A value the code sets (a learning rate, a step count, a time span) must reach the prose through ``glue``, or the
    two drift apart when the code changes. Integers up to ten are too ambiguous to flag (counts, classes, small
    factors), and so is a factor after ``×`` (the ×10 experiment); a number after a naming word (``Eq. 3``) is not a
    value.
    """
    text = _FENCE.sub("\n", markdown)
    for pattern in _STRIP[:3]:  # comments and display maths
        text = pattern.sub(" ", text)
    inline = " ".join(_INLINE_MATH.findall(text))
    for pattern in _STRIP[3:]:
        text = pattern.sub(" ", text)
    flagged = []
    for source in (text, inline):
        for m in _ANY_NUMBER.finditer(source):
            value = float(m.group(1))
            if NAMING.search(source[: m.start()]) or (value.is_integer() and value <= 10):
                continue
            if source[: m.start()].rstrip().endswith(("×", "\\times")):  # a factor that names an experiment (×10)
                continue
            if value in numbers:
                flagged.append(m.group(1))
    return flagged


# --------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_notebook_code_follows_the_style(path: Path):
    problems = []
    for i, source in enumerate(code_cells(path)):
        where = f"{_id(path)}, code cell {i + 1}"
        problems += [f"{where}: plot title {m.group(0)!r}" for m in TITLE.finditer(source)]
        problems += [f"{where}: hard-coded device {d}" for d in hard_coded_devices(source)]
        problems += [f"{where}: warnings silenced globally: {call}" for call in global_warning_filters(source)]
        if source.strip() != colab.SETUP_SOURCE.strip():
            if INSTALL_MAGIC.search(source) or INSTALL_CALL.search(source):
                problems.append(f"{where}: installs packages")
        problems += [f"{where}: \\tag" for _ in TAG.finditer(source)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_notebook_is_stored_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{_id(path)}: code cells {dirty} store outputs or execution counts"
    assert "widgets" not in nb.metadata, f"{_id(path)}: stores widget state"


BOOKKEEPING_CALLS = {"glue", "glue_number"}
HIDING_TAGS = ("remove-cell", "remove-input", "hide-cell", "hide-input")


def is_bookkeeping(source: str) -> bool:
    """A cell that only glues values for the prose: every statement is a call of ``glue`` or ``glue_number``."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return False
    calls = [s.value for s in tree.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)]
    names = [getattr(c.func, "id", getattr(c.func, "attr", None)) for c in calls]
    return bool(tree.body) and len(calls) == len(tree.body) and all(n in BOOKKEEPING_CALLS for n in names)


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_bookkeeping_cells_are_hidden(path: Path):
    """Glue-only cells are bookkeeping: the rendered page hides them (the printed checks stay visible)."""
    cells = nbformat.read(path, as_version=4).cells
    shown = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "code"
        and is_bookkeeping(c.source)
        and not any(t in c.metadata.get("tags", []) for t in HIDING_TAGS)
    ]
    assert not shown, f"{_id(path)}: glue-only code cells {shown} are shown; tag them remove-cell"


RETURNING_CHECKS = {"glue_number", "assert_discriminates", "assert_within"}


def displays_a_check_value(source: str) -> bool:
    """Whether a cell ends with a bare call of a check or ``glue_number``, whose return value the page would show."""
    if source.rstrip().endswith(";"):
        return False
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return False
    last = tree.body[-1] if tree.body else None
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)):
        return False
    after = _python(source).splitlines()[last.end_lineno - 1][last.end_col_offset :]
    if after.lstrip().startswith(";"):
        return False
    return getattr(last.value.func, "id", getattr(last.value.func, "attr", None)) in RETURNING_CHECKS


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_checks_do_not_display_their_return_values(path: Path):
    """A check prints its verdict; the tuple or number it returns must not be shown again under it."""
    cells = nbformat.read(path, as_version=4).cells
    shown = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "code"
        and "remove-cell" not in c.metadata.get("tags", [])
        and displays_a_check_value(c.source)
    ]
    assert not shown, f"{_id(path)}: cells {shown} end with a bare check or glue_number call; end them with ';'"


def test_displays_a_check_value_control():
    assert displays_a_check_value('assert_within("x", 0.0, 1.0)')
    assert not displays_a_check_value('assert_within("x", 0.0, 1.0);')
    assert not displays_a_check_value('assert_within("x", 0.0, 1.0);  # a comment')
    assert not displays_a_check_value("print(1)")


def test_is_bookkeeping_tells_glue_from_code():
    assert is_bookkeeping('glue("a", 1)\nglue_number("b", x)')
    assert not is_bookkeeping('glue("a", 1)\nprint(a)')
    assert not is_bookkeeping("x = 1")


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_every_figure_is_exported_under_its_label(path: Path):
    """So that the built book can link each figure's PDF, SVG, PNG and data (``book/_ext/citing.py``)."""
    missing = []
    for cell in nbformat.read(path, as_version=4).cells:
        name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
        call = re.compile(r"export_figure\(\s*\w+\s*,\s*[\"']" + re.escape(str(name)) + r"[\"']")
        if cell.cell_type == "code" and name and not call.search(cell.source):
            missing.append(name)
    assert not missing, f"{_id(path)}: figures not exported with export_figure(fig, label): {missing}"


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_every_exported_figure_is_a_captioned_figure(path: Path):
    """The converse: a cell exporting ``fig-x`` shows it as the figure ``fig-x`` with a caption (its metadata)."""
    unnamed = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        for label in re.findall(r"export_figure\(\s*\w+\s*,\s*[\"'](fig-[\w-]+)[\"']", cell.source):
            if figure.get("name") != label or not figure.get("caption"):
                unnamed.append(label)
    assert not unnamed, f"{_id(path)}: exported figures without mystnb.figure name and caption: {unnamed}"


@pytest.mark.parametrize("path", library_files(), ids=_id)
def test_library_follows_the_style(path: Path):
    source = path.read_text(encoding="utf-8")
    problems = [f"plot title {m.group(0)!r}" for m in TITLE.finditer(source)]
    problems += [f"hard-coded device {d}" for d in hard_coded_devices(source)]
    problems += [f"warnings silenced globally: {call}" for call in global_warning_filters(source)]
    problems += ["\\tag in a docstring" for _ in TAG.finditer(source)]
    assert not problems, f"{_id(path)}: {problems}"


@pytest.mark.parametrize("path", notebooks() + pages(), ids=_id)
def test_prose_has_no_tag_and_no_unglued_numbers(path: Path):
    texts = markdown_cells(path) if path.suffix == ".ipynb" else [path.read_text(encoding="utf-8")]
    assert not any(TAG.search(t) for t in texts), f"{_id(path)}: uses \\tag; label the equation instead"
    allowed = ALLOWED_NUMBERS.get(_id(path), {})
    typed = [n for t in texts for n in unglued_numbers(t) if n not in allowed]
    if path.suffix == ".md" and not path.relative_to(BOOK).parts[0].startswith("ch"):
        return  # front matter and appendix pages compute nothing
    assert not typed, f"{_id(path)}: numbers typed in the prose (glue them, or allow-list them): {typed}"


@pytest.mark.parametrize("path", notebooks(), ids=_id)
def test_prose_does_not_retype_what_the_code_sets(path: Path):
    numbers = code_numbers(code_cells(path))
    allowed = ALLOWED_NUMBERS.get(_id(path), {})
    typed = [n for t in markdown_cells(path) for n in typed_settings(t, numbers) if n not in allowed]
    assert not typed, f"{_id(path)}: numbers typed in the prose that the code sets (glue them): {typed}"


@pytest.mark.parametrize("path", notebooks() + pages(), ids=_id)
def test_the_book_never_says_digest(path: Path):
    texts = markdown_cells(path) if path.suffix == ".ipynb" else [path.read_text(encoding="utf-8")]
    assert not any(DIGEST.search(t) for t in texts), f"{_id(path)}: speaks of 'the digest'; cite the paper"


# ------------------------------------------------------------------------------- the checkers themselves
def test_unglued_numbers_flags_measured_values_only():
    text = """# Results

The loss fell to 0.0123 after 1e-3 seconds, an improvement of 12 % (Eq. 3.2, Section 4.1, Python 3.11).
In 2021, with 20 points and $\\eta = 0.1$, the deviation was {glue:text}`ch1-dev` and `lr=0.5` in code.

$$
k = 0.25
$$ (eq-ch1-k)

```python
x = 3.14
```

:::{prf:theorem} A theorem
:label: ch1-thm-x
Its constant is 2.5.
:::

See [the paper](https://arxiv.org/abs/2105.02716).
"""
    assert unglued_numbers(text) == ["0.0123", "1e-3", "12 %", "2.5"]


def test_typed_settings_flags_values_the_code_holds():
    numbers = code_numbers(["lr, epochs = 0.05, 8\nsteps = [80, 160]\nT = 1.5"])
    text = "We train for 8 epochs at $\\eta=0.05$, then 80 steps to $T=1.5$ (Eq. 80), in 2021 and with 0.3."
    assert typed_settings(text, numbers) == ["80", "0.05", "1.5"]


def test_global_warning_filters():
    assert global_warning_filters('import warnings\nwarnings.filterwarnings("ignore")') == [
        "warnings.filterwarnings('ignore')"
    ]
    assert global_warning_filters("from warnings import simplefilter\nsimplefilter(action='ignore')")
    assert global_warning_filters('os.environ["PYTHONWARNINGS"] = "ignore"')
    assert not global_warning_filters('with warnings.catch_warnings():\n    warnings.simplefilter("ignore")\n')
    assert not global_warning_filters('warnings.filterwarnings("error", category=DeprecationWarning)')
    assert not global_warning_filters("%matplotlib inline\nx = 1")


@pytest.mark.parametrize(
    "source, rule",
    [
        ("ax.set_title('loss')", TITLE),
        ("fig.suptitle('x')", TITLE),
        ("plt.title('x')", TITLE),
        ("!pip install torch", INSTALL_MAGIC),
        ("%pip install x", INSTALL_MAGIC),
        ("subprocess.run(['pip', 'install', 'x'])", INSTALL_CALL),
        ("\\tag{3}", TAG),
    ],
)
def test_the_rules_catch_what_they_forbid(source, rule):
    assert rule.search(source)


@pytest.mark.parametrize(
    "source", ["ax.set_xlabel('t')", "device = 'cuda' if ok else 'cpu'", "pipeline = 1", "\\tagged"]
)
def test_the_rules_leave_the_rest_alone(source):
    assert not any(rule.search(source) for rule in (TITLE, INSTALL_MAGIC, INSTALL_CALL, TAG))


def test_hard_coded_devices():
    assert hard_coded_devices("model.to('cuda:0')") == ["'cuda:0'"]
    assert hard_coded_devices('x = torch.zeros(3, device="cuda:1")') == ["'cuda:1'"]
    assert not hard_coded_devices('def f():\n    """Use ``"cuda:1"`` or "cpu"."""\n    return f"cuda:{rank}"\n')
    assert not hard_coded_devices("device = 'cuda' if torch.cuda.is_available() else 'cpu'  # not 'cuda:0'")
