"""Migration routines operators run on the day: backup, upgrade, fix-ups, restore, verify, rollback."""
