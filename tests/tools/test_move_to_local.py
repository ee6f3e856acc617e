"""``letta-compat move-to-local`` per proven Letta Code release: a 0.16.8 server's agents
(120+ messages with tool calls, two memory blocks, "AI/ML Expert", a non-ASCII name) are
moved into Letta Code's local backend, and the real Letta Code of that version, run headless
with ``--backend local`` against the fake LLM, shows them by name, sends their system prompt,
memory and in-context history to the model, answers, and resumes the same conversation."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat.operations import local_layout as layout
from pytest_letta_compat.operations.backup import backup
from pytest_letta_compat.operations.move_to_local import PROVING_ENV, proven_versions
from pytest_letta_compat.provision.fake_llm import FakeLLM
from pytest_letta_compat.provision.fake_llm_replies import REPLY_PREFIX
from pytest_letta_compat.provision.letta_code import LettaCodeRunner, ensure_letta_code
from pytest_letta_compat.rest.agents import blocks_of, insert_passage
from pytest_letta_compat.rest.client import LettaAPI

SEED_EXCHANGES = 42  # user + tool call + tool result + reply per exchange: > 120 messages
SECRET_VALUE = "tok-never-print-7f3a9c"
TOOL_SOURCE = '''def roll_die(sides: int) -> str:
    """Roll a die with the given number of sides.

    Args:
        sides (int): How many sides the die has.

    Returns:
        str: The number rolled.
    """
    return f"rolled {sides}"
'''


def seed_source_agents(client, llm_base_url: str, exchanges: int = SEED_EXCHANGES) -> dict[str, str]:
    """Agents on ``client``'s 0.16.x server; {name: id}."""
    from pytest_letta_compat.rest.agents import create_agent, send_message

    def renamed(created_as: str, name: str, **fields) -> dict:
        agent = create_agent(client, created_as, llm_base_url, **fields)
        client.patch(f"/v1/agents/{agent['id']}", json={"name": name}).raise_for_status()  # create refuses "/"
        return agent

    tool = client.post("/v1/tools/", json={"source_code": TOOL_SOURCE, "tags": ["move"]}).raise_for_status().json()
    blocks = [{"label": "human", "value": "The operator is called Ada and runs Letta on a Raspberry Pi.",
               "description": "What I know about the operator."},
              {"label": "persona", "value": "I am Sage, a careful research assistant who cites sources."}]
    agents = {
        # letta_v1_agent: the init rule makes every turn call roll_die, then answer in text
        "AI/ML Expert": renamed("AI-ML Expert", "AI/ML Expert", agent_type="letta_v1_agent", memory_blocks=blocks,
                                tool_ids=[tool["id"]], tool_rules=[{"type": "run_first", "tool_name": "roll_die"}],
                                secrets={"WEATHER_TOKEN": SECRET_VALUE}),
        # memgpt_v2_agent: answers through send_message tool calls
        "Ágent Zoë 🌟": renamed("Agent Zoe", "Ágent Zoë 🌟", agent_type="memgpt_v2_agent"),
    }
    expert = agents["AI/ML Expert"]["id"]
    insert_passage(client, expert, "Ada's Pi has 8 GB of RAM.")
    for i in range(exchanges):
        send_message(client, expert, f"question {i:03d} for the expert")
    for i in range(3):
        send_message(client, agents["Ágent Zoë 🌟"]["id"], f"hallo Zoë {i}")
    return {name: agent["id"] for name, agent in agents.items()}


SOURCE_VERSION = "0.16.8"
# Every release the package ships as proven is proven again here, so a proven release that
# breaks turns this red; scripts/record_local_backend_proven.py adds new ones through
# $LETTA_COMPAT_PROVE_LETTA_CODE and records what passed from $LETTA_COMPAT_PROVEN_OUT.
# Tests never write the shipped list.
PROVE_ENV, PROVEN_OUT_ENV = "LETTA_COMPAT_PROVE_LETTA_CODE", "LETTA_COMPAT_PROVEN_OUT"
LETTA_CODE_VERSIONS = sorted(set(proven_versions()) | {v for v in os.environ.get(PROVE_ENV, "").split(",") if v},
                             key=lambda v: [int(x) for x in v.split(".")], reverse=True)
LOCAL_MODEL = "fake-gpt"
PROOFS = ("moved", "listed", "answers", "resumes", "idempotent", "from_backup")
PASSED: dict[str, set[str]] = defaultdict(set)  # this process's: the module stays on one xdist worker
pytestmark = pytest.mark.xdist_group("move_to_local")  # with --dist loadgroup, in order, beside PASSED


@dataclass
class Source:
    url: str
    seeded: dict[str, str]  # name -> server id
    states: dict[str, dict]  # server id -> agent state
    histories: dict[str, list[dict]]
    backup_dir: Path


@pytest.fixture(scope="module")
def source(letta_server_factory, letta_fake_llm, tmp_path_factory) -> Source:
    stack = letta_server_factory(SOURCE_VERSION)
    with stack.client() as client:
        seeded = seed_source_agents(client, letta_fake_llm.base_url)
    backup_dir = tmp_path_factory.mktemp("move-source") / "backup"
    backup(stack.url, backup_dir, progress=lambda line: None)
    with LettaAPI(stack.url) as api:
        states = {i: api.agent(i) for i in seeded.values()}
        histories = {i: api.messages(i) for i in seeded.values()}
    expert = seeded["AI/ML Expert"]
    assert len({m["id"] for m in histories[expert]}) >= 120, "the seed must hold 120+ messages"
    assert any(m["message_type"] == "tool_call_message" for m in histories[expert])
    return Source(stack.url, seeded, states, histories, backup_dir)


@dataclass
class Moved:
    version: str
    store: Path
    run: subprocess.CompletedProcess
    letta: LettaCodeRunner
    llm: FakeLLM
    ids: dict[str, str]  # name -> local id


@pytest.fixture(scope="module", params=LETTA_CODE_VERSIONS)
def moved(request, source, letta_backend, tmp_path_factory):
    version = request.param
    install = ensure_letta_code(version, letta_backend.cache)
    work = tmp_path_factory.mktemp(f"move-{version}")
    store = work / "lc-local-backend"
    run = letta_compat("move-to-local", "--url", source.url, "--letta-code", version, "--storage-dir", store,
                       "--model", f"lmstudio/{LOCAL_MODEL}", env={PROVING_ENV: version})
    with FakeLLM(model=LOCAL_MODEL, context_window=200000, log_path=work / "llm.log") as llm:
        letta = LettaCodeRunner(install, base_url="http://127.0.0.1:9", api_key=None, workdir=work / "letta-code",
                                env={"LETTA_LOCAL_BACKEND_DIR": str(store), "LMSTUDIO_BASE_URL": llm.base_url})
        yield Moved(version, store, run, letta, llm,
                    {name: layout.local_agent_id(i) for name, i in source.seeded.items()})


def _passed(moved: Moved, proof: str) -> None:
    PASSED[moved.version].add(proof)


def _chat_requests_with(llm: FakeLLM, text: str) -> list[dict]:
    return [r["body"] for r in llm.requests
            if r["path"].endswith("/chat/completions") and text in json.dumps(r["body"], ensure_ascii=False)]


def _turn(moved: Moved, agent_id: str, prompt: str) -> dict:
    result = moved.letta("--backend", "local", "--agent", agent_id, "--conversation", "default", "-p", prompt,
                         json=True, timeout=240)
    assert result.returncode == 0, f"`{result.command}` exited {result.returncode}: {result.describe()[-3000:]}"
    assert result.json and result.json.get("subtype") == "success", result.describe()[-3000:]
    return result.json


def test_move_reports_what_moved_and_what_stayed_behind(moved, source):
    run = moved.run
    assert run.returncode == 0, run.stdout + run.stderr
    for name in source.seeded:
        assert f"{name!r} ({source.seeded[name]} -> {moved.ids[name]}): moved" in run.stdout, run.stdout
    assert "custom: roll_die" in run.stdout and "tool rules" in run.stdout and "1 archival passages" in run.stdout
    left = json.loads((moved.store / "letta-compat" / "left-behind" / f"{moved.ids['AI/ML Expert']}.json").read_text())
    assert {"type": "run_first", "tool_name": "roll_die"}.items() <= next(
        r for r in left["tool_rules"] if r.get("tool_name") == "roll_die").items()
    assert [p["text"] for p in left["archival_passages"]] == ["Ada's Pi has 8 GB of RAM."]
    assert "def roll_die" in next(t for t in left["tools"] if t["name"] == "roll_die")["source_code"]
    assert "WEATHER_TOKEN" in run.stdout and "values not written" in run.stdout
    assert SECRET_VALUE not in run.stdout + run.stderr
    for path in moved.store.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert SECRET_VALUE not in path.read_text(encoding="utf-8", errors="replace"), path
    _passed(moved, "moved")


def test_letta_code_lists_every_moved_agent_with_its_exact_name(moved):
    result = moved.letta("--backend", "local", "agents", "list", timeout=120)
    assert result.returncode == 0, result.describe()
    listed = json.loads(result.stdout[result.stdout.index("{"):]) if "{" in result.stdout else {}
    agents = (listed.get("items") or listed.get("agents")) if isinstance(listed, dict) else listed
    names = {a["id"]: a["name"] for a in agents or []}
    for name, local_id in moved.ids.items():
        assert names.get(local_id) == name, f"{name!r} is not listed as moved: {names}"
    _passed(moved, "listed")


def test_moved_agents_answer_with_their_system_prompt_memory_and_history(moved, source):
    for name, server_id in source.seeded.items():
        state, history = source.states[server_id], source.histories[server_id]
        prompt = f"are you still there, {name}? {uuid.uuid4().hex[:8]}"
        result = _turn(moved, moved.ids[name], prompt)
        assert result["agent_id"] == moved.ids[name]
        requests = _chat_requests_with(moved.llm, prompt)
        assert requests, f"the fake LLM never received the prompt for {name!r}"
        body = requests[-1]
        system = json.dumps([m for m in body["messages"] if m["role"] in ("system", "developer")], ensure_ascii=False)
        assert json.dumps(state["system"][:300], ensure_ascii=False)[1:-1] in system, f"{name}: system prompt missing"
        for block in blocks_of(state):
            assert json.dumps(block["value"], ensure_ascii=False)[1:-1] in system, f"{name}: block {block['label']} missing"
        sent = json.dumps(body["messages"], ensure_ascii=False)
        in_context = set(state["message_ids"])
        users = [m for m in history if m["message_type"] == "user_message"]
        calls = [c["tool_call_id"] for m in history if m["message_type"] == "tool_call_message"
                 for c in [m["tool_call"]] if c["name"] != "send_message"]
        for m in users:
            text = json.dumps(m["content"], ensure_ascii=False)[1:-1]
            assert (text in sent) == (m["id"] in in_context), f"{name}: user message {m['id']} wrongly (not) sent"
        for call_id in calls:
            assert call_id in sent, f"{name}: tool call {call_id} missing from the request"
        tool_results = [m for m in body["messages"] if m["role"] == "tool"]
        assert len(tool_results) >= len(calls)
        text, call, _ = moved.llm.chat_plan(body)
        assert result["result"] == text and text.startswith(REPLY_PREFIX)
    _passed(moved, "answers")


def test_a_second_run_resumes_the_same_conversation(moved):
    agent_id = moved.ids["AI/ML Expert"]
    first, second = f"first resume {uuid.uuid4().hex[:8]}", f"second resume {uuid.uuid4().hex[:8]}"
    one = _turn(moved, agent_id, first)
    two = _turn(moved, agent_id, second)
    assert one["conversation_id"] == two["conversation_id"] == "default"
    body = _chat_requests_with(moved.llm, second)[-1]
    sent = json.dumps(body["messages"], ensure_ascii=False)
    assert first in sent and json.dumps(one["result"], ensure_ascii=False)[1:-1] in sent
    assert "question 000 for the expert" in sent or "question 041 for the expert" in sent  # the moved history too
    _passed(moved, "resumes")


def test_the_same_move_again_adds_nothing_and_a_dry_run_writes_nothing(moved, source, tmp_path):
    before = {p: p.read_bytes() for p in (moved.store / "agents").iterdir()}
    again = letta_compat("move-to-local", "--url", source.url, "--letta-code", moved.version, "--storage-dir",
                         moved.store, "--model", f"lmstudio/{LOCAL_MODEL}", env={PROVING_ENV: moved.version})
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count(": already moved") == len(source.seeded)
    assert {p: p.read_bytes() for p in (moved.store / "agents").iterdir()} == before
    dry = letta_compat("move-to-local", "--url", source.url, "--letta-code", moved.version, "--storage-dir",
                       tmp_path / "dry", "--dry-run", env={PROVING_ENV: moved.version})
    assert dry.returncode == 0 and dry.stdout.count(": would move") == len(source.seeded), dry.stdout + dry.stderr
    assert "openai-compatible/fake-gpt" in dry.stdout  # mapped from the V1 model config, reported
    assert not (tmp_path / "dry").exists()
    _passed(moved, "idempotent")


def test_a_backup_moves_the_named_agent_alone(moved, source, tmp_path):
    store = tmp_path / "from-backup"
    run = letta_compat("move-to-local", "--backup", source.backup_dir, "--agent", "AI/ML Expert", "--letta-code",
                       moved.version, "--storage-dir", store, "--model", f"lmstudio/{LOCAL_MODEL}",
                       env={PROVING_ENV: moved.version})
    assert run.returncode == 0, run.stdout + run.stderr
    assert layout.list_agent_records(store).keys() == {moved.ids["AI/ML Expert"]}
    # the same agent moved from the server into a store no Letta Code run has touched yet
    fresh = tmp_path / "from-server"
    again = letta_compat("move-to-local", "--url", source.url, "--agent", "AI/ML Expert", "--letta-code",
                         moved.version, "--storage-dir", fresh, "--model", f"lmstudio/{LOCAL_MODEL}",
                         env={PROVING_ENV: moved.version})
    assert again.returncode == 0, again.stdout + again.stderr
    record = layout.agent_record_path(store, moved.ids["AI/ML Expert"]).read_bytes()
    assert record == layout.agent_record_path(fresh, moved.ids["AI/ML Expert"]).read_bytes(), \
        "the agent's record moved from its backup differs from the same agent's moved from the server"
    assert "archival passages unknown" in run.stdout
    _passed(moved, "from_backup")


def test_a_moved_store_without_its_transcript_manifest_is_refused(moved, tmp_path):
    """Why move-to-local writes the transcript manifest (schema version 2) beside every
    conversation: without it, the same store is what Letta Code called "unversioned legacy
    transcripts", which its local backend refuses from 0.26.4 on until
    ``letta local-backend migrate-transcripts`` runs. On a copy of the moved store."""
    import shutil

    legacy = tmp_path / "legacy-store"
    shutil.copytree(moved.store, legacy)
    manifests = list((legacy / "conversations").glob("*/manifest.json"))
    assert manifests and all(json.loads(m.read_text())["schema_version"] == 2 for m in manifests)
    for manifest in manifests:
        manifest.unlink()
    letta = LettaCodeRunner(moved.letta.install, base_url="http://127.0.0.1:9", api_key=None,
                            workdir=tmp_path / "letta-code",
                            env={"LETTA_LOCAL_BACKEND_DIR": str(legacy), "LMSTUDIO_BASE_URL": moved.llm.base_url})
    result = letta("--backend", "local", "--agent", moved.ids["AI/ML Expert"], "--conversation", "default", "-p",
                   "are the legacy transcripts read?", json=True, timeout=240)
    said = result.describe()
    assert result.returncode != 0, said[-3000:]
    assert "unversioned legacy transcripts" in said and "migrate-transcripts" in said, said[-3000:]


def test_zz_every_proof_passed_for_the_version(moved, source):
    """Last per version: a release counts as proven only when every proof above passed for it;
    the facts go to $LETTA_COMPAT_PROVEN_OUT for the recording script, never to the package."""
    missing = set(PROOFS) - PASSED[moved.version]
    assert not missing, f"Letta Code {moved.version} is not proven: {sorted(missing)} failed or did not run"
    out = os.environ.get(PROVEN_OUT_ENV)
    if not out:
        return
    expert = source.seeded["AI/ML Expert"]
    facts = json.loads(Path(out).read_text(encoding="utf-8")) if Path(out).exists() else {}
    facts[moved.version] = {
        "source_server": SOURCE_VERSION, "agents": len(source.seeded),
        "messages": sum(len({m["id"] for m in h}) for h in source.histories.values()),
        "in_context_of_the_longest": len(source.states[expert]["message_ids"]),
        "proven_on": __import__("time").strftime("%Y-%m-%d"), "by": "scripts/record_local_backend_proven.py"}
    Path(out).write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


UNPROVEN = "0.32.19"  # installs from PyPI, in no proven list: what an operator on a newer release meets


def test_an_unproven_release_is_refused_naming_prove_then_proven_on_the_spot(source, tmp_path):
    """move-to-local to a Letta Code release nobody proved: refused in one line naming --prove;
    with --prove, the real Letta Code lists and answers as the moved agents on a scratch copy
    first, and then the move is made (issue #21). Its own cache: the proof is remembered there."""
    assert UNPROVEN not in proven_versions()
    cache = tmp_path / "cache"
    store = tmp_path / "store"
    refused = letta_compat("move-to-local", "--url", source.url, "--letta-code", UNPROVEN, "--storage-dir", store,
                           cache=cache)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "not proven" in refused.stderr and "Add --prove" in refused.stderr and not store.exists()
    proven = letta_compat("move-to-local", "--url", source.url, "--letta-code", UNPROVEN, "--storage-dir", store,
                          "--model", f"lmstudio/{LOCAL_MODEL}", "--prove", cache=cache, timeout=900)
    assert proven.returncode == 0, proven.stdout[-3000:] + proven.stderr[-3000:]
    assert f"Letta Code {UNPROVEN} proven just now on a scratch copy of this move" in proven.stdout
    for name, server_id in source.seeded.items():
        assert f"{name!r} ({server_id} -> {layout.local_agent_id(server_id)}): moved" in proven.stdout
    assert UNPROVEN in json.loads((cache / "local-backend-proven.json").read_text())
    assert UNPROVEN not in proven_versions()  # the package's shipped list is never written
    again = letta_compat("move-to-local", "--url", source.url, "--letta-code", UNPROVEN, "--storage-dir",
                         tmp_path / "store2", cache=cache)  # remembered: no --prove needed on this machine
    assert again.returncode == 0, again.stderr
