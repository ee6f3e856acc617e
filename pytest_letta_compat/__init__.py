"""pytest-letta-compat: compatibility tests and migration routines for self-hosted Letta.

The core (matrix, provision, postgres, backends, rest, schema, operations, report, cli)
never imports pytest; ``plugin`` (and the shipped ``suite``) are the thin pytest layer on top.
"""

from .errors import LettaCompatError

__version__ = "0.1.0"
__all__ = ["LettaCompatError", "__version__"]
