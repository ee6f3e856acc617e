"""What a Letta database holds, agent by agent, and how two such inventories differ.

An inventory has two sources, merged into one ``AgentFacts`` per agent:

* SQL on the database itself (always): stored messages per role (the non-deleted rows of
  ``messages``: one aggregate query however long the histories are), archival passages,
  attached sources, hidden flags, and, when no server of that release can run, the
  names, blocks, tools and tool environment variables as stored;
* the REST API of a server running on it (when one can): names, memory blocks, tools and
  tool environment variables *as a client sees them*, and whether the history is readable.

Secrets (tool environment variable values) are kept as sha256 digests in memory only;
reports carry their keys and whether they were readable, never values or digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg import sql

from ..rest.agents import blocks_of
from ..rest.client import LettaAPI, LettaAPIError
from ..schema.inspect import table_columns

PLACEHOLDER = "<encrypted>"  # what Letta 0.16.x returns for a secret it does not read
NOT_CHECKED = "not checked"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Secret:
    """A secret's state, never its value: ``readable`` with a digest, the placeholder, or
    ``not checked`` (stored encrypted, and no key was named)."""

    state: str  # "readable" | "placeholder" | "not checked" | "empty"
    sha256: str | None = None

    @classmethod
    def of(cls, value: str | None) -> "Secret":
        if value is None or value == "":
            return cls("empty")
        if value == PLACEHOLDER:
            return cls("placeholder")
        return cls("readable", digest(value))


@dataclass
class AgentFacts:
    id: str
    name: str
    hidden: bool = False
    listed: bool = True  # the API lists it (False: only SQL or GET by id finds it)
    stored_messages: int = 0
    messages_by_role: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, tuple[int, str]] = field(default_factory=dict)  # label -> (length, sha256)
    tools: list[str] = field(default_factory=list)
    archival_passages: int = 0
    runs: int = 0  # the run history a client can list (old releases: runs kept as rows of jobs)
    steps: int = 0  # the agent's recorded steps (each LLM call of a run, with its token usage)
    embedding: str | None = None  # "<endpoint type>/<model>" archival memory embeds with
    pending_approvals: int = 0  # tool calls waiting for a person: every new message answers 409 until answered
    sources: int = 0
    env_vars: dict[str, Secret] = field(default_factory=dict)
    history_readable: bool | None = None  # None: not asked (no API)
    via: str = "sql"

    def summary(self) -> dict[str, Any]:
        """The report's ``before``/``after``: counts and names, no secret, no block text."""
        return {"name": self.name, "stored_messages": self.stored_messages,
                "messages_by_role": dict(sorted(self.messages_by_role.items())),
                "blocks": {label: length for label, (length, _) in sorted(self.blocks.items())},
                "tools": self.tools, "archival_passages": self.archival_passages, "runs": self.runs,
                "steps": self.steps,
                "embedding": self.embedding, "pending_approvals": self.pending_approvals,
                "sources": self.sources,
                "tool_env_vars": {k: s.state for k, s in sorted(self.env_vars.items())},
                "hidden": self.hidden, "history_readable": self.history_readable, "via": self.via}


@dataclass
class Inventory:
    agents: dict[str, AgentFacts]
    server: dict[str, list[str]]  # "tools", "identities", "mcp_servers", "providers" -> names; "blocks" -> [count];
    # "mcp_server_tools" -> "<MCP server>/<tool>" each MCP server lists
    via: str

    @property
    def messages(self) -> int:
        return sum(a.stored_messages for a in self.agents.values())


# -- SQL -----------------------------------------------------------------------------------
def _alive(columns: Collection[str], alias: str = "") -> str:
    return f"NOT {alias}is_deleted" if "is_deleted" in columns else "TRUE"


def _embedding(column: str) -> str:
    """SQL for "<endpoint type>/<model>" of an embedding_config column (NULL when it says none)."""
    return (f"nullif(concat_ws('/', {column}::jsonb->>'embedding_endpoint_type', {column}::jsonb->>'embedding_model'), "
            "'')")


def sql_inventory(conn: psycopg.Connection, schema: str) -> Inventory:
    """Everything the database itself says, in a handful of aggregate queries."""
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    agent_cols = table_columns(conn, "agents")
    hidden = "coalesce(hidden, false)" if "hidden" in agent_cols else "false"
    agents = {row[0]: AgentFacts(row[0], row[1], hidden=row[2]) for row in conn.execute(
        f"SELECT id, name, {hidden} FROM agents WHERE {_alive(agent_cols)} ORDER BY created_at, id")}
    if "embedding_config" in agent_cols:
        # archival memory embeds with the agent's own, and from 0.13.0 (migration f6cd5a1e519d) with its archive's
        for agent_id, embedding, _ in conn.execute(
                f"SELECT id, {_embedding('embedding_config')}, 0 FROM agents"
                + (f" UNION ALL SELECT aa.agent_id, {_embedding('a.embedding_config')}, 1 FROM archives_agents aa "
                   "JOIN archives a ON a.id = aa.archive_id" if "embedding_config" in table_columns(conn, "archives")
                   else "") + " ORDER BY 3"):  # the archive's last: it is the one used
            if agent_id in agents:
                agents[agent_id].embedding = embedding
    message_cols = table_columns(conn, "messages")
    if "message_ids" in agent_cols and "tool_calls" in message_cols:  # the last in-context message asks approval
        for agent_id, calls in conn.execute(
                "SELECT a.id, jsonb_array_length(m.tool_calls::jsonb) FROM agents a "
                "JOIN messages m ON m.id = a.message_ids::jsonb->>-1 WHERE m.role::text = 'approval' "
                "AND jsonb_typeof(m.tool_calls::jsonb) = 'array'"):
            if agent_id in agents:
                agents[agent_id].pending_approvals = calls
    for agent_id, role, count in conn.execute(
            f"SELECT agent_id, role, count(*) FROM messages WHERE {_alive(message_cols)} GROUP BY 1, 2"):
        if agent_id in agents:
            agents[agent_id].messages_by_role[str(role)] = count
            agents[agent_id].stored_messages += count
    block_cols = table_columns(conn, "block")
    for agent_id, label, value in conn.execute(
            f"SELECT ba.agent_id, b.label, b.value FROM blocks_agents ba JOIN block b ON b.id = ba.block_id "
            f"WHERE {_alive(block_cols, 'b.')}"):
        if agent_id in agents:
            agents[agent_id].blocks[label] = (len(value or ""), digest(value or ""))
    tool_cols = table_columns(conn, "tools")
    for agent_id, name in conn.execute(
            f"SELECT ta.agent_id, t.name FROM tools_agents ta JOIN tools t ON t.id = ta.tool_id "
            f"WHERE {_alive(tool_cols, 't.')} ORDER BY t.name"):
        if agent_id in agents:
            agents[agent_id].tools.append(name)
    if table_columns(conn, "archives_agents"):
        passage_cols = table_columns(conn, "archival_passages")
        for agent_id, count in conn.execute(
                f"SELECT aa.agent_id, count(p.id) FROM archives_agents aa JOIN archival_passages p "
                f"ON p.archive_id = aa.archive_id AND {_alive(passage_cols, 'p.')} GROUP BY 1"):
            if agent_id in agents:
                agents[agent_id].archival_passages = count
    for agent_id, count in conn.execute(f"SELECT agent_id, count(*) FROM ({runs_query(conn)}) r GROUP BY 1"):
        if agent_id in agents:
            agents[agent_id].runs = count
    if "agent_id" in table_columns(conn, "steps"):
        for agent_id, count in conn.execute("SELECT agent_id, count(*) FROM steps GROUP BY 1"):
            if agent_id in agents:
                agents[agent_id].steps = count
    for agent_id, count in conn.execute("SELECT agent_id, count(*) FROM sources_agents GROUP BY 1"):
        if agent_id in agents:
            agents[agent_id].sources = count
    env_cols = table_columns(conn, "agent_environment_variables")
    encrypted = "value_enc" if "value_enc" in env_cols else "NULL"
    for agent_id, key, value, value_enc in conn.execute(
            f"SELECT agent_id, key, value, {encrypted} FROM agent_environment_variables "
            f"WHERE {_alive(env_cols)}"):
        if agent_id in agents:
            # stored only encrypted: this side cannot read it without the key
            agents[agent_id].env_vars[key] = Secret(NOT_CHECKED) if value_enc and not value else Secret.of(value)
    return Inventory(agents, server_objects(conn), "sql")


def old_runs(alias: str = "") -> tuple[str, str]:
    """(its agent's id, the predicate) of a run as 0.11.x keeps it: a row of ``jobs`` of type
    'run', its agent named in ``metadata_`` (``alias``: "j." for ``jobs j``)."""
    return f"{alias}metadata_::jsonb->>'agent_id'", f"{alias}job_type = 'run'"


def mcp_tool_server(alias: str = "") -> str:
    """The id of the MCP server a tool came from, as every release writes it into the tool's
    ``metadata_`` (``alias``: "t." for ``tools t``)."""
    return f"{alias}metadata_::jsonb->'mcp'->>'server_id'"


def runs_query(conn: psycopg.Connection) -> str:
    """SELECT agent_id, id, status of every run a client can list: the ``runs`` table from 0.12.0
    on; before it, the rows of ``jobs`` of type 'run' (their agent in metadata_.agent_id)."""
    if run_cols := table_columns(conn, "runs"):
        return f"SELECT agent_id, id, status FROM runs WHERE {_alive(run_cols)}"
    job_cols = table_columns(conn, "jobs")
    if {"job_type", "metadata_"} <= job_cols.keys():
        agent, is_run = old_runs()
        return f"SELECT {agent} AS agent_id, id, status FROM jobs WHERE {is_run} AND {_alive(job_cols)}"
    return "SELECT NULL AS agent_id, NULL AS id, NULL AS status WHERE false"


_SERVER_OBJECTS = (("tools", "tools", "name"), ("identities", "identities", "identifier_key"),
                   ("mcp_servers", "mcp_server", "server_name"), ("providers", "providers", "name"))


def server_objects(conn: psycopg.Connection) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, table, column in _SERVER_OBJECTS:
        cols = table_columns(conn, table)
        if column in cols:
            found[key] = sorted(r[0] for r in conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE " + _alive(cols)).format(sql.Identifier(column), sql.Identifier(table))))
    if (tools := _mcp_server_tools(conn)) is not None:
        found["mcp_server_tools"] = tools
    block_cols = table_columns(conn, "block")
    template = " AND NOT coalesce(is_template, false)" if "is_template" in block_cols else ""
    found["blocks"] = [conn.execute(f"SELECT count(*) FROM block WHERE {_alive(block_cols)}{template}").fetchone()[0]]
    return found


def _mcp_server_tools(conn: psycopg.Connection) -> list[str] | None:
    """"<MCP server>/<tool>" of every tool an MCP server lists: from 0.13.0 the pairs in
    ``mcp_tools`` (what ``GET /v1/mcp-servers/{id}/tools`` reads), before it each added tool
    naming its server in ``metadata_``. None: no MCP servers in this schema."""
    server_cols, tool_cols = table_columns(conn, "mcp_server"), table_columns(conn, "tools")
    if "server_name" not in server_cols or "metadata_" not in tool_cols:
        return None
    pairs = ("JOIN mcp_tools m ON m.tool_id = t.id JOIN mcp_server s ON s.id = m.mcp_server_id"
             if table_columns(conn, "mcp_tools") else f"JOIN mcp_server s ON s.id = {mcp_tool_server('t.')}")
    return sorted(r[0] for r in conn.execute(
        f"SELECT s.server_name || '/' || t.name FROM tools t {pairs} "
        f"WHERE {_alive(tool_cols, 't.')} AND {_alive(server_cols, 's.')}"))


# -- REST ----------------------------------------------------------------------------------
def api_inventory(api: LettaAPI, base: Inventory) -> Inventory:
    """``base`` (the SQL inventory of the same database) with what the server shows laid over it:
    names, blocks, tools and secrets as a client reads them; which agents it lists."""
    listed = {a["id"] for a in api.list_agents()}
    agents: dict[str, AgentFacts] = {}
    for agent_id, stored in base.agents.items():
        facts = AgentFacts(agent_id, stored.name, hidden=stored.hidden, listed=agent_id in listed,
                           stored_messages=stored.stored_messages, messages_by_role=dict(stored.messages_by_role),
                           archival_passages=stored.archival_passages, runs=stored.runs, steps=stored.steps,
                           sources=stored.sources,
                           embedding=stored.embedding, pending_approvals=stored.pending_approvals, via="api")
        state = api.find_agent(agent_id)
        if state is None:
            facts.via = "missing"
            agents[agent_id] = facts
            continue
        facts.name = state["name"]
        facts.blocks = {b["label"]: (len(b.get("value") or ""), digest(b.get("value") or "")) for b in blocks_of(state)}
        facts.tools = sorted(t["name"] for t in state.get("tools") or [])
        for var in state.get("tool_exec_environment_variables") or []:
            facts.env_vars[var["key"]] = Secret.of(var.get("value"))
        for key, secret in stored.env_vars.items():  # encrypted at rest and no key: the API's word is not proof
            if secret.state == NOT_CHECKED and facts.env_vars.get(key, Secret("empty")).state != "readable":
                facts.env_vars[key] = secret
        try:
            api.get(f"/v1/agents/{agent_id}/messages", limit=1)
            facts.history_readable = True
        except LettaAPIError:
            facts.history_readable = False
        agents[agent_id] = facts
    server = dict(base.server)
    if base.server.get("mcp_servers"):  # 0.16.7 on refuses to list them at private addresses (letta a882310e0)
        try:
            server["mcp_servers"] = sorted(s["server_name"] for s in api.get("/v1/mcp-servers/"))
        except LettaAPIError as exc:
            if exc.status != 404:  # 404: a release without that route (before 0.13.0) lists them elsewhere
                server["mcp_servers"] = []
    return Inventory(agents, server, f"api {api.version}")


# -- comparing -----------------------------------------------------------------------------
def compare_agent(before: AgentFacts, after: AgentFacts | None) -> tuple[str, list[str]]:
    """(verdict, differences): ``intact``, ``changed``, ``lost`` or ``hidden``. Differences name
    the field and the numbers before/after; secrets only by key."""
    if after is None or after.via == "missing":
        if after is not None and after.hidden:
            return "hidden", ["hidden by design: the target does not serve hidden agents (e.g. Letta Code "
                              "subagents from 0.16.7 on); its rows are all still in the database"]
        return "lost", ["agent: not found on the target (GET /v1/agents/{id} answers 404)"]
    diffs: list[str] = []
    if not after.listed:
        if after.hidden:
            return "hidden", ["hidden by design: the target does not list hidden agents (e.g. Letta Code subagents "
                              "from 0.16.7 on); it is still there by id"]
        diffs.append("listed: the target's agent list does not include it")
    if after.name != before.name:
        diffs.append(f"name: {after.name!r} instead of {before.name!r}")
    if after.stored_messages < before.stored_messages:
        diffs.append(f"stored_messages: {before.stored_messages} before, {after.stored_messages} after")
    for role in sorted(set(before.messages_by_role) | set(after.messages_by_role)):
        was, now = before.messages_by_role.get(role, 0), after.messages_by_role.get(role, 0)
        if now < was:
            diffs.append(f"messages[{role}]: {was} before, {now} after")
    if after.history_readable is False:
        diffs.append("history: GET /v1/agents/{id}/messages fails on the target")
    for label in sorted(set(before.blocks) | set(after.blocks)):
        if label not in after.blocks:
            diffs.append(f"blocks[{label}]: missing after ({before.blocks[label][0]} characters before)")
        elif label not in before.blocks:
            diffs.append(f"blocks[{label}]: new after ({after.blocks[label][0]} characters)")
        elif before.blocks[label] != after.blocks[label]:
            diffs.append(f"blocks[{label}]: value differs ({before.blocks[label][0]} characters before, "
                         f"{after.blocks[label][0]} after)")
    if sorted(before.tools) != sorted(after.tools):
        missing = sorted(set(before.tools) - set(after.tools))
        extra = sorted(set(after.tools) - set(before.tools))
        diffs.append(f"tools: {len(before.tools)} before, {len(after.tools)} after (missing {missing}, extra {extra})")
    if after.archival_passages < before.archival_passages:
        diffs.append(f"archival_passages: {before.archival_passages} before, {after.archival_passages} after")
    if after.embedding != before.embedding:
        diffs.append(f"embedding: {after.embedding} instead of {before.embedding} (archival memory is searched with it)")
    if after.pending_approvals != before.pending_approvals:
        diffs.append(f"pending_approvals: {before.pending_approvals} tool call(s) waiting before, "
                     f"{after.pending_approvals} after")
    if after.runs < before.runs:
        diffs.append(f"runs: {before.runs} before, {after.runs} after (GET /v1/runs?agent_id= lists only the runs after)")
    if after.steps < before.steps:
        diffs.append(f"steps: {before.steps} before, {after.steps} after")
    if after.sources != before.sources:
        diffs.append(f"sources: {before.sources} before, {after.sources} after")
    diffs += compare_secrets(before.env_vars, after.env_vars)
    return ("changed" if diffs else "intact"), diffs


def compare_secrets(before: dict[str, Secret], after: dict[str, Secret]) -> list[str]:
    diffs = []
    for key in sorted(before):
        was, now = before[key], after.get(key)
        if was.state == NOT_CHECKED or (now is not None and now.state == NOT_CHECKED):
            continue  # reported under not_checked, never as passed
        if now is None:
            diffs.append(f"tool_env_vars[{key}]: missing after")
        elif now.state == "placeholder" and was.state == "readable":
            diffs.append(f"tool_env_vars[{key}]: no longer readable (the API returns the placeholder "
                         f"{PLACEHOLDER!r} instead of the value; value masked)")
        elif was.sha256 != now.sha256:
            diffs.append(f"tool_env_vars[{key}]: the value differs (values masked)")
    return diffs


def not_checked(before: AgentFacts, after: AgentFacts | None) -> list[str]:
    keys = {k for k, s in before.env_vars.items() if s.state == NOT_CHECKED}
    if after is not None:
        keys |= {k for k, s in after.env_vars.items() if s.state == NOT_CHECKED}
    return [f"tool_env_vars[{k}]: stored encrypted; name the key with --encryption-key-env to check it"
            for k in sorted(keys)]


def compare_server(before: dict[str, list], after: dict[str, list]) -> list[str]:
    diffs = []
    for key in sorted(before):
        if key == "blocks":
            if after.get(key, [0])[0] < before[key][0]:
                diffs.append(f"blocks: {before[key][0]} before, {after.get(key, [0])[0]} after")
            continue
        missing = sorted(set(before[key]) - set(after.get(key, [])))
        if missing:
            diffs.append(f"{key}: {len(missing)} missing after ({', '.join(map(repr, missing[:10]))})")
    return diffs
