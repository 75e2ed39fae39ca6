"""Recording Noether charges online during training (any ``torch.optim`` optimizer, any schedule, any precision).

* ``tracker``: :class:`NoetherTracker`, recording inside the optimizer's step hooks;
* ``optimizers``: which optimizers record (all) and which predictions exist for each;
* ``layout``: the per-unit reductions, in chunks;
* ``kernel``: the same reductions as one compiled CPU loop (used where a C compiler is found);
* ``records``: the charges table (:mod:`noether_lib.schema`), saving and loading it.
"""

from __future__ import annotations

from noether_lib.tracking.optimizers import (
    PREDICTIONS_BY_OPTIMIZER,
    SUPPORTED_SCHEDULERS,
    check_optimizer,
    optimizer_label,
)
from noether_lib.tracking.records import load_tracking
from noether_lib.tracking.tracker import NoetherTracker, unwrap_model

__all__ = [
    "NoetherTracker",
    "PREDICTIONS_BY_OPTIMIZER",
    "SUPPORTED_SCHEDULERS",
    "check_optimizer",
    "load_tracking",
    "optimizer_label",
    "unwrap_model",
]
