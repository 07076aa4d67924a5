"""``wsops serve``: run the bundled realtime server (embedded broker, or Redis for a fleet).

Its options are not written here: each ``Settings`` field declares its flag, ``WSOPS_*`` variable
and help in ``wsops.config`` (``knob``), and ``serve``'s signature is built from ``knobs()``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Annotated, Any, Final

import typer

from wsops.config import Knob, Settings, from_cli, knobs
from wsops.node.lifecycle import run
from wsops.node.supervisor import supervise

# The help's panels (one table each), in this order; a knob in none is under "Options", first.
# Rich sizes each table's columns to its own longest flag and word, and gives a --x/--no-x pair
# a column of its own: one table of every knob leaves the help text no room at 80 columns and
# cuts flags short (--max-rooms-per-co…), so the pairs have a panel of their own (SWITCHES).
SWITCHES: Final = "Switches"
PANELS: Final[dict[str, tuple[str, ...]]] = {
    "Authentication": ("jwt_secret", "jwt_public_key", "jwt_audience", "jwt_issuer",
                       "jwt_leeway", "jwt_rooms_claim", "allowed_origins"),
    "Limits": ("heartbeat", "max_message_size", "max_rooms_per_connection", "max_connections",
               "max_connections_per_ip", "rate_limit", "rate_burst", "rate_limit_strikes",
               "send_queue_bytes"),
    "Broker and history": ("broker", "broker_ack", "history_size", "history_ttl",
                           "history_room_bytes", "history_memory"),
    "Drain": ("drain_batch", "drain_interval", "drain_deadline", "drain_spread"),
    "Process": ("workers", "gc_threshold", "gc_freeze_interval", "trace_sample_ratio",
                "slo_seconds"),
}


def panel_of(k: Knob) -> str | None:
    """The help panel of ``k``: on/off flags go to ``SWITCHES``; None is "Options"."""
    if k.cli_type is bool:
        return SWITCHES
    return next((name for name, members in PANELS.items() if k.name in members), None)


def _option(k: Knob) -> inspect.Parameter:
    """``k`` as a parameter Typer reads: ``name: Annotated[type, typer.Option(...)] = default``."""
    decl = f"{k.flag}/--no-{k.flag.removeprefix('--')}" if k.cli_type is bool else k.flag
    option = typer.Option(decl, envvar=k.env, help=k.help, show_envvar=True,
                          rich_help_panel=panel_of(k))
    return inspect.Parameter(k.name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[k.cli_type, option], default=k.cli_default)


_UVLOOP = inspect.Parameter(  # not a Settings knob: how this process runs its event loop
    "uvloop", inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[bool, typer.Option(
        "--uvloop/--no-uvloop", envvar="WSOPS_UVLOOP", show_envvar=True,
        rich_help_panel=SWITCHES,
        help="Run the event loop on uvloop (else asyncio's own loop).")],
    default=True)


_CHECK = inspect.Parameter(  # not a Settings knob: what this invocation does
    "check_config", inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[bool, typer.Option(
        "--check-config", help="Check the settings (options, WSOPS_* variables, the broker URL, "
        "the JWT key) as a start would, print what would run and exit: 0 when valid, 2 and "
        "the reason when not. Connects to nothing, listens on nothing.")],
    default=False)


def _ordered(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Grouped as the panels are shown (Typer draws a panel where its first option is)."""
    order = [None, *PANELS, SWITCHES]
    panel = {k.name: panel_of(k) for k in knobs()} | {_UVLOOP.name: SWITCHES, _CHECK.name: None}
    return sorted(params, key=lambda p: order.index(panel[p.name]))


def check_config(settings: Settings) -> list[str]:
    """What ``wsops serve`` would run with, after the checks a start makes before it listens
    (the settings' own bounds, the broker URL, the ways to authenticate, the JWT key): a
    ValueError names the first problem. Passwords in the broker URL are not shown."""
    from wsops.server.app import auth_config
    from wsops.server.broker.redis_url import check_broker, is_redis_url, parse_broker_url
    from wsops.server.jwt_auth import Authenticator

    check_broker(settings.broker, settings.broker_ack)
    auth = Authenticator(auth_config(settings))
    if is_redis_url(settings.broker):
        broker = f"{parse_broker_url(settings.broker)[0].shown} (acks: {settings.broker_ack})"
    else:
        broker = "memory (embedded: one node)"
    ways = [*auth.config.algorithms, *(["anonymous"] if settings.allow_anonymous else [])]
    admin = ("off" if settings.admin_port is None
             else f"http://{settings.admin_host}:{settings.admin_port}")
    api = "off"
    if settings.api_port is not None:
        from wsops.node.supervisor import API_WITH_WORKERS
        from wsops.server.api.keys import ApiKeys, keys_from_env

        if settings.workers > 1:
            raise ValueError(API_WITH_WORKERS)

        keys = ApiKeys(keys_from_env(), signatures=settings.api_signatures)
        api = (f"http://{settings.api_host}:{settings.api_port}/api/ ({len(keys.keys)} "
               f"key{'s' if len(keys.keys) > 1 else ''}"
               f"{', signed requests' if settings.api_signatures else ''})")
    return [f"listen: ws://{settings.host}:{settings.port}/ws (workers: {settings.workers})",
            f"admin: {admin}", f"api: {api}", f"broker: {broker}", f"auth: {', '.join(ways)}",
            f"instrumented: {'yes' if settings.instrument else 'no'}"]


def serve(**values: Any) -> None:
    """Run the realtime server (WebSocket at /ws) with its admin listener.

    Example: wsops serve --allow-anonymous --port 8765 --workers 2

    SIGTERM or Ctrl-C drains the node (readiness 503, connections closed with
    1012 in batches; with --workers, every worker) and exits. Every option can
    also be set with the WSOPS_* variable shown.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    use_uvloop = bool(values.pop("uvloop", True))
    check = bool(values.pop("check_config", False))
    try:
        settings = from_cli(values)
        if check:
            for line in check_config(settings):
                typer.echo(line)
            typer.echo("wsops serve: the configuration is valid")
            return
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
    _ordered([*(_option(k) for k in knobs()), _UVLOOP, _CHECK]), return_annotation=None)
