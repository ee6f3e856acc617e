"""The matrix: what a run covers (servers, upgrade paths, Letta Code, declarations), read from TOML, sharded, or taken from an operator's compose file."""
