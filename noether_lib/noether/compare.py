"""The predictions applied to a tracker's table, and their errors against the measured charges.

:func:`predict_charges` adds one column per prediction that exists for the run the table records and says why the
others do not (``table.attrs["refused"]``); :func:`prediction_errors` measures each against the size of the
weights.

Which predictions exist for which run (``PREDICTIONS``):

* ``identity`` (:func:`~noether_lib.noether.discrete.charge_identity`): every optimizer and precision;
* ``exact`` (the symmetric recursion, :math:`\\gamma=0`) and ``exact_broken`` (with the recorded
  :math:`\\gamma`, for a symmetry explicitly broken, e.g. by batch norm's :math:`\\epsilon`): ``torch.optim.SGD``,
  heavy ball or Nesterov, any schedule, per-member weight decay, float32/float64 weights (with bfloat16 or float16
  weights the stored weights are rounded every step and the buffer recursion no longer describes them);
* ``modified``, ``overdamped``: SGD heavy ball with one momentum, dampening and weight decay per group and a
  piecewise-constant learning rate;
* ``gradient_flow``: SGD with one momentum, dampening and weight decay per group, any schedule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from noether_lib.noether.coefficients import KINDS, Kind, check_schedule
from noether_lib.noether.continuous import gradient_flow_charge, modified_equation_charge
from noether_lib.noether.discrete import charge_identity, exact_charge
from noether_lib.schema import check_columns

__all__ = ["PREDICTIONS", "relative_error", "predict_charges", "prediction_errors"]

#: Every prediction :func:`predict_charges` may add, in order.
PREDICTIONS = ("identity", "exact", "exact_broken", "modified", "overdamped", "gradient_flow")
_FULL_PRECISION = ("float32", "float64")
_REQUIRED = {
    "step",
    "group",
    "kind",
    "unit",
    "charge",
    "update_signed_sq",
    "projected_update",
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
}


def relative_error(measured: np.ndarray, predicted: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Per-unit error :math:`\\max_n|\\hat C_n-C_n|/\\max_n s_n` of arrays of shape ``(steps + 1, units)``.

    The scale :math:`s` defaults to :math:`|C|`. A rescale charge is a difference of two squared norms that may
    nearly cancel: pass the tracker's ``norm_sq`` (their sum) as ``scale`` to measure the error on the size of
    the quantities it is made of; a translation charge (a sum of weights, zero for a zero-initialised bias) is
    measured against :math:`\\sqrt{\\text{norm\\_sq}}` (:func:`prediction_errors` does both).
    """
    measured, predicted = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if measured.shape != predicted.shape:
        raise ValueError(f"shapes differ: {measured.shape} and {predicted.shape}")
    scale = np.abs(measured if scale is None else np.asarray(scale, dtype=np.float64)).max(axis=0)
    if np.any(scale == 0):
        raise ValueError("a unit's charge is zero throughout: its relative error is undefined")
    return np.abs(predicted - measured).max(axis=0) / scale


def _first(rows: pd.DataFrame, column: str, default: object) -> object:
    return rows[column].iloc[0] if column in rows.columns else default


def _refusals(rows: pd.DataFrame, wide: dict[str, np.ndarray]) -> dict[str, str]:
    """Why each prediction does not exist for this group's record (empty: all exist)."""
    refused: dict[str, str] = {}
    optimizer = str(_first(rows, "optimizer", "SGD"))
    dtype = str(_first(rows, "dtype", "float64"))
    nesterov = bool(_first(rows, "nesterov", False))
    lr, beta, delta, k = (wide[c][1:, 0] for c in ("lr", "momentum", "dampening", "weight_decay"))
    sgd = []
    if optimizer != "SGD":
        sgd.append(
            f"the run used {optimizer}: the recursion and the modified equation model torch.optim.SGD "
            "(the identity holds for every optimizer)"
        )
    if dtype not in _FULL_PRECISION:
        sgd.append(
            f"the weights are stored in {dtype}, rounded at every step, so the SGD recursion does not "
            "describe them (the identity holds: the tracker measures the rounded updates)"
        )
    if not np.all(np.isfinite(lr)):
        sgd.append(
            "the members of a unit are trained with different learning rates: the charge is then not "
            "the gradient-flow invariant (sum_m C_m / lr_m is)"
        )
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(delta))):
        sgd.append("the members of a unit have different momentum, dampening or nesterov settings")
    if "nesterov" in rows.columns and rows["nesterov"].nunique() > 1:
        sgd.append("nesterov is switched during the run: each recursion models one of the two rules")
    if "grad_signed_sq" in rows.columns and not np.all(np.isfinite(rows.loc[rows["step"] > 0, "grad_signed_sq"])):
        sgd.append(
            "a member had no gradient at some step (grad is None), so torch.optim.SGD skipped it: no weight decay, "
            "no momentum, which the recursions assume; use optimizer.zero_grad(set_to_none=False) for such members"
        )
    started = np.flatnonzero(beta > 0)
    if started.size and np.any(beta[started[0] :] == 0) or (started.size and started[0] > 0):
        sgd.append(
            "momentum is switched on (or off and on again) during the run: torch.optim.SGD then starts a new "
            "momentum buffer or reuses a stale one, which the recursions do not follow"
        )
    if sgd:
        for name in PREDICTIONS[1:]:
            refused[name] = "; ".join(sgd)
        return refused
    if nesterov and rows["kind"].iloc[0] != "translation" and not np.all(np.isfinite(wide["update_momentum"][1:])):
        refused["exact"] = refused["exact_broken"] = "Nesterov's recursion needs the recorded update_momentum"
    continuous = []
    if not np.all(np.isfinite(k)) or np.any(k != k[0]):
        continuous.append(
            "members have different (or changing) weight decay; the exact recursions use the recorded decay_charge"
        )
    if np.any(beta != beta[0]) or np.any(delta != delta[0]):
        continuous.append("the momentum or dampening changes during the run")
    if continuous:
        refused["gradient_flow"] = "; ".join(continuous)
    if nesterov:
        continuous.append("Nesterov momentum has another modified equation than Eq. 3")
    try:
        check_schedule(lr)
    except ValueError as error:
        continuous.append(str(error))
    if continuous:
        refused["modified"] = refused["overdamped"] = "; ".join(continuous)
    return refused


def _group_predictions(
    kind: Kind, wide: dict[str, np.ndarray], refused: dict[str, str], nesterov: bool
) -> dict[str, np.ndarray]:
    c0, u, p = wide["charge"][0], wide["update_signed_sq"][1:], wide["projected_update"][1:]
    out = {"identity": charge_identity(kind, c0, p, u if kind != "translation" else None)}
    if "exact" in refused and "gradient_flow" in refused:
        return out
    lr, beta, delta, k = (wide[c][1:, 0] for c in ("lr", "momentum", "dampening", "weight_decay"))
    uniform = np.all(np.isfinite(k)) and np.all(k == k[0])
    decay = None if uniform else wide["decay_charge"][:-1]
    common = dict(
        update_signed_sq=u,
        first_projected_update=p[0],
        momentum=beta,
        dampening=delta,
        weight_decay=float(k[0]) if uniform else 0.0,
        decay_charge=decay,
        nesterov=nesterov,
        update_momentum=wide["update_momentum"][1:] if nesterov else None,
    )
    if "exact" not in refused:
        out["exact"] = exact_charge(kind, c0, lr, **common)
        out["exact_broken"] = exact_charge(kind, c0, lr, grad_proj=wide["grad_proj"][1:], **common)
    settings = dict(momentum=float(beta[0]), dampening=float(delta[0]), weight_decay=float(k[0]))
    if "modified" not in refused:
        for name, overdamped in (("modified", False), ("overdamped", True)):
            out[name] = modified_equation_charge(
                kind, c0, lr, update_signed_sq=u, first_projected_update=p[0], overdamped=overdamped, **settings
            )
    if "gradient_flow" not in refused:
        out["gradient_flow"] = gradient_flow_charge(kind, c0, lr, **settings)
    return out


def predict_charges(table: pd.DataFrame, predictions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Add the predictions of ``PREDICTIONS`` that exist for the recorded run to a tracker's table.

    ``table`` is :meth:`noether_lib.tracking.NoetherTracker.table` recorded every step: per group and unit, row
    ``step = n`` holds :math:`C_n` (``charge``) and the records of the step :math:`n-1\\to n`. Each prediction starts
    from the measured :math:`C_0` and uses only the realised update norms (stochasticity is not modelled).
    A prediction that does not exist for a group is NaN there, and ``result.attrs["refused"]`` maps it to
    ``{group: reason}``; naming it in ``predictions`` turns the refusal into a :class:`ValueError`.
    """
    check_columns(table.columns, _REQUIRED)
    unknown = set(predictions or ()) - set(PREDICTIONS)
    if unknown:
        raise ValueError(f"unknown predictions {sorted(unknown)}; choose from {PREDICTIONS}")
    if "steps" in table.columns and (table["steps"].dropna() != 1).any():
        raise ValueError("predictions need a record of every step (a tracker with every=1)")
    columns = [
        "charge",
        "update_signed_sq",
        "projected_update",
        "grad_proj",
        "decay_charge",
        "update_momentum",
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
    ]
    pieces: list[pd.DataFrame] = []
    refused_all: dict[str, dict[str, str]] = {}
    for name, rows in table.groupby("group", sort=False):
        wide = {
            c: rows.pivot(index="step", columns="unit", values=c).sort_index().to_numpy()
            if c in rows.columns
            else np.full((rows["step"].nunique(), rows["unit"].nunique()), np.nan)
            for c in columns
        }
        steps = np.sort(rows["step"].unique())
        if steps[0] != 0 or np.any(np.diff(steps) != 1) or len(steps) < 2:
            raise ValueError(f"group {name!r}: predictions need consecutive steps starting at 0 (at least one step)")
        if "grad_proj" not in rows.columns:
            wide["grad_proj"] = np.zeros_like(wide["charge"])
        refused = _refusals(rows, wide)
        for prediction, reason in refused.items():
            if predictions is not None and prediction in predictions:
                raise ValueError(f"group {name!r}: no {prediction} prediction: {reason}")
            refused_all.setdefault(prediction, {})[name] = reason
        kind: Kind = rows["kind"].iloc[0]
        if kind not in KINDS:
            raise ValueError(f"group {name!r}: no predictions for kind {kind!r}")
        result = _group_predictions(kind, wide, refused, bool(_first(rows, "nesterov", False)))
        chosen = [c for c in PREDICTIONS if predictions is None or c in predictions]
        units = rows.pivot(index="step", columns="unit", values="charge").columns
        index = pd.MultiIndex.from_product([steps, units], names=["step", "unit"])
        nan = np.full((len(steps), len(units)), np.nan)
        frame = pd.DataFrame({c: result.get(c, nan).reshape(-1) for c in chosen}, index=index).reset_index()
        pieces.append(rows.merge(frame, on=["step", "unit"], how="left"))
    out = pd.concat(pieces, ignore_index=True)
    out.attrs["refused"] = refused_all
    return out


def prediction_errors(predicted: pd.DataFrame) -> pd.DataFrame:
    """Largest per-unit :func:`relative_error` of each prediction of :func:`predict_charges`, one row per group.

    Each error is measured against the size of the weights the charge is made of: the unit's ``norm_sq`` for
    scale and rescale (a rescale charge is a difference that may nearly cancel), :math:`\\sqrt{\\text{norm\\_sq}}`
    for translation (the charge is a sum of weights, which is near zero for a zero-initialised bias). Columns:
    ``group``, ``kind`` and one per prediction present (NaN where it was refused).
    """
    present = [c for c in PREDICTIONS if c in predicted.columns]
    rows = []
    for name, group in predicted.groupby("group", sort=False):
        wide = {
            c: group.pivot(index="step", columns="unit", values=c).to_numpy() for c in ("charge", "norm_sq", *present)
        }
        kind = group["kind"].iloc[0]
        scale = np.sqrt(wide["norm_sq"]) if kind == "translation" else wide["norm_sq"]
        errors = {}
        for c in present:
            errors[c] = (
                np.nan if np.isnan(wide[c]).all() else float(relative_error(wide["charge"], wide[c], scale).max())
            )
        rows.append({"group": name, "kind": kind, **errors})
    return pd.DataFrame(rows)
