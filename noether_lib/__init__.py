"""noether_lib: the maths and machinery behind the *noether-book*.

The book is an executable companion to Tanaka & Kunin (2021), *Noether's Learning Dynamics:
Role of Symmetry Breaking in Neural Networks*. Every formula the book uses lives here once,
with a docstring naming the paper's equation; the notebooks import it.

Module plan (one concept of the paper per module or package, imported downwards only):

Bottom layer:

- ``noether_lib.learning_rule``: the learning rule's constants (time scale, mass, damping of Eq. 3) and the one
  hyperparameter validator.
- ``noether_lib.mechanics``: Lagrangians (Kanai, Bregman, the SGD Lagrangian of Eq. 4), Euler--Lagrange
  equations with sympy, Table 1, the symbolic derivation of the modified equation (Eqs. 1--4), least action.
- ``noether_lib.modified_equation``: gradient flow and the modified equation of Eq. 3, their integrators, the
  matched initial velocity.
- ``noether_lib.rules``: discrete learning rules (gradient descent, heavy ball in PyTorch's convention, mirror
  descent).
- ``noether_lib.symmetry``: symmetry groups and their actions, discovery from a model's graph (torch.fx), and
  numerical verification (package: ``groups``, ``actions``, ``graph``, ``search``, ``attention``, ``discovery``,
  ``verification``, ``toys``).
- ``noether_lib.kinetic``: kinetic energies and their symmetry tests (Eqs. 5--7).
- ``noether_lib.scale_equivalence``: training a dilated network is training the original one with rescaled
  learning rate and weight decay.
- ``noether_lib.models``, ``noether_lib.zoo``: the networks the book trains, and architectures written in the style
  of public model zoos. ``noether_lib.data`` (``noether_lib.datasets``): digits, Tiny ImageNet, CIFAR-10 from a
  local folder.
- ``noether_lib.reproducibility``, ``noether_lib.tolerances`` (every tolerance, named once), ``noether_lib.checks``
  (an agreement asserted next to its control), ``noether_lib.schema`` (the charges table's columns).

Middle layer:

- ``noether_lib.noether``: Noether charges, Noether's learning dynamics (Eqs. 8--13) and the exact discrete and
  continuous predictions (package: ``symbolic``, ``coefficients``, ``discrete``, ``continuous``, ``compare``).
- ``noether_lib.tracking``: the online recorder of charges for any optimizer, schedule and precision.
- ``noether_lib.normalization``: polar form, the norm equation and its closed form (Eqs. 14--17), the exact
  sphere equivalence, RMSProp (Eq. 18), the filter-norm constraint; ``noether_lib.loss_curves``.
- Beyond the paper (chapter 6): ``adaptive_metric``, ``rotation``, ``epsilon_breaking``, ``exponential_lr``,
  ``implicit_regularization``, ``nesterov``.

Top layer:

- ``noether_lib.experiments``: presets, keyed and locked runs, the runner, statistics, reports, the command line.

Apart:

- ``noether_lib.plotting``: one figure style and a figure-export helper (PDF, SVG, PNG, CSV data).
- ``noether_lib.colab``: the hidden set-up cell that installs the library when a notebook runs on Colab.

Importing :mod:`noether_lib` has no side effects: nothing is seeded, downloaded or restyled until asked.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
