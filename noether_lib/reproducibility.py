"""Reproducible runs: one place that seeds everything and fixes the numerical settings."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "make_generator"]


def seed_everything(seed: int, *, deterministic: bool = True, threads: int | None = 1) -> None:
    """Seed Python, NumPy and PyTorch and choose deterministic kernels.

    Args:
        seed: the seed for every random number generator.
        deterministic: ask PyTorch for deterministic algorithms (an error is raised by PyTorch
            if an operation has none) and disable cuDNN autotuning.
        threads: number of intra-op CPU threads; small runs are fastest and reproducible
            with one thread. ``None`` leaves PyTorch's choice unchanged.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeding the legacy global generator is the point)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def make_generator(seed: int) -> torch.Generator:
    """A private :class:`torch.Generator` so that data order does not depend on global state."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
