"""--encryption-key-env NAME (rehearse and upgrade): the key reaches alembic's environment, never
its command line, its log or the terminal; an unset or empty variable is one line, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_letta_compat.cli.main import main
from pytest_letta_compat.provision import alembic

KEY = "rk-" + "9f2c4e7a1b3d5f60" * 2


@pytest.mark.parametrize("command", [
    ["upgrade", "--from", "0.16.1", "--to", "0.16.2", "--dsn", "postgresql://letta:pw@127.0.0.1:9/letta",
     "--url", "http://127.0.0.1:9", "--backup", "never-made"],
    ["rehearse", "--dump", "never-read.dump", "--to", "0.16.8"],
])
@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_or_empty_variable_is_one_line_naming_the_option(command, value, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    if value is None:
        monkeypatch.delenv("MY_LETTA_KEY", raising=False)
    else:
        monkeypatch.setenv("MY_LETTA_KEY", value)
    assert main([*command, "--encryption-key-env", "MY_LETTA_KEY"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0] == ("letta-compat: error: --encryption-key-env MY_LETTA_KEY: that environment variable is not "
                        "set (or empty). Export the server's LETTA_ENCRYPTION_KEY under it.")
    assert not (tmp_path / "never-made").exists()


def test_alembic_gets_the_key_in_its_environment_only_and_its_log_masks_it(monkeypatch, tmp_path):
    seen = {}

    def fake_run(argv, **kwargs):  # alembic itself: echoes the key as a careless migration might
        seen.update(argv=argv, env=kwargs["env"])
        return subprocess.CompletedProcess(argv, 0, stdout=f"key is {kwargs['env'].get('LETTA_ENCRYPTION_KEY')}\n"
                                           "sandbox_environment_variables: Encrypted 3 records, skipped 0 "
                                           "already encrypted fields\n", stderr="")

    monkeypatch.setattr(alembic, "ensure_migration_scripts", lambda cache: tmp_path)
    monkeypatch.setattr(alembic, "ensure_server", lambda version, cache: SimpleNamespace(alembic=Path("alembic")))
    monkeypatch.setattr(alembic.subprocess, "run", fake_run)
    log = tmp_path / "alembic.log"
    alembic.upgrade_database("postgresql://letta:pw@127.0.0.1:9/letta", "abc123", tmp_path, log_path=log,
                             encryption_key=KEY)
    assert seen["env"]["LETTA_ENCRYPTION_KEY"] == KEY
    assert all(KEY not in arg for arg in seen["argv"])
    assert KEY not in log.read_text()
    assert alembic.backfill_notes(log.read_text()) == [
        "sandbox_environment_variables: 3 record(s) encrypted by Letta's data-encryption migration"]

    alembic.upgrade_database("postgresql://letta:pw@127.0.0.1:9/letta", "abc123", tmp_path)
    assert "LETTA_ENCRYPTION_KEY" not in seen["env"]  # none given: none passed (not even the caller's own)


def test_backfill_notes_say_when_letta_skipped_them():
    output = ("WARNING: LETTA_ENCRYPTION_KEY not set. Skipping data encryption migration.\n"
              "providers: Encrypted 0 records, skipped 0 already encrypted fields\n")
    assert alembic.backfill_notes(output) == [
        "Letta's data-encryption migrations (8149a781ac1b, eff256d296cb) were skipped: LETTA_ENCRYPTION_KEY was "
        "not set for alembic"]
