"""What a training session feeds the model: the configured data on the device, the configured VGG, seeded
generators for data order and augmentation, and the autocast of mixed precision."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from noether_lib.data import (
    Split,
    channel_statistics,
    load_cifar10,
    load_digits,
    load_tiny_imagenet,
    random_crop_flip,
    synthetic_images,
)
from noether_lib.experiments.config import ConfigError, ExperimentConfig
from noether_lib.models import VGG
from noether_lib.reproducibility import make_generator

__all__ = ["load_split", "build_model", "DeviceData", "autocast", "seeded"]


def load_split(config: ExperimentConfig, cache_dir: str | Path | None = None) -> Split:
    """The configured data set (``data_dir`` is needed for CIFAR-10 and Tiny ImageNet)."""
    if config.dataset == "digits":
        return load_digits(images=True)
    if config.dataset == "synthetic":
        return synthetic_images(
            config.synthetic_examples, max(64, config.synthetic_examples // 8), size=config.image_size, seed=config.seed
        )
    if config.data_dir is None:
        raise ConfigError(f"data_dir=None: dataset {config.dataset!r} is read from a local folder (--data-dir DIR)")
    if config.dataset == "cifar10":
        return load_cifar10(config.data_dir)
    return load_tiny_imagenet(config.data_dir, cache_dir=cache_dir)


def build_model(config: ExperimentConfig, split: Split) -> VGG:
    """The configured VGG for ``split``'s channels and classes (initialised from the global random state)."""
    return VGG(
        config.model,
        in_channels=split.input_shape[0],
        num_classes=split.num_classes,
        batch_norm=config.batch_norm,
        conv_bias=config.conv_bias,
        width=config.width,
    )


class DeviceData:
    """The whole data set on the training device; batches are gathered by index and standardised there."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.device = device
        self.x_train, self.y_train = split.x_train.to(device), split.y_train.to(device)
        self.x_test, self.y_test = split.x_test.to(device), split.y_test.to(device)
        self.raw = split.x_train.dtype == torch.uint8
        if self.raw:
            mean, std = channel_statistics(split.x_train)
            self.mean, self.std = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std if self.raw else x

    def train_batch(
        self, index: torch.Tensor, shifts: torch.Tensor | None, flips: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x_train[index]
        if shifts is not None and flips is not None:
            x = random_crop_flip(x, shifts.to(self.device), flips.to(self.device))
        return self.standardise(x), self.y_train[index]


def autocast(config: ExperimentConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seeded(config: ExperimentConfig, stream: int, index: int) -> torch.Generator:
    """A private generator for one epoch's order (stream 0) or one step's augmentation (stream 1)."""
    return make_generator((config.seed * 2 + stream) * 1_000_003 + index)
