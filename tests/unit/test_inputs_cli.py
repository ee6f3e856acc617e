"""Issue 13: every bad input to `letta-compat` is one line on stderr, exit 2, no traceback,
nothing written, no password shown. No Letta server: a few lines of http.server stand in."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_letta_compat.cli.main import main

SECRET = "secretpw"


def one_line_error(capsys, argv: list[str], *secrets: str) -> str:
    """Run the CLI in-process; it must exit 2 with one line on stderr, no traceback, no secret."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("letta-compat: error: "), err
    for secret in (SECRET, *secrets):
        assert secret not in out + err
    assert "Traceback" not in out + err
    return lines[0]


def test_a_subprocess_run_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli", "backup", "--url", "http://127.0.0.1:9",
                           "--out", str(tmp_path / "afile")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "is a file, not a directory" in proc.stderr


# -- a stand-in for whatever answers at --url ------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        status, kind, body = self.routes.get(path, self.routes.get("*", (404, "text/html", b"<html>no</html>")))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def serving(routes: dict[str, tuple[int, str, bytes]]):
    handler = type("H", (_Handler,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


HTML_PAGE = {"*": (200, "text/html; charset=utf-8", b"<!doctype html><html><body>a web site</body></html>")}
EMPTY_LETTA = {"/v1/health/": (200, "application/json", b'{"version": "0.16.2", "status": "ok"}'),
               "/v1/agents/": (200, "application/json", b"[]")}


# -- backup ------------------------------------------------------------------------------------
def test_backup_out_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    line = one_line_error(capsys, ["backup", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "afile")])
    assert "is a file, not a directory" in line and "new directory" in line
    assert (tmp_path / "afile").read_text() == "keep"


def test_backup_out_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    line = one_line_error(capsys, ["backup", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "afile" / "b")])
    assert "is a file, not a directory" in line


def test_backup_out_unwritable(capsys):
    line = one_line_error(capsys, ["backup", "--url", "http://127.0.0.1:9", "--out", "/proc/nope"])
    assert "cannot create anything in /proc" in line and not Path("/proc/nope").exists()


def test_backup_out_a_non_empty_directory(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    line = one_line_error(capsys, ["backup", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "full")])
    assert "not empty" in line
    assert os.listdir(tmp_path / "full") == ["notes.txt"]


def test_backup_against_an_html_site_writes_nothing(tmp_path, capsys):
    with serving(HTML_PAGE) as url:
        line = one_line_error(capsys, ["backup", "--url", url, "--out", str(tmp_path / "b")])
    assert "not JSON" in line and "http://localhost:8283" in line
    assert not (tmp_path / "b").exists()


def test_backup_against_an_html_404(tmp_path, capsys):
    with serving({}) as url:
        line = one_line_error(capsys, ["backup", "--url", url, "--out", str(tmp_path / "b")])
    assert "HTML page" in line and "<html" not in line
    assert not (tmp_path / "b").exists()


def test_backup_url_with_a_password_is_masked(tmp_path, capsys):
    line = one_line_error(capsys, ["backup", "--url", f"http://admin:{SECRET}@127.0.0.1:9", "--out",
                                   str(tmp_path / "b")])
    assert "http://admin:***@127.0.0.1:9" in line


def test_backup_url_not_http(tmp_path, capsys):
    line = one_line_error(capsys, ["backup", "--url", "localhost:8283", "--out", str(tmp_path / "b")])
    assert "http://" in line


def test_backup_reads_letta_pg_uri(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LETTA_PG_URI", f"postgresq://u:{SECRET}@localhost/letta")
    line = one_line_error(capsys, ["backup", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "b")])
    assert "is not a PostgreSQL DSN" in line and "postgresq://u:***@localhost/letta" in line
    assert not (tmp_path / "b").exists()


def test_backup_creates_its_directory_0700_and_tightens_an_empty_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LETTA_PG_URI", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    with serving(EMPTY_LETTA) as url:
        assert main(["backup", "--url", url, "--out", str(tmp_path / "new" / "b")]) == 0
        assert main(["backup", "--url", url, "--out", str(empty)]) == 0
    assert stat.S_IMODE((tmp_path / "new" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(empty.stat().st_mode) == 0o700
    manifest = json.loads((empty / "manifest.json").read_text())
    assert manifest["agents"] == [] and manifest["server_version"] == "0.16.2"


def test_backup_manifest_never_holds_the_url_password(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LETTA_PG_URI", raising=False)
    with serving(EMPTY_LETTA) as url:
        url = url.replace("http://", f"http://admin:{SECRET}@")
        assert main(["backup", "--url", url, "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err + (tmp_path / "b" / "manifest.json").read_text()


# -- restore / verify / rollback on manifests that are JSON but not ours ---------------------
def _backup_dir(tmp_path: Path, manifest) -> Path:
    d = tmp_path / "backup"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


RECORD = {"id": "agent-1", "name": "a", "format": "agentfile", "messages": 0, "messages_by_role": {},
          "blocks": 0, "tools": 0, "in_context_ids": [], "files": []}
MANIFEST = {"source_url": "http://x", "server_version": "0.16.2", "created_at": "now", "agents": [RECORD],
            "format": 1}


@pytest.mark.parametrize("manifest, says", [
    ("hello", "it is str, expected a JSON object"),
    (MANIFEST, "`agents[0].files` is list, expected dict"),
    ({**MANIFEST, "agents": [{**RECORD, "files": {"../../etc/passwd": "0" * 64}}]}, "inside the backup directory"),
], ids=["string", "files-a-list", "path-escapes"])
@pytest.mark.parametrize("command", ["restore", "verify", "rollback"])
def test_a_manifest_not_shaped_as_ours(tmp_path, capsys, command, manifest, says):
    d = _backup_dir(tmp_path, manifest)
    argv = {"restore": ["restore", "--url", "http://127.0.0.1:9", str(d)],
            "verify": ["verify", "--url", "http://127.0.0.1:9", str(d)],
            "rollback": ["rollback", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:9/letta", "--backup", str(d)]}[command]
    line = one_line_error(capsys, argv)
    assert "not a letta-compat backup manifest" in line and says in line
    assert "AttributeError" not in line and "object has no attribute" not in line
    assert sorted(os.listdir(d)) == ["manifest.json"]


def test_restore_of_a_missing_directory(tmp_path, capsys):
    line = one_line_error(capsys, ["restore", "--url", "http://127.0.0.1:9", str(tmp_path / "nope")])
    assert "is not a directory" in line


# -- convert ------------------------------------------------------------------------------------
@pytest.fixture
def legacy_file(tmp_path) -> Path:
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps({"name": "a", "core_memory": [], "messages": []}))
    return path


def test_convert_to_an_unwritable_path(legacy_file, capsys):
    line = one_line_error(capsys, ["convert", str(legacy_file), "/proc/nope/out.json"])
    assert "OUT /proc/nope/out.json" in line and "writable" in line


def test_convert_to_a_directory(legacy_file, tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    line = one_line_error(capsys, ["convert", str(legacy_file), str(tmp_path / "dir")])
    assert "is a directory" in line
    assert os.listdir(tmp_path / "dir") == []


def test_convert_of_a_wrongly_shaped_export(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "a", "core_memory": "not a list"}))
    line = one_line_error(capsys, ["convert", str(bad), str(tmp_path / "out.json")])
    assert "`core_memory` must be a list" in line and not (tmp_path / "out.json").exists()


def test_convert_of_a_file_that_is_not_json_does_not_echo_it(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(f"password={SECRET} not json")
    line = one_line_error(capsys, ["convert", str(bad), str(tmp_path / "out.json")])
    assert "is not JSON (line 1" in line


# -- reports, gate, cache, schema, upgrade ------------------------------------------------------
def test_report_merge_of_a_json_list(tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1, 2]")
    line = one_line_error(capsys, ["report", "merge", str(tmp_path / "list.json"), "--out", str(tmp_path / "m.json")])
    assert "not a letta-compat JSON report (the file holds a JSON list, not an object)" in line
    assert not (tmp_path / "m.json").exists()


def test_report_merge_to_an_unwritable_place(tmp_path, capsys):
    line = one_line_error(capsys, ["report", "merge", str(tmp_path / "r.json"), "--out", "/proc/nope/m.json"])
    assert "--out /proc/nope/m.json" in line


def test_gate_from_not_a_version(tmp_path, capsys):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  letta:\n    image: letta/letta:0.16.2\n")
    line = one_line_error(capsys, ["gate", "--compose", str(compose), "--from", "notaversion"])
    assert "--from 'notaversion' is not a Letta server release this tool knows. Allowed: 0.11.0" in line


def test_cache_dir_unusable(capsys):
    line = one_line_error(capsys, ["--cache-dir", "/proc/nope", "install", "0.16.2"])
    assert "The cache directory /proc/nope cannot be created" in line


@pytest.mark.parametrize("via_env", [False, True], ids=["--dsn", "LETTA_PG_URI"])
def test_schema_check_mistyped_scheme_never_shows_the_password(capsys, monkeypatch, via_env):
    dsn = f"postgresq://u:{SECRET}@localhost/letta"
    monkeypatch.setenv("LETTA_PG_URI", dsn) if via_env else monkeypatch.delenv("LETTA_PG_URI", raising=False)
    line = one_line_error(capsys, ["schema", "check", *([] if via_env else ["--dsn", dsn]),
                                   "--server-version", "0.16.2"])
    assert "postgresq://u:***@localhost/letta" in line


def test_upgrade_mistyped_scheme_never_shows_the_password(tmp_path, capsys):
    line = one_line_error(capsys, ["upgrade", "--from", "0.16.1", "--to", "0.16.2", "--dsn",
                                   f"postgresq://u:{SECRET}@localhost/letta", "--url", "http://127.0.0.1:9",
                                   "--backup", str(tmp_path / "b")])
    assert "postgresq://u:***@localhost/letta" in line


@pytest.mark.parametrize("argv", [
    ["upgrade", "--from", "0.16.2", "--to", "0.16.8", "--url", "http://127.0.0.1:9", "--backup", "b"],
    ["schema", "check", "--server-version", "0.16.2"],
])
def test_a_missing_database_names_letta_pg_uri(capsys, monkeypatch, argv):
    monkeypatch.delenv("LETTA_PG_URI", raising=False)
    line = one_line_error(capsys, argv)
    assert "$LETTA_PG_URI" in line and "--dsn" in line


def test_rehearse_on_a_directory_asks_for_the_dump_file_itself(capsys, tmp_path):
    line = one_line_error(capsys, ["rehearse", "--dump", str(tmp_path), "--to", "0.16.8"])
    assert "is a directory" in line and "database.dump" in line
