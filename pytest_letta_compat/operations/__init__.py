"""What an operator does to a real deployment: backup, restore, verify, upgrade with fix-ups, rollback."""
