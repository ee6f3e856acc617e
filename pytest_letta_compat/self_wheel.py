"""The installed pytest-letta-compat as a wheel file. The package is not on a public index yet,
so ``letta-compat init`` puts this wheel into the operator's repository and the workflow it
writes installs it from there (a wheel install or an editable one make the same file)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

from . import __version__
from .paths import atomic_path

DIST = "pytest_letta_compat"
WHEEL_NAME = f"{DIST}-{__version__}-py3-none-any.whl"
_SKIP = ("__pycache__",)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(directory: Path) -> Path:
    """Write WHEEL_NAME into ``directory`` from the package as installed; return its path."""
    package = Path(__file__).resolve().parent
    dist = importlib.metadata.distribution("pytest-letta-compat")
    info = f"{DIST}-{__version__}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and not any(part in _SKIP for part in path.parts) and path.suffix != ".pyc":
            files.append((f"{DIST}/{path.relative_to(package).as_posix()}", path.read_bytes()))
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")  # a wheel install, or an egg-info
    files.append((f"{info}/METADATA", (metadata or "").encode()))
    files.append((f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pytest-letta-compat\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"))
    record = [_record_line(name, data) for name, data in files] + [f"{info}/RECORD,,"]
    target = Path(directory) / WHEEL_NAME
    with atomic_path(target) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return target
