"""Point a copy of a Letta database at the fake LLM before any server starts on it.

A rehearsal's dump comes from the operator's server, a cached seeded database from an earlier
run: either one names model and embedding endpoints (and providers, MCP servers) that must not
be reached from here. ``redirect_to_fake_llm`` rewrites them, in one transaction, to this
run's fake LLM, and blanks every stored key.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from ..provision.fake_llm import FakeLLM
from ..schema.inspect import table_columns

# (table, JSON column, endpoint key, endpoint type key)
_ENDPOINTS = (("agents", "llm_config", "model_endpoint", "model_endpoint_type"),
              ("agents", "embedding_config", "embedding_endpoint", "embedding_endpoint_type"),
              ("sources", "embedding_config", "embedding_endpoint", "embedding_endpoint_type"),
              # archival memory: from 0.13.0 its archive's (migration f6cd5a1e519d copies a passage's there)
              ("archives", "embedding_config", "embedding_endpoint", "embedding_endpoint_type"),
              ("archival_passages", "embedding_config", "embedding_endpoint", "embedding_endpoint_type"))


def _shown_endpoint(url: str) -> str:
    """A stored endpoint as it may be printed: its user info masked and its query dropped, whole
    (an operator's endpoint may carry a key there that no one registered as a secret, which
    rest.client.shown_url, masking registered secrets and URL passwords, would leave)."""
    return re.sub(r"//[^/@]*@", "//***@", url.split("?")[0])


def redirect_to_fake_llm(conn: psycopg.Connection, fake: FakeLLM) -> list[str]:
    """Point every model/embedding endpoint, provider and MCP server of the database behind
    ``conn`` at ``fake`` and blank stored keys. Returns what was redirected, a line per kind
    (no secret in it)."""
    base_url, url = fake.base_url, fake.url
    done: list[str] = []
    with conn.transaction():
        for table, col, endpoint, kind in _ENDPOINTS:
            ctype = table_columns(conn, table).get(col)
            if ctype is None:
                continue
            rows = conn.execute(sql.SQL(
                "SELECT coalesce({c}::jsonb->>{e}, '(none)'), coalesce({c}::jsonb->>{k}, '?'), count(*) FROM {t} "
                "WHERE {c} IS NOT NULL GROUP BY 1, 2").format(
                c=sql.Identifier(col), e=sql.Literal(endpoint), k=sql.Literal(kind), t=sql.Identifier(table))).fetchall()
            conn.execute(sql.SQL(
                "UPDATE {t} SET {c} = ({c}::jsonb || jsonb_build_object({e}, {f}::text, {k}, 'openai'))::{ty} "
                "WHERE {c} IS NOT NULL").format(
                t=sql.Identifier(table), c=sql.Identifier(col), e=sql.Literal(endpoint), f=sql.Literal(base_url),
                k=sql.Literal(kind), ty=sql.SQL(ctype)))
            for shown, endpoint_type, count in rows:
                done.append(f"{table}.{col}: {count} x {_shown_endpoint(shown)} ({endpoint_type}) -> the fake LLM")
        # a provider without a base URL uses its vendor's default: it points at the fake LLM too;
        # an MCP server without a URL (stdio) stays without one
        for table, keys, url_column, target, even_unset, what in (
                ("providers", ("api_key", "api_key_enc", "access_key", "access_key_enc"), "base_url", base_url,
                 True, "base URL(s) -> the fake LLM, stored keys blanked"),
                ("mcp_server", ("token", "token_enc", "custom_headers", "custom_headers_enc"), "server_url",
                 url + "/mcp", False, "server URL(s) -> the fake LLM's address, tokens and headers blanked")):
            count = _blank(conn, table_columns(conn, table), table, keys, url_column, target, even_unset)
            if count:
                done.append(f"{table}: {count} {what}")
        if table_columns(conn, "mcp_oauth"):
            (count,) = conn.execute("SELECT count(*) FROM mcp_oauth").fetchone()
            if count:
                conn.execute("DELETE FROM mcp_oauth")
                done.append(f"mcp_oauth: {count} OAuth session(s) removed from the copy")
    return done


def _blank(conn: psycopg.Connection, present: dict[str, str], table: str, keys: tuple[str, ...], url_column: str,
           url: str, even_unset: bool) -> int:
    """Blank ``keys`` and point ``url_column`` at ``url`` (with ``even_unset``, where it is NULL
    too) in every row of ``table``; the rows changed (0: no such table, or empty)."""
    if not present:
        return 0
    (count,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    sets = [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in keys if c in present]
    if url_column in present:
        template = "{c} = {u}" if even_unset else "{c} = CASE WHEN {c} IS NULL THEN NULL ELSE {u} END"
        sets.append(sql.SQL(template).format(c=sql.Identifier(url_column), u=sql.Literal(url)))
    if not count or not sets:
        return 0
    conn.execute(sql.SQL("UPDATE {} SET {}").format(sql.Identifier(table), sql.SQL(", ").join(sets)))
    return count
