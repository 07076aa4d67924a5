"""``wsops loadtest``: connect, idle, fanout and echo scenarios against a loopback target."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from wsops.capacity import profiles
from wsops.loadtest.plan import Plan, PlanError, source_range, with_defaults
from wsops.loadtest.runner import LoadTestError, capacity_observation, execute
from wsops.memory_per_connection import MIN_CONNECTIONS, NOT_SHOWN, shown
from wsops.ops.fleetview import normalize_url
from wsops.ops.reports import loadreport, output
from wsops.ops.reports.output import ReportOption

loadtest_app = typer.Typer(
    help="Bounded WebSocket load tests against a wsops (protocol v1) server on this machine.\n\n"
         "Each scenario spreads its connections over --processes and --sources, prints progress "
         "every second on stderr and a summary at the end (--json FILE for the full report).\n\n"
         "Exit codes: 0 done, 1 the run failed, 2 refused before connecting, 3 messages lost.",
    no_args_is_help=True,
)

SCENARIO_HELP = {
    "connect": "Connection storm: open --connections as fast as possible (or --connect-rate per "
               "second); reports connections/s and connect latency.",
    "idle": "Hold --connections open for --duration (answering pings); reports how many "
            "stayed open and the server's memory per connection (with --admin or --pid: its "
            f"RSS growth while the connections opened, divided by them; shown from "
            f"{MIN_CONNECTIONS} connections up).",
    "fanout": "--rooms rooms, one publisher each, the other connections subscribed; --rate "
              "publishes/s in all for --duration; reports losses, deliveries/s and "
              "publish-to-receive latency.",
    "echo": "Every connection subscribes to a room of its own and publishes to it, --rate "
            "publishes/s in all; reports losses and round-trip latency.",
}


def _command(scenario: str) -> Any:
    def command(
        url: Annotated[str, typer.Argument(help="Target, e.g. ws://127.0.0.1:8765/ws.")],
        connections: Annotated[int, typer.Option("--connections", "-c",
                                                 help="Connections in all.")] = 100,
        duration: Annotated[float, typer.Option("--duration", "-d",
                                                help="Seconds of load (max 3600).")] = 10.0,
        processes: Annotated[int, typer.Option("--processes", "-p", help=(
            "Load processes (raised to what --connections needs: 15,000 per process)."))] = 1,
        rooms: Annotated[int, typer.Option(help="Rooms (fanout).")] = 1,
        rate: Annotated[float, typer.Option(
            help="Publishes per second in all, at random moments like independent clients "
            "(Poisson arrivals), each sent within 1 ms of its moment.")] = 100.0,
        size: Annotated[int, typer.Option(help="Bytes per published message.")] = 64,
        connect_rate: Annotated[float, typer.Option(
            help="New connections per second in all (0: as fast as possible).")] = 0.0,
        sources: Annotated[str, typer.Option(help=(
            "Source addresses, e.g. 127.0.0.2-127.0.0.9: ~25,000 connections each "
            "(one address runs out of ephemeral ports)."))] = "",
        token: Annotated[str | None, typer.Option(
            envvar="WSOPS_LOADTEST_TOKEN", help="Bearer token for the target.")] = None,
        admin: Annotated[str | None, typer.Option(help=(
            "The target's admin URL (http://127.0.0.1:9765; HOST:PORT means http) for its CPU "
            "and memory."))] = None,
        admin_token: Annotated[str | None, typer.Option(
            envvar="WSOPS_ADMIN_TOKEN", help="Token for the admin API.")] = None,
        pid: Annotated[int | None, typer.Option(help=(
            "The target's process id (this machine): CPU and RSS of it and its children, for "
            "servers without an admin API."))] = None,
        connect_timeout: Annotated[float, typer.Option(
            help="Seconds opening all connections may take.")] = 60.0,
        settle: Annotated[float, typer.Option(
            help="At most this many seconds for the last deliveries (done once 1 s passes "
                 "without one).")] = 5.0,
        allow_remote: Annotated[bool, typer.Option(
            help="Allow a target outside 127.0.0.0/8 (only a server you own).")] = False,
        reconnect: Annotated[bool, typer.Option(
            "--reconnect", help="Reconnect a connection the server closes (a drain, a "
            "rollout; after the close's reconnect hint, else a short backoff), resubscribe from "
            "the last message it got and send again the publishes left unanswered: losses "
            "and repeats are then the fleet's, across the moves.")] = False,
        json_out: Annotated[Path | None, typer.Option(
            "--json", help="Write the full JSON report here ('-' for stdout).")] = None,
        profile_out: Annotated[Path | None, typer.Option(
            "--profile", help="Write a cost profile for 'wsops plan' here: the default "
            "profile with what this run measured of the server (needs --admin or --pid; "
            "'wsops plan --profile' fits several).")] = None,
        slo_p99: Annotated[float, typer.Option(
            "--slo-p99", metavar="MS", min=0.001, max=3_600_000,
            help="The publish-to-receive p99 the run should hold, in ms: drawn on the "
                 "report's latency charts; the summary says whether it held.")] = 8.0,
        report: ReportOption = None,
    ) -> None:
        try:
            admin_url = normalize_url(admin) if admin else None  # as status, drain, leaks
            plan = with_defaults(Plan(  # (processes raised to what the connections need)
                scenario, url, connections=connections, duration=duration, processes=processes,
                rooms=rooms, rate=rate, size=size, connect_rate=connect_rate,
                sources=tuple(source_range(sources)) if sources else (), token=token,
                admin_url=admin_url, allow_remote=allow_remote, settle=settle,
                connect_timeout=connect_timeout, server_pid=pid, reconnect=reconnect))
            plan.check()
            output.check_path(report)
        except (PlanError, ValueError) as exc:
            typer.secho(f"wsops loadtest: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        typer.echo(f"{scenario}: {connections} connections over {plan.processes} processes "
                   f"for {duration:g}s against {url}", err=True)
        command_line = output.command_line()
        try:
            result = execute(plan, _progress, admin_token)
        except LoadTestError as exc:
            typer.secho(f"wsops loadtest: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        p99 = result.get("messages", {}).get("latency", {}).get("p99_ms")
        if "messages" in result:
            result["slo"] = {"p99_ms": slo_p99, "met": None if p99 is None else p99 <= slo_p99}
        server_version = (result.get("server") or {}).get("version")
        result["command"] = command_line
        result["versions"] = output.versions(
            **({"server": server_version} if server_version else {}))
        if json_out is not None:
            text = json.dumps(result, indent=2, sort_keys=True)
            if str(json_out) == "-":
                typer.echo(text)
            else:
                json_out.write_text(text + "\n")
        typer.echo(summary(result), err=json_out is not None and str(json_out) == "-")
        if profile_out is not None:
            _write_profile(profile_out, result)
        if report is not None:
            output.write(report, loadreport.render(result))
        if not result["connections"]["opened"]:
            typer.secho("no connection opened: " + ", ".join(result["connections"]["errors"]),
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        if result.get("messages", {}).get("lost"):
            raise typer.Exit(3)

    command.__doc__ = SCENARIO_HELP[scenario]
    return command


for _name in SCENARIO_HELP:
    loadtest_app.command(name=_name)(_command(_name))


def _write_profile(path: Path, result: dict[str, Any]) -> None:
    observation = capacity_observation(result)
    if observation is None:
        typer.secho("wsops loadtest: no profile written: the server's CPU and memory were not "
                    "read (give --admin URL or --pid)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    base, _ = profiles.load()
    fitted = profiles.fit(base, [observation], measured=observation["source"],
                          date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    path.write_text(profiles.to_json(fitted, [observation]))
    typer.echo(f"profile: {path} ({', '.join(fitted.source['fitted']) or 'nothing'} from this "
               "run, the rest from the default profile)", err=True)


def _progress(kind: str, body: dict[str, Any]) -> None:
    if kind == "ready":
        line = f"  opened {body['opened']} connections in {body['seconds']:.1f}s"
    else:
        p99 = body.get("p99_ms")
        line = (f"  {body['elapsed']:5.1f}s  open {body['open']}  published {body['published']}"
                f"  received {body['received']}" + (f"  p99 {p99:.1f} ms" if p99 else ""))
    print(line, file=sys.stderr, flush=True)


def _v(value: Any, unit: str, why: str) -> str:
    """A figure for people: ``n/a (why)`` when there is none (JSON keeps null)."""
    return f"n/a ({why})" if value is None else f"{value}{unit}"


def _server_line(s: dict[str, Any] | None, scenario: str) -> str:
    if s is None:
        return "server: n/a (give --admin URL or --pid for its CPU and memory)"
    if "cpu_seconds" not in s:
        return f"server stats unavailable: {s.get('error') or 'a reading was missing'}"
    deliveries = ("no message was delivered" if scenario in ("fanout", "echo")
                  else f"{scenario} delivers no messages")
    opened = s.get("connections_opened")
    per_conn = shown(s["rss_bytes_per_connection"], opened)
    memory = (f"{per_conn:.0f} bytes per connection (RSS growth while {opened} connections "
              "opened)" if per_conn is not None else f"memory per connection {NOT_SHOWN}")
    return (f"server: {s['cpu_seconds']} s CPU "
            f"({_v(s['cpu_us_per_delivery'], ' us', deliveries)} per delivery), "
            f"RSS {s['rss_bytes_end'] / 2**20:.1f} MiB, {memory}")


def summary(r: dict[str, Any]) -> str:
    c = r["connections"]
    none = "no connection opened"
    lines = [f"connections: {c['opened']}/{c['requested']} opened in {c['seconds_to_open']:.2f}s "
             f"({_v(c['per_second'], '/s', none)}), {c['open_at_end']} open at the end; "
             f"connect p50 {_v(c['connect_latency']['p50_ms'], ' ms', none)}, "
             f"p99 {_v(c['connect_latency']['p99_ms'], ' ms', none)}"]
    if c["errors"]:
        lines.append("errors: " + ", ".join(f"{k} x{n}" for k, n in c["errors"].items()))
    if c["close_codes"]:
        lines.append("closed by the server: " + ", ".join(
            f"{k} x{n}" for k, n in c["close_codes"].items()))
    m = r.get("messages")
    if m:
        lat, missing = m["latency"], "no message received"
        lines.append(
            f"messages: {m['acked']}/{m['published']} publishes acked, {m['received']} of "
            f"{m['expected_deliveries']} deliveries received "
            f"({_v(m['deliveries_per_second'], '/s', 'no time elapsed')}), "
            f"lost {m['lost']}, sequence gaps {m['sequence_gaps']}, out of order "
            f"{m['sequence_out_of_order']}")
        slo = r.get("slo") or {}
        met = slo.get("met")
        held = "" if met is None else " (SLO held)" if met else \
            f" (over the SLO of {slo['p99_ms']:g} ms)"
        lines.append(f"latency (publish to receive): p50 {_v(lat['p50_ms'], ' ms', missing)}, "
                     f"p99 {_v(lat['p99_ms'], ' ms', missing)}{held}, "
                     f"p99.9 {_v(lat['p999_ms'], ' ms', missing)}, "
                     f"max {_v(lat['max_ms'], ' ms', missing)}")
    lines.append(_server_line(r.get("server"), r.get("plan", {}).get("scenario", "")))
    return "\n".join(lines)
