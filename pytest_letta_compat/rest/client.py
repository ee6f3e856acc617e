"""REST calls the migration routines need, with the differences between versions hidden.

Paging agents and messages, export and import behave differently at 0.11.x and 0.12+
(``ascending`` vs ``order``, legacy vs AgentFileSchema exports, ``_copy`` suffixes); the
routines above this module only see one shape.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from packaging.version import Version

from ..errors import LettaCompatError, redact, register_secret

PAGE = 50  # the server default page size: paging past it is what the incident's scripts missed
# 0.11.x exports the last ``max_steps`` user turns: ask for all of them
_ALL_STEPS = 1_000_000_000


class LettaAPIError(LettaCompatError):
    """A Letta server answered with an error (or not at all). ``kind`` names the errors a caller
    acts on, so that callers branch on it, not on Letta's words."""

    NAME_REFUSED = "name_refused"  # 0.13+ refuses to export an agent whose name has "/" and the like

    def __init__(self, message: str, status: int | None = None, kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind


def check_url(url: str) -> str:
    """``url`` as a base URL for httpx, or a LettaCompatError saying what is allowed."""
    allowed = "Give the Letta server's address, e.g. --url http://localhost:8283."
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise LettaCompatError(f"--url {shown_url(url)!r} is not a URL. {allowed}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise LettaCompatError(f"--url {shown_url(url)!r} is not an http:// or https:// address. {allowed}")
    if parsed.password:
        register_secret(parsed.password)
    return url.strip().rstrip("/")


def shown_url(url: str) -> str:
    """The URL as it may be printed or written: any password in it masked."""
    return redact(url.strip().rstrip("/"))


class LettaAPI:
    """A Letta server at ``url``; ``api_key`` is the server password (``Authorization: Bearer``)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 300):
        register_secret(api_key)
        real = check_url(url)
        # ``url`` is what is shown, logged and written (manifests, restore state): never a password in it
        self.url = shown_url(real)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=real, headers=headers, timeout=timeout)
        self._version: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "LettaAPI":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LettaAPIError(f"The Letta server at {self.url} did not answer {method} {path}: "
                                f"{type(exc).__name__}: {exc}. Is it running and reachable?") from exc
        if resp.status_code == 401:
            raise LettaAPIError(f"The Letta server at {self.url} refused the request (401 Unauthorized): "
                                "pass its password with --api-key or $LETTA_API_KEY.", 401)
        if resp.status_code >= 400:
            kind = resp.headers.get("content-type", "").split(";")[0].strip()
            if kind == "text/html":  # a web page, not Letta's API: its text says nothing useful
                raise LettaAPIError(f"{method} {path} on {self.url} failed with {resp.status_code} and an HTML page: "
                                    "is --url the Letta server's address (e.g. http://localhost:8283, no path "
                                    "after it)?", resp.status_code)
            raise LettaAPIError(f"{method} {path} on {self.url} failed with {resp.status_code}: "
                                f"{redact(' '.join(resp.text[:500].split()))}", resp.status_code)
        return resp

    def get(self, path: str, **params) -> Any:
        return self.json(self.request("GET", path, params=params), "GET", path)

    def json(self, resp: httpx.Response, method: str, path: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            kind = resp.headers.get("content-type", "no content type").split(";")[0]
            raise LettaAPIError(f"{self.url} answered {method} {path} with {kind}, not JSON: it is not a Letta "
                                "server's API. Give the address Letta listens on, e.g. --url "
                                "http://localhost:8283 (no path after it).", resp.status_code) from None

    def _page(self, page: Any, what: str) -> list[dict]:
        if not isinstance(page, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in page):
            raise LettaAPIError(f"{self.url} answered {what} with something other than a list of objects with "
                                "ids: it is not a Letta server this tool knows.")
        return page

    # -- facts -----------------------------------------------------------------------------
    @property
    def version(self) -> str:
        if self._version is None:
            health = self.get("/v1/health/")
            if not isinstance(health, dict) or not isinstance(health.get("version"), str):
                raise LettaAPIError(f"{self.url}/v1/health/ answered without a Letta version: it is not a Letta "
                                    "server. Give the address Letta listens on, e.g. --url http://localhost:8283.")
            self._version = health["version"]
        return self._version

    @property
    def imports_agent_files(self) -> bool:
        """0.12+ imports only AgentFileSchema; 0.11.x only the legacy single-agent format."""
        return Version(self.version) >= Version("0.12")

    # -- agents ----------------------------------------------------------------------------
    def list_agents(self) -> list[dict]:
        """Every agent, oldest first, however many pages that takes."""
        agents: dict[str, dict] = {}
        after = None
        while True:
            params = {"limit": PAGE, "ascending": "true", "order": "asc"}
            if after:
                params["after"] = after
            page = self._page(self.get("/v1/agents/", **params), "GET /v1/agents/")
            fresh = [a for a in page if a["id"] not in agents]
            for agent in fresh:
                agents[agent["id"]] = agent
            if not fresh:
                return list(agents.values())
            after = page[-1]["id"]

    def agent(self, agent_id: str) -> dict:
        return self.get(f"/v1/agents/{agent_id}")

    def find_agent(self, agent_id: str) -> dict | None:
        try:
            return self.agent(agent_id)
        except LettaAPIError as exc:
            if exc.status in (404, 422):  # 422: an id of another format
                return None
            raise

    def rename_agent(self, agent_id: str, name: str) -> dict:
        """PATCH has no name validator at any version: the way back to names create refuses."""
        path = f"/v1/agents/{agent_id}"
        return self.json(self.request("PATCH", path, json={"name": name}), "PATCH", path)

    def delete_agent(self, agent_id: str) -> None:
        self.request("DELETE", f"/v1/agents/{agent_id}")

    def export_agent(self, agent_id: str) -> dict:
        """Legacy ``AgentSchema`` on 0.11.x, ``AgentFileSchema`` on 0.12+; a name the server
        refuses to export is a ``LettaAPIError`` of kind ``NAME_REFUSED``."""
        try:
            return self.get(f"/v1/agents/{agent_id}/export", max_steps=_ALL_STEPS)
        except LettaAPIError as exc:
            if exc.status == 500 and "invalid characters" in str(exc):  # Letta's only sign of it
                raise LettaAPIError(str(exc), exc.status, LettaAPIError.NAME_REFUSED) from None
            raise

    def messages(self, agent_id: str) -> list[dict]:
        """The agent's whole history as typed messages, oldest first, every page.

        ``use_assistant_message=false`` keeps every stored message visible (0.11.x hides the
        tool returns of ``send_message`` otherwise) and ``include_err`` keeps failed steps.
        0.12+ pages forward (``order=asc`` + ``after``); 0.11.x always answers with the
        newest ``limit`` messages, so it is paged backwards with ``before``."""
        forward = Version(self.version) >= Version("0.12")
        seen: set[tuple] = set()
        pages: list[list[dict]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100, "order": "asc", "use_assistant_message": "false",
                                      "include_err": "true"}
            if cursor:
                params["after" if forward else "before"] = cursor
            page = self._page(self.get(f"/v1/agents/{agent_id}/messages", **params), f"GET /v1/agents/{agent_id}/messages")
            fresh = [m for m in page if (m["id"], m.get("message_type"), m.get("otid")) not in seen]
            if not fresh:
                ordered = pages if forward else pages[::-1]
                return [m for page in ordered for m in page]
            seen.update((m["id"], m.get("message_type"), m.get("otid")) for m in fresh)
            pages.append(fresh)
            cursor = page[-1]["id"] if forward else page[0]["id"]

    def import_agent(self, agent_file: dict) -> str:
        """Import one agent (legacy or agent file, as the server takes it); the new agent id."""
        data = {"append_copy_suffix": "false", "override_existing_tools": "true", "strip_messages": "false"}
        files = {"file": ("agent.af", json.dumps(agent_file).encode(), "application/json")}
        body = self.json(self.request("POST", "/v1/agents/import", data=data, files=files), "POST", "/v1/agents/import")
        if "agent_ids" in body:  # 0.12+: ImportedAgentsResponse
            if len(body["agent_ids"]) != 1:
                raise LettaAPIError(f"Importing one agent into {self.url} created {len(body['agent_ids'])}.")
            return body["agent_ids"][0]
        return body["id"]  # 0.11.x: the AgentState itself

