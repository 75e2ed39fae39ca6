"""noether_lib: the maths and machinery behind the *noether-book*.

The book is an executable companion to Tanaka & Kunin (2021), *Noether's Learning Dynamics:
Role of Symmetry Breaking in Neural Networks*. Every formula the book uses lives here once,
with a docstring naming the paper's equation; the notebooks import it.

Module plan (one concept of the paper per module, imported downwards only):

Bottom layer:

- ``noether_lib.mechanics``: Lagrangians (Kanai, Bregman, the SGD Lagrangian of Eq. 4), Euler--Lagrange
  equations with sympy, Table 1 and the symbolic derivation of the modified equation (Eqs. 1--4).
- ``noether_lib.modified_equation``: the continuous-time models (gradient flow, the modified equation of Eq. 3
  with its mass, damping and time scale) and their integrators, with the matched initial velocity.
- ``noether_lib.rules``: discrete learning rules: gradient descent, heavy-ball momentum with weight decay
  and dampening (PyTorch's convention), mirror descent.
- ``noether_lib.symmetry``: symmetry groups (translation, scale, rescale, rotation), their generators,
  discovery of symmetric parameter groups from a model's graph, and numerical verification.
- ``noether_lib.kinetic``: kinetic energies (Euclidean, diagonal, general metric) and their symmetry
  tests (Eqs. 5--7).
- ``noether_lib.models``: the networks the book trains (MLP, VGG, ResNet).
- ``noether_lib.data``: scikit-learn's digits, shipped with the package.
- ``noether_lib.datasets``: Tiny ImageNet and CIFAR-10 read from a local folder (Pillow and numpy, no downloads).
- ``noether_lib.reproducibility``: seeding, deterministic settings, thread counts.
- ``noether_lib.tolerances``: every tolerance the book asserts, named once.

Middle layer:

- ``noether_lib.noether``: Noether charges, Noether's learning dynamics (Eqs. 8--13) and the exact
  discrete and continuous predictions for each symmetry.
- ``noether_lib.tracking``: an online recorder of charges during training.
- ``noether_lib.normalization``: polar form of scale-invariant weights, the effective learning rate, the
  norm equation and its closed form (Eqs. 14--17), RMSProp (Eq. 18) and the filter-norm constraint.

Top layer:

- ``noether_lib.experiments``: presets, the experiment runner and its command line.

Apart:

- ``noether_lib.plotting``: one figure style and a figure-export helper (PDF, SVG, PNG, CSV data).
- ``noether_lib.colab``: the hidden set-up cell that installs the library when a notebook runs on Colab.

Importing :mod:`noether_lib` has no side effects: nothing is seeded, downloaded or restyled until asked.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
