"""Typer sub-apps of the ``wsops`` command, one per command group."""
