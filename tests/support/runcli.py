"""Run the ``wsops`` CLI in a worker thread, so live servers in the test's loop keep serving."""

from __future__ import annotations

import asyncio
import re

from typer.testing import CliRunner, Result

from wsops.cli import app

# The CLI must see neither the environment's admin token nor its node list unless a test says.
CLEAN_ENV: dict[str, str | None] = {"WSOPS_ADMIN_TOKEN": None, "WSOPS_NODES": None,
                                    "COLUMNS": "200"}


async def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``wsops ARGS`` through Typer's CliRunner; ``result.stdout``/``stderr`` kept apart."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args),
                                   env={**CLEAN_ENV, **(env or {})})


def plain(text: str) -> str:
    """Output without colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def flat(text: str) -> str:
    """Output without colour codes, on one line: rich's wrapping of long messages undone."""
    return re.sub(r"\s+", " ", plain(text))
