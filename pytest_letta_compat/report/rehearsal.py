"""The upgrade rehearsal's report: its types (``PathResult`` per path, ``RehearsalReport``), its
text, and its HTML (``letta-compat rehearse --report X.html``, and the rehearsals of a pytest run
joined to the grid's page): per target, one row per agent with its verdict on each path. The
HTML works on the report's JSON (``RehearsalReport.to_json()``), so a pytest worker's rehearsal
can travel to the controller as data. Nothing here holds a secret: the JSON carries none, and
written files are redacted (``write_report``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import redact
from ..paths import report_files
from .html import cell, esc, page, table

PATHS = ("image", "letta-compat")
TITLE = "Letta upgrade rehearsal"


@dataclass(frozen=True)
class PathResult:
    """One path's outcome on one target, built once by the rehearsal's stages (restore, migrate,
    fix up, check) and never changed afterwards: a later stage makes a new one (``replace``)."""
    path: str
    verdict: str = "intact"  # intact | changed | lost | failed
    error: str | None = None
    migration_seconds: float | None = None
    migration_notes: tuple[str, ...] = ()  # what Letta's data-encryption backfills did
    fixups: tuple[str, ...] = ()
    schema_ready: bool | None = None
    schema_problems: tuple[str, ...] = ()
    server_started: bool = False
    server_seconds: float | None = None
    agents: tuple[dict, ...] = ()
    server_differences: tuple[str, ...] = ()
    exchange: tuple[dict, ...] = ()
    not_checked: tuple[str, ...] = ()
    log: str | None = None

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for agent in self.agents:
            found[agent["verdict"]] = found.get(agent["verdict"], 0) + 1
        return found

    def to_json(self) -> dict[str, Any]:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        data.pop("path")
        data["counts"] = self.counts()
        return data


@dataclass
class RehearsalReport:
    source: dict[str, Any]
    targets: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    backend: str = "native"

    @property
    def intact(self) -> bool:
        return all(t["paths"]["letta-compat"]["verdict"] == "intact" for t in self.targets)

    @property
    def letta_code_works(self) -> bool:
        return all(run["verdict"] == "works" for t in self.targets for run in t.get("letta_code", []))

    @property
    def ok(self) -> bool:
        """Every agent intact on the letta-compat path, and every Letta Code asked for resumed one."""
        return self.intact and self.letta_code_works

    def to_json(self) -> dict:
        doc = {"verdict": "intact" if self.intact else "not intact", "backend": self.backend,
               "source": self.source, "targets": self.targets,
               "timings": {k: round(v, 1) for k, v in self.timings.items()}}
        if any("letta_code" in t for t in self.targets):
            doc["letta_code_verdict"] = "works" if self.letta_code_works else "fails"
        return doc


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


# -- text and files ------------------------------------------------------------------------
def format_report(report: RehearsalReport) -> list[str]:
    src = report.source
    lines = [f"Rehearsed on the {report.backend} backend",
             f"Source: {src['where']} ({src['format']} dump, schema {src['schema']}): {src['described']}",
             f"  {src['agents']} agents, {src['stored_messages']} stored messages (inventory through "
             f"{src['inventory_via']})"]
    lines += [f"  drift: {d}" for d in src["drift"]] or ["  drift: none"]
    for target in report.targets:
        for path in PATHS:
            p = target["paths"][path]
            counts = ", ".join(f"{n} {v}" for v, n in sorted(p["counts"].items()))
            lines.append(f"Letta {target['version']}, {path} path: {p['verdict'].upper()} ({counts or 'no agents'})")
            if path == "image":
                lines += [f"  alembic: {n}" for n in p.get("migration_notes", [])]
            if path == "letta-compat":
                lines += [f"  fix-up {f}" for f in p["fixups"] if "nothing to do" not in f]
                lines += [f"  {agent['verdict']:<8} {agent['name']!r}" for agent in p["agents"]]
            for problem in path_problems(p):
                lines.append(("  WARNING (a plain tag bump): " if path == "image" else "  ") + problem)
            lines += [f"  not checked: {n}" for n in p["not_checked"]]
            if p.get("log"):
                lines.append(f"  log: {p['log']}")
        for run in target.get("letta_code", []):
            lines.append(f"Letta {target['version']}, Letta Code {run['version']} resuming an agent of the dump: "
                         f"{run['verdict'].upper()}: {run['evidence']}")
    lines.append("VERDICT: every agent came through the letta-compat path intact" if report.intact else
                 "VERDICT: something was lost or changed on the letta-compat path (see above)")
    if not report.letta_code_works:
        lines.append("VERDICT: a Letta Code version asked for with --letta-code could not resume an agent (see above)")
    return lines


def write_report(report: RehearsalReport, path: Path) -> list[Path]:
    """JSON, and Markdown/HTML by suffix (a bare name writes all three)."""
    data = report.to_json()
    written = []
    for target in report_files(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".json":
            text = json.dumps(data, indent=1, ensure_ascii=False)
        elif target.suffix == ".md":
            text = "# Letta upgrade rehearsal\n\n" + "\n".join(f"    {line}" for line in format_report(report)) + "\n"
        else:
            text = to_html(data)
        target.write_text(redact(text), encoding="utf-8")
        written.append(target)
    return written
