"""The networks the book trains. Models know nothing of symmetry: ``noether_lib.symmetry`` finds it.

* :class:`MLP` -- fully connected, optional batch norm, ReLU by default.
* :class:`VGG` -- the VGG family (``"vgg11"``, ``"vgg16"``, ...) with or without batch norm and conv
  biases, global average pooling and one linear classifier, sized for small images; ``"tiny"`` is the
  CPU-sized configuration used by the book's live experiments.
* :func:`resnet18` -- a ResNet-18 (basic blocks, batch norm, bias-free convolutions) for small images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "VGG", "VGG_CONFIGS", "BasicBlock", "ResNet", "resnet18"]

#: Channel plans; ``"M"`` is a 2x2 max-pooling layer.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "tiny": [16, "M", 32, "M", 32],
    "small": [32, "M", 64, "M", 128, 128, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Fully connected network ``in -> hidden... -> classes`` with an optional batch norm after each hidden layer."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        activation: str = "relu",
        batch_norm: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[activation]())
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VGG(nn.Module):
    """A VGG network: 3x3 convolutions (+ batch norm) + ReLU, max-pooling, global average pooling, linear classifier.

    Args:
        config: a key of :data:`VGG_CONFIGS` or an explicit channel plan.
        in_channels: input channels (3 for colour images, 1 for digits).
        num_classes: output classes.
        batch_norm: put a :class:`~torch.nn.BatchNorm2d` after every convolution.
        conv_bias: give convolutions a bias (PyTorch's VGG does; many BN networks do not).
        width: multiply every channel count (e.g. 0.25 for a quarter-width network).
    """

    def __init__(
        self,
        config: str | Sequence[int | str] = "vgg11",
        *,
        in_channels: int = 3,
        num_classes: int = 200,
        batch_norm: bool = True,
        conv_bias: bool = True,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        plan = VGG_CONFIGS[config] if isinstance(config, str) else list(config)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = max(1, int(round(int(item) * width)))
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=conv_bias))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=False))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 bias-free convolutions with batch norm and an identity or 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet for small images (3x3 stem, no initial max-pooling)."""

    def __init__(
        self, blocks: Sequence[int], *, in_channels: int = 3, num_classes: int = 200, width: float = 1.0
    ) -> None:
        super().__init__()
        widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = widths[0]
        for i, (count, out) in enumerate(zip(blocks, widths)):
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(BasicBlock(channels, out, stride))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(*, in_channels: int = 3, num_classes: int = 200, width: float = 1.0) -> ResNet:
    """ResNet-18 (two basic blocks per stage) for small images."""
    return ResNet([2, 2, 2, 2], in_channels=in_channels, num_classes=num_classes, width=width)
