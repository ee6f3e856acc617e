"""``move-to-local --prove``: prove a Letta Code release this package has not proven yet against
the layout move-to-local writes, on the operator's own move, before the real one. The same move
goes into a scratch directory; the real Letta Code in local mode must list every moved agent by
its exact name and answer as one of them (its model pointed at the fake LLM, nothing leaves the
machine). A passing proof is remembered in the cache (never in the package's shipped list)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import LettaCompatError
from ..paths import write_text_atomic
from ..provision.fake_llm import FakeLLM
from ..provision.letta_code import LettaCodeRunner, ensure_letta_code

PROOF_MODEL = "fake-gpt"
CACHE_FILE = "local-backend-proven.json"  # in the cache directory


def proven_here(cache: Path) -> dict[str, dict]:
    """Releases proven on this machine by an earlier --prove."""
    try:
        data = json.loads((Path(cache) / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(cache: Path, version: str, facts: dict) -> None:
    known = proven_here(cache)
    known[version] = facts
    write_text_atomic(Path(cache) / CACHE_FILE, json.dumps(known, indent=1))


def _listed(result) -> dict[str, str]:
    """{local id: name} of ``letta agents list`` (its JSON, whatever wrapper a release prints)."""
    text = result.stdout
    listed = json.loads(text[text.index("{"):]) if "{" in text else {}
    agents = (listed.get("items") or listed.get("agents")) if isinstance(listed, dict) else listed
    return {a["id"]: a["name"] for a in agents or [] if isinstance(a, dict) and "id" in a}


def prove(version: str, scratch: Path, moved: dict[str, str], cache: Path, progress=lambda line: None) -> dict:
    """Letta Code ``version`` in local mode on ``scratch`` (a move just made there, ``moved``:
    {local id: name}) lists every agent and answers as the first; the facts, or LettaCompatError."""
    started = time.monotonic()
    install = ensure_letta_code(version, cache)
    work = Path(tempfile.mkdtemp(prefix="letta-compat-proof-"))
    with FakeLLM(model=PROOF_MODEL, context_window=200000, log_path=work / "llm.log") as llm:
        letta = LettaCodeRunner(install, base_url="http://127.0.0.1:9", api_key=None, workdir=work / "letta-code",
                                env={"LETTA_LOCAL_BACKEND_DIR": str(scratch), "LMSTUDIO_BASE_URL": llm.base_url})
        progress(f"proof: Letta Code {version} lists the moved agents (local mode)")
        listing = letta("--backend", "local", "agents", "list", timeout=120)
        names = _listed(listing) if listing.returncode == 0 else {}
        missing = [f"{name!r}" for local_id, name in moved.items() if names.get(local_id) != name]
        if listing.returncode != 0 or missing:
            raise LettaCompatError(
                f"move-to-local is NOT proven for Letta Code {version}: `letta agents list` in local mode "
                + (f"exited {listing.returncode}" if listing.returncode != 0 else f"does not list {', '.join(missing)}")
                + f". Nothing was moved. The runs are logged under {work}; use a proven release instead.")
        local_id, name = next(iter(moved.items()))
        prompt = f"still there, {name}? {uuid.uuid4().hex[:8]}"
        progress(f"proof: {name!r} answers through Letta Code {version}")
        turn = letta("--backend", "local", "--agent", local_id, "--conversation", "default", "-p", prompt,
                     json=True, timeout=240)
        answered = turn.returncode == 0 and isinstance(turn.json, dict) and turn.json.get("subtype") == "success"
        if not answered:
            raise LettaCompatError(
                f"move-to-local is NOT proven for Letta Code {version}: the moved agent {name!r} did not answer in "
                f"local mode (exit {turn.returncode}). Nothing was moved. The runs are logged under {work}; use a "
                "proven release instead.")
    facts = {"agents": len(moved), "proven_on": time.strftime("%Y-%m-%d"), "by": "letta-compat move-to-local --prove",
             "seconds": round(time.monotonic() - started, 1)}
    _remember(cache, version, facts)
    return facts
