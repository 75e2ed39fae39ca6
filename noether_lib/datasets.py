"""Another name for :mod:`noether_lib.data`, which holds the digits, the image folders and the synthetic images."""

from noether_lib.data import *  # noqa: F403
from noether_lib.data import __all__  # noqa: F401
