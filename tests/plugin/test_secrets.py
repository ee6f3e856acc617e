"""Passwords of the clusters the plugin starts never show up in logs or error messages."""

from __future__ import annotations

import secrets

from pytest_letta_compat.errors import ProvisioningError, redact, register_secret


def test_redact_masks_the_password_of_any_postgres_dsn():
    text = ("letta at postgresql://letta:pa55-word@127.0.0.1:5432/letta, admin at "
            "postgresql+psycopg://postgres:Xy_z9@localhost/postgres and postgres://u:p@h/db")
    assert redact(text) == ("letta at postgresql://letta:***@127.0.0.1:5432/letta, admin at "
                            "postgresql+psycopg://postgres:***@localhost/postgres and postgres://u:***@h/db")


def test_registered_secrets_are_masked_in_text_and_in_plugin_errors():
    secret = secrets.token_urlsafe(12)
    register_secret(secret)
    assert redact(f"password={secret} again {secret}") == "password=*** again ***"
    assert secret not in str(ProvisioningError(f"could not log in with {secret}"))


def test_cluster_passwords_stay_out_of_the_postgres_log_and_errors(pytester):
    pytester.makepyfile("""
        import time
        import psycopg
        import pytest
        from pytest_letta_compat.errors import ProvisioningError, redact

        def test_no_password_leaks(letta_backend):
            cluster = letta_backend.cluster
            passwords = [cluster.letta_password, cluster.admin_password]
            # PostgreSQL logs a failing statement together with its error: make both hold the passwords
            with letta_backend.connect("postgres") as conn, pytest.raises(psycopg.errors.InvalidTextRepresentation):
                conn.execute(f"SELECT '{passwords[0]}'::int, '{passwords[1]}'::int")
            deadline = time.monotonic() + 10
            while "STATEMENT:" not in cluster.log_path.read_text():  # the error line, then its statement
                assert time.monotonic() < deadline, "PostgreSQL did not log the failing statement"
                time.sleep(0.05)
            log = cluster.log_path.read_text()
            assert "STATEMENT:  SELECT '***'::int, '***'::int" in log
            error = str(ProvisioningError(f"{letta_backend.dsn('postgres')} refused {passwords}"))
            for text in (log, cluster.process.log_tail(), error, redact(cluster.dsn("postgres", admin=True))):
                assert not any(p in text for p in passwords), text
    """)
    result = pytester.runpytest_subprocess(f"--letta-cache-dir={pytester.path / 'cache'}", timeout=120)
    result.assert_outcomes(passed=1)
