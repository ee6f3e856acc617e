"""``letta-compat advise`` and ``letta-compat versions --letta-code``: answers from the shipped
Letta Code release table and the server × Letta Code table measured by this project's own run."""

from __future__ import annotations

import argparse

from packaging.version import Version

from .. import versions
from .. import versions_letta_code as lc
from ..errors import LettaCompatError
from ..report.letta_code_gate import letta_code_matrix
from ..report.measure import measured_now, run_suite
from . import advise_path

_OK = (lc.WORKS, lc.WARNS)


def print_letta_code_table() -> int:
    table = lc.release_table()
    print(f"Letta Code releases (table of {table['refreshed']}, from npm {table['npm_package']} and PyPI "
          f"{table['pypi_package']} >= {table['pypi_min']}):")
    print(f"{'version':<9} {'source':<6} {'released':<11} installs")
    for r in lc.releases():
        print(f"{r.version:<9} {r.source:<6} {r.released:<11} {'yes' if r.installs else 'NO: ' + (r.why_not or '')}")
    compat = lc.compat_table()
    if not compat:
        print("\nno measured server × Letta Code table is shipped")
        return 0
    servers = compat["servers"]
    print(f"\nMeasured {compat['measured']} with `{compat['command']}`"
          + (f"\n{compat['note']}" if compat.get("note") else ""))
    print(f"{'Letta Code':<11} " + " ".join(f"{s:<9}" for s in servers))
    short = {lc.WORKS: "works", lc.WARNS: "warning", lc.FAILS: "FAILS"}
    for version in compat["letta_code"]:
        cells = [lc.measured_pair(s, version) for s in servers]
        print(f"{version:<11} " + " ".join(f"{short[c['outcome']] if c else '-':<9}" for c in cells))
    print(f"(servers below 0.16.2 were not measured; {compat.get('floor_server', '0.11.3')} is the declared floor: "
          "Letta Code's letta_v1_agent agents are refused by 0.11.x)")
    return 0


def _check_letta_code(version: str) -> None:
    if not lc.is_known(version):
        raise LettaCompatError(f"--letta-code: {lc.refusal(version)}")


def _measured_line(version: str, measured: list[str]) -> str | None:
    """The measured release standing for ``version``: itself, else the measured one of its minor line."""
    if version in measured:
        return version
    minor = ".".join(version.split(".")[:2])
    return next((m for m in measured if ".".join(m.split(".")[:2]) == minor), None)


def _verdict(pair: dict) -> str:
    if pair["outcome"] == lc.FAILS:
        lines = [f"  failing check: {f['check']} ({f['outcome']}): {f['evidence']}" for f in pair["failing"]]
        return "fails\n" + "\n".join(lines)
    if pair["outcome"] == lc.WARNS:
        return f"works with a warning: {pair['warning']}"
    return "works"


def _letta_code_after(target: str) -> str:
    """One line: which Letta Code works on ``target`` (the server after the upgrade)."""
    compat = lc.compat_table() or {"servers": [], "pairs": []}
    if target not in compat["servers"]:
        return f"Letta Code on {target}: not measured (`letta-compat versions --letta-code` shows what was)."
    working = sorted((p["letta_code"] for p in compat["pairs"] if p["server"] == target and p["outcome"] in _OK),
                     key=Version)
    return f"Letta Code on {target} after the upgrade: " + (
        f"{working[0]} to {working[-1]} work (measured lines stand for their releases)" if working
        else "no measured release works")


def cmd_advise(args: argparse.Namespace) -> int:
    versions.require_server_release(args.server, "--server")
    if args.letta_code:
        _check_letta_code(args.letta_code)
    path_code = 0
    if args.to or not args.letta_code:  # the operator's first question: the server path
        target = args.to or advise_path.vu.FINAL
        if target == args.server and not args.to:
            print(f"Letta {args.server} is the final server release (the server repository is archived): "
                  "no server upgrade is left.")
        else:
            versions.require_server_release(target, "--to")
            advise_path.check_path(args.server, target)
            lines, path_code = (advise_path.measure if args.measure else advise_path.path_lines)(args.server, target)
            print("\n".join(lines))
            print(_letta_code_after(target))
        print()
    return max(_letta_code_part(args), path_code)


def measure_letta_code_command(server: str, letta_code: str) -> str:
    """The command, with the installed package, that measures Letta Code on a server."""
    return f"letta-compat advise --server {server} --letta-code {letta_code} --measure"


def _measure_letta_code(server: str, version: str) -> int:
    """Run the shipped letta_code checks for ``version`` against a real Letta ``server`` now."""
    print(f"Measuring Letta Code {version} on Letta {server}: the shipped letta_code checks on a real server "
          "(about a minute once both are installed) …", flush=True)
    found = measured_now(lambda report: run_suite(letta_code_matrix(server, version, None), name="advise-letta-code",
                                                  checks=("letta_code",), report=report))
    table = lc.compat_from_report(found, command="", measured="now") if found is not None else {"pairs": []}
    pair = next((p for p in table["pairs"] if (p["server"], p["letta_code"]) == (server, version)), None)
    if pair is None:
        print(f"Letta Code {version} on server {server}: no check ran (the pytest output above says why).")
        return 1
    print(f"Letta Code {version} on server {server}, measured now: {_verdict(pair)}")
    return 1 if pair["outcome"] == lc.FAILS else 0


def _letta_code_part(args: argparse.Namespace) -> int:
    """What advise says of Letta Code on the operator's server; its exit code counts only when
    --letta-code was asked about."""
    server, asked = args.server, args.letta_code
    compat = lc.compat_table() or {"measured": "-", "servers": [], "letta_code": [], "pairs": []}
    if Version(server) < Version("0.12"):
        lowest = min(compat["servers"] or ["0.16.2"], key=Version)
        print(f"Letta Code on server {server}: does not work. Letta Code creates letta_v1_agent agents, which "
              "Letta 0.11.x refuses (POST /v1/agents/ answers 422) before the first turn. Move the server to "
              f"0.12 or newer first; Letta Code was measured working from server {lowest} on.")
        return 1 if asked else 0
    if asked and args.measure:
        return _measure_letta_code(server, asked)
    if asked and lc.published_after_table(asked):
        print(f"Letta Code {asked} was published after this package's tables: not measured yet. Measure it on "
              f"this machine (a real Letta {server} and the shipped letta_code checks, about a minute): "
              f"{measure_letta_code_command(server, asked)}")
        return 1
    print(f"(from the table measured {compat['measured']}, {len(compat['pairs'])} pairs; "
          "`letta-compat versions --letta-code` shows it and how it was measured)")
    if server not in compat["servers"]:
        probe = asked or lc.newest()
        print(f"Letta Code on server {server}: not measured (measured servers: {', '.join(compat['servers'])}). "
              f"Measure it on this machine: {measure_letta_code_command(server, probe)}")
        return 1 if asked else 0
    pairs = [p for p in compat["pairs"] if p["server"] == server]
    working = [p["letta_code"] for p in pairs if p["outcome"] in _OK]
    newest = max(working, key=Version) if working else None
    code = 0
    if asked:
        line = _measured_line(asked, compat["letta_code"])
        if line is None:
            print(f"Letta Code {asked} (line {'.'.join(asked.split('.')[:2])}) was not measured; measured: "
                  f"{', '.join(compat['letta_code'])}. Measure it: {measure_letta_code_command(server, asked)}")
            return 1
        pair = lc.measured_pair(server, line)
        stand = "" if line == asked else f" (measured as {line}, the last release of its line)"
        print(f"Letta Code {asked}{stand} on server {server}: {_verdict(pair)}")
        code = 1 if pair["outcome"] == lc.FAILS else 0
        ok_servers = [p["server"] for p in compat["pairs"] if p["letta_code"] == line and p["outcome"] in _OK]
        print(f"oldest server Letta Code {line} was measured working on: "
              + (min(ok_servers, key=Version) if ok_servers else "none"))
    else:
        for p in sorted(pairs, key=lambda p: Version(p["letta_code"])):
            print(f"  Letta Code {p['letta_code']:<8} {_verdict(p)}")
    print(f"newest Letta Code for server {server}: {newest or 'none measured works'}"
          + (f" (newest release: {lc.newest()}; measured lines stand for their releases)" if newest else ""))
    if code and newest:
        print(f"move Letta Code to {newest}, which works on server {server}")
    return code


def register(sub: argparse._SubParsersAction) -> None:
    advise = sub.add_parser("advise", help="will the server upgrade X -> Y work, and does Letta Code Z work with "
                                           "server X? (from the measured tables)")
    advise.add_argument("--server", required=True, type=versions.spelled,
                        help="the Letta server release you run, e.g. 0.16.2 (or v0.16.2)")
    advise.add_argument("--to", type=versions.spelled,
                        help="the server release you plan to move to (default: the final release, 0.16.8)")
    advise.add_argument("--measure", action="store_true",
                        help="measure on this machine instead of reading the tables: the server path (--to), or "
                             "--letta-code on --server (real servers; minutes)")
    advise.add_argument("--letta-code", help="the Letta Code release you run or plan to run, e.g. 0.34.12")
    advise.set_defaults(func=cmd_advise)
