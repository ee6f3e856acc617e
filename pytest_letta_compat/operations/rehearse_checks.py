"""The rehearsal's comparing stage, on one upgraded copy with its target server running: every
agent against its state before, one real message with a sample of agents, and a headless
Letta Code turn that resumes an agent of the dump. Each returns what it found; the rehearsal
puts it into the path's (frozen) ``PathResult``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..report.rehearsal import PathResult
from ..rest.agents import blocks_of
from ..rest.client import LettaAPI, LettaAPIError
from .inventory import Inventory, compare_agent, compare_server, not_checked

EXCHANGE_TEXT = "letta-compat rehearsal: are you still there?"
Connect = Callable[[], AbstractContextManager[psycopg.Connection]]  # to the copy, search_path on Letta's schema


def stored_messages(connect: Connect, agent_id: str) -> int:
    with connect() as conn:
        (count,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                (agent_id,)).fetchone()
    return count


@dataclass(frozen=True)
class Comparison:
    """Every agent of the dump against its state on the upgraded copy, and the server's settings."""
    agents: tuple[dict, ...]
    not_checked: tuple[str, ...]
    server_differences: tuple[str, ...]

    @property
    def verdict(self) -> str:
        verdicts = {a["verdict"] for a in self.agents}
        if "lost" in verdicts:
            return "lost"
        return "changed" if "changed" in verdicts or self.server_differences else "intact"


def compare(before: Inventory, after: Inventory) -> Comparison:
    agents: list[dict] = []
    unchecked: list[str] = []
    for agent_id, was in before.agents.items():
        now = after.agents.get(agent_id)
        verdict, diffs = compare_agent(was, now)
        agents.append({"id": agent_id, "name": was.name, "verdict": verdict, "before": was.summary(),
                       "after": now.summary() if now else None, "differences": diffs})
        unchecked += [f"agent {was.name!r}: {line}" for line in not_checked(was, now)]
    return Comparison(tuple(agents), tuple(unchecked), tuple(compare_server(before.server, after.server)))


def after_exchange(verdict: str, entries: tuple[dict, ...]) -> str:
    """The path's verdict once a sample was talked to: an intact path whose agent did not answer
    and keep the turn is ``changed``."""
    return "changed" if verdict == "intact" and not all(e["ok"] for e in entries) else verdict


def sample(before: Inventory, compared: tuple[dict, ...], size: int) -> list:
    """The agents to talk to: the longest history, an odd name, one with secrets, then others."""
    present = [a for a in before.agents.values()
               if any(r["id"] == a.id and r["verdict"] in ("intact", "changed") for r in compared)]
    picks: list = []
    for chooser in (lambda a: a.stored_messages, lambda a: not re.fullmatch(r"[A-Za-z0-9 _-]+", a.name),
                    lambda a: bool(a.env_vars)):
        for agent in sorted(present, key=chooser, reverse=True):
            if agent not in picks and chooser(agent):
                picks.append(agent)
                break
    for agent in present:
        if len(picks) >= size:
            break
        if agent not in picks:
            picks.append(agent)
    return picks[:size]


def exchange(api: LettaAPI, connect: Connect, before: Inventory, compared: tuple[dict, ...],
             size: int) -> tuple[dict, ...]:
    """One real message (fake LLM) with a sample of the agents; each answered and stored, or not."""
    entries = []
    for agent in sample(before, compared, size):
        stored = stored_messages(connect, agent.id)
        entry = {"id": agent.id, "name": agent.name, "ok": False, "detail": ""}
        try:
            body = api.json(api.request("POST", f"/v1/agents/{agent.id}/messages",
                                        json={"messages": [{"role": "user", "content": EXCHANGE_TEXT}]}),
                            "POST", f"/v1/agents/{agent.id}/messages")
            now = stored_messages(connect, agent.id)
            replies = len(body.get("messages") or []) if isinstance(body, dict) else 0
            entry["ok"] = now > stored and replies > 0
            entry["detail"] = (f"answered with {replies} message(s); stored messages {stored} -> {now}"
                               if entry["ok"] else f"answered 200 but stored messages {stored} -> {now} "
                               f"(the new turn was not kept)")
        except LettaAPIError as exc:
            entry["detail"] = f"failed: {str(exc)[:300]}"
        entries.append(entry)
    return tuple(entries)


def letta_code_turn(install, version: str, target: str, stack, connect: Connect, result: PathResult,
                    llm_requests: list[dict], workdir: Path, say: Callable[[str], None]) -> dict[str, str]:
    """A headless Letta Code turn that resumes an agent of the dump (``--agent ID``) on the
    target running on the letta-compat path's copy: the agent with the longest history
    among those that came through. ``works`` when the turn completes on that agent and is stored."""
    from ..provision.letta_code import LettaCodeTimeout, run_letta_code

    verdict = {"version": version, "verdict": "fails", "evidence": ""}
    present = [a for a in result.agents if a["verdict"] == "intact" and a["after"] and not a["after"]["hidden"]]
    if not present:
        verdict["evidence"] = "not run: no agent of the dump came through intact to resume"
        return verdict
    agent = max(present, key=lambda a: (a["after"]["stored_messages"], a["id"]))

    def shape() -> tuple[set[str], set[str]]:  # (block labels, tool names) as a client sees them
        try:
            with LettaAPI(stack.url, api_key=stack.password) as api:
                state = api.find_agent(agent["id"]) or {}
        except LettaAPIError:
            state = {}
        return {b["label"] for b in blocks_of(state)}, {t["name"] for t in state.get("tools") or []}

    before = stored_messages(connect, agent["id"])
    with connect() as conn:
        (agent_type,) = conn.execute("SELECT agent_type::text FROM agents WHERE id = %s", (agent["id"],)).fetchone()
    shape_before = shape()
    token = f"letta-compat rehearsal, Letta Code {version}: {os.urandom(6).hex()}"
    where = workdir / f"letta-code-{version}-to-{target}"
    shown = f"agent {agent['name']!r} ({agent['id']}, {agent_type}, {before} stored messages)"
    say(f"letta-compat: Letta Code {version} resuming {shown}")
    try:
        run = run_letta_code(install, ["-p", token, "--agent", agent["id"]], base_url=stack.url,
                             api_key=stack.password, home=where / "home", cwd=where / "project", json=True)
    except LettaCodeTimeout as exc:
        verdict["evidence"] = f"resuming {shown}: {str(exc).splitlines()[0][:300]}"
        return verdict
    after = stored_messages(connect, agent["id"])
    shape_after = shape()
    changed = [f"{what} {sign}{sorted(names)}" for what, was, now in
               (("blocks", shape_before[0], shape_after[0]), ("tools", shape_before[1], shape_after[1]))
               for sign, names in (("+", now - was), ("-", was - now)) if names]
    answer = run.json if isinstance(run.json, dict) else {}
    seen = [r["body"] for r in llm_requests
            if r["path"].endswith("/chat/completions") and token in json.dumps(r["body"])]
    context = f"the model's request carried {len(seen[-1].get('messages') or [])} messages" if seen else \
        "the fake LLM received no request with the prompt"
    if seen and any(e["id"] == agent["id"] and e["ok"] for e in result.exchange):
        context += (", among them the rehearsal's earlier exchange with it" if EXCHANGE_TEXT in json.dumps(seen[-1])
                    else ", not the rehearsal's earlier exchange with it (a new conversation)")
    if run.returncode == 0 and answer.get("subtype") == "success" and answer.get("agent_id") == agent["id"] \
            and after > before:
        verdict["verdict"] = "works"
        verdict["evidence"] = (f"`letta -p ... --agent {agent['id']}` resumed {shown}: exit 0, answered "
                               f"{str(answer.get('result'))[:80]!r}, stored messages {before} -> {after}; {context}")
    else:
        got = answer.get("agent_id")
        verdict["evidence"] = (f"`letta -p ... --agent {agent['id']}` on {shown}: exit {run.returncode}"
                               + (f", answered on another agent {got}" if got and got != agent["id"] else "")
                               + f", stored messages {before} -> {after}; {context}: {run.error_line()[:300]}")
    if changed:  # what resuming an agent with Letta Code does to it, worth knowing before the switch
        verdict["evidence"] += f"; Letta Code changed the agent: {', '.join(changed)}"
    say(f"letta-compat: Letta Code {version} {verdict['verdict']}: {verdict['evidence']}")
    return verdict
