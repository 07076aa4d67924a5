"""The ``wsops`` command: one Typer sub-app per command group, joined here."""

from __future__ import annotations

from typing import Annotated

import typer

from wsops.ops.apicmds import disconnect, publish, revoke, rooms
from wsops.ops.dashboards import dashboards_app
from wsops.ops.debug import debug
from wsops.ops.drain import drain
from wsops.ops.leaks import leaks_app
from wsops.ops.loadtest import loadtest_app
from wsops.ops.rollout import rollout
from wsops.ops.serve import serve
from wsops.ops.status import status, top
from wsops.ops.tap import tap
from wsops.version import __version__

app = typer.Typer(
    name="wsops",
    help="Observability and operations for WebSocket fleets: serve, inspect, drain, profile, "
         "load test.",
    no_args_is_help=True,
    add_completion=False,
)
# Single commands are registered here; command groups join with add_typer.
app.command(name="serve")(serve)
app.command(name="drain")(drain)
app.command(name="rollout")(rollout)
app.command(name="debug")(debug)
app.command(name="tap")(tap)
app.command(name="status")(status)
app.command(name="top")(top)
app.command(name="publish")(publish)
app.command(name="rooms")(rooms)
app.command(name="disconnect")(disconnect)
app.command(name="revoke")(revoke)
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(leaks_app, name="leaks")
app.add_typer(loadtest_app, name="loadtest")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wsops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """wsops: observability and operations for WebSocket fleets."""


def main() -> None:
    app()
