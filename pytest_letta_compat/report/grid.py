"""The compatibility report: a grid of matrix entries × checks, from test outcomes.

Pytest-free: the pytest layer feeds it ``CheckOutcome`` records; ``letta-compat report
merge`` combines the JSON of several shards.  Renders a terminal grid, JSON, Markdown
(CI job summaries) and a self-contained HTML page.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LettaCompatError, redact
from ..paths import report_files
from . import html as html_page
from .rehearsal import section as rehearsal_section

# worst first: a cell shows the worst outcome among its tests (a declared incompatibility
# outranks the passes beside it: the pair is still incompatible)
_SEVERITY = ["failed", "error", "xpassed", "xfailed", "passed", "skipped"]
_LABEL = {"failed": "fail", "error": "error", "xpassed": "XPASS", "passed": "pass",
          "xfailed": "expected failure", "skipped": "skipped"}
_SHORT = {"failed": "FAIL", "error": "ERROR", "xpassed": "XPASS", "passed": "pass",
          "xfailed": "xfail", "skipped": "skip"}
CHECK_ORDER = ["smoke", "schema", "api", "roundtrip", "upgrade"]
FORMAT_VERSION = 1


@dataclass
class CheckOutcome:
    nodeid: str
    row: str  # matrix entry: server-0.16.2, upgrade-0.11.3-to-0.16.2
    column: str  # check name, or letta-code-<version>
    outcome: str  # one of _SEVERITY
    message: str = ""  # failure text or skip/xfail reason (secrets masked)
    log_excerpt: str = ""  # server log tail for failures (secrets masked)
    duration: float = 0.0


@dataclass
class Report:
    matrix: str = ""
    outcomes: list[CheckOutcome] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    note: str = ""  # why there is nothing to show (the gate: "image unchanged, nothing to check")
    rehearsals: list[dict] = field(default_factory=list)  # [[rehearsal]] reports (their JSON), shown below the grid

    # -- model -----------------------------------------------------------------------------
    def rows(self) -> list[str]:
        def key(row: str):
            kind, _, rest = row.partition("-")
            parts = rest.replace("-", ".").split(".")  # numbers before words: never int vs str
            return (0 if kind == "server" else 1, [(0, int(p), "") if p.isdecimal() and p.isascii() else (1, 0, p)
                                                   for p in parts])
        return sorted({o.row for o in self.outcomes}, key=key)

    def columns(self) -> list[str]:
        cols = {o.column for o in self.outcomes}
        checks = [c for c in CHECK_ORDER if c in cols]
        return checks + sorted(cols - set(checks))

    def cell(self, row: str, column: str) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.row == row and o.column == column]

    @staticmethod
    def verdict(tests: list[CheckOutcome]) -> str | None:
        if not tests:
            return None
        return min((t.outcome for t in tests), key=_SEVERITY.index)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.outcome] = out.get(o.outcome, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return not any(o.outcome in ("failed", "error", "xpassed") for o in self.outcomes)

    # -- renderings ------------------------------------------------------------------------
    def terminal_lines(self) -> list[str]:
        rows, cols = self.rows(), self.columns()
        if not rows:
            return [self.note] if self.note else []
        width = max(len(r) for r in rows)
        cw = [max(len(c), 6) for c in cols]
        lines = [" " * width + "  " + "  ".join(c.ljust(w) for c, w in zip(cols, cw))]
        for r in rows:
            cells = [_SHORT.get(self.verdict(self.cell(r, c)) or "", "-") for c in cols]
            lines.append(r.ljust(width) + "  " + "  ".join(s.ljust(w) for s, w in zip(cells, cw)))
        lines.append("cells: pass, FAIL, ERROR, XPASS (a declared incompatibility no longer holds), "
                     "xfail (declared in the matrix), skip, - (not run)")
        declared: dict[str, list[str]] = {}
        for r in rows:
            for c in cols:
                for t in self.cell(r, c):
                    if t.outcome == "xfailed" and f"{r} × {c}" not in declared.get(t.message, []):
                        declared.setdefault(t.message, []).append(f"{r} × {c}")
        lines += [f"xfail {', '.join(cells)}: {reason}" for reason, cells in declared.items()]
        return lines

    def to_json(self) -> dict:
        grid = {r: {c: self.verdict(self.cell(r, c)) for c in self.columns()} for r in self.rows()}
        doc = {"format": FORMAT_VERSION, "matrix": self.matrix, "created": self.created,
               "rows": self.rows(), "columns": self.columns(), "grid": grid, "counts": self.counts(),
               "ok": self.ok, "tests": [asdict(o) for o in self.outcomes]}
        if self.note:
            doc["note"] = self.note
        if self.rehearsals:
            doc["rehearsals"] = self.rehearsals
        return doc

    def to_markdown(self) -> str:
        rows, cols = self.rows(), self.columns()
        icon = {"failed": "❌ fail", "error": "❌ error", "xpassed": "⚠️ XPASS", "passed": "✅ pass",
                "xfailed": "🟡 expected failure", "skipped": "⏭️ skipped"}
        out = [f"## Letta compatibility: {self.matrix or 'matrix'}", ""]
        if self.note:
            out += [self.note, ""]
        if not rows:
            return "\n".join(out)
        out += ["| entry | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in rows:
            out.append(f"| {r} | " + " | ".join(icon.get(self.verdict(self.cell(r, c)) or "", "–") for c in cols) + " |")
        failures = [o for o in self.outcomes if o.outcome in ("failed", "error", "xpassed")]
        if failures:
            out += ["", "### Failures", ""]
            for o in failures:
                first = (o.message.strip().splitlines() or [""])[-1][:300]
                out.append(f"- `{o.nodeid}`: {first}")
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        rows, cols = self.rows(), self.columns()
        esc = html.escape
        body, details = [], []
        for r in rows:
            tds = []
            for c in cols:
                tests = self.cell(r, c)
                v = self.verdict(tests)
                if v is None:
                    tds.append('<td class="none">–</td>')
                    continue
                bad = [t for t in tests if t.outcome in ("failed", "error", "xpassed", "xfailed")]
                anchor = None
                if bad:
                    anchor = f"f-{len(details)}"
                    details.append((anchor, r, c, bad))
                tds.append(html_page.cell(_LABEL[v], v, href=f"#{anchor}" if anchor else None))
            body.append((r, tds))
        sections = []
        for anchor, r, c, bad in details:
            items = "".join(
                f"<h4>{esc(t.nodeid)} — {esc(_LABEL[t.outcome])}</h4><pre>{esc(t.message)}</pre>"
                + (f"<details><summary>server log excerpt</summary><pre>{esc(t.log_excerpt)}</pre></details>"
                   if t.log_excerpt else "")
                for t in bad)
            sections.append(f'<section id="{anchor}"><h3>{esc(r)} · {esc(c)}</h3>{items}</section>')
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts().items()))
        rehearsals = "".join(rehearsal_section(r) for r in self.rehearsals)
        return html_page.page("Letta compatibility report", f"""{f"<p>{esc(self.note)}</p>" if self.note else ""}
<p>Matrix: <code>{esc(self.matrix)}</code> · {esc(counts)} · verdict: <strong>{"compatible" if self.ok else "NOT compatible"}</strong></p>
{html_page.table(["entry", *cols], body, table_id="grid")}
{''.join(sections)}
{rehearsals}""")

    def write(self, path: str | Path) -> list[Path]:
        """Write ``path`` in the format its suffix names; a bare path gets all three."""
        path = Path(path)
        targets = report_files(path)
        for t in targets:
            text = {".json": lambda: json.dumps(self.to_json(), indent=2), ".md": self.to_markdown,
                    ".html": self.to_html}[t.suffix]()
            try:
                t.parent.mkdir(parents=True, exist_ok=True)
                t.write_text(redact(text), encoding="utf-8")
            except OSError as exc:
                raise LettaCompatError(f"The report {t} cannot be written ({exc.strerror or type(exc).__name__}). "
                                       "Give a path in a writable directory.") from None
        return targets


_OUTCOME_TYPES = {"nodeid": str, "row": str, "column": str, "outcome": str, "message": str,
                  "log_excerpt": str, "duration": (int, float)}


def _outcome_of(item: object, i: int) -> CheckOutcome:
    if not isinstance(item, dict):
        raise ValueError(f"tests[{i}] is {type(item).__name__}, not an object")
    for key in ("nodeid", "row", "column", "outcome"):
        if key not in item:
            raise ValueError(f"tests[{i}] has no `{key}`")
    unknown = sorted(k for k in item if k not in _OUTCOME_TYPES)
    if unknown:
        raise ValueError(f"tests[{i}] has unknown keys {', '.join(map(repr, unknown[:5]))}")
    for key, value in item.items():
        if not isinstance(value, _OUTCOME_TYPES[key]) or isinstance(value, bool):
            raise ValueError(f"tests[{i}].{key} is {type(value).__name__}")
    if item["outcome"] not in _SEVERITY:
        raise ValueError(f"tests[{i}].outcome is not one of {', '.join(_SEVERITY)}")
    return CheckOutcome(**item)


def load_report(path: str | Path) -> Report:
    """A JSON report written by ``--letta-report`` (or merged); any other file: one LettaCompatError."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"the file holds a JSON {type(doc).__name__}, not an object")
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT_VERSION}"
                             if isinstance(doc.get("format"), int) else "no `format` of a letta-compat report")
        if not isinstance(doc.get("tests"), list):
            raise ValueError("no `tests` list")
        outcomes = [_outcome_of(t, i) for i, t in enumerate(doc["tests"])]
        matrix, created, note = doc.get("matrix", ""), doc.get("created", 0.0), doc.get("note", "")
        rehearsals = doc.get("rehearsals", [])
        if not isinstance(rehearsals, list):
            raise ValueError("`rehearsals` is not a list")
        for i, rehearsal in enumerate(rehearsals):
            try:  # what to_html will read of it
                rehearsal_section(rehearsal)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise ValueError(f"rehearsals[{i}] is not a rehearsal report ({type(exc).__name__}: "
                                 f"{str(exc)[:80]})") from None
        if not isinstance(matrix, str) or not isinstance(note, str) or isinstance(created, bool) \
                or not isinstance(created, (int, float)):
            raise ValueError("`matrix`, `created` or `note` has the wrong type")
    except OSError as exc:
        raise LettaCompatError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}). Give the .json "
                               "files written by pytest --letta-report.") from None
    except json.JSONDecodeError as exc:  # the position only: never the file's text
        raise LettaCompatError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}). Give the .json files "
                               "written by pytest --letta-report.") from None
    except (ValueError, RecursionError) as exc:
        raise LettaCompatError(
            f"{path}: not a letta-compat JSON report ({exc}). Give the .json files written by "
            "pytest --letta-report.") from None
    return Report(matrix=matrix, outcomes=outcomes, created=created, note=note, rehearsals=rehearsals)


def merge_reports(reports: list[Report]) -> Report:
    """Shards split entries, so outcomes are simply combined; a test seen twice keeps the worse."""
    by_id: dict[str, CheckOutcome] = {}
    for rep in reports:
        for o in rep.outcomes:
            seen = by_id.get(o.nodeid)
            if seen is None or _SEVERITY.index(o.outcome) < _SEVERITY.index(seen.outcome):
                by_id[o.nodeid] = o
    matrices = sorted({r.matrix for r in reports if r.matrix})
    rehearsals: dict[str, dict] = {}  # a rehearsal reported by two shards once
    for rep in reports:
        for rehearsal in rep.rehearsals:
            rehearsals.setdefault(rehearsal.get("entry") or json.dumps(rehearsal, sort_keys=True), rehearsal)
    return Report(matrix=", ".join(matrices), outcomes=list(by_id.values()), rehearsals=list(rehearsals.values()))
