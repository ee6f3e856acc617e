"""One PostgreSQL client for any DSN: read it, show it masked, connect to it, and run the
embedded ``pg_dump``/``pg_restore`` on it.

A DSN is a URL (Letta's ``postgresql+pg8000://`` spellings included) or ``key=value``
pairs. Its password is registered as a secret as soon as it is read, and reaches client
tools only through ``PGPASSWORD``, never a command line. The operator's own ``PG*``
variables and ``~/.pgpass`` still apply when the DSN carries no password.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..errors import LettaCompatError, redact, register_secret
from .binaries import PostgresBinaries

_DRIVER = re.compile(r"^postgres(?:ql)?\+\w+://")
# (written without a password: printed errors mask whatever follows "USER:")
_EXAMPLE = "postgresql://USER@HOST:5432/DBNAME"


_SSL_WORDS = {"true": "require", "on": "require", "1": "require", "false": "disable", "off": "disable", "0": "disable"}


def normalize_dsn(dsn: str) -> str:
    """Accept Letta's own LETTA_PG_URI spellings: ``postgresql+pg8000://``, ``+asyncpg``, and
    asyncpg's ``?ssl=require`` (libpq's ``sslmode``; ``true``/``false`` as SQLAlchemy users write it)."""
    dsn = _DRIVER.sub("postgresql://", dsn.strip())
    if "://" not in dsn or "?" not in dsn:
        return dsn
    base, _, query = dsn.partition("?")
    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    has_sslmode = any(key == "sslmode" for key, _, _ in pairs)
    kept = []
    for key, eq, value in pairs:
        if key == "ssl":
            if has_sslmode:
                continue
            key, value = "sslmode", _SSL_WORDS.get(value.lower(), value)
        kept.append(f"{key}{eq}{value}")
    return f"{base}?{'&'.join(kept)}" if kept else base


def shown_dsn(text: str) -> str:
    """``text`` (a DSN, a URL, an error message holding one) as it may be printed: the
    password masked in URLs of any scheme (a mistyped ``postgresq://u:pw@h`` too) and in
    ``key=value`` form, and every registered secret (errors.redact does the masking)."""
    return redact(text)


def dsn_params(dsn: str, *, option: str = "--dsn") -> dict[str, str]:
    """The connection parameters of ``dsn``; its password is a secret from here on."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(normalize_dsn(dsn)).items() if v is not None}
    except (psycopg.Error, UnicodeDecodeError) as exc:  # libpq decodes %-escapes: %80 is no UTF-8
        reason = ("a %-escape in it is not UTF-8" if isinstance(exc, UnicodeDecodeError)
                  else " ".join(str(exc).split()).rstrip("."))
        raise LettaCompatError(f"{option} {shown_dsn(dsn)!r} is not a PostgreSQL DSN ({shown_dsn(reason)}). "
                               f"Give one such as {_EXAMPLE} (the password in it or in $PGPASSWORD).") from None
    register_secret(params.get("password"))
    return params


def connect(dsn: str, *, connect_timeout: int = 15, option: str = "--dsn") -> psycopg.Connection:
    """An autocommit connection; failures are one-paragraph errors without the password."""
    conninfo = make_conninfo(**dsn_params(dsn, option=option))
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()).rstrip(".?") or type(exc).__name__
        raise LettaCompatError(f"Cannot connect to the database {shown_dsn(dsn)!r}: {shown_dsn(reason)}. "
                               f"Give a DSN such as {_EXAMPLE} (with the password in it or in $PGPASSWORD) "
                               "that reaches Letta's database.") from None


def server_major(dsn: str) -> int:
    """The major version of the PostgreSQL server behind ``dsn``."""
    with connect(dsn) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def run_pg_tool(tool: str, args: list[str], *, dsn: str | None = None, bin_dir: Path | None = None,
                major: int = 16) -> str:
    """Run client ``tool`` (pg_dump, pg_restore) with ``args``; with ``dsn``, connected to
    that database (``-d`` gets the DSN without its password). The tools are ``bin_dir``'s,
    else the embedded ones that serve a server of ``major``. Returns the tool's stdout."""
    if bin_dir is None:
        bin_dir = PostgresBinaries.embedded(18 if major > 16 else 16).bin_dir
    env = {k: v for k, v in os.environ.items() if k.startswith("PG") or k == "HOME"}
    env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "PGCONNECT_TIMEOUT": "15"})
    argv = [str(Path(bin_dir) / tool)]
    if dsn is not None:
        params = dsn_params(dsn)
        if "password" in params:
            env["PGPASSWORD"] = params.pop("password")
        argv += ["-d", make_conninfo(**params)]
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LettaCompatError(f"{tool} failed (exit {proc.returncode}): {shown_dsn(proc.stderr.strip()[-1500:])}")
    return proc.stdout


def pg_dump(dsn: str, target: Path, *, bin_dir: Path | None = None) -> None:
    """``pg_dump -Fc`` of the database at ``dsn`` into ``target`` (with tools at least as new as its server)."""
    run_pg_tool("pg_dump", ["-Fc", "-f", str(target)], dsn=dsn, bin_dir=bin_dir,
                major=16 if bin_dir else server_major(dsn))


def pg_restore(dsn: str, archive: Path, *, bin_dir: Path | None = None) -> None:
    """Load a ``pg_dump -Fc`` archive into the (empty) database at ``dsn``, owned by its user."""
    run_pg_tool("pg_restore", ["--no-owner", "--exit-on-error", str(archive)], dsn=dsn, bin_dir=bin_dir,
                major=16 if bin_dir else server_major(dsn))


def archive_listing(archive: Path) -> str:
    """``pg_restore -l``: the table of contents of an archive (proves it is readable)."""
    return run_pg_tool("pg_restore", ["-l", str(archive)])
