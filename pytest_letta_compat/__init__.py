"""pytest-letta-compat: compatibility tests and migration routines for self-hosted Letta.

The core (matrix, backends, provisioning, migrations, CLI) never imports pytest;
``plugin`` and ``fixtures`` are the thin pytest layer on top of it.
"""

from .errors import LettaCompatError

__version__ = "0.1.0"
__all__ = ["LettaCompatError", "__version__"]
