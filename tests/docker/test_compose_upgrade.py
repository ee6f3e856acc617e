"""`letta-compat upgrade --compose FILE --to V`: a real compose stack in Letta's own layout (its
compose.yaml and init.sql, taken from the letta sdist at run time; a named volume; an .env)
upgraded in one command, and a stack whose migration fails put back by itself.

No registry is reachable in CI: the images built by .ci/docker-images.sh are tagged as the
official names the stack uses (letta/letta:<release>, ankane/pgvector:v0.5.1) for these tests.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pytest_letta_compat import versions
from pytest_letta_compat.backends.docker.compose_stack import compose_command
from pytest_letta_compat.backends.docker.images import LOCAL_PGVECTOR, local_letta
from pytest_letta_compat.provision.install import sdist_bytes
from pytest_letta_compat.errors import LettaCompatError
from pytest_letta_compat.rest.agents import create_agent
from pytest_letta_compat.rest.client import LettaAPI
from pytest_letta_compat.suite.cli import letta_compat

OLD, NEW = "0.11.3", "0.16.8"
SECRET = "tool-var-" + secrets.token_hex(6)
TOOL_SOURCE = '''def weather(city: str) -> str:
    """Weather in a city.

    Args:
        city: the city

    Returns:
        str: the weather
    """
    import os
    return os.environ.get("WEATHER_TOKEN", "")[:3] + city
'''


# Letta's own agent files (its tests/test_agent_files/), in the legacy format 0.11.x imports
AGENT_FILES = ("customer_service.af", "memgpt_agent_with_convo.af", "deep-thought.af")


def official_files(*names: str) -> tuple[str, ...]:
    """Files of the letta sdist the migrations come from (checksum-verified), by path inside it."""
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes(versions.MIGRATIONS_SOURCE)), mode="r:gz") as tar:
        prefix = f"letta-{versions.MIGRATIONS_SOURCE}/"
        return tuple(tar.extractfile(prefix + name).read().decode() for name in names)


def operator_layout(compose: str, *, pin_in_env: bool) -> str:
    """Letta's compose.yaml as an operator runs it: Letta pinned (in .env, or in the file), no
    nginx, the data in a named volume, Letta on an ephemeral loopback port, the database port
    not published (the upgrade must reach it through the compose network)."""
    compose = compose.replace("image: letta/letta:latest",
                              "image: letta/letta:${LETTA_VERSION}" if pin_in_env else f"image: letta/letta:{OLD}")
    compose = compose.replace("./.persist/pgdata:/var/lib/postgresql/data", "pgdata:/var/lib/postgresql/data")
    compose = compose.replace('      - "${LETTA_PG_PORT:-5432}:5432"\n', "")
    compose = compose.replace('      - "8083:8083"\n', "").replace('"8283:8283"', '"127.0.0.1::8283"')
    compose = compose.split("  letta_nginx:")[0] + "volumes:\n  pgdata: {}\n"
    if len(compose_command()) == 1:  # docker-compose v1 cannot nest ${...} in a default: its operators write it flat
        compose = compose.replace("${LETTA_PG_URI:-postgresql://${LETTA_PG_USER:-letta}:${LETTA_PG_PASSWORD:-letta}@"
                                  "${LETTA_DB_HOST:-letta-db}:${LETTA_PG_PORT:-5432}/${LETTA_PG_DB:-letta}}",
                                  "postgresql://${LETTA_PG_USER:-letta}:${LETTA_PG_PASSWORD:-letta}@letta-db:5432/"
                                  "${LETTA_PG_DB:-letta}")
    assert "127.0.0.1::8283" in compose and "pgdata: {}" in compose, compose
    return compose.replace("    ports:\n    healthcheck:", "    healthcheck:")


def tag_standins() -> None:
    for source, official in ((local_letta(OLD), f"letta/letta:{OLD}"), (local_letta(NEW), f"letta/letta:{NEW}"),
                             (LOCAL_PGVECTOR, "ankane/pgvector:v0.5.1")):
        subprocess.run(["docker", "tag", source, official], check=True, capture_output=True)


class Stack:
    def __init__(self, directory: Path, *, pin_in_env: bool):
        compose, init_sql = official_files("compose.yaml", "init.sql")
        directory.mkdir()
        self.dir, self.file = directory, directory / "compose.yaml"
        self.file.write_text(operator_layout(compose, pin_in_env=pin_in_env))
        (directory / "init.sql").write_text(init_sql)
        self.password = secrets.token_urlsafe(12)
        self.project = f"lettaupgrade{uuid.uuid4().hex[:8]}"
        env = [f"COMPOSE_PROJECT_NAME={self.project}", f"LETTA_PG_PASSWORD={secrets.token_urlsafe(12)}",
               "SECURE=true", f"LETTA_SERVER_PASSWORD={self.password}"]
        if pin_in_env:
            env.append(f"LETTA_VERSION={OLD}")
        (directory / ".env").write_text("\n".join(env) + "\n")
        self.compose = [*compose_command(), "-f", str(self.file), "-p", self.project]

    def run(self, *args: str) -> str:
        proc = subprocess.run([*self.compose, *args], capture_output=True, text=True, cwd=self.dir, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def url(self) -> str:
        return "http://127.0.0.1:" + self.run("port", "letta_server", "8283").strip().rsplit(":", 1)[-1]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url(), headers={"Authorization": f"Bearer {self.password}"}, timeout=120)

    def wait(self, version: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.client() as client:
                    if client.get("/v1/health/").json().get("version") == version:
                        return
            except (httpx.HTTPError, ValueError, AssertionError):
                pass
            state = subprocess.run([*self.compose, "ps", "letta_server"], capture_output=True, text=True, cwd=self.dir)
            if " Exit " in state.stdout or "exited" in state.stdout.lower():
                break  # it stopped: no point waiting
            time.sleep(2)
        raise AssertionError(f"Letta {version} never answered: {self.run('logs', '--tail', '60', 'letta_server')}")

    def agents(self) -> dict[str, dict]:
        with self.client() as client:
            listed = client.get("/v1/agents/", params={"limit": 100}).raise_for_status().json()
            return {a["name"]: a for a in listed}

    def messages(self, agent_id: str) -> list[str]:
        with self.client() as client:
            got = client.get(f"/v1/agents/{agent_id}/messages", params={"limit": 1000}).raise_for_status().json()
            return sorted(m["id"] for m in got)


def seed(stack: Stack) -> dict[str, str]:
    """What an operator has: a "/" in a name (refused at create since 0.13: patched), a tool
    with an environment variable, a plain agent."""
    llm = "http://127.0.0.1:9/v1"  # never called: nothing here sends a message
    with stack.client() as client:
        slash = create_agent(client, "AI-ML Expert", llm)
        client.patch(f"/v1/agents/{slash['id']}", json={"name": "AI/ML Expert"}).raise_for_status()
        tool = client.post("/v1/tools/", json={"source_code": TOOL_SOURCE}).raise_for_status().json()
        user = create_agent(client, "tool-user", llm, tool_exec_environment_variables={"WEATHER_TOKEN": SECRET})
        client.patch(f"/v1/agents/{user['id']}/tools/attach/{tool['id']}").raise_for_status()
        plain = create_agent(client, "plain", llm)
    return {"AI/ML Expert": slash["id"], "tool-user": user["id"], "plain": plain["id"]}


def import_letta_agent_files(stack: Stack) -> dict[str, str]:
    """Letta's own agent files imported into the old server: {name: id} of those it took."""
    imported = {}
    with LettaAPI(stack.url(), api_key=stack.password) as api:
        for text in official_files(*(f"tests/test_agent_files/{name}" for name in AGENT_FILES)):
            try:
                agent_id = api.import_agent(json.loads(text))
            except LettaCompatError:
                continue  # a file of a format this release does not take
            imported[api.agent(agent_id)["name"]] = agent_id
    assert imported, f"Letta {OLD} imported none of Letta's agent files {AGENT_FILES}"
    return imported


@pytest.fixture
def stack_factory(docker, tmp_path):
    tag_standins()
    made: list[Stack] = []

    def make(name: str, *, pin_in_env: bool) -> Stack:
        stack = Stack(tmp_path / name, pin_in_env=pin_in_env)
        made.append(stack)
        stack.run("up", "-d")
        stack.wait(OLD)
        return stack

    yield make
    left = []
    for stack in made:
        relays = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.letta-compat.relay={stack.project}"],
                                capture_output=True, text=True).stdout.split()
        left += relays
        subprocess.run(["docker", "rm", "-f", *relays], capture_output=True) if relays else None
        subprocess.run([*stack.compose, "down", "-v", "--remove-orphans"], capture_output=True, cwd=stack.dir)
    assert not left, f"relays or unpublished servers left running after the commands ended: {left}"


class Client(threading.Thread):
    """A client of the stack while the upgrade runs (as lettabot#342's bot): every moment, the
    stack's published port, the release answering there and ``GET /v1/agents/{id}``'s status;
    ``seen`` is [(monotonic time of the answer, release or None, status or None)], None where nothing
    answered."""

    def __init__(self, stack: Stack, agent_id: str):
        super().__init__(daemon=True)
        self.stack, self.agent_id, self.seen = stack, agent_id, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            release, status = None, None
            port = subprocess.run([*self.stack.compose, "port", "letta_server", "8283"], capture_output=True,
                                  text=True, cwd=self.stack.dir).stdout.strip().rsplit(":", 1)[-1]
            if port.isdigit() and port != "0":
                try:
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5,
                                      headers={"Authorization": f"Bearer {self.stack.password}"}) as client:
                        release = client.get("/v1/health/").json().get("version")
                        status = client.get(f"/v1/agents/{self.agent_id}").status_code
                except (httpx.HTTPError, ValueError):
                    pass
            self.seen.append((time.monotonic(), release, status))  # when the answer came
            time.sleep(0.5)


def apply_argv(stack: Stack, backup: Path, cache: Path) -> list[str]:
    """``letta-compat upgrade --compose FILE --to NEW --backup DIR --apply``, to run as a process of its own."""
    return [sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir", str(cache), "upgrade", "--compose",
            str(stack.file), "--to", NEW, "--backup", str(backup), "--apply"]


def upgrade_watched(stack: Stack, backup: Path, agent_id: str, *, cache: Path) -> tuple[int, list, list]:
    """``upgrade --compose --apply`` with a client polling the stack throughout: (exit status,
    [(time, line printed)], the client's ``seen``)."""
    client = Client(stack, agent_id)
    client.start()
    try:
        proc = subprocess.Popen(apply_argv(stack, backup, cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        lines = [(time.monotonic(), line) for line in proc.stdout]
        proc.wait(timeout=60)
    finally:
        client.done.set()
        client.join(timeout=60)
    return proc.returncode, lines, client.seen


def upgrade(stack: Stack, backup: Path, *extra: str, cache: Path) -> subprocess.CompletedProcess:
    return letta_compat("upgrade", "--compose", str(stack.file), "--to", NEW, "--backup", str(backup), *extra,
                        cache=cache, timeout=1800)


def test_compose_stack_upgrades_in_one_command(stack_factory, letta_backend, tmp_path):
    stack = stack_factory("good", pin_in_env=True)
    seeded = {**seed(stack), **import_letta_agent_files(stack)}
    before = {name: stack.messages(agent_id) for name, agent_id in seeded.items()}
    backup = tmp_path / "backup"

    # `backup --compose` finds the server, its password and the database as the upgrade does
    alone = letta_compat("backup", "--compose", str(stack.file), "--out", str(tmp_path / "alone"),
                         cache=letta_backend.cache)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    manifest = json.loads((tmp_path / "alone" / "manifest.json").read_text())
    assert sorted(a["name"] for a in manifest["agents"]) == sorted(seeded)
    assert (tmp_path / "alone" / "database.dump").stat().st_size > 0

    dry = upgrade(stack, backup, "--rehearse", cache=letta_backend.cache)  # the plan, and a rehearsal on a snapshot
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"Letta {NEW}, letta-compat path: INTACT" in dry.stdout, dry.stdout
    assert "Dry run" in dry.stdout and f"LETTA_VERSION in {stack.dir / '.env'}" in dry.stdout, dry.stdout
    assert "through a relay" in dry.stdout
    assert f"LETTA_VERSION={OLD}" in (stack.dir / ".env").read_text()

    status, lines, seen = upgrade_watched(stack, backup, seeded["tool-user"], cache=letta_backend.cache)
    output = "".join(line for _, line in lines)
    assert status == 0, output
    assert f"LETTA_VERSION={NEW}" in (stack.dir / ".env").read_text()
    # lettabot#342: a client never hears "agent gone", and never meets the new release before it was verified
    stopped = next(t for t, line in lines if line.startswith("2/7 stop"))
    opened = next(t for t, line in lines if line.startswith("7/7 open"))
    assert not [s for s in seen if s[2] == 404], seen
    assert [s for s in seen if stopped < s[0] < opened and s[1] is None], "the client did not poll while it was down"
    early = [s for s in seen if s[1] == NEW and s[0] < opened]
    assert not early, f"the client met Letta {NEW} before it was verified: {early[:3]} (opened at {opened})"
    stack.wait(NEW)
    after = stack.agents()
    assert {name: after[name]["id"] for name in seeded} == seeded  # same agents, same ids, "/" kept
    assert all(set(before[name]) <= set(stack.messages(agent_id)) for name, agent_id in seeded.items())
    with stack.client() as client:
        variables = client.get(f"/v1/agents/{seeded['tool-user']}").json()["tool_exec_environment_variables"]
    assert {v["key"]: v["value"] for v in variables} == {"WEATHER_TOKEN": SECRET}  # readable, not "<encrypted>"
    planned = letta_compat("move-to-local", "--compose", str(stack.file), "--letta-code", "0.34.12", "--storage-dir",
                           str(tmp_path / "local"), "--dry-run", cache=letta_backend.cache)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert all(name in planned.stdout for name in seeded), planned.stdout
    assert oct(backup.stat().st_mode & 0o777) == "0o700" and (backup / "backup" / "manifest.json").is_file()
    for secret in (stack.password, SECRET):
        assert secret not in output
        assert not any(secret in p.read_text(errors="replace") for p in backup.rglob("*.log"))


def test_a_failing_migration_puts_the_stack_back_by_itself(stack_factory, letta_backend, tmp_path):
    stack = stack_factory("failing", pin_in_env=False)
    seeded = seed(stack)
    # a leftover of a failed earlier attempt: a table a later migration creates
    stack.run("exec", "-T", "letta_db", "psql", "-U", "letta", "-d", "letta", "-v", "ON_ERROR_STOP=1", "-c",
              "CREATE TABLE letta.run_metrics (id text PRIMARY KEY)")
    applied = upgrade(stack, tmp_path / "backup", "--apply", cache=letta_backend.cache)
    output = applied.stdout + applied.stderr
    assert applied.returncode == 1, output
    assert "failed at migrate" in output and f"back on Letta {OLD}" in output, output
    assert f"image: letta/letta:{OLD}" in stack.file.read_text()
    stack.wait(OLD)
    assert {name: a["id"] for name, a in stack.agents().items()} == seeded
    assert "Traceback" not in output and stack.password not in output


def alembic_running_in(session: int) -> bool:
    """Whether an `alembic upgrade` runs in the process session ``session``."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getsid(int(proc.name)) == session:
                if b"alembic" in (proc / "cmdline").read_bytes() and b"upgrade" in (proc / "cmdline").read_bytes():
                    return True
        except (OSError, ProcessLookupError):
            continue
    return False


def test_a_run_killed_mid_migration_is_undone_by_the_next_run(stack_factory, letta_backend, tmp_path):
    """SIGKILL while alembic migrates (the service stopped, the database half-way): the state file
    says so, and the same command run again puts the stack back on the old release, verified,
    then upgrades it."""
    stack = stack_factory("killed", pin_in_env=True)
    seeded = seed(stack)
    work = tmp_path / "backup"
    killed = subprocess.Popen(apply_argv(stack, work, letta_backend.cache), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while not alembic_running_in(killed.pid):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read()
        time.sleep(0.05)
    time.sleep(1.0)  # inside the migration: some revisions applied, not all
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert json.loads((work / "compose-upgrade.json").read_text())["phase"] == "stopped"

    again = upgrade(stack, work, "--apply", cache=letta_backend.cache)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert "stopped at `stopped` without finishing" in output and f"back on Letta {OLD}" in output, output
    assert f"LETTA_VERSION={NEW}" in (stack.dir / ".env").read_text()
    stack.wait(NEW)
    assert {name: a["id"] for name, a in stack.agents().items()} == seeded
