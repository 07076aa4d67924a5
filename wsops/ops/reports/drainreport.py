"""The HTML report of ``wsops drain`` (pure): ``render(data)`` with ``data`` its ``--json``.

Connections open over time on the drained node and, given ``--peer``/``--redis``, on the
others (a fall on one, a rise on the rest); connections closed per batch; the node's readiness;
the deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsops.ops.reports import charts, page
from wsops.ops.reports.charts import Mark, Series, column


def _ready_text(v: float) -> str:
    return {1.0: "ready", 0.0: "not ready"}.get(v, "")


def render(data: Mapping[str, Any]) -> str:
    """The page of one ``wsops drain --json`` output."""
    node = str(data.get("node", "?"))
    if "drain" not in data:  # it failed before the drain could be followed
        return page.document(f"wsops drain · {node}", str(data.get("message", "")), [
            page.section("Summary", page.figures(page.figure(
                "result", str(data.get("result")), "result", data.get("result"), "bad")),
                page.note(str(data.get("message", "")), "bad"), id_="summary"),
            page.command_section(data.get("command"), data.get("versions"))], data)
    st: Mapping[str, Any] = data["drain"]
    tl: Sequence[Mapping[str, Any]] = data.get("timeline") or []
    ts = column(tl, "t")
    deadline = data.get("deadline_seconds")
    marks = [Mark("x", float(deadline), "deadline", "deadline_seconds", charts.PALETTE[6])] \
        if deadline is not None else []
    drained_at = next((p["t"] for p in tl if p.get("state") == "drained"), None)
    if drained_at is not None:
        marks.append(Mark("x", float(drained_at), "drained", charts.pointer(
            "timeline", column(tl, "state").index("drained"), "t"), charts.PALETTE[3]))
    forced = int(st.get("forced") or 0)
    summary = page.section("Summary", page.figures(
        page.figure("result", str(data.get("result")), "result", data.get("result"),
                    "good" if data.get("exit_code") == 0 else "bad"),
        page.figure("connections at the start", f"{int(st.get('total') or 0):,}",
                    "drain.total", st.get("total")),
        page.figure("closed in batches", f"{int(st.get('closed') or 0):,}", "drain.closed",
                    st.get("closed")),
        page.figure("force-closed at the deadline", f"{forced:,}", "drain.forced", forced,
                    "bad" if forced else "good"),
        page.figure("batches", f"{int(st.get('batches') or 0):,}", "drain.batches",
                    st.get("batches")),
        page.figure("seconds", f"{float(data.get('elapsed_seconds') or 0):.1f}",
                    "elapsed_seconds", data.get("elapsed_seconds")),
        page.figure("deadline (s)", "n/a" if deadline is None else f"{float(deadline):g}",
                    "deadline_seconds", deadline)),
        page.note(str(data.get("message", ""))), id_="summary")
    peers: Sequence[Mapping[str, Any]] = data.get("peers") or []
    lines = [Series(f"{node} (drained)", ts, column(tl, "remaining"), "timeline.remaining")
             ] if tl else []
    lines += [Series(str(p["url"]), p["t"], p["connections"], f"peers.{i}.connections")
              for i, p in enumerate(peers)]
    batches: Sequence[Mapping[str, Any]] = data.get("batches") or []
    ready_ys = [None if r is None else float(r) for r in column(tl, "ready")]
    flow = page.section(
        "Connections",
        page.note("Seconds from the start of the drain. " + (
            "The peers were followed for the clients' reconnect spread after it."
            if peers else "Give --peer ADMIN_URL or --redis URL to see the other nodes "
                          "take the clients.") + (
            " Closes per batch: the node's own log" + (
                " (past 1,000 batches it groups neighbouring ones: a bar is a group)."
                if any(b.get("batches", 1) != 1 for b in batches) else ".")
            if data.get("batches_from") == "node"
            else " Closes per batch: estimated from the command's polls (the node sent no "
                 "log of them).")),
        page.charts(
            charts.line_chart(lines, title="Connections open"
                              + (" on the drained node and its peers" if peers else ""),
                              marks=marks),
            charts.bar_chart(column(batches, "t"), column(batches, "sent"),
                             title="Closes sent per batch", key="batches.sent",
                             marks=marks),
            charts.line_chart([Series("readiness (/readyz)", ts, ready_ys, "timeline.ready",
                                      data=column(tl, "ready"))],
                              title="The drained node's readiness", yfmt=_ready_text,
                              steps=True, height=140, marks=marks, yticks=(0.0, 1.0))),
        id_="connections")
    options = data.get("options") or {}
    settings = page.section("Drain options", page.table(["option", "value"], [
        (k, page.Cell(str(v), charts.pointer("options", k), v)) for k, v in options.items()])
        if options else page.note("The node's own settings (a drain already running was "
                                  "followed)."), id_="options")
    return page.document(f"wsops drain · {node}", str(data.get("message", "")),
                         [summary, flow, settings,
                          page.command_section(data.get("command"), data.get("versions"))],
                         data)
