"""The ``wsops`` command: one Typer sub-app per command group, joined here."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from wsops.ops.apicmds import disconnect, publish, revoke, rooms
from wsops.ops.dashboards import dashboards_app
from wsops.ops.debug import debug
from wsops.ops.drain import drain
from wsops.ops.leaks import leaks_app
from wsops.ops.loadtest import loadtest_app
from wsops.ops.plan import plan_command
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
app.command(name="plan")(plan_command)
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(leaks_app, name="leaks")
app.add_typer(loadtest_app, name="loadtest")


def reflow(doc: str) -> str:
    """A command's help with each paragraph on one line, so the terminal wraps it at its own
    width (this Typer keeps a docstring's line breaks after the first paragraph: at 80
    columns each line came out broken in two). Paragraphs that are lists (a line starting
    with "-" or indented) and those marked with \\b keep their lines."""
    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.split("\n")
        if para.startswith("\b") or any(ln.startswith(("- ", " ")) for ln in lines):
            out.append(para)
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def _reflow_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback is not None else None)
        if doc:
            info.help = reflow(doc)
    callback = typer_app.registered_callback
    if callback is not None and callback.callback is not None and callback.callback.__doc__:
        callback.help = callback.help or reflow(callback.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


_reflow_commands(app)


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
