"""Typed, serialisable experiment configurations, their sweeps, and the presets ``ci``, ``cifar10`` and ``paper``.

A configuration describes one training run completely; its hash (:func:`config_hash`) identifies the run's
results, so a finished run is never repeated, even when another sweep asks for it under another name. A
:class:`Sweep` expands a base configuration into a grid of runs (times
seeds); a :class:`Preset` bundles a base configuration with the sweeps of the paper's experiments (digest
sections 4--5: the x10 filter-norm scaling at initialisation of Fig. 1b of the draft and the three ablations of
its Fig. 3, v2's Fig. 4). Hyperparameters the paper does not state are the book's choices and each preset lists
them in its ``book_choices``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from noether_lib.models import VGG_CONFIGS

__all__ = [
    "DatasetName",
    "Precision",
    "ExperimentConfig",
    "Sweep",
    "Preset",
    "PRESETS",
    "get_preset",
    "apply_overrides",
    "config_hash",
    "RESULT_NEUTRAL_FIELDS",
]

DatasetName = Literal["digits", "cifar10", "tiny-imagenet", "synthetic"]
Precision = Literal["fp32", "bf16"]

#: Fields that do not change a run's results; they are left out of :func:`config_hash`, so that two sweeps that
#: share a configuration under different names share its run.
RESULT_NEUTRAL_FIELDS: frozenset[str] = frozenset({"name", "data_dir", "checkpoint_every"})


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: data, model, optimiser (SGD with heavy-ball momentum and weight decay), interventions.

    Attributes:
        name: a label for the run (part of its folder name).
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
        lr_drops: epochs at which the learning rate is multiplied by ``lr_drop_factor`` (step drops).
        lr_drop_factor: the factor of each drop.
        init_scale: multiply every scale-invariant filter (conv feeding batch norm) by this at initialisation
            (the paper's x10 experiment).
        constrain_filter_norms: after every step, project each scale-invariant filter back to its initial norm
            (the paper's "constrained filter norm").
        track_charges: record the Noether charges of every symmetry group during training.
        track_every: record the charges every this many steps.
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
    lr_drops: tuple[int, ...] = ()
    lr_drop_factor: float = 0.1
    init_scale: float = 1.0
    constrain_filter_norms: bool = False
    track_charges: bool = True
    track_every: int = 1
    eval_every: int = 1
    checkpoint_every: int = 0
    max_loss_factor: float = 100.0
    precision: Precision = "fp32"
    sync_batch_norm: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_drops", tuple(int(e) for e in self.lr_drops))
        checks = [
            (self.dataset in get_args(DatasetName), f"dataset must be one of {get_args(DatasetName)}"),
            (self.precision in get_args(Precision), f"precision must be one of {get_args(Precision)}"),
            (self.model in VGG_CONFIGS, f"model must be one of {sorted(VGG_CONFIGS)}"),
            (self.width > 0, "width must be positive"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.micro_batches >= 1, "micro_batches must be at least 1"),
            (self.batch_size % self.micro_batches == 0, "batch_size must be divisible by micro_batches"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.momentum < 1, "momentum must lie in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be non-negative"),
            (all(0 < e < self.epochs for e in self.lr_drops), "lr_drops must be epochs strictly between 0 and epochs"),
            (0 < self.lr_drop_factor <= 1, "lr_drop_factor must lie in (0, 1]"),
            (self.init_scale > 0, "init_scale must be positive"),
            (self.track_every >= 1, "track_every must be at least 1"),
            (self.eval_every >= 1, "eval_every must be at least 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be non-negative"),
            (self.max_loss_factor > 1, "max_loss_factor must exceed 1"),
            (self.image_size >= 8 and self.synthetic_examples >= 1, "image_size >= 8 and synthetic_examples >= 1"),
            (isinstance(self.seed, int) and self.seed >= 0, "seed must be a non-negative integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message} (config {self.name!r})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        out = dataclasses.asdict(self)
        out["lr_drops"] = list(self.lr_drops)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExperimentConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration fields {unknown}; known fields are {sorted(known)}")
        values = dict(values)
        if "lr_drops" in values:
            values["lr_drops"] = tuple(values["lr_drops"])
        return cls(**values)

    def lr_at_epoch(self, epoch: int) -> float:
        """The learning rate of a (zero-based) epoch under the step drops."""
        return self.lr * self.lr_drop_factor ** sum(epoch >= e for e in self.lr_drops)


def config_hash(config: ExperimentConfig) -> str:
    """A stable hash of everything in ``config`` that affects the results (all but :data:`RESULT_NEUTRAL_FIELDS`)."""
    values = {k: v for k, v in config.to_dict().items() if k not in RESULT_NEUTRAL_FIELDS}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _parse_value(name: str, text: str, current: Any) -> Any:
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} takes true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    if isinstance(current, tuple):
        return tuple(int(v) for v in text.replace(",", " ").split())
    if name == "data_dir":
        return None if text.lower() in ("", "none") else text
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    return text


def apply_overrides(config: ExperimentConfig, overrides: Iterable[str] | Mapping[str, Any]) -> ExperimentConfig:
    """A copy of ``config`` with fields replaced, from ``{"lr": 0.03}`` or from strings such as ``"lr=0.03"``
    (``lr_drops=15,25``; booleans ``true``/``false``)."""
    known = {f.name for f in fields(ExperimentConfig)}
    if isinstance(overrides, Mapping):
        changes = dict(overrides)
    else:
        changes = {}
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"an override looks like name=value, got {item!r}")
            key, text = item.split("=", 1)
            key = key.strip()
            if key not in known:
                raise ValueError(f"unknown configuration field {key!r}; known fields are {sorted(known)}")
            changes[key] = _parse_value(key, text, getattr(config, key))
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown configuration fields {unknown}; known fields are {sorted(known)}")
    return replace(config, **changes)


_SHORT = {"lr": "lr", "momentum": "beta", "weight_decay": "k", "init_scale": "scale", "batch_size": "b"}


def _label(key: str, value: Any) -> str:
    if key == "constrain_filter_norms":
        return "constrained" if value else "free"
    return f"{_SHORT.get(key, key)}{value:g}" if isinstance(value, float) else f"{_SHORT.get(key, key)}{value}"


@dataclass(frozen=True)
class Sweep:
    """A grid of runs around a base configuration: ``fixed`` overrides, the product of ``grid``, times ``seeds``."""

    name: str
    grid: Mapping[str, Sequence[Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    description: str = ""

    def configs(self, base: ExperimentConfig, *, seeds: Sequence[int] | None = None) -> list[ExperimentConfig]:
        """Every configuration of the sweep, named ``<base>-<sweep>-<values>-seed<s>``."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seeds if seeds is None else seeds:
                changes = dict(self.fixed) | dict(zip(keys, values)) | {"seed": int(seed)}
                label = "-".join(_label(k, v) for k, v in zip(keys, values))
                changes["name"] = f"{base.name}-{self.name}-{label}-seed{seed}"
                out.append(apply_overrides(base, changes))
        return out


@dataclass(frozen=True)
class Preset:
    """A base configuration, the sweeps of the paper's experiments, and the hyperparameters the book chose."""

    name: str
    description: str
    base: ExperimentConfig
    sweeps: tuple[Sweep, ...]
    book_choices: tuple[str, ...]

    def sweep(self, name: str) -> Sweep:
        """The sweep called ``name``."""
        for s in self.sweeps:
            if s.name == name:
                return s
        raise ValueError(f"preset {self.name!r} has no sweep {name!r}; it has {[s.name for s in self.sweeps]}")


def _paper_sweeps(
    lrs: Sequence[float], momenta: Sequence[float], decays: Sequence[float], drops: tuple[int, ...],
    seeds: tuple[int, ...], lr: float, decay: float,
) -> tuple[Sweep, ...]:
    both = (False, True)
    return (
        Sweep("init-scale", {"init_scale": (1.0, 10.0)}, {"lr": lr, "lr_drops": ()}, seeds,
              "conv filters x10 at initialisation: same initial loss, different trajectory (claim 17)"),
        Sweep("learning-rate", {"lr": tuple(lrs), "constrain_filter_norms": both},
              {"lr_drops": (), "momentum": 0.9, "weight_decay": decay}, seeds,
              "constant learning rates, constrained vs free filter norms (claims 18-19)"),
        Sweep("momentum", {"momentum": tuple(momenta), "constrain_filter_norms": both},
              {"lr": lr, "lr_drops": drops, "weight_decay": decay}, seeds,
              "momentum with step learning-rate drops, constrained vs free (claim 20)"),
        Sweep("weight-decay", {"weight_decay": tuple(decays), "constrain_filter_norms": both},
              {"lr": lr, "lr_drops": drops, "momentum": 0.9}, seeds,
              "weight decay, constrained vs free (claim 21)"),
    )


_COMMON_CHOICES = (
    "momentum 0.9 and weight decay 5e-4 wherever the swept quantity is another one",
    "the values of the weight-decay grid (the paper gives none; its theory quotes k ~ 1e-4)",
    "the epoch count, batch size, epochs of the learning-rate drops and their factor 0.1",
    "the seeds (the paper reports none) and the number of seeds",
    "random-crop and horizontal-flip augmentation, and per-channel standardisation",
    "the optimiser settings of the x10 initial-scaling run",
)

PRESETS: dict[str, Preset] = {
    "ci": Preset(
        name="ci",
        description="minutes on 2 CPU cores: a small VGG with batch norm on scikit-learn's 8x8 digits",
        base=ExperimentConfig(
            name="ci", dataset="digits", model="tiny", batch_norm=True, epochs=6, batch_size=64,
            lr=0.05, momentum=0.9, weight_decay=5e-4, track_every=1,
        ),
        sweeps=_paper_sweeps(
            lrs=(0.005, 0.05, 0.5), momenta=(0.0, 0.5, 0.9), decays=(0.0, 5e-4, 5e-3), drops=(4,),
            seeds=(0, 1, 2), lr=0.05, decay=5e-4,
        ),
        book_choices=_COMMON_CHOICES + ("the whole ci preset: a CPU-sized proxy, not the paper's setting",),
    ),
    "cifar10": Preset(
        name="cifar10",
        description="between ci and paper: VGG-11 with batch norm on CIFAR-10 (32x32, 10 classes), a declared proxy",
        base=ExperimentConfig(
            name="cifar10", dataset="cifar10", model="vgg11", batch_norm=True, augment=True, epochs=30,
            batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4, track_every=10, checkpoint_every=500,
        ),
        sweeps=_paper_sweeps(
            lrs=(0.001, 0.003, 0.01, 0.03), momenta=(0.0, 0.5, 0.9), decays=(0.0, 1e-4, 5e-4, 1e-3), drops=(15, 25),
            seeds=(0, 1), lr=0.01, decay=5e-4,
        ),
        book_choices=_COMMON_CHOICES + ("CIFAR-10 itself: a proxy for Tiny ImageNet",),
    ),
    "paper": Preset(
        name="paper",
        description="the paper's setting: VGG-11 with batch norm on Tiny ImageNet (64x64, 200 classes)",
        base=ExperimentConfig(
            name="paper", dataset="tiny-imagenet", model="vgg11", batch_norm=True, augment=True, epochs=30,
            batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4, track_every=10, checkpoint_every=500,
        ),
        sweeps=_paper_sweeps(
            lrs=(0.001, 0.003, 0.01, 0.03), momenta=(0.0, 0.5, 0.9), decays=(0.0, 1e-4, 5e-4, 1e-3), drops=(15, 25),
            seeds=(0, 1), lr=0.01, decay=5e-4,
        ),
        book_choices=_COMMON_CHOICES + ("the learning-rate grid between the paper's ends 0.001 and 0.03",),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``ci``, ``cifar10`` or ``paper``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
