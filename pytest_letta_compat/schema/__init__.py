"""Schema inspection of live Letta databases and comparison with what a version expects."""
