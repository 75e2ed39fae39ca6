"""The charges table: the one definition of the columns that the tracker writes and everything else reads.

:class:`noether_lib.tracking.NoetherTracker` writes it (:meth:`~noether_lib.tracking.NoetherTracker.table`), the
predictions of :mod:`noether_lib.noether` read and extend it, the experiment runner stores it and the notebooks plot
it. One row per (recorded step, symmetry group, unit). Row ``step = n`` holds the charge after ``n`` updates and the
records of the step(s) since the previous row; step 0 holds the initial charge, its step columns are NaN.

The two squared quantities are *signed*: :math:`\\langle g,Jg\\rangle` with :math:`J` the generator's signature
(+1 on every member of a scale group, +1/-1 on the two sides of a rescale group), so they can be negative.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "CHARGES_COLUMNS", "HYPERPARAMETER_COLUMNS", "column_names", "describe", "check_columns"]


@dataclass(frozen=True)
class Column:
    """One column of the charges table: its name, its unit of measurement and what it means."""

    name: str
    unit: str
    meaning: str


#: Every column of the charges table, in the order the tracker writes them.
CHARGES_COLUMNS: tuple[Column, ...] = (
    Column("step", "updates", "number of optimizer updates taken when the row was recorded"),
    Column("time", "learning-rate units", "training time t = sum of the learning rates of the steps taken"),
    Column("group", "-", "name of the symmetry group"),
    Column("kind", "-", "kind of symmetry: translation, scale or rescale"),
    Column("unit", "-", "index of the unit (filter, neuron) inside the group"),
    Column("charge", "weight²", "C_n: the gradient-flow invariant of the unit (sum for translations, ⟨q,Jq⟩ else)"),
    Column("norm_sq", "weight²", "the unit's unsigned squared norm, summed over its members"),
    Column("decay_charge", "weight²", "K_n = Σ_m k_m C_m: the charge weighted by each member's weight decay"),
    Column("update_signed_sq", "weight²", "U = ⟨u,Ju⟩ of the update u = q_n - q_(n-1), summed over the steps"),
    Column("projected_update", "weight²", "P = ⟨ξ(q_(n-1)), u⟩: the discrete Noether charge of the last step"),
    Column("grad_signed_sq", "gradient²", "⟨g,Jg⟩ of the loss gradient, summed over the steps since the last row"),
    Column("grad_proj", "weight·gradient", "γ = ⟨ξ(q_(n-1)), g⟩: zero when the symmetry holds exactly"),
    Column("update_momentum", "weight²", "R = ⟨Ju, b⟩ with b SGD's momentum buffer after the step (Nesterov only)"),
    Column("lr", "-", "learning rate of the last step (NaN: the unit's members have different ones)"),
    Column("steps", "updates", "number of updates since the previous row"),
    Column("momentum", "-", "β of the unit's parameter group(s) (NaN: not SGD, or members differ)"),
    Column("dampening", "-", "δ of the unit's parameter group(s) (NaN: not SGD, or members differ)"),
    Column("weight_decay", "-", "k of the unit's parameter group(s) (NaN: members differ; see decay_charge)"),
    Column("nesterov", "-", "whether SGD used Nesterov momentum"),
    Column("optimizer", "-", "the optimizer: SGD (minimising), SGD(maximize), or the class name (Adam, AdamW, ...)"),
    Column("dtype", "-", "the lowest precision among the unit's weights (float32, bfloat16, ...)"),
)

#: The optimizer's hyperparameter columns.
HYPERPARAMETER_COLUMNS: tuple[str, ...] = ("momentum", "dampening", "weight_decay")


def column_names() -> list[str]:
    """The names of :data:`CHARGES_COLUMNS`, in order."""
    return [c.name for c in CHARGES_COLUMNS]


def describe(name: str) -> Column:
    """The :class:`Column` called ``name``; :class:`KeyError` naming the known columns otherwise."""
    for column in CHARGES_COLUMNS:
        if column.name == name:
            return column
    raise KeyError(f"no charges-table column {name!r}; the columns are {column_names()}")


def check_columns(columns: object, required: set[str] | None = None) -> None:
    """Raise :class:`ValueError` naming the missing columns unless ``columns`` holds ``required`` (default: all)."""
    required = set(column_names()) if required is None else required
    missing = required - set(columns)  # type: ignore[call-overload]
    if missing:
        raise ValueError(f"the charges table lacks the columns {sorted(missing)}")
