"""Local stand-ins for the official images, built from package registries only.

``letta-compat/letta:<version>`` behaves like ``letta/letta:<version>`` (migrate on every
start, then ``letta server``; LETTA_PG_URI, SECURE, LETTA_SERVER_PASSWORD, OPENAI_*,
LETTA_REDIS_HOST) and ``letta-compat/pgvector:pg15`` like ``pgvector/pgvector:pg15``
(POSTGRES_USER/PASSWORD/DB, /docker-entrypoint-initdb.d). The docker backend runs the
official image when it is present locally, else the stand-in, else tries to pull the
official one. Nothing built here is written into the repository.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ... import versions
from ...errors import ProvisioningError, redact
from ...provision.install import ensure_migration_scripts

LOCAL_BASE = "letta-compat/debian:bookworm"
OFFICIAL_BASE = "debian:bookworm-slim"
LOCAL_PGVECTOR = "letta-compat/pgvector:pg15"
# images whose stand-in is LOCAL_PGVECTOR: PostgreSQL 15 with pgvector
PGVECTOR_STANDINS_FOR = ("pgvector/pgvector:pg15", "ankane/pgvector:v0.5.1", "ankane/pgvector:latest")
MIGRATE_COMMAND_LABEL = "org.letta-compat.migrate-command"
# what the official image's startup.sh runs before the server
OFFICIAL_MIGRATE = ["sh", "-c", "cd /app && alembic upgrade head"]


class LocalImageWarning(UserWarning):
    """A locally built stand-in runs in place of an official image."""


def official_letta(version: str) -> str:
    return f"letta/letta:{version}"


def local_letta(version: str) -> str:
    return f"letta-compat/letta:{version}"


def pgvector_standin(image: str) -> str | None:
    return LOCAL_PGVECTOR if image in PGVECTOR_STANDINS_FOR else None


def _present(client, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def resolve_image(client, wanted: str, standin: str | None, what: str) -> str:
    """``wanted`` if present locally, else its local stand-in, else ``wanted`` pulled."""
    if _present(client, wanted):
        return wanted
    if standin and _present(client, standin):
        warnings.warn(f"{wanted} is not present locally: using {standin}, built by `letta-compat images build`.",
                      LocalImageWarning, stacklevel=2)
        return standin
    try:
        client.images.pull(wanted)
        return wanted
    except Exception as exc:  # noqa: BLE001 - any registry or DNS failure
        hint = ""
        if standin == LOCAL_PGVECTOR:
            hint = " or build the local stand-in with `letta-compat images build --postgres`"
        elif standin:
            hint = f" or build the local stand-in with `letta-compat images build --server {wanted.rsplit(':', 1)[1]}`"
        raise ProvisioningError(
            f"{what}: the image {wanted} is not present locally and could not be pulled "
            f"({redact(str(exc)).splitlines()[0][:300]}). Pull it on a machine with registry access and "
            f"`docker load` it{hint}.") from None


def migrate_entrypoint(client, image: str) -> list[str]:
    """The command that runs ``image``'s start-up migration step on $LETTA_PG_URI."""
    labels = client.images.get(image).labels or {}
    return [labels[MIGRATE_COMMAND_LABEL]] if MIGRATE_COMMAND_LABEL in labels else list(OFFICIAL_MIGRATE)


# -- building ------------------------------------------------------------------------------
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("assets", name).read_bytes()


def _ca_bundle() -> Path:
    """The CA bundle this host trusts: pip and uv in the build must trust the same roots."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ProvisioningError("No CA bundle found for the image build: set SSL_CERT_FILE to a PEM bundle.")


def debian_mirror() -> str:
    """The Debian mirror apt uses on this host (deb.debian.org when none is configured)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["deb"] and len(words) > 2:
                uri = next((w for w in words[1:] if "://" in w), None)
                if uri and "security" not in uri:
                    return uri
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
    return "http://deb.debian.org/debian"


def _stream_build(client, context: Path, dockerfile: str, tag: str, buildargs: dict[str, str],
                  log_path: Path, progress: Callable[[str], None]) -> float:
    from ... import progress as phases

    started = time.monotonic()
    last_error = None
    with open(log_path, "a", encoding="utf-8") as log, phases.phase(f"building image {tag}", done="built"):
        log.write(f"$ docker build -f {dockerfile} -t {tag} {context}\n")
        for event in client.api.build(path=str(context), dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                                      rm=True, forcerm=True, decode=True):
            text = event.get("stream") or event.get("status") or ""
            if text:
                log.write(redact(text))
                if text.startswith("Step "):
                    progress(f"  {tag}: {text.strip()[:150]}")
            if "error" in event:
                last_error = event["error"]
                log.write(redact(last_error) + "\n")
    if last_error:
        raise ProvisioningError(f"Building {tag} failed: {redact(last_error).strip()[-800:]} "
                                f"(full build log: {log_path}).")
    return time.monotonic() - started


def ensure_base(client, base: str | None, workdir: Path, progress: Callable[[str], None]) -> str:
    """The Debian bookworm image the stand-ins build on: ``base`` if given, else
    debian:bookworm-slim if present, else a debootstrap'ed one (needs root and debootstrap)."""
    if base:
        if not _present(client, base):
            raise ProvisioningError(f"--base {base}: no such image locally. Give a Debian bookworm image "
                                    "that is present (`docker images`), or leave --base out.")
        return base
    for candidate in (OFFICIAL_BASE, LOCAL_BASE):
        if _present(client, candidate):
            return candidate
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise ProvisioningError(
            f"Neither {OFFICIAL_BASE} nor {LOCAL_BASE} is present locally, and {LOCAL_BASE} is built with "
            "debootstrap as root (apt-get install debootstrap). Or pass --base IMAGE.")
    rootfs = Path(tempfile.mkdtemp(prefix="letta-compat-rootfs-", dir=workdir))
    mirror = debian_mirror()
    progress(f"  {LOCAL_BASE}: debootstrap --variant=minbase bookworm from {mirror}")
    try:
        proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisioningError(f"debootstrap failed (exit {proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        client.api.import_image_from_stream(tar.stdout, repository=LOCAL_BASE.split(":")[0],
                                            tag=LOCAL_BASE.split(":")[1])
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return LOCAL_BASE


def build_pgvector(client, base: str, workdir: Path, progress: Callable[[str], None]) -> float:
    context = Path(tempfile.mkdtemp(prefix="letta-compat-pgctx-", dir=workdir))
    try:
        for name in ("pgvector.Dockerfile", "pg-entrypoint.sh"):
            (context / name).write_bytes(_asset(name))
        (context / "pg-entrypoint.sh").chmod(0o755)
        return _stream_build(client, context, "pgvector.Dockerfile", LOCAL_PGVECTOR,
                             {"BASE_IMAGE": base, "DEBIAN_MIRROR": debian_mirror()},
                             workdir / "build-pgvector.log", progress)
    finally:
        shutil.rmtree(context, ignore_errors=True)


def build_letta(client, version: str, base: str, cache: Path, workdir: Path,
                progress: Callable[[str], None]) -> float:
    release = versions.require_server_release(version, "--server", ProvisioningError)
    migrator = versions.server_release(versions.MIGRATIONS_SOURCE)
    context = Path(tempfile.mkdtemp(prefix="letta-compat-lettactx-", dir=workdir))
    try:
        for name in ("letta.Dockerfile", "letta-entrypoint.sh", "letta-migrate.sh"):
            (context / name).write_bytes(_asset(name))
            if name.endswith(".sh"):
                (context / name).chmod(0o755)
        shutil.copyfile(_ca_bundle(), context / "ca-certificates.crt")
        scripts = ensure_migration_scripts(cache)
        shutil.copytree(scripts, context / "migrations", ignore=shutil.ignore_patterns(".letta-compat-*"))
        args = {"BASE_IMAGE": base, "UV_VERSION": importlib.metadata.version("uv"),
                "MIGRATIONS_SOURCE": migrator.version, "MIGRATIONS_EXCLUDE_NEWER": migrator.exclude_newer,
                "LETTA_VERSION": version, "LETTA_EXCLUDE_NEWER": release.exclude_newer,
                "LETTA_ALEMBIC_HEAD": release.alembic_head, "LETTA_PINS": " ".join(release.pins)}
        return _stream_build(client, context, "letta.Dockerfile", local_letta(version), args,
                             workdir / f"build-letta-{version}.log", progress)
    finally:
        shutil.rmtree(context, ignore_errors=True)
