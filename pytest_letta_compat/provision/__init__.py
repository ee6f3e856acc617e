"""Everything that is installed and started for a run: processes, pinned Letta installs, alembic runs, Redis, Letta servers, Letta Code, the fake LLM."""
