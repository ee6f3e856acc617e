"""``letta-compat versions|matrix check|install|serve``: what a run needs, ahead of it."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .. import versions
from ..cache import cache_root
from ..errors import LettaCompatError


def cmd_versions(args: argparse.Namespace) -> int:
    if getattr(args, "letta_code", False):
        from .advise import print_letta_code_table

        return print_letta_code_table()
    print(f"{'version':<9} {'released':<11} {'deps as of':<21} alembic head")
    for v in versions.known_server_versions():
        r = versions.server_release(v)
        print(f"{r.version:<9} {r.released:<11} {r.exclude_newer:<21} {r.alembic_head}")
    print(f"\nmigration scripts come from the letta-{versions.MIGRATIONS_SOURCE} sdist on PyPI")
    return 0


def cmd_matrix_check(args: argparse.Namespace) -> int:
    from ..matrix.model import load_matrix

    m = load_matrix(args.path)
    print(f"{m.path}: valid matrix {m.name!r}, backend {m.backend}, PostgreSQL "
          f"{m.postgres.bin_dir or m.postgres.version}")
    for entry in (*m.servers, *m.upgrades, *m.letta_code):
        print(f"  {entry.id}")
    for known in m.known_incompatibilities:
        print(f"  known incompatibility: check {known.check}, server {known.server or 'any'}, "
              f"Letta Code {known.letta_code or 'any'}: {known.reason}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from ..provision.install import ensure_migration_scripts, ensure_server

    cache = cache_root(args.cache_dir)
    for version in [*args.versions, versions.MIGRATIONS_SOURCE]:
        install = ensure_server(version, cache)
        how = f"installed in {install.installed_in:.0f} s" if install.installed_in else "already cached"
        print(f"Letta {version}: {how} ({install.venv})")
    print(f"migration scripts: {ensure_migration_scripts(cache)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Start a stack for manual poking; Ctrl-C stops everything."""
    from ..backends import make_backend
    from ..provision.fake_llm import FakeLLM
    from ..matrix.model import PostgresSpec

    password = os.environ.get("LETTA_SERVER_PASSWORD") if args.secure else None
    if args.secure and not password:
        raise LettaCompatError("--secure needs the password in $LETTA_SERVER_PASSWORD (it is never printed).")
    with FakeLLM() as llm:
        backend = make_backend("native", postgres=PostgresSpec(version=args.postgres), cache=cache_root(args.cache_dir),
                               llm_env=llm.server_env(), start_timeout=args.start_timeout)
        try:
            backend.start()
            stack = backend.start_server(args.version, password=password)
            print(f"Letta {stack.version} is healthy at {stack.url} (log: {stack.log_path})")
            print(f"fake LLM at {llm.base_url}; model handle openai-proxy/{llm.model}")
            print("Ctrl-C stops the server and its database.", flush=True)
            while stack.running():
                time.sleep(1)
            print(f"the server exited; its log: {stack.log_path}", file=sys.stderr)
            return 1
        finally:
            backend.cleanup()


def register(sub: argparse._SubParsersAction) -> None:
    versions_cmd = sub.add_parser("versions", help="list the Letta server releases this tool knows")
    versions_cmd.add_argument("--letta-code", action="store_true",
                              help="list the Letta Code releases and the measured server × Letta Code table instead")
    versions_cmd.set_defaults(func=cmd_versions)

    matrix = sub.add_parser("matrix", help="work with matrix files").add_subparsers(dest="matrix_command", required=True)
    check = matrix.add_parser("check", help="validate a matrix file and list its entries")
    check.add_argument("path")
    check.set_defaults(func=cmd_matrix_check)

    install = sub.add_parser("install", help="install Letta server versions into the cache ahead of a run")
    install.add_argument("versions", nargs="+", metavar="VERSION")
    install.set_defaults(func=cmd_install)

    serve = sub.add_parser("serve", help="start one Letta server on an embedded PostgreSQL until Ctrl-C")
    serve.add_argument("version")
    serve.add_argument("--secure", action="store_true", help="require the password in $LETTA_SERVER_PASSWORD")
    serve.add_argument("--postgres", type=int, default=16, choices=list(versions.POSTGRES_EMBEDDED_MAJORS))
    serve.add_argument("--start-timeout", type=float, default=300)
    serve.set_defaults(func=cmd_serve)
