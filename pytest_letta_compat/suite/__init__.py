"""The compatibility suite shipped with the package: smoke, schema, api, upgrade, roundtrip and
letta_code checks, run against every entry of the user's matrix. ``pytest --letta-suite`` (or the
``letta_suite`` ini key) collects it into any repo's run; ``letta-compat gate`` runs it."""
