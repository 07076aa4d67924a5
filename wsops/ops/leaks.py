"""``wsops leaks``: profile memory leaks of a live node over its admin API, and compare saved
samples offline.

``wsops leaks ADMIN_URL`` starts tracemalloc on the node (if it is off), samples grouped heap
statistics every interval, stops tracemalloc again if it started it (also on Ctrl-C and errors;
``leaksession``), and ranks what grew steadily (``leakcheck``); on a ``--workers`` node it does
so on every worker at once (``leaktargets``). ``wsops leaks diff A B`` compares two samples
saved with ``--save``.
Works on any app wrapped with ``wsops.instrument(app)``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.apiclient import AdminClient, AdminError
from wsops.ops.fleetview import normalize_url
from wsops.ops.leakcheck import KIB, Thresholds, analyze, fmt, parse_sample, site_of
from wsops.ops.leakdiff import diff_sites
from wsops.ops.leaksession import Collected, caveats, collect, collect_all, tracing_note
from wsops.ops.leaktargets import NoTarget, Target, Targets, profile_targets
from wsops.ops.leakview import diff_table, render_report
from wsops.ops.reports import leakreport, output
from wsops.ops.reports.output import ReportOption

SAVE_FORMAT = "wsops-leaks-sample/1"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SUSPECTS = 0, 1, 2, 3


class _DefaultRun(TyperGroup):
    """``wsops leaks URL ...`` means ``wsops leaks run URL ...``; named commands stay as they
    are (``wsops leaks diff A B``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: click's Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


leaks_app = typer.Typer(
    cls=_DefaultRun, no_args_is_help=True,
    help="Profile memory leaks of a live node (tracemalloc over its admin API), and compare "
         "saved samples. 'wsops leaks ADMIN_URL ...' is short for 'wsops leaks run ADMIN_URL "
         "...'.\n\nExample: wsops leaks http://127.0.0.1:9765 --duration 60\n\n"
         "Example: wsops leaks diff before.json after.json --top 20")


class Grouping(enum.StrEnum):
    lineno = "lineno"
    traceback = "traceback"


def _save(path: Path, url: str, run: Collected, group: str) -> None:
    last = run.samples[-1]
    data = {"format": SAVE_FORMAT, "node": url, "saved_at": time.time(), "group": group,
            "frames": last.get("frames"), "tracing_started_by_run": bool(run.start.get("started")),
            "sample": last}
    path.write_text(json.dumps(data, indent=1))


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), console=err, transient=True,
                    disable=not err.is_terminal)


def _console() -> Console:
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=200)  # piped: keep rows on one line


# Help texts as one line per paragraph: Typer keeps single line breaks of docstrings.
RUN_HELP = (
    "Sample a live node's heap and rank what grows steadily.\n\n"
    "Every --interval seconds for --duration seconds, the node's admin API returns grouped "
    "figures: traced memory by allocating line (tracemalloc), object counts by type (gc), "
    "WebSocket objects against open connections, the app's own leak checks, RSS. Suspects are "
    "series that grow steadily (slope per minute, monotonicity, no single jump, not levelling "
    "off), so churn and one-off spikes are not reported.\n\n"
    "tracemalloc is started if it is off and stopped again at the end, also on Ctrl-C or an "
    "error (then the samples so far are analysed); if it was already on, it stays on.\n\n"
    "On a --workers node (its admin URL, on the node's host) every worker is profiled at "
    "once, each reported on its own; --worker N profiles one.\n\n"
    "Exit codes: 0 no suspect, 3 suspects found, 1 node (or a worker) unreachable or "
    "refusing, 2 usage error.\n\n"
    "Example: wsops leaks http://127.0.0.1:9765 --duration 60 --interval 5 --save after.json"
)
DIFF_HELP = (
    "Compare two samples saved with 'wsops leaks --save': biggest growth from A to B first.\n\n"
    "Sizes count memory traced since tracemalloc started, so both files should come from one "
    "tracing session (tracemalloc left on between the runs, or started before both).\n\n"
    "Example: wsops leaks diff before.json after.json --top 20 --filter myapp/"
)


UrlArgument = Annotated[str, typer.Argument(
    metavar="ADMIN_URL", show_default=False,
    help="The node's admin listener, http://HOST:ADMIN_PORT (not the WebSocket port).")]


@leaks_app.command("run", help=RUN_HELP)
def run(
    admin_url: UrlArgument,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to sample for.")] = 60.0,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between samples.")] = 5.0,
    frames: Annotated[int, typer.Option(
        min=1, max=50, help="Traceback depth if this run starts tracemalloc (cost grows with "
                            "it).")] = 10,
    top: Annotated[int, typer.Option(min=1, max=200, help="Rows per table.")] = 15,
    group: Annotated[Grouping, typer.Option(
        help="Rank allocating lines (lineno) or whole call paths (traceback).")] = Grouping.lineno,
    warmup: Annotated[float, typer.Option(
        min=0, help="Seconds between starting tracemalloc and the first sample.")] = 0.0,
    min_growth: Annotated[float, typer.Option(
        min=0, help="KiB per minute a site must grow by to be a suspect (lower it for "
                    "long runs: bounded noise flattens with time).")] = 128.0,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print a machine-readable report instead of tables.")] = False,
    save: Annotated[Path | None, typer.Option(
        help="Save the last sample's grouped stats (and metadata) to this JSON file, for "
             "'wsops leaks diff' (one file per worker of a --workers node: NAME.workerN.json).",
        show_default=False)] = None,
    worker: Annotated[int | None, typer.Option(
        min=0, show_default=False,
        help="On a --workers node: profile only this worker (default: every worker).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar=ADMIN_TOKEN_ENV, show_envvar=True, show_default=False,
        help="Admin token, sent as 'Authorization: Bearer'.")] = None,
    report: ReportOption = None,
) -> None:
    """Profile the node at ``admin_url``; see ``RUN_HELP``."""
    try:
        admin_url = normalize_url(admin_url)  # the forms status and drain accept
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="ADMIN_URL") from None
    if interval > duration:
        raise typer.BadParameter("must not exceed --duration", param_hint="--interval")
    output.check_path(report)
    made = {"command": output.command_line(), "versions": output.versions()}
    err = Console(stderr=True)

    async def go() -> tuple[Targets, list[Collected]]:
        timeout = max(60.0, 2 * interval)
        async with aiohttp.ClientSession() as http:
            found = profile_targets(
                admin_url, await AdminClient(http, admin_url, token, timeout).stats(), worker)
            with _progress(err) as bar:

                async def one(target: Target) -> Collected:
                    name = "sampling" if target.worker is None else f"worker {target.worker}"
                    task = bar.add_task(name, total=int(duration // interval) + 1, info="")

                    def shown(k: int, n: int, s: dict[str, Any]) -> None:
                        bar.update(task, completed=k, info=(
                            f"traced {fmt(s.get('traced_bytes') or 0, 'B')}, "
                            f"rss {fmt(s.get('rss_bytes') or 0, 'B')}"))

                    return await collect(AdminClient(http, target.url, token, timeout),
                                         duration=duration, interval=interval, frames=frames,
                                         group=group.value, warmup=warmup, on_sample=shown)

                return found, await collect_all(one(t) for t in found.targets)

    try:
        found, runs = asyncio.run(go())
    except AdminError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    except NoTarget as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    for note in found.skipped:
        err.print(f"[red]error:[/] {note}")
    outcomes = []
    for target, got in zip(found.targets, runs, strict=True):
        where = "" if target.worker is None else f"worker {target.worker}: "
        if got.stop_error is not None:
            err.print(f"[yellow]{where}could not end the profiling session:[/] "
                      f"{got.stop_error} (the node stops tracing it started when the lease "
                      "runs out)")
        if got.error is not None:
            err.print(f"[red]{where}error:[/] {got.error}")
        if save is not None and got.samples:
            _save(_save_path(save, target), target.url, got, group.value)
        outcomes.append(_outcome(target.url, got, top, warmup, min_growth, json_out))
    codes = [code for code, _, _ in outcomes]
    failed = bool(found.skipped) or any(got.error is not None for got in runs)
    code = EXIT_ERROR if failed else max(codes)  # EXIT_SUSPECTS (3) over EXIT_OK (0)
    if found.targets[0].worker is None:
        data = {**outcomes[0][1], **made, "exit_code": code}  # (1 when sampling failed)
        _show(data, outcomes[0][2], json_out)
    else:
        data = _workers_data(admin_url, found, outcomes, code, made)
        _show_workers(admin_url, data, found, outcomes, json_out)
    if report is not None:
        output.write(report, leakreport.render(data))
    raise typer.Exit(code)


def _save_path(path: Path, target: Target) -> Path:
    """``--save`` as given for one node; NAME.workerN.SUFFIX for each worker of one."""
    if target.worker is None:
        return path
    return path.with_name(f"{path.stem}.worker{target.worker}{path.suffix}")


def _outcome(url: str, got: Collected, top: int, warmup: float, min_growth: float,
             json_out: bool) -> tuple[int, dict[str, Any], RenderableType | None]:
    """The exit code, the JSON report and (for people) the tables of one profiled heap."""
    meta: dict[str, Any] = {
        "node": url, "frames": got.samples[-1].get("frames") if got.samples else None,
        "tracing": tracing_note(got), "caveats": caveats(got, warmup),
        "tracing_started_by_run": bool(got.start.get("started")),
        "tracing_after": None if got.stop is None else bool(got.stop.get("tracing")),
        "interrupted": got.interrupted, "error": None if got.error is None else str(got.error),
    }
    if len(got.samples) < 2:
        meta["suspects"] = 0
        return EXIT_OK, {**meta, "samples": len(got.samples)}, None
    samples = [parse_sample(s) for s in got.samples]
    th = Thresholds(site_min_rate=min_growth * KIB)
    report = analyze(samples, th, top=top)
    code = EXIT_SUSPECTS if report.suspects else EXIT_OK
    view = None if json_out else render_report(
        report, meta, [s.rss - s.overhead for s in samples], [s.traced for s in samples], top)
    return code, {**meta, **report.as_dict(), "exit_code": code}, view


def _show(data: dict[str, Any], view: RenderableType | None, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(data))
    elif view is None:
        Console(stderr=True).print("fewer than 2 samples: nothing to compare")
    else:
        _console().print(view)


def _workers_data(url: str, found: Targets,
                  outcomes: list[tuple[int, dict[str, Any], RenderableType | None]], code: int,
                  made: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` of a --workers node: one report per worker, under the node's URL."""
    return {"node": url, "exit_code": code, "skipped": found.skipped,
            "workers": [{"worker": t.worker, **data}
                        for t, (_, data, _) in zip(found.targets, outcomes, strict=True)],
            **made}


def _show_workers(url: str, data: dict[str, Any], found: Targets,
                  outcomes: list[tuple[int, dict[str, Any], RenderableType | None]],
                  json_out: bool) -> None:
    """A --workers node: one report per worker, under the node's URL."""
    if json_out:
        typer.echo(json.dumps(data))
        return
    console = _console()
    for target, (_, _, view) in zip(found.targets, outcomes, strict=True):
        console.rule(f"{url} · {target.label}")
        console.print(view if view is not None else "fewer than 2 samples: nothing to compare")


def _load(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint=name) from None
    if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
        raise typer.BadParameter(f"{path} is not a file saved by 'wsops leaks --save'",
                                 param_hint=name)
    return data


@leaks_app.command("diff", help=DIFF_HELP)
def diff(
    a: Annotated[Path, typer.Argument(metavar="A", help="The earlier saved sample.")],
    b: Annotated[Path, typer.Argument(metavar="B", help="The later saved sample.")],
    top: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show.")] = 20,
    filter_: Annotated[str | None, typer.Option(
        "--filter", show_default=False,
        help="Only allocations with this substring in a file:line of their traceback.")] = None,
    by: Annotated[Grouping, typer.Option(
        help="Compare by allocating line, or by whole call path (needs files saved with "
             "--group traceback).")] = Grouping.lineno,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """Compare two saved samples; see ``DIFF_HELP``."""
    da, db = _load(a, "A"), _load(b, "B")
    if by is Grouping.traceback:
        for path, d in ((a, da), (b, db)):
            if d.get("group") != "traceback":
                raise typer.BadParameter(
                    f"{path} was saved with --group {d.get('group')}: save with --group "
                    "traceback to compare call paths", param_hint="--by")
    try:
        sites_a = [site_of(s) for s in da["sample"].get("sites") or ()]
        sites_b = [site_of(s) for s in db["sample"].get("sites") or ()]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise typer.BadParameter(f"malformed sample: {exc}", param_hint="A/B") from None
    rows = diff_sites(sites_a, sites_b, by.value, filter_, top)
    if json_out:
        typer.echo(json.dumps([{"key": r.key, "size_a": r.size_a, "size_b": r.size_b,
                                "growth": r.growth, "count_a": r.count_a, "count_b": r.count_b,
                                "traceback": [list(f) for f in r.traceback]} for r in rows]))
        return
    seconds = float(db.get("saved_at", 0)) - float(da.get("saved_at", 0))
    title = f"Growth from {a.name} to {b.name} ({seconds:.0f} s apart), by {by.value}"
    _console().print(diff_table(rows, by.value, title))
