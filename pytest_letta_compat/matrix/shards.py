"""Deterministic sharding of matrix entries across CI jobs (``--letta-shard K/N``).

Entries are dealt round-robin in sorted id order, so every shard gets its share and the
same matrix always splits the same way. Tests outside the matrix run in shard 1 only.
"""

from __future__ import annotations

import re

from ..errors import LettaCompatError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise LettaCompatError(
            f"--letta-shard {text!r} is not allowed. Write K/N with 1 <= K <= N, e.g. 2/3 for the "
            "second of three CI jobs.")
    return int(match.group(1)), int(match.group(2))


def shard_of(entry_id: str | None, all_ids: list[str], count: int) -> int:
    """1-based shard that runs ``entry_id`` (None: tests outside the matrix)."""
    if entry_id is None:
        return 1
    return sorted(set(all_ids)).index(entry_id) % count + 1
