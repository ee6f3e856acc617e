"""``letta-compat schema ...`` subcommands."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the schema subcommands to the ``letta-compat`` parser."""
