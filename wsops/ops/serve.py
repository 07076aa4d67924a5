"""``wsops serve``: run the bundled realtime server (embedded broker, or Redis for a fleet).

Its options are not written here: each ``Settings`` field declares its flag, ``WSOPS_*`` variable
and help in ``wsops.config`` (``knob``), and ``serve``'s signature is built from ``knobs()``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Annotated, Any

import typer

from wsops.config import Knob, from_cli, knobs
from wsops.node.lifecycle import run
from wsops.node.supervisor import supervise


def _option(k: Knob) -> inspect.Parameter:
    """``k`` as a parameter Typer reads: ``name: Annotated[type, typer.Option(...)] = default``."""
    decl = f"{k.flag}/--no-{k.flag.removeprefix('--')}" if k.cli_type is bool else k.flag
    option = typer.Option(decl, envvar=k.env, help=k.help, show_envvar=True)
    return inspect.Parameter(k.name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[k.cli_type, option], default=k.cli_default)


_NO_UVLOOP = inspect.Parameter(  # not a Settings knob: how this process runs its event loop
    "no_uvloop", inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[bool, typer.Option("--no-uvloop", help="Use asyncio's own event loop.")],
    default=False)


def serve(**values: Any) -> None:
    """Run the realtime server (WebSocket at /ws) with its admin listener.

    Example: wsops serve --allow-anonymous --port 8765 --workers 2

    SIGTERM or Ctrl-C drains the node (readiness 503, connections closed with 1012 in batches;
    with --workers, every worker) and exits. Every option can also be set with the WSOPS_*
    variable shown.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    use_uvloop = not values.pop("no_uvloop", False)
    try:
        settings = from_cli(values)
        if settings.workers > 1:
            code = supervise(settings, use_uvloop=use_uvloop)
        else:
            code = run(settings, use_uvloop=use_uvloop)
    except (ValueError, OSError) as exc:
        typer.secho(f"wsops serve: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


serve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*(_option(k) for k in knobs()), _NO_UVLOOP], return_annotation=None)
