"""The HTML report of ``wsops loadtest`` (pure): ``render(data)`` with ``data`` its ``--json``.

Connections opened over time, publishes and deliveries per second, latency percentiles over
time (p50/p99/p99.9) and the latency histogram against the SLO, losses and errors, the
server's CPU and RSS (its admin API or process), the exact command and the versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsops.ops.reports import charts, page
from wsops.ops.reports.charts import Mark, Series, column
from wsops.ops.reports.page import Cell


def _ms(v: Any) -> str:
    return "n/a" if v is None else charts.ms(float(v))


def _headline(d: Mapping[str, Any], slo: float | None) -> str:
    c = d["connections"]
    figs = [
        page.figure("connections opened", f"{c['opened']:,} / {c['requested']:,}",
                    "connections.opened", c["opened"],
                    "bad" if c["opened"] < c["requested"] else "good"),
        page.figure("opened per second", charts.plain(float(c["per_second"] or 0)),
                    "connections.per_second", c["per_second"]),
    ]
    m = d.get("messages")
    if m:
        lat = m["latency"]
        over = slo is not None and lat["p99_ms"] is not None and lat["p99_ms"] > slo
        figs += [
            page.figure("published", f"{m['published']:,}", "messages.published",
                        m["published"]),
            page.figure("deliveries received", f"{m['received']:,}", "messages.received",
                        m["received"]),
            page.figure("lost", f"{m['lost']:,}", "messages.lost", m["lost"],
                        "bad" if m["lost"] else "good"),
            page.figure("deliveries per second",
                        charts.plain(float(m["deliveries_per_second"] or 0)),
                        "messages.deliveries_per_second", m["deliveries_per_second"]),
            page.figure("p50", _ms(lat["p50_ms"]), "messages.latency.p50_ms", lat["p50_ms"]),
            page.figure("p99" + (f" (SLO {charts.ms(slo)})" if slo is not None else ""),
                        _ms(lat["p99_ms"]), "messages.latency.p99_ms", lat["p99_ms"],
                        "bad" if over else "good" if slo is not None else ""),
            page.figure("p99.9", _ms(lat["p999_ms"]), "messages.latency.p999_ms",
                        lat["p999_ms"]),
        ]
    s = d.get("server") or {}
    if "cpu_us_per_delivery" in s and s["cpu_us_per_delivery"] is not None:
        figs.append(page.figure("server CPU per delivery", f"{s['cpu_us_per_delivery']} us",
                                "server.cpu_us_per_delivery", s["cpu_us_per_delivery"]))
    return page.section("Summary", page.figures(*figs), id_="summary")


def _connections(d: Mapping[str, Any]) -> str:
    c = d["connections"]
    opened = c.get("opened_over_time") or []
    tl = d.get("timeline") or []
    return page.section("Connections", page.charts(
        charts.line_chart([Series("opened", column(opened, "t"), column(opened, "opened"),
                                  "connections.opened_over_time.opened")],
                          title="Connections opened (before the load starts)"),
        charts.line_chart([Series("open", column(tl, "t"), column(tl, "open"), "timeline.open")],
                          title="Connections open during the load", steps=True)),
        page.table(["connect latency", "p50", "p99", "max"], [(
            "handshake and subscribe",
            Cell(_ms(c["connect_latency"]["p50_ms"]), "connections.connect_latency.p50_ms",
                 c["connect_latency"]["p50_ms"], True),
            Cell(_ms(c["connect_latency"]["p99_ms"]), "connections.connect_latency.p99_ms",
                 c["connect_latency"]["p99_ms"], True),
            Cell(_ms(c["connect_latency"]["max_ms"]), "connections.connect_latency.max_ms",
                 c["connect_latency"]["max_ms"], True))]), id_="connections")


def _messages(d: Mapping[str, Any], slo: float | None) -> list[str]:
    m = d.get("messages")
    if not m:
        return []
    tl = d.get("timeline") or []
    ts = column(tl, "t")
    slo_y = [Mark("y", slo, f"SLO p99 {charts.ms(slo)}", "slo.p99_ms", charts.PALETTE[6])] \
        if slo is not None else []
    slo_x = [Mark("x", slo, f"SLO {charts.ms(slo)}", "slo.p99_ms", charts.PALETTE[6])] \
        if slo is not None else []
    lat = m["latency"]
    duration = (d.get("plan") or {}).get("duration")
    ends = [Mark("x", float(duration), "load ends (then settling)", "plan.duration")] \
        if duration is not None and ts else []
    return [
        page.section("Throughput", page.charts(charts.line_chart([
            Series("publishes/s", ts, column(tl, "published_per_second"),
                   "timeline.published_per_second"),
            Series("deliveries/s", ts, column(tl, "deliveries_per_second"),
                   "timeline.deliveries_per_second")],
            title="Publishes and deliveries per second", marks=ends)), id_="throughput"),
        page.section(
            "Latency (publish to receive)",
            page.charts(
                charts.line_chart([
                    Series("p50", ts, column(tl, "p50_ms"), "timeline.p50_ms"),
                    Series("p99", ts, column(tl, "p99_ms"), "timeline.p99_ms"),
                    Series("p99.9", ts, column(tl, "p999_ms"), "timeline.p999_ms", dashed=True)],
                    title="Latency percentiles, each second", yfmt=charts.ms,
                    marks=[*slo_y, *ends]),
                charts.histogram(lat.get("histogram") or [], title="Latency histogram (all "
                                 "deliveries)", key="messages.latency.histogram",
                                 marks=slo_x)),
            page.table(["count", "mean", "p50", "p99", "p99.9", "max"], [[
                Cell(f"{lat['count']:,}", "messages.latency.count", lat["count"], True),
                *(Cell(_ms(lat[k]), f"messages.latency.{k}", lat[k], True)
                  for k in ("mean_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"))]]),
            id_="latency"),
    ]


def _losses(d: Mapping[str, Any]) -> str:
    c, m = d["connections"], d.get("messages") or {}
    rows: list[Sequence[Cell | str]] = [
        (label, Cell(f"{m[k]:,}", f"messages.{k}", m[k], True,
                     "bad" if m[k] and k != "published" else ""))
        for label, k in (("deliveries lost", "lost"), ("deliveries extra (repeats)", "extra"),
                         ("sequence gaps", "sequence_gaps"),
                         ("out of order", "sequence_out_of_order"),
                         ("publishes refused or unanswered", "refused_or_unanswered"))
        if k in m]
    rows.append(("connections failed", Cell(f"{c['failed']:,}", "connections.failed",
                                            c["failed"], True, "bad" if c["failed"] else "")))
    rows.append(("reconnects", Cell(f"{c['reconnects']:,}", "connections.reconnects",
                                    c["reconnects"], True)))
    rows += [(f"error: {k}", Cell(f"{n:,}", page.pointer("connections", "errors", k), n,
                                  True, "bad")) for k, n in c["errors"].items()]
    rows += [(f"closed by the server: {k}", Cell(
        f"{n:,}", page.pointer("connections", "close_codes", k), n, True))
        for k, n in c["close_codes"].items()]
    return page.section("Losses and errors", page.table(["what", "count"], rows), id_="losses")


def _server(d: Mapping[str, Any]) -> str:
    s = d.get("server")
    if not s:
        return page.section("Server", page.note(
            "Not measured: give --admin URL (the node's admin API) or --pid for its CPU and "
            "memory."), id_="server")
    if "cpu_seconds" not in s:
        return page.section("Server", page.note(
            f"The server's figures could not be read: {s.get('error')}", "warn"), id_="server")
    tl = s.get("timeline") or []
    ts = column(tl, "t")
    per_conn = s.get("rss_bytes_per_connection")
    load = s.get("load_started")
    marks = [Mark("x", float(load), "load", "server.load_started", charts.PALETTE[3])] \
        if load else []  # (0: nothing was read while the connections opened)
    return page.section("Server", page.figures(
        page.figure("CPU seconds during the load", f"{s['cpu_seconds']}", "server.cpu_seconds",
                    s["cpu_seconds"]),
        page.figure("RSS at the end", charts.size(float(s["rss_bytes_end"])),
                    "server.rss_bytes_end", s["rss_bytes_end"]),
        page.figure("RSS per connection",
                    "n/a" if per_conn is None else charts.size(float(per_conn)),
                    "server.rss_bytes_per_connection", per_conn)),
        page.charts(
            charts.line_chart([Series("CPU", ts, column(tl, "cpu_percent"),
                                      "server.timeline.cpu_percent")],
                              title="Server CPU (% of one core)", yfmt=charts.percent,
                              marks=marks),
            charts.line_chart([Series("RSS", ts, column(tl, "rss_bytes"),
                                      "server.timeline.rss_bytes")],
                              title="Server RSS", yfmt=charts.size, y_min=None, marks=marks)),
        page.note("Seconds from the first reading, before the connections opened; the load "
                  "began at the \"load\" line.") if marks else "",
        id_="server")


def render(data: Mapping[str, Any]) -> str:
    """The page of one ``wsops loadtest ... --json`` report."""
    plan = data.get("plan") or {}
    slo_block = data.get("slo") or {}
    slo = slo_block.get("p99_ms")
    sections = [_headline(data, slo), _connections(data), *_messages(data, slo),
                _losses(data), _server(data), page.command_section(
                    data.get("command"), data.get("versions"))]
    lost = (data.get("messages") or {}).get("lost")
    subtitle = (f"{plan.get('scenario')}: {plan.get('connections'):,} connections, "
                f"{plan.get('duration')} s against {plan.get('url')}"
                + (f"; {lost:,} lost" if lost else ""))
    return page.document(f"wsops loadtest {plan.get('scenario', '')}", subtitle, sections, data)
