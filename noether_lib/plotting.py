"""One figure style for the whole book, and a helper that exports each figure for reuse and citation.

Nothing here runs at import time: call :func:`use_book_style` before plotting.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["PALETTE", "use_book_style", "new_figure", "figure_dir", "export_figure"]

#: A colour-blind-safe palette (Okabe--Ito); every figure draws its colours from it in order.
PALETTE: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
)

_WIDTHS = {"single": 3.4, "wide": 5.6, "double": 7.0}
EXPORT_FORMATS: tuple[str, ...] = ("pdf", "svg", "png")


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
            "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
            "lines.linewidth": 1.5,
            "svg.hashsalt": "noether-book",
            "pdf.fonttype": 42,
        }
    )


def new_figure(
    ncols: int = 1, nrows: int = 1, *, width: Literal["single", "wide", "double"] = "wide", aspect: float = 0.62, **kwargs
) -> tuple[Figure, object]:
    """Create a figure with the book's sizes; returns ``(figure, axes)`` like :func:`matplotlib.pyplot.subplots`."""
    if width not in _WIDTHS:
        raise ValueError(f"width must be one of {sorted(_WIDTHS)}, got {width!r}")
    w = _WIDTHS[width]
    h = w * aspect * nrows / max(ncols, 1) if ncols > 1 else w * aspect * nrows
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(w, max(h, 1.8)), **kwargs)


def figure_dir() -> Path:
    """Where exported figures go.

    ``$NOETHER_BOOK_FIGURES`` if set; otherwise ``book/_static/figures`` of the repository checkout
    the library is installed from (served by the built book); otherwise ``./figures``.
    """
    override = os.environ.get("NOETHER_BOOK_FIGURES")
    if override:
        return Path(override)
    repo = Path(__file__).resolve().parents[1]
    if (repo / "_toc.yml").is_file() and (repo / "book").is_dir():
        return repo / "book" / "_static" / "figures"
    return Path.cwd() / "figures"


def export_figure(fig: Figure, label: str, directory: Path | None = None) -> dict[str, Path]:
    """Write ``fig`` as PDF, SVG and PNG named after its book label (e.g. ``fig-ch1-order``).

    Returns the written paths by format. The label must be the figure's ``fig-...`` label so that
    readers can cite and re-use the figure under a stable name.
    """
    if not label.startswith("fig-") or any(c in label for c in " /\\"):
        raise ValueError(f"label must look like 'fig-chapter-name' (no spaces or slashes), got {label!r}")
    target = Path(directory) if directory is not None else figure_dir()
    target.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt in EXPORT_FORMATS:
        path = target / f"{label}.{fmt}"
        metadata = {"Creator": "noether-book"} if fmt in ("pdf", "svg") else None
        fig.savefig(path, format=fmt, metadata=metadata)
        paths[fmt] = path
    return paths
