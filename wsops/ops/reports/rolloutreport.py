"""The HTML report of ``wsops rollout`` (pure): ``render(data)`` with ``data`` its ``--json``.

The steps of each node as lanes over time (drain, replace, settle, bake), every node's
connections through the rollout (each drain a fall on one node and a rise on the others), the
gate figures of each bake, the step log, the outcome and the command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsops.ops.reports import charts, page
from wsops.ops.reports.charts import Series, Span
from wsops.ops.reports.page import Cell
from wsops.ops.rolloutplan import METRICS, show

PHASES = {"drain": "drain", "restart": "replace", "ready": "settle", "bake": "bake",
          "stop": "stopped", "rollback": "rollback"}
COLORS = {"drain": charts.PALETTE[4], "replace": charts.PALETTE[2],
          "settle": charts.PALETTE[5], "bake": charts.PALETTE[0], "stopped": charts.PALETTE[1],
          "rollback": charts.PALETTE[6]}


def _lanes(steps: Sequence[Mapping[str, Any]], t0: float) -> list[tuple[str, list[Span]]]:
    """Per node, the phase each step starts, until that node's next step."""
    events: dict[str, list[tuple[float, str, int]]] = {}
    for i, s in enumerate(steps):
        if "node_figures" in s or s.get("node") == "-":
            continue
        for node in str(s["node"]).split(", "):
            events.setdefault(node, []).append((float(s["at"]) - t0, str(s["step"]), i))
    end = max((float(s["at"]) - t0 for s in steps), default=0.0)
    out = []
    for node, seen in events.items():
        spans = []
        for k, (t, step, i) in enumerate(seen):
            if step not in PHASES:
                continue
            until = seen[k + 1][0] if k + 1 < len(seen) else end
            spans.append(Span(t, until, PHASES[step], charts.pointer("steps", i, "at"),
                              steps[i]["at"]))
        out.append((node, spans))
    return out


def _gates(steps: Sequence[Mapping[str, Any]]) -> str:
    rows: list[list[Cell | str]] = []
    for i, s in enumerate(steps):
        values = s.get("node_figures")
        if not isinstance(values, dict):
            continue
        rows.append([str(s.get("of", s["node"])), str(s["node"]), *(
            Cell(show(m, float(values[m])), charts.pointer("steps", i, "node_figures", m),
                 values[m], True) for m in METRICS if m in values), str(s.get("source", ""))])
    if not rows:
        return page.note("No bake finished.")
    return page.table(["node watched", "during the bake of", *METRICS, "from"], rows)


def render(data: Mapping[str, Any]) -> str:
    """The page of one ``wsops rollout --json`` output."""
    steps: Sequence[Mapping[str, Any]] = data.get("steps") or []
    t0 = float(data.get("started_at") or (steps[0]["at"] if steps else 0.0))
    done = data.get("done") or []
    nodes = data.get("nodes") or []
    ok = data.get("exit_code") == 0
    summary = page.section("Summary", page.figures(
        page.figure("result", str(data.get("result")), "result", data.get("result"),
                    "good" if ok else "bad"),
        page.figure("nodes upgraded", f"{len(done)} of {len(nodes)}", "done", done),
        page.figure("exit code", str(data.get("exit_code")), "exit_code", data.get("exit_code"),
                    "good" if ok else "bad")),
        *([page.note(f"stopped at {data.get('failed')}: {data.get('reason')}", "bad")]
          if data.get("failed") else []),
        page.note("gates: " + "; ".join(data.get("gates") or [])), id_="summary")
    conns: Sequence[Mapping[str, Any]] = data.get("connections") or []
    timeline = page.section("Timeline", page.note(
        "Seconds from the start of the rollout."), charts.lanes(
        _lanes(steps, t0), title="Steps of each node", colors=COLORS), charts.line_chart(
        [Series(str(c["url"]), c["t"], c["connections"], f"connections.{i}.connections")
         for i, c in enumerate(conns)], title="Connections on each node", width=900),
        id_="timeline")
    log = page.section("Steps", page.table(["s", "node", "step", "what"], [(
        Cell(f"{float(s['at']) - t0:.1f}", charts.pointer("steps", i, "at"), s["at"], True),
        str(s["node"]), str(s["step"]), str(s["text"])) for i, s in enumerate(steps)]),
        id_="steps")
    return page.document(
        "wsops rollout", f"{data.get('result')}: {len(done)} of {len(nodes)} nodes upgraded",
        [summary, timeline, page.section("Gates", _gates(steps), id_="gates"), log,
         page.command_section(data.get("command"), data.get("versions"))], data)
