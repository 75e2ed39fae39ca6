"""``python -m noether_lib.experiments``: see :mod:`noether_lib.experiments.cli`."""

from noether_lib.experiments.cli import main

raise SystemExit(main())
