"""Every tolerance the book asserts, named once, with the reason for its size.

Notebooks and tests import these names; a comparison that fails says which tolerance it broke.
"""
from __future__ import annotations

__all__ = ["SYMBOLIC_ZERO", "FLOAT64_EXACT", "assert_within"]

#: Symbolic identities must simplify to exactly zero; this is only used for numeric spot checks
#: of sympy expressions evaluated at random points in float64.
SYMBOLIC_ZERO: float = 1e-12

#: Exact discrete recursions evaluated in float64 (relative error).
FLOAT64_EXACT: float = 1e-6


def assert_within(name: str, measured: float, tolerance: float) -> float:
    """Assert that a measured deviation is below its tolerance, with a message naming both.

    Returns the measured deviation so that a notebook can ``glue`` it.
    """
    if not (measured == measured):  # NaN never passes
        raise AssertionError(f"{name}: the measured deviation is NaN")
    if not measured <= tolerance:
        raise AssertionError(f"{name}: measured deviation {measured:.3e} exceeds the tolerance {tolerance:.1e}")
    print(f"{name}: deviation {measured:.3e} <= tolerance {tolerance:.1e}")
    return float(measured)
