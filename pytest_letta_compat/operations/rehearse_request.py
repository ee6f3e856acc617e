"""What the operator asked ``rehearse`` for (``--dump`` or ``--dsn``, ``--to``, Letta Code,
the encryption key's variable), checked before anything runs: each bad input one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import versions
from ..errors import LettaCompatError, register_secret
from .database import LettaDatabase


@dataclass
class RehearsalRequest:
    targets: list[str]
    cache: Path
    dump: Path | None = None
    dsn: str | None = None
    encryption_key: str | None = field(default=None, repr=False)  # the server's LETTA_ENCRYPTION_KEY, for alembic
    letta_code: list[str] = field(default_factory=list)  # Letta Code versions that resume an agent of the dump
    sample: int = 3
    workdir: Path | None = None
    postgres_major: int = 16
    keep: bool = False  # keep each path's upgraded copy until close() (the letta_rehearsal fixture)
    backend: str = "native"  # where the copies and servers live: "native" or "docker" (backends.make_backend)

    def __post_init__(self) -> None:
        from ..matrix.model import BACKENDS

        if self.backend not in BACKENDS:
            raise LettaCompatError(f"--backend {self.backend!r} is not a backend. Allowed: {', '.join(BACKENDS)}.")
        if (self.dump is None) == (self.dsn is None):
            raise LettaCompatError("Give exactly one of --dump FILE (a pg_dump of Letta's database) or --dsn DSN "
                                   "(a live database, only ever read).")
        if not self.targets:
            raise LettaCompatError("Give at least one --to VERSION, e.g. --to 0.16.8.")
        for target in self.targets:
            if versions.server_release(target) is None:
                raise LettaCompatError(f"--to {target!r} is not a Letta server release this tool knows. Allowed: "
                                       f"{', '.join(versions.known_server_versions())}.")
        register_secret(self.encryption_key)
        for version in self.letta_code:
            if not versions.is_known_letta_code(version):
                from ..versions_letta_code import refusal

                raise LettaCompatError(f"--letta-code: {refusal(version)}")
        if self.dump is not None:
            self.dump = Path(self.dump)
            if self.dump.is_dir():
                raise LettaCompatError(f"--dump {self.dump} is a directory: give the dump file itself (pg_dump -Fc or "
                                       "plain SQL), e.g. --dump letta.dump. A letta-compat backup directory holds "
                                       "one as database.dump.")
            if not self.dump.is_file():
                raise LettaCompatError(f"--dump {self.dump}: no such file. Take one with `docker compose exec -T "
                                       "letta_db pg_dump -U letta -Fc letta > letta.dump`.")
        if self.dsn is not None:
            LettaDatabase(self.dsn)  # a malformed DSN fails here, one line, password masked
