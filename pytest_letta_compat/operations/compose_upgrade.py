"""``letta-compat upgrade --compose FILE --to V``: the operator's compose stack upgraded in one
command, and put back by itself when any step fails.

verified backup (pg_dump + every agent) → stop the Letta service → migrate with our path (the
target's alembic head + fix-ups) → rewrite the pin (one line of the file or of .env; the
original kept beside it) → start the new release *unpublished* (no client can reach it) →
verify every agent against the backup → only then ``up -d`` the service on its port. Clients
meet a closed port from the stop until the new release has been verified, never an agent that
answers 404 or a release that is rolled back under them (lettabot#342). Any failure after the
stop restores the database from the backup, puts the old pin back, starts the old service,
verifies it, and says what failed. A run that was killed leaves ``compose-upgrade.json`` in
the backup directory; the next run puts the stack back first.

Docker Compose and the ways to the database and to the unpublished server are
:mod:`.compose_commands`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from .. import versions
from ..errors import LettaCompatError, redact
from ..paths import write_text_atomic
from .compose_commands import ComposeStackError, StackCommands
from .compose_deployment import ComposeDeployment, read_deployment
from .rollback import rollback
from .upgrade import (UpgradeRequest, apply_upgrade, assess, ensure_backup, finish_upgrade, format_plan,
                      server_version)
from .verify import verify

Progress = Callable[[str], None]
STATE_FILE = "compose-upgrade.json"
PIN_BEFORE = "pin.before-upgrade"  # the pin's line as it was
UNFINISHED = ("stopped", "pinned", "rollback-failed")  # phases after which the stack may be down or half-migrated


class ComposeUpgradeError(ComposeStackError):
    """A compose upgrade that could not go on; the stack runs the old release (see the message)."""


class RehearsalNotIntact(ComposeUpgradeError):
    """--rehearse found what the upgrade would lose or change: nothing was changed."""


@dataclass
class ComposeUpgradeRequest:
    file: Path
    to_version: str
    backup_dir: Path
    cache: Path
    service: str | None = None
    rehearse: bool = False  # rehearse on a snapshot of the stack's database first (on this machine)


# -- the pin -------------------------------------------------------------------------------------
def _write_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ending = lines[number - 1][len(lines[number - 1].rstrip("\r\n")):]
    lines[number - 1] = text + ending
    write_text_atomic(path, "".join(lines), mode=path.stat().st_mode & 0o777)  # a 0600 .env stays 0600


def rewrite_pin(deployment: ComposeDeployment, to_version: str, backup_dir: Path) -> str:
    """Change the one line that pins the release; that line as it was is kept in the backup
    directory (``pin.before-upgrade``). Returns the new line."""
    pin = deployment.pin
    # the line as it was, never a copy of the whole file: an .env holds passwords
    write_text_atomic(backup_dir / PIN_BEFORE, f"{pin.file}:{pin.line}: {pin.text}\n", mode=0o600)
    new = pin.rewritten(deployment.version, to_version)
    _write_line(pin.file, pin.line, new)
    return new


def restore_pin(deployment: ComposeDeployment) -> None:
    _write_line(deployment.pin.file, deployment.pin.line, deployment.pin.text)


# -- the run ------------------------------------------------------------------------------------
class ComposeUpgrade:
    def __init__(self, request: ComposeUpgradeRequest, progress: Progress = print):
        self.request, self.progress = request, progress
        request.backup_dir = Path(request.backup_dir)
        self.workdir = request.backup_dir  # the run's log and state, and the pin as it was
        self.backup = request.backup_dir / "backup"  # the verified backup: every agent and the pg_dump
        self.state_path = self.workdir / STATE_FILE
        self.deployment = read_deployment(request.file, request.service)
        self.interrupted = self._interrupted()
        if self.interrupted is not None:  # the file may pin the target already: the stack as it was before
            pin = dataclasses.replace(self.deployment.pin, file=Path(self.interrupted["pin_file"]),
                                      line=int(self.interrupted["pin_line"]), text=self.interrupted["pin_text"])
            self.deployment = dataclasses.replace(self.deployment, version=self.interrupted["from"], pin=pin)
        self._check_target()

    def _interrupted(self) -> dict | None:
        """The state a killed run left (after it stopped the service and before it finished or
        rolled back), or None."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        same = state.get("file") == str(self.deployment.file)
        return state if same and state.get("phase") in UNFINISHED else None

    def _check_target(self) -> None:
        d, to = self.deployment, self.request.to_version
        versions.require_server_release(to, "--to")
        if Version(to) < Version(d.version):
            raise ComposeUpgradeError(f"--to {to} is older than the Letta {d.version} service `{d.service}` of "
                                      f"{d.file} runs: a downgrade cannot run a newer schema. To go back, use "
                                      "`letta-compat rollback` with the backup taken before the upgrade.")
        if to == d.version:
            raise ComposeUpgradeError(f"service `{d.service}` of {d.file} already runs Letta {to}: nothing to do.")

    def _upgrade_request(self, dsn: str, url: str) -> UpgradeRequest:
        d = self.deployment
        return UpgradeRequest(d.version, self.request.to_version, dsn, url, self.backup, self.request.cache,
                              api_key=d.password, encryption_key=d.encryption_key,
                              encryption_key_source=f"service `{d.service}` of {d.file.name}")

    def _stack_facts(self, dsn_source: str, url: str | None) -> list[str]:
        d = self.deployment
        pin = d.pin
        where = (f"${pin.variable} in {pin.file}:{pin.line}" if pin.variable else f"{pin.file}:{pin.line}")
        return [f"Compose stack {d.file} (project {d.project})",
                f"  Letta:    service `{d.service}`, {d.image} (release {d.version}, pinned at {where}), "
                f"{url or 'not answering'}",
                f"  database: {('service `' + d.database.service + '`') if d.database.service else d.database.host}, "
                f"database {d.database.name}, reached {dsn_source}"]

    def plan(self) -> str:
        commands = StackCommands(self.deployment, self._log_path())
        try:
            if self.interrupted is not None:
                return (f"A previous run of this upgrade stopped at `{self.interrupted['phase']}` without finishing "
                        f"(killed?). With --apply, this command first puts the stack back on Letta "
                        f"{self.deployment.version} (the database from {self.backup}, the pin, the "
                        "service), verifies every agent, then upgrades again.")
            dsn = commands.database_dsn()
            url = commands.letta_url() or "http://127.0.0.1:9"
            found = assess(self._upgrade_request(dsn, url))
            lines = self._stack_facts(self._reached(commands), commands.letta_url())
            lines.append(format_plan(found))
            if self.request.rehearse:
                lines += self._rehearsal(dsn, found.request.encryption_key)
            lines.append(f"With --apply: back up, stop `{self.deployment.service}`, migrate, pin "
                         f"{self.request.to_version} in {self.deployment.pin.file.name}, start it with no port "
                         "published, verify every agent, then open its port; on any failure the database, the pin "
                         "and the old service come back by themselves (clients meet a closed port until then).")
            return redact("\n".join(lines))
        finally:
            commands.close()

    def _rehearsal(self, dsn: str, encryption_key: str | None) -> list[str]:
        """`letta-compat rehearse` on a snapshot of the stack's database (read once, never changed),
        on this machine; its report's lines. ComposeUpgradeError when the letta-compat path is
        not intact: nothing has been changed then."""
        from ..report.rehearsal import format_report
        from .rehearse import rehearse
        from .rehearse_request import RehearsalRequest

        to = self.request.to_version
        self.progress(f"rehearsing Letta {self.deployment.version} -> {to} on a snapshot of the stack's database "
                      "(on this machine; the stack is only read)")
        report = rehearse(RehearsalRequest(targets=[to], cache=self.request.cache, dsn=dsn,
                                           encryption_key=encryption_key), progress=self.progress)
        lines = list(format_report(report))
        if not report.intact:
            raise RehearsalNotIntact("\n".join(lines) + f"\nThe rehearsal of {to} on a snapshot of this stack's "
                                      "database is NOT intact (above): nothing was changed.")
        return lines

    def _reached(self, commands: StackCommands) -> str:
        return "through a relay on 127.0.0.1 (it publishes no port)" if commands.relayed else "through its published port"

    def _log_path(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.workdir, 0o700)
        return self.workdir / "compose-upgrade.log"

    def _state(self, phase: str, **extra) -> None:
        data = {"phase": phase, "file": str(self.deployment.file), "from": self.deployment.version,
                "to": self.request.to_version, "pin_file": str(self.deployment.pin.file),
                "pin_line": self.deployment.pin.line, "pin_text": self.deployment.pin.text, **extra}
        write_text_atomic(self.state_path, json.dumps(data, indent=2), mode=0o600)

    def apply(self) -> str:
        """Carry it out; the message of a good end. A failure raises ComposeUpgradeError after
        the stack is back on the old release."""
        commands = StackCommands(self.deployment, self._log_path())
        try:
            return self._apply(commands)
        finally:
            commands.close()

    def _apply(self, commands: StackCommands) -> str:
        d, to, progress = self.deployment, self.request.to_version, self.progress
        commands.sweep()  # a killed run's relays and unpublished server
        if self.interrupted is not None:
            self._undo_interrupted(commands)
        url = commands.letta_url()
        if url is None or server_version(url, d.password) != d.version:
            raise ComposeUpgradeError(f"service `{d.service}` of {d.file} does not answer as Letta {d.version} "
                                      f"{'at ' + url if url else '(it publishes no port for 8283, or it is stopped)'}"
                                      ": start it as it runs today (`docker compose up -d`), then run this again.")
        dsn = commands.database_dsn()
        request = self._upgrade_request(dsn, url)
        if self.request.rehearse:
            for line in self._rehearsal(dsn, request.encryption_key):
                progress(line)
        progress(f"1/7 backup: every agent of {url} and the database into {self.backup}")
        ensure_backup(assess(request, with_backup=False), progress)
        self._state("backed-up")
        progress(f"2/7 stop: docker compose stop {d.service}")
        commands.stop_letta()
        self._state("stopped")
        step = "migrate"
        try:
            progress(f"3/7 migrate: Letta {d.version} -> {to}")
            outcome = apply_upgrade(request, progress=progress)
            step = "pin"
            new_line = rewrite_pin(d, to, self.workdir)
            self._state("pinned")
            progress(f"4/7 pin: {d.pin.file}:{d.pin.line} now reads `{new_line.strip()}` (before: "
                     f"{self.workdir / PIN_BEFORE})")
            step = "start"
            progress(f"5/7 start: Letta {to} unpublished (docker compose run --no-deps {d.service}: no port, "
                     "clients still meet a closed one)")
            request.url = commands.wait_healthy(to, d.password, url=commands.start_unpublished())
            step = "verify"
            progress(f"6/7 verify every agent of the backup on Letta {to} (through a relay of ours)")
            report = finish_upgrade(request, progress=progress)
            if not report.ok:
                raise ComposeUpgradeError("verify found agents that differ from the backup:\n" + report.format_table())
            step = "open"
            progress(f"7/7 open: verified; docker compose up -d --no-deps {d.service} (its port opens)")
            commands.remove_unpublished()
            commands.start_letta()
            commands.wait_healthy(to, d.password)
        except (LettaCompatError, OSError) as exc:
            self._roll_back(commands, dsn, step, exc)
        self._state("done", revision=outcome.revision)
        return (f"Letta {to} runs service `{d.service}` of {d.file} on the migrated database "
                f"({outcome.revision}); every agent of the backup verified. Backup: {self.backup}")

    def _roll_back(self, commands: StackCommands, dsn: str, step: str, cause: BaseException) -> None:
        d, progress = self.deployment, self.progress
        progress(f"FAILED at {step}: {redact(str(cause)).splitlines()[0] if str(cause) else type(cause).__name__}")
        progress(f"rolling back: stop {d.service}, restore the database from the backup, pin {d.version}, start, verify")
        try:
            commands.stop_letta()
            rollback(dsn, self.backup, cache=self.request.cache, progress=progress)
            restore_pin(d)
            commands.start_letta()
            url = commands.wait_healthy(d.version, d.password)
            report = verify(url, self.backup, api_key=d.password)
        except (LettaCompatError, OSError) as again:
            self._state("rollback-failed", step=step)
            raise ComposeUpgradeError(
                f"The upgrade failed at {step} ({redact(str(cause)).splitlines()[0]}), and so did the rollback: "
                f"{redact(str(again)).splitlines()[0]}. The backup in {self.backup} is intact; put it "
                f"back with `letta-compat rollback --backup {self.backup}` and pin {d.version} in "
                f"{d.pin.file}. Logs: {commands.log}") from None
        self._state("rolled-back", step=step)
        agents = f"{len(report.rows)} agents verified" if report.ok else "verify found differences:\n" + report.format_table()
        raise ComposeUpgradeError(
            f"The upgrade to {self.request.to_version} failed at {step}: {redact(str(cause)).splitlines()[0]}\n"
            f"The stack is back on Letta {d.version} (database restored from the backup, pin put back): {agents}. "
            f"Logs: {commands.log} and {self.backup / ('upgrade-to-' + self.request.to_version + '.log')}")

    def _undo_interrupted(self, commands: StackCommands) -> None:
        """A killed run stopped the service (and may have migrated or re-pinned): put the
        database, the pin and the old service back, verified, before upgrading again."""
        d, progress = self.deployment, self.progress
        progress(f"a previous run of this upgrade stopped at `{self.interrupted['phase']}` without finishing (killed?): "
                 f"putting the stack back on Letta {d.version} first")
        commands.stop_letta()
        restore_pin(d)
        rollback(commands.database_dsn(), self.backup, cache=self.request.cache, progress=progress)
        commands.start_letta()
        url = commands.wait_healthy(d.version, d.password)
        report = verify(url, self.backup, api_key=d.password)
        if not report.ok:
            raise ComposeUpgradeError("after putting the stack back, verify found agents that differ from the "
                                      "backup:\n" + report.format_table())
        self._state("rolled-back", step=self.interrupted["phase"])
        progress(f"the stack is back on Letta {d.version}, {len(report.rows)} agents verified; upgrading again")
        self.interrupted = None
