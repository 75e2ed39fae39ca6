"""Data sets that need no network: scikit-learn's bundled digits (image folders come with the experiments)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Split", "load_digits"]


@dataclass(frozen=True)
class Split:
    """Train and test tensors of one data set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_digits(
    *, images: bool = True, test_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Split:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped with the package.

    Pixels are standardised with the training set's mean and standard deviation.

    Args:
        images: return ``N x 1 x 8 x 8`` images (for CNNs) instead of ``N x 64`` vectors.
        test_fraction: fraction held out as the test set, chosen by a seeded permutation.
        seed: the permutation's seed.
        dtype: floating dtype of the inputs.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    if images:
        x = x.reshape(-1, 1, 8, 8)
    as_x = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return Split(as_x(x[train]), torch.as_tensor(y[train]), as_x(x[test]), torch.as_tensor(y[test]), 10)
