"""What of a server log a failure report shows: the errors and the lines around them first,
then the last lines, with Python warnings and repeated log warnings folded into a count.

A Letta server's log is mostly start-up DeprecationWarnings and "SECURITY: ... without actor"
warnings; a plain 200-line tail buried the one traceback that mattered.  Pure text in, text
out: no pytest here.
"""

from __future__ import annotations

import re
from collections import Counter

# "<path>:<line>: SomeWarning: text" as the warnings module prints it
_PY_WARNING = re.compile(r"^(?:\S+ )?\S+:\d+: (\w*Warning\w*|PydanticDeprecatedSince\w+): ")
_LOG_WARNING = re.compile(r"\s-\sWARNING\s-\s|^WARNING[: ]|\[warning\]|\bWARNING:\s", re.IGNORECASE)
_ERROR = re.compile(
    r"Traceback \(most recent call last\)|\b(?:ERROR|CRITICAL|FATAL|PANIC)\b|\b\w+(?:Error|Exception)\b:"
    r"|exited with code [1-9]|\" 5\d\d\b| 5\d\d Internal|\bdeadlock\b|\btimed? ?out\b", re.IGNORECASE)
_STAMP = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")  # the time procs' log pump puts before each line


def _body(line: str) -> str:
    return _STAMP.sub("", line, count=1)


def _continuation(line: str) -> bool:
    """The indented source line the warnings module prints under a warning."""
    body = _body(line)
    return body.startswith((" ", "\t")) and bool(body.strip())


def excerpt(text: str, *, max_lines: int = 120, context: int = 3, tail: int = 40) -> str:
    """At most ``max_lines`` lines of ``text``: every error with ``context`` lines before it
    and its traceback after it, then the last ``tail`` lines that are not warnings, and one
    line counting the warnings that were folded away."""
    lines = text.splitlines()
    warnings: Counter[str] = Counter()
    kept: list[int] = []  # indices of lines that are not warnings
    i = 0
    while i < len(lines):
        body = _body(lines[i])
        match = _PY_WARNING.match(body)
        if match:
            warnings[match.group(1)] += 1
            i += 1
            while i < len(lines) and _continuation(lines[i]) and not _ERROR.search(lines[i]):
                i += 1
            continue
        if _LOG_WARNING.search(body) and not _ERROR.search(body):
            warnings["logged WARNING"] += 1
            i += 1
            continue
        kept.append(i)
        i += 1

    wanted: list[int] = []
    seen: set[int] = set()
    for n, index in enumerate(kept):
        if not _ERROR.search(lines[index]):
            continue
        start = max(0, n - context)
        end = min(len(kept), n + 1 + context)
        if "Traceback" in lines[index]:  # its frames, then the exception line
            end = n + 1
            while end < len(kept) and _continuation(lines[kept[end]]) and end - n < 80:
                end += 1
            end = min(len(kept), end + 1 + context)
        for m in range(start, end):
            if kept[m] not in seen:
                seen.add(kept[m])
                wanted.append(kept[m])

    tail_indices = set(kept[-tail:])
    wanted = [index for index in wanted if index not in tail_indices]  # the tail shows those already
    out: list[str] = []
    if wanted:
        out.append("--- errors and the lines around them ---")
        previous = None
        for index in sorted(wanted):
            if previous is not None and index != previous + 1 and out[-1] != "...":
                out.append("...")
            out.append(lines[index])
            previous = index
    last = [lines[index] for index in kept[-tail:]]
    budget = max_lines - (2 if warnings else 0) - 1
    if len(out) + len(last) > budget:
        # keep the first errors (the cause) and the last lines (the end)
        room = max(budget - len(last), min(budget, 20))
        out = out[:room] + (["... (more errors left out)"] if len(out) > room else [])
        last = last[-max(0, budget - len(out)):] if budget - len(out) > 0 else []
    if out:
        out.append("--- last lines ---")
    out.extend(last)
    if warnings:
        folded = ", ".join(f"{kind} x{count}" for kind, count in warnings.most_common())
        out.append(f"--- {sum(warnings.values())} warnings folded: {folded} ---")
    return "\n".join(out)
