"""The compatibility grid and the gate that decides an image bump from it."""
