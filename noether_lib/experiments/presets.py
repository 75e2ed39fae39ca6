"""The presets ``ci``, ``cifar10`` and ``paper``: a base configuration, the sweeps of the paper's experiments
(digest sections 4--5: the x10 filter-norm scaling at initialisation of Fig. 1b of the draft and the three ablations
of its Fig. 3, v2's Fig. 4) and the hyperparameters the book chose where the paper states none (``book_choices``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from noether_lib.experiments.config import ConfigError, DatasetName, ExperimentConfig, Sweep

__all__ = ["Preset", "PRESETS", "get_preset"]


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
        raise ConfigError(
            f"--only {name}: preset {self.name!r} has no such sweep; it has {[s.name for s in self.sweeps]}"
        )


def _paper_sweeps(
    lrs: Sequence[float],
    momenta: Sequence[float],
    decays: Sequence[float],
    drops: tuple[float, ...],
    seeds: tuple[int, ...],
    lr: float,
    decay: float,
) -> tuple[Sweep, ...]:
    both = (False, True)
    return (
        Sweep(
            "init-scale",
            {"init_scale": (1.0, 10.0)},
            {"lr": lr, "lr_drops": ()},
            seeds[:5],
            "conv filters x10 at initialisation: same initial loss, different trajectory (claim 17)",
        ),
        Sweep(
            "learning-rate",
            {"lr": tuple(lrs), "constrain_filter_norms": both},
            {"lr_drops": (), "momentum": 0.9, "weight_decay": decay},
            seeds,
            "constant learning rates, constrained vs free filter norms (claims 18-19)",
        ),
        Sweep(
            "momentum",
            {"momentum": tuple(momenta), "constrain_filter_norms": both},
            {"lr": lr, "lr_drops": drops, "weight_decay": decay},
            seeds,
            "momentum with step learning-rate drops, constrained vs free (claim 20)",
        ),
        Sweep(
            "effective-step",
            {"momentum": (0.0, 0.9), "constrain_filter_norms": both},
            {"lr_drops": drops, "weight_decay": decay},
            seeds,
            "momentum at a fixed effective step lr/(1-momentum), constrained vs free (claim 20, deconfounded)",
            effective_lr=lr,
        ),
        Sweep(
            "weight-decay",
            {"weight_decay": tuple(decays), "constrain_filter_norms": both},
            {"lr": lr, "lr_drops": drops, "momentum": 0.9},
            seeds,
            "weight decay, constrained vs free (claim 21)",
        ),
    )


def _vgg11_base(name: str, dataset: DatasetName) -> ExperimentConfig:
    """The paper's training set-up (VGG-11 with batch norm, 30 epochs, SGD with momentum), on ``dataset``."""
    return ExperimentConfig(
        name=name,
        dataset=dataset,
        model="vgg11",
        batch_norm=True,
        augment=True,
        epochs=30,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        track_every=10,
        track_units=8,
        checkpoint_every=500,
    )


#: The paper's four sweeps on VGG-11 (shared by ``paper`` and its CIFAR-10 proxy).
_VGG11_SWEEPS = _paper_sweeps(
    lrs=(0.001, 0.003, 0.01, 0.03),
    momenta=(0.0, 0.5, 0.9),
    decays=(0.0, 1e-4, 5e-4, 1e-3),
    drops=(0.5, 5 / 6),
    seeds=tuple(range(5)),
    lr=0.01,
    decay=5e-4,
)


_COMMON_CHOICES = (
    "momentum 0.9 and weight decay 5e-4 wherever the swept quantity is another one",
    "the values of the weight-decay grid (the paper gives none; its theory quotes k ~ 1e-4)",
    "the epoch count, batch size, the learning-rate drops (fractions of the run) and their factor 0.1",
    "the seeds (the paper reports none) and the number of seeds",
    "random-crop and horizontal-flip augmentation, and per-channel standardisation",
    "the optimiser settings of the x10 initial-scaling run",
    "the effective-step sweep, which holds lr/(1-momentum) fixed (the paper varies momentum at a fixed lr)",
)

PRESETS: dict[str, Preset] = {
    "ci": Preset(
        name="ci",
        description="minutes on 2 CPU cores: a small VGG with batch norm on scikit-learn's 8x8 digits",
        base=ExperimentConfig(
            name="ci",
            dataset="digits",
            model="tiny",
            batch_norm=True,
            epochs=6,
            batch_size=64,
            lr=0.05,
            momentum=0.9,
            weight_decay=5e-4,
            track_every=1,
        ),
        sweeps=_paper_sweeps(
            lrs=(0.005, 0.5),
            momenta=(0.0, 0.9),
            decays=(0.0, 5e-4, 5e-3),
            drops=(2 / 3,),
            seeds=tuple(range(10)),
            lr=0.05,
            decay=5e-4,
        ),
        book_choices=_COMMON_CHOICES + ("the whole ci preset: a CPU-sized proxy, not the paper's setting",),
    ),
    "cifar10": Preset(
        name="cifar10",
        description="between ci and paper: VGG-11 with batch norm on CIFAR-10 (32x32, 10 classes), a declared proxy",
        base=_vgg11_base("cifar10", "cifar10"),
        sweeps=_VGG11_SWEEPS,
        book_choices=_COMMON_CHOICES
        + (
            "CIFAR-10 itself: a proxy for Tiny ImageNet",
            "per-unit charges of 8 units per layer (per-layer sums of all)",
        ),
    ),
    "paper": Preset(
        name="paper",
        description="the paper's setting: VGG-11 with batch norm on Tiny ImageNet (64x64, 200 classes)",
        base=_vgg11_base("paper", "tiny-imagenet"),
        sweeps=_VGG11_SWEEPS,
        book_choices=_COMMON_CHOICES
        + (
            "the learning-rate grid between the paper's ends 0.001 and 0.03",
            "per-unit charges of 8 units per layer (per-layer sums of all)",
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``ci``, ``cifar10`` or ``paper``)."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: unknown; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
