"""Letta's REST API across versions: the client the operator commands use, and agent helpers."""
