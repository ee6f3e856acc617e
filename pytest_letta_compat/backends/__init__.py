"""The backends that run Letta stacks (the interface: base.py): pick one by name."""

from __future__ import annotations

from ..errors import LettaCompatError
from .base import LettaBackend


def make_backend(name: str, **kwargs) -> LettaBackend:
    if name == "native":
        from .native import NativeBackend

        if kwargs.pop("compose", None):
            raise LettaCompatError("--letta-compose runs the operator's Docker stack: it needs the docker "
                                   "backend (drop --letta-backend native).")
        return NativeBackend(**kwargs)
    if name == "docker":
        from .docker.backend import DockerBackend

        return DockerBackend(**kwargs)
    raise LettaCompatError(
        f"Backend {name!r} is not available in this version of pytest-letta-compat. "
        "Allowed: \"native\" (Letta servers as processes on an embedded PostgreSQL with pgvector), "
        "\"docker\" (letta/letta and pgvector containers)."
    )
