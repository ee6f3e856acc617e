"""letta-compat, the operator's command line: one module per command group; `main` lists them all."""
