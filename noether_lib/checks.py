"""How the book asserts an agreement: the measured deviation, its tolerance, and the control that tolerance rejects.

Every agreement the book asserts sits next to a *control*: the same comparison on a case that must fail (the
symmetry removed, the wrong model, a constant in place of the adaptive quantity). :func:`assert_discriminates`
checks both sides at once, prints both numbers and, inside a notebook, glues them for the prose, so one call
replaces the assertion, the print and the ``glue`` lines. :func:`assert_within` is the one-sided form for
identities asserted at round-off, and :func:`glue_number` glues a number that is reported, not asserted.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["assert_discriminates", "assert_within", "glue_number"]


def glue_number(name: str, value: Any) -> Any:
    """Glue ``value`` under ``name`` for ``{glue:text}`` in the page (without displaying it); returns ``value``.

    Outside a Jupyter kernel (tests, scripts) nothing is glued and the value is returned unchanged. A numpy scalar
    is glued as the Python number it holds, so that ``{glue:text}`name:.3g``` can format it.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with every notebook environment
        return value
    if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
        return value
    from myst_nb import glue

    glue(name, value, display=False)
    return value


def _finite_number(name: str, what: str, value: float) -> float:
    value = float(value)
    if math.isnan(value):
        raise AssertionError(f"{name}: the {what} is NaN")
    return value


def assert_within(name: str, measured: float, tolerance: float, *, glue: str | None = None) -> float:
    """Assert that a measured deviation is at most ``tolerance``, with a message naming both; print it.

    Use it alone only for identities (exact recursions at round-off); an agreement between a theory and an
    experiment goes through :func:`assert_discriminates` with its control. With ``glue`` the deviation is glued
    under that name. Returns the deviation.
    """
    measured = _finite_number(name, "measured deviation", measured)
    if not measured <= tolerance:
        raise AssertionError(f"{name}: measured deviation {measured:.3e} exceeds the tolerance {tolerance:.1e}")
    print(f"{name}: deviation {measured:.3e} <= tolerance {tolerance:.1e}")
    if glue is not None:
        glue_number(glue, measured)
    return measured


def assert_discriminates(
    name: str, agreement: float, control: float, tolerance: float, *, glue: str | None = None
) -> tuple[float, float]:
    """Assert ``agreement <= tolerance < control``: the check passes, and the same tolerance rejects the control.

    ``agreement`` is the deviation of the comparison the book asserts; ``control`` the deviation of the same
    comparison on a case that must fail. Prints both; with ``glue`` glues them as ``glue`` and ``glue + "_control"``.
    Returns ``(agreement, control)``.
    """
    agreement = _finite_number(name, "measured deviation", agreement)
    control = _finite_number(name, "control's deviation", control)
    if not agreement <= tolerance:
        raise AssertionError(f"{name}: measured deviation {agreement:.3e} exceeds the tolerance {tolerance:.1e}")
    if not control > tolerance:
        raise AssertionError(
            f"{name}: the control's deviation {control:.3e} is within the tolerance {tolerance:.1e}, "
            "so this check cannot tell the two cases apart"
        )
    print(f"{name}: deviation {agreement:.3e} <= tolerance {tolerance:.1e} < control's deviation {control:.3e}")
    if glue is not None:
        glue_number(glue, agreement)
        glue_number(glue + "_control", control)
    return agreement, control
