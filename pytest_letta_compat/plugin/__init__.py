"""The pytest layer: options resolved once, hooks, fixtures, report collection, the shipped suite's collector."""
