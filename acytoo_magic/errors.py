"""The error family's old address: it lives in ``acytoo_magic.core.errors`` (and the package root).

Kept because docs/reliability.md named ``acytoo_magic.errors`` before the four rooms; it warns once
per import and will go in a later release.
"""

import warnings

from .core.errors import *  # noqa: F403
from .core.errors import __all__  # noqa: F401

warnings.warn(
    "acytoo_magic.errors moved to acytoo_magic.core.errors (or import the errors from acytoo_magic)",
    DeprecationWarning,
    stacklevel=2,
)
