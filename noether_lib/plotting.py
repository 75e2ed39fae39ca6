"""One figure style for the whole book, and a helper that exports each figure for reuse and citation.

Each figure is exported under its book label as PDF, SVG and PNG, with the numbers behind it as a tidy CSV
(one row per plotted point) and a small JSON description of its axes, so that a reader can cite the figure
and re-plot it without re-running the notebook. Nothing here runs at import time: call :func:`use_book_style`
before plotting.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "DATA_COLUMNS",
    "use_book_style",
    "new_figure",
    "EXPORT_ROOT",
    "export_root",
    "figure_dir",
    "figure_data",
    "export_figure",
]

#: A colour-blind-safe palette (Okabe--Ito); every figure draws its colours from it in order.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)

_WIDTHS = {"single": 3.4, "wide": 5.6, "double": 7.0}
EXPORT_FORMATS: tuple[str, ...] = ("pdf", "svg", "png")

#: The columns of a figure's data CSV, one row per plotted point. ``axis`` is the panel (0-based, in
#: ``fig.axes`` order); ``series`` its legend label, or its kind and a number when it has none; ``kind`` what
#: was drawn (``line``, ``scatter``, ``errorbar``, ``bar``, ``area`` for the outline of a filled region,
#: ``image`` for one pixel); ``x`` and ``y`` the point; ``y_low`` and ``y_high`` the ends of its error bar
#: (``errorbar`` only); ``value`` the pixel value (``image`` only).
DATA_COLUMNS: tuple[str, ...] = ("axis", "series", "kind", "x", "y", "y_low", "y_high", "value")


def use_book_style() -> None:
    """Apply the book's matplotlib style (sizes, fonts, palette, no top/right spines)."""
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "font.size": 9,
            "axes.labelsize": 9,
            "axes.titlesize": 9,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=list(PALETTE)),
            "lines.linewidth": 1.5,
            "svg.hashsalt": "noether-book",
            "pdf.fonttype": 42,
        }
    )


def new_figure(
    ncols: int = 1,
    nrows: int = 1,
    *,
    width: Literal["single", "wide", "double"] = "wide",
    aspect: float = 0.62,
    **kwargs,
) -> tuple[Figure, object]:
    """Create a figure with the book's sizes; returns ``(figure, axes)`` like :func:`matplotlib.pyplot.subplots`."""
    if width not in _WIDTHS:
        raise ValueError(f"width must be one of {sorted(_WIDTHS)}, got {width!r}")
    w = _WIDTHS[width]
    h = w * aspect * nrows / max(ncols, 1) if ncols > 1 else w * aspect * nrows
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(w, max(h, 1.8)), **kwargs)


#: The folder of the build output (never the source tree) that exported figures go to, inside the repository
#: checkout. The built book serves its ``figures/`` subfolder as ``_static/figures`` (``book/_ext/citing.py``).
EXPORT_ROOT: tuple[str, ...] = ("_build", "exports")


def export_root() -> Path | None:
    """The folder whose ``figures/`` the built book serves, or ``None`` outside a repository checkout."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "_toc.yml").is_file() and (repo / "book").is_dir():
        return repo.joinpath(*EXPORT_ROOT)
    return None


def figure_dir() -> Path:
    """Where exported figures go.

    ``$NOETHER_BOOK_FIGURES`` if set; otherwise ``_build/exports/figures`` of the repository checkout the library
    is installed from (served by the built book as ``_static/figures``); otherwise ``./figures``.
    """
    override = os.environ.get("NOETHER_BOOK_FIGURES")
    if override:
        return Path(override)
    root = export_root()
    return root / "figures" if root is not None else Path.cwd() / "figures"


def _name(label: object, kind: str, counter: dict[str, int]) -> str:
    """The legend label, or for an unlabelled series its kind and a number (``line1``, ``line2``...)."""
    if isinstance(label, str) and label and not label.startswith("_"):
        return label
    counter[kind] = counter.get(kind, 0) + 1
    return f"{kind}{counter[kind]}"


def _floats(values: Any) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(values, dtype=float), np.nan).ravel()


def _axis_rows(index: int, ax: Axes) -> Iterator[dict[str, Any]]:
    """The data series of one axes, in data coordinates; reference lines (``axhline``...) are skipped."""
    counter: dict[str, int] = {}
    skip: set[int] = set()
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            data_line, caplines, barlines = container.lines
            skip.update(id(a) for a in (data_line, *caplines, *barlines))
            if data_line is None:
                continue
            x, y = _floats(data_line.get_xdata()), _floats(data_line.get_ydata())
            low, high = y.copy(), y.copy()
            if container.has_yerr:
                segments = barlines[-1].get_segments()
                low = np.array([min(s[0][1], s[1][1]) for s in segments], dtype=float)
                high = np.array([max(s[0][1], s[1][1]) for s in segments], dtype=float)
            series = _name(container.get_label(), "errorbar", counter)
            for xi, yi, lo, hi in zip(x, y, low, high):
                yield {"axis": index, "series": series, "kind": "errorbar", "x": xi, "y": yi, "y_low": lo, "y_high": hi}
        elif isinstance(container, BarContainer):
            series = _name(container.get_label(), "bar", counter)
            horizontal = getattr(container, "orientation", "vertical") == "horizontal"
            for patch in container.patches:
                x0, y0, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
                bx, by = (x0 + w, y0 + h / 2) if horizontal else (x0 + w / 2, y0 + h)
                yield {"axis": index, "series": series, "kind": "bar", "x": float(bx), "y": float(by)}
            skip.update(id(p) for p in container.patches)
    for line in ax.get_lines():
        if id(line) in skip or not line.get_transform().contains_branch(ax.transData):
            continue
        series = _name(line.get_label(), "line", counter)
        for x, y in zip(_floats(line.get_xdata()), _floats(line.get_ydata())):
            yield {"axis": index, "series": series, "kind": "line", "x": x, "y": y}
    for collection in ax.collections:
        if id(collection) in skip:
            continue
        if isinstance(collection, PathCollection) and collection.get_offset_transform().contains_branch(ax.transData):
            kind, points = "scatter", np.asarray(collection.get_offsets(), dtype=float)
        elif (
            isinstance(collection, PolyCollection)
            and collection.get_paths()
            and collection.get_transform().contains_branch(ax.transData)
        ):
            kind, points = "area", np.concatenate([path.vertices for path in collection.get_paths()])
        else:
            continue
        series = _name(collection.get_label(), kind, counter)
        for x, y in points:
            yield {"axis": index, "series": series, "kind": kind, "x": x, "y": y}
    for image in ax.get_images():
        values: np.ndarray = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
        if values.ndim != 2:
            continue
        left, right, bottom, top = image.get_extent()
        rows, cols = values.shape
        xs = left + (np.arange(cols) + 0.5) * (right - left) / cols
        ys = (
            top + (np.arange(rows) + 0.5) * (bottom - top) / rows
            if image.origin == "upper"
            else (bottom + (np.arange(rows) + 0.5) * (top - bottom) / rows)
        )
        series = _name(image.get_label(), "image", counter)
        for r in range(rows):
            for c in range(cols):
                yield {"axis": index, "series": series, "kind": "image", "x": xs[c], "y": ys[r], "value": values[r, c]}


def figure_data(fig: Figure) -> list[dict[str, Any]]:
    """The numbers behind ``fig`` as tidy rows with the keys :data:`DATA_COLUMNS` (missing ones are empty).

    Lines, scatters, error bars, bars, filled areas (their outline) and images drawn in data coordinates
    are extracted from every axes; text, legends and reference lines spanning the axes are not.
    """
    rows = [row for index, ax in enumerate(fig.axes) for row in _axis_rows(index, ax)]
    return [{column: row.get(column, "") for column in DATA_COLUMNS} for row in rows]


def _axes_description(fig: Figure) -> list[dict[str, Any]]:
    return [
        {
            "axis": i,
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "xscale": ax.get_xscale(),
            "yscale": ax.get_yscale(),
        }
        for i, ax in enumerate(fig.axes)
    ]


def export_figure(fig: Figure, label: str, directory: Path | None = None) -> dict[str, Path]:
    """Write ``fig`` as PDF, SVG and PNG named after its book label (e.g. ``fig-ch1-order``), with its data.

    Beside the images go ``<label>.csv``, the plotted numbers as tidy rows (see :func:`figure_data` and
    :data:`DATA_COLUMNS`), and ``<label>.json``, the label, the axes' labels and scales, and the series.
    Returns the written paths by format (``pdf``, ``svg``, ``png``, ``csv``, ``json``). The label must be the
    figure's ``fig-...`` label so that readers can cite and re-use the figure under a stable name.
    """
    if not label.startswith("fig-") or any(c in label for c in " /\\"):
        raise ValueError(f"label must look like 'fig-chapter-name' (no spaces or slashes), got {label!r}")
    target = Path(directory) if directory is not None else figure_dir()
    target.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt in EXPORT_FORMATS:
        path = target / f"{label}.{fmt}"
        metadata = {"Creator": "noether-book", "Title": label} if fmt in ("pdf", "svg") else None
        fig.savefig(path, format=fmt, metadata=metadata)
        paths[fmt] = path
    rows = figure_data(fig)
    paths["csv"] = target / f"{label}.csv"
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=DATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    series = dict.fromkeys((row["axis"], row["series"], row["kind"]) for row in rows)
    description = {
        "label": label,
        "columns": list(DATA_COLUMNS),
        "axes": _axes_description(fig),
        "series": [{"axis": a, "series": name, "kind": kind} for a, name, kind in series],
    }
    paths["json"] = target / f"{label}.json"
    paths["json"].write_text(json.dumps(description, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths
