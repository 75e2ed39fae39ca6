"""Typed, serialisable experiment configurations and their sweeps (the presets: :mod:`~noether_lib.experiments.presets`).

A configuration describes one training run completely; :func:`config_hash` identifies it (the runner adds the
fingerprints of the code, torch and the data, :mod:`~noether_lib.experiments.keys`). A :class:`Sweep` expands a base
configuration into a grid of runs (times seeds).

Every mistake in a configuration raises :class:`ConfigError`, whose one-line message names the field and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.models import VGG_CONFIGS

__all__ = [
    "DatasetName",
    "Precision",
    "ConfigError",
    "ExperimentConfig",
    "Sweep",
    "parse_overrides",
    "apply_overrides",
    "config_hash",
    "RESULT_NEUTRAL_FIELDS",
]

DatasetName = Literal["digits", "cifar10", "tiny-imagenet", "synthetic"]
Precision = Literal["fp32", "bf16"]

#: Fields that do not change a run's results; they are left out of :func:`config_hash`, so that two sweeps that
#: share a configuration under different names share its run (the data's content is keyed separately).
RESULT_NEUTRAL_FIELDS: frozenset[str] = frozenset({"name", "data_dir", "checkpoint_every"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


class ConfigError(ValueError):
    """A configuration field with a value it cannot take; the message is one line naming both."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: data, model, optimiser (SGD with heavy-ball momentum and weight decay), interventions.

    Attributes:
        name: a label for the run (part of its folder name: letters, digits and ``._+=-``, no path separators).
        dataset: ``"digits"`` (scikit-learn, 8 x 8), ``"cifar10"`` (32 x 32), ``"tiny-imagenet"`` (64 x 64) or
            ``"synthetic"`` (random images of ``image_size`` with ``synthetic_examples`` training examples).
        data_dir: folder holding CIFAR-10 or Tiny ImageNet in their published layouts.
        augment: random crops (4-pixel zero padding) and horizontal flips of the training images.
        model: a :data:`~noether_lib.models.VGG_CONFIGS` key; the network is :class:`~noether_lib.models.VGG`.
        width: channel multiplier of the VGG.
        batch_norm: batch norm after every convolution (this makes the conv filters scale-invariant).
        conv_bias: give the convolutions a bias.
        epochs: passes over the training set; the last incomplete batch of each pass is dropped.
        batch_size: global batch size (split evenly over processes under DDP and over ``micro_batches``).
        micro_batches: gradient accumulation; batch norm statistics are computed per micro-batch, exactly as in
            a DDP run with that many processes.
        lr: learning rate :math:`\\eta`.
        momentum: heavy-ball momentum :math:`\\beta` (PyTorch's convention, no dampening).
        weight_decay: weight decay :math:`k`.
        lr_drops: fractions of the run, in (0, 1), after which the learning rate is multiplied by
            ``lr_drop_factor`` (step drops at step ``round(fraction x total steps)``; any run length works).
        lr_drop_factor: the factor of each drop.
        init_scale: multiply every scale-invariant filter (conv feeding batch norm) by this at initialisation
            (the paper's x10 experiment).
        constrain_filter_norms: after every step, project each scale-invariant filter back to its initial norm
            (the paper's "constrained filter norm").
        track_charges: record the Noether charges of every symmetry group during training.
        track_every: record the charges every this many steps.
        track_units: keep the per-unit charges of the first this many units of every group (0: every unit); the
            per-layer sums over all units are always kept.
        eval_every: evaluate on the test set every this many epochs (and always after the last).
        checkpoint_every: save a checkpoint every this many steps (0: never).
        max_loss_factor: stop as diverged when the training loss exceeds this multiple of the first step's loss
            (or is not finite).
        precision: ``"fp32"``, or ``"bf16"`` autocast (mixed precision) for the forward pass.
        sync_batch_norm: under DDP on GPUs, compute batch norm statistics over the global batch.
        seed: seeds the initialisation, the data order and the augmentation.
    """

    name: str = "run"
    dataset: DatasetName = "digits"
    data_dir: str | None = None
    augment: bool = False
    image_size: int = 64
    synthetic_examples: int = 2048
    model: str = "tiny"
    width: float = 1.0
    batch_norm: bool = True
    conv_bias: bool = True
    epochs: int = 10
    batch_size: int = 64
    micro_batches: int = 1
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_drops: tuple[float, ...] = ()
    lr_drop_factor: float = 0.1
    init_scale: float = 1.0
    constrain_filter_norms: bool = False
    track_charges: bool = True
    track_every: int = 1
    track_units: int = 0
    eval_every: int = 1
    checkpoint_every: int = 0
    max_loss_factor: float = 100.0
    precision: Precision = "fp32"
    sync_batch_norm: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _kind(f.name)
            if kind is bool and not isinstance(value, bool):
                raise ConfigError(f"{f.name}={value!r}: takes true or false")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{f.name}={value!r}: not an integer")
            if kind is float:
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise ConfigError(f"{f.name}={value!r}: not a finite number")
                object.__setattr__(self, f.name, float(value))
        drops = self.lr_drops
        if isinstance(drops, str) or not all(isinstance(d, int | float) and not isinstance(d, bool) for d in drops):
            raise ConfigError(f"lr_drops={drops!r}: not a list of fractions of the run")
        object.__setattr__(self, "lr_drops", tuple(float(d) for d in drops))
        checks = [
            (
                "name",
                isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None,
                "use letters, digits and ._+=- only (no path separators, not starting with a dot)",
            ),
            ("dataset", self.dataset in get_args(DatasetName), f"one of {get_args(DatasetName)}"),
            ("precision", self.precision in get_args(Precision), f"one of {get_args(Precision)}"),
            ("model", self.model in VGG_CONFIGS, f"one of {sorted(VGG_CONFIGS)}"),
            ("width", self.width > 0, "must be positive"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("micro_batches", self.micro_batches >= 1, "must be at least 1"),
            (
                "micro_batches",
                self.batch_size % max(self.micro_batches, 1) == 0,
                f"must divide batch_size={self.batch_size}",
            ),
            (
                "lr_drops",
                all(0 < d < 1 for d in self.lr_drops) and list(self.lr_drops) == sorted(set(self.lr_drops)),
                "must be increasing fractions of the run strictly between 0 and 1",
            ),
            ("lr_drop_factor", 0 < self.lr_drop_factor <= 1, "must lie in (0, 1]"),
            ("init_scale", self.init_scale > 0, "must be positive"),
            ("track_every", self.track_every >= 1, "must be at least 1"),
            ("track_units", self.track_units >= 0, "must be non-negative (0: every unit)"),
            ("eval_every", self.eval_every >= 1, "must be at least 1"),
            ("checkpoint_every", self.checkpoint_every >= 0, "must be non-negative"),
            ("max_loss_factor", self.max_loss_factor > 1, "must exceed 1"),
            ("image_size", self.image_size >= 8, "must be at least 8"),
            ("synthetic_examples", self.synthetic_examples >= 1, "must be at least 1"),
            ("seed", self.seed >= 0, "must be a non-negative integer"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {reason}")
        for name in ("lr", "momentum", "weight_decay"):
            try:
                check_hyperparameters(**{name: getattr(self, name)} | ({} if name == "lr" else {"lr": 1.0}))
            except ValueError as error:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        out = dataclasses.asdict(self)
        out["lr_drops"] = list(self.lr_drops)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExperimentConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        _check_known(values)
        values = dict(values)
        if isinstance(values.get("lr_drops"), list):
            values["lr_drops"] = tuple(values["lr_drops"])
        return cls(**values)

    def drop_steps(self, total_steps: int) -> list[int]:
        """The steps after which the learning rate drops, for a run of ``total_steps``."""
        return [max(1, round(d * total_steps)) for d in self.lr_drops]


_KINDS = {f.name: f.type for f in fields(ExperimentConfig)}


def _kind(name: str) -> type | None:
    return {"bool": bool, "int": int, "float": float}.get(str(_KINDS[name]))


def _check_known(values: Iterable[str]) -> None:
    unknown = sorted(set(values) - set(_KINDS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown configuration field; known fields are {sorted(_KINDS)}")


def config_hash(config: ExperimentConfig, *, without: Iterable[str] = ()) -> str:
    """A stable hash of everything in ``config`` that affects the results (all but :data:`RESULT_NEUTRAL_FIELDS`
    and ``without``; ``without=("seed",)`` identifies the replicates of a configuration)."""
    skip = RESULT_NEUTRAL_FIELDS | set(without)
    values = {k: v for k, v in config.to_dict().items() if k not in skip}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _parse_value(name: str, text: str) -> Any:
    kind, raw = _kind(name), text.strip()
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if name == "lr_drops":
            return tuple(float(v) for v in raw.replace(",", " ").split())
        if name == "data_dir":
            return None if raw.lower() in ("", "none") else raw
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        what = (
            {bool: "true or false", int: "an integer", float: "a number"}[kind] if kind else "fractions, e.g. 0.5,0.8"
        )
        raise ConfigError(f"{name}={text}: not {what}") from None
    return raw


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Fields to replace, from ``{"lr": 0.03}`` or from strings ``"lr=0.03"`` (``lr_drops=0.5,0.8``; booleans
    ``true``/``false``); unknown fields and unreadable values raise :class:`ConfigError`."""
    if isinstance(overrides, Mapping):
        changes = dict(overrides)
    else:
        changes = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"{item}: an override looks like name=value")
            key, text = (s.strip() for s in item.split("=", 1))
            _check_known([key])
            if key in changes:
                raise ConfigError(f"{key}={text}: given twice")
            changes[key] = _parse_value(key, text)
    _check_known(changes)
    return changes


def apply_overrides(config: ExperimentConfig, overrides: Iterable[str] | Mapping[str, Any]) -> ExperimentConfig:
    """A copy of ``config`` with the fields of :func:`parse_overrides` replaced (and validated)."""
    return replace(config, **parse_overrides(overrides))


_SHORT = {"lr": "lr", "momentum": "beta", "weight_decay": "k", "init_scale": "scale", "batch_size": "b"}


def _label(key: str, value: Any) -> str:
    if key == "constrain_filter_norms":
        return "constrained" if value else "free"
    return f"{_SHORT.get(key, key)}{value:g}" if isinstance(value, float) else f"{_SHORT.get(key, key)}{value}"


@dataclass(frozen=True)
class Sweep:
    """A grid of runs around a base configuration: ``fixed`` overrides, the product of ``grid``, times ``seeds``.

    With ``effective_lr`` the learning rate of each point is ``effective_lr * (1 - momentum)``, which holds the
    effective step :math:`\\eta/(1-\\beta)` fixed while the momentum varies.
    """

    name: str
    grid: Mapping[str, Sequence[Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    effective_lr: float | None = None

    def sets(self) -> set[str]:
        """The fields this sweep sets itself (an override of one of them would be ignored)."""
        return set(self.grid) | set(self.fixed) | {"seed"} | ({"lr"} if self.effective_lr is not None else set())

    def check_overrides(self, overrides: Mapping[str, Any]) -> None:
        """Refuse overrides of fields the sweep sets itself, with a one-line :class:`ConfigError`."""
        for key in sorted(set(overrides) & self.sets()):
            hint = "give the seeds with --seeds" if key == "seed" else "drop the override, or use run for one point"
            raise ConfigError(f"{key}={overrides[key]}: the sweep {self.name!r} sets {key} itself; {hint}")

    def configs(self, base: ExperimentConfig, *, seeds: Sequence[int] | None = None) -> list[ExperimentConfig]:
        """Every configuration of the sweep, named ``<base>-<sweep>-<values>-seed<s>``."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seeds if seeds is None else seeds:
                changes = dict(self.fixed) | dict(zip(keys, values)) | {"seed": int(seed)}
                if self.effective_lr is not None:
                    changes["lr"] = self.effective_lr * (1.0 - changes.get("momentum", base.momentum))
                label = "-".join(_label(k, v) for k, v in zip(keys, values))
                changes["name"] = f"{base.name}-{self.name}-{label}-seed{seed}"
                out.append(apply_overrides(base, changes))
        return out


def __getattr__(name: str) -> object:
    """The presets, which live in :mod:`noether_lib.experiments.presets`, under their former address here."""
    if name in ("Preset", "PRESETS", "get_preset"):
        from noether_lib.experiments import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
