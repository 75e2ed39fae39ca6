"""Tests of noether_lib.noether.compare on recorded tables: both predictions where a symmetry is explicitly broken,
errors measured on the size of the weights, refusals that say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tracking import GROUPS, make_model, train, wide

from noether_lib import noether
from noether_lib.tolerances import FLOAT64_EXACT
from noether_lib.tracking import NoetherTracker


def recorded(eps: float, zero_bias: bool = False, **settings):
    model = make_model(eps=eps)
    if zero_bias:
        torch.nn.init.zeros_(model[5].bias)
    optimizer = torch.optim.SGD(model.parameters(), **{"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, **settings})
    tracker = NoetherTracker(model, optimizer, GROUPS)
    train(model, optimizer, 20)
    return tracker.table()


def test_a_broken_symmetry_shows_both_predictions():
    """Batch norm's eps = 1e-3 breaks the scale symmetry: the symmetric recursion misses, the one with the
    recorded gamma = <xi, g> holds; the two columns sit side by side."""
    errors = noether.prediction_errors(noether.predict_charges(recorded(eps=1e-3))).set_index("group")
    broken, symmetric = errors.loc["layer 0", "exact_broken"], errors.loc["layer 0", "exact"]
    assert broken <= FLOAT64_EXACT < symmetric
    exact = noether.prediction_errors(noether.predict_charges(recorded(eps=1e-12))).set_index("group")
    assert exact.loc["layer 0", "exact"] <= FLOAT64_EXACT  # the control: with eps -> 0 the symmetric one holds


def test_translation_errors_are_measured_on_the_weights():
    """A zero-initialised bias has a charge near zero: measured against |C| its round-off looks like a large error,
    against the size of the weights (sqrt(norm_sq)) it is round-off."""
    predicted = noether.predict_charges(recorded(eps=1e-12, zero_bias=True))
    error = noether.prediction_errors(predicted).set_index("group").loc["logits", "exact"]
    charge, exact = wide(predicted, "logits", "charge"), wide(predicted, "logits", "exact")
    against_charge = float(noether.relative_error(charge, exact).max())
    assert error <= FLOAT64_EXACT < against_charge


def test_refusals_name_the_reason():
    table = recorded(eps=1e-12)
    with pytest.raises(ValueError, match="unknown predictions"):
        noether.predict_charges(table, predictions=("exactly",))
    with pytest.raises(ValueError, match="lacks the columns"):
        noether.predict_charges(table.drop(columns=["lr"]))
    only = noether.predict_charges(table, predictions=("exact",))
    assert "modified" not in only.columns and np.isfinite(only["exact"]).all()
    assert noether.predict_charges(table).attrs["refused"] == {}
