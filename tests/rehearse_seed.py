"""What the rehearse tests share (tests/tools/test_rehearse.py on the native backend,
tests/docker/test_rehearse_docker.py on docker): the seeded 0.11.3 database's names and
secrets, its seeding, and the CLI run as an operator runs it. The ``seeded`` fixture that
uses them is in tests/conftest.py."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

from pytest_letta_compat.postgres.client import pg_dump
from pytest_letta_compat.rest.agents import create_agent, empty_archive, insert_passage, send_message

OLD = "0.11.3"
SECRET = "tok-" + secrets.token_hex(12)  # the tool env var's value: must never be printed or written
SANDBOX_SECRET = "sbx-" + secrets.token_hex(12)  # a sandbox env var's value: the same
SLASH_NAME, UNICODE_NAME = "AI/ML Expert", "Café Ørsted 東京"
TOOL_SOURCE = '''def roll_dice(sides: int) -> str:
    """Roll a die.

    Args:
        sides (int): how many sides the die has

    Returns:
        str: the number rolled
    """
    return str(sides)
'''


def rehearse(cache: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """``letta-compat rehearse`` as a separate process, as an operator runs it (``env``: added
    to this environment)."""
    return subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir", str(cache),
                           "rehearse", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def duplicate_history(conn, agent_id: str, times: int) -> None:
    """Copy an agent's stored messages ``times`` times (new ids): a long history without
    minutes of real turns. The rows are the server's own, only their ids are new."""
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' "
        "AND table_schema = current_schema() AND column_name NOT IN ('id', 'sequence_id') ORDER BY ordinal_position")]
    listed = ", ".join(f'"{c}"' for c in columns)
    for _ in range(times):
        conn.execute(f"INSERT INTO messages (id, {listed}) SELECT 'message-' || gen_random_uuid(), {listed} "
                     "FROM messages WHERE agent_id = %s AND role <> 'system'", (agent_id,))


def by_name(path: dict) -> dict[str, dict]:
    return {agent["name"]: agent for agent in path["agents"]}


def seed(letta_backend, letta_server_factory, letta_fake_llm, dump: Path) -> tuple[str, dict[str, str]]:
    """(database name, agents by role) of a 0.11.3 database seeded through the real 0.11.3 API
    on the session's backend, and its custom-format dump written to ``dump``."""
    name = f"rehearse_seed_{uuid.uuid4().hex[:6]}"
    letta_backend.create_database(name, version=OLD)
    server = letta_server_factory(OLD, database=name)
    agents = {}
    with server.client() as client:
        long = create_agent(client, "long-history", letta_fake_llm.base_url)
        for turn in range(6):
            send_message(client, long["id"], f"turn {turn} before the upgrade")
        agents["long"] = long["id"]
        for key, final in (("slash", SLASH_NAME), ("unicode", UNICODE_NAME)):
            agent = create_agent(client, f"seed-{key}", letta_fake_llm.base_url)
            client.patch(f"/v1/agents/{agent['id']}", json={"name": final}).raise_for_status()
            agents[key] = agent["id"]
        # an archive left empty (0.11.x deletes passages for good): 0.13.0's migration gives it letta-free
        empty_archive(client, agents['slash'])
        tool = client.post("/v1/tools/", json={"source_code": TOOL_SOURCE})
        tool.raise_for_status()
        secretive = create_agent(client, "tool-user", letta_fake_llm.base_url,
                                 tool_exec_environment_variables={"WEATHER_TOKEN": SECRET})
        client.patch(f"/v1/agents/{secretive['id']}/tools/attach/{tool.json()['id']}").raise_for_status()
        for text in ("the launch is on Tuesday", "the password hint is a cat's name"):
            insert_passage(client, secretive["id"], text)
        agents["tools"] = secretive["id"]
        sandbox = client.post("/v1/sandbox-config/local/default").raise_for_status().json()
        client.post(f"/v1/sandbox-config/{sandbox['id']}/environment-variable",
                    json={"key": "SANDBOX_TOKEN", "value": SANDBOX_SECRET}).raise_for_status()
    server.stop()
    with letta_backend.connect(name) as conn:
        duplicate_history(conn, agents["long"], 6)
        (count,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                (agents["long"],)).fetchone()
    assert count > 120, count
    pg_dump(letta_backend.dsn(name), dump)
    return name, agents


