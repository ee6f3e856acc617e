"""``letta-compat images ...``: build the local stand-ins of the official images."""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from ..backends.docker import images as docker_images
from ..cache import cache_root
from ..matrix.model import load_matrix
from .. import versions


def cmd_images_build(args: argparse.Namespace) -> int:
    from ..backends.docker.containers import docker_client

    client = docker_client()
    say = functools.partial(print, flush=True)  # progress shows in CI logs as it happens
    cache = cache_root(args.cache_dir)
    workdir = Path(args.log_dir or tempfile.mkdtemp(prefix="letta-compat-images-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    servers, postgres = list(args.server or ()), args.postgres or not (args.server or args.matrix)
    if args.matrix:
        matrix = load_matrix(args.matrix)
        servers += [v for v in matrix.server_versions() if v not in servers]
        postgres = postgres or docker_images.pgvector_standin(matrix.postgres.image) is not None
    base = docker_images.ensure_base(client, args.base, workdir, say)
    say(f"base image: {base}")
    if postgres:
        took = docker_images.build_pgvector(client, base, workdir, say)
        say(f"{docker_images.LOCAL_PGVECTOR}: built in {took:.0f} s (stands in for pgvector/pgvector:pg15)")
    for version in servers:
        took = docker_images.build_letta(client, version, base, cache, workdir, say)
        say(f"{docker_images.local_letta(version)}: built in {took:.0f} s "
              f"(stands in for {docker_images.official_letta(version)})")
    say(f"done in {time.monotonic() - started:.0f} s; build logs in {workdir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="Docker images for the docker backend").add_subparsers(
        dest="images_command", required=True)
    build = images.add_parser(
        "build", help="build letta-compat/letta:<version> and letta-compat/pgvector:pg15 from package "
                      "registries (stand-ins for letta/letta and pgvector/pgvector on registry-less machines)")
    build.add_argument("--server", action="append", metavar="VERSION", type=versions.spelled,
                       help="a Letta server version to build an image of (repeatable)")
    build.add_argument("--matrix", metavar="FILE",
                       help="build every server version FILE needs, and the pgvector image it needs")
    build.add_argument("--postgres", action="store_true",
                       help="also build the pgvector PostgreSQL image (the default when neither --server nor --matrix is given)")
    build.add_argument("--base", metavar="IMAGE",
                       help=f"Debian bookworm base image (default: {docker_images.OFFICIAL_BASE} if present, "
                            f"else {docker_images.LOCAL_BASE}, debootstrap'ed on first use)")
    build.add_argument("--log-dir", metavar="DIR", help="where build logs go (default: a new temp directory)")
    build.set_defaults(func=cmd_images_build)
