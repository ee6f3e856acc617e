"""The upgrade rehearsal's report as HTML (``letta-compat rehearse --report X.html``, and the
rehearsals of a pytest run joined to the grid's page): per target, one row per agent with its
verdict on each path. Works on the report's JSON (``RehearsalReport.to_json()``), so a pytest
worker's rehearsal can travel to the controller as data. Nothing here holds a secret: the JSON
carries none, and written files are redacted by their writers."""

from __future__ import annotations

from .html import cell, esc, page, table

PATHS = ("image", "letta-compat")
TITLE = "Letta upgrade rehearsal"


def path_problems(p: dict) -> list[str]:
    """One line per thing a path of the report lost or changed (what the verdict rests on)."""
    lines = [p["error"]] if p["error"] else []
    lines += [f"schema: {x}" for x in p["schema_problems"]]
    for agent in p["agents"]:
        if agent["verdict"] in ("changed", "lost"):
            lines += [f"agent {agent['name']!r} ({agent['id']}): {d}" for d in agent["differences"]]
    lines += [f"server: {d}" for d in p["server_differences"]]
    lines += [f"message exchange with {e['name']!r}: {e['detail']}" for e in p["exchange"] if not e["ok"]]
    return lines


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>" if items else ""


def target_html(data: dict, target: dict) -> str:
    """One target: the paths' verdicts, then the per-agent verdict table, then what went wrong."""
    paths = target["paths"]
    out = [f"<h3>Letta {esc(target['version'])}</h3>"]
    rows = []
    for name in PATHS:
        p = paths[name]
        counts = ", ".join(f"{n} {v}" for v, n in sorted(p["counts"].items())) or "no agents"
        rows.append((name, [cell(p["verdict"], p["verdict"]), cell(counts, text_cell=True),
                            cell("; ".join(p.get("migration_notes", [])) or "-", text_cell=True),
                            cell("; ".join(f for f in p["fixups"] if "nothing to do" not in f) or "-",
                                 text_cell=True)]))
    out.append(table(["path", "verdict", "agents", "alembic", "fix-ups"], rows))
    by_path = {name: {a["id"]: a for a in paths[name]["agents"]} for name in PATHS}
    agents = []
    for agent in paths["letta-compat"]["agents"] or paths["image"]["agents"]:
        cells = []
        for name in PATHS:
            found = by_path[name].get(agent["id"])
            cells.append(cell(found["verdict"], found["verdict"]) if found else cell("-"))
        differences = sorted({d for name in PATHS for d in (by_path[name].get(agent["id"]) or {}).get("differences", [])})
        before = agent.get("before") or {}
        cells.append(cell(str(before.get("stored_messages", "")), text_cell=False))
        cells.append(cell("; ".join(differences) or "-", text_cell=True))
        agents.append((agent["name"], cells))
    out.append(table(["agent", "image", "letta-compat", "stored messages before", "differences"], agents,
                     table_id=f"rehearsal-agents-{target['version']}"))
    codes = target.get("letta_code") or []
    if codes:
        out.append("<h4>Letta Code resuming an agent of the dump (letta-compat path)</h4>")
        out.append(table(["Letta Code", "verdict", "evidence"],
                         [(c["version"], [cell(c["verdict"], c["verdict"]), cell(c["evidence"], text_cell=True)])
                          for c in codes]))
    for name in PATHS:
        problems = path_problems(paths[name])
        if problems:
            heading = "a plain tag bump (image path) would" if name == "image" else "the letta-compat path did"
            out.append(f"<h4>What {heading} lose or change</h4>{_list(problems)}")
        if paths[name]["not_checked"]:
            out.append(f"<h4>Not checked ({esc(name)} path)</h4>{_list(paths[name]['not_checked'])}")
    return "\n".join(out)


def section(data: dict) -> str:
    """A rehearsal as a ``<section>`` of a page (its own page, or the grid's)."""
    src = data["source"]
    verdict = ("every agent came through the letta-compat path intact" if data["verdict"] == "intact"
               else "something was lost or changed on the letta-compat path")
    head = (f"<h2>Upgrade rehearsal of {esc(src['where'])}</h2>"
            f"<p>{esc(src['described'])} · {esc(str(src.get('agents', '?')))} agents, "
            f"{esc(str(src.get('stored_messages', '?')))} stored messages · rehearsed on the "
            f"{esc(data.get('backend', 'native'))} backend · verdict: <strong>{esc(verdict)}"
            "</strong></p>" + (f"<p>Drift: {esc('; '.join(src['drift']))}</p>" if src.get("drift") else ""))
    body = "\n".join(target_html(data, t) for t in data["targets"])
    return f'<section class="rehearsal">{head}\n{body}</section>'


def to_html(data: dict) -> str:
    """A rehearsal's report as a page of its own, in the grid report's skeleton."""
    return page(TITLE, section(data))
