"""``letta-compat backup|restore|verify|upgrade|rollback|convert`` subcommands."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the migration subcommands to the ``letta-compat`` parser."""
