"""The runner's interface to chapters 2--4: symmetry discovery, the x10 initial scaling, the filter-norm
constraint and the charge recorder, behind two small protocols.

* :func:`discover` finds the model's symmetry groups (:func:`noether_lib.symmetry.find_symmetries`).
* :func:`scale_initial_filters` is :func:`noether_lib.symmetry.scale_filter_norms`.
* :func:`make_constraint` returns an object with ``apply()`` (called after every optimiser step).
* :func:`make_recorder` returns a :class:`Recorder`: ``step()`` after every optimiser step, ``table()``, and
  ``state_dict()`` / ``load_state_dict()`` so that a resumed run continues the record exactly.
"""
from __future__ import annotations

import copy
from typing import Any, Protocol

import pandas as pd
import torch

from noether_lib.normalization import FilterNormConstraint
from noether_lib.symmetry import SymmetryGroup, find_symmetries, scale_filter_norms
from noether_lib.tracking import NoetherTracker

__all__ = ["Constraint", "Recorder", "discover", "scale_initial_filters", "make_constraint", "make_recorder",
           "TrackerRecorder"]


class Constraint(Protocol):
    """Something applied to the parameters after every optimiser step."""

    def apply(self) -> None: ...


class Recorder(Protocol):
    """An online recorder of charges."""

    def step(self) -> None: ...

    def table(self) -> pd.DataFrame: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def discover(model: torch.nn.Module, example_input: torch.Tensor) -> list[SymmetryGroup]:
    """The symmetry groups of ``model``, found on a copy (discovery runs the model; the original is untouched)."""
    return find_symmetries(copy.deepcopy(model), example_input)


def scale_initial_filters(model: torch.nn.Module, groups: list[SymmetryGroup], factor: float) -> None:
    """Multiply every scale-invariant filter by ``factor`` (the paper's x10 initialisation)."""
    if factor != 1.0:
        scale_filter_norms(model, groups, factor)


class TrackerRecorder:
    """:class:`noether_lib.tracking.NoetherTracker` behind the runner's recorder interface; its
    :meth:`~noether_lib.tracking.NoetherTracker.state_dict` makes a resumed run continue its record."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, groups: list[SymmetryGroup],
                 every: int) -> None:
        self.tracker = NoetherTracker(model, optimizer, groups, every=every)

    def step(self) -> None:
        """Record the optimiser step just taken."""
        self.tracker.step()

    def table(self) -> pd.DataFrame:
        """The tracker's tidy table (:meth:`~noether_lib.tracking.NoetherTracker.table`)."""
        return self.tracker.table()

    def state_dict(self) -> dict[str, Any]:
        """A copy of the record so far."""
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved record."""
        self.tracker.load_state_dict(state)


def make_constraint(model: torch.nn.Module, groups: list[SymmetryGroup]) -> Constraint:
    """The paper's constrained filter norms: after each step, project every scale-invariant filter back to the norm
    it has now (its initial norm, when called at initialisation)."""
    return FilterNormConstraint(model, [g for g in groups if g.kind == "scale"])


def make_recorder(model: torch.nn.Module, optimizer: torch.optim.Optimizer, groups: list[SymmetryGroup],
                  every: int) -> Recorder:
    """The charge recorder of a run: the chapter-3 tracker, resumable."""
    return TrackerRecorder(model, optimizer, groups, every)
