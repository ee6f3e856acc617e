#!/usr/bin/env python3
"""Rewrite pytest_letta_compat/data/letta_code_releases.json from the registries.

Run by a maintainer (never by a test run):

    .venv/bin/python scripts/refresh_letta_code_releases.py [--git-dir PATH/letta-code.git]

* npm ``@letta-ai/letta-code``: every published version below 0.32.13 and whether it installs
  (``npm install --dry-run --ignore-scripts`` resolves its whole dependency tree; some releases
  pin packages the registry no longer serves).
* PyPI ``letta`` >= 0.32.13 (Letta Code with its own Node runtime): every version with a wheel,
  dated by its upload time.
* npm's ``time`` field is the registry's word; some registries (mirrors) serve times that are not
  publish dates. With ``--git-dir`` (a clone of letta-ai/letta-code), the ``vX.Y.Z`` tag date
  is used instead and the row says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from packaging.version import Version

NPM_PACKAGE = "@letta-ai/letta-code"
PYPI_MIN = Version("0.32.13")
OUT = Path(__file__).resolve().parent.parent / "pytest_letta_compat" / "data" / "letta_code_releases.json"


def npm_times() -> dict[str, str]:
    out = subprocess.run(["npm", "view", NPM_PACKAGE, "time", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return {v: t for v, t in json.loads(out).items() if v not in ("created", "modified")}


def npm_installs(version: str) -> str | None:
    """None when ``version`` resolves with every dependency, else npm's reason (one line)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["npm", "install", "--dry-run", "--ignore-scripts", "--no-save", "--loglevel=error",
                               "--prefix", tmp, f"{NPM_PACKAGE}@{version}"], capture_output=True, text=True,
                              timeout=300)
    if proc.returncode == 0:
        return None
    lines = [re.sub(r"https?://\S+?/(?=@|[a-z])", "", line.removeprefix("npm error ").strip())
             for line in proc.stderr.splitlines()]
    for needle in ("Not Found", "No matching", "could not be found", "404", "notarget"):
        found = next((line for line in lines if needle in line), None)
        if found:
            return found[:300]
    return (lines[0] if lines else f"npm exit {proc.returncode}")[:300]


def pypi_releases(index: str) -> dict[str, tuple[str, list[str]]]:
    with urllib.request.urlopen(f"{index}/pypi/letta/json", timeout=60) as response:
        doc = json.load(response)
    found = {}
    for version, files in doc["releases"].items():
        wheels = [f for f in files if f["filename"].endswith(".whl") and not f.get("yanked")]
        if Version(version) >= PYPI_MIN and wheels:
            first = min(f["upload_time_iso_8601"] for f in wheels)
            platforms = sorted({f["filename"].rsplit("-", 1)[1].removesuffix(".whl") for f in wheels})
            found[version] = (first, platforms)
    return found


def tag_dates(git_dir: Path) -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "for-each-ref", "--format=%(refname:short) %(creatordate:iso-strict)",
                          "refs/tags"], capture_output=True, text=True, check=True).stdout
    dates = {}
    for line in out.splitlines():
        tag, _, when = line.partition(" ")
        if tag.startswith("v"):
            dates[tag[1:]] = when
    return dates


def utc_day(stamp: str) -> str:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(dt.timezone.utc).date().isoformat()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--git-dir", type=Path, help="a clone of letta-ai/letta-code: date npm releases by their tags")
    ap.add_argument("--pypi", default="https://pypi.org", help="PyPI base URL (JSON API)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if shutil.which("npm") is None:
        print("refresh_letta_code_releases: npm is needed to read the npm registry", file=sys.stderr)
        return 2

    tags = tag_dates(args.git_dir) if args.git_dir else {}
    rows = []
    for version, stamp in npm_times().items():
        if Version(version) >= PYPI_MIN:
            continue  # from 0.32.13 the plugin installs PyPI's build
        why_not = npm_installs(version)
        row = {"version": version, "source": "npm", "released": utc_day(stamp), "date_source": "npm registry time",
               "installs": why_not is None}
        if version in tags:
            row.update(released=utc_day(tags[version]), date_source=f"git tag v{version} (letta-ai/letta-code)",
                       npm_registry_time=stamp)
        if why_not:
            row["why_not"] = why_not
        rows.append(row)
        print(f"npm  {version:<8} {row['released']}  {'installs' if why_not is None else 'does NOT install: ' + why_not}")
    for version, (stamp, platforms) in pypi_releases(args.pypi.rstrip("/")).items():
        rows.append({"version": version, "source": "pypi", "released": utc_day(stamp),
                     "date_source": "PyPI upload time", "installs": True, "wheels": platforms})
        print(f"pypi {version:<8} {utc_day(stamp)}  installs ({len(platforms)} wheels)")
    rows.sort(key=lambda r: Version(r["version"]))
    command = "python scripts/refresh_letta_code_releases.py" + (" --git-dir <letta-code clone>" if args.git_dir else "")
    doc = {"refreshed": dt.datetime.now(dt.timezone.utc).date().isoformat(), "command": command,
           "npm_package": NPM_PACKAGE, "pypi_package": "letta", "pypi_min": str(PYPI_MIN), "releases": rows}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(rows)} releases ({sum(r['installs'] for r in rows)} install) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
